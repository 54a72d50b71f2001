//! Plugins that the tests build from JavaScript or Python sources (with
//! componentize-js or componentize-py) into a directory under `target/`:
//! rebuilt only when their inputs changed, as a stamp beside each component
//! records, and loaded once so that the tests find their compiled code in
//! a cache there.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tempfile::TempDir;
use warden::Host;
use warden::storage::MemoryBackend;

/// A component these tests build.
#[derive(Debug)]
pub struct Component {
    /// Its file name in the build directory.
    pub wasm: &'static str,
    /// Its module.
    pub source: &'static str,
    /// The build command, from the repository root; the output path is
    /// appended.
    pub command: &'static [&'static str],
}

/// A build that failed.
#[derive(Debug)]
pub struct BuildFailed {
    /// The build command's exit code, if it exited.
    pub code: Option<i32>,
    /// What failed, with the command's output.
    pub report: String,
}

/// A fingerprint of `files`: their paths and contents.
pub fn fingerprint(files: &[PathBuf]) -> String {
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()))
            .hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// The stamp beside a built component: the fingerprint of its inputs.
fn stamp(component: &Component, dir: &Path) -> PathBuf {
    dir.join(component.wasm).with_extension("inputs")
}

/// The components of `all` that `dir` does not hold built from their
/// inputs as they are now (`fingerprint`).
pub fn stale<'a>(
    all: &[&'a Component],
    dir: &Path,
    fingerprint: fn(&Component) -> String,
) -> Vec<&'a Component> {
    all.iter()
        .copied()
        .filter(|c| {
            let stamp = std::fs::read_to_string(stamp(c, dir));
            !dir.join(c.wasm).is_file() || !stamp.is_ok_and(|s| s.trim() == fingerprint(c))
        })
        .collect()
}

/// Builds `component` into `dir` with its command, run from the
/// repository's root, and stamps it with `fingerprint` once built.
pub fn build(
    component: &Component,
    dir: &Path,
    fingerprint: fn(&Component) -> String,
) -> Result<(), BuildFailed> {
    let wasm = dir.join(component.wasm);
    let stamp = stamp(component, dir);
    let _ = std::fs::remove_file(&stamp);
    let out = Command::new(component.command[0])
        .args(&component.command[1..])
        .arg(&wasm)
        .current_dir(crate::repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("run the build");
    if !out.status.success() {
        return Err(BuildFailed {
            code: out.status.code(),
            report: format!(
                "building {} failed ({}):\n{}\n{}",
                component.source,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    std::fs::write(&stamp, fingerprint(component)).expect("write the build stamp");
    Ok(())
}

/// Loads the components `files` once with the compilation cache `cache`,
/// so that the tests, which load them at the same time, find them compiled
/// there instead of each compiling them. `language` names them if that
/// fails.
pub fn warm_cache(files: &[&Path], cache: &Path, language: &str) {
    let files: Vec<PathBuf> = files.iter().map(|f| f.to_path_buf()).collect();
    let cache = cache.to_path_buf();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        runtime.block_on(async {
            // Optimized before they serve, so that the cache holds them
            // when this host stops.
            let config =
                warden::Config::parse("[plugins]\nbaseline = false\n", "warm.toml".as_ref())
                    .expect("the config parses");
            let mut builder = Host::builder()
                .config(config)
                .backend(Arc::new(MemoryBackend::new()))
                .cache_dir(cache);
            for file in files {
                builder = builder.plugin_file(file);
            }
            let host = builder.build().await.expect("start a host");
            assert!(host.skipped().is_empty(), "{:?}", host.skipped());
            host.shutdown().await.expect("shut down");
        });
    })
    .join()
    .unwrap_or_else(|_| panic!("loading the {language} plugins panicked"));
}

/// A host with copies of the Rust plugins `rust_plugins` (see
/// [`plugins_dir`](crate::plugins_dir)) and the component `file`, if any,
/// on `backend`, with the compilation cache `cache`; and the directory of
/// the copies.
pub async fn host_with(
    rust_plugins: &[&str],
    file: Option<&Path>,
    backend: Arc<MemoryBackend>,
    cache: &Path,
) -> (Host, TempDir) {
    let dir = crate::plugins_dir(rust_plugins);
    let mut builder = Host::builder()
        .plugins_dir(dir.path())
        .backend(backend)
        .cache_dir(cache);
    if let Some(file) = file {
        builder = builder.plugin_file(file);
    }
    let host = builder.build().await.expect("start a host");
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    (host, dir)
}
