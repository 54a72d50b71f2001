//! The `warden` command line: argument parsing and the commands it runs.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::adapters::http::kind_name;
use crate::admin::{self, Scope};
use crate::identity::PluginId;
use crate::inspect::{Inspected, Inspector};
use crate::plugins::shell_word;
use crate::storage::{Backend, human_size};
use crate::{Config, Host, LoadError};

/// A WebAssembly plugin host with sandboxed, namespaced storage.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log format on standard error: `text` for people, `json` (one object
    /// a line) for log collectors.
    #[arg(
        long,
        env = "WARDEN_LOG_FORMAT",
        value_name = "FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One line of text per event, with its span and fields.
    Text,
    /// One JSON object per event, with its span and fields.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load the plugins and serve messages.
    Run(RunArgs),
    /// Inspect and change the store directly, as the operator. On sled,
    /// stop `warden run` first: one process uses a data directory at a time.
    Storage(StorageArgs),
    /// Check plugin files, list what would load, and manage identities.
    Plugins(PluginsArgs),
    /// Create a new plugin project, in Rust (the default) or Python, with
    /// the seed's storage plugin as its code, that builds as it is.
    New(NewArgs),
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// The plugin's name: lower-case letters, digits, `-` and `_`. The
    /// project is created in a new directory of that name.
    name: String,
    /// Write it in Python instead of Rust.
    #[arg(long)]
    python: bool,
    /// Create the directory here instead of the current directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    r#in: PathBuf,
    /// The guest-sdk directory of a Warden checkout to depend on (default:
    /// the one this `warden` was built from).
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

/// `warden new`.
fn new_plugin(args: &NewArgs) -> anyhow::Result<()> {
    let language = if args.python {
        crate::scaffold::Language::Python
    } else {
        crate::scaffold::Language::Rust
    };
    let made = crate::scaffold::create(&args.r#in, &args.name, language, args.sdk.as_deref())?;
    println!(
        "created plugin {} in {}
build it:  cd {} && {}
then copy {} into the plugins directory",
        made.id,
        made.dir.display(),
        made.dir.display(),
        made.build,
        made.component.display()
    );
    Ok(())
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

/// Where the store is: the same options for every command.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    /// Configuration file (TOML): storage, grants, limits, http, plugins.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Data directory of the sled store [default: the config's
    /// storage.path, else ./warden-data].
    #[arg(long, env = "WARDEN_DATA", value_name = "DIR", global = true)]
    data: Option<PathBuf>,
}

impl StoreArgs {
    /// The options as given, shell-quoted, for commands printed as hints.
    fn options(&self) -> String {
        let mut options = Vec::new();
        if let Some(config) = &self.config {
            options.push(format!(
                "--config {}",
                shell_word(&config.to_string_lossy())
            ));
        }
        if let Some(data) = &self.data {
            options.push(format!("--data {}", shell_word(&data.to_string_lossy())));
        }
        options.join(" ")
    }

    /// Whether the store was named, by --config or --data (or their
    /// environment variables).
    fn named(&self) -> bool {
        self.config.is_some() || self.data.is_some()
    }

    /// The configuration file, if any, with the environment's
    /// `WARDEN_<TABLE>_<FIELD>` overrides applied.
    fn load_config(&self) -> anyhow::Result<Config> {
        Ok(Config::load_with_env(
            self.config.as_deref(),
            std::env::vars_os(),
        )?)
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
    /// (the default when HTTP is not served).
    #[arg(long)]
    console: bool,
    /// Directory of compiled plugins, so that a restart with unchanged
    /// plugins skips compilation; turns the cache on even if the config's
    /// plugins.cache is false [default: the config's plugins.cache_dir, else
    /// $XDG_CACHE_HOME/warden, else ~/.cache/warden].
    #[arg(long, env = "WARDEN_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every plugin at start, with no compilation cache (overrides
    /// the config's plugins.cache).
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Do not watch the plugins directory: load it once at start (overrides
    /// the config's plugins.watch).
    #[arg(long)]
    no_watch: bool,
    /// Serve HTTP on this address, e.g. 127.0.0.1:8080 (port 0 picks a free
    /// port) [default: the config's http.listen; not served if neither].
    #[arg(long, env = "WARDEN_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
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

/// Runs the command line with the process's arguments. A failure is
/// printed to stderr as one line, `error: ` and the message.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| {
            let result = match cli.command {
                Command::Run(args) => runtime.block_on(run(args)),
                Command::Storage(args) => runtime.block_on(storage(args)),
                Command::Plugins(args) => runtime.block_on(plugins(args)),
                Command::New(args) => new_plugin(&args),
            };
            // Everything is done and the store closed. A console stopped by
            // a signal still has a blocking-pool thread waiting for a line of
            // input that may never come: do not wait for it.
            runtime.shutdown_background();
            result
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, joined with ": ". A cause whose
/// text the line already holds (an error that repeats its source) is left
/// out; line breaks within a message become spaces.
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `count` and the noun, singular for one: `1 key`, `2 keys`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Logs go to stderr, filtered by `WARDEN_LOG` (default `info`).
fn init_logs(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        );
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

async fn plugins(args: PluginsArgs) -> anyhow::Result<()> {
    let config = args.store.load_config()?;
    crate::plugins::set_store_options(args.store.options());
    match args.command {
        PluginsCommand::List { plugins } => list_plugins(&config, &args.store, &plugins).await,
        PluginsCommand::Check { file } => check_plugin(&config, &args.store, &file).await,
        PluginsCommand::Rebind { id, file, plugins } => {
            rebind(&config, &args.store, &id, &file, &plugins).await
        }
    }
}

/// The sled data directory the options name, when the store is sled.
fn sled_dir(config: &Config, data: Option<&Path>) -> Option<PathBuf> {
    (config.storage.backend == crate::config::BackendKind::Sled).then(|| {
        data.map(Path::to_path_buf)
            .or_else(|| config.storage.path.clone())
            .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_DATA_DIR))
    })
}

/// The sled data directory the options name, if it does not exist.
fn missing_store(config: &Config, data: Option<&Path>) -> Option<PathBuf> {
    sled_dir(config, data).filter(|dir| !dir.exists())
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
            let backend = crate::open_backend(config, store.data.as_deref()).await?;
            let bound = backend.get(&crate::identity::binding_key(&id)).await;
            backend.close().await.context("closing storage failed")?;
            bound?
        }
    };
    let inspector = Inspector::new(config)?;
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
        let files = crate::plugins::plugin_files(plugins)
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
    let backend = crate::open_backend(config, store.data.as_deref()).await?;
    let before = crate::plugins::rebind(&*backend, &id, &name).await;
    backend.close().await.context("closing storage failed")?;
    match before? {
        Some(old) if old == name => println!("{id} was already bound to {name}"),
        Some(old) => println!("{id} is now bound to {name} (it was bound to {old})"),
        None => println!("{id} is now bound to {name}"),
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let signal = shutdown_signal()?;
    let config = args.store.load_config()?;
    crate::plugins::set_store_options(args.store.options());
    if !args.plugins.is_dir() {
        bail!(
            "the plugins directory {} does not exist or is not a directory",
            args.plugins.display()
        );
    }
    let listen = args.listen.clone().or_else(|| config.http.listen.clone());
    // HTTP is served when an address is given; the console runs when asked
    // for, or when nothing else would.
    let console = args.console || listen.is_none();
    // Bind before loading plugins, so that a taken address fails at once.
    let listener = match &listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let bound = listener
                .local_addr()
                .with_context(|| format!("cannot listen on {addr}"))?;
            Some((listener, bound))
        }
        None => None,
    };
    // Flags override the config's [plugins] table, which overrides the
    // defaults.
    let watch = !args.no_watch && config.plugins.watch;
    let cache_dir = match (&args.cache_dir, config.plugins.cache) {
        _ if args.no_cache => None,
        (Some(dir), _) => Some(dir.clone()),
        (None, false) => None,
        (None, true) => {
            let dir = config.plugins.cache_dir.clone().or_else(default_cache_dir);
            if dir.is_none() {
                tracing::warn!(
                    "no compilation cache: set --cache-dir, WARDEN_CACHE_DIR, \
                     [plugins] cache_dir or HOME"
                );
            }
            dir
        }
    };
    let mut builder = Host::builder()
        .config(config)
        .plugins_dir(&args.plugins)
        .watch(watch);
    if let Some(data) = &args.store.data {
        builder = builder.data_dir(data);
    }
    if let Some(dir) = cache_dir {
        builder = builder.cache_dir(dir);
    }
    let host = Arc::new(builder.build().await?);
    let loaded = host.plugins().len();
    if loaded == 0 {
        tracing::warn!("no plugin loaded from {}", args.plugins.display());
    } else {
        tracing::info!("{loaded} plugin(s) loaded");
    }

    tokio::pin!(signal);
    let result = match listener {
        None => {
            tracing::info!("reading messages from stdin");
            tokio::select! {
                r = console_adapter(&host) => r,
                why = &mut signal => {
                    tracing::info!("{why}; shutting down");
                    Ok(())
                }
            }
        }
        Some((listener, addr)) => {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn({
                let host = host.clone();
                async move {
                    crate::adapters::http::serve(listener, host, async {
                        let _ = stopped.await;
                    })
                    .await
                }
            });
            tracing::info!("HTTP listening on http://{addr}");
            let console_result = if console {
                tracing::info!("reading messages from stdin");
                tokio::select! {
                    r = console_adapter(&host) => match r {
                        // The end of the console's input ends the console
                        // only: HTTP goes on until Ctrl-C or SIGTERM.
                        Ok(()) => {
                            tracing::info!(
                                "end of console input; HTTP goes on until Ctrl-C or SIGTERM"
                            );
                            let why = (&mut signal).await;
                            tracing::info!("{why}; shutting down");
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    why = &mut signal => {
                        tracing::info!("{why}; shutting down");
                        Ok(())
                    }
                }
            } else {
                let why = (&mut signal).await;
                tracing::info!("{why}; shutting down");
                Ok(())
            };
            // Requests under way finish before the store closes.
            let _ = stop.send(());
            let served = match server.await {
                Ok(served) => served.context("the HTTP server failed"),
                Err(e) => Err(e).context("the HTTP server failed"),
            };
            console_result.and(served)
        }
    };
    close(host).await?;
    result
}

/// Runs the console on stdin and stdout.
async fn console_adapter(host: &Host) -> anyhow::Result<()> {
    crate::adapters::console::run(
        host,
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    )
    .await
    .context("console input/output failed")
}

/// Watches for Ctrl-C and SIGTERM from now on; the future completes at
/// the first, saying which. Watching starts before the future is polled, so
/// a signal that comes while plugins load is not lost.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch for Ctrl-C")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => "interrupted",
                _ = terminate.recv() => "terminated",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "interrupted",
                Err(e) => {
                    tracing::warn!("cannot watch for Ctrl-C: {e}");
                    std::future::pending().await
                }
            }
        })
    }
}

/// Shuts the host down, closing the store. Every adapter has stopped, so
/// this is the last handle.
async fn close(host: Arc<Host>) -> anyhow::Result<()> {
    let Some(host) = Arc::into_inner(host) else {
        bail!("the host is still in use at shutdown; the store was not closed cleanly");
    };
    host.shutdown().await.context("closing storage failed")
}

/// `warden plugins check`: what loading `file` would say, and with a named
/// store, its identity's binding there.
async fn check_plugin(config: &Config, store: &StoreArgs, file: &Path) -> anyhow::Result<()> {
    let inspector = Inspector::new(config)?;
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

/// Identity, version, description, digest and routes, one a line.
fn describe_plugin(out: &mut impl Write, plugin: &Inspected) -> std::io::Result<()> {
    writeln!(out, "  identity:    {}", plugin.id)?;
    writeln!(out, "  version:     {}", plugin.version)?;
    writeln!(out, "  description: {}", plugin.description)?;
    writeln!(out, "  sha256:      {}", plugin.digest)?;
    if plugin.routes.is_empty() {
        writeln!(out, "  routes:      none")?;
    }
    for route in &plugin.routes {
        writeln!(
            out,
            "  route:       {} {:?} -> {}",
            kind_name(route.kind),
            route.pattern(),
            route.handler
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
        match crate::open_backend(config, data).await {
            Ok(backend) => Self::Store(backend),
            Err(e) => Self::Unknown(format!("cannot open the store: {e}")),
        }
    }

    /// Refuses `file` as loading would when `id` is bound to another file;
    /// else describes the binding, as a line for people.
    async fn check(&self, id: &PluginId, file: &Path) -> anyhow::Result<String> {
        match self {
            Self::Store(backend) => {
                crate::plugins::check_binding(backend, id, file)
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
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
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
        match backend.get(&crate::identity::binding_key(id)).await {
            Ok(Some(bound)) if bound == name.as_bytes() => ("bound to this file".into(), false),
            Ok(Some(bound)) => {
                let bound = String::from_utf8_lossy(&bound);
                (
                    format!(
                        "bound to {bound}; this file is refused until `{}`",
                        crate::plugins::rebind_command(id, file)
                    ),
                    true,
                )
            }
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
    let files = crate::plugins::plugin_files(dir)
        .with_context(|| format!("cannot read the plugins directory {}", dir.display()))?;
    let inspector = Inspector::new(config)?;
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

async fn storage(args: StorageArgs) -> anyhow::Result<()> {
    let config = args.store.load_config()?;
    // A command that only reads does not create a store where there is none.
    let reads_only = matches!(
        args.command,
        StorageCommand::Ls { .. }
            | StorageCommand::Get { .. }
            | StorageCommand::Size
            | StorageCommand::Export
    );
    if reads_only && let Some(dir) = missing_store(&config, args.store.data.as_deref()) {
        bail!(
            "no store at {}: the directory does not exist (check --data, or storage.path in the config)",
            dir.display()
        );
    }
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
                    "{}\t{}\t{}",
                    n.namespace,
                    count(n.keys, "key", "keys"),
                    human_size(n.bytes)
                )?;
                keys += n.keys;
                bytes += n.bytes;
            }
            writeln!(
                stdout,
                "total\t{}\t{}\t(store size {})",
                count(keys, "key", "keys"),
                human_size(bytes),
                human_size(total)
            )?;
        }
        StorageCommand::Export => {
            let exported = admin::export(backend, std::io::BufWriter::new(stdout)).await?;
            eprintln!("exported {}", count(exported, "entry", "entries"));
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
