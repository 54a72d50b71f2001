//! [`HostBuilder`]: opens the store, sets up the engine and loads the
//! plugins.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Host, HostError, Shared, maintenance, schedules, watch};
use crate::config::Config;
use crate::identity::Namespace;
use crate::metrics::Metrics;
use crate::plugins::{Progress, ProgressFn};
use crate::runtime::cache::CompileCache;
use crate::runtime::{self, Runtime};
use crate::storage::{self, Backend, Usage};

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
    metrics: Option<Arc<Metrics>>,
    progress: Option<ProgressFn>,
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

    /// Counts in `metrics` instead of metrics of the host's own, so that
    /// several hosts in one process can serve one scrape target.
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Reports the progress of every load of the plugins (at start and on
    /// each reload) to `progress`, for a command line to show; without it,
    /// each file loaded is a debug log line.
    pub fn progress(mut self, progress: impl Fn(Progress<'_>) + Send + Sync + 'static) -> Self {
        self.progress = Some(ProgressFn::new(progress));
        self
    }

    /// Opens the store and loads the plugins. A plugin that fails to load
    /// is reported in [`Host::skipped`]; the others load regardless.
    pub async fn build(self) -> Result<Host, HostError> {
        let backend = match self.backend {
            Some(backend) => backend,
            None => self.config.storage.open(self.data_dir.as_deref()).await?,
        };
        storage::seed_shared(&*backend, self.config.shared_data()).await?;
        let immediate = runtime::Immediate {
            reads: backend.immediate_reads().is_some(),
            writes: backend.immediate_writes().is_some(),
        };
        let plugins = &self.config.plugins;
        let reuse_functions = plugins.reuse_functions && self.cache_dir.is_some();
        let runtime = Runtime::with_compilers(immediate, plugins.baseline, reuse_functions)
            .map_err(HostError::Engine)?;
        let shared_usage = Arc::new(Usage::default());
        shared_usage
            .recount(&*backend, &Namespace::Shared)
            .await
            .map_err(HostError::Storage)?;
        let max_bytes = self.config.plugins.cache_max_bytes;
        let cache = self.cache_dir.map(|dir| {
            let cache = CompileCache::new(dir).with_max_bytes(max_bytes);
            Arc::new(match runtime.functions() {
                Some(functions) => cache.with_functions(functions.clone()),
                None => cache,
            })
        });
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
            metrics: self.metrics.unwrap_or_default(),
            progress: self.progress,
            manual: std::sync::Mutex::default(),
            outbox: crate::outbox::Outbox::default(),
            schedules_changed: Arc::default(),
        });
        shared.reload().await?;
        let purge = tokio::spawn(maintenance::purge_loop(shared.clone()));
        let schedules = tokio::spawn(schedules::schedule_loop(
            shared.clone(),
            shared.schedules_changed.clone(),
        ));
        let watcher = match (&shared.plugins_dir, self.watch) {
            (Some(dir), true) => Some(watch::watch(dir, &shared)?),
            _ => None,
        };
        Ok(Host {
            shared,
            purge,
            schedules,
            _watcher: watcher,
        })
    }
}
