//! The `warden` command line: argument parsing and the commands it runs.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::{Config, Host};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

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
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Directory of plugin components (`*.wasm`).
    #[arg(long, env = "WARDEN_PLUGINS", value_name = "DIR")]
    plugins: PathBuf,
    /// Configuration file (TOML): storage, grants, limits.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory of the sled store [default: the config's
    /// storage.path, else ./warden-data].
    #[arg(long, env = "WARDEN_DATA", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Read messages from stdin, one a line, and print replies to stdout
    /// (the default when no other adapter is chosen).
    #[arg(long)]
    console: bool,
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
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if !args.plugins.is_dir() {
        bail!(
            "the plugins directory {} does not exist or is not a directory",
            args.plugins.display()
        );
    }
    let mut builder = Host::builder().config(config).plugins_dir(&args.plugins);
    if let Some(data) = &args.data {
        builder = builder.data_dir(data);
    }
    let host = builder.build().await?;
    let loaded = host.plugins().count();
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
