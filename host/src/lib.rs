//! Warden: a WebAssembly plugin host with sandboxed, namespaced storage.
//!
//! Warden loads plugins — WebAssembly components built for `wasm32-wasip2`
//! against the `warden:plugin` WIT world — from a directory, routes messages
//! to them, and gives each one key-value storage namespaced by the identity
//! its manifest declares. A plugin can never read, write or name another
//! plugin's keys, and reaches the shared keyspace only where the operator
//! granted it.
//!
//! ```no_run
//! use warden::{Host, Incoming};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::builder()
//!     .plugins_dir("plugins")
//!     .data_dir("warden-data")
//!     .build()
//!     .await?;
//! for skipped in host.skipped() {
//!     eprintln!("{skipped}");
//! }
//! for outcome in host.dispatch(&Incoming::addressed("store hello under greeting")).await {
//!     for reply in outcome.replies {
//!         println!("{reply}");
//!     }
//! }
//! host.shutdown().await?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod adapters;
pub mod admin;
pub mod cli;
pub mod config;
pub mod identity;
pub mod inspect;
pub mod metrics;
pub mod plugins;
pub mod router;
pub mod runtime;
pub mod scaffold;
pub mod storage;
pub mod text;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

pub use config::Config;
pub use plugins::{Failure, LoadError, Outcome, PluginInfo};
pub use router::Incoming;

use identity::Namespace;
use plugins::LoadedPlugin;
use runtime::Runtime;
use runtime::cache::CompileCache;
use storage::{Backend, BackendError, MemoryBackend, SledBackend, Usage};

/// The data directory used when neither `--data` nor the config names one.
pub const DEFAULT_DATA_DIR: &str = "warden-data";

/// How often expired keys are purged from the store.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(5);

/// How often each namespace's usage is recounted from the store for its
/// quota (expiry and other hosts change it unseen).
pub const RECOUNT_INTERVAL: Duration = Duration::from_secs(60);

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The plugins directory could not be listed.
    #[error("cannot read the plugins directory {dir}: {source}")]
    PluginsDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The storage backend could not be opened.
    #[error("cannot open storage: {0}")]
    Storage(#[from] BackendError),
    /// The WebAssembly engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0:#}")]
    Engine(wasmtime::Error),
    /// The plugins directory cannot be watched.
    #[error("cannot watch the plugins directory {dir}: {message}")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        message: String,
    },
}

/// Why the host refused a message before matching it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The text is longer than `[routing] max_message_bytes`.
    #[error(
        "the message is {len} bytes long; at most {max} bytes are matched against plugins' \
         routes ([routing] max_message_bytes)"
    )]
    TooLong {
        /// The text's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Builds a [`Host`].
#[derive(Debug, Default)]
pub struct HostBuilder {
    config: Config,
    plugins_dir: Option<PathBuf>,
    files: Vec<PathBuf>,
    data_dir: Option<PathBuf>,
    backend: Option<Arc<dyn Backend>>,
    cache_dir: Option<PathBuf>,
    watch: bool,
}

impl HostBuilder {
    /// Uses `config` (grants, limits, storage).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Loads every `.wasm` file directly inside `dir`, in name order.
    pub fn plugins_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugins_dir = Some(dir.into());
        self
    }

    /// Loads one more plugin file, after those of the plugins directory.
    pub fn plugin_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.files.push(file.into());
        self
    }

    /// Keeps sled's data in `dir`, overriding the config's `storage.path`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Uses `backend` instead of the one the config names.
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Keeps compiled plugins in `dir`, so that a restart with unchanged
    /// plugins skips compilation (see [`runtime::cache`]), within the
    /// config's `[plugins] cache_max_bytes`. Without it every start
    /// compiles.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Watches the plugins directory and reloads it when it changes (see
    /// [`Host::reload`]).
    pub fn watch(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// Opens the store and loads the plugins. A plugin that fails to load
    /// is reported in [`Host::skipped`]; the others load regardless.
    pub async fn build(self) -> Result<Host, HostError> {
        let backend = match self.backend {
            Some(backend) => backend,
            None => open_backend(&self.config, self.data_dir.as_deref()).await?,
        };
        for (key, value) in self.config.shared_data() {
            let raw = identity::encode_key(&Namespace::Shared, &key);
            backend.set(&raw, &value, None).await?;
        }
        let immediate = runtime::Immediate {
            reads: backend.immediate_reads().is_some(),
            writes: backend.immediate_writes().is_some(),
        };
        let runtime = Runtime::new(immediate).map_err(HostError::Engine)?;
        let shared_usage = Arc::new(Usage::default());
        shared_usage
            .recount(&*backend, &Namespace::Shared)
            .await
            .map_err(HostError::Storage)?;
        let max_bytes = self.config.plugins.cache_max_bytes;
        let cache = self
            .cache_dir
            .map(|dir| Arc::new(CompileCache::new(dir).with_max_bytes(max_bytes)));
        let shared = Arc::new(Shared {
            runtime,
            backend,
            config: self.config,
            shared_usage,
            cache,
            plugins_dir: self.plugins_dir,
            extra_files: self.files,
            loaded: std::sync::RwLock::default(),
            matchers: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            reloading: tokio::sync::Mutex::default(),
        });
        shared.reload().await?;
        let purge = tokio::spawn(purge_loop(shared.clone()));
        let watcher = match (&shared.plugins_dir, self.watch) {
            (Some(dir), true) => Some(watch(dir, &shared)?),
            _ => None,
        };
        Ok(Host {
            shared,
            purge,
            _watcher: watcher,
        })
    }
}

/// Opens the backend the config names. `data_dir` overrides sled's
/// `storage.path`.
pub async fn open_backend(
    config: &Config,
    data_dir: Option<&Path>,
) -> Result<Arc<dyn Backend>, BackendError> {
    let storage = &config.storage;
    Ok(match storage.backend {
        config::BackendKind::Memory => Arc::new(MemoryBackend::new()),
        config::BackendKind::Sled => {
            let dir = data_dir
                .map(Path::to_path_buf)
                .or_else(|| storage.path.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            Arc::new(SledBackend::open_with(dir, storage.sled_options())?)
        }
        config::BackendKind::Redis => {
            let url = storage.url.as_deref().ok_or_else(|| {
                BackendError::new("redis", "[storage] backend = \"redis\" needs a url")
            })?;
            Arc::new(storage::RedisBackend::connect(url, &storage.prefix).await?)
        }
    })
}

/// Most handler calls of one message that run at once; the calls after
/// them start as earlier ones end.
pub const MAX_CALLS_AT_ONCE: usize = 32;

/// Calls route `r` of `plugin` with `msg`, in a `handler` span, counted in
/// the metrics.
async fn call(
    plugin: Arc<LoadedPlugin>,
    r: usize,
    msg: &Incoming,
    captures: Vec<runtime::bindings::warden::plugin::types::Capture>,
) -> Outcome {
    use tracing::Instrument as _;
    let route = &plugin.info().routes[r];
    let id = &plugin.info().id;
    let span = tracing::info_span!("handler", plugin = %id, handler = %route.handler);
    metrics::global()
        .observe_call(id, plugin.call(route, msg, captures), |o: &Outcome| {
            o.error.is_some()
        })
        .instrument(span)
        .await
}

/// Purges expired keys every [`PURGE_INTERVAL`] and recounts each
/// namespace's quota usage every [`RECOUNT_INTERVAL`].
async fn purge_loop(shared: Arc<Shared>) {
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

/// How long the plugins directory must be quiet before a reload, so that a
/// file being copied in is loaded once, whole.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching `dir`; each burst of changes to its `.wasm` files
/// reloads it once, when the directory has been quiet for
/// [`RELOAD_DEBOUNCE`].
///
/// Only changes count: a file created, written, renamed or removed. Opening
/// or reading a file, or changing its metadata, does not, so the reload's
/// own reading of the files raises nothing to react to; nor do changes to
/// other files (a copy still being written under another name).
fn watch(dir: &Path, shared: &Arc<Shared>) -> Result<Watcher, HostError> {
    use notify_debouncer_mini::notify::{self, RecursiveMode, Watcher as _};
    let watch_error = |e: notify::Error| HostError::Watch {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if is_plugin_change(&event) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching the plugins directory failed: {e}"),
        })
        .map_err(watch_error)?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(watch_error)?;
    let weak = Arc::downgrade(shared);
    let task = tokio::spawn(async move {
        // The first change of a burst, then quiet for the debounce time.
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(RELOAD_DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            let Some(shared) = weak.upgrade() else { break };
            match shared.reload().await {
                Ok(reloaded) => tracing::debug!(
                    added = reloaded.added.len(),
                    replaced = reloaded.replaced.len(),
                    removed = reloaded.removed.len(),
                    failed = reloaded.failed.len(),
                    "plugins directory reloaded"
                ),
                Err(e) => tracing::error!("reloading plugins failed: {e}"),
            }
        }
    });
    tracing::info!(dir = %dir.display(), "watching the plugins directory for changes");
    Ok(Watcher {
        _watcher: watcher,
        task,
    })
}

/// Whether `event` changed a `.wasm` file: created, written, renamed or
/// removed it (not opened, read, or its metadata changed).
fn is_plugin_change(event: &notify_debouncer_mini::notify::Event) -> bool {
    use notify_debouncer_mini::notify::EventKind;
    use notify_debouncer_mini::notify::event::ModifyKind;
    let change = match event.kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Other => false,
    };
    change
        && event
            .paths
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "wasm"))
}

/// A watch on the plugins directory; dropping it stops it.
struct Watcher {
    _watcher: notify_debouncer_mini::notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

/// The plugins loaded at one moment. Replaced whole on reload, so that a
/// call keeps the plugins it started with.
#[derive(Debug, Default, Clone)]
struct Snapshot {
    plugins: Arc<Vec<Arc<LoadedPlugin>>>,
    /// The routes of `plugins`.
    routes: Arc<router::Routes>,
    skipped: Arc<Vec<Arc<LoadError>>>,
}

/// What the host and its background tasks share.
#[derive(Debug)]
struct Shared {
    runtime: Runtime,
    backend: Arc<dyn Backend>,
    config: Config,
    shared_usage: Arc<Usage>,
    cache: Option<Arc<CompileCache>>,
    plugins_dir: Option<PathBuf>,
    extra_files: Vec<PathBuf>,
    loaded: std::sync::RwLock<Snapshot>,
    /// Bounds the messages matched on the blocking pool at once.
    matchers: tokio::sync::Semaphore,
    /// One reload at a time; it holds the files that failed to load for a
    /// reason of their own, not tried again until they change.
    reloading: tokio::sync::Mutex<plugins::Failed>,
}

/// The most matching work, in bytes of text times bytes of compiled
/// routes, that a message is matched with on the async worker that
/// received it; above it, matching moves to the blocking pool (see
/// [`Shared::matching`]). At the rate the slowest routes are matched
/// (BENCHMARKS.md), this much takes a few milliseconds at most.
const INLINE_MATCH_WORK: u64 = 1 << 29;

impl Shared {
    /// The routes of `snapshot` that `msg` matches, as
    /// [`router::Routes::matching_indices`] gives them. A message whose
    /// worst-case matching work (its length times the routes' compiled
    /// size) is small is matched at once; a larger one on the blocking
    /// pool, at most one a core at a time, so that matching never holds the
    /// async workers for long and its caches stay few.
    async fn matching(
        &self,
        snapshot: &Snapshot,
        msg: &Incoming,
    ) -> Vec<(
        usize,
        usize,
        Vec<runtime::bindings::warden::plugin::types::Capture>,
    )> {
        let work = (msg.text.len() as u64).saturating_mul(snapshot.routes.cost() as u64);
        if work <= INLINE_MATCH_WORK {
            let plugins = &snapshot.plugins;
            return snapshot
                .routes
                .matching_indices(|p| &plugins[p].info().routes, msg);
        }
        let Ok(_permit) = self.matchers.acquire().await else {
            unreachable!("the semaphore of matchers is never closed");
        };
        let (snapshot, msg) = (snapshot.clone(), msg.clone());
        tokio::task::spawn_blocking(move || {
            let plugins = &snapshot.plugins;
            snapshot
                .routes
                .matching_indices(|p| &plugins[p].info().routes, &msg)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!("matching a message failed: {e}");
            Vec::new()
        })
    }

    fn snapshot(&self) -> Snapshot {
        // A snapshot is replaced whole, never left half-written.
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn reload(&self) -> Result<Reloaded, HostError> {
        let mut failed = self.reloading.lock().await;
        let mut files = Vec::new();
        if let Some(dir) = &self.plugins_dir {
            files = plugins::plugin_files(dir).map_err(|source| HostError::PluginsDir {
                dir: dir.clone(),
                source,
            })?;
        }
        files.extend(self.extra_files.iter().cloned());
        let current = self.snapshot();
        let loader = plugins::Loader {
            runtime: &self.runtime,
            backend: &self.backend,
            config: &self.config,
            shared_usage: &self.shared_usage,
            cache: self.cache.as_ref(),
        };
        let synced = plugins::sync(&current.plugins, &files, &failed, loader).await;
        *failed = synced.failed;
        let errors = synced.errors;
        let routes = router::Routes::new(synced.plugins.iter().map(|p| &p.info().routes[..]));
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Snapshot {
            routes: Arc::new(routes),
            plugins: Arc::new(synced.plugins),
            skipped: Arc::new(errors.clone()),
        };
        Ok(Reloaded {
            added: synced.added,
            replaced: synced.replaced,
            removed: synced.removed,
            failed: errors,
        })
    }
}

/// What a [`Host::reload`] changed.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Reloaded {
    /// Files loaded that were not before.
    pub added: Vec<PathBuf>,
    /// Files whose new contents replaced the old.
    pub replaced: Vec<PathBuf>,
    /// Files gone, their plugins unloaded.
    pub removed: Vec<PathBuf>,
    /// Files that failed to load; a file that had loaded before keeps its
    /// old version serving.
    pub failed: Vec<Arc<LoadError>>,
}

/// A running set of plugins over one store.
#[derive(Debug)]
pub struct Host {
    shared: Arc<Shared>,
    purge: tokio::task::JoinHandle<()>,
    _watcher: Option<Watcher>,
}

impl Host {
    /// A builder with the default configuration.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The loaded plugins, in file-name order, as of now.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.shared
            .snapshot()
            .plugins
            .iter()
            .map(|p| p.info().clone())
            .collect()
    }

    /// The files that were not loaded at the last (re)load, and why.
    pub fn skipped(&self) -> Vec<Arc<LoadError>> {
        self.shared.snapshot().skipped.to_vec()
    }

    /// The store under the namespacing layer.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.shared.backend
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The compilation cache, if one is configured.
    pub fn cache(&self) -> Option<&CompileCache> {
        self.shared.cache.as_deref()
    }

    /// Runs every route that matches `msg` (see [`router`] for the rules)
    /// and returns one outcome per call, in route order. The calls run on
    /// the plugins loaded when it starts, whatever a reload does meanwhile.
    ///
    /// The calls run at the same time, up to [`MAX_CALLS_AT_ONCE`] of them,
    /// each bounded by its plugin's `handler_timeout_ms`; so the answer
    /// comes when the slowest call returns or reaches its deadline, and a
    /// slow plugin delays only its own replies.
    ///
    /// Each call runs in a `handler` span carrying the plugin's identity and
    /// the handler's name, and is counted in [`metrics::global`].
    ///
    /// A message whose text is longer than `[routing] max_message_bytes` is
    /// not matched (see [`Host::check_message`]): it reaches no plugin.
    pub async fn dispatch(&self, msg: &Incoming) -> Vec<Outcome> {
        let metrics = metrics::global();
        metrics.message_received();
        if let Err(e) = self.check_message(msg) {
            tracing::warn!("message not matched: {e}");
            return Vec::new();
        }
        let snapshot = self.shared.snapshot();
        let mut matched = self.shared.matching(&snapshot, msg).await;
        let plugins = &snapshot.plugins;
        match matched.len() {
            0 => Vec::new(),
            // One call needs no task of its own.
            1 => {
                let (p, r, captures) = matched.remove(0);
                vec![call(plugins[p].clone(), r, msg, captures).await]
            }
            _ => {
                let msg = Arc::new(msg.clone());
                let calls = matched.into_iter().map(|(p, r, captures)| {
                    let plugin = plugins[p].clone();
                    let msg = msg.clone();
                    let task =
                        tokio::spawn(async move { call(plugin.clone(), r, &msg, captures).await });
                    async move { (task.await, p, r) }
                });
                futures::stream::iter(calls)
                    .buffered(MAX_CALLS_AT_ONCE)
                    .map(|(joined, p, r)| {
                        joined.unwrap_or_else(|e| {
                            let info = plugins[p].info();
                            tracing::error!(plugin = %info.id, "a handler call failed in the host: {e}");
                            Outcome {
                                plugin: info.id.clone(),
                                handler: info.routes[r].handler.clone(),
                                replies: Vec::new(),
                                error: Some("failed in the host; see its log".into()),
                                detail: Some(e.to_string()),
                                failure: Some(plugins::Failure::Host),
                            }
                        })
                    })
                    .collect()
                    .await
            }
        }
    }

    /// Refuses a message the host does not match: one whose text is longer
    /// than `[routing] max_message_bytes`. Adapters call it to tell the
    /// sender why; [`dispatch`](Self::dispatch) calls it too.
    pub fn check_message(&self, msg: &Incoming) -> Result<(), MessageError> {
        let max = self.shared.config.routing.max_message_bytes;
        if msg.text.len() > max {
            return Err(MessageError::TooLong {
                len: msg.text.len(),
                max,
            });
        }
        Ok(())
    }

    /// Loads the plugins directory again: new files are loaded, changed
    /// files reloaded (a plugin keeping its identity keeps its data; calls
    /// under way finish on the old version), and the plugins of removed
    /// files unloaded. A changed file that fails to load leaves its old
    /// version serving. With [`HostBuilder::watch`] this happens by itself.
    pub async fn reload(&self) -> Result<Reloaded, HostError> {
        self.shared.reload().await
    }

    /// Removes expired keys now, returning how many were removed. The host
    /// also does this every [`PURGE_INTERVAL`].
    pub async fn purge_expired(&self) -> Result<u64, BackendError> {
        self.shared.backend.purge_expired().await
    }

    /// Stops background work and closes the store, making every completed
    /// write durable.
    pub async fn shutdown(self) -> Result<(), BackendError> {
        self.purge.abort();
        drop(self._watcher);
        let backend = self.shared.backend.clone();
        drop(self.shared);
        backend.close().await
    }
}
