//! An in-memory backend: fast, and gone when the process exits. Meant for
//! tests and for throwaway hosts.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::{
    Backend, BackendError, Counted, Entry as Stored, ImmediateReads, ImmediateWrites,
    add_to_counter, counter_bytes,
};

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// Keeps everything in an ordered map. [`size`](Backend::size) reports the bytes
/// of all live keys and values.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: Mutex<BTreeMap<Vec<u8>, Entry>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries the map holds, expired ones included until they are
    /// read or purged.
    pub fn stored_entries(&self) -> usize {
        self.map().len()
    }

    /// How many entries under `prefix` the map holds, expired ones included
    /// until they are read or purged.
    pub fn stored_entries_with_prefix(&self, prefix: &[u8]) -> usize {
        self.map().keys().filter(|k| k.starts_with(prefix)).count()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every operation is a single map call), so a poisoned lock is safe
        // to keep using.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ImmediateReads for MemoryBackend {
    fn get_now(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let now = Instant::now();
        let mut map = self.map();
        match map.get(key) {
            Some(entry) if entry.live(now) => Ok(Some(entry.value.clone())),
            Some(_) => {
                map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn has_now(&self, key: &[u8]) -> Result<bool, BackendError> {
        let now = Instant::now();
        Ok(self.map().get(key).is_some_and(|e| e.live(now)))
    }
}

impl ImmediateWrites for MemoryBackend {
    fn replace_now(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<Option<u64>, BackendError> {
        let now = Instant::now();
        let expires_at = expires_in.map(|d| {
            now.checked_add(d)
                .unwrap_or(now + Duration::from_secs(u32::MAX.into()))
        });
        let old = self.map().insert(
            key.to_vec(),
            Entry {
                value: value.to_vec(),
                expires_at,
            },
        );
        Ok(old.filter(|e| e.live(now)).map(|e| e.value.len() as u64))
    }

    fn remove_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        let now = Instant::now();
        let old = self.map().remove(key);
        Ok(old.filter(|e| e.live(now)).map(|e| e.value.len() as u64))
    }

    fn value_len_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        let now = Instant::now();
        Ok(self
            .map()
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.len() as u64))
    }

    fn scan_now(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Stored>, BackendError> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        Ok(self
            .map()
            .range::<[u8], _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.live(now))
            .take(limit)
            .map(|(k, e)| Stored {
                key: k.clone(),
                value: e.value.clone(),
                expires_at: e
                    .expires_at
                    .map(|at| wall + at.saturating_duration_since(now)),
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.get_now(key)
    }

    fn immediate_reads(&self) -> Option<&dyn ImmediateReads> {
        Some(self)
    }

    fn immediate_writes(&self) -> Option<&dyn ImmediateWrites> {
        Some(self)
    }

    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.replace_now(key, value, expires_in).map(drop)
    }

    async fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<Option<u64>, BackendError> {
        self.replace_now(key, value, expires_in)
    }

    async fn delete(&self, key: &[u8]) -> Result<(), BackendError> {
        self.remove_now(key).map(drop)
    }

    async fn remove(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        self.remove_now(key)
    }

    async fn value_len(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        self.value_len_now(key)
    }

    async fn has(&self, key: &[u8]) -> Result<bool, BackendError> {
        self.has_now(key)
    }

    async fn size(&self) -> Result<u64, BackendError> {
        let now = Instant::now();
        let total: usize = self
            .map()
            .iter()
            .filter(|(_, e)| e.live(now))
            .map(|(k, e)| k.len() + e.value.len())
            .sum();
        Ok(total as u64)
    }

    async fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let now = Instant::now();
        let map = self.map();
        Ok(keys
            .iter()
            .map(|k| map.get(*k).filter(|e| e.live(now)).map(|e| e.value.clone()))
            .collect())
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
        let now = Instant::now();
        let expires_at = expires_in.map(|d| {
            now.checked_add(d)
                .unwrap_or(now + Duration::from_secs(u32::MAX.into()))
        });
        let mut map = self.map();
        Ok(entries
            .iter()
            .map(|(key, value)| {
                let old = map.insert(
                    key.to_vec(),
                    Entry {
                        value: value.to_vec(),
                        expires_at,
                    },
                );
                old.filter(|e| e.live(now)).map(|e| e.value.len() as u64)
            })
            .collect())
    }

    async fn delete_many(&self, keys: &[&[u8]]) -> Result<(), BackendError> {
        self.remove_many(keys).await.map(drop)
    }

    async fn remove_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        let now = Instant::now();
        let mut map = self.map();
        Ok(keys
            .iter()
            .map(|key| {
                let old = map.remove(*key);
                old.filter(|e| e.live(now)).map(|e| e.value.len() as u64)
            })
            .collect())
    }

    async fn increment(&self, key: &[u8], delta: i64) -> Result<Counted, BackendError> {
        let now = Instant::now();
        let mut map = self.map();
        let live = map.get(key).filter(|e| e.live(now));
        let value = match add_to_counter(live.map(|e| e.value.as_slice()), delta) {
            Ok(value) => value,
            Err(refused) => return Ok(refused),
        };
        let expires_at = live.and_then(|e| e.expires_at);
        map.insert(
            key.to_vec(),
            Entry {
                value: counter_bytes(value),
                expires_at,
            },
        );
        Ok(Counted::Value(value))
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        let now = Instant::now();
        let mut map = self.map();
        let current = map
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| e.value.as_slice());
        if current != expected {
            return Ok(false);
        }
        match new {
            Some(value) => {
                map.insert(
                    key.to_vec(),
                    Entry {
                        value: value.to_vec(),
                        expires_at: None,
                    },
                );
            }
            None => {
                map.remove(key);
            }
        }
        Ok(true)
    }

    async fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Stored>, BackendError> {
        self.scan_now(prefix, after, limit)
    }

    async fn close(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        let now = Instant::now();
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, e| e.live(now));
        Ok((before - map.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expiring_re_sets_keep_one_entry_per_key() {
        let db = MemoryBackend::new();
        let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("k{i:02}").into_bytes()).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        for round in 0..30 {
            let ttl = Some(Duration::from_secs(3600 + round));
            for key in &refs[..25] {
                db.set(key, b"v", ttl).await.unwrap();
            }
            let pairs: Vec<(&[u8], &[u8])> = refs[25..].iter().map(|k| (*k, &b"v"[..])).collect();
            db.set_many(&pairs, ttl).await.unwrap();
        }
        assert_eq!(db.stored_entries(), 50);
        for key in &refs[..25] {
            db.delete(key).await.unwrap();
        }
        db.delete_many(&refs[25..]).await.unwrap();
        assert_eq!(db.stored_entries(), 0);
    }
}
