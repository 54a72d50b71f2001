//! The embedded default backend, on [sled](https://docs.rs/sled).
//!
//! Every value is stored with an 8-byte big-endian header holding its expiry
//! time in milliseconds since the Unix epoch (`0` for never). A second tree,
//! `expiry`, indexes expiring keys by deadline so that
//! [`purge_expired`](Backend::purge_expired) reclaims their space without
//! scanning the whole store. Expired values are also dropped when read.
//!
//! [`size`](Backend::size) reports the database's size on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Backend, BackendError, deadline_millis, now_millis};

const NAME: &str = "sled";
const HEADER: usize = 8;
const NEVER: u64 = 0;

/// A sled database in a directory.
#[derive(Debug)]
pub struct SledBackend {
    db: sled::Db,
    data: sled::Tree,
    expiry: sled::Tree,
    path: PathBuf,
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(NAME, e)
}

/// The expiry header of a stored value, or `None` if it is malformed.
fn split(stored: &[u8]) -> Option<(u64, &[u8])> {
    let (header, value) = stored.split_at_checked(HEADER)?;
    Some((u64::from_be_bytes(header.try_into().ok()?), value))
}

fn live(expires_at: u64, now: u64) -> bool {
    expires_at == NEVER || now < expires_at
}

impl SledBackend {
    /// Opens (creating if needed) the database in directory `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BackendError> {
        let path = path.as_ref().to_path_buf();
        let db = sled::Config::new().path(&path).open().map_err(|e| {
            BackendError::new(
                NAME,
                format!(
                    "cannot open the database in {}: {e} (is another Warden using it?)",
                    path.display()
                ),
            )
        })?;
        let data = db.open_tree("data").map_err(err)?;
        let expiry = db.open_tree("expiry").map_err(err)?;
        Ok(Self {
            db,
            data,
            expiry,
            path,
        })
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
        let _ = self
            .data
            .compare_and_swap(key, Some(&stored), None::<&[u8]>)
            .map_err(err)?;
        Ok(None)
    }

    fn expiry_index_key(deadline: u64, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(HEADER + key.len());
        k.extend_from_slice(&deadline.to_be_bytes());
        k.extend_from_slice(key);
        k
    }
}

#[async_trait::async_trait]
impl Backend for SledBackend {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(self.read(key)?.map(|stored| stored[HEADER..].to_vec()))
    }

    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<(), BackendError> {
        let expires_at = match expires_in {
            // A deadline of exactly 0 would read as "never".
            Some(d) => deadline_millis(now_millis(), d).max(1),
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
        self.data.insert(key, stored).map_err(err)?;
        Ok(())
    }

    async fn delete(&self, key: &[u8]) -> Result<(), BackendError> {
        self.data.remove(key).map_err(err)?;
        Ok(())
    }

    async fn has(&self, key: &[u8]) -> Result<bool, BackendError> {
        Ok(self.read(key)?.is_some())
    }

    async fn size(&self) -> Result<u64, BackendError> {
        self.db.size_on_disk().map_err(err)
    }

    async fn close(&self) -> Result<(), BackendError> {
        self.db.flush_async().await.map_err(err)?;
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        let now = now_millis();
        let mut removed = 0;
        for entry in self.expiry.range(..Self::expiry_index_key(now, &[])) {
            let (index_key, _) = entry.map_err(err)?;
            let key = &index_key[HEADER..];
            if let Some(stored) = self.data.get(key).map_err(err)?
                && let Some((expires_at, _)) = split(&stored)
                && !live(expires_at, now)
                && self
                    .data
                    .compare_and_swap(key, Some(&stored), None::<&[u8]>)
                    .map_err(err)?
                    .is_ok()
            {
                removed += 1;
            }
            self.expiry.remove(&index_key).map_err(err)?;
        }
        Ok(removed)
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

    #[test]
    fn a_locked_database_names_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledBackend::open(dir.path()).unwrap();
        let e = SledBackend::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
}
