//! The `warden` command line: argument parsing and the commands it runs.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::admin::{self, Scope};
use crate::identity::PluginId;
use crate::storage::{Backend, human_size};
use crate::{Config, Host};

/// A WebAssembly plugin host with sandboxed, namespaced storage.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the plugins and serve messages.
    Run(RunArgs),
    /// Inspect and change the store directly, as the operator. On sled,
    /// stop `warden run` first: one process uses a data directory at a time.
    Storage(StorageArgs),
    /// Manage plugins' identities.
    Plugins(PluginsArgs),
}

#[derive(Debug, clap::Args)]
struct PluginsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: PluginsCommand,
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Bind a plugin identity to another file, so that file loads with that
    /// identity and its data (each identity is bound to the file that first
    /// declared it). On sled, stop `warden run` first.
    Rebind {
        /// The plugin identity, e.g. example.storage.StoragePlugin.
        id: String,
        /// The plugin file (its file name is what counts).
        file: PathBuf,
    },
}

/// Where the store is: the same options for every command.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Configuration file (TOML): storage, grants, limits.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Data directory of the sled store [default: the config's
    /// storage.path, else ./warden-data].
    #[arg(long, env = "WARDEN_DATA", value_name = "DIR", global = true)]
    data: Option<PathBuf>,
}

impl StoreArgs {
    fn load_config(&self) -> anyhow::Result<Config> {
        Ok(match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        })
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Directory of plugin components (`*.wasm`).
    #[arg(long, env = "WARDEN_PLUGINS", value_name = "DIR")]
    plugins: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
    /// Read messages from stdin, one a line, and print replies to stdout
    /// (the default when no other adapter is chosen).
    #[arg(long)]
    console: bool,
    /// Directory of compiled plugins, so that a restart with unchanged
    /// plugins skips compilation [default: $XDG_CACHE_HOME/warden, else
    /// ~/.cache/warden].
    #[arg(long, env = "WARDEN_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every plugin at start, with no compilation cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Do not watch the plugins directory: load it once at start.
    #[arg(long)]
    no_watch: bool,
}

/// The default compilation cache directory, if the environment names one.
fn default_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let home = || {
        std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".cache"))
    };
    xdg.or_else(home).map(|base| base.join("warden"))
}

#[derive(Debug, clap::Args)]
struct StorageArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: StorageCommand,
}

/// Which namespace: a plugin's or the shared one.
#[derive(Debug, clap::Args)]
#[group(multiple = false)]
struct ScopeArgs {
    /// A plugin's own keys, by its identity.
    #[arg(long, value_name = "ID")]
    plugin: Option<String>,
    /// The shared keyspace.
    #[arg(long)]
    shared: bool,
}

impl ScopeArgs {
    fn scope(&self) -> anyhow::Result<Scope> {
        Ok(match (&self.plugin, self.shared) {
            (Some(id), _) => {
                Scope::Plugin(PluginId::new(id).with_context(|| format!("--plugin {id}"))?)
            }
            (None, true) => Scope::Shared,
            (None, false) => Scope::All,
        })
    }

    fn one(&self) -> anyhow::Result<Scope> {
        match self.scope()? {
            Scope::All => bail!("name the key's namespace: --plugin ID or --shared"),
            scope => Ok(scope),
        }
    }
}

#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// List keys: namespace, key, value size, expiry. Every namespace
    /// unless --plugin or --shared.
    Ls {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Print a key's value to stdout, byte for byte.
    Get {
        #[command(flatten)]
        scope: ScopeArgs,
        /// The key.
        key: String,
    },
    /// Store a value under a key.
    Set {
        #[command(flatten)]
        scope: ScopeArgs,
        /// The key.
        key: String,
        /// The value; read from stdin, byte for byte, when omitted.
        value: Option<String>,
        /// Expire the key after this many seconds.
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
    },
    /// Remove a key.
    Delete {
        #[command(flatten)]
        scope: ScopeArgs,
        /// The key.
        key: String,
    },
    /// Keys and bytes per namespace, and the store's total size.
    Size,
    /// Write every entry to stdout as JSON lines.
    Export,
    /// Read JSON lines (as `export` writes them) from stdin and store every
    /// entry. All lines are checked before anything is written.
    Import,
}

/// Runs the command line with the process's arguments.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Storage(args) => runtime.block_on(storage(args)),
        Command::Plugins(args) => runtime.block_on(plugins(args)),
    }
}

async fn plugins(args: PluginsArgs) -> anyhow::Result<()> {
    let config = args.store.load_config()?;
    match args.command {
        PluginsCommand::Rebind { id, file } => {
            let id = PluginId::new(&id)?;
            let name = file
                .file_name()
                .with_context(|| format!("{} is not a file name", file.display()))?
                .to_string_lossy()
                .into_owned();
            let backend = crate::open_backend(&config, args.store.data.as_deref()).await?;
            let before = crate::plugins::rebind(&*backend, &id, &name).await;
            backend.close().await.context("closing storage failed")?;
            match before? {
                Some(old) if old == name => println!("{id} was already bound to {name}"),
                Some(old) => println!("{id} is now bound to {name} (it was bound to {old})"),
                None => println!("{id} is now bound to {name}"),
            }
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.store.load_config()?;
    if !args.plugins.is_dir() {
        bail!(
            "the plugins directory {} does not exist or is not a directory",
            args.plugins.display()
        );
    }
    let mut builder = Host::builder()
        .config(config)
        .plugins_dir(&args.plugins)
        .watch(!args.no_watch);
    if let Some(data) = &args.store.data {
        builder = builder.data_dir(data);
    }
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(default_cache_dir)
    };
    match cache_dir {
        Some(dir) => builder = builder.cache_dir(dir),
        None if !args.no_cache => {
            tracing::warn!("no compilation cache: set --cache-dir, WARDEN_CACHE_DIR or HOME")
        }
        None => {}
    }
    let host = builder.build().await?;
    let loaded = host.plugins().len();
    if loaded == 0 {
        tracing::warn!("no plugin loaded from {}", args.plugins.display());
    } else {
        tracing::info!("{loaded} plugin(s) loaded; reading messages from stdin");
    }
    // The console is the only adapter so far, so it runs whether or not
    // --console was given.
    let _ = args.console;
    let console = crate::adapters::console::run(
        &host,
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    );
    let result = tokio::select! {
        r = console => r.context("console input/output failed"),
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; shutting down");
            Ok(())
        }
    };
    host.shutdown().await.context("closing storage failed")?;
    result
}

async fn storage(args: StorageArgs) -> anyhow::Result<()> {
    let config = args.store.load_config()?;
    let backend = crate::open_backend(&config, args.store.data.as_deref()).await?;
    let result = storage_command(&*backend, args.command).await;
    backend.close().await.context("closing storage failed")?;
    result
}

fn expiry(at: Option<SystemTime>) -> String {
    match at {
        None => "-".into(),
        Some(at) => {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            format!("expires in {} s", left.as_secs_f64().ceil())
        }
    }
}

async fn storage_command(backend: &dyn Backend, command: StorageCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        StorageCommand::Ls { scope, prefix } => {
            for l in admin::list(backend, &scope.scope()?, &prefix).await? {
                writeln!(
                    stdout,
                    "{}\t{}\t{} B\t{}",
                    l.namespace,
                    l.key,
                    l.value.len(),
                    expiry(l.expires_at)
                )?;
            }
        }
        StorageCommand::Get { scope, key } => {
            let scope = scope.one()?;
            match admin::get(backend, &scope, &key).await? {
                Some(value) => {
                    stdout.write_all(&value)?;
                    if stdout.is_terminal() {
                        writeln!(stdout)?;
                    }
                }
                None => bail!("no key {key:?} in {}", describe(&scope)),
            }
        }
        StorageCommand::Set {
            scope,
            key,
            value,
            expires_in,
        } => {
            let scope = scope.one()?;
            let value = match value {
                Some(v) => v.into_bytes(),
                None => {
                    let mut buf = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                    buf
                }
            };
            admin::set(
                backend,
                &scope,
                &key,
                &value,
                expires_in.map(Duration::from_secs),
            )
            .await?;
        }
        StorageCommand::Delete { scope, key } => {
            let scope = scope.one()?;
            if !admin::delete(backend, &scope, &key).await? {
                eprintln!("no key {key:?} in {}; nothing deleted", describe(&scope));
            }
        }
        StorageCommand::Size => {
            let (by_namespace, total) = admin::sizes(backend).await?;
            let (mut keys, mut bytes) = (0, 0);
            for n in &by_namespace {
                writeln!(
                    stdout,
                    "{}\t{} keys\t{}",
                    n.namespace,
                    n.keys,
                    human_size(n.bytes)
                )?;
                keys += n.keys;
                bytes += n.bytes;
            }
            writeln!(
                stdout,
                "total\t{keys} keys\t{}\t(store size {})",
                human_size(bytes),
                human_size(total)
            )?;
        }
        StorageCommand::Export => {
            let count = admin::export(backend, std::io::BufWriter::new(stdout)).await?;
            eprintln!("exported {count} entries");
        }
        StorageCommand::Import => {
            let done = admin::import(backend, std::io::stdin().lock()).await?;
            eprintln!("{done}");
        }
    }
    Ok(())
}

fn describe(scope: &Scope) -> String {
    match scope {
        Scope::All => "any namespace".into(),
        Scope::Plugin(id) => format!("plugin {id}'s namespace"),
        Scope::Shared => "the shared keyspace".into(),
    }
}
