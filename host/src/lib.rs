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
pub mod plugins;
pub mod router;
pub mod runtime;
pub mod storage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
pub use plugins::{LoadError, Outcome, PluginInfo};
pub use router::Incoming;

use identity::Namespace;
use plugins::LoadedPlugin;
use runtime::Runtime;
use runtime::bindings::RouteKind;
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
}

/// Builds a [`Host`].
#[derive(Debug, Default)]
pub struct HostBuilder {
    config: Config,
    plugins_dir: Option<PathBuf>,
    files: Vec<PathBuf>,
    data_dir: Option<PathBuf>,
    backend: Option<Arc<dyn Backend>>,
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

    /// Opens the store and loads the plugins. A plugin that fails to load
    /// is reported in [`Host::skipped`]; the others load regardless.
    pub async fn build(self) -> Result<Host, HostError> {
        let backend = match self.backend {
            Some(backend) => backend,
            None => open_backend(&self.config, self.data_dir.as_deref()).await?,
        };
        let mut files = Vec::new();
        if let Some(dir) = &self.plugins_dir {
            files = plugins::plugin_files(dir).map_err(|source| HostError::PluginsDir {
                dir: dir.clone(),
                source,
            })?;
        }
        files.extend(self.files);
        let runtime = Runtime::new().map_err(HostError::Engine)?;
        let shared_usage = Arc::new(Usage::default());
        shared_usage
            .recount(&*backend, &Namespace::Shared)
            .await
            .map_err(HostError::Storage)?;
        let (plugins, skipped) =
            plugins::load_all(&files, &runtime, &backend, &self.config, &shared_usage).await;
        let purge = tokio::spawn(purge_loop(backend.clone(), plugins.clone(), shared_usage));
        Ok(Host {
            plugins,
            skipped,
            backend,
            purge,
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

/// Purges expired keys every [`PURGE_INTERVAL`] and recounts each
/// namespace's quota usage every [`RECOUNT_INTERVAL`].
async fn purge_loop(
    backend: Arc<dyn Backend>,
    plugins: Vec<Arc<LoadedPlugin>>,
    shared: Arc<Usage>,
) {
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
            if let Err(e) = shared.recount(&*backend, &Namespace::Shared).await {
                tracing::warn!("recounting the shared keyspace failed: {e}");
            }
            for plugin in &plugins {
                if let Err(e) = plugin.storage().recount().await {
                    tracing::warn!(plugin = %plugin.info().id, "recounting storage failed: {e}");
                }
            }
        }
    }
}

/// A running set of plugins over one store.
#[derive(Debug)]
pub struct Host {
    plugins: Vec<Arc<LoadedPlugin>>,
    skipped: Vec<LoadError>,
    backend: Arc<dyn Backend>,
    purge: tokio::task::JoinHandle<()>,
}

impl Host {
    /// A builder with the default configuration.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The loaded plugins, in load order.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginInfo> {
        self.plugins.iter().map(|p| p.info())
    }

    /// The files that were not loaded, and why.
    pub fn skipped(&self) -> &[LoadError] {
        &self.skipped
    }

    /// The store under the namespacing layer.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Runs every route that matches `msg` (see [`router`] for the rules)
    /// and returns one outcome per call, in route order.
    pub async fn dispatch(&self, msg: &Incoming) -> Vec<Outcome> {
        let mut calls = Vec::new();
        for kind in [RouteKind::ListenTo, RouteKind::RespondTo] {
            for plugin in &self.plugins {
                for route in plugin.info().routes.iter().filter(|r| r.kind == kind) {
                    if let Some(captures) = route.matches(msg) {
                        calls.push(plugin.call(route, msg, captures));
                    }
                }
            }
        }
        futures::future::join_all(calls).await
    }

    /// Removes expired keys now, returning how many were removed. The host
    /// also does this every [`PURGE_INTERVAL`].
    pub async fn purge_expired(&self) -> Result<u64, BackendError> {
        self.backend.purge_expired().await
    }

    /// Stops background work and closes the store, making every completed
    /// write durable.
    pub async fn shutdown(self) -> Result<(), BackendError> {
        self.purge.abort();
        drop(self.plugins);
        self.backend.close().await
    }
}
