//! `warden plugins`: check, list and rebind plugin files.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;

use warden::PluginInfo;
use warden::identity::PluginId;
use warden::inspect::Inspector;
use warden::storage::{Backend, bindings};
use warden::{Config, LoadError};

use super::{StoreArgs, count, missing_store};

#[derive(Debug, clap::Args)]
pub struct PluginsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: PluginsCommand,
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Show what would load from a plugins directory, without serving: for
    /// each `.wasm` file its identity, version, routes and binding, or why
    /// it would be skipped. Bindings are read from the store when it can be
    /// opened (on sled, not while `warden run` uses it).
    List {
        /// Directory of plugin components (`*.wasm`).
        #[arg(long, env = "WARDEN_PLUGINS", value_name = "DIR")]
        plugins: PathBuf,
    },
    /// Check that a file is a plugin Warden can load: a WebAssembly
    /// component of the warden:plugin/plugin world with a valid identity
    /// and valid routes. Prints what it declares; exits non-zero if it
    /// cannot load. With --data or --config, also checks its identity's
    /// binding in that store: a file whose identity is bound to another
    /// file is refused, as loading would refuse it.
    Check {
        /// The plugin file.
        file: PathBuf,
    },
    /// Bind a plugin identity to another file, so that file loads with that
    /// identity and its data (each identity is bound to the file that first
    /// declared it). The file must be in the plugins directory, and the
    /// identity already bound or declared by a plugin there. On sled, stop
    /// `warden run` first.
    Rebind {
        /// The plugin identity, e.g. example.storage.StoragePlugin.
        id: String,
        /// The plugin file, by name or path (its file name is what counts).
        file: PathBuf,
        /// Directory of plugin components (`*.wasm`).
        #[arg(long, env = "WARDEN_PLUGINS", value_name = "DIR")]
        plugins: PathBuf,
    },
}

pub async fn plugins(args: PluginsArgs) -> anyhow::Result<()> {
    let config = args.store.load_config()?;
    warden::plugins::set_store_options(args.store.options());
    match args.command {
        PluginsCommand::List { plugins } => list_plugins(&config, &args.store, &plugins).await,
        PluginsCommand::Check { file } => check_plugin(&config, &args.store, &file).await,
        PluginsCommand::Rebind { id, file, plugins } => {
            rebind(&config, &args.store, &id, &file, &plugins).await
        }
    }
}

/// `warden plugins rebind`: checks the identity and the file, then binds.
/// Nothing is written (and no store created) when a check fails.
async fn rebind(
    config: &Config,
    store: &StoreArgs,
    id: &str,
    file: &Path,
    plugins: &Path,
) -> anyhow::Result<()> {
    let id = PluginId::new(id).context("cannot rebind")?;
    let name = file
        .file_name()
        .with_context(|| format!("cannot rebind: {} is not a file name", file.display()))?
        .to_string_lossy()
        .into_owned();
    if !plugins.is_dir() {
        bail!(
            "cannot rebind: the plugins directory {} does not exist or is not a directory",
            plugins.display()
        );
    }
    let path = plugins.join(&name);
    if !path.is_file() {
        bail!(
            "cannot rebind {id} to {name}: no such file in the plugins directory \
             (looked for {})",
            path.display()
        );
    }
    let bound = match missing_store(config, store.data.as_deref()) {
        Some(_) => None,
        None => {
            let backend = super::open_store(config, store.data.as_deref()).await?;
            let bound = bindings::bound(&*backend, &id).await;
            backend.close().await.context("closing storage failed")?;
            bound?
        }
    };
    let inspector = Inspector::new(config)?.with_cache(super::inspect_cache_dir(config));
    let declared = inspector.inspect(&path).await.map(|p| p.id);
    match &declared {
        Ok(declares) if *declares == id => {}
        Ok(declares) => eprintln!(
            "warning: {} declares plugin identity {declares}, not {id}; it will not load as {id}",
            path.display()
        ),
        Err(e) => eprintln!("warning: {e}"),
    }
    if bound.is_none() && declared.as_ref().ok() != Some(&id) {
        let files = warden::plugins::plugin_files(plugins)
            .with_context(|| format!("cannot read the plugins directory {}", plugins.display()))?;
        let mut declared_elsewhere = false;
        for other in files.iter().filter(|f| **f != path) {
            if inspector.inspect(other).await.is_ok_and(|p| p.id == id) {
                declared_elsewhere = true;
                break;
            }
        }
        if !declared_elsewhere {
            bail!(
                "cannot rebind {id}: it has no binding, and no plugin in {} declares it",
                plugins.display()
            );
        }
    }
    let backend = super::open_store(config, store.data.as_deref()).await?;
    let before = bindings::rebind(&*backend, &id, &name).await;
    backend.close().await.context("closing storage failed")?;
    match before? {
        Some(old) if old == name => println!("{id} was already bound to {name}"),
        Some(old) => println!("{id} is now bound to {name} (it was bound to {old})"),
        None => println!("{id} is now bound to {name}"),
    }
    Ok(())
}

/// `warden plugins check`: what loading `file` would say, and with a named
/// store, its identity's binding there.
async fn check_plugin(config: &Config, store: &StoreArgs, file: &Path) -> anyhow::Result<()> {
    let inspector = Inspector::new(config)?.with_cache(super::inspect_cache_dir(config));
    // The error names the file and says everything: no cause chain.
    let plugin = inspector
        .inspect(file)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let binding = if store.named() {
        let bindings = Bindings::open(config, store.data.as_deref()).await;
        let checked = bindings.check(&plugin.id, file).await;
        bindings.close().await?;
        Some(checked?)
    } else {
        None
    };
    if file.extension().is_none_or(|e| e != "wasm") {
        eprintln!(
            "warning: {} does not end in .wasm; Warden loads only *.wasm files",
            file.display()
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok, a Warden plugin", file.display())?;
    describe_plugin(&mut out, &plugin)?;
    if let Some(binding) = binding {
        writeln!(out, "  binding:     {binding}")?;
    }
    Ok(())
}

/// Identity, version, description, digest, contract, required settings,
/// routes and schedules, one a line.
fn describe_plugin(out: &mut impl Write, plugin: &PluginInfo) -> std::io::Result<()> {
    writeln!(out, "  identity:    {}", plugin.id)?;
    writeln!(out, "  version:     {}", plugin.version)?;
    writeln!(out, "  description: {}", plugin.description)?;
    writeln!(out, "  sha256:      {}", plugin.digest)?;
    writeln!(out, "  contract:    {}", plugin.contract)?;
    if !plugin.required_settings.is_empty() {
        writeln!(
            out,
            "  requires:    {}",
            plugin.required_settings.join(", ")
        )?;
    }
    if plugin.routes.is_empty() {
        writeln!(out, "  routes:      none")?;
    }
    for route in &plugin.routes {
        writeln!(
            out,
            "  route:       {} {:?} -> {}",
            route.kind,
            route.pattern(),
            route.handler
        )?;
    }
    for schedule in &plugin.schedules {
        writeln!(
            out,
            "  schedule:    {:?} -> {}",
            schedule.cron, schedule.handler
        )?;
    }
    Ok(())
}

/// Where identity bindings can be read from, for `warden plugins list`.
enum Bindings {
    Store(Arc<dyn Backend>),
    /// The store does not exist yet, so nothing is bound.
    Empty(String),
    /// The store could not be opened.
    Unknown(String),
}

impl Bindings {
    async fn open(config: &Config, data: Option<&Path>) -> Self {
        // Reading bindings never creates a store.
        if let Some(dir) = missing_store(config, data) {
            return Self::Empty(format!("no store in {} yet", dir.display()));
        }
        match super::open_store(config, data).await {
            Ok(backend) => Self::Store(backend),
            Err(e) => Self::Unknown(format!("cannot open the store: {e}")),
        }
    }

    /// Refuses `file` as loading would when `id` is bound to another file;
    /// else describes the binding, as a line for people.
    async fn check(&self, id: &PluginId, file: &Path) -> anyhow::Result<String> {
        match self {
            Self::Store(backend) => {
                warden::plugins::check_binding(&**backend, id, file)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Self::Empty(_) => {}
            Self::Unknown(why) => bail!(
                "{}: cannot check the binding of its identity {id}: {why}",
                file.display()
            ),
        }
        Ok(self.describe(id, file).await.0)
    }

    /// The binding of `id`, as a line for people; and whether it refuses
    /// `file`.
    async fn describe(&self, id: &PluginId, file: &Path) -> (String, bool) {
        let name = bindings::binding_name(file);
        let backend = match self {
            Self::Store(backend) => backend,
            Self::Empty(why) => {
                return (
                    format!("not bound ({why}); loading binds it to {name}"),
                    false,
                );
            }
            Self::Unknown(why) => return (format!("unknown ({why})"), false),
        };
        match bindings::bound(&**backend, id).await {
            Ok(Some(bound)) if bound == name => ("bound to this file".into(), false),
            Ok(Some(bound)) => (
                format!(
                    "bound to {bound}; this file is refused until `{}`",
                    warden::plugins::rebind_command(id, file)
                ),
                true,
            ),
            Ok(None) => (format!("not bound; loading binds it to {name}"), false),
            Err(e) => (format!("unknown (reading the store failed: {e})"), false),
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        if let Self::Store(backend) = self {
            backend.close().await.context("closing storage failed")?;
        }
        Ok(())
    }
}

/// `warden plugins list`.
async fn list_plugins(config: &Config, store: &StoreArgs, dir: &Path) -> anyhow::Result<()> {
    let files = warden::plugins::plugin_files(dir)
        .with_context(|| format!("cannot read the plugins directory {}", dir.display()))?;
    let inspector = Inspector::new(config)?.with_cache(super::inspect_cache_dir(config));
    let mut inspected = Vec::new();
    for file in &files {
        inspected.push(inspector.inspect(file).await);
    }
    let bindings = if inspected.iter().any(Result::is_ok) {
        Bindings::open(config, store.data.as_deref()).await
    } else {
        Bindings::Empty("no plugin to bind".into())
    };

    let mut out = std::io::stdout().lock();
    let mut first_file: HashMap<PluginId, PathBuf> = HashMap::new();
    let mut loading = 0;
    for (file, result) in files.iter().zip(&inspected) {
        let name = file.display().to_string();
        let plugin = match result {
            Ok(plugin) => plugin,
            Err(e) => {
                writeln!(out, "{name}: skipped: {}", without_file(e, file))?;
                continue;
            }
        };
        let (binding, refused) = bindings.describe(&plugin.id, file).await;
        let verdict = if let Some(first) = first_file.get(&plugin.id) {
            format!(
                "skipped: declares plugin identity {}, which {} already declared",
                plugin.id,
                first.display()
            )
        } else if refused {
            format!(
                "skipped: its identity {} is bound to another file",
                plugin.id
            )
        } else {
            first_file.insert(plugin.id.clone(), file.clone());
            loading += 1;
            format!("loads as {} {}", plugin.id, plugin.version)
        };
        writeln!(out, "{name}: {verdict}")?;
        describe_plugin(&mut out, plugin)?;
        writeln!(out, "  binding:     {binding}")?;
    }
    writeln!(
        out,
        "{loading} of {} would load from {}",
        count(files.len() as u64, "file", "files"),
        dir.display()
    )?;
    drop(out);
    bindings.close().await
}

/// A load error's message without the file name it starts with.
fn without_file(e: &LoadError, file: &Path) -> String {
    let message = e.to_string();
    let prefix = format!("{}: ", file.display());
    message
        .strip_prefix(&prefix)
        .map_or_else(|| message.clone(), str::to_owned)
}
