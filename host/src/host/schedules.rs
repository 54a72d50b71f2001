//! Running plugins' schedules: each handler at the times of its cron
//! expression, once per firing even with several hosts on one store.
//!
//! - A firing is claimed in the store before it runs: the record
//!   `warden:schedule:ID:INDEX:HANDLER` holds the time of the last firing
//!   of that schedule, and a host runs a firing only if it moves the record
//!   forward to it with a compare-and-swap. Several hosts sharing a Redis
//!   therefore run each firing once, whichever claims it first.
//! - Firings missed while no host ran are not replayed: a host computes
//!   the next firing from the time it starts (or reloads).
//! - A scheduled call runs as a message's call does: in an instance of the
//!   plugin's, within its `handler_timeout_ms` and its limits, its faults
//!   counted alike. What it says goes to the schedule's channel, or to
//!   `[schedules] channel`, through the [`Outbox`](crate::outbox::Outbox).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Shared;
use crate::plugins::LoadedPlugin;
use crate::storage::keys::{Area, Keys};

/// Runs the schedules of the loaded plugins until the task is aborted,
/// looking again whenever `changed` is notified (after a reload; a
/// notification sent while the loop is not waiting is kept for it).
pub(super) async fn schedule_loop(shared: Arc<Shared>, changed: Arc<tokio::sync::Notify>) {
    let mut after = Utc::now();
    loop {
        let snapshot = shared.snapshot();
        let mut next: Option<DateTime<Utc>> = None;
        let mut due: Vec<(Arc<LoadedPlugin>, usize)> = Vec::new();
        for plugin in snapshot.plugins.iter() {
            for (index, schedule) in plugin.info().schedules.iter().enumerate() {
                let Ok(cron) = crate::schedule::parse(&schedule.cron) else {
                    continue;
                };
                let Some(at) = cron.next_after(after) else {
                    continue;
                };
                match next {
                    Some(earliest) if at > earliest => {}
                    Some(earliest) if at == earliest => due.push((plugin.clone(), index)),
                    _ => {
                        next = Some(at);
                        due = vec![(plugin.clone(), index)];
                    }
                }
            }
        }
        let notified = changed.notified();
        let Some(at) = next else {
            notified.await;
            after = after.max(Utc::now());
            continue;
        };
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = notified => {
                // The plugins changed: look again from now, unless the
                // firing came due meanwhile.
                if Utc::now() < at {
                    after = after.max(Utc::now());
                    continue;
                }
            }
        }
        after = at;
        for (plugin, index) in due {
            tokio::spawn(fire(shared.clone(), plugin, index, at));
        }
    }
}

/// The record that claims the firings of schedule `index` of `plugin`.
fn claim_key(plugin: &LoadedPlugin, index: usize) -> Vec<u8> {
    let info = plugin.info();
    let handler = &info.schedules[index].handler;
    Keys::of(Area::Records).key(format!("schedule:{}:{index}:{handler}", info.id))
}

/// Claims the firing at `at` of schedule `index` of `plugin` and, if this
/// host got it, runs it and sends what it said.
async fn fire(shared: Arc<Shared>, plugin: Arc<LoadedPlugin>, index: usize, at: DateTime<Utc>) {
    use tracing::Instrument as _;
    let info = plugin.info();
    let schedule = &info.schedules[index];
    let span = tracing::info_span!("schedule", plugin = %info.id, handler = %schedule.handler);
    async {
        match claim(&shared, &plugin, index, at.timestamp()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("another host ran this firing");
                return;
            }
            Err(e) => {
                tracing::warn!("claiming the firing in the store failed, so it is skipped: {e}");
                return;
            }
        }
        let channel = schedule
            .channel
            .clone()
            .or_else(|| shared.config.schedules.channel.clone());
        let start = std::time::Instant::now();
        let outcome = plugin.run_schedule(index).await;
        plugin
            .metrics()
            .handler_call(start.elapsed(), outcome.error.is_some());
        if let Some(error) = &outcome.error {
            tracing::warn!("scheduled call failed: {error}");
        }
        let Some(channel) = channel else {
            if !outcome.replies.is_empty() {
                tracing::warn!(
                    dropped = outcome.replies.len(),
                    "the schedule names no channel and [schedules] channel is not set: \
                     its messages are dropped"
                );
            }
            return;
        };
        for reply in outcome.replies {
            shared.outbox.push(
                info.id.clone(),
                schedule.handler.clone(),
                channel.clone(),
                at.timestamp(),
                reply,
            );
        }
    }
    .instrument(span)
    .await;
}

/// Moves the claim record of schedule `index` of `plugin` forward to
/// `at`; whether this host did (another host may have, first).
async fn claim(
    shared: &Shared,
    plugin: &LoadedPlugin,
    index: usize,
    at: i64,
) -> Result<bool, crate::storage::BackendError> {
    let key = claim_key(plugin, index);
    let new = at.to_string();
    let current = shared.backend.get(&key).await?;
    if let Some(last) = current
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok())
        && last >= at
    {
        return Ok(false);
    }
    shared
        .backend
        .compare_and_swap(&key, current.as_deref(), Some(new.as_bytes()))
        .await
}
