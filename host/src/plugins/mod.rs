//! Loading plugins from a directory, reloading them when it changes, and
//! calling them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tokio::sync::Semaphore;

use crate::config::{Config, Limits, RoutingConfig};
use crate::identity::{IdError, PluginId};
use crate::metrics::{Metrics, PluginMetrics};
use crate::router::{self, Capture, CompiledRoute, Incoming, RouteError};
use crate::runtime::cache::{self, CacheOutcome, CompileCache};
use crate::runtime::{Declared, Entry, Instance, Output, Pre, Runtime, Serving};
use crate::storage::bindings::{self, binding_name};
use crate::storage::{Backend, PluginStorage, Usage};
use crate::text;

/// Longest handler error, or account of a trap, kept in bytes: errors reach
/// the log, the console and HTTP answers; a longer one is cut, with a
/// marker.
pub const MAX_ERROR_BYTES: usize = 4096;
/// Longest manifest `version`, in bytes.
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest manifest `description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Consecutive faults after which a plugin is paused before its next call.
const FAULTS_BEFORE_PAUSE: u32 = 3;
/// The first pause; each further fault doubles it, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Why a file in the plugins directory was not loaded. Every variant names
/// the file; the other plugins load regardless.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a WebAssembly component (a core module, or not WebAssembly).
    #[error("{file}: not a valid WebAssembly component: {message}")]
    NotAComponent {
        /// The file.
        file: PathBuf,
        /// What the compiler said.
        message: String,
    },
    /// A component that does not implement the `warden:plugin/plugin` world:
    /// it imports something Warden does not provide or lacks an export.
    #[error("{file}: does not implement the warden:plugin/plugin world: {message}")]
    WrongWorld {
        /// The file.
        file: PathBuf,
        /// What is missing or unexpected.
        message: String,
    },
    /// The component trapped or failed while starting or reading its manifest.
    #[error("{file}: failed while starting: {message}")]
    Start {
        /// The file.
        file: PathBuf,
        /// The trap or error.
        message: String,
    },
    /// Starting the component, or reading its manifest, did not return in
    /// time: it ran or waited past the time limit.
    #[error(
        "{file}: {stage} did not return within the time limit of {limit_ms} ms \
         ([limits] handler_timeout_ms); the file is not loaded"
    )]
    TimedOut {
        /// The file.
        file: PathBuf,
        /// What timed out: `instantiation` or `manifest`.
        stage: &'static str,
        /// The limit.
        limit_ms: u64,
    },
    /// The manifest declares a field the host does not accept: a version or
    /// description over its length limit, or holding control characters.
    #[error("{file}: invalid manifest: {message}")]
    BadManifest {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The declared identity is not valid.
    #[error("{file}: invalid plugin identity: {source}")]
    InvalidId {
        /// The file.
        file: PathBuf,
        /// The rule it broke.
        source: IdError,
    },
    /// Another file already declared the same identity.
    #[error(
        "{file}: declares plugin identity {id}, which {first} already declared; \
         {file} is not loaded (remove one of the two files)"
    )]
    DuplicateId {
        /// The file refused.
        file: PathBuf,
        /// The identity both declare.
        id: PluginId,
        /// The file that was loaded with it.
        first: PathBuf,
    },
    /// The identity is bound to another file: a new file cannot take over
    /// an existing plugin's data by declaring its identity. The message
    /// ends with the command that moves the identity (see
    /// [`rebind_command`]).
    #[error(
        "{file}: declares plugin identity {id}, which is bound to the file {bound_to}; \
         {file} is not loaded. If it is meant to replace {bound_to} and take over its data, \
         run `{rebind}`",
        rebind = rebind_command(.id, .file)
    )]
    BoundElsewhere {
        /// The file refused.
        file: PathBuf,
        /// The identity.
        id: PluginId,
        /// The file name the identity is bound to.
        bound_to: String,
    },
    /// The store failed while the plugin was loading.
    #[error("{file}: storage failed while loading: {message}")]
    Storage {
        /// The file.
        file: PathBuf,
        /// The store's error.
        message: String,
    },
    /// A route is invalid.
    #[error("{file}: plugin {id}: {source}")]
    BadRoute {
        /// The file.
        file: PathBuf,
        /// The plugin's identity.
        id: PluginId,
        /// The route at fault.
        source: RouteError,
    },
}

impl LoadError {
    /// Whether loading the same file again would fail in the same way:
    /// the error comes from the file's contents alone, not from the other
    /// plugins, the store or the file system. Such a file is not tried
    /// again until it changes.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            LoadError::NotAComponent { .. }
                | LoadError::WrongWorld { .. }
                | LoadError::Start { .. }
                | LoadError::TimedOut { .. }
                | LoadError::BadManifest { .. }
                | LoadError::InvalidId { .. }
        ) || matches!(
            self,
            LoadError::BadRoute { source, .. } if !matches!(source, RouteError::HostBudget { .. })
        )
    }
}

/// A loaded plugin's identity and routes, as declared in its manifest.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The identity its storage is namespaced by.
    pub id: PluginId,
    /// Its declared version.
    pub version: String,
    /// Its description.
    pub description: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// The SHA-256 digest of the file, in hex.
    pub digest: String,
    /// Its routes, in declaration order.
    pub routes: Vec<CompiledRoute>,
}

/// Faults in a row, and the pause they earned.
#[derive(Debug, Default)]
struct Health {
    faults: u32,
    paused_until: Option<Instant>,
}

impl Health {
    /// Records a fault; returns the pause it starts, if any.
    fn fault(&mut self, now: Instant) -> Option<Duration> {
        self.faults += 1;
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

/// A loaded plugin.
pub struct LoadedPlugin {
    info: PluginInfo,
    digest: [u8; 32],
    /// What told the file apart when it was read.
    stamp: Option<Stamp>,
    pre: Pre,
    runtime: Runtime,
    /// Its storage, and the metrics it is counted in.
    serving: Serving,
    limits: Limits,
    /// Its log output, shared by its instances.
    output: Output,
    /// Instances not serving a call. A call takes one, or starts one if
    /// there is none, and puts it back after; an instance that trapped is
    /// dropped instead.
    idle: std::sync::Mutex<Vec<Instance>>,
    /// One permit for each instance that may serve a call at once
    /// (`max_instances`).
    instances: Semaphore,
    /// Bounds the calls waiting for or running in an instance.
    in_flight: Semaphore,
    health: std::sync::Mutex<Health>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The result of one handler call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The plugin that handled the message.
    pub plugin: PluginId,
    /// The handler's name.
    pub handler: String,
    /// Everything the handler said, in order.
    pub replies: Vec<String>,
    /// Why the call failed, if it did, as the sender may see it: short and
    /// stable, written by the host (`timed out: ...`, `trapped: stack
    /// overflow`, `busy: ...`). Where the reason is the plugin's own text (a
    /// handler's error) or long (a trap's backtrace), it reads
    /// `failed; see the host log (reference E12)`, and the log entry with
    /// that reference has the [`detail`](Self::detail).
    pub error: Option<String>,
    /// The full account of a failure, as logged: the handler's own error,
    /// or the trap with its backtrace; at most [`MAX_ERROR_BYTES`] (and a
    /// marker).
    pub detail: Option<String>,
    /// What kind of failure it was, if the call failed.
    pub failure: Option<Failure>,
}

/// What kind of failure ended a call (see [`Outcome::failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Refused at once: `max_calls_in_flight` calls were waiting or
    /// running.
    Busy,
    /// Refused: the plugin is paused after faults in a row.
    Paused,
    /// Refused: the message and its captures are over `max_read_bytes`.
    TooLarge,
    /// It ran or waited past its time limit, or no instance became free
    /// within it.
    TimedOut,
    /// It trapped (a panic, its memory limit, a stack overflow...), or no
    /// instance could be started.
    Trapped,
    /// The handler returned an error.
    Handler,
    /// The host failed while running it.
    Host,
}

impl Failure {
    /// A short, stable name: `busy`, `paused`, `too-large`, `timed-out`,
    /// `trapped`, `handler` or `host`.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Busy => "busy",
            Failure::Paused => "paused",
            Failure::TooLarge => "too-large",
            Failure::TimedOut => "timed-out",
            Failure::Trapped => "trapped",
            Failure::Handler => "handler",
            Failure::Host => "host",
        }
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
        let deadline = Instant::now() + self.limits.handler_timeout();
        let mut outcome = Outcome {
            plugin: self.info.id.clone(),
            handler: route.handler.clone(),
            replies: Vec::new(),
            error: None,
            detail: None,
            failure: None,
        };
        // What the call copies into the plugin is bounded as its reads are.
        let passed = [&msg.text, &msg.user, &msg.channel]
            .iter()
            .map(|s| s.len())
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
            outcome.failure = Some(Failure::TooLarge);
            outcome.error = Some(message);
            return outcome;
        }
        let Ok(_permit) = self.in_flight.try_acquire() else {
            let message = format!(
                "busy: {} calls are already waiting or running",
                self.limits.max_calls_in_flight
            );
            tracing::warn!(plugin = %self.info.id, "call refused: {message}");
            outcome.failure = Some(Failure::Busy);
            outcome.error = Some(message);
            return outcome;
        };
        // A free instance is taken at once; only a wait needs the timer.
        let free = match self.instances.try_acquire() {
            Ok(permit) => Ok(Ok(permit)),
            Err(_) => tokio::time::timeout_at(deadline.into(), self.instances.acquire()).await,
        };
        let Ok(permit) = free else {
            let message = format!(
                "timed out: no instance of the plugin became free within its time limit of {} ms \
                 ([limits] handler_timeout_ms); its earlier calls are still under way",
                self.limits.handler_timeout_ms
            );
            tracing::warn!(plugin = %self.info.id, handler = %route.handler, "{message}");
            outcome.failure = Some(Failure::TimedOut);
            outcome.error = Some(message);
            return outcome;
        };
        let Ok(_instance_permit) = permit else {
            unreachable!("the semaphore of instances is never closed");
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
        let idle = self.idle().pop();
        let mut instance = match idle {
            Some(instance) => instance,
            None => match self.instantiate(deadline).await {
                Ok(instance) => instance,
                Err(e) => {
                    let (short, detail) = self.describe(&e);
                    let detail = format!("cannot start a new instance: {detail}");
                    let reference = self.fault(&detail, route);
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
        let handled = instance.handle(deadline, route.index, msg, captures).await;
        outcome.replies = handled.replies;
        match handled.result {
            Ok(result) => {
                self.idle().push(instance);
                self.health().ok();
                if let Err(e) = result {
                    let e = text::truncate(&e, MAX_ERROR_BYTES).into_owned();
                    let reference = log_reference();
                    tracing::warn!(plugin = %self.info.id, handler = %route.handler,
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
                let reference = self.fault(&detail, route);
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

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        // Pushing and popping whole instances cannot leave the list
        // half-updated.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a fault and counts it towards a pause; returns the reference
    /// of its log entry.
    fn fault(&self, message: &str, route: &CompiledRoute) -> String {
        let pause = self.health().fault(Instant::now());
        let id = &self.info.id;
        let message = text::escape(message);
        let reference = log_reference();
        match pause {
            None => tracing::error!(plugin = %id, handler = %route.handler, reference = %reference,
                "handler failed: {message}; the instance is rebuilt for the next message"),
            Some(pause) => tracing::error!(plugin = %id, handler = %route.handler,
                reference = %reference,
                "handler failed: {message}; paused for {} s after {} faults in a row",
                pause.as_secs(), self.health().faults),
        }
        reference
    }

    /// A new instance, started by `deadline`.
    async fn instantiate(&self, deadline: Instant) -> Result<Instance, Entry> {
        let store = self.runtime.new_store(
            self.output.clone(),
            Some(self.serving.clone()),
            &self.limits,
        );
        self.pre.instantiate(store, deadline).await
    }
}

/// The account of an instance stopped by its memory limit.
fn out_of_memory(limits: &Limits) -> String {
    format!(
        "trapped: ran out of memory (its limit is {} bytes)",
        limits.max_memory_bytes
    )
}

/// A readable account of a trap, naming the limit that stopped the plugin
/// where one did.
fn describe_trap(e: &wasmtime::Error, limits: &Limits) -> String {
    let described = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "trapped: ran longer than its time limit of {} ms",
            limits.handler_timeout_ms
        ),
        Some(wasmtime::Trap::StackOverflow) => "trapped: stack overflow".to_owned(),
        Some(trap) => format!("trapped: {trap}"),
        None => format!("trapped: {e:#}"),
    };
    // A trap's backtrace names the plugin's own functions: bound it.
    text::truncate(&described, MAX_ERROR_BYTES).into_owned()
}

/// The `.wasm` files directly inside `dir`, sorted by name.
pub fn plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// What loading needs from the host.
#[derive(Debug, Clone, Copy)]
pub struct Loader<'a> {
    /// The engine and linker.
    pub runtime: &'a Runtime,
    /// The store.
    pub backend: &'a Arc<dyn Backend>,
    /// Grants and limits.
    pub config: &'a Config,
    /// The shared keyspace's usage, for its quota.
    pub shared_usage: &'a Arc<Usage>,
    /// Where compiled plugins are kept, if anywhere.
    pub cache: Option<&'a Arc<CompileCache>>,
    /// The metrics plugins are counted in.
    pub metrics: &'a Arc<Metrics>,
}

/// Files that failed to load, by path, with what they held then: [`sync`]
/// does not read them again until they change, nor try them again while
/// the reason holds (see [`LoadError::is_permanent`]; a duplicate identity
/// holds while the file that has it keeps it).
pub type Failed = HashMap<PathBuf, FailedFile>;

/// A file that failed to load, as [`Failed`] keeps it.
#[derive(Debug, Clone)]
pub struct FailedFile {
    stamp: Stamp,
    digest: [u8; 32],
    error: Arc<LoadError>,
}

/// What tells, without reading it, that a file has not changed since it
/// was last read: its length, modification time and (on Unix) inode. A
/// file written in place changes its time; one renamed into place, its
/// inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            inode,
        }
    }
}

/// A file's contents as [`sync`] found them: read (`bytes`), or known
/// unchanged from its [`Stamp`] (`bytes` is `None`).
struct Found {
    bytes: Option<Vec<u8>>,
    digest: [u8; 32],
    stamp: Stamp,
}

/// Reads `path` unless its stamp is `known`'s, whose digest it then has.
fn find(path: &Path, known: Option<(Stamp, [u8; 32])>) -> std::io::Result<Found> {
    let stamp = Stamp::of(&std::fs::metadata(path)?);
    if let Some((known, digest)) = known
        && known == stamp
    {
        return Ok(Found {
            bytes: None,
            digest,
            stamp,
        });
    }
    let bytes = std::fs::read(path)?;
    let digest = cache::sha256(&bytes);
    // The stamp of what was read: taken again, so a write under way while
    // reading makes the next look read it again.
    let stamp = Stamp::of(&std::fs::metadata(path)?);
    Ok(Found {
        bytes: Some(bytes),
        digest,
        stamp,
    })
}

/// The plugins after a [`sync`], and what changed.
#[derive(Debug, Default)]
pub struct Synced {
    /// The plugins now loaded, in file-name order.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// Files that could not be loaded, and why. Where a file had loaded
    /// before, its old version is still among `plugins`.
    pub errors: Vec<Arc<LoadError>>,
    /// The files that failed for a reason of their own, to pass to the
    /// next [`sync`].
    pub failed: Failed,
    /// Files loaded that were not loaded before.
    pub added: Vec<PathBuf>,
    /// Files whose new contents replaced the old.
    pub replaced: Vec<PathBuf>,
    /// Files that are gone, and their plugins unloaded.
    pub removed: Vec<PathBuf>,
}

impl Synced {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.replaced.is_empty() && self.removed.is_empty())
    }
}

/// Brings the loaded plugins in line with `files`: keeps the plugins whose
/// file is unchanged (same SHA-256), loads new and changed files, and drops
/// the plugins whose file is gone. A changed file that fails to load leaves
/// its old version serving. A file in `failed` with the same contents is
/// reported with its earlier error and not tried again. Calls under way keep
/// the instances they started on.
pub async fn sync(
    current: &[Arc<LoadedPlugin>],
    files: &[PathBuf],
    failed: &Failed,
    loader: Loader<'_>,
) -> Synced {
    let mut synced = Synced::default();
    let old_by_file: HashMap<&Path, &Arc<LoadedPlugin>> =
        current.iter().map(|p| (p.info.file.as_path(), p)).collect();

    // Files are read and hashed, then prepared (below), several at a
    // time, the CPU-bound work on the blocking pool.
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());

    // Look at every file first: unchanged ones are kept as they are, and
    // not read again.
    let contents: Vec<_> = futures::stream::iter(files.to_vec())
        .map(|path: PathBuf| {
            let known = failed.get(&path).map(|f| (f.stamp, f.digest)).or_else(|| {
                old_by_file
                    .get(path.as_path())
                    .and_then(|p| p.stamp.map(|stamp| (stamp, p.digest)))
            });
            let read = tokio::task::spawn_blocking(move || find(&path, known));
            async move {
                read.await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            }
        })
        .buffered(parallel * 2)
        .collect()
        .await;
    let mut work = Vec::new();
    // Files that held a duplicate identity: still refused if the file that
    // has the identity keeps it.
    let mut duplicates = Vec::new();
    let mut kept: HashMap<PathBuf, Arc<LoadedPlugin>> = HashMap::new();
    for (file, read) in files.iter().zip(contents) {
        let old = old_by_file.get(file.as_path()).copied();
        match read {
            Ok(found) => match (old, failed.get(file)) {
                (Some(old), _) if old.digest == found.digest => {
                    kept.insert(file.clone(), old.clone());
                }
                (old, Some(before)) if before.digest == found.digest => {
                    if let Some(old) = old {
                        kept.insert(file.clone(), old.clone());
                    }
                    if before.error.is_permanent() {
                        synced.errors.push(before.error.clone());
                        synced.failed.insert(
                            file.clone(),
                            FailedFile {
                                stamp: found.stamp,
                                ..before.clone()
                            },
                        );
                    } else {
                        duplicates.push((file.clone(), found, before.clone()));
                    }
                }
                _ => work.push((file.clone(), found)),
            },
            Err(source) => {
                if let Some(old) = old {
                    kept.insert(file.clone(), old.clone());
                }
                synced.errors.push(Arc::new(LoadError::Read {
                    file: file.clone(),
                    source,
                }));
            }
        }
    }

    let mut by_id: HashMap<PluginId, PathBuf> = kept
        .values()
        .map(|p| (p.info.id.clone(), p.info.file.clone()))
        .collect();
    for (file, found, before) in duplicates {
        let still = match &*before.error {
            LoadError::DuplicateId { id, first, .. } => by_id.get(id) == Some(first),
            _ => false,
        };
        if still {
            synced.errors.push(before.error.clone());
            synced.failed.insert(file, before);
        } else {
            work.push((file, found));
        }
    }
    work.sort_by(|a, b| a.0.cmp(&b.0));
    // Files known unchanged but to be tried again are read now.
    let mut read_now = Vec::new();
    for (file, found) in work {
        if found.bytes.is_some() {
            read_now.push((file, found));
            continue;
        }
        match tokio::fs::read(&file).await {
            Ok(bytes) => read_now.push((
                file,
                Found {
                    digest: cache::sha256(&bytes),
                    bytes: Some(bytes),
                    stamp: found.stamp,
                },
            )),
            Err(source) => synced
                .errors
                .push(Arc::new(LoadError::Read { file, source })),
        }
    }
    let work: Vec<_> = read_now
        .into_iter()
        .map(|(file, found)| {
            let bytes = found.bytes.unwrap_or_default();
            (file, bytes, found.digest, found.stamp)
        })
        .collect();
    let progress = Progress::new(work.len());
    let mut loaded: HashMap<PathBuf, Arc<LoadedPlugin>> = HashMap::new();
    // Files are prepared several at a time, and then loaded one by one in
    // name order, so that of two files declaring one identity the first in
    // name order wins. Twice as many as there are cores are under way, so
    // that one file's CPU-bound step overlaps another's wait.
    let limits = &loader.config.limits;
    let routing = &loader.config.routing;
    let bar = &progress;
    let mut prepared = futures::stream::iter(work)
        .map(|(file, bytes, digest, stamp)| async move {
            bar.start(&file);
            let result = prepare(
                loader.runtime,
                &file,
                bytes,
                digest,
                loader.cache,
                limits,
                routing,
            )
            .await;
            (
                file,
                digest,
                stamp,
                result.map(|p| Prepared {
                    stamp: Some(stamp),
                    ..p
                }),
            )
        })
        .buffered(parallel * 2);
    // The routes of every plugin kept count towards the host's budget, and
    // those of each plugin loaded as it loads.
    let mut route_cost: usize = kept.values().map(|p| p.route_cost()).sum();
    while let Some((file, digest, stamp, result)) = prepared.next().await {
        let old = old_by_file.get(file.as_path()).copied();
        let result = match result {
            Ok(prepared) => {
                match router::check_host_budget(route_cost, &prepared.routes, routing) {
                    Ok(()) => finish(prepared, loader, &by_id).await,
                    Err(source) => Err(LoadError::BadRoute {
                        file: prepared.file,
                        id: prepared.id,
                        source,
                    }),
                }
            }
            Err(e) => Err(e),
        };
        if let Ok(plugin) = &result {
            route_cost = route_cost.saturating_add(plugin.route_cost());
        }
        match result {
            Ok(plugin) => {
                tracing::info!(plugin = %plugin.info.id, version = %plugin.info.version,
                    file = %file.display(), routes = plugin.info.routes.len(),
                    "plugin {}", if old.is_some() { "reloaded" } else { "loaded" });
                by_id.insert(plugin.info.id.clone(), file.clone());
                if old.is_some() {
                    synced.replaced.push(file.clone());
                } else {
                    synced.added.push(file.clone());
                }
                loaded.insert(file, Arc::new(plugin));
            }
            Err(e) => {
                let e = Arc::new(e);
                match old {
                    Some(old) => {
                        tracing::error!(
                            "{}; the previous version of {} keeps serving",
                            text::escape(&e.to_string()),
                            file.display()
                        );
                        route_cost = route_cost.saturating_add(old.route_cost());
                        kept.insert(file.clone(), old.clone());
                    }
                    None => tracing::error!("plugin skipped: {}", text::escape(&e.to_string())),
                }
                if e.is_permanent() || matches!(&*e, LoadError::DuplicateId { .. }) {
                    synced.failed.insert(
                        file,
                        FailedFile {
                            stamp,
                            digest,
                            error: e.clone(),
                        },
                    );
                }
                synced.errors.push(e);
            }
        }
        progress.done();
    }
    drop(prepared);
    progress.finish();

    for file in files {
        if let Some(plugin) = loaded.remove(file).or_else(|| kept.remove(file)) {
            synced.plugins.push(plugin);
        }
    }
    for plugin in current {
        if !files.contains(&plugin.info.file) {
            tracing::info!(plugin = %plugin.info.id, file = %plugin.info.file.display(),
                "plugin unloaded: its file is gone");
            synced.removed.push(plugin.info.file.clone());
        }
    }
    synced
}

/// Compilation progress: a bar on a terminal, log lines elsewhere.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    /// A bar is worth showing only for several plugins.
    const BAR_FROM: usize = 4;

    fn new(total: usize) -> Self {
        use std::io::IsTerminal;
        if total < Self::BAR_FROM || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg:>30.dim} {bar:30} {pos}/{len} plugins")
        {
            bar.set_style(style);
        }
        Self(Some(bar))
    }

    fn start(&self, file: &Path) {
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match &self.0 {
            Some(bar) => bar.set_message(name),
            None => tracing::debug!(file = %file.display(), "loading plugin"),
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }

    fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}

/// A plugin file compiled, started and asked for its manifest, with its
/// identity and routes checked: all of loading that does not depend on the
/// other plugins or the store, so files are prepared side by side.
pub(crate) struct Prepared {
    /// The file.
    pub file: PathBuf,
    /// What tells the file has not changed since, when known.
    pub stamp: Option<Stamp>,
    /// Its SHA-256 digest.
    pub digest: [u8; 32],
    pre: Pre,
    /// The instance that read the manifest; it goes on to serve.
    instance: Instance,
    /// The declared identity, validated.
    pub id: PluginId,
    /// The declared version.
    pub version: String,
    /// The declared description.
    pub description: String,
    /// The declared routes, compiled.
    pub routes: Vec<CompiledRoute>,
}

/// Compiles `bytes` (the contents of `file`, whose SHA-256 is `digest`),
/// through `cache` when given, checks that it implements the plugin world,
/// starts it without storage, reads its manifest, and validates its
/// identity and routes. `limits` bound the start and the manifest call,
/// `routing` the routes.
pub(crate) async fn prepare(
    runtime: &Runtime,
    file: &Path,
    bytes: Vec<u8>,
    digest: [u8; 32],
    cache: Option<&Arc<CompileCache>>,
    limits: &Limits,
    routing: &RoutingConfig,
) -> Result<Prepared, LoadError> {
    let path = file.to_path_buf();
    let (component, outcome) = {
        let runtime = runtime.clone();
        let file = path.clone();
        let cache = cache.cloned();
        // Compiling is CPU-bound: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            runtime.compile(&bytes, &digest, &file, cache.as_deref())
        })
        .await
        .map_err(|e| LoadError::NotAComponent {
            file: path.clone(),
            message: e.to_string(),
        })?
        .map_err(|e| LoadError::NotAComponent {
            file: path.clone(),
            message: text::one_line(&format!("{e:#}")),
        })?
    };
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        file: path.clone(),
        message: text::one_line(&format!("{e:#}")),
    };
    let pre = runtime.prepare(&component).map_err(wrong_world)?;
    if outcome == CacheOutcome::Hit {
        tracing::debug!(file = %path.display(), "compiled code from the cache");
    }

    let start = |stage: &'static str| {
        let path = path.clone();
        move |e: Entry| match e {
            Entry::TimedOut => LoadError::TimedOut {
                file: path,
                stage,
                limit_ms: limits.handler_timeout_ms,
            },
            Entry::OutOfMemory => LoadError::Start {
                file: path,
                message: out_of_memory(limits),
            },
            Entry::Failed(e) => LoadError::Start {
                file: path,
                message: describe_trap(&e, limits),
            },
        }
    };
    let output = Output::new(Arc::from(path.display().to_string()));
    let store = runtime.new_store(output, None, limits);
    let deadline = Instant::now() + limits.handler_timeout();
    let mut instance = pre
        .instantiate(store, deadline)
        .await
        .map_err(start("instantiation"))?;
    let deadline = Instant::now() + limits.handler_timeout();
    let manifest = instance
        .manifest(deadline)
        .await
        .map_err(start("manifest"))?;

    let id = PluginId::new(&manifest.id).map_err(|source| LoadError::InvalidId {
        file: path.clone(),
        source,
    })?;
    check_manifest(&manifest).map_err(|message| LoadError::BadManifest {
        file: path.clone(),
        message: format!("plugin {id}: {message}"),
    })?;
    // Compiling patterns is CPU-bound too.
    let declared = manifest.routes;
    let routing = *routing;
    let routes = tokio::task::spawn_blocking(move || router::compile(&declared, &routing))
        .await
        .map_err(|e| LoadError::Start {
            file: path.clone(),
            message: format!("compiling its routes failed: {e}"),
        })?
        .map_err(|source| LoadError::BadRoute {
            file: path.clone(),
            id: id.clone(),
            source,
        })?;
    Ok(Prepared {
        file: path,
        stamp: None,
        digest,
        pre,
        instance,
        id,
        version: manifest.version,
        description: manifest.description,
        routes,
    })
}

/// Refuses manifest fields that would reach operators unbounded or forge
/// their output: an over-long version or description, control characters
/// in them or in a handler's name.
fn check_manifest(manifest: &Declared) -> Result<(), String> {
    let field = |name: &str, value: &str, max: usize| {
        if value.len() > max {
            return Err(format!(
                "its {name} is {} bytes long; at most {max} are allowed",
                value.len()
            ));
        }
        if value.chars().any(text::needs_escape) {
            return Err(format!(
                "its {name} {:?} holds control or formatting characters",
                text::truncate(value, 100)
            ));
        }
        Ok(())
    };
    field("version", &manifest.version, MAX_VERSION_BYTES)?;
    field("description", &manifest.description, MAX_DESCRIPTION_BYTES)?;
    for (index, route) in manifest.routes.iter().enumerate() {
        if route.handler.chars().any(text::needs_escape) {
            return Err(format!(
                "the handler name of route {index}, {:?}, holds control or formatting characters",
                text::truncate(&route.handler, 100)
            ));
        }
    }
    Ok(())
}

/// Loads a prepared plugin: refuses an identity that another file declares
/// (`loaded`: the identities loaded so far, and their files) or is bound
/// to, gives the instance its storage, and binds the identity to the file.
async fn finish(
    prepared: Prepared,
    loader: Loader<'_>,
    loaded: &HashMap<PluginId, PathBuf>,
) -> Result<LoadedPlugin, LoadError> {
    let Loader {
        runtime,
        backend,
        config,
        shared_usage,
        metrics,
        cache: _,
    } = loader;
    let Prepared {
        file: path,
        stamp,
        digest,
        pre,
        mut instance,
        id,
        version,
        description,
        routes,
    } = prepared;
    if let Some(first) = loaded.get(&id) {
        return Err(LoadError::DuplicateId {
            file: path,
            id,
            first: first.clone(),
        });
    }
    let bound = check_binding(&**backend, &id, &path).await?;
    let limits = config.limits_for(&id);
    let storage = PluginStorage::new(
        backend.clone(),
        id.clone(),
        config.grant(&id),
        limits.storage(),
        shared_usage.clone(),
    );
    storage.recount().await.map_err(|e| LoadError::Storage {
        file: path.clone(),
        message: e.to_string(),
    })?;
    // The instance that read the manifest serves the messages, tagged with
    // the identity and given its storage.
    let serving = Serving {
        storage,
        metrics: metrics.plugin(&id),
    };
    instance
        .state_mut()
        .serve_as(id.as_str(), serving.clone(), &limits);
    if !bound {
        bind(&**backend, &id, &path).await?;
    }
    let output = instance.state().output().clone();
    Ok(LoadedPlugin {
        info: PluginInfo {
            id,
            version,
            description,
            file: path,
            digest: cache::hex(&digest),
            routes,
        },
        digest,
        stamp,
        pre,
        runtime: runtime.clone(),
        serving,
        limits,
        output,
        idle: std::sync::Mutex::new(vec![instance]),
        instances: Semaphore::new(limits.max_instances),
        in_flight: Semaphore::new(limits.max_calls_in_flight),
        health: std::sync::Mutex::default(),
    })
}

/// Refuses a file that declares an identity bound to another file; returns
/// whether the identity is bound (to this file) already.
pub async fn check_binding(
    backend: &dyn Backend,
    id: &PluginId,
    file: &Path,
) -> Result<bool, LoadError> {
    let bound = bindings::bound(backend, id)
        .await
        .map_err(|e| LoadError::Storage {
            file: file.to_path_buf(),
            message: e.to_string(),
        })?;
    match bound {
        Some(bound) if bound != binding_name(file) => Err(LoadError::BoundElsewhere {
            file: file.to_path_buf(),
            id: id.clone(),
            bound_to: bound,
        }),
        bound => Ok(bound.is_some()),
    }
}

/// Binds `id` to `file`.
async fn bind(backend: &dyn Backend, id: &PluginId, file: &Path) -> Result<(), LoadError> {
    bindings::bind(backend, id, &binding_name(file))
        .await
        .map_err(|e| LoadError::Storage {
            file: file.to_path_buf(),
            message: e.to_string(),
        })
}

/// The options naming the store that the running command line was given,
/// for [`rebind_command`].
static STORE_OPTIONS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records the command-line options that name the store this process uses
/// (`--config FILE`, `--data DIR`), shell-quoted and separated by spaces, so
/// that the rebind command in a [`LoadError::BoundElsewhere`] opens the
/// same store. The `warden` command line sets them before loading; a host
/// embedded otherwise may leave them unset (the command then names the
/// plugins directory only). The first call counts; later ones are ignored.
pub fn set_store_options(options: impl Into<String>) {
    let _ = STORE_OPTIONS.set(options.into());
}

/// The command that lets `file` load with identity `id`:
/// `warden plugins rebind ID NAME --plugins DIR`, then the store options
/// recorded by [`set_store_options`], each path shell-quoted when needed.
pub fn rebind_command(id: &PluginId, file: &Path) -> String {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut command = format!(
        "warden plugins rebind {id} {} --plugins {}",
        shell_word(&binding_name(file)),
        shell_word(&dir.to_string_lossy())
    );
    if let Some(options) = STORE_OPTIONS.get().filter(|o| !o.is_empty()) {
        command.push(' ');
        command.push_str(options);
    }
    command
}

/// `word` as one word for a POSIX shell: as it is when it holds only
/// characters no shell treats specially, else in single quotes.
pub fn shell_word(word: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,/:=@%+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        std::borrow::Cow::Borrowed(word)
    } else {
        std::borrow::Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

#[cfg(test)]
mod binding_tests {
    use super::*;

    #[test]
    fn the_rebind_command_names_the_plugins_directory_and_quotes_paths() {
        let id = PluginId::new("a.A").unwrap();
        assert_eq!(
            rebind_command(&id, Path::new("plugins/new.wasm")),
            "warden plugins rebind a.A new.wasm --plugins plugins"
        );
        assert_eq!(
            rebind_command(&id, Path::new("new.wasm")),
            "warden plugins rebind a.A new.wasm --plugins ."
        );
        assert_eq!(
            rebind_command(&id, Path::new("/srv/my plugins/it's.wasm")),
            r"warden plugins rebind a.A 'it'\''s.wasm' --plugins '/srv/my plugins'"
        );
        assert_eq!(shell_word(""), "''");
    }
}
