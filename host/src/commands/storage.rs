//! `warden storage`: read and change the store as the operator.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Subcommand;

use warden::identity::PluginId;
use warden::storage::admin::{self, Scope};
use warden::storage::{Backend, human_size};

use super::{StoreArgs, count, missing_store};

#[derive(Debug, clap::Args)]
pub struct StorageArgs {
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

pub async fn storage(args: StorageArgs) -> anyhow::Result<()> {
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
    let backend = super::open_store(&config, args.store.data.as_deref()).await?;
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
