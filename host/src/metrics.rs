//! Counters and latencies in the Prometheus text exposition format
//! (version 0.0.4), as `GET /metrics` serves them.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `warden_messages_received_total` | counter | |
//! | `warden_handler_calls_total` | counter | `plugin` |
//! | `warden_handler_errors_total` | counter | `plugin` |
//! | `warden_handler_duration_seconds` | histogram | `plugin` |
//! | `warden_storage_operations_total` | counter | `plugin`, `op` |
//! | `warden_storage_errors_total` | counter | `plugin`, `op`, `error` |
//! | `warden_plugins_loaded` | gauge | |
//! | `warden_http_refused_total` | counter | `reason` |
//!
//! `op` is the storage function the plugin called: `get`, `set`, `has`,
//! `delete`, `size` (`storage-size` and `storage-size-human`),
//! `namespace-size`, `list-keys`, `increment`, `compare-and-swap`,
//! `get-many`, `set-many` or `delete-many`; a batch counts once. `error` is
//! the storage error the plugin received: `access-denied`, `invalid-key`,
//! `too-large`, `quota-exceeded`, `invalid-value` or `backend`. Labels only
//! ever carry plugin identities and these fixed names: storage keys and
//! values never appear.
//!
//! Each [`Host`](crate::Host) counts in its own [`Metrics`]
//! ([`Host::metrics`](crate::Host::metrics)), or in one it is given
//! ([`HostBuilder::metrics`](crate::HostBuilder::metrics)), so that several
//! hosts in one process can serve one scrape target.
//!
//! The format is written by hand rather than through a metrics crate: the
//! set of metrics is small and fixed, the Prometheus text format is what
//! scrapers and people reading `curl` output expect (the `prometheus-client`
//! crate writes OpenMetrics only), and every hot-path update is one relaxed
//! atomic add on a per-plugin handle, with no lock and no label lookup.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::identity::PluginId;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the handler latency buckets, in seconds. Handlers
/// usually answer in milliseconds; the time limit (5 s by default) ends the
/// slowest.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A storage function of the WIT `storage` interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageOp {
    /// `get`.
    Get,
    /// `set`.
    Set,
    /// `has`.
    Has,
    /// `delete`.
    Delete,
    /// `storage-size`.
    Size,
    /// `storage-size-human`, counted as `size`.
    SizeHuman,
    /// `namespace-size`.
    NamespaceSize,
    /// `list-keys`.
    ListKeys,
    /// `increment`.
    Increment,
    /// `compare-and-swap`.
    CompareAndSwap,
    /// `get-many`.
    GetMany,
    /// `set-many`.
    SetMany,
    /// `delete-many`.
    DeleteMany,
}

impl StorageOp {
    /// Every operation with a series of its own, in output order.
    const COUNTED: [StorageOp; 12] = [
        Self::Get,
        Self::Set,
        Self::Has,
        Self::Delete,
        Self::Size,
        Self::NamespaceSize,
        Self::ListKeys,
        Self::Increment,
        Self::CompareAndSwap,
        Self::GetMany,
        Self::SetMany,
        Self::DeleteMany,
    ];

    /// The `op` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Size | Self::SizeHuman => "size",
            op => op.wit_name(),
        }
    }

    /// The WIT function's name.
    pub fn wit_name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Set => "set",
            Self::Has => "has",
            Self::Delete => "delete",
            Self::Size => "storage-size",
            Self::SizeHuman => "storage-size-human",
            Self::NamespaceSize => "namespace-size",
            Self::ListKeys => "list-keys",
            Self::Increment => "increment",
            Self::CompareAndSwap => "compare-and-swap",
            Self::GetMany => "get-many",
            Self::SetMany => "set-many",
            Self::DeleteMany => "delete-many",
        }
    }

    /// The index of its counters: `storage-size-human` shares `size`'s.
    fn index(self) -> usize {
        match self {
            Self::SizeHuman => Self::Size.index(),
            op => Self::COUNTED
                .iter()
                .position(|c| *c == op)
                .expect("every other operation is counted"),
        }
    }
}

/// Why a storage operation failed, as the plugin was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageFailure {
    /// `access-denied`.
    AccessDenied,
    /// `invalid-key`.
    InvalidKey,
    /// `too-large`.
    TooLarge,
    /// `quota-exceeded`.
    QuotaExceeded,
    /// `invalid-value`.
    InvalidValue,
    /// `backend`.
    Backend,
}

impl StorageFailure {
    const ALL: [StorageFailure; 6] = [
        Self::AccessDenied,
        Self::InvalidKey,
        Self::TooLarge,
        Self::QuotaExceeded,
        Self::InvalidValue,
        Self::Backend,
    ];

    /// The `error` label: the WIT name of the error.
    pub fn name(self) -> &'static str {
        match self {
            Self::AccessDenied => "access-denied",
            Self::InvalidKey => "invalid-key",
            Self::TooLarge => "too-large",
            Self::QuotaExceeded => "quota-exceeded",
            Self::InvalidValue => "invalid-value",
            Self::Backend => "backend",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A histogram with fixed buckets ([`LATENCY_BUCKETS`]).
#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket, not cumulative; the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Storage counts of one operation.
#[derive(Debug, Default)]
struct OpCounts {
    calls: AtomicU64,
    errors: [AtomicU64; StorageFailure::ALL.len()],
}

/// The metrics of one plugin. Cheap to update: keep the handle from
/// [`Metrics::plugin`] rather than looking it up on every call.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    calls: AtomicU64,
    errors: AtomicU64,
    duration: Histogram,
    storage: [OpCounts; StorageOp::COUNTED.len()],
}

impl PluginMetrics {
    /// Counts one handler call that took `took`, and whether it failed.
    pub fn handler_call(&self, took: Duration, failed: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe(took);
    }

    /// Counts one storage operation and its failure, if it failed.
    pub fn storage_op(&self, op: StorageOp, failure: Option<StorageFailure>) {
        let counts = &self.storage[op.index()];
        counts.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(failure) = failure {
            counts.errors[failure.index()].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Why the HTTP adapter refused or cut off a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpRefusal {
    /// `[http] max_connections` connections were open (`503`).
    Connections,
    /// `[http] max_requests_in_flight` requests were being answered (`503`).
    Busy,
    /// The token's `[http] rate_limit_per_second` was spent (`429`).
    RateLimited,
    /// No valid bearer token, or one without the route's scope
    /// (`401`, `403`).
    Unauthorized,
    /// The headers did not come within `[http] header_timeout_ms`.
    SlowHeaders,
    /// The body did not come within `[http] body_timeout_ms` (`408`).
    SlowBody,
}

impl HttpRefusal {
    const ALL: [HttpRefusal; 6] = [
        Self::Connections,
        Self::Busy,
        Self::RateLimited,
        Self::Unauthorized,
        Self::SlowHeaders,
        Self::SlowBody,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::Busy => "busy",
            Self::RateLimited => "rate-limited",
            Self::Unauthorized => "unauthorized",
            Self::SlowHeaders => "slow-headers",
            Self::SlowBody => "slow-body",
        }
    }
}

/// A set of metrics; see the [module documentation](self).
#[derive(Debug, Default)]
pub struct Metrics {
    messages: AtomicU64,
    plugins_loaded: AtomicU64,
    http_refused: [AtomicU64; HttpRefusal::ALL.len()],
    plugins: RwLock<BTreeMap<PluginId, Arc<PluginMetrics>>>,
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one message received.
    pub fn message_received(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one client the HTTP adapter refused or cut off.
    pub fn http_refused(&self, why: HttpRefusal) {
        let i = HttpRefusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.http_refused[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the number of plugins loaded.
    pub fn set_plugins_loaded(&self, n: usize) {
        self.plugins_loaded
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The metrics of plugin `id`, created (at zero) on first use.
    pub fn plugin(&self, id: &PluginId) -> Arc<PluginMetrics> {
        // The map holds plain counters, valid whatever a panic left.
        if let Some(m) = self
            .plugins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return m.clone();
        }
        self.plugins
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default()
            .clone()
    }

    /// Runs one handler call, `call` to plugin `id`, and counts it: its
    /// duration (waiting for the plugin's instance included) and whether
    /// its outcome, as `failed` tells, is an error.
    pub async fn observe_call<F, T>(&self, id: &PluginId, call: F, failed: fn(&T) -> bool) -> T
    where
        F: Future<Output = T>,
    {
        let metrics = self.plugin(id);
        let start = Instant::now();
        let outcome = call.await;
        metrics.handler_call(start.elapsed(), failed(&outcome));
        outcome
    }

    /// Every metric in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let plugins: Vec<(PluginId, Arc<PluginMetrics>)> = self
            .plugins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);

        header(
            &mut out,
            "warden_messages_received_total",
            "counter",
            "Messages received by the host, from every adapter.",
        );
        sample(
            &mut out,
            "warden_messages_received_total",
            &[],
            load(&self.messages),
        );

        header(
            &mut out,
            "warden_http_refused_total",
            "counter",
            "HTTP clients refused or cut off, by reason.",
        );
        for (why, count) in HttpRefusal::ALL.iter().zip(&self.http_refused) {
            sample(
                &mut out,
                "warden_http_refused_total",
                &[("reason", why.name())],
                load(count),
            );
        }

        header(
            &mut out,
            "warden_plugins_loaded",
            "gauge",
            "Plugins loaded and serving.",
        );
        sample(
            &mut out,
            "warden_plugins_loaded",
            &[],
            load(&self.plugins_loaded),
        );

        header(
            &mut out,
            "warden_handler_calls_total",
            "counter",
            "Handler calls, by plugin.",
        );
        for (id, m) in &plugins {
            let labels = [("plugin", id.as_str())];
            sample(
                &mut out,
                "warden_handler_calls_total",
                &labels,
                load(&m.calls),
            );
        }

        header(
            &mut out,
            "warden_handler_errors_total",
            "counter",
            "Handler calls that failed (the handler's error, a trap, a time-out, or a refusal), \
             by plugin.",
        );
        for (id, m) in &plugins {
            let labels = [("plugin", id.as_str())];
            sample(
                &mut out,
                "warden_handler_errors_total",
                &labels,
                load(&m.errors),
            );
        }

        header(
            &mut out,
            "warden_handler_duration_seconds",
            "histogram",
            "Time from the start of a handler call to its outcome, by plugin.",
        );
        for (id, m) in &plugins {
            let h = &m.duration;
            let mut cumulative = 0;
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += load(&h.buckets[i]);
                let le = le.to_string();
                let labels = [("plugin", id.as_str()), ("le", le.as_str())];
                sample(
                    &mut out,
                    "warden_handler_duration_seconds_bucket",
                    &labels,
                    cumulative,
                );
            }
            cumulative += load(&h.buckets[LATENCY_BUCKETS.len()]);
            let labels = [("plugin", id.as_str()), ("le", "+Inf")];
            sample(
                &mut out,
                "warden_handler_duration_seconds_bucket",
                &labels,
                cumulative,
            );
            let labels = [("plugin", id.as_str())];
            let sum = load(&h.sum_nanos) as f64 / 1e9;
            sample(
                &mut out,
                "warden_handler_duration_seconds_sum",
                &labels,
                sum,
            );
            sample(
                &mut out,
                "warden_handler_duration_seconds_count",
                &labels,
                cumulative,
            );
        }

        header(
            &mut out,
            "warden_storage_operations_total",
            "counter",
            "Storage operations plugins called, by plugin and operation.",
        );
        for (id, m) in &plugins {
            for op in StorageOp::COUNTED {
                let labels = [("plugin", id.as_str()), ("op", op.name())];
                let calls = load(&m.storage[op.index()].calls);
                sample(&mut out, "warden_storage_operations_total", &labels, calls);
            }
        }

        header(
            &mut out,
            "warden_storage_errors_total",
            "counter",
            "Storage operations that failed, by plugin, operation and the error the plugin \
             received. A series appears with its first error.",
        );
        for (id, m) in &plugins {
            for op in StorageOp::COUNTED {
                for failure in StorageFailure::ALL {
                    let n = load(&m.storage[op.index()].errors[failure.index()]);
                    if n > 0 {
                        let labels = [
                            ("plugin", id.as_str()),
                            ("op", op.name()),
                            ("error", failure.name()),
                        ];
                        sample(&mut out, "warden_storage_errors_total", &labels, n);
                    }
                }
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Help texts are fixed strings without backslashes or line breaks.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(key);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Escapes a label value as the text format requires: backslash, double
/// quote and line feed. (Plugin identities cannot contain any of them; the
/// escaping keeps the output well-formed regardless.)
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PluginId {
        PluginId::new(s).unwrap()
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn counts_appear_with_their_labels() {
        let m = Metrics::new();
        m.message_received();
        m.message_received();
        m.set_plugins_loaded(1);
        let a = m.plugin(&id("a.A"));
        a.handler_call(Duration::from_millis(3), false);
        a.handler_call(Duration::from_secs(20), true);
        a.storage_op(StorageOp::Set, None);
        a.storage_op(StorageOp::Get, Some(StorageFailure::AccessDenied));
        a.storage_op(StorageOp::SizeHuman, None);
        a.storage_op(StorageOp::Increment, Some(StorageFailure::InvalidValue));
        let text = m.encode();
        let samples = lines(&text);
        for expected in [
            "warden_messages_received_total 2",
            "warden_plugins_loaded 1",
            "warden_handler_calls_total{plugin=\"a.A\"} 2",
            "warden_handler_errors_total{plugin=\"a.A\"} 1",
            "warden_handler_duration_seconds_bucket{plugin=\"a.A\",le=\"0.001\"} 0",
            "warden_handler_duration_seconds_bucket{plugin=\"a.A\",le=\"0.005\"} 1",
            "warden_handler_duration_seconds_bucket{plugin=\"a.A\",le=\"10\"} 1",
            "warden_handler_duration_seconds_bucket{plugin=\"a.A\",le=\"+Inf\"} 2",
            "warden_handler_duration_seconds_sum{plugin=\"a.A\"} 20.003",
            "warden_handler_duration_seconds_count{plugin=\"a.A\"} 2",
            "warden_storage_operations_total{plugin=\"a.A\",op=\"set\"} 1",
            "warden_storage_operations_total{plugin=\"a.A\",op=\"get\"} 1",
            "warden_storage_operations_total{plugin=\"a.A\",op=\"size\"} 1",
            "warden_storage_operations_total{plugin=\"a.A\",op=\"has\"} 0",
            "warden_storage_operations_total{plugin=\"a.A\",op=\"increment\"} 1",
            "warden_storage_operations_total{plugin=\"a.A\",op=\"delete-many\"} 0",
            "warden_storage_errors_total{plugin=\"a.A\",op=\"get\",error=\"access-denied\"} 1",
            "warden_storage_errors_total{plugin=\"a.A\",op=\"increment\",error=\"invalid-value\"} 1",
        ] {
            assert!(samples.contains(&expected), "{expected} missing in\n{text}");
        }
        assert_eq!(
            samples
                .iter()
                .filter(|l| l.starts_with("warden_storage_errors_total"))
                .count(),
            2,
            "only errors that happened have a series"
        );
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let m = Metrics::new();
        m.plugin(&id("a.A"));
        m.plugin(&id("b.B"));
        let text = m.encode();
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        assert_eq!(types.len(), 8, "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(
                types
                    .iter()
                    .any(|t| name.starts_with(t.split(' ').nth(2).unwrap())),
                "{line} has no TYPE"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("l", "a\"b\\c\nd")], 1);
        assert_eq!(out, "m{l=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[tokio::test]
    async fn observed_calls_are_counted() {
        let m = Metrics::new();
        let outcome: Result<(), &str> = Err("failed");
        let back = m
            .observe_call(&id("a.A"), async { outcome }, Result::is_err)
            .await;
        assert_eq!(back, outcome);
        let fine = m
            .observe_call(&id("a.A"), async { Ok::<(), &str>(()) }, Result::is_err)
            .await;
        assert_eq!(fine, Ok(()));
        let text = m.encode();
        assert!(
            text.contains("warden_handler_errors_total{plugin=\"a.A\"} 1"),
            "{text}"
        );
    }
}
