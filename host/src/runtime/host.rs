//! The host side of Warden's WIT interfaces: storage, chat and logging.

use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList, WasmStr};

use super::bindings::StorageErrorWit;
use super::bindings::warden::plugin::{chat, logging, storage, types};
use std::sync::Arc;

use super::PluginState;
use super::output::{Level, Output};
use crate::metrics::{PluginMetrics, StorageFailure, StorageOp};
use crate::storage::{BackendError, PluginStorage, StorageError, human_size};
use crate::text;

/// Most replies one handler call may send; more are dropped, and counted
/// in one warning when the call ends.
pub const MAX_REPLIES: usize = 100;
/// Longest reply in bytes; longer ones are cut at a character boundary.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// What an instance that serves messages reaches: its plugin's storage, and
/// the metrics its storage calls are counted in.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The plugin's storage.
    pub storage: PluginStorage,
    /// The plugin's counters.
    pub metrics: Arc<PluginMetrics>,
}

/// What a plugin instance can reach on the host.
#[derive(Debug)]
pub struct PluginHost {
    /// The plugin's identity, or its file while the manifest is read.
    id: Arc<str>,
    /// Where its log records go.
    output: Output,
    storage: Option<PluginStorage>,
    /// The plugin's counters, when it has storage.
    metrics: Option<Arc<PluginMetrics>>,
    /// `Some` while a handler call is under way.
    replies: Option<Replies>,
}

/// The replies of one handler call, and what was dropped or cut.
#[derive(Debug, Default)]
struct Replies {
    said: Vec<String>,
    dropped: usize,
    cut: usize,
}

impl PluginHost {
    /// The host side of an instance named `id` in logs, logging to
    /// `output`; without `serving` (while the manifest is read) it has no
    /// storage.
    pub(crate) fn new(id: Arc<str>, output: Output, serving: Option<Serving>) -> Self {
        let (storage, metrics) = match serving {
            Some(Serving { storage, metrics }) => (Some(storage), Some(metrics)),
            None => (None, None),
        };
        Self {
            id,
            output,
            storage,
            metrics,
            replies: None,
        }
    }

    /// Where the plugin's log records go.
    pub(crate) fn output(&self) -> &Output {
        &self.output
    }

    /// Starts collecting replies, and the log budget, of a handler call.
    pub(crate) fn begin_call(&mut self) {
        self.replies = Some(Replies::default());
        self.output.begin_call();
    }

    /// Ends a handler call and returns its replies. What the call lost to
    /// the limits is logged here, once per call.
    pub(crate) fn end_call(&mut self) -> Vec<String> {
        self.output.end_call();
        let replies = self.replies.take().unwrap_or_default();
        if replies.dropped > 0 {
            tracing::warn!(plugin = %self.id, dropped = replies.dropped,
                "{} replies over the limit of {MAX_REPLIES} per call were dropped", replies.dropped);
        }
        if replies.cut > 0 {
            tracing::warn!(plugin = %self.id, cut = replies.cut,
                "{} replies over {MAX_REPLY_BYTES} bytes were cut", replies.cut);
        }
        replies.said
    }

    fn storage(&self) -> Result<&PluginStorage, StorageError> {
        self.storage.as_ref().ok_or_else(|| {
            StorageError::Backend(BackendError::new(
                "host",
                "storage is not available while the manifest is read",
            ))
        })
    }

    /// Counts the outcome of storage operation `op`, and logs a failure of
    /// the backend. Only the operation and the kind of error are counted:
    /// never the key or the value.
    fn done<T>(&self, op: StorageOp, r: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(StorageError::Backend(e)) = &r {
            tracing::error!(plugin = %self.id, op = op.wit_name(), error = %e, "storage backend failed");
        }
        if let Some(metrics) = &self.metrics {
            metrics.storage_op(op, r.as_ref().err().map(StorageError::kind));
        }
        r
    }

    fn get_now(&self, key: &str, shared: bool) -> Result<Option<Vec<u8>>, StorageError> {
        let r = self.storage()?.get_now(key, shared);
        self.done(StorageOp::Get, r)
    }

    fn has_now(&self, key: &str, shared: bool) -> Result<bool, StorageError> {
        let r = self.storage()?.has_now(key, shared);
        self.done(StorageOp::Has, r)
    }

    fn set_now(
        &self,
        key: &str,
        value: &[u8],
        expires_in_secs: Option<u64>,
        shared: bool,
    ) -> Result<(), StorageError> {
        let ttl = expires_in_secs.map(Duration::from_secs);
        let r = self.storage()?.set_now(key, value, ttl, shared);
        self.done(StorageOp::Set, r)
    }

    fn delete_now(&self, key: &str, shared: bool) -> Result<(), StorageError> {
        let r = self.storage()?.delete_now(key, shared);
        self.done(StorageOp::Delete, r)
    }
}

/// What a plugin sees of a storage error: the case of its kind, with the
/// error's message.
fn to_wit(err: StorageError) -> StorageErrorWit {
    let kind = err.kind();
    let message = match err {
        StorageError::AccessDenied(m) | StorageError::InvalidValue(m) => m,
        e => e.to_string(),
    };
    match kind {
        StorageFailure::AccessDenied => StorageErrorWit::AccessDenied(message),
        StorageFailure::InvalidKey => StorageErrorWit::InvalidKey(message),
        StorageFailure::TooLarge => StorageErrorWit::TooLarge(message),
        StorageFailure::QuotaExceeded => StorageErrorWit::QuotaExceeded(message),
        StorageFailure::InvalidValue => StorageErrorWit::InvalidValue(message),
        StorageFailure::Backend => StorageErrorWit::Backend(message),
    }
}

/// Which storage operations the host's backend performs without waiting
/// (see [`Backend::immediate_reads`](crate::storage::Backend::immediate_reads)
/// and [`Backend::immediate_writes`](crate::storage::Backend::immediate_writes)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Immediate {
    /// `get` and `has`.
    pub reads: bool,
    /// `set` and `delete`.
    pub writes: bool,
}

/// Replaces the storage interface's `get` and `has` (with `immediate.reads`)
/// and `set` and `delete` (with `immediate.writes`) with synchronous host
/// functions that call the backend's immediate operations. A synchronous
/// host function skips wasmtime's async call machinery, and reads the key
/// and value in place in the plugin's memory instead of copying them out.
pub(crate) fn link_immediate(
    linker: &mut Linker<PluginState>,
    immediate: Immediate,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut storage = linker.instance(STORAGE_INTERFACE)?;
    if immediate.reads {
        storage.func_wrap(
            "get",
            |store: StoreContextMut<'_, PluginState>, (key, shared): (WasmStr, bool)| {
                let key = key.to_str(&store)?;
                Ok((store.data().host.get_now(&key, shared).map_err(to_wit),))
            },
        )?;
        storage.func_wrap(
            "has",
            |store: StoreContextMut<'_, PluginState>, (key, shared): (WasmStr, bool)| {
                let key = key.to_str(&store)?;
                Ok((store.data().host.has_now(&key, shared).map_err(to_wit),))
            },
        )?;
    }
    if immediate.writes {
        storage.func_wrap(
            "set",
            |store: StoreContextMut<'_, PluginState>,
             (key, value, expires_in_secs, shared): (WasmStr, WasmList<u8>, Option<u64>, bool)| {
                let key = key.to_str(&store)?;
                let value = value.as_le_slice(&store);
                let host = &store.data().host;
                Ok((host
                    .set_now(&key, value, expires_in_secs, shared)
                    .map_err(to_wit),))
            },
        )?;
        storage.func_wrap(
            "delete",
            |store: StoreContextMut<'_, PluginState>, (key, shared): (WasmStr, bool)| {
                let key = key.to_str(&store)?;
                Ok((store.data().host.delete_now(&key, shared).map_err(to_wit),))
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// The name the storage interface is imported under.
const STORAGE_INTERFACE: &str = "warden:plugin/storage@0.1.0";

impl storage::Host for PluginHost {
    fn convert_error(&mut self, err: StorageError) -> wasmtime::Result<StorageErrorWit> {
        Ok(to_wit(err))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        expires_in_secs: Option<u64>,
        shared: bool,
    ) -> Result<(), StorageError> {
        let ttl = expires_in_secs.map(Duration::from_secs);
        let r = self.storage()?.set(&key, &value, ttl, shared).await;
        self.done(StorageOp::Set, r)
    }

    async fn get(&mut self, key: String, shared: bool) -> Result<Option<Vec<u8>>, StorageError> {
        let r = self.storage()?.get(&key, shared).await;
        self.done(StorageOp::Get, r)
    }

    async fn has(&mut self, key: String, shared: bool) -> Result<bool, StorageError> {
        let r = self.storage()?.has(&key, shared).await;
        self.done(StorageOp::Has, r)
    }

    async fn delete(&mut self, key: String, shared: bool) -> Result<(), StorageError> {
        let r = self.storage()?.delete(&key, shared).await;
        self.done(StorageOp::Delete, r)
    }

    async fn storage_size(&mut self) -> Result<u64, StorageError> {
        let r = self.storage()?.size().await;
        self.done(StorageOp::Size, r)
    }

    async fn storage_size_human(&mut self) -> Result<String, StorageError> {
        let r = self.storage()?.size().await;
        self.done(StorageOp::SizeHuman, r.map(human_size))
    }

    async fn namespace_size(&mut self) -> Result<u64, StorageError> {
        let usage = self.storage()?.usage();
        self.done(StorageOp::NamespaceSize, Ok(usage))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
        shared: bool,
    ) -> Result<storage::KeyPage, StorageError> {
        let r = self
            .storage()?
            .list_keys(&prefix, cursor.as_deref(), limit, shared)
            .await;
        let r = r.map(|page| storage::KeyPage {
            keys: page.keys,
            next: page.next,
        });
        self.done(StorageOp::ListKeys, r)
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        shared: bool,
    ) -> Result<i64, StorageError> {
        let r = self.storage()?.increment(&key, delta, shared).await;
        self.done(StorageOp::Increment, r)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        shared: bool,
    ) -> Result<bool, StorageError> {
        let r = self
            .storage()?
            .compare_and_swap(&key, expected.as_deref(), new.as_deref(), shared)
            .await;
        self.done(StorageOp::CompareAndSwap, r)
    }

    async fn get_many(
        &mut self,
        keys: Vec<String>,
        shared: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let r = self.storage()?.get_many(&keys, shared).await;
        self.done(StorageOp::GetMany, r)
    }

    async fn set_many(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
        expires_in_secs: Option<u64>,
        shared: bool,
    ) -> Result<(), StorageError> {
        let ttl = expires_in_secs.map(Duration::from_secs);
        let r = self.storage()?.set_many(&entries, ttl, shared).await;
        self.done(StorageOp::SetMany, r)
    }

    async fn delete_many(&mut self, keys: Vec<String>, shared: bool) -> Result<(), StorageError> {
        let r = self.storage()?.delete_many(&keys, shared).await;
        self.done(StorageOp::DeleteMany, r)
    }
}

impl chat::Host for PluginHost {
    fn say(&mut self, text: String) {
        let Some(replies) = self.replies.as_mut() else {
            tracing::warn!(plugin = %self.id, "say called outside a handler call; ignored");
            return;
        };
        if replies.said.len() >= MAX_REPLIES {
            replies.dropped += 1;
            return;
        }
        let text = match text::truncate(&text, MAX_REPLY_BYTES) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(cut) => {
                replies.cut += 1;
                cut
            }
        };
        replies.said.push(text);
    }
}

impl logging::Host for PluginHost {
    fn log(&mut self, level: logging::Level, message: String) {
        let level = match level {
            logging::Level::Trace => Level::Trace,
            logging::Level::Debug => Level::Debug,
            logging::Level::Info => Level::Info,
            logging::Level::Warn => Level::Warn,
            logging::Level::Error => Level::Error,
        };
        self.output.write(level, "log", &message);
    }
}

impl types::Host for PluginHost {}
