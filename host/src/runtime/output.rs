//! What a plugin writes to the host log: `logging.log` records and its
//! stdout and stderr lines. Every record is tagged with the plugin, cut to
//! [`MAX_RECORD_BYTES`], escaped onto one line (see [`crate::text`]), and
//! admitted only within the plugin's budget: [`MAX_RECORDS_PER_CALL`] and
//! [`MAX_BYTES_PER_CALL`] per handler call, and [`RECORDS_PER_SECOND`]
//! (with bursts of [`BURST`]) over time. Dropped records are summed up in
//! one warning when the call ends.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use crate::text;

/// Longest record in bytes; a longer one is cut, with a marker.
pub const MAX_RECORD_BYTES: usize = 4096;
/// Most records one handler call may write.
pub const MAX_RECORDS_PER_CALL: u32 = 100;
/// Most bytes of records one handler call may write (after cutting).
pub const MAX_BYTES_PER_CALL: usize = 64 * 1024;
/// Records a plugin may write per second, over all its instances and calls.
pub const RECORDS_PER_SECOND: f64 = 50.0;
/// Records a plugin may write at once before the rate applies.
pub const BURST: f64 = 200.0;

/// How important a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The log output of one plugin, shared by its instances (clones share
/// it). It names the plugin by its file while the manifest is read, and by
/// its identity once known.
#[derive(Debug, Clone)]
pub(crate) struct Output(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    name: RwLock<Arc<str>>,
    gate: Mutex<Gate>,
}

/// The budget of records.
#[derive(Debug)]
struct Gate {
    /// Records that may be written now under the rate limit.
    tokens: f64,
    refilled: Instant,
    /// Records and bytes written in the current call.
    call_records: u32,
    call_bytes: usize,
    /// Records dropped and not yet reported.
    dropped: u64,
}

impl Gate {
    /// Whether a record of `len` bytes may be written now; counts it.
    fn admit(&mut self, len: usize, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RECORDS_PER_SECOND).min(BURST);
        self.refilled = now;
        let fits = self.tokens >= 1.0
            && self.call_records < MAX_RECORDS_PER_CALL
            && self.call_bytes.saturating_add(len) <= MAX_BYTES_PER_CALL;
        if fits {
            self.tokens -= 1.0;
            self.call_records += 1;
            self.call_bytes += len;
        } else {
            self.dropped += 1;
        }
        fits
    }
}

impl Output {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self(Arc::new(Inner {
            name: RwLock::new(name),
            gate: Mutex::new(Gate {
                tokens: BURST,
                refilled: Instant::now(),
                call_records: 0,
                call_bytes: 0,
                dropped: 0,
            }),
        }))
    }

    /// The name records carry.
    pub(crate) fn name(&self) -> Arc<str> {
        // A name is replaced whole: a poisoned lock still holds a valid one.
        self.0
            .name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_name(&self, name: Arc<str>) {
        *self.0.name.write().unwrap_or_else(PoisonError::into_inner) = name;
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        // The gate holds plain counters, valid whatever a panic left.
        self.0.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the budget of a handler call.
    pub(crate) fn begin_call(&self) {
        let mut gate = self.gate();
        gate.call_records = 0;
        gate.call_bytes = 0;
    }

    /// Ends a handler call: reports the records dropped since the last
    /// report, in one warning.
    pub(crate) fn end_call(&self) {
        let dropped = std::mem::take(&mut self.gate().dropped);
        if dropped > 0 {
            tracing::warn!(
                plugin = %text::escape(&self.name()),
                dropped,
                "dropped {dropped} log records of this plugin: over its limit of \
                 {MAX_RECORDS_PER_CALL} records or {} KiB per call, or {RECORDS_PER_SECOND} \
                 records per second",
                MAX_BYTES_PER_CALL / 1024
            );
        }
    }

    /// Writes a record from `source` (`log`, `stdout` or `stderr`) if the
    /// budget allows.
    pub(crate) fn write(&self, level: Level, source: &'static str, record: &str) {
        let record = text::for_log(record, MAX_RECORD_BYTES);
        if !self.gate().admit(record.len(), Instant::now()) {
            return;
        }
        let name = self.name();
        let plugin = text::escape(&name);
        match (level, source) {
            (Level::Trace, "log") => tracing::trace!(plugin = %plugin, "{record}"),
            (Level::Debug, "log") => tracing::debug!(plugin = %plugin, "{record}"),
            (Level::Info, "log") => tracing::info!(plugin = %plugin, "{record}"),
            (Level::Warn, "log") => tracing::warn!(plugin = %plugin, "{record}"),
            (Level::Error, "log") => tracing::error!(plugin = %plugin, "{record}"),
            (_, stream) => tracing::info!(plugin = %plugin, stream, "{record}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gate() -> Gate {
        Gate {
            tokens: BURST,
            refilled: Instant::now(),
            call_records: 0,
            call_bytes: 0,
            dropped: 0,
        }
    }

    #[test]
    fn a_call_writes_at_most_its_records_and_bytes() {
        let now = Instant::now();
        let mut g = gate();
        let admitted = (0..1000).filter(|_| g.admit(10, now)).count();
        assert_eq!(admitted, MAX_RECORDS_PER_CALL as usize);
        assert_eq!(g.dropped, 1000 - u64::from(MAX_RECORDS_PER_CALL));

        let mut g = gate();
        let admitted = (0..100).filter(|_| g.admit(MAX_RECORD_BYTES, now)).count();
        assert_eq!(admitted, MAX_BYTES_PER_CALL / MAX_RECORD_BYTES);
    }

    #[test]
    fn the_rate_limit_spans_calls() {
        let start = Instant::now();
        let mut g = gate();
        let mut admitted = 0;
        // Many short calls at once: the burst, then nothing.
        for _ in 0..100 {
            g.call_records = 0;
            g.call_bytes = 0;
            admitted += (0..10).filter(|_| g.admit(1, start)).count();
        }
        assert_eq!(admitted, BURST as usize);
        // A second later, the rate's worth more.
        g.call_records = 0;
        let later = start + Duration::from_secs(1);
        let more = (0..100).filter(|_| g.admit(1, later)).count();
        assert_eq!(more, RECORDS_PER_SECOND as usize);
    }
}
