//! The operator's configuration file (TOML).
//!
//! ```toml
//! [storage]
//! backend = "sled"          # "sled" (default), "redis" or "memory"
//! path = "warden-data"      # sled's directory; relative to this file
//! sync = "always"           # sled: "always" (default) or "periodic"
//! sync_interval_ms = 500    # sled: background flush interval
//! url = "redis://127.0.0.1:6379/0"   # redis: the server (required)
//! prefix = "warden"         # redis: prefix of every key
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
use crate::storage::{Grant, SharedAccess, SledOptions, StorageLimits, SyncPolicy};

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
    /// Limits that differ for some plugins, by plugin identity.
    #[serde(default)]
    pub plugin_limits: BTreeMap<String, LimitOverrides>,
    /// Shared keys the host writes at start, by key: any TOML value, stored
    /// as JSON (so the SDK's typed `get` reads it), replacing what was there.
    #[serde(default)]
    pub shared_data: BTreeMap<String, toml::Value>,
}

/// Which backend stores plugin data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// The embedded, persistent default.
    #[default]
    Sled,
    /// A Redis server, which several hosts can share.
    Redis,
    /// In memory; lost at exit.
    Memory,
}

/// The `[storage]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StorageConfig {
    /// The backend.
    pub backend: BackendKind,
    /// sled's data directory. `--data` overrides it; the default is
    /// `warden-data` in the working directory.
    pub path: Option<PathBuf>,
    /// sled: when writes reach the disk. `always` (the default) flushes
    /// before a write is acknowledged; `periodic` every `sync_interval_ms`.
    pub sync: SyncPolicy,
    /// sled: how often it flushes in the background, in milliseconds.
    pub sync_interval_ms: u64,
    /// redis: the server's URL, `redis://[user[:password]@]host[:port][/db]`
    /// or `rediss://...` for TLS.
    pub url: Option<String>,
    /// redis: the prefix of every key Warden writes, so that several
    /// deployments can share a server.
    pub prefix: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let sled = SledOptions::default();
        Self {
            backend: BackendKind::default(),
            path: None,
            sync: sled.sync,
            sync_interval_ms: sled.sync_interval_ms,
            url: None,
            prefix: "warden".into(),
        }
    }
}

impl StorageConfig {
    /// The options for opening sled.
    pub fn sled_options(&self) -> SledOptions {
        SledOptions {
            sync: self.sync,
            sync_interval_ms: self.sync_interval_ms,
        }
    }
}

/// One `[grants."ID"]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GrantConfig {
    /// Access to the whole shared keyspace.
    #[serde(default)]
    pub shared: Grant,
    /// Prefixes of shared keys the plugin may also read.
    #[serde(default)]
    pub read: Vec<String>,
    /// Prefixes of shared keys the plugin may also read and write.
    #[serde(default)]
    pub write: Vec<String>,
}

/// Declares [`Limits`] and [`LimitOverrides`] with the same fields, so a
/// new limit cannot be added to one and forgotten in the other.
macro_rules! limits {
    ($($(#[doc = $doc:literal])* $field:ident: $ty:ty = $default:expr,)*) => {
        /// The `[limits]` table, and the limits in force for one plugin. The
        /// reason for each bound is next to it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        #[non_exhaustive]
        pub struct Limits {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        impl Default for Limits {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        /// A `[plugin_limits."ID"]` table: the limits that differ for one
        /// plugin from `[limits]`.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[non_exhaustive]
        pub struct LimitOverrides {
            $($(#[doc = $doc])* pub $field: Option<$ty>,)*
        }

        impl Limits {
            /// These limits with `overrides` applied.
            pub fn with(mut self, overrides: &LimitOverrides) -> Self {
                $(if let Some(v) = overrides.$field { self.$field = v; })*
                self
            }

            /// Each limit by name, as a number, for validation.
            fn named(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field as u64),)*]
            }
        }
    };
}

limits! {
    /// Longest storage key in bytes (default 512): keys are copied on every
    /// call, so they stay small.
    max_key_bytes: usize = StorageLimits::default().max_key_bytes,
    /// Largest stored value in bytes (default 1 MiB): values are held whole
    /// in memory on every read.
    max_value_bytes: usize = StorageLimits::default().max_value_bytes,
    /// Most bytes (keys and values) one plugin may keep in its namespace
    /// (default 64 MiB), so one plugin cannot fill the store; a write over
    /// it fails with `quota-exceeded`.
    max_stored_bytes: u64 = StorageLimits::default().max_stored_bytes,
    /// Largest linear memory of one plugin instance in bytes (default
    /// 64 MiB), so one plugin cannot exhaust the host's memory.
    max_memory_bytes: usize = 64 * 1024 * 1024,
    /// Longest a handler call may run, in milliseconds (default 5000), so a
    /// plugin stuck in a loop cannot stall its messages forever.
    handler_timeout_ms: u64 = 5_000,
    /// Most calls to one plugin that may wait or run at once (default 64);
    /// more fail at once, so a slow plugin cannot pile up the host's memory.
    max_calls_in_flight: usize = 64,
}

impl Limits {
    /// The storage part of the limits.
    pub fn storage(&self) -> StorageLimits {
        StorageLimits {
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            max_stored_bytes: self.max_stored_bytes,
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
        if config.storage.backend == BackendKind::Redis && config.storage.url.is_none() {
            return Err(invalid(
                "[storage] backend = \"redis\" needs url = \"redis://host:port/db\"".into(),
            ));
        }
        if config.storage.sync_interval_ms == 0 {
            return Err(invalid(
                "[storage] sync_interval_ms must be greater than 0".into(),
            ));
        }
        for (id, grant) in &config.grants {
            PluginId::new(id).map_err(|e| invalid(format!("[grants.{id:?}]: {e}")))?;
            for (list, prefixes) in [("read", &grant.read), ("write", &grant.write)] {
                for prefix in prefixes {
                    crate::identity::validate_key(prefix, config.limits.max_key_bytes).map_err(
                        |e| invalid(format!("[grants.{id:?}] {list} prefix {prefix:?}: {e}")),
                    )?;
                }
            }
        }
        for key in config.shared_data.keys() {
            crate::identity::validate_key(key, config.limits.max_key_bytes)
                .map_err(|e| invalid(format!("[shared_data] key {key:?}: {e}")))?;
        }
        for id in config.plugin_limits.keys() {
            PluginId::new(id).map_err(|e| invalid(format!("[plugin_limits.{id:?}]: {e}")))?;
        }
        let every = std::iter::once(("[limits]".to_owned(), config.limits)).chain(
            config
                .plugin_limits
                .iter()
                .map(|(id, o)| (format!("[plugin_limits.{id:?}]"), config.limits.with(o))),
        );
        for (table, limits) in every {
            if let Some((name, _)) = limits.named().into_iter().find(|(_, v)| *v == 0) {
                return Err(invalid(format!("{table} {name} must be greater than 0")));
            }
        }
        Ok(config)
    }

    /// The limits in force for plugin `id`.
    pub fn limits_for(&self, id: &PluginId) -> Limits {
        match self.plugin_limits.get(id.as_str()) {
            Some(overrides) => self.limits.with(overrides),
            None => self.limits,
        }
    }

    /// The shared-keyspace grant of plugin `id`.
    pub fn grant(&self, id: &PluginId) -> SharedAccess {
        self.grants
            .get(id.as_str())
            .map(|g| SharedAccess {
                shared: g.shared,
                read: g.read.clone(),
                write: g.write.clone(),
            })
            .unwrap_or_default()
    }

    /// The `[shared_data]` entries as (key, JSON bytes).
    pub fn shared_data(&self) -> Vec<(String, Vec<u8>)> {
        self.shared_data
            .iter()
            .map(|(key, value)| {
                let json = serde_json::to_vec(value).expect("TOML values are valid JSON");
                (key.clone(), json)
            })
            .collect()
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
        assert_eq!(c.storage.sync, SyncPolicy::Always);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(
            c.grant(&PluginId::new("a.B").unwrap()),
            SharedAccess::default()
        );
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
        assert_eq!(
            c.grant(&PluginId::new("a.Reader").unwrap()).shared,
            Grant::Read
        );
        assert_eq!(
            c.grant(&PluginId::new("a.Writer").unwrap()).shared,
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
    fn plugin_limits_override_the_defaults_for_one_plugin() {
        let c = parse(
            "[limits]\nhandler_timeout_ms = 100\n[plugin_limits.\"a.Slow\"]\nhandler_timeout_ms = 900\n",
        )
        .unwrap();
        let slow = c.limits_for(&PluginId::new("a.Slow").unwrap());
        let other = c.limits_for(&PluginId::new("a.Other").unwrap());
        assert_eq!(
            (slow.handler_timeout_ms, other.handler_timeout_ms),
            (900, 100)
        );
        assert_eq!(slow.max_memory_bytes, Limits::default().max_memory_bytes);
    }

    #[test]
    fn scoped_grants_and_shared_data() {
        let c = parse(
            r#"
            [grants."a.Karma"]
            read = ["manual", "rbac:"]
            write = ["karma:"]
            [shared_data]
            manual = "Say help."
            limits = { max = 3 }
            "#,
        )
        .unwrap();
        let g = c.grant(&PluginId::new("a.Karma").unwrap());
        assert_eq!(g.shared, Grant::None);
        assert!(g.allows("manual", false) && g.allows("rbac:admins", false));
        assert!(!g.allows("manual", true) && !g.allows("other", false));
        assert!(g.allows("karma:rust", true) && g.allows("karma:rust", false));
        assert_eq!(
            c.shared_data(),
            [
                ("limits".into(), br#"{"max":3}"#.to_vec()),
                ("manual".into(), br#""Say help.""#.to_vec())
            ]
        );
        let e = parse("[grants.\"a.B\"]\nread = [\"\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("read prefix"), "{e}");
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
