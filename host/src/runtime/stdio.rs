//! Plugin stdout and stderr, forwarded line by line to the host log with the
//! plugin's identity, within its log budget (see [`super::output`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::output::{Level, Output};

/// Longest line logged as one record; longer output is split, so a plugin
/// that never prints a newline cannot grow the buffer without bound.
const MAX_LINE: usize = 4096;

/// A WASI output stream that logs each line.
#[derive(Debug, Clone)]
pub(crate) struct LogStream {
    plugin: Output,
    stream: &'static str,
}

impl LogStream {
    pub(crate) fn new(plugin: Output, stream: &'static str) -> Self {
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
        self.stream
            .plugin
            .write(Level::Info, self.stream.stream, line.trim_end_matches('\r'));
    }

    /// Logs every whole line in the buffer, and the start of a line that
    /// has grown to [`MAX_LINE`], keeping the rest. Linear in the buffer's
    /// length, however many lines it holds.
    fn drain_lines(&mut self) {
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            match rest.iter().take(MAX_LINE).position(|&b| b == b'\n') {
                Some(end) => {
                    self.emit(&rest[..end]);
                    start += end + 1;
                }
                None if rest.len() >= MAX_LINE => {
                    self.emit(&rest[..MAX_LINE]);
                    start += MAX_LINE;
                }
                None => break,
            }
        }
        self.buf.drain(..start);
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
