//! Plugin stdout and stderr, forwarded line by line to the host log with the
//! plugin's identity.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use std::sync::{Arc, PoisonError, RwLock};

/// Longest line logged as one event; longer output is split, so a plugin
/// that never prints a newline cannot grow the buffer without bound.
const MAX_LINE: usize = 4096;

/// How an instance's output names its plugin: its file while the manifest
/// is read, its identity once known. Clones share the name.
#[derive(Debug, Clone)]
pub(crate) struct Tag(Arc<RwLock<Arc<str>>>);

impl Tag {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self(Arc::new(RwLock::new(name)))
    }

    pub(crate) fn get(&self) -> Arc<str> {
        // A name is replaced whole: a poisoned lock still holds a valid one.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set(&self, name: Arc<str>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = name;
    }
}

/// A WASI output stream that logs each line.
#[derive(Debug, Clone)]
pub(crate) struct LogStream {
    plugin: Tag,
    stream: &'static str,
}

impl LogStream {
    pub(crate) fn new(plugin: Tag, stream: &'static str) -> Self {
        Self { plugin, stream }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineLogger {
            stream: self.clone(),
            buf: Vec::new(),
        })
    }
}

struct LineLogger {
    stream: LogStream,
    buf: Vec<u8>,
}

impl LineLogger {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        tracing::info!(plugin = %self.stream.plugin.get(), stream = self.stream.stream, "{}", line.trim_end_matches('\r'));
    }

    fn drain_lines(&mut self) {
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let rest = self.buf.split_off(end + 1);
            self.emit(&self.buf[..end]);
            self.buf = rest;
        }
        while self.buf.len() >= MAX_LINE {
            let rest = self.buf.split_off(MAX_LINE);
            self.emit(&self.buf);
            self.buf = rest;
        }
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.buf.extend_from_slice(data);
        self.drain_lines();
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.emit(&rest);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.emit(&self.buf);
        }
    }
}
