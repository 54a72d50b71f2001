//! The storage a plugin sees: bare keys, namespaced by its identity, with
//! shared access checked against the operator's grant.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::keys::Keys;
use super::{Backend, BackendError, Bounded, ImmediateReads, ImmediateWrites, Quota};
use crate::identity::{self, KeyError, Namespace, PluginId};
use crate::metrics::StorageFailure;

/// How much of the shared keyspace the operator granted a plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// No shared access (the default).
    #[default]
    None,
    /// `get` and `has` on shared keys.
    Read,
    /// Every operation on shared keys.
    ReadWrite,
}

impl Grant {
    fn can_read(self) -> bool {
        self != Grant::None
    }
    fn can_write(self) -> bool {
        self == Grant::ReadWrite
    }
}

/// A plugin's access to the shared keyspace: the whole keyspace (`shared`),
/// and key prefixes it may read (`read`) or read and write (`write`). A
/// `[grants."ID"]` table of the config, as the HTTP API shows it too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SharedAccess {
    /// Access to every shared key.
    pub shared: Grant,
    /// Prefixes of shared keys the plugin may read.
    pub read: Vec<String>,
    /// Prefixes of shared keys the plugin may read and write.
    pub write: Vec<String>,
}

impl From<Grant> for SharedAccess {
    fn from(shared: Grant) -> Self {
        Self {
            shared,
            ..Self::default()
        }
    }
}

impl SharedAccess {
    /// Whether the plugin may read (or, with `write`, write) shared `key`.
    /// For a listing, `key` is the listed prefix: every key listed starts
    /// with it, so a grant covering the prefix covers them all.
    pub fn allows(&self, key: &str, write: bool) -> bool {
        let covered = |prefixes: &[String]| prefixes.iter().any(|p| key.starts_with(p.as_str()));
        if write {
            self.shared.can_write() || covered(&self.write)
        } else {
            self.shared.can_read() || covered(&self.read) || covered(&self.write)
        }
    }
}

/// Bounds on what a plugin may store. Each protects the host and the store
/// from a plugin that writes without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageLimits {
    /// Longest key in bytes: keys are copied into every backend call and
    /// listing, so they stay small.
    pub max_key_bytes: usize,
    /// Largest value in bytes: a value is held in memory whole, in the host
    /// and in the plugin, on every read.
    pub max_value_bytes: usize,
    /// Most bytes of keys and values one namespace may hold, so one plugin
    /// cannot fill the store.
    pub max_stored_bytes: u64,
    /// Most bytes one call may return to the plugin: a value, the values of
    /// a batch (a key listed twice counts twice) or the keys of a listing
    /// page, since each is copied into the plugin's memory. A call over it
    /// fails with [`StorageError::ReadTooLarge`].
    pub max_read_bytes: u64,
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 512,
            max_value_bytes: 1024 * 1024,
            max_stored_bytes: 64 * 1024 * 1024,
            max_read_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Why a storage call from a plugin failed. Each maps onto the WIT
/// `storage.error` variant of the same name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Shared access beyond the plugin's grant.
    #[error("{0}")]
    AccessDenied(String),
    /// The key broke the key rules.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key as passed (truncated if long).
        key: String,
        /// The rule it broke.
        reason: KeyError,
    },
    /// The write would take the namespace over
    /// [`StorageLimits::max_stored_bytes`].
    #[error(
        "storing key {key:?} ({len} bytes) would take {namespace} to {would} bytes, over its \
         quota of {max} bytes"
    )]
    QuotaExceeded {
        /// The key.
        key: String,
        /// Its key and value bytes.
        len: u64,
        /// The namespace.
        namespace: Namespace,
        /// What the namespace would hold.
        would: u64,
        /// The quota.
        max: u64,
    },
    /// The stored value does not fit the operation: not a counter, or a
    /// counter that would overflow.
    #[error("{0}")]
    InvalidValue(String),
    /// A batch or listing asked for more keys than [`MAX_BATCH`].
    #[error("a batch of {count} keys; at most {max} are allowed")]
    TooMany {
        /// The keys asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The value is over [`StorageLimits::max_value_bytes`].
    #[error("the value for key {key:?} is {len} bytes; at most {max} are allowed")]
    TooLarge {
        /// The key it was to be stored under.
        key: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// What a call would return is over [`StorageLimits::max_read_bytes`].
    #[error(
        "{what} would return {len} bytes; at most {max} bytes may be returned by one call \
         ([limits] max_read_bytes)"
    )]
    ReadTooLarge {
        /// The call (with the key, for a single value), e.g. `get-many`.
        what: String,
        /// The bytes it would return.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl StorageError {
    /// What the plugin is told of the error: the case of the storage
    /// interface's `error` it becomes. A batch of more than [`MAX_BATCH`]
    /// keys and a read over `max_read_bytes` are `too-large`, as the
    /// interface documents ("the value, the batch, or what the call would
    /// return is over its size limit").
    pub fn kind(&self) -> StorageFailure {
        match self {
            StorageError::AccessDenied(_) => StorageFailure::AccessDenied,
            StorageError::InvalidKey { .. } => StorageFailure::InvalidKey,
            StorageError::QuotaExceeded { .. } => StorageFailure::QuotaExceeded,
            StorageError::InvalidValue(_) => StorageFailure::InvalidValue,
            StorageError::TooMany { .. }
            | StorageError::TooLarge { .. }
            | StorageError::ReadTooLarge { .. } => StorageFailure::TooLarge,
            StorageError::Backend(_) => StorageFailure::Backend,
        }
    }
}

/// Shortens a key for an error message so a huge key cannot flood logs.
fn shown(key: &str) -> String {
    const MAX: usize = 80;
    if key.len() <= MAX {
        return key.to_owned();
    }
    let mut end = MAX;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &key[..end])
}

/// The bytes (keys within the namespace, and values) one namespace holds,
/// as the host counts them for its quota.
///
/// Writes and deletes through [`PluginStorage`] keep the count. A write
/// that may grow the namespace reserves its growth in the count before it
/// reaches the store, in one atomic step that fails if the count would pass
/// the quota, so concurrent writers (several instances of one plugin)
/// cannot together take the namespace over it; once the store answers, the
/// count is corrected to what the write really replaced.
///
/// The reservation errs towards refusing: a write far from the quota
/// reserves its whole size, as if its key were new, and gives back what it
/// replaced once written, so a concurrent write near the quota may be
/// refused that would have fit a moment later. Only near the quota does a
/// write read what its key holds and reserve just its growth over that; if
/// another writer removes the same key meanwhile, the namespace can end up
/// over its quota by at most that value, and further growth is refused
/// until it deletes.
///
/// Expiry and writes by other hosts sharing the store are not seen, so the
/// host [recounts](Usage::recount) from the store periodically, and before
/// it refuses a write.
#[derive(Debug, Default)]
pub struct Usage {
    bytes: AtomicU64,
    /// The writes through this count: the low 32 bits count those in
    /// flight; the high 32 bits count every start and end of one (wrapping),
    /// so a recount can tell whether any write overlapped its scan.
    writes: AtomicU64,
}

/// One start or end of a write, in [`Usage::writes`].
const WRITE_EVENT: u64 = 1 << 32;
/// The writes in flight, in [`Usage::writes`].
const IN_FLIGHT: u64 = WRITE_EVENT - 1;

impl Usage {
    /// The bytes counted, including those reserved by writes in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Takes `bytes` as the count, as a backend that counts the namespace
    /// itself reported it after a write.
    fn counted(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::SeqCst);
    }

    /// Starts a write, with nothing reserved yet.
    fn begin(&self) -> Pending<'_> {
        // Before any change to `bytes`, so a recount that sees the change
        // sees the write too.
        self.writes.fetch_add(WRITE_EVENT + 1, Ordering::SeqCst);
        Pending {
            usage: self,
            charged: 0,
        }
    }

    /// Adds `up` bytes to the count and takes `down` away, stopping at 0.
    fn shift(&self, up: u64, down: u64) {
        if up > down {
            self.bytes.fetch_add(up - down, Ordering::SeqCst);
        } else if down > up {
            let _ = self
                .bytes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                    Some(b.saturating_sub(down - up))
                });
        }
    }

    /// Counts the namespace's live keys and values from the store, and
    /// returns the count in force afterwards.
    ///
    /// A write through this count that is in flight while the store is
    /// scanned may or may not be in what the scan saw, so if one started or
    /// ended during the scan, or was in flight when it began, the count is
    /// kept as it is and a later recount corrects it. Writes that start
    /// once the scan is over keep their reservations.
    pub async fn recount(
        &self,
        backend: &dyn Backend,
        namespace: &Namespace,
    ) -> Result<u64, BackendError> {
        let mut recount = Recount::start(self, namespace);
        if let Some(bytes) = backend.counted_bytes(&recount.prefix).await? {
            // The backend keeps the count: no scan.
            recount.total = bytes;
            recount.done = true;
        }
        while let Some(after) = recount.next_page() {
            let page = backend
                .scan(&recount.prefix, after.as_deref(), Recount::PAGE)
                .await?;
            recount.add(&page);
        }
        Ok(recount.finish())
    }

    /// [`recount`](Self::recount) through a backend's immediate scans.
    fn recount_now(
        &self,
        writes: &dyn ImmediateWrites,
        namespace: &Namespace,
    ) -> Result<u64, BackendError> {
        let mut recount = Recount::start(self, namespace);
        while let Some(after) = recount.next_page() {
            let page = writes.scan_now(&recount.prefix, after.as_deref(), Recount::PAGE)?;
            recount.add(&page);
        }
        Ok(recount.finish())
    }
}

/// A recount of one namespace under way: the pages scanned so far, and
/// what the count was when it started.
struct Recount<'u> {
    usage: &'u Usage,
    prefix: Vec<u8>,
    writes: u64,
    before: u64,
    total: u64,
    /// Where the next page starts: `None` before the first, then the last
    /// key of the page before; done once a page comes back short.
    after: Option<Vec<u8>>,
    done: bool,
}

impl<'u> Recount<'u> {
    const PAGE: usize = 1000;

    fn start(usage: &'u Usage, namespace: &Namespace) -> Self {
        Self {
            writes: usage.writes.load(Ordering::SeqCst),
            before: usage.bytes.load(Ordering::SeqCst),
            usage,
            prefix: Keys::of(namespace.clone()).prefix().to_vec(),
            total: 0,
            after: None,
            done: false,
        }
    }

    /// Where the next page starts, or `None` once every page is counted.
    fn next_page(&mut self) -> Option<Option<Vec<u8>>> {
        if self.done {
            return None;
        }
        Some(self.after.clone())
    }

    fn add(&mut self, page: &[super::Entry]) {
        self.total += page
            .iter()
            .map(|e| (e.key.len() - self.prefix.len() + e.value.len()) as u64)
            .sum::<u64>();
        self.done = page.len() < Self::PAGE;
        self.after = page.last().map(|e| e.key.clone());
    }

    /// Applies the recount, unless a write started or ended meanwhile (see
    /// [`Usage::recount`]); returns the count in force.
    fn finish(self) -> u64 {
        let usage = self.usage;
        if self.writes & IN_FLIGHT == 0 && usage.writes.load(Ordering::SeqCst) == self.writes {
            // Replace what was counted before the scan with what the scan
            // found, keeping what writes started since have changed.
            usage.shift(self.total, self.before);
        }
        usage.bytes()
    }
}

/// A write in flight in one namespace, and the bytes reserved for it in
/// the namespace's [`Usage`].
///
/// [`settle`](Pending::settle) it once the store has answered, or
/// [`release`](Pending::release) it if the write failed or changed nothing.
/// Dropped otherwise (the call was abandoned while the store worked), it
/// keeps its reservation, since the write may have happened: the count
/// errs high, towards refusing, until the next recount.
#[must_use]
struct Pending<'u> {
    usage: &'u Usage,
    /// The bytes added to the count ahead of the write.
    charged: u64,
}

impl Pending<'_> {
    /// Reserves `bytes` more for the write if the count stays within
    /// `max`; returns whether it did.
    fn reserve(&mut self, bytes: u64, max: u64) -> bool {
        if bytes == 0 {
            return true;
        }
        let reserved = self
            .usage
            .bytes
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |b| {
                b.checked_add(bytes).filter(|&total| total <= max)
            })
            .is_ok();
        if reserved {
            self.charged += bytes;
        }
        reserved
    }

    /// The write replaced `old` bytes with `new`: corrects the count from
    /// what was reserved to that.
    fn settle(mut self, old: u64, new: u64) {
        self.usage
            .shift(new, old.saturating_add(std::mem::take(&mut self.charged)));
    }

    /// The write failed or changed nothing: returns what was reserved.
    fn release(mut self) {
        self.usage.shift(0, std::mem::take(&mut self.charged));
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        // One more event, one fewer in flight (the low bits are at least 1,
        // so the subtraction borrows nothing from the events).
        self.usage
            .writes
            .fetch_add(WRITE_EVENT - 1, Ordering::SeqCst);
    }
}

/// One plugin's view of the store (Slack Machine's `PluginStorage`).
#[derive(Debug, Clone)]
pub struct PluginStorage {
    backend: Arc<dyn Backend>,
    own: Namespace,
    /// The backend-key prefixes of the plugin's own namespace and of the
    /// shared keyspace.
    own_keys: Keys,
    shared_keys: Keys,
    id: PluginId,
    access: SharedAccess,
    limits: StorageLimits,
    own_usage: Arc<Usage>,
    shared_usage: Arc<Usage>,
}

/// Most keys one batch call or one page of a listing may carry, so a plugin
/// cannot make the host hold an unbounded list.
pub const MAX_BATCH: usize = 1000;

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys in bytewise order, without their namespace.
    pub keys: Vec<String>,
    /// The cursor for the next page, if there may be one.
    pub next: Option<String>,
}

impl PluginStorage {
    /// Storage for plugin `id` with shared access `grant`. `shared_usage`
    /// counts the shared keyspace for every plugin of the host. The plugin's
    /// own usage starts at zero: call [`recount`](Self::recount) before
    /// relying on its quota.
    pub fn new(
        backend: Arc<dyn Backend>,
        id: PluginId,
        access: impl Into<SharedAccess>,
        limits: StorageLimits,
        shared_usage: Arc<Usage>,
    ) -> Self {
        let own = Namespace::Plugin(id.clone());
        Self {
            backend,
            own_keys: Keys::of(own.clone()),
            shared_keys: Keys::of(Namespace::Shared),
            own,
            id,
            access: access.into(),
            limits,
            own_usage: Arc::default(),
            shared_usage,
        }
    }

    /// Recounts the bytes of the plugin's own namespace from the store.
    pub async fn recount(&self) -> Result<u64, BackendError> {
        self.own_usage.recount(&*self.backend, &self.own).await
    }

    /// The bytes the plugin's own namespace holds, as last counted.
    pub fn usage(&self) -> u64 {
        self.own_usage.bytes()
    }

    fn namespace(&self, shared: bool) -> (&Namespace, &Usage) {
        if shared {
            (&Namespace::Shared, &self.shared_usage)
        } else {
            (&self.own, &self.own_usage)
        }
    }

    /// The quota of the namespace a write addresses, for a backend that
    /// checks it itself.
    fn quota(&self, shared: bool) -> Quota<'_> {
        let keys = if shared {
            &self.shared_keys
        } else {
            &self.own_keys
        };
        Quota {
            prefix: keys.prefix(),
            max: self.limits.max_stored_bytes,
        }
    }

    /// The value of a bounded write, keeping the namespace's count as the
    /// backend reported it; a refusal is the quota's error for `key`, a
    /// write of `len` bytes.
    fn bounded<T>(
        &self,
        written: Bounded<T>,
        key: &str,
        shared: bool,
        len: u64,
    ) -> Result<T, StorageError> {
        let (namespace, usage) = self.namespace(shared);
        match written {
            Bounded::Written { value, bytes } => {
                if let Some(bytes) = bytes {
                    usage.counted(bytes);
                }
                Ok(value)
            }
            Bounded::Refused { would } => Err(StorageError::QuotaExceeded {
                key: shown(key),
                len,
                namespace: namespace.clone(),
                would,
                max: self.limits.max_stored_bytes,
            }),
        }
    }

    /// The key and value bytes now stored under `raw` (bare key `key`).
    async fn stored_len(&self, raw: &[u8], key: &str) -> Result<u64, StorageError> {
        Ok(stored_bytes(key, self.backend.value_len(raw).await?))
    }

    /// The plugin this storage belongs to.
    pub fn plugin(&self) -> &PluginId {
        &self.id
    }

    /// Validates `key` and, for shared access, the grant; returns the
    /// backend key.
    fn resolve(&self, key: &str, shared: bool, write: bool) -> Result<Vec<u8>, StorageError> {
        identity::validate_key(key, self.limits.max_key_bytes).map_err(|reason| {
            StorageError::InvalidKey {
                key: shown(key),
                reason,
            }
        })?;
        let keys = if shared {
            self.check_shared(key, write, "key")?;
            &self.shared_keys
        } else {
            &self.own_keys
        };
        Ok(keys.key(key))
    }

    /// Refuses shared access to `key` (a key, or a listed prefix) that no
    /// grant covers, saying which grant would.
    fn check_shared(&self, key: &str, write: bool, what: &str) -> Result<(), StorageError> {
        if self.access.allows(key, write) {
            return Ok(());
        }
        let id = &self.id;
        let (verb, list, whole) = if write {
            ("write", "write", "read-write")
        } else {
            ("read", "read", "read")
        };
        Err(StorageError::AccessDenied(format!(
            "plugin {id} may not {verb} shared {what} {:?}: its grant is shared = {:?} with no \
             {list} prefix covering it; the operator can add a prefix of it to \
             [grants.\"{id}\"] {list} = [...], or set shared = \"{whole}\"",
            shown(key),
            grant_name(self.access.shared),
        )))
    }

    fn validate_all<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k str>,
        shared: bool,
        write: bool,
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        if keys.len() > MAX_BATCH {
            return Err(StorageError::TooMany {
                count: keys.len(),
                max: MAX_BATCH,
            });
        }
        keys.map(|key| self.resolve(key, shared, write)).collect()
    }

    /// Starts a write of `new` bytes, reserving them all as if the key
    /// held nothing now: one atomic step, which fails (returning `None`)
    /// only near the quota. The caller settles the reservation with what
    /// the write really replaced.
    fn reserve_new(&self, shared: bool, new: u64) -> Option<Pending<'_>> {
        let mut pending = self.namespace(shared).1.begin();
        pending
            .reserve(new, self.limits.max_stored_bytes)
            .then_some(pending)
    }

    /// Starts a write replacing `old` bytes (as read now) with `new`,
    /// reserving the growth, or refuses it if that would take the namespace
    /// over its quota. The count can be stale (expired keys, other hosts),
    /// so it is recounted before a refusal. A write that does not grow the
    /// namespace is never refused.
    async fn reserve_growth(
        &self,
        key: &str,
        shared: bool,
        old: u64,
        new: u64,
    ) -> Result<Pending<'_>, StorageError> {
        let (namespace, usage) = self.namespace(shared);
        if let Some(pending) = self.try_reserve_growth(shared, old, new) {
            return Ok(pending);
        }
        usage.recount(&*self.backend, namespace).await?;
        self.try_reserve_growth(shared, old, new)
            .ok_or_else(|| self.over_quota(key, shared, old, new))
    }

    /// [`reserve_growth`](Self::reserve_growth) through the backend's
    /// immediate scans.
    fn reserve_growth_now(
        &self,
        writes: &dyn ImmediateWrites,
        key: &str,
        shared: bool,
        old: u64,
        new: u64,
    ) -> Result<Pending<'_>, StorageError> {
        let (namespace, usage) = self.namespace(shared);
        if let Some(pending) = self.try_reserve_growth(shared, old, new) {
            return Ok(pending);
        }
        usage.recount_now(writes, namespace)?;
        self.try_reserve_growth(shared, old, new)
            .ok_or_else(|| self.over_quota(key, shared, old, new))
    }

    /// Reserves the growth of a write replacing `old` bytes with `new`, if
    /// the count allows it now. A refused reservation is not in flight, so
    /// a recount after it may replace the count.
    fn try_reserve_growth(&self, shared: bool, old: u64, new: u64) -> Option<Pending<'_>> {
        let mut pending = self.namespace(shared).1.begin();
        pending
            .reserve(new.saturating_sub(old), self.limits.max_stored_bytes)
            .then_some(pending)
    }

    /// The refusal of a write of `new` bytes, replacing `old`, under `key`.
    fn over_quota(&self, key: &str, shared: bool, old: u64, new: u64) -> StorageError {
        let (namespace, usage) = self.namespace(shared);
        StorageError::QuotaExceeded {
            key: shown(key),
            len: new,
            namespace: namespace.clone(),
            would: usage.bytes().saturating_sub(old).saturating_add(new),
            max: self.limits.max_stored_bytes,
        }
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        if value.len() > self.limits.max_value_bytes {
            return Err(StorageError::TooLarge {
                key: shown(key),
                len: value.len(),
                max: self.limits.max_value_bytes,
            });
        }
        Ok(())
    }

    /// Stores `value` under `key`.
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        expires_in: Option<Duration>,
        shared: bool,
    ) -> Result<(), StorageError> {
        let (raw, new) = self.check_set(key, value, shared)?;
        if self.backend.bounds_quotas() {
            let written = self
                .backend
                .replace_many_bounded(&[(&raw, value)], expires_in, self.quota(shared))
                .await?;
            return self.bounded(written, key, shared, new).map(drop);
        }
        let pending = match self.reserve_new(shared, new) {
            Some(pending) => pending,
            None => {
                let old = self.stored_len(&raw, key).await?;
                self.reserve_growth(key, shared, old, new).await?
            }
        };
        match self.backend.replace(&raw, value, expires_in).await {
            Ok(old) => {
                pending.settle(stored_bytes(key, old), new);
                Ok(())
            }
            Err(e) => {
                pending.release();
                Err(e.into())
            }
        }
    }

    /// [`set`](Self::set) through the backend's immediate writes; fails if
    /// it has none.
    pub fn set_now(
        &self,
        key: &str,
        value: &[u8],
        expires_in: Option<Duration>,
        shared: bool,
    ) -> Result<(), StorageError> {
        let writes = self.immediate_writes()?;
        let (raw, new) = self.check_set(key, value, shared)?;
        let pending = match self.reserve_new(shared, new) {
            Some(pending) => pending,
            None => {
                let old = stored_bytes(key, writes.value_len_now(&raw)?);
                self.reserve_growth_now(writes, key, shared, old, new)?
            }
        };
        match writes.replace_now(&raw, value, expires_in) {
            Ok(old) => {
                pending.settle(stored_bytes(key, old), new);
                Ok(())
            }
            Err(e) => {
                pending.release();
                Err(e.into())
            }
        }
    }

    /// Validates a write of `value` under `key`; returns the backend key
    /// and the bytes the entry will count for.
    fn check_set(
        &self,
        key: &str,
        value: &[u8],
        shared: bool,
    ) -> Result<(Vec<u8>, u64), StorageError> {
        let raw = self.resolve(key, shared, true)?;
        self.check_value(key, value)?;
        Ok((raw, (key.len() + value.len()) as u64))
    }

    /// The value under `key`; fails if it is longer than
    /// [`StorageLimits::max_read_bytes`].
    pub async fn get(&self, key: &str, shared: bool) -> Result<Option<Vec<u8>>, StorageError> {
        let raw = self.resolve(key, shared, false)?;
        let value = self.backend.get(&raw).await?;
        self.check_read(key, value)
    }

    /// Refuses to return `value`, read under `key`, if it is over
    /// [`StorageLimits::max_read_bytes`] (a value stored under larger
    /// limits, or by another host).
    fn check_read(
        &self,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match value {
            Some(v) if v.len() as u64 > self.limits.max_read_bytes => {
                Err(StorageError::ReadTooLarge {
                    what: format!("get of key {:?}", shown(key)),
                    len: v.len() as u64,
                    max: self.limits.max_read_bytes,
                })
            }
            value => Ok(value),
        }
    }

    /// Whether `key` holds a value.
    pub async fn has(&self, key: &str, shared: bool) -> Result<bool, StorageError> {
        let raw = self.resolve(key, shared, false)?;
        Ok(self.backend.has(&raw).await?)
    }

    fn immediate(&self) -> Result<&dyn ImmediateReads, StorageError> {
        self.backend
            .immediate_reads()
            .ok_or_else(|| no_immediate("reads"))
    }

    fn immediate_writes(&self) -> Result<&dyn ImmediateWrites, StorageError> {
        self.backend
            .immediate_writes()
            .ok_or_else(|| no_immediate("writes"))
    }

    /// [`get`](Self::get) through the backend's immediate reads; fails if
    /// it has none.
    pub fn get_now(&self, key: &str, shared: bool) -> Result<Option<Vec<u8>>, StorageError> {
        let raw = self.resolve(key, shared, false)?;
        let value = self.immediate()?.get_now(&raw)?;
        self.check_read(key, value)
    }

    /// [`has`](Self::has) through the backend's immediate reads; fails if
    /// it has none.
    pub fn has_now(&self, key: &str, shared: bool) -> Result<bool, StorageError> {
        let raw = self.resolve(key, shared, false)?;
        Ok(self.immediate()?.has_now(&raw)?)
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str, shared: bool) -> Result<(), StorageError> {
        let raw = self.resolve(key, shared, true)?;
        let pending = self.namespace(shared).1.begin();
        match self.backend.remove(&raw).await {
            Ok(old) => {
                pending.settle(stored_bytes(key, old), 0);
                Ok(())
            }
            Err(e) => {
                pending.release();
                Err(e.into())
            }
        }
    }

    /// [`delete`](Self::delete) through the backend's immediate writes;
    /// fails if it has none.
    pub fn delete_now(&self, key: &str, shared: bool) -> Result<(), StorageError> {
        let writes = self.immediate_writes()?;
        let raw = self.resolve(key, shared, true)?;
        let pending = self.namespace(shared).1.begin();
        match writes.remove_now(&raw) {
            Ok(old) => {
                pending.settle(stored_bytes(key, old), 0);
                Ok(())
            }
            Err(e) => {
                pending.release();
                Err(e.into())
            }
        }
    }

    /// The size of the whole store in bytes.
    pub async fn size(&self) -> Result<u64, StorageError> {
        Ok(self.backend.size().await?)
    }

    /// Keys starting with `prefix`, after `cursor`, at most `limit` (capped
    /// at [`MAX_BATCH`]), in bytewise order; fails if the keys of the page
    /// come to more than [`StorageLimits::max_read_bytes`].
    pub async fn list_keys(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
        shared: bool,
    ) -> Result<KeyPage, StorageError> {
        // The empty prefix lists everything; any other must be a valid key.
        if !prefix.is_empty() {
            identity::validate_key(prefix, self.limits.max_key_bytes).map_err(|reason| {
                StorageError::InvalidKey {
                    key: shown(prefix),
                    reason,
                }
            })?;
        }
        if shared {
            self.check_shared(prefix, false, "prefix")?;
        }
        let keys = if shared {
            &self.shared_keys
        } else {
            &self.own_keys
        };
        let after = match cursor {
            Some(cursor) => Some(self.resolve(cursor, shared, false)?),
            None => None,
        };
        let limit = usize::try_from(limit)
            .unwrap_or(MAX_BATCH)
            .clamp(1, MAX_BATCH);
        let raw_prefix = keys.key(prefix);
        let page = self
            .backend
            .scan(&raw_prefix, after.as_deref(), limit)
            .await?;
        let full = page.len() == limit;
        let keys: Vec<String> = page
            .into_iter()
            .filter_map(|e| {
                let key = e.key.strip_prefix(keys.prefix())?;
                String::from_utf8(key.to_vec()).ok()
            })
            .collect();
        let len: u64 = keys.iter().map(|k| k.len() as u64).sum();
        if len > self.limits.max_read_bytes {
            return Err(StorageError::ReadTooLarge {
                what: "list-keys".to_owned(),
                len,
                max: self.limits.max_read_bytes,
            });
        }
        let next = if full { keys.last().cloned() } else { None };
        Ok(KeyPage { keys, next })
    }

    /// Adds `delta` to the counter under `key`; returns its new value.
    pub async fn increment(
        &self,
        key: &str,
        delta: i64,
        shared: bool,
    ) -> Result<i64, StorageError> {
        let raw = self.resolve(key, shared, true)?;
        if self.backend.bounds_quotas() {
            let written = self
                .backend
                .increment_bounded(&raw, delta, self.quota(shared))
                .await?;
            let longest = key.len() as u64 + 20;
            return match self.bounded(written, key, shared, longest)? {
                super::Counted::Value(value) => Ok(value),
                counted => Err(not_counted(counted, key, delta)),
            };
        }
        // A counter's new length is known only once it is written, so the
        // longest one (i64::MIN's 20 characters) is reserved.
        let old = self.stored_len(&raw, key).await?;
        let longest = key.len() as u64 + 20;
        let pending = self
            .reserve_growth(key, shared, old, longest.max(old))
            .await?;
        let counted = match self.backend.increment(&raw, delta).await {
            Ok(counted) => counted,
            Err(e) => {
                pending.release();
                return Err(e.into());
            }
        };
        match counted {
            super::Counted::Value(value) => {
                let new = (key.len() + super::counter_bytes(value).len()) as u64;
                pending.settle(old, new);
                Ok(value)
            }
            counted => {
                pending.release();
                Err(not_counted(counted, key, delta))
            }
        }
    }

    /// Replaces the value under `key` with `new` if it is `expected`.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        shared: bool,
    ) -> Result<bool, StorageError> {
        let raw = self.resolve(key, shared, true)?;
        if let Some(new) = new {
            self.check_value(key, new)?;
        }
        // A swap replaces exactly `expected`.
        let old = expected.map_or(0, |v| (key.len() + v.len()) as u64);
        let new_len = new.map_or(0, |v| (key.len() + v.len()) as u64);
        if self.backend.bounds_quotas() {
            let written = self
                .backend
                .compare_and_swap_bounded(&raw, expected, new, self.quota(shared))
                .await?;
            return self.bounded(written, key, shared, new_len);
        }
        let pending = self.reserve_growth(key, shared, old, new_len).await?;
        match self.backend.compare_and_swap(&raw, expected, new).await {
            Ok(true) => {
                pending.settle(old, new_len);
                Ok(true)
            }
            Ok(false) => {
                pending.release();
                Ok(false)
            }
            Err(e) => {
                pending.release();
                Err(e.into())
            }
        }
    }

    /// The values under `keys`, in order; fails if they come to more than
    /// [`StorageLimits::max_read_bytes`], counting a key listed twice
    /// twice. Each distinct key is read once, and the total is checked
    /// before any value is copied for a repeated key.
    pub async fn get_many(
        &self,
        keys: &[String],
        shared: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let raw = self.validate_all(keys.iter().map(String::as_str), shared, false)?;
        // Where each listing's key is among the distinct keys.
        let mut distinct: Vec<&[u8]> = Vec::with_capacity(raw.len());
        let mut index: BTreeMap<&[u8], usize> = BTreeMap::new();
        let at: Vec<usize> = raw
            .iter()
            .map(|r| {
                *index.entry(&r[..]).or_insert_with(|| {
                    distinct.push(&r[..]);
                    distinct.len() - 1
                })
            })
            .collect();
        let mut values = self.backend.get_many(&distinct).await?;
        let len: u64 = at
            .iter()
            .map(|&i| values[i].as_ref().map_or(0, |v| v.len() as u64))
            .sum();
        if len > self.limits.max_read_bytes {
            return Err(StorageError::ReadTooLarge {
                what: "get-many".to_owned(),
                len,
                max: self.limits.max_read_bytes,
            });
        }
        // Each value is moved to its last listing and copied for the others.
        let mut remaining = vec![0usize; distinct.len()];
        for &i in &at {
            remaining[i] += 1;
        }
        Ok(at
            .iter()
            .map(|&i| {
                remaining[i] -= 1;
                if remaining[i] == 0 {
                    values[i].take()
                } else {
                    values[i].clone()
                }
            })
            .collect())
    }

    /// Stores every pair, all or none. A key listed more than once takes
    /// its last value, as [`Backend::set_many`] does, and counts once for
    /// the quota: the bytes it held before once, and its last value.
    pub async fn set_many(
        &self,
        entries: &[(String, Vec<u8>)],
        expires_in: Option<Duration>,
        shared: bool,
    ) -> Result<(), StorageError> {
        let raw = self.validate_all(entries.iter().map(|(k, _)| k.as_str()), shared, true)?;
        for (key, value) in entries {
            self.check_value(key, value)?;
        }
        let distinct = last_values(entries, &raw);
        let new: u64 = distinct
            .values()
            .map(|(key, value)| (key.len() + value.len()) as u64)
            .sum();
        if self.backend.bounds_quotas() {
            let pairs: Vec<(&[u8], &[u8])> = distinct.iter().map(|(r, (_, v))| (*r, *v)).collect();
            let written = self
                .backend
                .replace_many_bounded(&pairs, expires_in, self.quota(shared))
                .await?;
            let first = entries.first().map_or("", |(k, _)| k.as_str());
            return self.bounded(written, first, shared, new).map(drop);
        }
        let pending = match self.reserve_new(shared, new) {
            Some(pending) => pending,
            None => {
                let mut old = 0;
                for (raw, (key, _)) in &distinct {
                    old += self.stored_len(raw, key).await?;
                }
                let first = entries.first().map_or("", |(k, _)| k.as_str());
                self.reserve_growth(first, shared, old, new).await?
            }
        };
        let pairs: Vec<(&[u8], &[u8])> = distinct.iter().map(|(r, (_, v))| (*r, *v)).collect();
        match self.backend.replace_many(&pairs, expires_in).await {
            Ok(old) => {
                let old = distinct
                    .values()
                    .zip(old)
                    .map(|((key, _), len)| stored_bytes(key, len))
                    .sum();
                pending.settle(old, new);
                Ok(())
            }
            Err(e) => {
                pending.release();
                Err(e.into())
            }
        }
    }

    /// Removes every key, all or none. A key listed more than once is
    /// removed, and its bytes uncounted, once.
    pub async fn delete_many(&self, keys: &[String], shared: bool) -> Result<(), StorageError> {
        let raw = self.validate_all(keys.iter().map(String::as_str), shared, true)?;
        let distinct: BTreeMap<&[u8], &str> = raw
            .iter()
            .zip(keys)
            .map(|(r, k)| (&r[..], k.as_str()))
            .collect();
        let raw: Vec<&[u8]> = distinct.keys().copied().collect();
        let pending = self.namespace(shared).1.begin();
        match self.backend.remove_many(&raw).await {
            Ok(old) => {
                let old = distinct
                    .values()
                    .zip(old)
                    .map(|(key, len)| stored_bytes(key, len))
                    .sum();
                pending.settle(old, 0);
                Ok(())
            }
            Err(e) => {
                pending.release();
                Err(e.into())
            }
        }
    }
}

/// The error of an increment that changed nothing: the value was not a
/// counter, or adding `delta` would overflow it.
fn not_counted(counted: super::Counted, key: &str, delta: i64) -> StorageError {
    match counted {
        super::Counted::Overflow => StorageError::InvalidValue(format!(
            "adding {delta} to the counter under key {:?} would overflow 64 bits",
            shown(key)
        )),
        _ => StorageError::InvalidValue(format!(
            "the value under key {:?} is not a counter (a signed 64-bit integer in decimal)",
            shown(key)
        )),
    }
}

/// Each distinct backend key among `raw` (those of `entries`, in order)
/// with the bare key and the last value listed for it.
fn last_values<'e>(
    entries: &'e [(String, Vec<u8>)],
    raw: &'e [Vec<u8>],
) -> BTreeMap<&'e [u8], (&'e str, &'e [u8])> {
    raw.iter()
        .zip(entries)
        .map(|(r, (k, v))| (&r[..], (k.as_str(), v.as_slice())))
        .collect()
}

/// The error of an immediate call to a backend that has no immediate
/// `what` (`reads` or `writes`).
fn no_immediate(what: &str) -> StorageError {
    StorageError::Backend(BackendError::new(
        "warden",
        format!("this backend has no immediate {what}"),
    ))
}

/// The bytes key `key` counts for in its namespace's usage when it holds a
/// value of `len` bytes.
fn stored_bytes(key: &str, len: Option<u64>) -> u64 {
    len.map_or(0, |len| key.len() as u64 + len)
}

fn grant_name(grant: Grant) -> &'static str {
    match grant {
        Grant::None => "none",
        Grant::Read => "read",
        Grant::ReadWrite => "read-write",
    }
}

/// Formats a byte count for people, e.g. `32.0 KiB`.
pub fn human_size(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    humansize::format_size(bytes, humansize::BINARY.decimal_places(1).decimal_zeroes(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryBackend;

    fn storage(backend: &Arc<MemoryBackend>, id: &str, grant: Grant) -> PluginStorage {
        PluginStorage::new(
            backend.clone(),
            PluginId::new(id).unwrap(),
            grant,
            StorageLimits::default(),
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn plugins_see_only_their_own_keys() {
        let backend = Arc::new(MemoryBackend::new());
        let a = storage(&backend, "a.A", Grant::None);
        let b = storage(&backend, "b.B", Grant::None);
        a.set("k", b"from a", None, false).await.unwrap();
        b.set("k", b"from b", None, false).await.unwrap();
        assert_eq!(a.get("k", false).await.unwrap().unwrap(), b"from a");
        assert_eq!(b.get("k", false).await.unwrap().unwrap(), b"from b");
        b.delete("k", false).await.unwrap();
        assert!(a.has("k", false).await.unwrap());
        assert_eq!(
            backend.get(b"plugin:a.A:k").await.unwrap().unwrap(),
            b"from a"
        );
    }

    #[tokio::test]
    async fn shared_access_follows_the_grant() {
        let backend = Arc::new(MemoryBackend::new());
        let none = storage(&backend, "n.N", Grant::None);
        let read = storage(&backend, "r.R", Grant::Read);
        let rw = storage(&backend, "w.W", Grant::ReadWrite);
        rw.set("k", b"v", None, true).await.unwrap();
        assert_eq!(read.get("k", true).await.unwrap().unwrap(), b"v");
        assert!(read.has("k", true).await.unwrap());
        for e in [
            read.set("k", b"x", None, true).await.unwrap_err(),
            read.delete("k", true).await.unwrap_err(),
            none.get("k", true).await.unwrap_err(),
            none.has("k", true).await.unwrap_err(),
        ] {
            assert!(matches!(e, StorageError::AccessDenied(_)), "{e}");
        }
        let msg = read
            .set("k", b"x", None, true)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("r.R") && msg.contains("\"k\"") && msg.contains("read-write"),
            "{msg}"
        );
        assert_eq!(backend.get(b"shared:k").await.unwrap().unwrap(), b"v");
    }

    #[tokio::test]
    async fn limits_are_enforced_before_the_backend() {
        let backend = Arc::new(MemoryBackend::new());
        let s = PluginStorage::new(
            backend.clone(),
            PluginId::new("a.A").unwrap(),
            Grant::None,
            StorageLimits {
                max_key_bytes: 4,
                max_value_bytes: 3,
                ..StorageLimits::default()
            },
            Arc::default(),
        );
        assert!(matches!(
            s.set("toolong", b"v", None, false).await,
            Err(StorageError::InvalidKey { .. })
        ));
        assert!(matches!(
            s.get("", false).await,
            Err(StorageError::InvalidKey { .. })
        ));
        assert!(matches!(
            s.set("k", b"four", None, false).await,
            Err(StorageError::TooLarge { len: 4, max: 3, .. })
        ));
        assert_eq!(backend.size().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn quotas_bound_each_namespace() {
        let backend = Arc::new(MemoryBackend::new());
        let shared = Arc::new(Usage::default());
        let limits = StorageLimits {
            max_stored_bytes: 10,
            ..StorageLimits::default()
        };
        let id = PluginId::new("a.A").unwrap();
        let a = PluginStorage::new(
            backend.clone(),
            id,
            Grant::ReadWrite,
            limits,
            shared.clone(),
        );
        a.set("k", b"123456789", None, false).await.unwrap(); // 10 bytes: at the quota
        let e = a.set("j", b"1", None, false).await.unwrap_err();
        assert!(
            matches!(
                e,
                StorageError::QuotaExceeded {
                    would: 12,
                    max: 10,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().contains("plugin a.A") && e.to_string().contains("\"j\""),
            "{e}"
        );
        // Replacing a value with a smaller one, and deleting, always work.
        a.set("k", b"1", None, false).await.unwrap();
        assert_eq!(a.usage(), 2);
        a.set("j", b"1234567", None, false).await.unwrap();
        a.delete("j", false).await.unwrap();
        assert_eq!(a.usage(), 2);
        // The shared keyspace has its own count.
        a.set("s", b"123456789", None, true).await.unwrap();
        assert_eq!(shared.bytes(), 10);
        assert!(a.set("t", b"1", None, true).await.is_err());
        // Expired keys free their space once recounted.
        a.set("x", b"1234567", Some(Duration::from_millis(1)), false)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        a.set("y", b"1234567", None, false).await.unwrap();
        assert_eq!(a.usage(), 10);
    }

    /// Storage for plugin `a.A` whose namespace may hold `quota` bytes.
    fn with_quota(backend: &Arc<impl Backend + 'static>, quota: u64) -> PluginStorage {
        PluginStorage::new(
            backend.clone(),
            PluginId::new("a.A").unwrap(),
            Grant::None,
            StorageLimits {
                max_stored_bytes: quota,
                ..StorageLimits::default()
            },
            Arc::default(),
        )
    }

    fn entries(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect()
    }

    #[tokio::test]
    async fn a_key_listed_twice_in_set_many_counts_once() {
        let backend = Arc::new(MemoryBackend::new());
        let s = with_quota(&backend, 10);
        // Three listings of nine bytes each: only the last is stored.
        let batch = entries(&[("k", b"first..."), ("k", b"second.."), ("k", b"last")]);
        s.set_many(&batch, None, false).await.unwrap();
        assert_eq!(s.get("k", false).await.unwrap().unwrap(), b"last");
        assert_eq!(s.usage(), 5);
        assert_eq!(s.recount().await.unwrap(), 5);
        // Replacing the key counts what it held once, too.
        let batch = entries(&[("k", b"12345678"), ("k", b"12345678")]);
        s.set_many(&batch, None, false).await.unwrap();
        assert_eq!(s.usage(), 9);
        assert_eq!(s.recount().await.unwrap(), 9);
    }

    #[tokio::test]
    async fn a_key_listed_twice_in_delete_many_is_uncounted_once() {
        let backend = Arc::new(MemoryBackend::new());
        let s = with_quota(&backend, 20);
        s.set("a", b"123456789", None, false).await.unwrap();
        s.set("b", b"123456789", None, false).await.unwrap();
        let a = vec!["a".to_owned(); 3];
        s.delete_many(&a, false).await.unwrap();
        assert_eq!(s.usage(), 10, "b is still stored");
        // Repeating the deletion cannot make room beyond the quota.
        s.delete_many(&a, false).await.unwrap();
        s.set("c", b"123456789", None, false).await.unwrap();
        let e = s.set("d", b"123456789", None, false).await.unwrap_err();
        assert!(matches!(e, StorageError::QuotaExceeded { .. }), "{e}");
        assert_eq!(s.usage(), 20);
        assert_eq!(s.recount().await.unwrap(), 20);
    }

    /// A memory backend whose writes wait a while before they happen, so
    /// that concurrent writers interleave. Its immediate writes wait by
    /// sleeping.
    #[derive(Debug)]
    struct Slow(MemoryBackend, Duration, std::sync::atomic::AtomicUsize);

    impl Slow {
        fn new(wait: Duration) -> Self {
            Self(MemoryBackend::new(), wait, Default::default())
        }

        /// How many keys have been read so far.
        fn reads(&self) -> usize {
            self.2.load(Ordering::Relaxed)
        }
    }

    impl ImmediateWrites for Slow {
        fn replace_now(
            &self,
            key: &[u8],
            value: &[u8],
            expires_in: Option<Duration>,
        ) -> Result<Option<u64>, BackendError> {
            std::thread::sleep(self.1);
            self.0.replace_now(key, value, expires_in)
        }
        fn remove_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
            std::thread::sleep(self.1);
            self.0.remove_now(key)
        }
        fn value_len_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
            self.2.fetch_add(1, Ordering::Relaxed);
            self.0.value_len_now(key)
        }
        fn scan_now(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<crate::storage::Entry>, BackendError> {
            self.0.scan_now(prefix, after, limit)
        }
    }

    #[async_trait::async_trait]
    impl Backend for Slow {
        async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
            self.2.fetch_add(1, Ordering::Relaxed);
            self.0.get(key).await
        }
        async fn set(
            &self,
            key: &[u8],
            value: &[u8],
            expires_in: Option<Duration>,
        ) -> Result<(), BackendError> {
            self.replace(key, value, expires_in).await.map(drop)
        }
        async fn replace(
            &self,
            key: &[u8],
            value: &[u8],
            expires_in: Option<Duration>,
        ) -> Result<Option<u64>, BackendError> {
            tokio::time::sleep(self.1).await;
            self.0.replace(key, value, expires_in).await
        }
        async fn delete(&self, key: &[u8]) -> Result<(), BackendError> {
            self.remove(key).await.map(drop)
        }
        async fn remove(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
            tokio::time::sleep(self.1).await;
            self.0.remove(key).await
        }
        async fn has(&self, key: &[u8]) -> Result<bool, BackendError> {
            self.0.has(key).await
        }
        async fn size(&self) -> Result<u64, BackendError> {
            self.0.size().await
        }
        async fn set_many(
            &self,
            entries: &[(&[u8], &[u8])],
            expires_in: Option<Duration>,
        ) -> Result<(), BackendError> {
            self.replace_many(entries, expires_in).await.map(drop)
        }
        async fn replace_many(
            &self,
            entries: &[(&[u8], &[u8])],
            expires_in: Option<Duration>,
        ) -> Result<Vec<Option<u64>>, BackendError> {
            tokio::time::sleep(self.1).await;
            self.0.replace_many(entries, expires_in).await
        }
        async fn delete_many(&self, keys: &[&[u8]]) -> Result<(), BackendError> {
            tokio::time::sleep(self.1).await;
            self.0.delete_many(keys).await
        }
        async fn increment(
            &self,
            key: &[u8],
            delta: i64,
        ) -> Result<crate::storage::Counted, BackendError> {
            tokio::time::sleep(self.1).await;
            self.0.increment(key, delta).await
        }
        async fn compare_and_swap(
            &self,
            key: &[u8],
            expected: Option<&[u8]>,
            new: Option<&[u8]>,
        ) -> Result<bool, BackendError> {
            tokio::time::sleep(self.1).await;
            self.0.compare_and_swap(key, expected, new).await
        }
        async fn scan(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<crate::storage::Entry>, BackendError> {
            self.0.scan(prefix, after, limit).await
        }
        async fn close(&self) -> Result<(), BackendError> {
            Ok(())
        }
        async fn value_len(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
            self.0.value_len(key).await
        }
        fn immediate_writes(&self) -> Option<&dyn ImmediateWrites> {
            Some(self)
        }
    }

    /// The bytes the namespace of plugin `a.A` holds, counted from the
    /// store.
    async fn stored(backend: &dyn Backend) -> u64 {
        let id = PluginId::new("a.A").unwrap();
        Usage::default()
            .recount(backend, &Namespace::Plugin(id))
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_cannot_overshoot_the_quota() {
        let backend = Arc::new(Slow::new(Duration::from_millis(2)));
        // Room for ten of the 64 ten-byte entries.
        let s = with_quota(&backend, 100);
        // Recounts meanwhile must neither drop nor double the reservations
        // of the writes in flight.
        let recounts = {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    s.recount().await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(
                    async move { s.set(&format!("k{i:02}"), b"1234567", None, false).await },
                )
            })
            .collect();
        let mut kept = Vec::new();
        for (i, w) in writers.into_iter().enumerate() {
            match w.await.unwrap() {
                Ok(()) => kept.push(format!("k{i:02}")),
                Err(e) => assert!(matches!(e, StorageError::QuotaExceeded { .. }), "{e}"),
            }
        }
        assert_eq!(kept.len(), 10);
        assert_eq!(stored(&*backend).await, 100);
        // At the quota, replacing what is stored, alone or in a batch,
        // still fits; nothing new does.
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let s = s.clone();
                let key = format!("k{i:02}");
                let kept = kept.contains(&key);
                tokio::spawn(async move {
                    let batch = vec![(key.clone(), b"abcdefg".to_vec())];
                    let results = [
                        s.set(&key, b"7654321", None, false).await.is_ok(),
                        s.set_many(&batch, None, false).await.is_ok(),
                    ];
                    assert_eq!(results, [kept; 2], "{key}");
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        recounts.await.unwrap();
        assert_eq!(stored(&*backend).await, 100);
        assert_eq!(s.usage(), 100);
        assert_eq!(s.recount().await.unwrap(), 100);
    }

    #[test]
    fn concurrent_immediate_writers_cannot_overshoot_the_quota() {
        let backend = Arc::new(Slow::new(Duration::from_millis(1)));
        let s = with_quota(&backend, 1000);
        let start = std::sync::Barrier::new(4);
        let stored_entries: u64 = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let (s, start) = (&s, &start);
                    scope.spawn(move || {
                        start.wait();
                        (0..100)
                            .filter(|i| {
                                let key = format!("k{t}-{i:02}");
                                s.set_now(&key, b"12345", None, false).is_ok()
                            })
                            .count() as u64
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(stored_entries, 100);
        let id = PluginId::new("a.A").unwrap();
        let total = Usage::default()
            .recount_now(&*backend, &Namespace::Plugin(id))
            .unwrap();
        assert_eq!((total, s.usage()), (1000, 1000));
    }

    #[tokio::test]
    async fn a_recount_keeps_the_reservation_of_a_write_in_flight() {
        let backend = Arc::new(Slow::new(Duration::from_millis(200)));
        let s = PluginStorage::new(
            backend.clone(),
            PluginId::new("a.A").unwrap(),
            Grant::None,
            StorageLimits::default(),
            Arc::default(),
        );
        let write = tokio::spawn({
            let s = s.clone();
            async move { s.set("k", b"123456789", None, false).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The store does not hold the value yet; the count reserves it.
        assert_eq!(stored(&*backend).await, 0);
        assert_eq!(s.recount().await.unwrap(), 10);
        write.await.unwrap().unwrap();
        assert_eq!(s.usage(), 10);
        assert_eq!(s.recount().await.unwrap(), 10);
        // The same for a deletion: what it removes is taken off once.
        let delete = tokio::spawn({
            let s = s.clone();
            async move { s.delete("k", false).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.recount().await.unwrap();
        delete.await.unwrap().unwrap();
        s.set("j", b"1", None, false).await.unwrap();
        assert_eq!(s.usage(), 2);
        assert_eq!(s.recount().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn writes_that_fail_or_change_nothing_release_their_reservation() {
        let backend = Arc::new(MemoryBackend::new());
        // Far from the quota, so that nothing recounts.
        let s = with_quota(&backend, 1000);
        s.set("n", b"abc", None, false).await.unwrap();
        s.set("m", i64::MAX.to_string().as_bytes(), None, false)
            .await
            .unwrap();
        assert_eq!(s.usage(), 24);
        for _ in 0..100 {
            // Not a counter; overflow; swaps that find another value.
            assert!(s.increment("n", 1, false).await.is_err());
            assert!(s.increment("m", 1, false).await.is_err());
            let swapped = [
                s.compare_and_swap("n", Some(b"x"), Some(b"y"), false),
                s.compare_and_swap("new", Some(b"x"), Some(b"12345678"), false),
                s.compare_and_swap("n", None, Some(b"12345678"), false),
            ];
            for swapped in swapped {
                assert!(!swapped.await.unwrap());
            }
        }
        assert_eq!(s.usage(), 24);
        assert_eq!(s.recount().await.unwrap(), 24);
        // A counter is counted by its digits once written.
        assert_eq!(s.increment("c", -100, false).await.unwrap(), -100);
        let swapped = s.compare_and_swap("c", Some(b"-100"), Some(b"7"), false);
        assert!(swapped.await.unwrap());
        assert_eq!(s.usage(), 26);
        assert_eq!(s.recount().await.unwrap(), 26);
    }

    /// Storage for plugin `a.A` that may return at most `max_read_bytes`
    /// from one call.
    fn with_read_limit(
        backend: &Arc<impl Backend + 'static>,
        max_read_bytes: u64,
    ) -> PluginStorage {
        PluginStorage::new(
            backend.clone(),
            PluginId::new("a.A").unwrap(),
            Grant::None,
            StorageLimits {
                max_read_bytes,
                ..StorageLimits::default()
            },
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn a_value_over_the_read_limit_is_refused() {
        let backend = Arc::new(MemoryBackend::new());
        let s = with_read_limit(&backend, 10);
        s.set("k", &[7; 11], None, false).await.unwrap();
        s.set("ok", &[7; 10], None, false).await.unwrap();
        for e in [
            s.get("k", false).await.unwrap_err(),
            s.get_now("k", false).unwrap_err(),
        ] {
            assert!(
                matches!(
                    e,
                    StorageError::ReadTooLarge {
                        len: 11,
                        max: 10,
                        ..
                    }
                ),
                "{e}"
            );
            assert_eq!(
                e.to_string(),
                "get of key \"k\" would return 11 bytes; at most 10 bytes may be returned by \
                 one call ([limits] max_read_bytes)"
            );
        }
        assert_eq!(s.get("ok", false).await.unwrap().unwrap(), [7; 10]);
        assert_eq!(s.get_now("ok", false).unwrap().unwrap(), [7; 10]);
    }

    #[tokio::test]
    async fn get_many_counts_every_listing_and_reads_each_key_once() {
        let backend = Arc::new(Slow::new(Duration::ZERO));
        let s = PluginStorage::new(
            backend.clone(),
            PluginId::new("a.A").unwrap(),
            Grant::None,
            StorageLimits {
                max_value_bytes: 900_000,
                ..StorageLimits::default()
            },
            Arc::default(),
        );
        s.set("big", &vec![1; 900_000], None, false).await.unwrap();
        // 900 MB if every listing were copied: refused before any copy.
        let keys = vec!["big".to_owned(); 1000];
        let e = match s.get_many(&keys, false).await {
            Ok(values) => panic!("{} values returned", values.len()),
            Err(e) => e,
        };
        assert_eq!(
            e.to_string(),
            "get-many would return 900000000 bytes; at most 8388608 bytes may be returned by \
             one call ([limits] max_read_bytes)"
        );
        assert_eq!(backend.reads(), 1);
        // Under the limit, every listing gets its value, in order.
        s.set("a", b"1", None, false).await.unwrap();
        let keys: Vec<String> = ["a", "missing", "big", "a", "missing", "a"]
            .map(str::to_owned)
            .to_vec();
        let values = s.get_many(&keys, false).await.unwrap();
        assert_eq!(backend.reads(), 4);
        let lengths: Vec<Option<usize>> = values.iter().map(|v| v.as_ref().map(Vec::len)).collect();
        assert_eq!(
            lengths,
            [Some(1), None, Some(900_000), Some(1), None, Some(1)]
        );
        assert!(values[2].as_ref().unwrap().iter().all(|&b| b == 1));
        assert!(
            [0, 3, 5]
                .iter()
                .all(|&i| values[i].as_deref() == Some(b"1"))
        );
    }

    #[tokio::test]
    async fn a_listing_over_the_read_limit_is_refused() {
        let backend = Arc::new(MemoryBackend::new());
        let s = with_read_limit(&backend, 10);
        for key in ["aaaa", "bbbb", "cccc"] {
            s.set(key, b"", None, false).await.unwrap();
        }
        let e = s.list_keys("", None, 100, false).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "list-keys would return 12 bytes; at most 10 bytes may be returned by one call \
             ([limits] max_read_bytes)"
        );
        let page = s.list_keys("", None, 2, false).await.unwrap();
        assert_eq!(page.keys, ["aaaa", "bbbb"]);
    }

    #[test]
    fn human_sizes_have_one_decimal() {
        assert_eq!(human_size(32 * 1024), "32.0 KiB");
        assert_eq!(human_size(12), "12 B");
    }
}
