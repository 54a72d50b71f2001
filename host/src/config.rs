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
//! [settings."example.weather.WeatherPlugin"]
//! city = "Utrecht"                          # a plain value
//! api_key = { env = "WEATHER_API_KEY" }     # read from the host's environment at start
//!
//! [limits]
//! max_key_bytes = 512
//! max_value_bytes = 1048576
//! max_read_bytes = 8388608   # most bytes one storage call returns
//! max_memory_bytes = 67108864
//! handler_timeout_ms = 5000
//!
//! [http]
//! listen = "127.0.0.1:8080" # serve HTTP here (not served by default)
//! max_body_bytes = 65536    # largest request body
//!
//! [routing]
//! max_message_bytes = 4096          # longest message text matched
//! max_plugin_route_bytes = 1048576  # compiled size of one plugin's routes
//! max_host_route_bytes = 67108864   # compiled size of every plugin's routes
//!
//! [schedules]
//! channel = "general"           # where scheduled handlers' messages go by default
//!
//! [slack]                       # each field also WARDEN_SLACK_<FIELD>
//! bot_token = "xoxb-..."        # the bot's token, for the Web API
//! signing_secret = "..."        # turns on POST /slack/events, verified with it
//! app_token = "xapp-..."        # turns on Socket Mode (no public address needed)
//! api_url = "https://slack.com/api"
//! max_events_in_flight = 256    # most events handled at once
//!
//! [plugins]
//! watch = true                  # reload the plugins directory when it changes
//! cache = true                  # keep compiled plugins on disk
//! cache_dir = "warden-cache"    # where; relative to this file
//! cache_max_bytes = 536870912   # most bytes the cache's entries and packs take together
//! baseline = true               # a large plugin serves on fast-compiled code until optimized
//! reuse_functions = true        # the cache keeps compiled functions for plugins sharing code
//! ```
//!
//! Every table and field is optional; unknown fields are errors, so a typo
//! never passes silently. `[storage]` is parsed into the
//! [`StorageConfig`] of its `backend`: that backend's fields are read, the
//! other backends' ignored, anything else refused.
//!
//! # Environment overrides
//!
//! Every field of the `[storage]`, `[limits]`, `[http]`, `[routing]`,
//! `[plugins]` and `[schedules]` tables
//! can be set by an environment variable named `WARDEN_<TABLE>_<FIELD>` in
//! upper case, for example `WARDEN_STORAGE_BACKEND=memory` or
//! `WARDEN_LIMITS_HANDLER_TIMEOUT_MS=2000`. A variable overrides the file;
//! command-line flags override both. An empty variable is ignored, and an
//! unknown field or an invalid value is an error naming the variable. The
//! `[grants."ID"]`, `[plugin_limits."ID"]`, `[settings."ID"]` and `[shared_data]`
//! tables are keyed by plugin identity or by key, and are set in the file
//! only.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::identity::PluginId;
pub use crate::storage::{BackendKind, StorageConfig};
use crate::storage::{SharedAccess, StorageLimits};

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
    pub grants: BTreeMap<PluginId, SharedAccess>,
    /// Bounds on what each plugin may use.
    #[serde(default)]
    pub limits: Limits,
    /// Limits that differ for some plugins, by plugin identity.
    #[serde(default)]
    pub plugin_limits: BTreeMap<PluginId, LimitOverrides>,
    /// Each plugin's settings, by plugin identity: what it reads through
    /// `wasi:config/store`, its own table and no other. A plugin without a
    /// table has no settings.
    #[serde(default)]
    pub settings: BTreeMap<PluginId, BTreeMap<String, SettingValue>>,
    /// Shared keys the host writes at start, by key: any TOML value, stored
    /// as JSON (so the SDK's typed `get` reads it), replacing what was there.
    #[serde(default)]
    pub shared_data: BTreeMap<String, toml::Value>,
    /// The HTTP adapter.
    #[serde(default)]
    pub http: HttpConfig,
    /// Bounds on matching messages to plugins' routes.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Loading plugins: hot reload and the compilation cache.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Plugins' schedules.
    #[serde(default)]
    pub schedules: SchedulesConfig,
    /// The Slack adapter.
    #[serde(default)]
    pub slack: SlackConfig,
}

/// The largest `[slack] max_events_in_flight`.
pub const MAX_SLACK_EVENTS_IN_FLIGHT: usize = 65_536;

/// The `[slack]` table: the Slack app Warden answers as. With
/// `signing_secret` and `bot_token` set, the HTTP listener serves Slack's
/// Events API at `POST /slack/events`; with `app_token` and `bot_token`
/// set, events come over Socket Mode. Each field can come from the
/// environment (`WARDEN_SLACK_BOT_TOKEN`, ...); none is ever logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SlackConfig {
    /// The bot's token (`xoxb-...`), for the Web API.
    pub bot_token: Option<String>,
    /// The app's signing secret, which every event request is verified
    /// with.
    pub signing_secret: Option<String>,
    /// The app-level token (`xapp-...`), for Socket Mode.
    pub app_token: Option<String>,
    /// The Web API's base URL (default `https://slack.com/api`).
    pub api_url: String,
    /// Most events handled at once (256); one beyond is left for Slack
    /// to deliver again.
    pub max_events_in_flight: usize,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            bot_token: None,
            signing_secret: None,
            app_token: None,
            api_url: "https://slack.com/api".into(),
            max_events_in_flight: 256,
        }
    }
}

impl std::fmt::Debug for SlackConfig {
    /// Whether each secret is set, never its value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "set" } else { "unset" };
        f.debug_struct("SlackConfig")
            .field("bot_token", &set(&self.bot_token))
            .field("signing_secret", &set(&self.signing_secret))
            .field("app_token", &set(&self.app_token))
            .field("api_url", &self.api_url)
            .field("max_events_in_flight", &self.max_events_in_flight)
            .finish()
    }
}

impl SlackConfig {
    /// Whether the Events API is to be served.
    pub fn events_api(&self) -> bool {
        self.signing_secret.is_some()
    }

    /// Whether events are to be received over Socket Mode.
    pub fn socket_mode(&self) -> bool {
        self.app_token.is_some()
    }
}

/// The `[schedules]` table: where scheduled handlers' messages go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SchedulesConfig {
    /// The channel a schedule's messages go to when the schedule names
    /// none; unset, such messages are dropped with a warning.
    pub channel: Option<String>,
}

/// One value of a `[settings."ID"]` table: the text itself, or `{ env =
/// "NAME" }`, the value of the host's environment variable `NAME` when the
/// plugin loads (so that a secret stays out of the file). Its `Debug` shows
/// no value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a string, or a table { env = \"NAME\" }")]
pub enum SettingValue {
    /// The value.
    Text(String),
    /// The value of an environment variable.
    Env {
        /// The variable's name.
        env: String,
    },
}

impl std::fmt::Debug for SettingValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingValue::Text(_) => f.write_str("Text(..)"),
            SettingValue::Env { env } => f.debug_struct("Env").field("env", env).finish(),
        }
    }
}

/// The `[plugins]` table: how `warden run` loads plugins.
///
/// The command-line flags `--no-watch`, `--cache-dir` and `--no-cache`
/// override `watch`, `cache_dir` and `cache`. A program that embeds Warden
/// passes the first two to [`HostBuilder`](crate::HostBuilder) itself;
/// `cache_max_bytes` is read by the builder from the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PluginsConfig {
    /// Watch the plugins directory and reload it when it changes (default
    /// true).
    pub watch: bool,
    /// Keep compiled plugins on disk, so that a restart with unchanged
    /// plugins skips compilation (default true).
    pub cache: bool,
    /// The compilation cache's directory; the default is
    /// `$XDG_CACHE_HOME/warden`, else `~/.cache/warden`.
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the compilation cache's entries take together (default
    /// 512 MiB); past it the least recently used entries are removed.
    ///
    /// Every changed plugin adds an entry and none is ever replaced, so
    /// without a cap the directory only grows. A compiled plugin is a few
    /// times the size of its component: well under 1 MiB for a small Rust
    /// plugin, but tens of MiB for a Python or JavaScript one (whose
    /// component holds an interpreter, about 20 MB). 512 MiB keeps a host
    /// of a dozen such plugins and their previous versions, so that a
    /// rollback hits too, while staying small beside the disk of any
    /// machine that compiles them.
    pub cache_max_bytes: u64,
    /// Compile a large plugin (1 MiB or more, such as a Python or
    /// JavaScript one) whose optimized code is not in the cache with the
    /// baseline compiler first, so that it answers within seconds, and
    /// optimize it in the background (default true). Off, every plugin is
    /// optimized before it serves.
    pub baseline: bool,
    /// Keep the functions Cranelift compiled in the compilation cache, so
    /// that a plugin sharing code with one compiled before (a changed
    /// plugin; any Python plugin, which carries the same interpreter as
    /// the others) compiles only what is new (default true). Off, every
    /// plugin compiles from nothing. Needs the cache.
    pub reuse_functions: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            watch: true,
            cache: true,
            cache_dir: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            baseline: true,
            reuse_functions: true,
        }
    }
}

/// The `[http]` table.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Where the HTTP adapter listens, `HOST:PORT` (port 0 picks a free
    /// port). HTTP is served only when this or `--listen` is set.
    pub listen: Option<String>,
    /// Largest request body accepted, in bytes (default 64 KiB): a body is
    /// held whole in memory while it is parsed, so its size is bounded.
    pub max_body_bytes: usize,
    /// A file of bearer tokens, one a line: the token, or its SHA-256 as
    /// `sha256:HEX`, then optionally its scopes (`messages`, `admin`, or
    /// both separated by a comma; `messages` when none is given). Relative
    /// to the config file.
    pub tokens_file: Option<PathBuf>,
    /// One more bearer token, with both scopes; meant to come from the
    /// environment (`WARDEN_HTTP_TOKEN`). Never logged.
    pub token: Option<String>,
    /// How long a client may take to send a request's headers, in
    /// milliseconds (default 10 000); a slower one is cut off.
    pub header_timeout_ms: u64,
    /// How long a client may take to send a request's body, in milliseconds
    /// (default 30 000); a slower one gets `408`.
    pub body_timeout_ms: u64,
    /// Most connections open at once (default 1024); one more is answered
    /// `503` with `Retry-After` and closed.
    pub max_connections: usize,
    /// Most requests being answered at once (default 256); more get `503`
    /// with `Retry-After`.
    pub max_requests_in_flight: usize,
    /// Most requests a second each bearer token may make (a burst of as
    /// many), `429` with `Retry-After` beyond; none by default.
    pub rate_limit_per_second: Option<u32>,
    /// A PEM file of the certificate chain to serve HTTPS with (with
    /// `tls_key`); relative to the config file.
    pub tls_cert: Option<PathBuf>,
    /// The PEM file of its private key.
    pub tls_key: Option<PathBuf>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("tokens_file", &self.tokens_file)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("header_timeout_ms", &self.header_timeout_ms)
            .field("body_timeout_ms", &self.body_timeout_ms)
            .field("max_connections", &self.max_connections)
            .field("max_requests_in_flight", &self.max_requests_in_flight)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

/// The default of [`HttpConfig::max_body_bytes`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            tokens_file: None,
            token: None,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections: 1024,
            max_requests_in_flight: 256,
            rate_limit_per_second: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The `[routing]` table: bounds on the work and memory of matching one
/// message against every route of every plugin.
///
/// Matching a message costs, at worst, time proportional to the length of
/// its text times the compiled size of the routes it is matched against
/// (the regex engine's PikeVM, which patterns that defeat the faster
/// engines fall back to, steps through every state of each route's
/// automaton for each byte of text). Plugins choose their patterns and
/// senders choose their text, so both factors are bounded. With the
/// defaults, the slowest host they allow (every plugin's routes as costly
/// as possible) took about 4.5 s of one core to match a 4 KiB message on a
/// 2-core AMD EPYC (BENCHMARKS.md); such a message is matched on the
/// blocking pool, one a core at a time, never on the threads that serve
/// other messages. Ordinary routes cost 5 to 90 KiB each (a Unicode `\w`
/// class is the largest part), and take microseconds, as the faster
/// engines match them; a plugin of ten takes about 340 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RoutingConfig {
    /// Longest message text the host matches against routes, in bytes
    /// (default 4 KiB); a longer message is refused before matching.
    pub max_message_bytes: usize,
    /// Most compiled size of one plugin's routes together, in bytes
    /// (default 1 MiB); a plugin over it is refused at load. See
    /// [`CompiledRoute::cost`](crate::router::CompiledRoute::cost).
    pub max_plugin_route_bytes: usize,
    /// Most compiled size of the routes of every loaded plugin together, in
    /// bytes (default 64 MiB, room for about 200 plugins of 10 ordinary
    /// routes); a plugin that would take the host over it is
    /// refused at load.
    pub max_host_route_bytes: usize,
}

/// The default of [`PluginsConfig::cache_max_bytes`]: 512 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// The default of [`RoutingConfig::max_message_bytes`].
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// The default of [`RoutingConfig::max_plugin_route_bytes`].
pub const DEFAULT_MAX_PLUGIN_ROUTE_BYTES: usize = 1024 * 1024;
/// The default of [`RoutingConfig::max_host_route_bytes`].
pub const DEFAULT_MAX_HOST_ROUTE_BYTES: usize = 64 * 1024 * 1024;

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_plugin_route_bytes: DEFAULT_MAX_PLUGIN_ROUTE_BYTES,
            max_host_route_bytes: DEFAULT_MAX_HOST_ROUTE_BYTES,
        }
    }
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
    /// Most bytes one storage call may return to a plugin (default 8 MiB):
    /// the value of a `get`, the values of a `get-many` (a key listed twice
    /// counts twice) and the keys of a `list-keys` page are copied into the
    /// plugin's memory, so one call cannot fill it (`max_memory_bytes`); a
    /// call over it fails with `too-large`. At least `max_value_bytes`, so
    /// every value that can be stored can be read.
    max_read_bytes: u64 = StorageLimits::default().max_read_bytes,
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
    /// Most instances of one plugin serving calls at once (default 1).
    /// Each instance has its own memory, so a plugin that keeps state in
    /// memory between calls (rather than in storage) needs 1; a busy plugin
    /// that keeps its state in storage can serve several calls at once with
    /// more, each instance up to `max_memory_bytes`.
    max_instances: usize = 1,
}

impl Limits {
    /// The storage part of the limits.
    pub fn storage(&self) -> StorageLimits {
        StorageLimits {
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
            max_stored_bytes: self.max_stored_bytes,
            max_read_bytes: self.max_read_bytes,
        }
    }

    /// Why a value these limits let a plugin store could not be read back
    /// by it, if one could not.
    fn unreadable_values(&self) -> Option<String> {
        (self.max_read_bytes < self.max_value_bytes as u64).then(|| {
            format!(
                "max_read_bytes ({}) must be at least max_value_bytes ({}), or a stored value \
                 could not be read",
                self.max_read_bytes, self.max_value_bytes
            )
        })
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
    /// An environment override names no setting, or sets an invalid value.
    #[error("invalid environment variable {var}: {message}")]
    Env {
        /// The variable (or variables, when several share the fault).
        var: String,
        /// What is wrong.
        message: String,
    },
}

/// The tables whose fields environment variables override, as
/// `WARDEN_<TABLE>_<FIELD>`.
pub const ENV_TABLES: [&str; 7] = [
    "storage",
    "limits",
    "http",
    "routing",
    "plugins",
    "schedules",
    "slack",
];

/// One environment override.
#[derive(Debug)]
struct Override {
    var: String,
    table: &'static str,
    field: String,
    value: String,
}

/// A broken rule, and the settings (table, field) that take part in it, so
/// that the fault can be blamed on an environment variable where one set
/// them.
#[derive(Debug)]
struct Fault {
    fields: Vec<(&'static str, String)>,
    message: String,
}

impl Fault {
    fn new(fields: &[(&'static str, &str)], message: impl Into<String>) -> Self {
        Self {
            fields: fields.iter().map(|(t, f)| (*t, (*f).to_owned())).collect(),
            message: message.into(),
        }
    }
}

/// The overrides among `vars`, sorted by variable name.
fn overrides(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<Override>, ConfigError> {
    let mut found = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        let Some((table, field)) = ENV_TABLES.iter().find_map(|table| {
            let prefix = format!("WARDEN_{}_", table.to_ascii_uppercase());
            name.strip_prefix(&prefix).map(|field| (*table, field))
        }) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Env {
            var: name.to_owned(),
            message: "the value is not valid UTF-8".into(),
        })?;
        if value.is_empty() {
            continue;
        }
        found.push(Override {
            var: name.to_owned(),
            table,
            field: field.to_ascii_lowercase(),
            value,
        });
    }
    found.sort_by(|a, b| a.var.cmp(&b.var));
    Ok(found)
}

/// Sets `[table] field = value` in `root`.
fn set_field(root: &mut toml::Table, table: &str, field: &str, value: toml::Value) {
    let entry = root
        .entry(table)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(fields) = entry {
        fields.insert(field.to_owned(), value);
    }
}

/// `raw` as a TOML value: an integer or a boolean where it reads as one,
/// else a string.
fn typed(raw: &str) -> toml::Value {
    if let Ok(n) = raw.parse::<i64>() {
        toml::Value::Integer(n)
    } else if let Ok(b) = raw.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(raw.to_owned())
    }
}

/// The fields of `[table]` a variable can set.
fn table_fields(table: &str) -> Vec<&'static str> {
    match table {
        "storage" => {
            let mut fields = vec!["backend"];
            for kind in [
                BackendKind::Sled,
                BackendKind::Redis,
                BackendKind::RedisCluster,
                BackendKind::Memory,
            ] {
                for field in kind.fields() {
                    if !fields.contains(field) {
                        fields.push(field);
                    }
                }
            }
            fields
        }
        "limits" => crate::fields::of::<Limits>().to_vec(),
        "http" => crate::fields::of::<HttpConfig>().to_vec(),
        "routing" => crate::fields::of::<RoutingConfig>().to_vec(),
        "plugins" => crate::fields::of::<PluginsConfig>().to_vec(),
        "schedules" => crate::fields::of::<SchedulesConfig>().to_vec(),
        "slack" => crate::fields::of::<SlackConfig>().to_vec(),
        _ => Vec::new(),
    }
}

/// The configuration of `table` with `overrides` applied, read once.
///
/// A variable's value is read as an integer or a boolean where it reads as
/// one, else as a string. Only when that fails are the variables tried a
/// variable at a time, those whose value could also be a string (a redis
/// key prefix of digits, say) as one too, and a variable that fits in
/// neither reading is named in the error.
fn with_overrides(table: &toml::Table, overrides: &[Override]) -> Result<Config, ConfigError> {
    // The first `n` overrides applied, each as a string where `strings`
    // says so.
    let apply = |n: usize, strings: &[bool]| {
        let mut table = table.clone();
        for (o, as_string) in overrides[..n].iter().zip(strings) {
            let value = if *as_string {
                toml::Value::String(o.value.clone())
            } else {
                typed(&o.value)
            };
            set_field(&mut table, o.table, &o.field, value);
        }
        table.try_into::<Config>()
    };
    let mut strings = vec![false; overrides.len()];
    if let Ok(config) = apply(overrides.len(), &strings) {
        return Ok(config);
    }
    // One variable at a time, in order, with those before it settled: its
    // typed reading, else its string reading.
    for (i, o) in overrides.iter().enumerate() {
        let error = match apply(i + 1, &strings) {
            Ok(_) => continue,
            Err(e) => e,
        };
        let ambiguous = |j: usize| !typed(&overrides[j].value).is_str();
        if ambiguous(i) {
            strings[i] = true;
            if apply(i + 1, &strings).is_ok() {
                continue;
            }
            strings[i] = false;
        }
        // A variable settled before may fit only as a string once this one
        // is in place (a prefix of digits, then the backend that reads it).
        let earlier = (0..i).filter(|&j| !strings[j] && ambiguous(j));
        let mut settled = false;
        for j in earlier.collect::<Vec<_>>() {
            strings[j] = true;
            if apply(i + 1, &strings).is_ok() {
                settled = true;
                break;
            }
            strings[j] = false;
        }
        if settled {
            continue;
        }
        return Err(ConfigError::Env {
            var: o.var.clone(),
            message: error.to_string().trim_end().to_owned(),
        });
    }
    apply(overrides.len(), &strings).map_err(|e| ConfigError::Env {
        var: overrides
            .iter()
            .map(|o| o.var.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        message: e.to_string().trim_end().to_owned(),
    })
}

impl Config {
    /// Reads and validates the file at `path`. A relative `storage.path` or
    /// `plugins.cache_dir` is taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::read(path).map(|(config, _)| config)
    }

    /// Reads the file at `path`, if given, then applies the environment
    /// overrides among `vars` (see the [module documentation](self)), and
    /// validates the result. Pass `std::env::vars_os()` for the process's
    /// environment. A relative `storage.path` or `plugins.cache_dir` from
    /// the file is taken relative to the file's directory; one from the
    /// environment, relative to the working directory.
    pub fn load_with_env(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, ConfigError> {
        let (config, table) = match path {
            Some(path) => Self::read(path)?,
            None => (Self::default(), toml::Table::new()),
        };
        let mut overrides = overrides(vars)?;
        if overrides.is_empty() {
            return Ok(config);
        }
        for o in &overrides {
            let fields = table_fields(o.table);
            if !fields.contains(&o.field.as_str()) {
                return Err(ConfigError::Env {
                    var: o.var.clone(),
                    message: format!(
                        "[{}] has no field {:?}; its fields are {}",
                        o.table,
                        o.field,
                        fields.join(", ")
                    ),
                });
            }
        }
        // A backend chosen by a variable is applied after the others, so
        // that the fields it needs are in place when they are tried.
        overrides.sort_by_key(|o| o.table == "storage" && o.field == "backend");
        let merged = with_overrides(&table, &overrides)?;
        merged.validate().map_err(|fault| {
            let blamed: Vec<&str> = overrides
                .iter()
                .filter(|o| {
                    fault
                        .fields
                        .iter()
                        .any(|(t, f)| *t == o.table && *f == o.field)
                })
                .map(|o| o.var.as_str())
                .collect();
            match (blamed.is_empty(), path) {
                (true, Some(path)) => ConfigError::Invalid {
                    path: path.to_owned(),
                    message: fault.message,
                },
                (true, None) => ConfigError::Env {
                    var: overrides
                        .iter()
                        .map(|o| o.var.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    message: fault.message,
                },
                (false, _) => ConfigError::Env {
                    var: blamed.join(", "),
                    message: fault.message,
                },
            }
        })?;
        Ok(merged)
    }

    /// Reads and validates the file at `path`, returning it parsed and as
    /// a table (for overrides).
    fn read(path: &Path) -> Result<(Self, toml::Table), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let sled_path = match &mut config.storage {
            StorageConfig::Sled(sled) => sled.path.as_mut(),
            _ => None,
        };
        for dir in [
            sled_path,
            config.plugins.cache_dir.as_mut(),
            config.http.tokens_file.as_mut(),
            config.http.tls_cert.as_mut(),
            config.http.tls_key.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        // The same in the table that environment overrides are applied to,
        // where a path set by a variable stays relative to the working
        // directory.
        for (t, field) in [
            ("storage", "path"),
            ("plugins", "cache_dir"),
            ("http", "tokens_file"),
            ("http", "tls_cert"),
            ("http", "tls_key"),
        ] {
            if let Some(toml::Value::Table(fields)) = table.get_mut(t)
                && let Some(toml::Value::String(dir)) = fields.get_mut(field)
                && Path::new(dir.as_str()).is_relative()
            {
                *dir = base.join(&*dir).to_string_lossy().into_owned();
            }
        }
        Ok((config, table))
    }

    /// Parses and validates `text`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate().map_err(|fault| ConfigError::Invalid {
            path: origin.to_owned(),
            message: fault.message,
        })?;
        Ok(config)
    }

    /// Checks the rules the types alone do not.
    fn validate(&self) -> Result<(), Fault> {
        if self.slack.signing_secret.is_some() && self.slack.bot_token.is_none() {
            return Err(Fault::new(
                &[("slack", "bot_token")],
                "[slack] signing_secret is set but bot_token is not: the Events API needs the \
                 bot's token to reply",
            ));
        }
        if !(1..=MAX_SLACK_EVENTS_IN_FLIGHT).contains(&self.slack.max_events_in_flight) {
            return Err(Fault::new(
                &[("slack", "max_events_in_flight")],
                format!(
                    "[slack] max_events_in_flight must be between 1 and \
                     {MAX_SLACK_EVENTS_IN_FLIGHT}"
                ),
            ));
        }
        if self.slack.app_token.is_some() && self.slack.bot_token.is_none() {
            return Err(Fault::new(
                &[("slack", "bot_token")],
                "[slack] app_token is set but bot_token is not: Socket Mode needs the bot's \
                 token to reply",
            ));
        }
        if let StorageConfig::Sled(sled) = &self.storage
            && sled.sync_interval_ms == 0
        {
            return Err(Fault::new(
                &[("storage", "sync_interval_ms")],
                "[storage] sync_interval_ms must be greater than 0",
            ));
        }
        for (id, grant) in &self.grants {
            for (list, prefixes) in [("read", &grant.read), ("write", &grant.write)] {
                for prefix in prefixes {
                    crate::identity::validate_key(prefix, self.limits.max_key_bytes).map_err(
                        |e| {
                            Fault::new(
                                &[("limits", "max_key_bytes")],
                                format!("[grants.\"{id}\"] {list} prefix {prefix:?}: {e}"),
                            )
                        },
                    )?;
                }
            }
        }
        for key in self.shared_data.keys() {
            crate::identity::validate_key(key, self.limits.max_key_bytes).map_err(|e| {
                Fault::new(
                    &[("limits", "max_key_bytes")],
                    format!("[shared_data] key {key:?}: {e}"),
                )
            })?;
        }
        if let Some((name, _)) = self.limits.named().into_iter().find(|(_, v)| *v == 0) {
            return Err(Fault::new(
                &[("limits", name)],
                format!("[limits] {name} must be greater than 0"),
            ));
        }
        if let Some(message) = self.limits.unreadable_values() {
            return Err(Fault::new(
                &[("limits", "max_read_bytes"), ("limits", "max_value_bytes")],
                format!("[limits] {message}"),
            ));
        }
        for (id, overrides) in &self.plugin_limits {
            let limits = self.limits.with(overrides);
            if let Some((name, _)) = limits.named().into_iter().find(|(_, v)| *v == 0) {
                return Err(Fault::new(
                    &[],
                    format!("[plugin_limits.\"{id}\"] {name} must be greater than 0"),
                ));
            }
            if let Some(message) = limits.unreadable_values() {
                return Err(Fault::new(
                    &[],
                    format!("[plugin_limits.\"{id}\"] {message}"),
                ));
            }
        }
        for (name, value) in [
            ("header_timeout_ms", self.http.header_timeout_ms),
            ("body_timeout_ms", self.http.body_timeout_ms),
            ("max_connections", self.http.max_connections as u64),
            (
                "max_requests_in_flight",
                self.http.max_requests_in_flight as u64,
            ),
            (
                "rate_limit_per_second",
                self.http.rate_limit_per_second.map_or(1, u64::from),
            ),
        ] {
            if value == 0 {
                return Err(Fault::new(
                    &[("http", name)],
                    format!("[http] {name} must be greater than 0"),
                ));
            }
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return Err(Fault::new(
                &[("http", "tls_cert"), ("http", "tls_key")],
                "[http] tls_cert and tls_key go together: set both, or neither",
            ));
        }
        if self.http.max_body_bytes == 0 {
            return Err(Fault::new(
                &[("http", "max_body_bytes")],
                "[http] max_body_bytes must be greater than 0",
            ));
        }
        let routing = &self.routing;
        for (name, value) in [
            ("max_message_bytes", routing.max_message_bytes),
            ("max_plugin_route_bytes", routing.max_plugin_route_bytes),
            ("max_host_route_bytes", routing.max_host_route_bytes),
        ] {
            if value == 0 {
                return Err(Fault::new(
                    &[("routing", name)],
                    format!("[routing] {name} must be greater than 0"),
                ));
            }
        }
        if routing.max_plugin_route_bytes > routing.max_host_route_bytes {
            return Err(Fault::new(
                &[
                    ("routing", "max_plugin_route_bytes"),
                    ("routing", "max_host_route_bytes"),
                ],
                format!(
                    "[routing] max_plugin_route_bytes ({}) must not exceed max_host_route_bytes ({})",
                    routing.max_plugin_route_bytes, routing.max_host_route_bytes
                ),
            ));
        }
        if self.plugins.cache_max_bytes == 0 {
            return Err(Fault::new(
                &[("plugins", "cache_max_bytes")],
                "[plugins] cache_max_bytes must be greater than 0",
            ));
        }
        if let Some(listen) = &self.http.listen {
            let port = listen.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                return Err(Fault::new(
                    &[("http", "listen")],
                    format!(
                        "[http] listen = {listen:?} is not HOST:PORT (e.g. \"127.0.0.1:8080\")"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The limits in force for plugin `id`.
    pub fn limits_for(&self, id: &PluginId) -> Limits {
        match self.plugin_limits.get(id) {
            Some(overrides) => self.limits.with(overrides),
            None => self.limits,
        }
    }

    /// The settings of plugin `id`, `[settings."ID"]` with each `{ env =
    /// "NAME" }` read from the environment now. A variable that is not set
    /// (or not Unicode) leaves its setting out, with a warning that names
    /// the plugin, the setting and the variable, never a value.
    pub fn settings_for(&self, id: &PluginId) -> crate::runtime::Settings {
        let Some(table) = self.settings.get(id) else {
            return crate::runtime::Settings::default();
        };
        let mut values = BTreeMap::new();
        for (name, value) in table {
            match value {
                SettingValue::Text(text) => {
                    values.insert(name.clone(), text.clone());
                }
                SettingValue::Env { env } => match std::env::var(env) {
                    Ok(text) => {
                        values.insert(name.clone(), text);
                    }
                    Err(e) => tracing::warn!(
                        plugin = %id,
                        setting = %name,
                        "[settings.\"{id}\"] {name}: environment variable {env} {}; the setting is left out",
                        match e {
                            std::env::VarError::NotPresent => "is not set",
                            std::env::VarError::NotUnicode(_) => "is not valid Unicode",
                        }
                    ),
                },
            }
        }
        crate::runtime::Settings::new(values)
    }

    /// The shared-keyspace grant of plugin `id`.
    pub fn grant(&self, id: &PluginId) -> SharedAccess {
        self.grants.get(id).cloned().unwrap_or_default()
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
    use crate::storage::{Grant, RedisClusterConfig, RedisConfig, SledConfig, SyncPolicy};

    /// The sled settings of `c`, which must be sled.
    fn sled(c: &Config) -> &SledConfig {
        match &c.storage {
            StorageConfig::Sled(sled) => sled,
            other => panic!("not sled: {other:?}"),
        }
    }

    /// The redis settings of `c`, which must be redis.
    fn redis(c: &Config) -> &RedisConfig {
        match &c.storage {
            StorageConfig::Redis(redis) => redis,
            other => panic!("not redis: {other:?}"),
        }
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("warden.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.storage.kind(), BackendKind::Sled);
        assert_eq!(sled(&c).sync, SyncPolicy::Always);
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
        assert_eq!(c.storage, StorageConfig::Memory);
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
    fn storage_takes_the_fields_of_its_backend() {
        let c = parse("[storage]\npath = \"d\"\nsync = \"periodic\"").unwrap();
        assert_eq!(sled(&c).sync, SyncPolicy::Periodic);
        let c = parse("[storage]\nbackend = \"redis\"\nurl = \"redis://h:1\"").unwrap();
        assert_eq!(redis(&c), &RedisConfig::new("redis://h:1"));
        assert_eq!(redis(&c).prefix, "warden");
        // Another backend's fields are ignored, so a variable can switch.
        let c =
            parse("[storage]\nbackend = \"memory\"\npath = \"d\"\nurl = \"redis://h\"").unwrap();
        assert_eq!(c.storage, StorageConfig::Memory);
        for (text, detail) in [
            ("[storage]\nbackend = \"memory\"\npth = \"d\"", "pth"),
            ("[storage]\nbackend = \"redis\"", "needs url"),
            ("[storage]\nbackend = \"floppy\"", "floppy"),
            (
                "[storage]\nbackend = \"sled\"\nsync_interval_ms = 0",
                "greater than 0",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("warden.toml") && e.contains(detail), "{e}");
        }
        let c = parse(
            "[storage]\nbackend = \"redis-cluster\"\nurls = [\"redis://a:1\", \"redis://b:2\"]",
        )
        .unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::RedisCluster(RedisClusterConfig::new(["redis://a:1", "redis://b:2"]))
        );
        let c = with_env(
            None,
            &[
                ("WARDEN_STORAGE_BACKEND", "redis-cluster"),
                ("WARDEN_STORAGE_URLS", "redis://a:1, redis://b:2"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.storage,
            StorageConfig::RedisCluster(RedisClusterConfig::new(["redis://a:1", "redis://b:2"]))
        );
        let e = parse("[storage]\nbackend = \"redis-cluster\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs urls"), "{e}");
        // The URL's password stays out of debug output.
        let c = parse("[storage]\nbackend = \"redis\"\nurl = \"redis://u:hunter2@h\"").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn every_table_lists_its_fields() {
        assert_eq!(
            table_fields("storage"),
            [
                "backend",
                "path",
                "sync",
                "sync_interval_ms",
                "url",
                "prefix",
                "urls"
            ]
        );
        assert_eq!(
            table_fields("http"),
            [
                "listen",
                "max_body_bytes",
                "tokens_file",
                "token",
                "header_timeout_ms",
                "body_timeout_ms",
                "max_connections",
                "max_requests_in_flight",
                "rate_limit_per_second",
                "tls_cert",
                "tls_key"
            ]
        );
        assert_eq!(
            table_fields("plugins"),
            [
                "watch",
                "cache",
                "cache_dir",
                "cache_max_bytes",
                "baseline",
                "reuse_functions"
            ]
        );
        assert_eq!(table_fields("limits").len(), 8);
        assert_eq!(table_fields("routing").len(), 3);
    }

    #[test]
    fn routing_bounds_are_read_and_checked() {
        assert_eq!(parse("").unwrap().routing, RoutingConfig::default());
        let c =
            parse("[routing]\nmax_message_bytes = 100\nmax_host_route_bytes = 2000000\n").unwrap();
        assert_eq!(
            c.routing,
            RoutingConfig {
                max_message_bytes: 100,
                max_plugin_route_bytes: DEFAULT_MAX_PLUGIN_ROUTE_BYTES,
                max_host_route_bytes: 2_000_000
            }
        );
        for (text, detail) in [
            (
                "[routing]\nmax_host_route_bytes = 0",
                "max_host_route_bytes must be greater than 0",
            ),
            ("[routing]\nmax_route_bytes = 1", "max_route_bytes"),
            (
                "[routing]\nmax_plugin_route_bytes = 20\nmax_host_route_bytes = 10",
                "max_plugin_route_bytes (20) must not exceed max_host_route_bytes (10)",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains("warden.toml") && e.contains(detail), "{e}");
        }
    }

    #[test]
    fn every_storable_value_must_be_readable() {
        let c = parse("").unwrap();
        assert_eq!(c.limits.max_read_bytes, 8 * 1024 * 1024);
        assert_eq!(c.limits.storage().max_read_bytes, 8 * 1024 * 1024);
        let e = parse("[limits]\nmax_read_bytes = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_read_bytes must be greater than 0"), "{e}");
        let e = parse("[limits]\nmax_value_bytes = 16777216")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "[limits] max_read_bytes (8388608) must be at least max_value_bytes (16777216)"
            ),
            "{e}"
        );
        let c = parse("[limits]\nmax_value_bytes = 16777216\nmax_read_bytes = 16777216").unwrap();
        assert_eq!(c.limits.storage().max_read_bytes, 16 * 1024 * 1024);
        let e = parse("[plugin_limits.\"a.Big\"]\nmax_read_bytes = 1000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[plugin_limits.\"a.Big\"] max_read_bytes (1000) must be at least"),
            "{e}"
        );
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

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn with_env(file: Option<&str>, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = file.map(|text| {
            let path = dir.path().join("warden.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        Config::load_with_env(path.as_deref(), vars(pairs))
    }

    #[test]
    fn slack_needs_the_bot_token_and_a_bounded_event_limit() {
        for (text, expected) in [
            (
                "[slack]\nsigning_secret = \"s\"\n",
                "signing_secret is set but bot_token is not",
            ),
            (
                "[slack]\napp_token = \"xapp-1\"\n",
                "app_token is set but bot_token is not",
            ),
            (
                "[slack]\nbot_token = \"b\"\nmax_events_in_flight = 0\n",
                "max_events_in_flight must be between 1 and 65536",
            ),
            (
                "[slack]\nbot_token = \"b\"\nmax_events_in_flight = 100000000\n",
                "max_events_in_flight must be between 1 and 65536",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
            assert!(e.contains("warden.toml"), "{e}");
        }
        let c = with_env(
            Some("[slack]\nbot_token = \"xoxb-1\"\n"),
            &[
                ("WARDEN_SLACK_APP_TOKEN", "xapp-1"),
                ("WARDEN_SLACK_MAX_EVENTS_IN_FLIGHT", "8"),
            ],
        )
        .unwrap();
        assert!(c.slack.socket_mode() && !c.slack.events_api());
        assert_eq!(c.slack.max_events_in_flight, 8);
        let shown = format!("{:?}", c.slack);
        assert!(
            !shown.contains("xapp-1") && !shown.contains("xoxb-1"),
            "{shown}"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let c = with_env(
            Some("[storage]\nbackend = \"sled\"\nurl = \"redis://127.0.0.1:1\"\nprefix = \"file\"\n[limits]\nmax_key_bytes = 100\nhandler_timeout_ms = 100\n"),
            &[
                ("WARDEN_STORAGE_BACKEND", "redis"),
                ("WARDEN_STORAGE_PREFIX", "1234"),
                ("WARDEN_LIMITS_HANDLER_TIMEOUT_MS", "2500"),
                ("WARDEN_HTTP_LISTEN", "127.0.0.1:0"),
                ("WARDEN_HTTP_MAX_BODY_BYTES", "100"),
                // Not configuration: flags' variables and other programs'.
                ("WARDEN_PLUGINS", "plugins"),
                ("WARDEN_LOG_FORMAT", "json"),
                ("HOME", "/root"),
                // Empty is unset.
                ("WARDEN_LIMITS_MAX_VALUE_BYTES", ""),
            ],
        )
        .unwrap();
        assert_eq!(redis(&c).url, "redis://127.0.0.1:1", "the file's redis url");
        assert_eq!(redis(&c).prefix, "1234", "digits are taken as a string");
        assert_eq!(c.limits.handler_timeout_ms, 2500);
        assert_eq!(c.limits.max_key_bytes, 100, "the file's value stays");
        assert_eq!(c.limits.max_value_bytes, Limits::default().max_value_bytes);
        assert_eq!(c.http.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(c.http.max_body_bytes, 100);
    }

    #[test]
    fn every_setting_of_the_overridable_tables_has_a_variable() {
        let c = with_env(
            None,
            &[
                ("WARDEN_STORAGE_BACKEND", "redis"),
                ("WARDEN_STORAGE_PATH", "elsewhere"),
                ("WARDEN_STORAGE_SYNC", "periodic"),
                ("WARDEN_STORAGE_SYNC_INTERVAL_MS", "7"),
                ("WARDEN_STORAGE_URL", "redis://127.0.0.1:1/2"),
                ("WARDEN_STORAGE_PREFIX", "p"),
                ("WARDEN_LIMITS_MAX_KEY_BYTES", "1"),
                ("WARDEN_LIMITS_MAX_VALUE_BYTES", "2"),
                ("WARDEN_LIMITS_MAX_STORED_BYTES", "3"),
                ("WARDEN_LIMITS_MAX_MEMORY_BYTES", "4"),
                ("WARDEN_LIMITS_HANDLER_TIMEOUT_MS", "5"),
                ("WARDEN_LIMITS_MAX_CALLS_IN_FLIGHT", "6"),
                ("WARDEN_LIMITS_MAX_INSTANCES", "7"),
                ("WARDEN_LIMITS_MAX_READ_BYTES", "9"),
                ("WARDEN_HTTP_LISTEN", "localhost:8080"),
                ("WARDEN_HTTP_MAX_BODY_BYTES", "8"),
                ("WARDEN_HTTP_TOKENS_FILE", "tokens"),
                ("WARDEN_HTTP_TOKEN", "s3cret"),
                ("WARDEN_ROUTING_MAX_MESSAGE_BYTES", "9"),
                ("WARDEN_ROUTING_MAX_PLUGIN_ROUTE_BYTES", "10"),
                ("WARDEN_ROUTING_MAX_HOST_ROUTE_BYTES", "11"),
                ("WARDEN_PLUGINS_WATCH", "false"),
                ("WARDEN_PLUGINS_CACHE", "false"),
                ("WARDEN_PLUGINS_CACHE_DIR", "cache"),
                ("WARDEN_PLUGINS_CACHE_MAX_BYTES", "12"),
                ("WARDEN_PLUGINS_BASELINE", "false"),
                ("WARDEN_PLUGINS_REUSE_FUNCTIONS", "false"),
            ],
        )
        .unwrap();
        assert_eq!(
            redis(&c),
            &RedisConfig {
                url: "redis://127.0.0.1:1/2".into(),
                prefix: "p".into()
            }
        );
        // The sled fields are read as sled's when it is the backend.
        let c = with_env(
            None,
            &[
                ("WARDEN_STORAGE_PATH", "elsewhere"),
                ("WARDEN_STORAGE_SYNC", "periodic"),
                ("WARDEN_STORAGE_SYNC_INTERVAL_MS", "7"),
                ("WARDEN_STORAGE_URL", "redis://127.0.0.1:1/2"),
            ],
        )
        .unwrap();
        let s = sled(&c);
        assert_eq!(
            (s.path.as_deref(), s.sync, s.sync_interval_ms),
            (Some(Path::new("elsewhere")), SyncPolicy::Periodic, 7)
        );
        let c = with_env(
            None,
            &[
                ("WARDEN_LIMITS_MAX_KEY_BYTES", "1"),
                ("WARDEN_LIMITS_MAX_VALUE_BYTES", "2"),
                ("WARDEN_LIMITS_MAX_STORED_BYTES", "3"),
                ("WARDEN_LIMITS_MAX_MEMORY_BYTES", "4"),
                ("WARDEN_LIMITS_HANDLER_TIMEOUT_MS", "5"),
                ("WARDEN_LIMITS_MAX_CALLS_IN_FLIGHT", "6"),
                ("WARDEN_LIMITS_MAX_INSTANCES", "7"),
                ("WARDEN_LIMITS_MAX_READ_BYTES", "9"),
                ("WARDEN_HTTP_LISTEN", "localhost:8080"),
                ("WARDEN_HTTP_MAX_BODY_BYTES", "8"),
                ("WARDEN_HTTP_TOKENS_FILE", "tokens"),
                ("WARDEN_HTTP_TOKEN", "s3cret"),
                ("WARDEN_ROUTING_MAX_MESSAGE_BYTES", "9"),
                ("WARDEN_ROUTING_MAX_PLUGIN_ROUTE_BYTES", "10"),
                ("WARDEN_ROUTING_MAX_HOST_ROUTE_BYTES", "11"),
                ("WARDEN_PLUGINS_WATCH", "false"),
                ("WARDEN_PLUGINS_CACHE", "false"),
                ("WARDEN_PLUGINS_CACHE_DIR", "cache"),
                ("WARDEN_PLUGINS_CACHE_MAX_BYTES", "12"),
                ("WARDEN_PLUGINS_BASELINE", "false"),
                ("WARDEN_PLUGINS_REUSE_FUNCTIONS", "false"),
            ],
        )
        .unwrap();
        let l = c.limits;
        assert_eq!(
            [
                l.max_key_bytes as u64,
                l.max_value_bytes as u64,
                l.max_stored_bytes,
                l.max_memory_bytes as u64,
                l.handler_timeout_ms,
                l.max_calls_in_flight as u64,
                l.max_instances as u64,
                l.max_read_bytes
            ],
            [1, 2, 3, 4, 5, 6, 7, 9]
        );
        assert_eq!(
            c.http,
            HttpConfig {
                listen: Some("localhost:8080".into()),
                max_body_bytes: 8,
                tokens_file: Some("tokens".into()),
                token: Some("s3cret".into()),
                ..HttpConfig::default()
            }
        );
        assert_eq!(
            c.routing,
            RoutingConfig {
                max_message_bytes: 9,
                max_plugin_route_bytes: 10,
                max_host_route_bytes: 11
            }
        );
        assert_eq!(
            c.plugins,
            PluginsConfig {
                watch: false,
                cache: false,
                cache_dir: Some("cache".into()),
                cache_max_bytes: 12,
                baseline: false,
                reuse_functions: false,
            }
        );
    }

    #[test]
    fn the_plugins_table() {
        let c = parse("").unwrap();
        assert_eq!(c.plugins, PluginsConfig::default());
        assert!(c.plugins.watch && c.plugins.cache && c.plugins.cache_dir.is_none());
        assert!(c.plugins.baseline && c.plugins.reuse_functions);
        assert_eq!(c.plugins.cache_max_bytes, 512 * 1024 * 1024);
        let c = parse(
            "[plugins]\nwatch = false\ncache = false\ncache_dir = \"/c\"\ncache_max_bytes = 4096\nbaseline = false\nreuse_functions = false",
        )
        .unwrap();
        assert_eq!(
            c.plugins,
            PluginsConfig {
                watch: false,
                cache: false,
                cache_dir: Some("/c".into()),
                cache_max_bytes: 4096,
                baseline: false,
                reuse_functions: false,
            }
        );
        let e = parse("[plugins]\ncache_max_bytes = 0")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[plugins] cache_max_bytes must be greater than 0"),
            "{e}"
        );
        let e = parse("[plugins]\ncache_dri = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache_dri"), "{e}");
    }

    #[test]
    fn environment_paths_are_not_moved_to_the_file() {
        let c = with_env(Some("[storage]\npath = \"data\""), &[]).unwrap();
        let from_file = sled(&c).path.clone().unwrap();
        assert!(from_file.is_absolute() && from_file.ends_with("data"));
        assert_ne!(from_file, Path::new("data"));
        let c = with_env(
            Some("[storage]\npath = \"data\""),
            &[("WARDEN_STORAGE_PATH", "env-data")],
        )
        .unwrap();
        assert_eq!(sled(&c).path.as_deref(), Some(Path::new("env-data")));
        let c = with_env(
            Some("[storage]\npath = \"data\""),
            &[("WARDEN_LIMITS_MAX_KEY_BYTES", "9")],
        )
        .unwrap();
        assert_eq!(c.limits.max_key_bytes, 9);
        let kept = sled(&c).path.clone().unwrap();
        assert!(
            kept.is_absolute() && kept.ends_with("data"),
            "the file's path stays relative to the file: {}",
            kept.display()
        );
    }

    #[test]
    fn environment_errors_name_the_variable() {
        for (var, value, detail) in [
            ("WARDEN_STORAGE_BACKEND", "floppy", "floppy"),
            ("WARDEN_LIMITS_HANDLER_TIMEOUT_MS", "soon", "soon"),
            ("WARDEN_LIMITS_MAX_KEY_BYTES", "-1", ""),
            ("WARDEN_STORAGE_BAKEND", "memory", "bakend"),
            ("WARDEN_LIMITS_MAX_KEY_BYTES", "0", "greater than 0"),
            ("WARDEN_STORAGE_BACKEND", "redis", "url"),
            ("WARDEN_HTTP_LISTEN", "8080", "HOST:PORT"),
            ("WARDEN_ROUTING_MAX_MESSAGE_BYTES", "0", "greater than 0"),
            ("WARDEN_PLUGINS_CACHE_MAX_BYTES", "0", "greater than 0"),
            ("WARDEN_PLUGINS_WATCH", "sometimes", "sometimes"),
            ("WARDEN_ROUTING_MAX_PLUGIN_ROUTE_BYTES", "1e9", ""),
            (
                "WARDEN_ROUTING_MAX_PLUGIN_ROUTE_BYTES",
                "999999999999",
                "must not exceed max_host_route_bytes",
            ),
        ] {
            let e = with_env(Some("[storage]\nbackend = \"memory\""), &[(var, value)]).unwrap_err();
            assert!(matches!(e, ConfigError::Env { .. }), "{e}");
            let e = e.to_string();
            assert!(e.contains(var) && e.contains(detail), "{e}");
        }
        // A fault of the file alone still names the file.
        let e = with_env(
            Some("[limits]\nmax_key_bytes = 0"),
            &[("WARDEN_STORAGE_BACKEND", "memory")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("warden.toml") && e.contains("max_key_bytes"),
            "{e}"
        );
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
        assert_eq!(sled(&c).path.clone().unwrap(), dir.path().join("data"));
        std::fs::write(&file, "[plugins]\ncache_dir = \"cache\"").unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.plugins.cache_dir.unwrap(), dir.path().join("cache"));
        let c =
            Config::load_with_env(Some(&file), vars(&[("WARDEN_PLUGINS_CACHE", "false")])).unwrap();
        assert_eq!(c.plugins.cache_dir.unwrap(), dir.path().join("cache"));
        let c = Config::load_with_env(
            Some(&file),
            vars(&[("WARDEN_PLUGINS_CACHE_DIR", "env-cache")]),
        )
        .unwrap();
        assert_eq!(c.plugins.cache_dir.unwrap(), Path::new("env-cache"));
        let e = Config::load(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.toml"), "{e}");
    }
}
