//! Reading what a plugin file declares without starting a host: whether it
//! is a component of the `warden:plugin/plugin` world, its identity, version
//! and routes. `warden plugins check` and `warden plugins list` use it.
//!
//! Inspecting runs the component's `manifest` export once, in an instance
//! with the same sandbox and limits as a loaded plugin and no storage.
//!
//! ```no_run
//! use warden::inspect::Inspector;
//!
//! # async fn check() -> Result<(), Box<dyn std::error::Error>> {
//! let inspector = Inspector::new(&warden::Config::default())?;
//! let plugin = inspector.inspect("plugins/storage.wasm".as_ref()).await?;
//! println!("{} {} ({} routes)", plugin.id, plugin.version, plugin.routes.len());
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use crate::config::{Config, Limits};
use crate::identity::PluginId;
use crate::plugins::cache;
use crate::router::{self, CompiledRoute};
use crate::runtime::Runtime;
use crate::runtime::bindings::PluginPre;
use crate::{HostError, LoadError};

/// What a plugin file declares.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Inspected {
    /// The file.
    pub file: PathBuf,
    /// The SHA-256 digest of the file, in lower-case hex.
    pub digest: String,
    /// The identity its storage would be namespaced by.
    pub id: PluginId,
    /// Its declared version.
    pub version: String,
    /// Its description.
    pub description: String,
    /// Its routes, compiled, in declaration order.
    pub routes: Vec<CompiledRoute>,
}

/// Inspects plugin files with one engine.
#[derive(Debug)]
pub struct Inspector {
    runtime: Runtime,
    limits: Limits,
}

impl Inspector {
    /// An inspector that reads manifests within `config`'s limits (memory,
    /// and time of the manifest call).
    pub fn new(config: &Config) -> Result<Self, HostError> {
        Ok(Self {
            runtime: Runtime::new().map_err(HostError::Engine)?,
            limits: config.limits,
        })
    }

    /// Compiles `file`, checks that it implements the plugin world, reads
    /// its manifest, and validates its identity and routes, as loading it
    /// would. Binding the identity to the file and the store are not
    /// involved.
    pub async fn inspect(&self, file: &Path) -> Result<Inspected, LoadError> {
        let path = file.to_path_buf();
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|source| LoadError::Read {
                file: path.clone(),
                source,
            })?;
        let digest = cache::hex(&cache::sha256(&bytes));
        let not_a_component = |message: String| LoadError::NotAComponent {
            file: path.clone(),
            message,
        };
        let engine = self.runtime.engine().clone();
        // Compiling is CPU-bound: keep it off the async workers.
        let component = tokio::task::spawn_blocking(move || {
            wasmtime::component::Component::new(&engine, &bytes)
        })
        .await
        .map_err(|e| not_a_component(e.to_string()))?
        .map_err(|e| not_a_component(format!("{e:#}")))?;

        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            file: path.clone(),
            message: format!("{e:#}"),
        };
        let pre = self
            .runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(wrong_world)?;
        let pre = PluginPre::new(pre).map_err(wrong_world)?;

        let start = |e: wasmtime::Error| LoadError::Start {
            file: path.clone(),
            message: describe_failure(&e, &self.limits),
        };
        let mut store = self
            .runtime
            .new_store(&path.display().to_string(), None, &self.limits);
        let bindings = pre.instantiate_async(&mut store).await.map_err(start)?;
        let manifest = bindings.call_manifest(&mut store).await.map_err(start)?;

        let id = PluginId::new(&manifest.id).map_err(|source| LoadError::InvalidId {
            file: path.clone(),
            source,
        })?;
        let routes = router::compile(&manifest.routes).map_err(|source| LoadError::BadRoute {
            file: path.clone(),
            id: id.clone(),
            source,
        })?;
        Ok(Inspected {
            file: path,
            digest,
            id,
            version: manifest.version,
            description: manifest.description,
            routes,
        })
    }
}

/// A readable account of a failure while starting or reading the manifest.
fn describe_failure(e: &wasmtime::Error, limits: &Limits) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "trapped: ran longer than its time limit of {} ms",
            limits.handler_timeout_ms
        ),
        Some(trap) => format!("trapped: {trap}"),
        None => format!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_that_are_not_components_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inspector = Inspector::new(&Config::default()).unwrap();

        let garbage = dir.path().join("garbage.wasm");
        std::fs::write(&garbage, b"not wasm").unwrap();
        let e = inspector.inspect(&garbage).await.unwrap_err();
        assert!(matches!(e, LoadError::NotAComponent { .. }), "{e}");

        // An empty component: valid, but without the plugin world's exports.
        let empty = dir.path().join("empty.wasm");
        std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
        let e = inspector.inspect(&empty).await.unwrap_err();
        assert!(matches!(e, LoadError::WrongWorld { .. }), "{e}");
        assert!(e.to_string().contains("empty.wasm"), "{e}");

        let missing = dir.path().join("missing.wasm");
        let e = inspector.inspect(&missing).await.unwrap_err();
        assert!(matches!(e, LoadError::Read { .. }), "{e}");
    }
}
