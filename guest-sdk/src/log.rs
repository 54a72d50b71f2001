//! Logging into the host's log.
//!
//! The host writes each message to its own log at the given level, tagged
//! with the plugin's identity.
//!
//! ```no_run
//! warden_sdk::log::info("cache warmed");
//! warden_sdk::log::warn(format!("{} keys could not be read", 3));
//! ```

use crate::__bindings::warden::plugin::logging::{self, Level};

/// Logs `message` at the `trace` level.
pub fn trace(message: impl AsRef<str>) {
    logging::log(Level::Trace, message.as_ref());
}

/// Logs `message` at the `debug` level.
pub fn debug(message: impl AsRef<str>) {
    logging::log(Level::Debug, message.as_ref());
}

/// Logs `message` at the `info` level.
pub fn info(message: impl AsRef<str>) {
    logging::log(Level::Info, message.as_ref());
}

/// Logs `message` at the `warn` level.
pub fn warn(message: impl AsRef<str>) {
    logging::log(Level::Warn, message.as_ref());
}

/// Logs `message` at the `error` level.
pub fn error(message: impl AsRef<str>) {
    logging::log(Level::Error, message.as_ref());
}
