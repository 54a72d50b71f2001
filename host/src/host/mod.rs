//! A running [`Host`]: its plugins over one store, the dispatch of each
//! message to the routes it matches, and reloads.

mod builder;
mod maintenance;
mod schedules;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt as _;

pub use builder::HostBuilder;
pub use maintenance::{PURGE_INTERVAL, RECOUNT_INTERVAL};
pub use watch::RELOAD_DEBOUNCE;

use crate::config::Config;
use crate::identity::Namespace;
use crate::metrics::Metrics;
use crate::plugins::{self, LoadError, LoadedPlugin, Outcome, PluginInfo};
use crate::router::{self, Incoming};
use crate::runtime::Runtime;
use crate::runtime::cache::CompileCache;
use crate::storage::{self, Backend, BackendError, Usage};

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
    #[error("cannot watch the plugins directory {dir}: {source}")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: notify_debouncer_mini::notify::Error,
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

/// Most handler calls of one message that run at once; the calls after
/// them start as earlier ones end.
pub const MAX_CALLS_AT_ONCE: usize = 32;

/// Calls route `r` of `plugin` with `msg`, in a `handler` span, counted in
/// the metrics.
async fn call(
    plugin: Arc<LoadedPlugin>,
    r: usize,
    msg: &Incoming,
    captures: Vec<router::Capture>,
) -> Outcome {
    use tracing::Instrument as _;
    let route = &plugin.info().routes[r];
    let id = &plugin.info().id;
    let span = tracing::info_span!("handler", plugin = %id, handler = %route.handler);
    async {
        let start = std::time::Instant::now();
        let outcome = plugin.call(route, msg, captures).await;
        plugin
            .metrics()
            .handler_call(start.elapsed(), outcome.error.is_some());
        outcome
    }
    .instrument(span)
    .await
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
    /// What the host counts.
    metrics: Arc<Metrics>,
    /// Where loading reports its progress.
    progress: Option<plugins::ProgressFn>,
    /// The help manual last written to the store, so that a reload that
    /// changed nothing writes nothing.
    manual: std::sync::Mutex<Option<Vec<u8>>>,
    /// What scheduled handlers said.
    outbox: crate::outbox::Outbox,
    /// Told after each reload, so that the schedules are looked at again.
    schedules_changed: Arc<tokio::sync::Notify>,
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
    ) -> Vec<(usize, usize, Vec<router::Capture>)> {
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

    /// Writes the help manual of `plugins` to the shared key
    /// [`manual::MANUAL_KEY`](crate::manual::MANUAL_KEY) if it changed and
    /// one of them may read it, unless the operator's `[shared_data]` sets
    /// that key. A failure is logged: the plugins serve without it.
    async fn write_manual<'a>(&self, plugins: impl IntoIterator<Item = &'a PluginInfo> + Clone) {
        use crate::manual::MANUAL_KEY;
        if self.config.shared_data.contains_key(MANUAL_KEY) {
            return;
        }
        // Written for readers only: with no loaded plugin allowed to read
        // it, the store is left as it is.
        let read = plugins
            .clone()
            .into_iter()
            .any(|p| self.config.grant(&p.id).allows(MANUAL_KEY, false));
        if !read {
            return;
        }
        let manual =
            serde_json::to_vec(&crate::manual::of(plugins)).expect("a manual is plain JSON");
        if self
            .manual
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            == Some(&manual)
        {
            return;
        }
        let written = storage::seed_shared(
            &*self.backend,
            [(crate::manual::MANUAL_KEY.to_owned(), manual.clone())],
        )
        .await;
        let recounted = match written {
            Ok(()) => {
                self.shared_usage
                    .recount(&*self.backend, &Namespace::Shared)
                    .await
            }
            Err(e) => Err(e),
        };
        match recounted {
            Ok(_) => *self.manual.lock().unwrap_or_else(|e| e.into_inner()) = Some(manual),
            Err(e) => tracing::error!(
                "writing the help manual to the shared key {:?} failed: {e}",
                crate::manual::MANUAL_KEY
            ),
        }
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
            metrics: &self.metrics,
            progress: self.progress.as_ref(),
        };
        let synced = plugins::sync(&current.plugins, &files, &failed, loader).await;
        *failed = synced.failed;
        let errors = synced.errors;
        self.write_manual(synced.plugins.iter().map(|p| p.info()))
            .await;
        // The table routes at once; its route sets, which take about as
        // long to build as the routes took to compile, follow on another
        // thread and speed matching up from then on. A table a later
        // reload replaced before its turn came is not built for nothing.
        let routes = Arc::new(router::Routes::deferred(
            synced.plugins.iter().map(|p| &p.info().routes[..]),
        ));
        let building = Arc::downgrade(&routes);
        tokio::task::spawn_blocking(move || {
            if let Some(routes) = building.upgrade() {
                routes.build_sets();
            }
        });
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Snapshot {
            routes,
            plugins: Arc::new(synced.plugins),
            skipped: Arc::new(errors.clone()),
        };
        self.schedules_changed.notify_one();
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
    schedules: tokio::task::JoinHandle<()>,
    _watcher: Option<watch::Watcher>,
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

    /// Which code the loaded plugin `id` runs (baseline code until its
    /// optimized code is in place); `None` if no such plugin is loaded.
    pub fn plugin_code(&self, id: &str) -> Option<crate::runtime::Code> {
        self.shared
            .snapshot()
            .plugins
            .iter()
            .find(|p| p.info().id.as_str() == id)
            .map(|p| p.code())
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

    /// The metrics the host counts in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
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
    /// the handler's name, and is counted in [`Host::metrics`].
    ///
    /// A message whose text is longer than `[routing] max_message_bytes` is
    /// not matched (see [`Host::check_message`]): it reaches no plugin.
    pub async fn dispatch(&self, msg: &Incoming) -> Vec<Outcome> {
        self.shared.metrics.message_received();
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

    /// What scheduled handlers said, for adapters to deliver.
    pub fn outbox(&self) -> &crate::outbox::Outbox {
        &self.shared.outbox
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
        self.schedules.abort();
        drop(self._watcher);
        let backend = self.shared.backend.clone();
        drop(self.shared);
        backend.close().await
    }
}
