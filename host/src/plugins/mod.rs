//! Plugins: loading them from a directory and reloading it ([`sync`]),
//! and the loaded plugins that serve calls ([`LoadedPlugin`]).

mod load;
mod loaded;
mod pool;

use std::path::PathBuf;

use crate::config::Limits;
use crate::identity::{IdError, PluginId};
use crate::router::{CompiledRoute, Reply, RouteError};
use crate::runtime::Contract;
use crate::schedule::Schedule;
use crate::text;

pub(crate) use load::prepare;
pub use load::{
    Failed, FailedFile, Loader, Progress, ProgressFn, Stamp, Synced, check_binding, plugin_files,
    rebind_command, set_store_options, shell_word, sync,
};
pub use loaded::LoadedPlugin;

/// Longest handler error, or account of a trap, kept in bytes: errors reach
/// the log, the console and HTTP answers; a longer one is cut, with a
/// marker.
pub const MAX_ERROR_BYTES: usize = 4096;
/// Longest manifest `version`, in bytes.
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest manifest `description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Longest doc line of a route or schedule, and longest cron expression,
/// schedule channel or required setting name, in bytes.
pub const MAX_DOC_BYTES: usize = 1024;
/// Most schedules, and most required settings, one plugin may declare.
pub const MAX_SCHEDULES: usize = 64;

/// Why a file in the plugins directory was not loaded. Every variant names
/// the file; the other plugins load regardless.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a WebAssembly component (a core module, or not WebAssembly).
    #[error("{file}: not a valid WebAssembly component: {message}")]
    NotAComponent {
        /// The file.
        file: PathBuf,
        /// What the compiler said.
        message: String,
    },
    /// A component that does not implement the `warden:plugin/plugin` world
    /// of any contract version the host speaks: it imports something Warden
    /// does not provide or lacks an export.
    #[error(
        "{file}: does not implement the warden:plugin/plugin world \
         (of warden:plugin@0.2.0 or @0.1.0): {message}"
    )]
    WrongWorld {
        /// The file.
        file: PathBuf,
        /// What is missing or unexpected.
        message: String,
    },
    /// The component trapped or failed while starting or reading its manifest.
    #[error("{file}: failed while starting: {message}")]
    Start {
        /// The file.
        file: PathBuf,
        /// The trap or error.
        message: String,
    },
    /// Starting the component, or reading its manifest, did not return in
    /// time: it ran or waited past the time limit.
    #[error(
        "{file}: {stage} did not return within the time limit of {limit_ms} ms \
         ([limits] handler_timeout_ms); the file is not loaded"
    )]
    TimedOut {
        /// The file.
        file: PathBuf,
        /// What timed out: `instantiation` or `manifest`.
        stage: &'static str,
        /// The limit.
        limit_ms: u64,
    },
    /// The manifest declares a field the host does not accept: a version or
    /// description over its length limit, or holding control characters.
    #[error("{file}: invalid manifest: {message}")]
    BadManifest {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The declared identity is not valid.
    #[error("{file}: invalid plugin identity: {source}")]
    InvalidId {
        /// The file.
        file: PathBuf,
        /// The rule it broke.
        source: IdError,
    },
    /// Another file already declared the same identity.
    #[error(
        "{file}: declares plugin identity {id}, which {first} already declared; \
         {file} is not loaded (remove one of the two files)"
    )]
    DuplicateId {
        /// The file refused.
        file: PathBuf,
        /// The identity both declare.
        id: PluginId,
        /// The file that was loaded with it.
        first: PathBuf,
    },
    /// The identity is bound to another file: a new file cannot take over
    /// an existing plugin's data by declaring its identity. The message
    /// ends with the command that moves the identity (see
    /// [`rebind_command`]).
    #[error(
        "{file}: declares plugin identity {id}, which is bound to the file {bound_to}; \
         {file} is not loaded. If it is meant to replace {bound_to} and take over its data, \
         run `{rebind}`",
        rebind = rebind_command(.id, .file)
    )]
    BoundElsewhere {
        /// The file refused.
        file: PathBuf,
        /// The identity.
        id: PluginId,
        /// The file name the identity is bound to.
        bound_to: String,
    },
    /// The store failed while the plugin was loading.
    #[error("{file}: storage failed while loading: {source}")]
    Storage {
        /// The file.
        file: PathBuf,
        /// The store's error.
        source: crate::storage::BackendError,
    },
    /// The plugin requires a setting its `[settings."ID"]` table does not
    /// give (Slack Machine's `required_settings`).
    #[error(
        "{file}: plugin {id} requires the setting {setting:?}, which [settings.\"{id}\"] \
         does not give; the plugin is not loaded"
    )]
    MissingSetting {
        /// The file.
        file: PathBuf,
        /// The plugin's identity.
        id: PluginId,
        /// The setting.
        setting: String,
    },
    /// A route is invalid.
    #[error("{file}: plugin {id}: {source}")]
    BadRoute {
        /// The file.
        file: PathBuf,
        /// The plugin's identity.
        id: PluginId,
        /// The route at fault.
        source: RouteError,
    },
}

impl LoadError {
    /// Whether loading the same file again would fail in the same way:
    /// the error comes from the file's contents alone, not from the other
    /// plugins, the store or the file system. Such a file is not tried
    /// again until it changes.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            LoadError::NotAComponent { .. }
                | LoadError::WrongWorld { .. }
                | LoadError::Start { .. }
                | LoadError::TimedOut { .. }
                | LoadError::BadManifest { .. }
                | LoadError::InvalidId { .. }
                // The settings are read at start only.
                | LoadError::MissingSetting { .. }
        ) || matches!(
            self,
            LoadError::BadRoute { source, .. } if !matches!(source, RouteError::HostBudget { .. })
        )
    }
}

/// A loaded plugin's identity and routes, as declared in its manifest.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// The identity its storage is namespaced by.
    pub id: PluginId,
    /// Its declared version.
    pub version: String,
    /// Its description.
    pub description: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// The SHA-256 digest of the file, in hex.
    pub digest: String,
    /// Its routes, in declaration order.
    pub routes: Vec<CompiledRoute>,
    /// The contract it was built against.
    pub contract: Contract,
    /// Its schedules, in declaration order.
    pub schedules: Vec<Schedule>,
    /// The settings it cannot run without.
    pub required_settings: Vec<String>,
}

/// The result of one handler call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The plugin that handled the message.
    pub plugin: PluginId,
    /// The handler's name.
    pub handler: String,
    /// Everything the handler said, in order.
    pub replies: Vec<Reply>,
    /// Why the call failed, if it did, as the sender may see it: short and
    /// stable, written by the host (`timed out: ...`, `trapped: stack
    /// overflow`, `busy: ...`). Where the reason is the plugin's own text (a
    /// handler's error) or long (a trap's backtrace), it reads
    /// `failed; see the host log (reference E12)`, and the log entry with
    /// that reference has the [`detail`](Self::detail).
    pub error: Option<String>,
    /// The full account of a failure, as logged: the handler's own error,
    /// or the trap with its backtrace; at most [`MAX_ERROR_BYTES`] (and a
    /// marker).
    pub detail: Option<String>,
    /// What kind of failure it was, if the call failed.
    pub failure: Option<Failure>,
}

/// What kind of failure ended a call (see [`Outcome::failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Refused at once: `max_calls_in_flight` calls were waiting or
    /// running.
    Busy,
    /// Refused: the plugin is paused after faults in a row.
    Paused,
    /// Refused: the message and its captures are over `max_read_bytes`.
    TooLarge,
    /// It ran or waited past its time limit, or no instance became free
    /// within it.
    TimedOut,
    /// It trapped (a panic, its memory limit, a stack overflow...), or no
    /// instance could be started.
    Trapped,
    /// The handler returned an error.
    Handler,
    /// The host failed while running it.
    Host,
}

impl Failure {
    /// A short, stable name: `busy`, `paused`, `too-large`, `timed-out`,
    /// `trapped`, `handler` or `host`.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Busy => "busy",
            Failure::Paused => "paused",
            Failure::TooLarge => "too-large",
            Failure::TimedOut => "timed-out",
            Failure::Trapped => "trapped",
            Failure::Handler => "handler",
            Failure::Host => "host",
        }
    }
}

/// The account of an instance stopped by its memory limit.
fn out_of_memory(limits: &Limits) -> String {
    format!(
        "trapped: ran out of memory (its limit is {} bytes)",
        limits.max_memory_bytes
    )
}

/// A readable account of a trap, naming the limit that stopped the plugin
/// where one did.
fn describe_trap(e: &wasmtime::Error, limits: &Limits) -> String {
    let described = match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "trapped: ran longer than its time limit of {} ms",
            limits.handler_timeout_ms
        ),
        Some(wasmtime::Trap::StackOverflow) => "trapped: stack overflow".to_owned(),
        Some(trap) => format!("trapped: {trap}"),
        None => format!("trapped: {e:#}"),
    };
    // A trap's backtrace names the plugin's own functions: bound it.
    text::truncate(&described, MAX_ERROR_BYTES).into_owned()
}
