//! Key-value storage: the [`Backend`] trait, the built-in backends, and the
//! namespacing, grant-checking layer plugins see ([`PluginStorage`]).
//!
//! # Implementing your own backend
//!
//! A backend stores opaque byte keys and values with an optional expiry. It
//! never sees plugin identities or grants: [`PluginStorage`] namespaces every
//! key (see [`crate::identity`]) and checks every grant and limit before a
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
//!     async fn close(&self) -> Result<(), BackendError> { Ok(()) }
//! }
//! ```

use std::fmt;
use std::time::Duration;

mod memory;
mod namespaced;
mod sled;

pub use memory::MemoryBackend;
pub use namespaced::{Grant, PluginStorage, StorageError, StorageLimits, human_size};
pub use sled::SledBackend;

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
    /// Whether `key` holds a value that has not expired.
    async fn has(&self, key: &[u8]) -> Result<bool, BackendError>;
    /// The size of the store in bytes, as the backend measures it (see each
    /// backend's documentation).
    async fn size(&self) -> Result<u64, BackendError>;
    /// Makes every completed write durable and releases resources. Calls
    /// after `close` may fail.
    async fn close(&self) -> Result<(), BackendError>;
    /// Removes expired entries and returns how many it removed. Warden calls
    /// this periodically. The default does nothing, for stores that expire
    /// keys themselves.
    async fn purge_expired(&self) -> Result<u64, BackendError> {
        Ok(0)
    }
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
