//! Key-value storage: the [`Backend`] trait, the built-in backends
//! ([`SledBackend`], [`RedisBackend`], [`MemoryBackend`]), and the
//! namespacing, grant-checking layer plugins see ([`PluginStorage`]).
//!
//! # Implementing your own backend
//!
//! A backend stores opaque byte keys and values with an optional expiry. It
//! never sees plugin identities or grants: [`PluginStorage`] namespaces every
//! key (see [`keys`]) and checks every grant and limit before a
//! call reaches the backend. Implement [`Backend`] and hand an
//! `Arc<dyn Backend>` to [`crate::HostBuilder::backend`]:
//!
//! ```
//! use std::time::Duration;
//! use warden::storage::{Backend, BackendError};
//!
//! #[derive(Debug, Default)]
//! struct Nothing;
//!
//! #[async_trait::async_trait]
//! impl Backend for Nothing {
//!     async fn get(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> { Ok(None) }
//!     async fn set(&self, _key: &[u8], _value: &[u8], _ttl: Option<Duration>) -> Result<(), BackendError> { Ok(()) }
//!     async fn delete(&self, _key: &[u8]) -> Result<(), BackendError> { Ok(()) }
//!     async fn has(&self, _key: &[u8]) -> Result<bool, BackendError> { Ok(false) }
//!     async fn size(&self) -> Result<u64, BackendError> { Ok(0) }
//!     async fn set_many(&self, _entries: &[(&[u8], &[u8])], _ttl: Option<Duration>) -> Result<(), BackendError> { Ok(()) }
//!     async fn delete_many(&self, _keys: &[&[u8]]) -> Result<(), BackendError> { Ok(()) }
//!     async fn increment(&self, _key: &[u8], delta: i64)
//!         -> Result<warden::storage::Counted, BackendError> { Ok(warden::storage::Counted::Value(delta)) }
//!     async fn compare_and_swap(&self, _key: &[u8], _expected: Option<&[u8]>, _new: Option<&[u8]>)
//!         -> Result<bool, BackendError> { Ok(false) }
//!     async fn scan(&self, _prefix: &[u8], _after: Option<&[u8]>, _limit: usize)
//!         -> Result<Vec<warden::storage::Entry>, BackendError> { Ok(Vec::new()) }
//!     async fn close(&self) -> Result<(), BackendError> { Ok(()) }
//! }
//! ```

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub mod admin;
pub mod bindings;
pub mod keys;
mod memory;
mod namespaced;
mod redis;
mod sled;

pub use memory::MemoryBackend;
pub use namespaced::{
    Grant, KeyPage, MAX_BATCH, PluginStorage, SharedAccess, StorageError, StorageLimits, Usage,
    human_size,
};
pub use redis::{Moving, RedisBackend, RedisClusterConfig, RedisConfig};
pub use sled::{SledBackend, SledConfig, SledOptions, SyncPolicy};

/// A failure of the store itself (I/O, corruption, a lost connection).
#[derive(Debug, thiserror::Error)]
#[error("{backend} backend: {message}")]
pub struct BackendError {
    /// Which backend failed, e.g. `sled`.
    pub backend: &'static str,
    /// What went wrong.
    pub message: String,
}

impl BackendError {
    /// A new error from `backend`.
    pub fn new(backend: &'static str, message: impl fmt::Display) -> Self {
        Self {
            backend,
            message: message.to_string(),
        }
    }
}

/// One stored entry, as [`Backend::scan`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The backend key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// When the entry expires, if it does.
    pub expires_at: Option<SystemTime>,
}

/// What an [`increment`](Backend::increment) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counted {
    /// The counter's new value.
    Value(i64),
    /// The key holds a value that is not a counter; nothing was changed.
    NotACounter,
    /// The result would not fit in 64 bits; nothing was changed.
    Overflow,
}

/// The value of a counter as stored: its decimal digits, as Redis keeps
/// them, which is also valid JSON.
pub fn counter_bytes(value: i64) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// The counter in a stored value, if it is one.
pub fn parse_counter(stored: &[u8]) -> Option<i64> {
    std::str::from_utf8(stored).ok()?.parse().ok()
}

/// Adds `delta` to the counter stored as `current` (absent: zero).
pub(crate) fn add_to_counter(current: Option<&[u8]>, delta: i64) -> Result<i64, Counted> {
    let base = match current {
        None => 0,
        Some(stored) => parse_counter(stored).ok_or(Counted::NotACounter)?,
    };
    base.checked_add(delta).ok_or(Counted::Overflow)
}

/// A key-value store that Warden can keep plugin data in.
///
/// Keys and values are opaque bytes. Implementations must be safe to call
/// from many tasks at once. Expiry semantics: a key set with
/// `expires_in = Some(d)` is absent for [`get`](Backend::get) and
/// [`has`](Backend::has) once `d` has passed, and its space is reclaimed
/// eventually (lazily, by [`purge_expired`](Backend::purge_expired), or by
/// the store itself). Setting a key again replaces its value and its expiry.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// The value under `key`, or `None` if it is missing or expired.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;
    /// Stores `value` under `key`, expiring after `expires_in` if given.
    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<(), BackendError>;
    /// Removes `key`; removing a missing key succeeds.
    async fn delete(&self, key: &[u8]) -> Result<(), BackendError>;
    /// Stores `value` under `key` as [`set`](Backend::set) does, and returns
    /// the length of the live value it replaced, if there was one: Warden
    /// counts each namespace's bytes for its quota with it. The default
    /// asks [`value_len`](Backend::value_len), then sets; a backend that
    /// learns the old value as it writes (sled's `insert` returns it) should
    /// override it and save the read.
    async fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<Option<u64>, BackendError> {
        let old = self.value_len(key).await?;
        self.set(key, value, expires_in).await?;
        Ok(old)
    }
    /// Removes `key` as [`delete`](Backend::delete) does, and returns the
    /// length of the live value it removed, if there was one. The default
    /// asks [`value_len`](Backend::value_len), then deletes.
    async fn remove(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        let old = self.value_len(key).await?;
        self.delete(key).await?;
        Ok(old)
    }
    /// The length of the live value under `key`, if any. The default reads
    /// the value; backends that can tell the length without copying it
    /// should say so.
    async fn value_len(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        Ok(self.get(key).await?.map(|v| v.len() as u64))
    }
    /// Whether `key` holds a value that has not expired.
    async fn has(&self, key: &[u8]) -> Result<bool, BackendError>;
    /// The size of the store in bytes, as the backend measures it (see each
    /// backend's documentation).
    async fn size(&self) -> Result<u64, BackendError>;
    /// Atomically adds `delta` to the signed 64-bit counter under `key`,
    /// creating it at `delta` when the key is missing, and keeps its expiry.
    /// A counter is stored as its decimal digits (see [`counter_bytes`]).
    async fn increment(&self, key: &[u8], delta: i64) -> Result<Counted, BackendError>;
    /// Atomically replaces the value under `key` with `new` (`None`:
    /// deletes it) if the value now there equals `expected` (`None`: the
    /// key is missing). A new value has no expiry. Returns whether it
    /// swapped.
    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError>;
    /// The live values under `keys`, in the same order (`None` where
    /// missing). The default reads them one by one; backends that can read
    /// them together as of one moment should.
    async fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }
    /// Stores every `(key, value)` pair, all or none, with one expiry for
    /// all. A key listed twice takes its last value.
    async fn set_many(
        &self,
        entries: &[(&[u8], &[u8])],
        expires_in: Option<Duration>,
    ) -> Result<(), BackendError>;
    /// Removes every key, all or none.
    async fn delete_many(&self, keys: &[&[u8]]) -> Result<(), BackendError>;
    /// Stores every pair as [`set_many`](Backend::set_many) does, and
    /// returns the length of the live value each key held before, in order
    /// (`None` where it held none): Warden counts each namespace's bytes for
    /// its quota with them, and lists each key once. The default asks
    /// [`value_len`](Backend::value_len) for each key, then calls
    /// `set_many`; a backend that learns the old values as it writes should
    /// override it, to save the reads and to report what the batch really
    /// replaced when other writers change the same keys meanwhile.
    async fn replace_many(
        &self,
        entries: &[(&[u8], &[u8])],
        expires_in: Option<Duration>,
    ) -> Result<Vec<Option<u64>>, BackendError> {
        let mut old = Vec::with_capacity(entries.len());
        for (key, _) in entries {
            old.push(self.value_len(key).await?);
        }
        self.set_many(entries, expires_in).await?;
        Ok(old)
    }
    /// Removes every key as [`delete_many`](Backend::delete_many) does, and
    /// returns the length of the live value each held, in order (`None`
    /// where it held none), as [`replace_many`](Backend::replace_many)
    /// does. The default asks [`value_len`](Backend::value_len) for each
    /// key, then calls `delete_many`.
    async fn remove_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        let mut old = Vec::with_capacity(keys.len());
        for key in keys {
            old.push(self.value_len(key).await?);
        }
        self.delete_many(keys).await?;
        Ok(old)
    }
    /// Up to `limit` live entries whose keys start with `prefix` and sort
    /// strictly after `after` (bytewise), in key order. Paging with the last
    /// key of one page as the next `after` visits every entry once.
    async fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError>;
    /// The bytes the namespace whose backend keys start with `prefix` holds
    /// (each key within the namespace and its value), if the backend keeps
    /// that count itself: then Warden reads it instead of scanning the
    /// namespace. `prefix` is a namespace's whole prefix (see
    /// [`keys::Keys::prefix`]). The default is `None`: Warden scans.
    async fn counted_bytes(&self, prefix: &[u8]) -> Result<Option<u64>, BackendError> {
        let _ = prefix;
        Ok(None)
    }
    /// Whether the backend checks each namespace's quota itself, in the same
    /// atomic step as each write that could grow it, through the
    /// `*_bounded` methods below, so that a quota holds exactly however
    /// many hosts share the store. Warden then calls those for every write
    /// of a plugin that may grow a namespace, instead of checking its own
    /// count. The default is `false`, and the `*_bounded` methods fail.
    fn bounds_quotas(&self) -> bool {
        false
    }
    /// [`replace_many`](Backend::replace_many) of keys of one namespace,
    /// refused, changing nothing, if it would take the namespace over its
    /// quota (see [`Quota`]).
    async fn replace_many_bounded(
        &self,
        entries: &[(&[u8], &[u8])],
        expires_in: Option<Duration>,
        quota: Quota<'_>,
    ) -> Result<Bounded<Vec<Option<u64>>>, BackendError> {
        let _ = (entries, expires_in, quota);
        Err(BackendError::new(
            "backend",
            "quotas are not checked by this backend",
        ))
    }
    /// [`increment`](Backend::increment) within the namespace's quota.
    async fn increment_bounded(
        &self,
        key: &[u8],
        delta: i64,
        quota: Quota<'_>,
    ) -> Result<Bounded<Counted>, BackendError> {
        let _ = (key, delta, quota);
        Err(BackendError::new(
            "backend",
            "quotas are not checked by this backend",
        ))
    }
    /// [`compare_and_swap`](Backend::compare_and_swap) within the
    /// namespace's quota.
    async fn compare_and_swap_bounded(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: Quota<'_>,
    ) -> Result<Bounded<bool>, BackendError> {
        let _ = (key, expected, new, quota);
        Err(BackendError::new(
            "backend",
            "quotas are not checked by this backend",
        ))
    }
    /// Makes every completed write durable and releases resources. Calls
    /// after `close` may fail.
    async fn close(&self) -> Result<(), BackendError>;
    /// Removes expired entries and returns how many it removed. Warden calls
    /// this periodically. The default does nothing, for stores that expire
    /// keys themselves.
    async fn purge_expired(&self) -> Result<u64, BackendError> {
        Ok(0)
    }
    /// The backend's reads that never wait, if it has them: those of a store
    /// in memory or of an embedded database, which answer from the calling
    /// thread. Warden then serves plugins' `get` and `has` through them,
    /// without the machinery of an async call into the host, a large share
    /// of the cost of a fast read. They must behave exactly as
    /// [`get`](Backend::get) and [`has`](Backend::has). The default is
    /// `None`, right for a backend that waits for a server or a disk.
    fn immediate_reads(&self) -> Option<&dyn ImmediateReads> {
        None
    }
    /// The backend's writes that never wait, if it has them (as
    /// [`immediate_reads`](Backend::immediate_reads), for plugins' `set`
    /// and `delete`), with the length reads and scans
    /// ([`ImmediateWrites::value_len_now`], [`ImmediateWrites::scan_now`])
    /// that the quota checks of those writes need. A
    /// backend that waits for the disk before it acknowledges a write (sled
    /// under `sync = "always"`) must not offer them. The default is `None`.
    fn immediate_writes(&self) -> Option<&dyn ImmediateWrites> {
        None
    }
}

/// The quota a bounded write keeps: the namespace whose backend keys start
/// with `prefix` (a whole namespace prefix, see [`keys::Keys::prefix`]) may
/// hold at most `max` bytes (its keys within it and their values) after a
/// write that grows it. A write that does not grow it is never refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota<'a> {
    /// The namespace's prefix.
    pub prefix: &'a [u8],
    /// Its quota in bytes.
    pub max: u64,
}

/// What a bounded write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bounded<T> {
    /// It was made (or, for an increment that was refused as not a counter,
    /// or a swap whose value differed, it changed nothing): what it
    /// returns, and the namespace's bytes after it.
    Written {
        /// What the unbounded call returns.
        value: T,
        /// The namespace's bytes afterwards, if the backend told them.
        bytes: Option<u64>,
    },
    /// The quota refused it, and nothing changed.
    Refused {
        /// The bytes the namespace would have held.
        would: u64,
    },
}

/// Writes that complete at once, from the calling thread (see
/// [`Backend::immediate_writes`]).
pub trait ImmediateWrites: Send + Sync {
    /// As [`Backend::replace`].
    fn replace_now(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<Option<u64>, BackendError>;
    /// As [`Backend::remove`].
    fn remove_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError>;
    /// As [`Backend::value_len`]: the quota check of a write near the quota
    /// reads the length it replaces.
    fn value_len_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError>;
    /// As [`Backend::scan`]: a write refused for the quota recounts the
    /// namespace first.
    fn scan_now(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError>;
}

/// Reads that answer at once, from the calling thread (see
/// [`Backend::immediate_reads`]).
pub trait ImmediateReads: Send + Sync {
    /// As [`Backend::get`].
    fn get_now(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;
    /// As [`Backend::has`].
    fn has_now(&self, key: &[u8]) -> Result<bool, BackendError>;
}

/// The time `millis` milliseconds after the Unix epoch.
/// Writes `data` into the shared keyspace, each key replacing what it held:
/// the config's `[shared_data]`, written when a host starts.
pub async fn seed_shared(
    backend: &dyn Backend,
    data: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<(), BackendError> {
    let shared = keys::Keys::of(crate::identity::Namespace::Shared);
    for (key, value) in data {
        backend.set(&shared.key(&key), &value, None).await?;
    }
    Ok(())
}

/// The data directory used when neither `--data` nor the config names one.
pub const DEFAULT_DATA_DIR: &str = "warden-data";

/// Which backend stores plugin data: the `backend` field of `[storage]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The embedded, persistent default.
    #[default]
    Sled,
    /// A Redis server, which several hosts can share.
    Redis,
    /// A Redis Cluster.
    RedisCluster,
    /// In memory; lost at exit.
    Memory,
}

impl BackendKind {
    const ALL: [BackendKind; 4] = [
        BackendKind::Sled,
        BackendKind::Redis,
        BackendKind::RedisCluster,
        BackendKind::Memory,
    ];

    /// Its name in the config: `sled`, `redis`, `redis-cluster` or
    /// `memory`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Sled => "sled",
            BackendKind::Redis => "redis",
            BackendKind::RedisCluster => "redis-cluster",
            BackendKind::Memory => "memory",
        }
    }

    /// The fields of its `[storage]` table, besides `backend`.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            BackendKind::Sled => crate::fields::of::<SledConfig>(),
            BackendKind::Redis => crate::fields::of::<RedisConfig>(),
            BackendKind::RedisCluster => crate::fields::of::<RedisClusterConfig>(),
            BackendKind::Memory => &[],
        }
    }
}

/// The `[storage]` table: the backend that keeps plugin data, and its
/// settings. Without a `backend` field it is sled.
///
/// The table holds `backend` and the fields of that backend. Fields of the
/// other built-in backends are ignored, so that switching backends (with
/// `WARDEN_STORAGE_BACKEND`, say) needs no change to the file; any other
/// field is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageConfig {
    /// `backend = "sled"`.
    Sled(SledConfig),
    /// `backend = "redis"`.
    Redis(RedisConfig),
    /// `backend = "redis-cluster"`.
    RedisCluster(RedisClusterConfig),
    /// `backend = "memory"`.
    Memory,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Sled(SledConfig::default())
    }
}

impl StorageConfig {
    /// Which backend it is.
    pub fn kind(&self) -> BackendKind {
        match self {
            StorageConfig::Sled(_) => BackendKind::Sled,
            StorageConfig::Redis(_) => BackendKind::Redis,
            StorageConfig::RedisCluster(_) => BackendKind::RedisCluster,
            StorageConfig::Memory => BackendKind::Memory,
        }
    }

    /// Opens the backend, as [`open`](Self::open) does, reporting to
    /// `report` the progress of moving a Redis database of the first layout
    /// (see [`RedisBackend`]) when there is one to move.
    pub async fn open_reporting(
        &self,
        data_dir: Option<&Path>,
        report: &(dyn Fn(Moving) + Sync),
    ) -> Result<Arc<dyn Backend>, BackendError> {
        match self {
            StorageConfig::Redis(redis) => Ok(Arc::new(
                RedisBackend::connect_reporting(&redis.url, &redis.prefix, report).await?,
            )),
            other => other.open(data_dir).await,
        }
    }

    /// Opens the backend. `data_dir` overrides sled's `path`.
    pub async fn open(&self, data_dir: Option<&Path>) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(match self {
            StorageConfig::Sled(sled) => Arc::new(sled.open(data_dir)?),
            StorageConfig::Redis(redis) => Arc::new(redis.open().await?),
            StorageConfig::RedisCluster(cluster) => Arc::new(cluster.open().await?),
            StorageConfig::Memory => Arc::new(MemoryBackend::new()),
        })
    }
}

impl<'de> serde::Deserialize<'de> for StorageConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut table = toml::Table::deserialize(deserializer)?;
        let kind = match table.remove("backend") {
            None => BackendKind::default(),
            Some(kind) => BackendKind::deserialize(kind).map_err(D::Error::custom)?,
        };
        for other in BackendKind::ALL.into_iter().filter(|k| *k != kind) {
            for field in other.fields() {
                if !kind.fields().contains(field) {
                    table.remove(*field);
                }
            }
        }
        let fields = toml::Value::Table(table);
        Ok(match kind {
            BackendKind::Sled => {
                StorageConfig::Sled(SledConfig::deserialize(fields).map_err(D::Error::custom)?)
            }
            BackendKind::Redis => {
                StorageConfig::Redis(RedisConfig::deserialize(fields).map_err(D::Error::custom)?)
            }
            BackendKind::RedisCluster => StorageConfig::RedisCluster(
                RedisClusterConfig::deserialize(fields).map_err(D::Error::custom)?,
            ),
            BackendKind::Memory => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct NoFields {}
                NoFields::deserialize(fields).map_err(D::Error::custom)?;
                StorageConfig::Memory
            }
        })
    }
}

pub(crate) fn from_millis(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

/// Milliseconds since the Unix epoch, the clock persistent expiry uses.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The absolute expiry time for a relative one, saturating far in the future.
pub(crate) fn deadline_millis(now: u64, expires_in: Duration) -> u64 {
    now.saturating_add(u64::try_from(expires_in.as_millis()).unwrap_or(u64::MAX))
}
