//! Warden: a WebAssembly plugin host with sandboxed, namespaced storage.
//!
//! Warden loads plugins — WebAssembly components built for `wasm32-wasip2`
//! against the `warden:plugin` WIT world — from a directory, routes messages
//! to them, and gives each one key-value storage namespaced by the identity
//! its manifest declares. A plugin can never read, write or name another
//! plugin's keys, and reaches the shared keyspace only where the operator
//! granted it.
//!
//! ```no_run
//! use warden::{Host, Incoming};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::builder()
//!     .plugins_dir("plugins")
//!     .data_dir("warden-data")
//!     .build()
//!     .await?;
//! for skipped in host.skipped() {
//!     eprintln!("{skipped}");
//! }
//! for outcome in host.dispatch(&Incoming::addressed("store hello under greeting")).await {
//!     for reply in outcome.replies {
//!         println!("{reply}");
//!     }
//! }
//! host.shutdown().await?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod adapters;
pub mod config;
mod fields;
pub mod host;
pub mod identity;
pub mod inspect;
pub mod manual;
pub mod metrics;
pub mod outbox;
pub mod plugins;
pub mod router;
pub mod runtime;
pub mod schedule;
pub mod storage;
pub mod text;

pub use config::Config;
pub use host::{
    Host, HostBuilder, HostError, MAX_CALLS_AT_ONCE, MessageError, PURGE_INTERVAL,
    RECOUNT_INTERVAL, RELOAD_DEBOUNCE, Reloaded,
};
pub use plugins::{Failure, LoadError, Outcome, PluginInfo};
pub use router::{Incoming, Reply};
pub use storage::DEFAULT_DATA_DIR;
