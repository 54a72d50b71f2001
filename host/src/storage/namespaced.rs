//! The storage a plugin sees: bare keys, namespaced by its identity, with
//! shared access checked against the operator's grant.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Backend, BackendError};
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
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 512,
            max_value_bytes: 1024 * 1024,
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

/// One plugin's view of the store (Slack Machine's `PluginStorage`).
#[derive(Debug, Clone)]
pub struct PluginStorage {
    backend: Arc<dyn Backend>,
    own: Namespace,
    id: PluginId,
    grant: Grant,
    limits: StorageLimits,
}

impl PluginStorage {
    /// Storage for plugin `id` with shared access `grant`.
    pub fn new(
        backend: Arc<dyn Backend>,
        id: PluginId,
        grant: Grant,
        limits: StorageLimits,
    ) -> Self {
        Self {
            backend,
            own: Namespace::Plugin(id.clone()),
            id,
            grant,
            limits,
        }
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
        if !shared {
            return Ok(identity::encode_key(&self.own, key));
        }
        let allowed = if write {
            self.grant.can_write()
        } else {
            self.grant.can_read()
        };
        if !allowed {
            let (what, needed) = if write {
                ("write", "read-write")
            } else {
                ("read", "read")
            };
            return Err(StorageError::AccessDenied(format!(
                "plugin {} may not {what} shared key {:?}: its grant is {:?}; the operator can \
                 set [grants.\"{}\"] shared = \"{needed}\"",
                self.id,
                shown(key),
                grant_name(self.grant),
                self.id
            )));
        }
        Ok(identity::encode_key(&Namespace::Shared, key))
    }

    /// Stores `value` under `key`.
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        expires_in: Option<Duration>,
        shared: bool,
    ) -> Result<(), StorageError> {
        let raw = self.resolve(key, shared, true)?;
        if value.len() > self.limits.max_value_bytes {
            return Err(StorageError::TooLarge {
                key: shown(key),
                len: value.len(),
                max: self.limits.max_value_bytes,
            });
        }
        Ok(self.backend.set(&raw, value, expires_in).await?)
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

    /// Removes `key`.
    pub async fn delete(&self, key: &str, shared: bool) -> Result<(), StorageError> {
        let raw = self.resolve(key, shared, true)?;
        Ok(self.backend.delete(&raw).await?)
    }

    /// The size of the whole store in bytes.
    pub async fn size(&self) -> Result<u64, StorageError> {
        Ok(self.backend.size().await?)
    }
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
            },
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

    #[test]
    fn human_sizes_have_one_decimal() {
        assert_eq!(human_size(32 * 1024), "32.0 KiB");
        assert_eq!(human_size(12), "12 B");
    }
}
