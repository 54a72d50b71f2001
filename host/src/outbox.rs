//! Messages plugins send that answer no message: what scheduled handlers
//! say. Adapters deliver them: the console prints them, the HTTP API serves
//! them at `GET /v1/outbox`.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::identity::PluginId;
use crate::router::Reply;

/// Most messages the outbox keeps for adapters that read it later (the
/// HTTP API); older ones are dropped first.
pub const OUTBOX_CAPACITY: usize = 1000;

/// One message a scheduled handler sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Its place in the outbox: 1 for the first message the host sent,
    /// counting up.
    pub seq: u64,
    /// The plugin that sent it.
    pub plugin: PluginId,
    /// The handler that sent it.
    pub handler: String,
    /// The channel it goes to.
    pub channel: String,
    /// When the schedule fired, in seconds since the Unix epoch.
    pub fired_at: i64,
    /// What it says.
    pub reply: Reply,
}

/// The outbox: a bounded record of the messages scheduled handlers sent,
/// and a broadcast of each as it is sent.
#[derive(Debug)]
pub struct Outbox {
    kept: Mutex<(u64, VecDeque<Outgoing>)>,
    sent: tokio::sync::broadcast::Sender<Outgoing>,
}

impl Default for Outbox {
    fn default() -> Self {
        Self {
            kept: Mutex::new((0, VecDeque::new())),
            sent: tokio::sync::broadcast::channel(OUTBOX_CAPACITY).0,
        }
    }
}

impl Outbox {
    /// Adds a message, numbering it.
    pub(crate) fn push(
        &self,
        plugin: PluginId,
        handler: String,
        channel: String,
        fired_at: i64,
        reply: Reply,
    ) {
        let outgoing = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            kept.0 += 1;
            let outgoing = Outgoing {
                seq: kept.0,
                plugin,
                handler,
                channel,
                fired_at,
                reply,
            };
            if kept.1.len() == OUTBOX_CAPACITY {
                kept.1.pop_front();
            }
            kept.1.push_back(outgoing.clone());
            outgoing
        };
        // No receiver is fine: an adapter that reads later has the record.
        let _ = self.sent.send(outgoing);
    }

    /// The kept messages after `seq`, oldest first, at most `limit`.
    pub fn since(&self, seq: u64, limit: usize) -> Vec<Outgoing> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.1
            .iter()
            .filter(|o| o.seq > seq)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Each message from now on, as it is sent. A receiver that falls more
    /// than [`OUTBOX_CAPACITY`] messages behind loses the oldest.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Outgoing> {
        self.sent.subscribe()
    }
}
