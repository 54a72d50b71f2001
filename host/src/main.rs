//! The `warden` command line: argument parsing, logging, and the commands
//! in [`commands`].

mod commands;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use commands::{new::NewArgs, plugins::PluginsArgs, run::RunArgs, storage::StorageArgs};

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

/// Runs the command line with the process's arguments. A failure is
/// printed to stderr as one line, `error: ` and the message.
fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| {
            let result = match cli.command {
                Command::Run(args) => runtime.block_on(commands::run::run(args)),
                Command::Storage(args) => runtime.block_on(commands::storage::storage(args)),
                Command::Plugins(args) => runtime.block_on(commands::plugins::plugins(args)),
                Command::New(args) => commands::new::new_plugin(&args),
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
