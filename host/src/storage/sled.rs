//! The embedded default backend, on [sled](https://docs.rs/sled).
//!
//! Every value is stored with an 8-byte big-endian header holding its expiry
//! time in milliseconds since the Unix epoch (`0` for never). A second tree,
//! `expiry`, indexes expiring keys by deadline so that
//! [`purge_expired`](Backend::purge_expired) reclaims their space without
//! scanning the whole store. A write or removal that displaces an expiring
//! value also removes that value's entry from the index, so the index holds
//! one entry per expiring key however often it is set. Expired values are
//! also dropped when read.
//!
//! [`size`](Backend::size) reports the database's size on disk.
//!
//! # Durability
//!
//! With [`SyncPolicy::Always`] (the default) a `set` or `delete` returns only once
//! it is on disk, so a write a plugin was told had succeeded survives a
//! crash. Concurrent writes share one flush: a writer that arrives while a
//! flush is under way waits for the next one, which covers every write made
//! meanwhile. [`SyncPolicy::Periodic`] returns at once and leaves the flush to
//! sled's background thread, every `sync_interval_ms`: faster, but a crash
//! loses the writes of the last interval.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use sled::Transactional;

use super::{
    Backend, BackendError, Counted, Entry, ImmediateReads, ImmediateWrites, add_to_counter,
    counter_bytes, deadline_millis, from_millis, now_millis,
};

const NAME: &str = "sled";
const HEADER: usize = 8;
const NEVER: u64 = 0;

/// When writes reach the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncPolicy {
    /// Before the write is acknowledged (the default).
    #[default]
    Always,
    /// In the background, every interval; a crash loses the last interval.
    Periodic,
}

/// `[storage] backend = "sled"`: the embedded, persistent default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SledConfig {
    /// The data directory. `--data` overrides it; the default is
    /// [`DEFAULT_DATA_DIR`](super::DEFAULT_DATA_DIR) in the working
    /// directory.
    pub path: Option<PathBuf>,
    /// When writes reach the disk. `always` (the default) flushes before a
    /// write is acknowledged; `periodic` every `sync_interval_ms`.
    pub sync: SyncPolicy,
    /// How often sled flushes in the background, in milliseconds.
    pub sync_interval_ms: u64,
}

impl Default for SledConfig {
    fn default() -> Self {
        let options = SledOptions::default();
        Self {
            path: None,
            sync: options.sync,
            sync_interval_ms: options.sync_interval_ms,
        }
    }
}

impl SledConfig {
    /// The options sled is opened with.
    pub fn options(&self) -> SledOptions {
        SledOptions {
            sync: self.sync,
            sync_interval_ms: self.sync_interval_ms,
        }
    }

    /// The data directory: `data_dir` when given, else `path`, else
    /// [`DEFAULT_DATA_DIR`](super::DEFAULT_DATA_DIR).
    pub fn dir(&self, data_dir: Option<&Path>) -> PathBuf {
        data_dir
            .map(Path::to_path_buf)
            .or_else(|| self.path.clone())
            .unwrap_or_else(|| PathBuf::from(super::DEFAULT_DATA_DIR))
    }

    /// Opens the database in [`dir`](Self::dir).
    pub fn open(&self, data_dir: Option<&Path>) -> Result<SledBackend, BackendError> {
        SledBackend::open_with(self.dir(data_dir), self.options())
    }
}

/// Whether the database file in `dir` is locked by another open of it
/// (another process, or another open in this one): what sled reports as a
/// plain I/O error when its own lock fails. sled takes the same advisory
/// lock on the same file.
fn held_by_another(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join("db")) else {
        return false;
    };
    // The lock, if taken here, goes when `file` is dropped.
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// How a sled database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledOptions {
    /// When writes reach the disk.
    pub sync: SyncPolicy,
    /// How often sled flushes in the background, in milliseconds.
    pub sync_interval_ms: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::Always,
            sync_interval_ms: 500,
        }
    }
}

/// A sled database in a directory.
#[derive(Debug)]
pub struct SledBackend {
    db: sled::Db,
    data: sled::Tree,
    expiry: sled::Tree,
    path: PathBuf,
    sync: SyncPolicy,
    /// Writes completed so far, numbered from 1.
    written: AtomicU64,
    /// Every write numbered up to this is on disk.
    flushed: AtomicU64,
    /// Held by the one task flushing at a time.
    flushing: tokio::sync::Mutex<()>,
    /// Flushes made to acknowledge writes.
    flushes: AtomicU64,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(NAME, e)
}

/// The expiry header of a stored value, or `None` if it is malformed.
fn split(stored: &[u8]) -> Option<(u64, &[u8])> {
    let (header, value) = stored.split_at_checked(HEADER)?;
    Some((u64::from_be_bytes(header.try_into().ok()?), value))
}

/// The deadline in a stored value's header, if it expires.
fn deadline(stored: &[u8]) -> Option<u64> {
    split(stored)
        .map(|(expires_at, _)| expires_at)
        .filter(|&expires_at| expires_at != NEVER)
}

/// A failed transaction over both trees as a backend error.
fn tx_err(e: sled::transaction::TransactionError<std::convert::Infallible>) -> BackendError {
    match e {
        sled::transaction::TransactionError::Storage(e) => err(e),
        sled::transaction::TransactionError::Abort(never) => match never {},
    }
}

fn live(expires_at: u64, now: u64) -> bool {
    expires_at == NEVER || now < expires_at
}

/// The length of the value in `stored` if it was live at `now`.
fn live_len(stored: Option<&[u8]>, now: u64) -> Option<u64> {
    let (expires_at, value) = split(stored?)?;
    live(expires_at, now).then_some(value.len() as u64)
}

impl SledBackend {
    /// Opens (creating if needed) the database in directory `path` with the
    /// default options: every write on disk before it is acknowledged.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        Self::open_with(path, SledOptions::default())
    }

    /// Opens (creating if needed) the database in directory `path`.
    pub fn open_with(path: impl AsRef<Path>, options: SledOptions) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        let db = sled::Config::new()
            .path(&path)
            .flush_every_ms(Some(options.sync_interval_ms))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(_) if held_by_another(&path) => BackendError::new(
                    NAME,
                    format!(
                        "the database in {} is in use by another process (a running \
                             `warden run`?); stop it first",
                        path.display()
                    ),
                ),
                e => BackendError::new(
                    NAME,
                    format!("cannot open the database in {}: {e}", path.display()),
                ),
            })?;
        let data = db.open_tree("data").map_err(err)?;
        let expiry = db.open_tree("expiry").map_err(err)?;
        Ok(Self {
            db,
            data,
            expiry,
            path,
            sync: options.sync,
            written: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            flushing: tokio::sync::Mutex::new(()),
            flushes: AtomicU64::new(0),
        })
    }

    /// Under [`SyncPolicy::Always`], waits until the write just completed is on
    /// disk, sharing one flush among concurrent writers.
    async fn sync_write(&self) -> Result<(), BackendError> {
        if self.sync != SyncPolicy::Always {
            return Ok(());
        }
        let mine = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        loop {
            if self.flushed.load(Ordering::SeqCst) >= mine {
                return Ok(());
            }
            let _leader = self.flushing.lock().await;
            if self.flushed.load(Ordering::SeqCst) >= mine {
                return Ok(());
            }
            // Every write numbered up to `covered` completed before this
            // flush starts, so the flush makes them all durable.
            let covered = self.written.load(Ordering::SeqCst);
            let db = self.db.clone();
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(err)?
                .map_err(err)?;
            self.flushed.fetch_max(covered, Ordering::SeqCst);
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many flushes acknowledged writes have waited for so far. Under
    /// [`SyncPolicy::Always`] concurrent writes share flushes, so this grows
    /// more slowly than the number of writes.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads a live value, dropping it if it has expired.
    fn read(&self, key: &[u8]) -> Result<Option<sled::IVec>, BackendError> {
        let Some(stored) = self.data.get(key).map_err(err)? else {
            return Ok(None);
        };
        let (expires_at, _) = split(&stored).ok_or_else(|| {
            err(format!(
                "corrupt value under key {:?}",
                String::from_utf8_lossy(key)
            ))
        })?;
        if live(expires_at, now_millis()) {
            return Ok(Some(stored));
        }
        // Remove it unless a concurrent writer has replaced it meanwhile.
        if self
            .data
            .compare_and_swap(key, Some(&stored), None::<&[u8]>)
            .map_err(err)?
            .is_ok()
        {
            self.unindex(key, Some(&stored), NEVER)?;
        }
        Ok(None)
    }

    /// Writes a value, without waiting for the disk; returns the length
    /// of the live value it replaced.
    fn write_value(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<Option<u64>, BackendError> {
        let now = now_millis();
        let expires_at = match expires_in {
            // A deadline of exactly 0 would read as "never".
            Some(d) => deadline_millis(now, d).max(1),
            None => NEVER,
        };
        if expires_at != NEVER {
            // Index first: a crash between the two writes leaves an index
            // entry that the purge checks against the value and discards.
            self.expiry
                .insert(Self::expiry_index_key(expires_at, key), &[])
                .map_err(err)?;
        }
        let mut stored = Vec::with_capacity(HEADER + value.len());
        stored.extend_from_slice(&expires_at.to_be_bytes());
        stored.extend_from_slice(value);
        let old = self.data.insert(key, stored).map_err(err)?;
        self.unindex(key, old.as_deref(), expires_at)?;
        Ok(live_len(old.as_deref(), now))
    }

    /// Removes the index entry of `old`, the value a write under `key`
    /// displaced, unless the value now there (expiring at `kept`, or
    /// [`NEVER`]) shares it. A crash before this leaves an entry that the
    /// purge checks against the value and discards.
    fn unindex(&self, key: &[u8], old: Option<&[u8]>, kept: u64) -> Result<(), BackendError> {
        if let Some(old) = old.and_then(deadline)
            && old != kept
        {
            self.expiry
                .remove(Self::expiry_index_key(old, key))
                .map_err(err)?;
        }
        Ok(())
    }

    /// How many entries the expiry index holds: one for each stored key
    /// that expires, until [`purge_expired`](Backend::purge_expired) removes
    /// those due (and, after a crash, possibly one for a value already
    /// replaced, which the purge discards).
    pub fn expiry_index_len(&self) -> usize {
        self.expiry.len()
    }

    /// Removes a value, without waiting for the disk; returns the length of
    /// the live value it removed.
    fn remove_value(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        let now = now_millis();
        let old = self.data.remove(key).map_err(err)?;
        self.unindex(key, old.as_deref(), NEVER)?;
        Ok(live_len(old.as_deref(), now))
    }

    /// Under [`SyncPolicy::Always`], flushes to disk from the calling thread.
    fn sync_now(&self) -> Result<(), BackendError> {
        if self.sync == SyncPolicy::Always {
            self.db.flush().map_err(err)?;
        }
        Ok(())
    }

    fn expiry_index_key(deadline: u64, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(HEADER + key.len());
        k.extend_from_slice(&deadline.to_be_bytes());
        k.extend_from_slice(key);
        k
    }
}

/// Under [`SyncPolicy::Always`] these flush from the calling thread before
/// they return; [`Backend::immediate_writes`] offers them only under
/// [`SyncPolicy::Periodic`], where they never wait.
impl ImmediateWrites for SledBackend {
    fn replace_now(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<Option<u64>, BackendError> {
        let old = self.write_value(key, value, expires_in)?;
        self.sync_now()?;
        Ok(old)
    }

    fn remove_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        let old = self.remove_value(key)?;
        self.sync_now()?;
        Ok(old)
    }

    fn value_len_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        // sled hands out a shared buffer: no copy of the value is made.
        Ok(self.read(key)?.map(|stored| (stored.len() - HEADER) as u64))
    }

    fn scan_now(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        scan_tree(&self.data, prefix, after, limit)
    }
}

/// Up to `limit` live entries of `data` whose key starts with `prefix`,
/// after `after`, in key order.
fn scan_tree(
    data: &sled::Tree,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Entry>, BackendError> {
    let now = now_millis();
    let start = match after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    };
    let mut out = Vec::new();
    for item in data.range::<&[u8], _>((start, Bound::Unbounded)) {
        if out.len() >= limit {
            break;
        }
        let (key, stored) = item.map_err(err)?;
        if !key.starts_with(prefix) {
            break;
        }
        let (expires_at, value) = split(&stored).ok_or_else(|| {
            err(format!(
                "corrupt value under key {:?}",
                String::from_utf8_lossy(&key)
            ))
        })?;
        if live(expires_at, now) {
            out.push(Entry {
                key: key.to_vec(),
                value: value.to_vec(),
                expires_at: (expires_at != NEVER).then(|| from_millis(expires_at)),
            });
        }
    }
    Ok(out)
}

/// Removes the values of `data` whose expiry `expiry` records as past, and
/// their index entries; returns how many values were removed.
fn purge_trees(data: &sled::Tree, expiry: &sled::Tree) -> Result<u64, BackendError> {
    let now = now_millis();
    let mut removed = 0;
    for entry in expiry.range(..SledBackend::expiry_index_key(now, &[])) {
        let (index_key, _) = entry.map_err(err)?;
        let key = &index_key[HEADER..];
        if let Some(stored) = data.get(key).map_err(err)?
            && let Some((expires_at, _)) = split(&stored)
            && !live(expires_at, now)
            && data
                .compare_and_swap(key, Some(&stored), None::<&[u8]>)
                .map_err(err)?
                .is_ok()
        {
            removed += 1;
        }
        expiry.remove(&index_key).map_err(err)?;
    }
    Ok(removed)
}

impl ImmediateReads for SledBackend {
    fn get_now(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.read(key)?.map(|stored| stored[HEADER..].to_vec()))
    }

    fn has_now(&self, key: &[u8]) -> Result<bool, BackendError> {
        Ok(self.read(key)?.is_some())
    }
}

#[async_trait::async_trait]
impl Backend for SledBackend {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.get_now(key)
    }

    fn immediate_reads(&self) -> Option<&dyn ImmediateReads> {
        // Reads come from sled's page cache or, on a miss, a short read of
        // a local file, as `get` does.
        Some(self)
    }

    fn immediate_writes(&self) -> Option<&dyn ImmediateWrites> {
        // Under `always` a write waits for its flush, shared with the
        // writes made meanwhile: that must not block the thread.
        (self.sync == SyncPolicy::Periodic).then_some(self as &dyn ImmediateWrites)
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
        let old = self.write_value(key, value, expires_in)?;
        self.sync_write().await?;
        Ok(old)
    }

    async fn delete(&self, key: &[u8]) -> Result<(), BackendError> {
        self.remove(key).await.map(drop)
    }

    async fn remove(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        let old = self.remove_value(key)?;
        self.sync_write().await?;
        Ok(old)
    }

    async fn has(&self, key: &[u8]) -> Result<bool, BackendError> {
        self.has_now(key)
    }

    async fn value_len(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        self.value_len_now(key)
    }

    async fn size(&self) -> Result<u64, BackendError> {
        self.db.size_on_disk().map_err(err)
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
        let now = now_millis();
        let expires_at = match expires_in {
            Some(d) => deadline_millis(now, d).max(1),
            None => NEVER,
        };
        let stored: Vec<sled::IVec> = entries
            .iter()
            .map(|(_, value)| {
                let mut stored = Vec::with_capacity(HEADER + value.len());
                stored.extend_from_slice(&expires_at.to_be_bytes());
                stored.extend_from_slice(value);
                stored.into()
            })
            .collect();
        // One transaction over both trees: the values and their index
        // entries, all or none.
        let old = (&self.data, &self.expiry)
            .transaction(|(data, expiry)| {
                let mut lengths = Vec::with_capacity(entries.len());
                for ((key, _), stored) in entries.iter().zip(&stored) {
                    if expires_at != NEVER {
                        expiry.insert(Self::expiry_index_key(expires_at, key), &[])?;
                    }
                    let old = data.insert(*key, stored.clone())?;
                    if let Some(old) = old.as_deref().and_then(deadline)
                        && old != expires_at
                    {
                        expiry.remove(Self::expiry_index_key(old, key))?;
                    }
                    lengths.push(live_len(old.as_deref(), now));
                }
                Ok(lengths)
            })
            .map_err(tx_err)?;
        self.sync_write().await?;
        Ok(old)
    }

    async fn delete_many(&self, keys: &[&[u8]]) -> Result<(), BackendError> {
        self.remove_many(keys).await.map(drop)
    }

    async fn remove_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        let now = now_millis();
        let old = (&self.data, &self.expiry)
            .transaction(|(data, expiry)| {
                let mut lengths = Vec::with_capacity(keys.len());
                for key in keys {
                    let old = data.remove(*key)?;
                    if let Some(old) = old.as_deref().and_then(deadline) {
                        expiry.remove(Self::expiry_index_key(old, key))?;
                    }
                    lengths.push(live_len(old.as_deref(), now));
                }
                Ok(lengths)
            })
            .map_err(tx_err)?;
        self.sync_write().await?;
        Ok(old)
    }

    async fn increment(&self, key: &[u8], delta: i64) -> Result<Counted, BackendError> {
        let now = now_millis();
        loop {
            let old = self.data.get(key).map_err(err)?;
            let live = old
                .as_deref()
                .and_then(split)
                .filter(|(expires_at, _)| live(*expires_at, now));
            let value = match add_to_counter(live.map(|(_, v)| v), delta) {
                Ok(value) => value,
                Err(refused) => return Ok(refused),
            };
            let expires_at = live.map_or(NEVER, |(expires_at, _)| expires_at);
            let mut stored = expires_at.to_be_bytes().to_vec();
            stored.extend_from_slice(&counter_bytes(value));
            // Retry if another writer changed the key since it was read.
            if self
                .data
                .compare_and_swap(key, old.as_ref(), Some(stored))
                .map_err(err)?
                .is_ok()
            {
                self.unindex(key, old.as_deref(), expires_at)?;
                self.sync_write().await?;
                return Ok(Counted::Value(value));
            }
        }
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        let now = now_millis();
        loop {
            let old = self.data.get(key).map_err(err)?;
            let current = old
                .as_deref()
                .and_then(split)
                .filter(|(expires_at, _)| live(*expires_at, now))
                .map(|(_, v)| v);
            if current != expected {
                return Ok(false);
            }
            let stored = new.map(|value| {
                let mut stored = NEVER.to_be_bytes().to_vec();
                stored.extend_from_slice(value);
                stored
            });
            if self
                .data
                .compare_and_swap(key, old.as_ref(), stored)
                .map_err(err)?
                .is_ok()
            {
                self.unindex(key, old.as_deref(), NEVER)?;
                self.sync_write().await?;
                return Ok(true);
            }
        }
    }

    async fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        // A page of a range walk: done on the blocking pool, as the purge.
        let data = self.data.clone();
        let (prefix, after) = (prefix.to_vec(), after.map(<[u8]>::to_vec));
        tokio::task::spawn_blocking(move || scan_tree(&data, &prefix, after.as_deref(), limit))
            .await
            .map_err(|e| err(format!("scanning failed: {e}")))?
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.db.flush_async().await.map_err(err)?;
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        // It walks every key due: on the blocking pool, off the workers.
        let (data, expiry) = (self.data.clone(), self.expiry.clone());
        tokio::task::spawn_blocking(move || purge_trees(&data, &expiry))
            .await
            .map_err(|e| err(format!("purging failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expired_values_are_purged_and_their_index_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let db = SledBackend::open(dir.path()).unwrap();
        db.set(b"short", b"v", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        db.set(b"long", b"v", Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        // Re-set without expiry: the stale index entry must not delete it.
        db.set(b"kept", b"v", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        db.set(b"kept", b"v2", None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(db.purge_expired().await.unwrap(), 1);
        assert_eq!(db.data.get(b"short").unwrap(), None);
        assert_eq!(db.get(b"kept").await.unwrap().as_deref(), Some(&b"v2"[..]));
        assert!(db.has(b"long").await.unwrap());
        assert_eq!(db.expiry.len(), 1, "only the live deadline stays indexed");
    }

    #[tokio::test]
    async fn the_expiry_index_holds_one_entry_per_expiring_key() {
        let dir = tempfile::tempdir().unwrap();
        let options = SledOptions {
            sync: SyncPolicy::Periodic,
            ..SledOptions::default()
        };
        let db = SledBackend::open_with(dir.path(), options).unwrap();
        let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("k{i:02}").into_bytes()).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        for round in 0..30 {
            // A new deadline every round, by each way of setting.
            let ttl = Some(Duration::from_secs(3600 + round));
            for key in &refs[..20] {
                db.set(key, b"v", ttl).await.unwrap();
            }
            for key in &refs[20..25] {
                db.replace_now(key, b"v", ttl).unwrap();
            }
            let pairs: Vec<(&[u8], &[u8])> = refs[25..].iter().map(|k| (*k, &b"v"[..])).collect();
            db.set_many(&pairs, ttl).await.unwrap();
            // A key listed twice in one batch.
            db.set_many(&[(refs[49], b"1"), (refs[49], b"2")], ttl)
                .await
                .unwrap();
        }
        assert_eq!(db.expiry_index_len(), 50);
        // A counter keeps its deadline.
        db.increment(refs[49], 1).await.unwrap();
        assert_eq!(db.expiry_index_len(), 50);

        // Every way of removing a value, or replacing it with one that
        // does not expire, removes its entry.
        for key in &refs[..10] {
            db.delete(key).await.unwrap();
        }
        db.remove_now(refs[10]).unwrap();
        db.set(refs[11], b"v", None).await.unwrap();
        db.replace_now(refs[12], b"v", None).unwrap();
        assert!(
            db.compare_and_swap(refs[13], Some(b"v"), Some(b"w"))
                .await
                .unwrap()
        );
        assert!(
            db.compare_and_swap(refs[14], Some(b"v"), None)
                .await
                .unwrap()
        );
        db.set_many(&[(refs[15], b"v")], None).await.unwrap();
        assert_eq!(db.expiry_index_len(), 50 - 16);
        db.delete_many(&refs[16..]).await.unwrap();
        assert_eq!(db.expiry_index_len(), 0);

        // A counter whose value has expired starts again without expiry.
        db.set(b"c", b"5", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(db.increment(b"c", 1).await.unwrap(), Counted::Value(1));
        // So does a key read after it expired.
        db.set(b"r", b"v", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(db.get(b"r").await.unwrap(), None);
        assert_eq!(db.expiry_index_len(), 0);
    }

    #[test]
    fn only_periodic_sync_offers_immediate_writes() {
        for (sync, offered) in [(SyncPolicy::Always, false), (SyncPolicy::Periodic, true)] {
            let dir = tempfile::tempdir().unwrap();
            let options = SledOptions {
                sync,
                ..SledOptions::default()
            };
            let db = SledBackend::open_with(dir.path(), options).unwrap();
            assert_eq!(db.immediate_writes().is_some(), offered, "{sync:?}");
            assert!(db.immediate_reads().is_some());
            // Called directly they behave as `replace` and `remove`.
            assert_eq!(db.replace_now(b"k", b"abc", None).unwrap(), None);
            assert_eq!(db.replace_now(b"k", b"de", None).unwrap(), Some(3));
            assert_eq!(db.get_now(b"k").unwrap().as_deref(), Some(&b"de"[..]));
            assert_eq!(db.remove_now(b"k").unwrap(), Some(2));
            assert!(!db.has_now(b"k").unwrap());
        }
    }

    #[tokio::test]
    async fn reopening_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = SledBackend::open(dir.path()).unwrap();
            db.set(b"k", b"v", None).await.unwrap();
            db.close().await.unwrap();
        }
        let db = SledBackend::open(dir.path()).unwrap();
        assert_eq!(db.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(SledBackend::open(dir.path()).unwrap());
        let writers: Vec<_> = (0..64u32)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move { db.set(&i.to_be_bytes(), b"v", None).await })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let flushes = db.flushes();
        assert!(
            (1..64).contains(&flushes),
            "{flushes} flushes for 64 writes"
        );
    }

    #[tokio::test]
    async fn periodic_sync_does_not_flush_per_write() {
        let dir = tempfile::tempdir().unwrap();
        let options = SledOptions {
            sync: SyncPolicy::Periodic,
            ..SledOptions::default()
        };
        let db = SledBackend::open_with(dir.path(), options).unwrap();
        db.set(b"k", b"v", None).await.unwrap();
        db.delete(b"k").await.unwrap();
        assert_eq!(db.flushes(), 0);
    }

    #[test]
    fn a_locked_database_names_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledBackend::open(dir.path()).unwrap();
        let e = SledBackend::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
        assert!(e.contains("in use by another process"), "{e}");
    }
}
