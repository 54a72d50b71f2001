//! Loading: reading the plugins directory, compiling and checking each
//! file, binding identities, and reloading what changed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;

use super::loaded::Parts;
use super::{
    LoadError, LoadedPlugin, MAX_DESCRIPTION_BYTES, MAX_DOC_BYTES, MAX_SCHEDULES,
    MAX_VERSION_BYTES, PluginInfo, describe_trap, out_of_memory,
};
use crate::config::{Config, Limits, RoutingConfig};
use crate::identity::PluginId;
use crate::metrics::Metrics;
use crate::router;
use crate::runtime::cache::{self, CacheOutcome, CompileCache};
use crate::runtime::{Code, Declared, Entry, Instance, Output, Pre, Runtime, Serving};
use crate::storage::bindings::{self, binding_name};
use crate::storage::{Backend, PluginStorage, Usage};
use crate::text;

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
#[derive(Clone, Copy)]
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
    /// Where loading reports its progress, if anywhere.
    pub progress: Option<&'a ProgressFn>,
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
    let old_by_file: HashMap<&Path, &Arc<LoadedPlugin>> = current
        .iter()
        .map(|p| (p.info().file.as_path(), p))
        .collect();

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
                    .and_then(|p| p.stamp().map(|stamp| (stamp, p.digest())))
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
                (Some(old), _) if old.digest() == found.digest => {
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
        .map(|p| (p.info().id.clone(), p.info().file.clone()))
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
    report(loader.progress, Progress::Started { total: work.len() });
    let mut loaded: HashMap<PathBuf, Arc<LoadedPlugin>> = HashMap::new();
    // Files are prepared several at a time, and then loaded one by one in
    // name order, so that of two files declaring one identity the first in
    // name order wins. Twice as many as there are cores are under way, so
    // that one file's CPU-bound step overlaps another's wait.
    let limits = &loader.config.limits;
    let routing = &loader.config.routing;
    let mut prepared = futures::stream::iter(work)
        .map(|(file, bytes, digest, stamp)| async move {
            report(loader.progress, Progress::Loading { file: &file });
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
        let mut baseline_bytes = None;
        let result = match result {
            Ok(mut prepared) => {
                baseline_bytes = prepared.bytes.take();
                match router::check_host_budget(route_cost, &prepared.info.routes, routing) {
                    Ok(()) => finish(prepared, loader, &by_id).await,
                    Err(source) => Err(LoadError::BadRoute {
                        file: prepared.info.file,
                        id: prepared.info.id,
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
                tracing::info!(plugin = %plugin.info().id, version = %plugin.info().version,
                    file = %file.display(), routes = plugin.info().routes.len(),
                    "plugin {}", if old.is_some() { "reloaded" } else { "loaded" });
                by_id.insert(plugin.info().id.clone(), file.clone());
                if old.is_some() {
                    synced.replaced.push(file.clone());
                } else {
                    synced.added.push(file.clone());
                }
                let plugin = Arc::new(plugin);
                if let Some(bytes) = baseline_bytes {
                    optimize_later(&plugin, loader.runtime, loader.cache, bytes);
                }
                loaded.insert(file, plugin);
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
        report(loader.progress, Progress::Done);
    }
    drop(prepared);
    report(loader.progress, Progress::Finished);

    for file in files {
        if let Some(plugin) = loaded.remove(file).or_else(|| kept.remove(file)) {
            synced.plugins.push(plugin);
        }
    }
    for plugin in current {
        if !files.contains(&plugin.info().file) {
            tracing::info!(plugin = %plugin.info().id, file = %plugin.info().file.display(),
                "plugin unloaded: its file is gone");
            synced.removed.push(plugin.info().file.clone());
        }
    }
    synced
}

/// Compiles `plugin`, running baseline code, with the optimizing compiler
/// in the background (one compile at a time), through `cache`; puts the
/// optimized code in place once it is compiled. Nothing is compiled for a
/// plugin unloaded before its turn came.
fn optimize_later(
    plugin: &Arc<LoadedPlugin>,
    runtime: &Runtime,
    cache: Option<&Arc<CompileCache>>,
    bytes: Vec<u8>,
) {
    let weak = Arc::downgrade(plugin);
    let (runtime, cache) = (runtime.clone(), cache.cloned());
    let (id, file, digest) = (
        plugin.info().id.clone(),
        plugin.info().file.clone(),
        plugin.digest(),
    );
    tokio::spawn(async move {
        let permit = runtime.background_permit().await;
        if weak.strong_count() == 0 {
            return;
        }
        let started = Instant::now();
        let compiled = {
            let (runtime, file) = (runtime.clone(), file.clone());
            tokio::task::spawn_blocking(move || {
                runtime.optimize(&bytes, &digest, &file, cache.as_deref())
            })
            .await
        };
        drop(permit);
        let component = match compiled {
            Ok(Ok((component, _))) => component,
            Ok(Err(e)) => {
                tracing::warn!(plugin = %id, file = %file.display(),
                    "optimizing the plugin's code failed; it goes on with its baseline code: {}",
                    text::one_line(&format!("{e:#}")));
                return;
            }
            Err(e) => {
                tracing::warn!(plugin = %id, "optimizing the plugin's code failed: {e}");
                return;
            }
        };
        let Some(plugin) = weak.upgrade() else {
            return;
        };
        match runtime.prepare(&component) {
            Ok(pre) => {
                plugin.replace_code(pre, Code::Optimized);
                tracing::info!(plugin = %id, took_ms = started.elapsed().as_millis() as u64,
                    "the plugin now runs optimized code");
            }
            Err(e) => tracing::warn!(plugin = %id,
                "the optimized code does not link; the plugin goes on with its baseline code: {}",
                text::one_line(&format!("{e:#}"))),
        }
    });
}

/// How far a load of the plugins directory has got, as [`sync`] reports
/// it to a [`ProgressFn`] (the `warden` command line draws a bar from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// `total` files are to be compiled and loaded.
    Started {
        /// How many.
        total: usize,
    },
    /// One of them is being compiled and loaded.
    Loading {
        /// The file.
        file: &'a Path,
    },
    /// One more is done, loaded or failed.
    Done,
    /// Every one is done.
    Finished,
}

/// Receives the [`Progress`] of each load; see
/// [`HostBuilder::progress`](crate::HostBuilder::progress).
#[derive(Clone)]
pub struct ProgressFn(Arc<dyn Fn(Progress<'_>) + Send + Sync>);

impl ProgressFn {
    /// Reports to `f`.
    pub fn new(f: impl Fn(Progress<'_>) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressFn").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Loader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").finish_non_exhaustive()
    }
}

/// Reports `progress` to `to`; without a receiver, each file is a debug
/// log line.
fn report(to: Option<&ProgressFn>, progress: Progress<'_>) {
    match (to, progress) {
        (Some(to), progress) => (to.0)(progress),
        (None, Progress::Loading { file }) => {
            tracing::debug!(file = %file.display(), "loading plugin");
        }
        (None, _) => {}
    }
}

/// A plugin file compiled, started and asked for its manifest, with its
/// identity and routes checked: all of loading that does not depend on the
/// other plugins or the store, so files are prepared side by side.
pub(crate) struct Prepared {
    /// Its checked manifest, and the file.
    pub info: PluginInfo,
    /// What tells the file has not changed since, when known.
    pub stamp: Option<Stamp>,
    /// Its SHA-256 digest.
    pub digest: [u8; 32],
    pre: Pre,
    /// Which code `pre` is.
    pub code: Code,
    /// The file's contents, kept while its code is baseline code, to be
    /// compiled again optimized.
    bytes: Option<Vec<u8>>,
    /// The instance that read the manifest; it goes on to serve.
    instance: Instance,
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
    let (component, outcome, code, bytes) = {
        let runtime = runtime.clone();
        let file = path.clone();
        let cache = cache.cloned();
        // Compiling is CPU-bound: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            runtime
                .compile(&bytes, &digest, &file, cache.as_deref())
                .map(|(component, outcome, code)| {
                    let keep = (code == Code::Baseline).then_some(bytes);
                    (component, outcome, code, keep)
                })
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
    let store = runtime.new_store(&pre, output, None, limits);
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
        info: PluginInfo {
            id,
            version: manifest.version,
            description: manifest.description,
            digest: cache::hex(&digest),
            file: path,
            routes,
            contract: pre.contract(),
            schedules: manifest.schedules,
            required_settings: manifest.required_settings,
        },
        stamp: None,
        digest,
        pre,
        code,
        bytes,
        instance,
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
    let handler = |what: String, handler: &str| {
        if handler.chars().any(text::needs_escape) {
            return Err(format!(
                "the handler name of {what}, {:?}, holds control or formatting characters",
                text::truncate(handler, 100)
            ));
        }
        Ok(())
    };
    for (index, route) in manifest.routes.iter().enumerate() {
        handler(format!("route {index}"), &route.handler)?;
        field(&format!("doc of route {index}"), &route.doc, MAX_DOC_BYTES)?;
    }
    if manifest.schedules.len() > MAX_SCHEDULES {
        return Err(format!(
            "it declares {} schedules; at most {MAX_SCHEDULES} are allowed",
            manifest.schedules.len()
        ));
    }
    for (index, schedule) in manifest.schedules.iter().enumerate() {
        handler(format!("schedule {index}"), &schedule.handler)?;
        field(
            &format!("doc of schedule {index}"),
            &schedule.doc,
            MAX_DOC_BYTES,
        )?;
        field(
            &format!("cron of schedule {index}"),
            &schedule.cron,
            MAX_DOC_BYTES,
        )?;
        if let Some(channel) = &schedule.channel {
            field(
                &format!("channel of schedule {index}"),
                channel,
                MAX_DOC_BYTES,
            )?;
        }
        crate::schedule::parse(&schedule.cron)
            .map_err(|e| format!("schedule {index} ({}): {e}", schedule.handler))?;
    }
    if manifest.required_settings.len() > MAX_SCHEDULES {
        return Err(format!(
            "it requires {} settings; at most {MAX_SCHEDULES} are allowed",
            manifest.required_settings.len()
        ));
    }
    for name in &manifest.required_settings {
        field("required setting", name, MAX_DOC_BYTES)?;
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
        progress: _,
    } = loader;
    let Prepared {
        info,
        stamp,
        digest,
        pre,
        code,
        bytes: _,
        mut instance,
    } = prepared;
    let (id, path) = (info.id.clone(), info.file.clone());
    if let Some(first) = loaded.get(&id) {
        return Err(LoadError::DuplicateId {
            file: path,
            id,
            first: first.clone(),
        });
    }
    let settings = config.settings_for(&id);
    if let Some(missing) = info
        .required_settings
        .iter()
        .find(|name| !settings.contains(name))
    {
        return Err(LoadError::MissingSetting {
            file: path,
            id,
            setting: missing.clone(),
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
        source: e,
    })?;
    // The instance that read the manifest serves the messages, tagged with
    // the identity and given its storage.
    let serving = Serving {
        storage,
        metrics: metrics.plugin(&id),
        settings: Arc::new(settings),
    };
    instance
        .state_mut()
        .serve_as(id.as_str(), serving.clone(), &limits);
    if !bound {
        bind(&**backend, &id, &path).await?;
    }
    Ok(LoadedPlugin::new(Parts {
        info,
        digest,
        stamp,
        pre,
        code,
        runtime: runtime.clone(),
        serving,
        limits,
        instance,
    }))
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
            source: e,
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
            source: e,
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
