//! A loaded plugin: its instances, the calls into them, and the fault
//! breaker that pauses a plugin that keeps failing.

use std::time::{Duration, Instant};

use super::load::Stamp;
use super::pool::{Pool, Refused};
use super::{Failure, MAX_ERROR_BYTES, Outcome, PluginInfo, describe_trap, out_of_memory};
use crate::config::Limits;
use crate::metrics::PluginMetrics;
use crate::router::{Capture, CompiledRoute, Incoming};
use crate::runtime::{Code, Entry, Instance, Output, Pre, Runtime, Serving};
use crate::storage::PluginStorage;
use crate::text;
use std::sync::Arc;

/// Consecutive faults after which a plugin is paused before its next call.
const FAULTS_BEFORE_PAUSE: u32 = 3;
/// The first pause; each further fault doubles it, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Faults in a row, and the pause they earned.
#[derive(Debug, Default)]
struct Health {
    faults: u32,
    paused_until: Option<Instant>,
}

impl Health {
    /// Records a fault; returns the pause it starts, if any.
    fn fault(&mut self, now: Instant) -> Option<Duration> {
        self.faults = self.faults.saturating_add(1);
        let beyond = self.faults.checked_sub(FAULTS_BEFORE_PAUSE)?;
        let pause = FIRST_PAUSE
            .checked_mul(1u32.checked_shl(beyond).unwrap_or(u32::MAX))
            .map_or(MAX_PAUSE, |p| p.min(MAX_PAUSE));
        self.paused_until = Some(now + pause);
        Some(pause)
    }

    fn ok(&mut self) {
        self.faults = 0;
        self.paused_until = None;
    }
}

/// What an entry into a plugin's instance is for.
enum Call<'a> {
    /// A route's handler, for a message.
    Handle {
        index: u32,
        msg: &'a Incoming,
        captures: Vec<Capture>,
    },
    /// A schedule's handler.
    Schedule { index: u32 },
}

/// A loaded plugin.
pub struct LoadedPlugin {
    info: PluginInfo,
    digest: [u8; 32],
    /// What told the file apart when it was read.
    stamp: Option<Stamp>,
    /// Its compiled code, to start more instances.
    code: std::sync::Mutex<Compiled>,
    runtime: Runtime,
    /// Its storage, and the metrics it is counted in.
    serving: Serving,
    limits: Limits,
    /// Its log output, shared by its instances.
    output: Output,
    /// Its instances, each with the generation of the code it runs:
    /// `max_instances` serving at once, at most `max_calls_in_flight` calls
    /// waiting or running.
    pool: Pool<(u64, Instance)>,
    health: std::sync::Mutex<Health>,
}

/// A plugin's compiled code, and its generation: it goes up each time the
/// code is replaced, and an instance of an older generation is not used
/// again.
#[derive(Debug, Clone)]
struct Compiled {
    pre: Pre,
    code: Code,
    generation: u64,
}

/// What a plugin is made of once loaded.
pub(super) struct Parts {
    /// Its checked manifest and file.
    pub info: PluginInfo,
    /// The file's SHA-256.
    pub digest: [u8; 32],
    /// What told the file apart when it was read.
    pub stamp: Option<Stamp>,
    /// Its compiled code, to start more instances.
    pub pre: Pre,
    /// Which code that is.
    pub code: Code,
    /// The engine.
    pub runtime: Runtime,
    /// Its storage and metrics.
    pub serving: Serving,
    /// Its limits.
    pub limits: Limits,
    /// The instance that read its manifest, now serving as the plugin.
    pub instance: Instance,
}

impl LoadedPlugin {
    /// A loaded plugin with one idle instance, `parts.instance`.
    pub(super) fn new(parts: Parts) -> Self {
        let output = parts.instance.state().output().clone();
        Self {
            info: parts.info,
            digest: parts.digest,
            stamp: parts.stamp,
            code: std::sync::Mutex::new(Compiled {
                pre: parts.pre,
                code: parts.code,
                generation: 0,
            }),
            runtime: parts.runtime,
            serving: parts.serving,
            output,
            pool: Pool::new(
                vec![(0, parts.instance)],
                parts.limits.max_instances,
                parts.limits.max_calls_in_flight,
            ),
            health: std::sync::Mutex::default(),
            limits: parts.limits,
        }
    }

    /// The SHA-256 of its file.
    pub(super) fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// What told its file apart when it was read.
    pub(super) fn stamp(&self) -> Option<Stamp> {
        self.stamp
    }

    fn compiled(&self) -> std::sync::MutexGuard<'_, Compiled> {
        // Replaced whole: never half-updated.
        self.code.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Which code it runs: new instances start on it.
    pub fn code(&self) -> Code {
        self.compiled().code
    }

    /// Replaces its code with `pre` (`code`): calls under way finish on the
    /// instances they started on, and later calls start new instances.
    pub(super) fn replace_code(&self, pre: Pre, code: Code) {
        let mut compiled = self.compiled();
        compiled.generation += 1;
        compiled.pre = pre;
        compiled.code = code;
        drop(compiled);
        // The idle instances run the old code: they go now.
        self.pool.clear_idle();
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A reference that ties a failure the sender sees to its log entry.
fn log_reference() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "E{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// What the sender of a message sees of a failure whose details are logged
/// under `reference`.
fn see_the_log(what: &str, reference: &str) -> String {
    format!("{what}; see the host log (reference {reference})")
}

impl LoadedPlugin {
    /// The plugin's manifest.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// The storage the plugin sees.
    pub fn storage(&self) -> &PluginStorage {
        &self.serving.storage
    }

    /// The plugin's counters.
    pub fn metrics(&self) -> &Arc<PluginMetrics> {
        &self.serving.metrics
    }

    /// The sum of the compiled sizes of its routes, which the host's
    /// routing budget counts.
    pub fn route_cost(&self) -> usize {
        self.info.routes.iter().map(CompiledRoute::cost).sum()
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // Health is a pair of plain values, valid whatever a panic left.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls route `route` with `msg`, in an instance of its own for the
    /// call: calls wait for one of the plugin's `max_instances` instances.
    ///
    /// The whole call, waiting for an instance included, is bounded by the
    /// plugin's `handler_timeout_ms`: at the deadline the call ends with an
    /// error whatever the plugin is doing (running, sleeping, polling), and
    /// the replies it made so far are kept. A fault (a trap: a panic, the
    /// time limit, memory exhaustion, a stack overflow) is logged, reported
    /// in the outcome, and the instance is dropped, a fresh one being
    /// started for a later call; after three faults in a row the plugin is
    /// paused, for longer after each further fault, so a plugin that keeps
    /// failing is not rebuilt in a tight loop.
    pub async fn call(
        &self,
        route: &CompiledRoute,
        msg: &Incoming,
        captures: Vec<Capture>,
    ) -> Outcome {
        // What the call copies into the plugin is bounded as its reads are.
        let passed = [&msg.text, &msg.user, &msg.channel]
            .iter()
            .map(|s| s.len())
            .chain(
                [&msg.user_name, &msg.id, &msg.thread]
                    .iter()
                    .map(|s| s.as_ref().map_or(0, String::len)),
            )
            .chain(
                captures
                    .iter()
                    .map(|c| c.name.len() + c.value.as_ref().map_or(0, String::len)),
            )
            .fold(0u64, |sum, len| sum.saturating_add(len as u64));
        if passed > self.limits.max_read_bytes {
            let message = format!(
                "the message and its captures are {passed} bytes; at most {} bytes may be \
                 passed to one call ([limits] max_read_bytes)",
                self.limits.max_read_bytes
            );
            tracing::warn!(plugin = %self.info.id, handler = %route.handler, "call refused: {message}");
            let mut outcome = self.outcome(&route.handler);
            outcome.failure = Some(Failure::TooLarge);
            outcome.error = Some(message);
            return outcome;
        }
        self.enter(
            &route.handler,
            Call::Handle {
                index: route.index,
                msg,
                captures,
            },
        )
        .await
    }

    /// Runs the plugin's schedule `index` (in [`PluginInfo::schedules`]),
    /// as [`call`](Self::call) runs a route: in an instance of its own,
    /// within the plugin's `handler_timeout_ms`, its faults counted alike.
    pub async fn run_schedule(&self, index: usize) -> Outcome {
        let Some(schedule) = self.info.schedules.get(index) else {
            let mut outcome = self.outcome("");
            outcome.failure = Some(Failure::Handler);
            outcome.error = Some(format!("the plugin has no schedule {index}"));
            return outcome;
        };
        let index = u32::try_from(index).expect("bounded by MAX_SCHEDULES");
        self.enter(&schedule.handler, Call::Schedule { index })
            .await
    }

    /// An outcome of handler `handler` with nothing in it yet.
    fn outcome(&self, handler: &str) -> Outcome {
        Outcome {
            plugin: self.info.id.clone(),
            handler: handler.to_owned(),
            replies: Vec::new(),
            error: None,
            detail: None,
            failure: None,
        }
    }

    /// Makes `call` of handler `handler` in an instance of its own: the
    /// body of [`call`](Self::call) and [`run_schedule`](Self::run_schedule).
    async fn enter(&self, handler: &str, call: Call<'_>) -> Outcome {
        let deadline = Instant::now() + self.limits.handler_timeout();
        let mut outcome = self.outcome(handler);
        let mut slot = match self.pool.enter(deadline).await {
            Ok(slot) => slot,
            Err(Refused::Busy) => {
                let message = format!(
                    "busy: {} calls are already waiting or running",
                    self.limits.max_calls_in_flight
                );
                tracing::warn!(plugin = %self.info.id, "call refused: {message}");
                outcome.failure = Some(Failure::Busy);
                outcome.error = Some(message);
                return outcome;
            }
            Err(Refused::TimedOut) => {
                let message = format!(
                    "timed out: no instance of the plugin became free within its time limit of \
                     {} ms ([limits] handler_timeout_ms); its earlier calls are still under way",
                    self.limits.handler_timeout_ms
                );
                tracing::warn!(plugin = %self.info.id, handler = %handler, "{message}");
                outcome.failure = Some(Failure::TimedOut);
                outcome.error = Some(message);
                return outcome;
            }
        };
        let (paused_until, faults) = {
            let health = self.health();
            (health.paused_until, health.faults)
        };
        if let Some(until) = paused_until {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                outcome.failure = Some(Failure::Paused);
                outcome.error = Some(format!(
                    "paused for {:.1} s more after {faults} faults in a row",
                    left.as_secs_f64()
                ));
                return outcome;
            }
        }
        let (generation, pre) = {
            let compiled = self.compiled();
            (compiled.generation, compiled.pre.clone())
        };
        let idle = slot
            .take_idle()
            .filter(|(of, _)| *of == generation)
            .map(|(_, instance)| instance);
        let mut instance = match idle {
            Some(instance) => instance,
            None => match self.instantiate(&pre, deadline).await {
                Ok(instance) => instance,
                Err(e) => {
                    let (short, detail) = self.describe(&e);
                    let detail = format!("cannot start a new instance: {detail}");
                    let reference = self.fault(&detail, handler);
                    outcome.failure = Some(match e {
                        Entry::TimedOut => Failure::TimedOut,
                        Entry::OutOfMemory | Entry::Failed(_) => Failure::Trapped,
                    });
                    outcome.error = Some(match short {
                        Some(short) => format!("cannot start a new instance: {short}"),
                        None => see_the_log("cannot start a new instance", &reference),
                    });
                    outcome.detail = Some(detail);
                    return outcome;
                }
            },
        };
        let handled = match call {
            Call::Handle {
                index,
                msg,
                captures,
            } => instance.handle(deadline, index, msg, captures).await,
            Call::Schedule { index } => instance.run_schedule(deadline, index).await,
        };
        outcome.replies = handled.replies;
        match handled.result {
            Ok(result) => {
                // An instance on code replaced meanwhile is not kept.
                if self.compiled().generation == generation {
                    slot.put_back((generation, instance));
                }
                self.health().ok();
                if let Err(e) = result {
                    let e = text::truncate(&e, MAX_ERROR_BYTES).into_owned();
                    let reference = log_reference();
                    tracing::warn!(plugin = %self.info.id, handler = %handler,
                        reference = %reference, "handler failed: {}", text::escape(&e));
                    outcome.failure = Some(Failure::Handler);
                    outcome.error = Some(see_the_log("failed", &reference));
                    outcome.detail = Some(e);
                }
            }
            Err(e) => {
                // The instance is dropped here: one that trapped or was
                // stopped mid-call is in no state to serve again.
                drop(instance);
                let (short, detail) = self.describe(&e);
                let reference = self.fault(&detail, handler);
                outcome.failure = Some(match e {
                    Entry::TimedOut => Failure::TimedOut,
                    Entry::OutOfMemory | Entry::Failed(_) => Failure::Trapped,
                });
                outcome.error = Some(short.unwrap_or_else(|| see_the_log("trapped", &reference)));
                outcome.detail = Some(detail);
            }
        }
        outcome
    }

    /// A readable account of a failed entry into the plugin: a short one
    /// for the sender where the host can give one, and the full one.
    fn describe(&self, e: &Entry) -> (Option<String>, String) {
        match e {
            Entry::TimedOut => {
                let message = format!(
                    "timed out: still running or waiting at its time limit of {} ms \
                     ([limits] handler_timeout_ms); the instance was stopped",
                    self.limits.handler_timeout_ms
                );
                (Some(message.clone()), message)
            }
            Entry::OutOfMemory => {
                let message = out_of_memory(&self.limits);
                (Some(message.clone()), message)
            }
            Entry::Failed(e) => {
                let detail = describe_trap(e, &self.limits);
                // A trap the host names is short and stable; any other
                // account carries the plugin's backtrace.
                let known = e.downcast_ref::<wasmtime::Trap>().is_some();
                (known.then(|| detail.clone()), detail)
            }
        }
    }

    /// Logs a fault and counts it towards a pause; returns the reference
    /// of its log entry.
    fn fault(&self, message: &str, handler: &str) -> String {
        let pause = self.health().fault(Instant::now());
        let id = &self.info.id;
        let message = text::escape(message);
        let reference = log_reference();
        match pause {
            None => tracing::error!(plugin = %id, handler = %handler, reference = %reference,
                "handler failed: {message}; the instance is rebuilt for the next message"),
            Some(pause) => tracing::error!(plugin = %id, handler = %handler,
                reference = %reference,
                "handler failed: {message}; paused for {} s after {} faults in a row",
                pause.as_secs(), self.health().faults),
        }
        reference
    }

    /// A new instance of `pre`, started by `deadline`.
    async fn instantiate(&self, pre: &Pre, deadline: Instant) -> Result<Instance, Entry> {
        let store = self.runtime.new_store(
            pre,
            self.output.clone(),
            Some(self.serving.clone()),
            &self.limits,
        );
        pre.instantiate(store, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_pauses_after_three_faults_for_longer_each_time() {
        let now = Instant::now();
        let mut health = Health::default();
        assert_eq!(health.fault(now), None);
        assert_eq!(health.fault(now), None);
        assert_eq!(health.paused_until, None);
        assert_eq!(health.fault(now), Some(FIRST_PAUSE));
        assert_eq!(health.paused_until, Some(now + FIRST_PAUSE));
        assert_eq!(health.fault(now), Some(FIRST_PAUSE * 2));
        assert_eq!(health.fault(now), Some(FIRST_PAUSE * 4));
        for _ in 0..100 {
            health.fault(now);
        }
        assert_eq!(health.fault(now), Some(MAX_PAUSE), "the pause is capped");
        health.faults = u32::MAX;
        assert_eq!(health.fault(now), Some(MAX_PAUSE), "the count saturates");
    }

    #[test]
    fn a_call_that_succeeds_closes_the_breaker() {
        let now = Instant::now();
        let mut health = Health::default();
        for _ in 0..FAULTS_BEFORE_PAUSE {
            health.fault(now);
        }
        assert!(health.paused_until.is_some());
        health.ok();
        assert_eq!((health.faults, health.paused_until), (0, None));
        assert_eq!(health.fault(now), None, "counting starts again");
    }
}
