//! Maintenance in the background: purging expired keys and recounting
//! quota usage.

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::identity::Namespace;

/// How often expired keys are purged from the store.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(5);

/// How often each namespace's usage is recounted from the store for its
/// quota (expiry and other hosts change it unseen).
pub const RECOUNT_INTERVAL: Duration = Duration::from_secs(60);

/// Purges expired keys every [`PURGE_INTERVAL`] and recounts each
/// namespace's quota usage every [`RECOUNT_INTERVAL`].
pub(super) async fn purge_loop(shared: Arc<Shared>) {
    let backend = &shared.backend;
    let mut every = tokio::time::interval(PURGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_recount = tokio::time::Instant::now();
    loop {
        every.tick().await;
        match backend.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "purged expired keys"),
            Err(e) => tracing::warn!("purging expired keys failed: {e}"),
        }
        if last_recount.elapsed() >= RECOUNT_INTERVAL {
            last_recount = tokio::time::Instant::now();
            if let Err(e) = shared
                .shared_usage
                .recount(&**backend, &Namespace::Shared)
                .await
            {
                tracing::warn!("recounting the shared keyspace failed: {e}");
            }
            for plugin in shared.snapshot().plugins.iter() {
                if let Err(e) = plugin.storage().recount().await {
                    tracing::warn!(plugin = %plugin.info().id, "recounting storage failed: {e}");
                }
            }
        }
    }
}
