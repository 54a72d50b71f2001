//! The operator's configuration file (TOML).
//!
//! ```toml
//! [storage]
//! backend = "sled"          # "sled" (default) or "memory"
//! path = "warden-data"      # sled's directory; relative to this file
//!
//! [grants."example.notes.NotesPlugin"]
//! shared = "read-write"     # "none" (default) | "read" | "read-write"
//!
//! [limits]
//! max_key_bytes = 512
//! max_value_bytes = 1048576
//! max_memory_bytes = 67108864
//! handler_timeout_ms = 5000
//! ```
//!
//! Every table and field is optional; unknown fields are errors, so a typo
//! never passes silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::identity::PluginId;
use crate::storage::{Grant, StorageLimits};

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Where plugin data is kept.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Shared-keyspace grants by plugin identity.
    #[serde(default)]
    pub grants: BTreeMap<String, GrantConfig>,
    /// Bounds on what each plugin may use.
    #[serde(default)]
    pub limits: Limits,
}

/// Which backend stores plugin data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The embedded, persistent default.
    #[default]
    Sled,
    /// In memory; lost at exit.
    Memory,
}

/// The `[storage]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StorageConfig {
    /// The backend.
    #[serde(default)]
    pub backend: BackendKind,
    /// sled's data directory. `--data` overrides it; the default is
    /// `warden-data` in the working directory.
    pub path: Option<PathBuf>,
}

/// One `[grants."ID"]` table.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GrantConfig {
    /// Access to the shared keyspace.
    #[serde(default)]
    pub shared: Grant,
}

/// The `[limits]` table. The reason for each bound is next to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Longest storage key in bytes (default 512): keys are copied on every
    /// call, so they stay small.
    pub max_key_bytes: usize,
    /// Largest stored value in bytes (default 1 MiB): values are held whole
    /// in memory on every read.
    pub max_value_bytes: usize,
    /// Largest linear memory of one plugin instance in bytes (default
    /// 64 MiB), so one plugin cannot exhaust the host's memory.
    pub max_memory_bytes: usize,
    /// Longest a handler call may run, in milliseconds (default 5000), so a
    /// plugin stuck in a loop cannot stall its messages forever.
    pub handler_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let storage = StorageLimits::default();
        Self {
            max_key_bytes: storage.max_key_bytes,
            max_value_bytes: storage.max_value_bytes,
            max_memory_bytes: 64 * 1024 * 1024,
            handler_timeout_ms: 5_000,
        }
    }
}

impl Limits {
    /// The storage part of the limits.
    pub fn storage(&self) -> StorageLimits {
        StorageLimits {
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
        }
    }

    /// The handler timeout as a duration.
    pub fn handler_timeout(&self) -> Duration {
        Duration::from_millis(self.handler_timeout_ms)
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has unknown or mistyped fields.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with the line and column.
        message: String,
    },
    /// A value is out of range or a grant names an invalid identity.
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
}

impl Config {
    /// Reads and validates the file at `path`. A relative `storage.path` is
    /// taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        if let Some(p) = &config.storage.path
            && p.is_relative()
        {
            let base = path.parent().unwrap_or(Path::new("."));
            config.storage.path = Some(base.join(p));
        }
        Ok(config)
    }

    /// Parses and validates `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        };
        for id in config.grants.keys() {
            PluginId::new(id).map_err(|e| invalid(format!("[grants.{id:?}]: {e}")))?;
        }
        let l = &config.limits;
        for (name, value) in [
            ("max_key_bytes", l.max_key_bytes as u64),
            ("max_value_bytes", l.max_value_bytes as u64),
            ("max_memory_bytes", l.max_memory_bytes as u64),
            ("handler_timeout_ms", l.handler_timeout_ms),
        ] {
            if value == 0 {
                return Err(invalid(format!("[limits] {name} must be greater than 0")));
            }
        }
        Ok(config)
    }

    /// The shared-keyspace grant of plugin `id`.
    pub fn grant(&self, id: &PluginId) -> Grant {
        self.grants
            .get(id.as_str())
            .map(|g| g.shared)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("warden.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.storage.backend, BackendKind::Sled);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.grant(&PluginId::new("a.B").unwrap()), Grant::None);
    }

    #[test]
    fn reads_grants_and_limits() {
        let c = parse(
            r#"
            [storage]
            backend = "memory"
            [grants."a.Reader"]
            shared = "read"
            [grants."a.Writer"]
            shared = "read-write"
            [limits]
            max_value_bytes = 10
            "#,
        )
        .unwrap();
        assert_eq!(c.storage.backend, BackendKind::Memory);
        assert_eq!(c.grant(&PluginId::new("a.Reader").unwrap()), Grant::Read);
        assert_eq!(
            c.grant(&PluginId::new("a.Writer").unwrap()),
            Grant::ReadWrite
        );
        assert_eq!(c.limits.max_value_bytes, 10);
        assert_eq!(c.limits.max_key_bytes, 512);
    }

    #[test]
    fn errors_name_the_file_and_the_fault() {
        let e = parse("[grants.\"a.B\"]\nshared = \"write\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("warden.toml") && e.contains("write"), "{e}");
        let e = parse("[storage]\nbakend = \"sled\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bakend"), "{e}");
        let e = parse("[grants.\"bad id\"]\nshared = \"read\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad id"), "{e}");
        let e = parse("[limits]\nmax_key_bytes = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_key_bytes"), "{e}");
    }

    #[test]
    fn relative_storage_path_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("warden.toml");
        std::fs::write(&file, "[storage]\npath = \"data\"").unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.storage.path.unwrap(), dir.path().join("data"));
        let e = Config::load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }
}
