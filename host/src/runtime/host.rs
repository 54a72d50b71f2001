//! The host side of Warden's WIT interfaces: storage, chat and logging.

use std::time::Duration;

use super::bindings::StorageErrorWit;
use super::bindings::warden::plugin::{chat, logging, storage, types};
use std::sync::Arc;

use crate::storage::{PluginStorage, StorageError, human_size};

/// Most replies one handler call may send; more are dropped and logged.
pub const MAX_REPLIES: usize = 100;
/// Longest reply in bytes; longer ones are cut at a character boundary.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// What a plugin instance can reach on the host.
#[derive(Debug)]
pub struct PluginHost {
    /// The plugin's identity, or its file while the manifest is read.
    id: Arc<str>,
    storage: Option<PluginStorage>,
    /// `Some` while a handler call is under way.
    replies: Option<Vec<String>>,
}

impl PluginHost {
    pub(crate) fn new(id: Arc<str>, storage: Option<PluginStorage>) -> Self {
        Self {
            id,
            storage,
            replies: None,
        }
    }

    /// Starts collecting replies for a handler call.
    pub(crate) fn begin_call(&mut self) {
        self.replies = Some(Vec::new());
    }

    /// Ends a handler call and returns its replies.
    pub(crate) fn end_call(&mut self) -> Vec<String> {
        self.replies.take().unwrap_or_default()
    }

    fn storage(&self) -> Result<&PluginStorage, StorageErrorWit> {
        self.storage.as_ref().ok_or_else(|| {
            StorageErrorWit::Backend("storage is not available while the manifest is read".into())
        })
    }

    fn fail(&self, op: &str, e: StorageError) -> StorageErrorWit {
        match e {
            StorageError::AccessDenied(m) => StorageErrorWit::AccessDenied(m),
            e @ StorageError::InvalidKey { .. } => StorageErrorWit::InvalidKey(e.to_string()),
            e @ StorageError::TooLarge { .. } => StorageErrorWit::TooLarge(e.to_string()),
            e @ StorageError::QuotaExceeded { .. } => StorageErrorWit::QuotaExceeded(e.to_string()),
            e @ StorageError::TooMany { .. } => StorageErrorWit::TooLarge(e.to_string()),
            StorageError::InvalidValue(m) => StorageErrorWit::InvalidValue(m),
            StorageError::Backend(e) => {
                tracing::error!(plugin = %self.id, op, error = %e, "storage backend failed");
                StorageErrorWit::Backend(e.to_string())
            }
        }
    }
}

impl storage::Host for PluginHost {
    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        expires_in_secs: Option<u64>,
        shared: bool,
    ) -> Result<(), StorageErrorWit> {
        let ttl = expires_in_secs.map(Duration::from_secs);
        let r = self.storage()?.set(&key, &value, ttl, shared).await;
        r.map_err(|e| self.fail("set", e))
    }

    async fn get(&mut self, key: String, shared: bool) -> Result<Option<Vec<u8>>, StorageErrorWit> {
        let r = self.storage()?.get(&key, shared).await;
        r.map_err(|e| self.fail("get", e))
    }

    async fn has(&mut self, key: String, shared: bool) -> Result<bool, StorageErrorWit> {
        let r = self.storage()?.has(&key, shared).await;
        r.map_err(|e| self.fail("has", e))
    }

    async fn delete(&mut self, key: String, shared: bool) -> Result<(), StorageErrorWit> {
        let r = self.storage()?.delete(&key, shared).await;
        r.map_err(|e| self.fail("delete", e))
    }

    async fn storage_size(&mut self) -> Result<u64, StorageErrorWit> {
        let r = self.storage()?.size().await;
        r.map_err(|e| self.fail("storage-size", e))
    }

    async fn storage_size_human(&mut self) -> Result<String, StorageErrorWit> {
        let r = self.storage()?.size().await;
        r.map(human_size)
            .map_err(|e| self.fail("storage-size-human", e))
    }

    async fn namespace_size(&mut self) -> Result<u64, StorageErrorWit> {
        Ok(self.storage()?.usage())
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
        shared: bool,
    ) -> Result<storage::KeyPage, StorageErrorWit> {
        let r = self
            .storage()?
            .list_keys(&prefix, cursor.as_deref(), limit, shared)
            .await;
        r.map(|page| storage::KeyPage {
            keys: page.keys,
            next: page.next,
        })
        .map_err(|e| self.fail("list-keys", e))
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        shared: bool,
    ) -> Result<i64, StorageErrorWit> {
        let r = self.storage()?.increment(&key, delta, shared).await;
        r.map_err(|e| self.fail("increment", e))
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        shared: bool,
    ) -> Result<bool, StorageErrorWit> {
        let r = self
            .storage()?
            .compare_and_swap(&key, expected.as_deref(), new.as_deref(), shared)
            .await;
        r.map_err(|e| self.fail("compare-and-swap", e))
    }

    async fn get_many(
        &mut self,
        keys: Vec<String>,
        shared: bool,
    ) -> Result<Vec<Option<Vec<u8>>>, StorageErrorWit> {
        let r = self.storage()?.get_many(&keys, shared).await;
        r.map_err(|e| self.fail("get-many", e))
    }

    async fn set_many(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
        expires_in_secs: Option<u64>,
        shared: bool,
    ) -> Result<(), StorageErrorWit> {
        let ttl = expires_in_secs.map(Duration::from_secs);
        let r = self.storage()?.set_many(&entries, ttl, shared).await;
        r.map_err(|e| self.fail("set-many", e))
    }

    async fn delete_many(
        &mut self,
        keys: Vec<String>,
        shared: bool,
    ) -> Result<(), StorageErrorWit> {
        let r = self.storage()?.delete_many(&keys, shared).await;
        r.map_err(|e| self.fail("delete-many", e))
    }
}

impl chat::Host for PluginHost {
    fn say(&mut self, mut text: String) {
        let Some(replies) = self.replies.as_mut() else {
            tracing::warn!(plugin = %self.id, "say called outside a handler call; ignored");
            return;
        };
        if replies.len() >= MAX_REPLIES {
            tracing::warn!(plugin = %self.id, "more than {MAX_REPLIES} replies in one call; dropped");
            return;
        }
        if text.len() > MAX_REPLY_BYTES {
            let mut end = MAX_REPLY_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            tracing::warn!(plugin = %self.id, len = text.len(), "reply over {MAX_REPLY_BYTES} bytes; cut");
            text.truncate(end);
        }
        replies.push(text);
    }
}

impl logging::Host for PluginHost {
    fn log(&mut self, level: logging::Level, message: String) {
        let id = &self.id;
        match level {
            logging::Level::Trace => tracing::trace!(plugin = %id, "{message}"),
            logging::Level::Debug => tracing::debug!(plugin = %id, "{message}"),
            logging::Level::Info => tracing::info!(plugin = %id, "{message}"),
            logging::Level::Warn => tracing::warn!(plugin = %id, "{message}"),
            logging::Level::Error => tracing::error!(plugin = %id, "{message}"),
        }
    }
}

impl types::Host for PluginHost {}
