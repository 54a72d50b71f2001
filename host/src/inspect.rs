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
use std::sync::Arc;

use crate::config::{Config, Limits, RoutingConfig};
use crate::plugins;
use crate::runtime::cache::{self, CompileCache};
use crate::runtime::{Immediate, Runtime};
use crate::{HostError, LoadError, PluginInfo};

/// Inspects plugin files with one engine.
#[derive(Debug)]
pub struct Inspector {
    runtime: Runtime,
    limits: Limits,
    routing: RoutingConfig,
    cache: Option<Arc<CompileCache>>,
}

impl Inspector {
    /// An inspector that reads manifests within `config`'s limits (memory,
    /// and time of the manifest call) and checks routes against its
    /// `[routing]` budget for one plugin.
    pub fn new(config: &Config) -> Result<Self, HostError> {
        Ok(Self {
            // Manifests are read without storage.
            runtime: Runtime::with_baseline(Immediate::default(), config.plugins.baseline)
                .map_err(HostError::Engine)?,
            limits: config.limits,
            routing: config.routing,
            cache: None,
        })
    }

    /// Takes compiled code from the compilation cache in `dir` where it is
    /// there; a file it does not hold is compiled with the baseline
    /// compiler, and nothing is written to the cache.
    pub fn with_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.cache = dir.map(|dir| Arc::new(CompileCache::new(dir)));
        self
    }

    /// Compiles `file`, checks that it implements the plugin world, reads
    /// its manifest, and validates its identity and routes, as loading it
    /// would. Binding the identity to the file and the store are not
    /// involved.
    pub async fn inspect(&self, file: &Path) -> Result<PluginInfo, LoadError> {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|source| LoadError::Read {
                file: file.to_path_buf(),
                source,
            })?;
        let digest = cache::sha256(&bytes);
        let prepared = plugins::prepare(
            &self.runtime,
            file,
            bytes,
            digest,
            self.cache.as_ref(),
            &self.limits,
            &self.routing,
        )
        .await?;
        Ok(prepared.info)
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
