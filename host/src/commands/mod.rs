//! The commands of the `warden` binary, one module each, and the options
//! they share.

pub mod new;
pub mod plugins;
pub mod run;
pub mod scaffold;
pub mod storage;

use std::path::{Path, PathBuf};

use warden::Config;
use warden::plugins::shell_word;
use warden::storage::StorageConfig;

/// Where the store is: the same options for every command.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Configuration file (TOML): storage, grants, limits, http, plugins.
    #[arg(long, env = "WARDEN_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory of the sled store [default: the config's
    /// storage.path, else ./warden-data].
    #[arg(long, env = "WARDEN_DATA", value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
}

impl StoreArgs {
    /// The options as given, shell-quoted, for commands printed as hints.
    pub fn options(&self) -> String {
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
    pub fn named(&self) -> bool {
        self.config.is_some() || self.data.is_some()
    }

    /// The configuration file, if any, with the environment's
    /// `WARDEN_<TABLE>_<FIELD>` overrides applied.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        Ok(Config::load_with_env(
            self.config.as_deref(),
            std::env::vars_os(),
        )?)
    }
}

/// `count` and the noun, singular for one: `1 key`, `2 keys`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The sled data directory the options name, when the store is sled.
pub fn sled_dir(config: &Config, data: Option<&Path>) -> Option<PathBuf> {
    match &config.storage {
        StorageConfig::Sled(sled) => Some(sled.dir(data)),
        _ => None,
    }
}

/// The sled data directory the options name, if it does not exist.
pub fn missing_store(config: &Config, data: Option<&Path>) -> Option<PathBuf> {
    sled_dir(config, data).filter(|dir| !dir.exists())
}
