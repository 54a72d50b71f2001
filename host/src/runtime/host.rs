//! The host side of Warden's WIT interfaces: storage, chat and logging.

use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList, WasmStr};

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bindings::v2::warden::plugin::{chat, logging, storage, types};
use super::bindings::v2::wasi::config::store as config;
use super::bindings::{StorageErrorWit, v1};

use super::PluginState;
use super::output::{Level, Output};
use crate::metrics::{PluginMetrics, StorageFailure, StorageOp};
use crate::router::{Incoming, Reply};
use crate::storage::{BackendError, PluginStorage, StorageError, human_size};
use crate::text;

/// Most replies one handler call may send; more are dropped, and counted
/// in one warning when the call ends.
pub const MAX_REPLIES: usize = 100;
/// Longest reply in bytes; longer ones are cut at a character boundary.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Longest thread id a reply may name, in bytes (Slack's are 17).
pub const MAX_THREAD_BYTES: usize = 256;

/// What an instance that serves messages reaches: its plugin's storage,
/// the metrics its storage calls are counted in, and its settings.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The plugin's storage.
    pub storage: PluginStorage,
    /// The plugin's counters.
    pub metrics: Arc<PluginMetrics>,
    /// The plugin's settings, `[settings."ID"]` with every value resolved.
    pub settings: Arc<Settings>,
}

/// A plugin's settings: names and values. Values are secrets as far as the
/// host knows: they are never logged, counted or shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    /// The settings `values` hold.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self(values)
    }

    /// The value of setting `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether setting `name` has a value.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The names of the settings, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Settings {
    /// Names only: the values are secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// What a handler call answers: a message, whose sender and thread replies
/// may refer to, or a scheduled run, which has neither.
#[derive(Debug, Clone)]
pub(crate) enum CallContext {
    /// A call for a message.
    Message(Sender),
    /// A scheduled call.
    Schedule,
}

/// What replies need of the message being handled.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    user: String,
    id: Option<String>,
    thread: Option<String>,
}

impl From<&Incoming> for Sender {
    fn from(msg: &Incoming) -> Self {
        Self {
            user: msg.user.clone(),
            id: msg.id.clone(),
            thread: msg.thread.clone(),
        }
    }
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
    /// The plugin's settings; none while the manifest is read.
    settings: Arc<Settings>,
    /// `Some` while a handler call is under way.
    replies: Option<Replies>,
}

/// The replies of one handler call, and what was dropped or cut.
#[derive(Debug)]
struct Replies {
    context: CallContext,
    said: Vec<Reply>,
    dropped: usize,
    cut: usize,
}

impl PluginHost {
    /// The host side of an instance named `id` in logs, logging to
    /// `output`; without `serving` (while the manifest is read) it has no
    /// storage.
    pub(crate) fn new(id: Arc<str>, output: Output, serving: Option<Serving>) -> Self {
        let (storage, metrics, settings) = match serving {
            Some(Serving {
                storage,
                metrics,
                settings,
            }) => (Some(storage), Some(metrics), settings),
            None => (None, None, Arc::default()),
        };
        Self {
            id,
            output,
            storage,
            metrics,
            settings,
            replies: None,
        }
    }

    /// Where the plugin's log records go.
    pub(crate) fn output(&self) -> &Output {
        &self.output
    }

    /// Starts collecting replies, and the log budget, of a handler call
    /// that answers `context`.
    pub(crate) fn begin_call(&mut self, context: CallContext) {
        self.replies = Some(Replies {
            context,
            said: Vec::new(),
            dropped: 0,
            cut: 0,
        });
        self.output.begin_call();
    }

    /// Ends a handler call and returns its replies. What the call lost to
    /// the limits is logged here, once per call.
    pub(crate) fn end_call(&mut self) -> Vec<Reply> {
        self.output.end_call();
        let Some(replies) = self.replies.take() else {
            return Vec::new();
        };
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

    /// Adds a reply of the call under way, within the reply limits:
    /// `text` in `thread`, mentioning `mention`.
    fn send(&mut self, text: String, thread: Option<String>, mention: bool) {
        let Some(replies) = self.replies.as_mut() else {
            tracing::warn!(plugin = %self.id, "a reply sent outside a handler call was ignored");
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
        let mention = match (&replies.context, mention) {
            (CallContext::Message(sender), true) => Some(sender.user.clone()),
            _ => None,
        };
        replies.said.push(Reply {
            text,
            thread: thread.map(|t| text::truncate(&t, MAX_THREAD_BYTES).into_owned()),
            mention,
        });
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
    for interface in STORAGE_INTERFACES {
        link_immediate_in(linker, interface, immediate)?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

/// [`link_immediate`] for one version of the storage interface. The
/// versions' functions have the same types.
fn link_immediate_in(
    linker: &mut Linker<PluginState>,
    interface: &str,
    immediate: Immediate,
) -> wasmtime::Result<()> {
    let mut storage = linker.instance(interface)?;
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
    Ok(())
}

/// The names the storage interface is imported under, by contract.
const STORAGE_INTERFACES: [&str; 2] =
    ["warden:plugin/storage@0.2.0", "warden:plugin/storage@0.1.0"];

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
    fn say(&mut self, text: String, thread: Option<String>) {
        self.send(text, thread, false);
    }

    fn reply(&mut self, text: String, in_thread: bool) {
        // As Slack Machine: in a thread, no mention; otherwise in the
        // channel, mentioning the sender.
        let thread = match self.replies.as_ref().map(|r| &r.context) {
            Some(CallContext::Message(sender)) if in_thread => {
                sender.thread.clone().or_else(|| sender.id.clone())
            }
            _ => None,
        };
        let mention = !in_thread;
        self.send(text, thread, mention);
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

impl config::Host for PluginHost {
    fn get(&mut self, key: String) -> Result<Option<String>, config::Error> {
        Ok(self.settings.get(&key).map(str::to_owned))
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, config::Error> {
        Ok(self
            .settings
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

// The first contract's interfaces, forwarded to the current ones.

impl v1::warden::plugin::types::Host for PluginHost {}

impl v1::warden::plugin::chat::Host for PluginHost {
    fn say(&mut self, text: String) {
        self.send(text, None, false);
    }
}

impl v1::warden::plugin::logging::Host for PluginHost {
    fn log(&mut self, level: v1::warden::plugin::logging::Level, message: String) {
        use v1::warden::plugin::logging::Level as L1;
        let level = match level {
            L1::Trace => logging::Level::Trace,
            L1::Debug => logging::Level::Debug,
            L1::Info => logging::Level::Info,
            L1::Warn => logging::Level::Warn,
            L1::Error => logging::Level::Error,
        };
        logging::Host::log(self, level, message);
    }
}

impl v1::warden::plugin::storage::Host for PluginHost {
    fn convert_error(
        &mut self,
        err: StorageError,
    ) -> wasmtime::Result<v1::warden::plugin::storage::Error> {
        use v1::warden::plugin::storage::Error as E1;
        Ok(match to_wit(err) {
            StorageErrorWit::AccessDenied(m) => E1::AccessDenied(m),
            StorageErrorWit::InvalidKey(m) => E1::InvalidKey(m),
            StorageErrorWit::TooLarge(m) => E1::TooLarge(m),
            StorageErrorWit::QuotaExceeded(m) => E1::QuotaExceeded(m),
            StorageErrorWit::Backend(m) => E1::Backend(m),
            StorageErrorWit::InvalidValue(m) => E1::InvalidValue(m),
        })
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        expires_in_secs: Option<u64>,
        shared: bool,
    ) -> Result<(), StorageError> {
        storage::Host::set(self, key, value, expires_in_secs, shared).await
    }

    async fn get(&mut self, key: String, shared: bool) -> Result<Option<Vec<u8>>, StorageError> {
        storage::Host::get(self, key, shared).await
    }

    async fn has(&mut self, key: String, shared: bool) -> Result<bool, StorageError> {
        storage::Host::has(self, key, shared).await
    }

    async fn delete(&mut self, key: String, shared: bool) -> Result<(), StorageError> {
        storage::Host::delete(self, key, shared).await
    }

    async fn storage_size(&mut self) -> Result<u64, StorageError> {
        storage::Host::storage_size(self).await
    }

    async fn storage_size_human(&mut self) -> Result<String, StorageError> {
        storage::Host::storage_size_human(self).await
    }

    async fn namespace_size(&mut self) -> Result<u64, StorageError> {
        storage::Host::namespace_size(self).await
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
        shared: bool,
    ) -> Result<v1::warden::plugin::storage::KeyPage, StorageError> {
        let page = storage::Host::list_keys(self, prefix, cursor, limit, shared).await?;
        Ok(v1::warden::plugin::storage::KeyPage {
            keys: page.keys,
            next: page.next,
        })
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        shared: bool,
    ) -> Result<i64, StorageError> {
        storage::Host::increment(self, key, delta, shared).await
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        shared: bool,
    ) -> Result<bool, StorageError> {
        storage::Host::compare_and_swap(self, key, expected, new, shared).await
    }

    async fn get_many(
        &mut self,
        keys: Vec<String>,
        shared: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        storage::Host::get_many(self, keys, shared).await
    }

    async fn set_many(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
        expires_in_secs: Option<u64>,
        shared: bool,
    ) -> Result<(), StorageError> {
        storage::Host::set_many(self, entries, expires_in_secs, shared).await
    }

    async fn delete_many(&mut self, keys: Vec<String>, shared: bool) -> Result<(), StorageError> {
        storage::Host::delete_many(self, keys, shared).await
    }
}
