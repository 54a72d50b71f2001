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

/// Opens the store the config names (`data` overriding sled's path),
/// drawing a bar on a terminal while a Redis database of the first layout
/// moves to the indexed one.
pub async fn open_store(
    config: &Config,
    data: Option<&Path>,
) -> Result<std::sync::Arc<dyn warden::storage::Backend>, warden::storage::BackendError> {
    use std::io::IsTerminal as _;
    use warden::storage::Moving;
    let bar = std::sync::Mutex::new(None::<indicatif::ProgressBar>);
    let report = move |moving: Moving| {
        // The bar is only drawn: whatever a panic left, it can go on.
        let mut bar = bar.lock().unwrap_or_else(|e| e.into_inner());
        match moving {
            Moving::Started { keys } if std::io::stderr().is_terminal() => {
                let new = indicatif::ProgressBar::new(keys);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "moving the Redis store to the indexed layout {bar:30} {pos} keys",
                ) {
                    new.set_style(style);
                }
                *bar = Some(new);
            }
            Moving::Moved { moved } => {
                if let Some(bar) = bar.as_ref() {
                    bar.set_position(moved);
                }
            }
            Moving::Done { .. } => {
                if let Some(bar) = bar.take() {
                    bar.finish_and_clear();
                }
            }
            _ => {}
        }
    };
    config.storage.open_reporting(data, &report).await
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

/// The default compilation cache directory, if the environment names one.
pub fn default_cache_dir() -> Option<PathBuf> {
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

/// The compilation cache the `plugins` commands read: the config's
/// `[plugins] cache_dir`, else `WARDEN_CACHE_DIR`, else the default; none
/// when `[plugins] cache` is false.
pub fn inspect_cache_dir(config: &warden::Config) -> Option<PathBuf> {
    if !config.plugins.cache {
        return None;
    }
    config
        .plugins
        .cache_dir
        .clone()
        .or_else(|| {
            std::env::var_os("WARDEN_CACHE_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(default_cache_dir)
}
