//! The storage a plugin sees: bare keys, namespaced by its identity, with
//! shared access checked against the operator's grant.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Backend, BackendError, ImmediateReads, ImmediateWrites};
use crate::identity::{self, KeyError, Namespace, PluginId};

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
/// and key prefixes it may read (`read`) or read and write (`write`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 512,
            max_value_bytes: 1024 * 1024,
            max_stored_bytes: 64 * 1024 * 1024,
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
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
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
/// Writes and deletes through [`PluginStorage`] keep the count; expiry and
/// writes by other hosts sharing the store do not, so the host
/// [recounts](Usage::recount) from the store periodically, and before it
/// refuses a write.
#[derive(Debug, Default)]
pub struct Usage {
    bytes: AtomicU64,
}

impl Usage {
    /// The bytes counted.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn replace(&self, old: u64, new: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(old).saturating_add(new))
            });
    }

    /// Counts the namespace's live keys and values from the store.
    pub async fn recount(
        &self,
        backend: &dyn Backend,
        namespace: &Namespace,
    ) -> Result<u64, BackendError> {
        const PAGE: usize = 1000;
        let prefix = identity::namespace_prefix(namespace);
        let (mut total, mut after) = (0u64, None::<Vec<u8>>);
        loop {
            let page = backend.scan(&prefix, after.as_deref(), PAGE).await?;
            total += page
                .iter()
                .map(|e| (e.key.len() - prefix.len() + e.value.len()) as u64)
                .sum::<u64>();
            if page.len() < PAGE {
                break;
            }
            after = page.last().map(|e| e.key.clone());
        }
        self.bytes.store(total, Ordering::Relaxed);
        Ok(total)
    }
}

/// One plugin's view of the store (Slack Machine's `PluginStorage`).
#[derive(Debug, Clone)]
pub struct PluginStorage {
    backend: Arc<dyn Backend>,
    own: Namespace,
    /// The backend-key prefixes of the plugin's own namespace and of the
    /// shared keyspace.
    own_prefix: Arc<[u8]>,
    shared_prefix: Arc<[u8]>,
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
            own_prefix: identity::namespace_prefix(&own).into(),
            shared_prefix: identity::namespace_prefix(&Namespace::Shared).into(),
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
        let prefix = if shared {
            self.check_shared(key, write, "key")?;
            &self.shared_prefix
        } else {
            &self.own_prefix
        };
        // The same bytes as `identity::encode_key`.
        let mut raw = Vec::with_capacity(prefix.len() + key.len());
        raw.extend_from_slice(prefix);
        raw.extend_from_slice(key.as_bytes());
        Ok(raw)
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

    /// Refuses a change of `old` to `new` bytes that would take the
    /// namespace over its quota.
    async fn check_quota(
        &self,
        key: &str,
        shared: bool,
        old: u64,
        new: u64,
    ) -> Result<(), StorageError> {
        let (namespace, usage) = self.namespace(shared);
        let max = self.limits.max_stored_bytes;
        let over = |held: u64| new > old && held.saturating_sub(old).saturating_add(new) > max;
        // The count can be stale (expired keys, other hosts): recount before
        // refusing.
        if over(usage.bytes()) && over(usage.recount(&*self.backend, namespace).await?) {
            return Err(StorageError::QuotaExceeded {
                key: shown(key),
                len: new,
                namespace: namespace.clone(),
                would: usage.bytes().saturating_sub(old).saturating_add(new),
                max,
            });
        }
        Ok(())
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
        if self.near_quota(shared, new) {
            self.check_replacing(&raw, key, shared, new).await?;
        }
        let old = self.backend.replace(&raw, value, expires_in).await?;
        self.namespace(shared)
            .1
            .replace(stored_bytes(key, old), new);
        Ok(())
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
        if self.near_quota(shared, new) {
            // A backend with immediate writes reads and scans without
            // waiting too (see `Backend::immediate_writes`): this future
            // completes on its first poll.
            futures::executor::block_on(self.check_replacing(&raw, key, shared, new))?;
        }
        let old = writes.replace_now(&raw, value, expires_in)?;
        self.namespace(shared)
            .1
            .replace(stored_bytes(key, old), new);
        Ok(())
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

    /// Whether a write of `new` bytes could take the namespace over its
    /// quota. A write that fits even if the key holds nothing now fits
    /// whatever it holds; only a write near the quota needs
    /// [`check_replacing`](Self::check_replacing), which reads the old value.
    fn near_quota(&self, shared: bool, new: u64) -> bool {
        let usage = self.namespace(shared).1;
        usage.bytes().saturating_add(new) > self.limits.max_stored_bytes
    }

    /// Refuses replacing what `raw` (bare key `key`) holds with `new` bytes
    /// if that would take the namespace over its quota.
    async fn check_replacing(
        &self,
        raw: &[u8],
        key: &str,
        shared: bool,
        new: u64,
    ) -> Result<(), StorageError> {
        let old = self.stored_len(raw, key).await?;
        self.check_quota(key, shared, old, new).await
    }

    /// The value under `key`.
    pub async fn get(&self, key: &str, shared: bool) -> Result<Option<Vec<u8>>, StorageError> {
        let raw = self.resolve(key, shared, false)?;
        Ok(self.backend.get(&raw).await?)
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
        Ok(self.immediate()?.get_now(&raw)?)
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
        let old = self.backend.remove(&raw).await?;
        self.namespace(shared).1.replace(stored_bytes(key, old), 0);
        Ok(())
    }

    /// [`delete`](Self::delete) through the backend's immediate writes;
    /// fails if it has none.
    pub fn delete_now(&self, key: &str, shared: bool) -> Result<(), StorageError> {
        let writes = self.immediate_writes()?;
        let raw = self.resolve(key, shared, true)?;
        let old = writes.remove_now(&raw)?;
        self.namespace(shared).1.replace(stored_bytes(key, old), 0);
        Ok(())
    }

    /// The size of the whole store in bytes.
    pub async fn size(&self) -> Result<u64, StorageError> {
        Ok(self.backend.size().await?)
    }

    /// Keys starting with `prefix`, after `cursor`, at most `limit` (capped
    /// at [`MAX_BATCH`]), in bytewise order.
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
        let namespace = self.namespace(shared).0;
        let after = match cursor {
            Some(cursor) => Some(self.resolve(cursor, shared, false)?),
            None => None,
        };
        let limit = usize::try_from(limit)
            .unwrap_or(MAX_BATCH)
            .clamp(1, MAX_BATCH);
        let raw_prefix = identity::encode_key(namespace, prefix);
        let page = self
            .backend
            .scan(&raw_prefix, after.as_deref(), limit)
            .await?;
        let full = page.len() == limit;
        let keys: Vec<String> = page
            .into_iter()
            .filter_map(|e| identity::decode_key(&e.key).map(|(_, k)| k.to_owned()))
            .collect();
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
        let old = self.stored_len(&raw, key).await?;
        // The longest counter is i64::MIN's 20 characters.
        let longest = key.len() as u64 + 20;
        self.check_quota(key, shared, old, longest.max(old)).await?;
        match self.backend.increment(&raw, delta).await? {
            super::Counted::Value(value) => {
                let new = (key.len() + super::counter_bytes(value).len()) as u64;
                self.namespace(shared).1.replace(old, new);
                Ok(value)
            }
            super::Counted::NotACounter => Err(StorageError::InvalidValue(format!(
                "the value under key {:?} is not a counter (a signed 64-bit integer in decimal)",
                shown(key)
            ))),
            super::Counted::Overflow => Err(StorageError::InvalidValue(format!(
                "adding {delta} to the counter under key {:?} would overflow 64 bits",
                shown(key)
            ))),
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
        let old = expected.map_or(0, |v| (key.len() + v.len()) as u64);
        let new_len = new.map_or(0, |v| (key.len() + v.len()) as u64);
        self.check_quota(key, shared, old, new_len).await?;
        let swapped = self.backend.compare_and_swap(&raw, expected, new).await?;
        if swapped {
            self.namespace(shared).1.replace(old, new_len);
        }
        Ok(swapped)
    }

    /// The values under `keys`, in order.
    pub async fn get_many(
        &self,
        keys: &[String],
        shared: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, StorageError> {
        let raw = self.validate_all(keys.iter().map(String::as_str), shared, false)?;
        let raw: Vec<&[u8]> = raw.iter().map(|r| &r[..]).collect();
        Ok(self.backend.get_many(&raw).await?)
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
        let (mut old, mut new) = (0u64, 0u64);
        for (raw, (key, value)) in &distinct {
            old += self.stored_len(raw, key).await?;
            new += (key.len() + value.len()) as u64;
        }
        let first = entries.first().map_or("", |(k, _)| k.as_str());
        self.check_quota(first, shared, old, new).await?;
        let pairs: Vec<(&[u8], &[u8])> = distinct.iter().map(|(r, (_, v))| (*r, *v)).collect();
        self.backend.set_many(&pairs, expires_in).await?;
        self.namespace(shared).1.replace(old, new);
        Ok(())
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
        let mut old = 0;
        for (raw, key) in &distinct {
            old += self.stored_len(raw, key).await?;
        }
        let raw: Vec<&[u8]> = distinct.into_keys().collect();
        self.backend.delete_many(&raw).await?;
        self.namespace(shared).1.replace(old, 0);
        Ok(())
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
    fn with_quota(backend: &Arc<MemoryBackend>, quota: u64) -> PluginStorage {
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

    #[test]
    fn human_sizes_have_one_decimal() {
        assert_eq!(human_size(32 * 1024), "32.0 KiB");
        assert_eq!(human_size(12), "12 B");
    }
}
