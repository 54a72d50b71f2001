//! Loading plugins from a directory, and calling them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;
use wasmtime::Store;

use crate::config::Config;
use crate::identity::{IdError, PluginId};
use crate::router::{self, CompiledRoute, Incoming, RouteError};
use crate::runtime::bindings::warden::plugin::types::{Capture, Message};
use crate::runtime::bindings::{Plugin as Bindings, PluginPre};
use crate::runtime::{PluginState, Runtime};
use crate::storage::{Backend, PluginStorage};

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
    /// Its routes, in declaration order.
    pub routes: Vec<CompiledRoute>,
}

/// A live instance and its store.
struct Instance {
    store: Store<PluginState>,
    bindings: Bindings,
}

/// A loaded plugin.
pub struct LoadedPlugin {
    info: PluginInfo,
    pre: PluginPre<PluginState>,
    runtime: Runtime,
    storage: PluginStorage,
    /// Calls into one instance are serialized; `None` after a trap, until
    /// the next call builds a fresh instance.
    instance: Mutex<Option<Instance>>,
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
    /// Why the call failed, if it did: the handler's own error, or a trap.
    pub error: Option<String>,
}

impl LoadedPlugin {
    /// The plugin's manifest.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Calls route `route` with `msg`. A trap is logged, reported in the
    /// outcome, and the instance is rebuilt for the next call.
    pub async fn call(
        &self,
        route: &CompiledRoute,
        msg: &Incoming,
        captures: Vec<Capture>,
    ) -> Outcome {
        let mut slot = self.instance.lock().await;
        let mut outcome = Outcome {
            plugin: self.info.id.clone(),
            handler: route.handler.clone(),
            replies: Vec::new(),
            error: None,
        };
        if slot.is_none() {
            match self.instantiate().await {
                Ok(instance) => *slot = Some(instance),
                Err(e) => {
                    let message = format!("cannot start a new instance: {e:#}");
                    tracing::error!(plugin = %self.info.id, "{message}");
                    outcome.error = Some(message);
                    return outcome;
                }
            }
        }
        let instance = slot.as_mut().expect("instance was just ensured");
        let message = Message {
            text: msg.text.clone(),
            user: msg.user.clone(),
            channel: msg.channel.clone(),
            addressed: msg.addressed,
        };
        instance
            .store
            .set_epoch_deadline(self.runtime.call_deadline());
        instance.store.data_mut().host.begin_call();
        let result = instance
            .bindings
            .call_handle(&mut instance.store, route.index, &message, &captures)
            .await;
        outcome.replies = instance.store.data_mut().host.end_call();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(plugin = %self.info.id, handler = %route.handler, "handler failed: {e}");
                outcome.error = Some(e);
            }
            Err(trap) => {
                let message = describe_trap(&trap, &self.runtime);
                tracing::error!(plugin = %self.info.id, handler = %route.handler,
                    "handler trapped: {message}; the instance is rebuilt for the next message");
                outcome.error = Some(message);
                *slot = None;
            }
        }
        outcome
    }

    async fn instantiate(&self) -> wasmtime::Result<Instance> {
        let mut store = self
            .runtime
            .new_store(self.info.id.as_str(), Some(self.storage.clone()));
        let bindings = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance { store, bindings })
    }
}

/// A readable account of a trap, naming timeouts and memory exhaustion.
fn describe_trap(e: &wasmtime::Error, runtime: &Runtime) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "ran longer than the handler timeout of {} ms",
            runtime.limits().handler_timeout_ms
        ),
        Some(trap) => format!("{trap}: {e:#}"),
        None => format!("{e:#}"),
    }
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

/// Loads plugins from files, in order. Returns the loaded plugins and, for
/// each file skipped, why.
pub async fn load_all(
    files: &[PathBuf],
    runtime: &Runtime,
    backend: &Arc<dyn Backend>,
    config: &Config,
) -> (Vec<Arc<LoadedPlugin>>, Vec<LoadError>) {
    let mut loaded: Vec<Arc<LoadedPlugin>> = Vec::new();
    let mut by_id: HashMap<PluginId, PathBuf> = HashMap::new();
    let mut errors = Vec::new();
    for file in files {
        match load_one(file, runtime, backend, config, &by_id).await {
            Ok(plugin) => {
                tracing::info!(plugin = %plugin.info.id, version = %plugin.info.version,
                    file = %file.display(), routes = plugin.info.routes.len(), "plugin loaded");
                by_id.insert(plugin.info.id.clone(), file.clone());
                loaded.push(Arc::new(plugin));
            }
            Err(e) => {
                tracing::error!("plugin skipped: {e}");
                errors.push(e);
            }
        }
    }
    (loaded, errors)
}

async fn load_one(
    file: &Path,
    runtime: &Runtime,
    backend: &Arc<dyn Backend>,
    config: &Config,
    loaded: &HashMap<PluginId, PathBuf>,
) -> Result<LoadedPlugin, LoadError> {
    let path = file.to_path_buf();
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|source| LoadError::Read {
            file: path.clone(),
            source,
        })?;
    let component = {
        let runtime = runtime.clone();
        tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .map_err(|e| LoadError::NotAComponent {
                file: path.clone(),
                message: e.to_string(),
            })?
            .map_err(|e| LoadError::NotAComponent {
                file: path.clone(),
                message: format!("{e:#}"),
            })?
    };
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        file: path.clone(),
        message: format!("{e:#}"),
    };
    let pre = runtime
        .linker()
        .instantiate_pre(&component)
        .map_err(wrong_world)?;
    let pre = PluginPre::new(pre).map_err(wrong_world)?;

    let start = |e: wasmtime::Error| LoadError::Start {
        file: path.clone(),
        message: describe_trap(&e, runtime),
    };
    let mut store = runtime.new_store(&path.display().to_string(), None);
    let bindings = pre.instantiate_async(&mut store).await.map_err(start)?;
    let manifest = bindings.call_manifest(&mut store).await.map_err(start)?;

    let id = PluginId::new(&manifest.id).map_err(|source| LoadError::InvalidId {
        file: path.clone(),
        source,
    })?;
    if let Some(first) = loaded.get(&id) {
        return Err(LoadError::DuplicateId {
            file: path,
            id,
            first: first.clone(),
        });
    }
    let routes = router::compile(&manifest.routes).map_err(|source| LoadError::BadRoute {
        file: path.clone(),
        id: id.clone(),
        source,
    })?;
    let storage = PluginStorage::new(
        backend.clone(),
        id.clone(),
        config.grant(&id),
        config.limits.storage(),
    );
    drop((store, bindings));
    let plugin = LoadedPlugin {
        info: PluginInfo {
            id,
            version: manifest.version,
            description: manifest.description,
            file: path.clone(),
            routes,
        },
        pre,
        runtime: runtime.clone(),
        storage,
        instance: Mutex::new(None),
    };
    // A fresh instance, tagged with the identity and given its storage,
    // serves the messages; starting it now surfaces failures at load time.
    let instance = plugin.instantiate().await.map_err(start)?;
    *plugin.instance.lock().await = Some(instance);
    Ok(plugin)
}
