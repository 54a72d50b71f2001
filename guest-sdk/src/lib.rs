//! Write Warden plugins in Rust.
//!
//! A Warden plugin is a WebAssembly component (`wasm32-wasip2`) that
//! declares routes, regular expressions matched against chat messages, and
//! handles the messages that match: it replies, logs, and keeps data in a
//! key-value store that the host sandboxes per plugin. This crate hides the
//! component plumbing behind one attribute, [`plugin`], and a few types.
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "storage"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! # The guest-sdk directory of a Warden checkout; `warden new NAME`
//! # writes this, with a toolchain file and a build for wasm32-wasip2.
//! warden-sdk = { path = "/path/to/warden/guest-sdk" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use warden_sdk::{Message, Plugin, Result};
//!
//! /// Stores, retrieves and deletes text by key.
//! #[derive(Default)]
//! pub struct StoragePlugin;
//!
//! #[warden_sdk::plugin(
//!     id = "example.storage.StoragePlugin",
//!     description = "Stores, retrieves and deletes text by key"
//! )]
//! impl StoragePlugin {
//!     #[respond_to(r"store (?P<text>.*) under (?P<key>\w+)")]
//!     fn store(&self, msg: &Message, text: String, key: String) -> Result<()> {
//!         self.storage().set(&key, &text)?;
//!         msg.say(format!("'{text}' stored under {key}!"));
//!         Ok(())
//!     }
//!
//!     #[respond_to(r"retrieve (?P<key>\w+)")]
//!     fn retrieve(&self, msg: &Message, key: String) -> Result<()> {
//!         let data: Option<String> = self.storage().get(&key)?;
//!         match data {
//!             Some(data) if !data.is_empty() => msg.say(format!("'{data}' retrieved from <{key}>!")),
//!             _ => msg.say("Key not found!"),
//!         }
//!         Ok(())
//!     }
//!
//!     #[respond_to(r"delete (?P<key>\w+)")]
//!     fn delete(&self, msg: &Message, key: String) -> Result<()> {
//!         self.storage().delete(&key)?;
//!         msg.say(format!("data in <{key}> deleted!"));
//!         Ok(())
//!     }
//!
//!     #[respond_to(r"does (?P<key>\w+) exist?")]
//!     fn exists(&self, msg: &Message, key: String) -> Result<()> {
//!         if self.storage().has(&key)? {
//!             msg.say(format!("<{key}> exists."));
//!         } else {
//!             msg.say(format!("<{key}> does not exist!"));
//!         }
//!         Ok(())
//!     }
//!
//!     #[respond_to(r"size")]
//!     fn size(&self, msg: &Message) -> Result<()> {
//!         let human = self.storage().size_human()?;
//!         msg.say(format!("storage size: {human}"));
//!         Ok(())
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! Build it with
//! `cargo build --release --target wasm32-wasip2` and load
//! `target/wasm32-wasip2/release/storage.wasm` into Warden. A plugin crate
//! depends on `warden-sdk` only.
//!
//! # The `#[plugin]` attribute
//!
//! [`#[warden_sdk::plugin(...)]`](plugin) goes on the inherent `impl` block
//! of a type that implements [`Default`]. It takes:
//!
//! | argument | meaning |
//! |---|---|
//! | `id = "..."` | required: the plugin's identity, dotted segments such as `example.storage.StoragePlugin`. The host namespaces the plugin's storage by it. |
//! | `description = "..."` | one line for operators; empty if left out |
//! | `version = "..."` | defaults to the plugin crate's version (`CARGO_PKG_VERSION`) |
//!
//! Inside the block, each method marked with `#[respond_to("regex")]` or
//! `#[listen_to("regex")]` becomes a route (Slack Machine's decorators of
//! the same names):
//!
//! - `respond_to` routes see messages addressed to the bot, matched against
//!   the text after the mention; `listen_to` routes see every message.
//! - The pattern is searched for anywhere in the text; anchor it with `^`
//!   and `$` to match the whole text. The host uses the syntax of Rust's
//!   `regex` crate, which accepts Python's `(?P<name>...)` groups.
//! - Matching ignores case unless the attribute says
//!   `ignore_case = false`, as in `#[listen_to(r"^ping$", ignore_case = false)]`.
//! - A method may carry several route attributes; routes are listed in the
//!   manifest in the order they are written, each named after its method.
//!
//! A handler takes `&self`, then the message (`msg: &Message`), then one
//! parameter per named group it wants, **named like the group**:
//!
//! | parameter type | receives |
//! |---|---|
//! | `String` | the group's text, `""` if the group did not take part in the match |
//! | `&str` | the same, borrowed |
//! | `Option<String>` (or `Option<&str>`) | `None` if the group did not take part in the match |
//!
//! A parameter that names no group of the pattern (of every pattern, when
//! the method has several routes) is a compile error, and so is a route
//! attribute without a pattern. A handler returns `()` or
//! `Result<(), E>` with `E: Display`, such as [`Result<()>`](Result); an
//! `Err` is sent to the host, which logs it with the plugin's identity. A
//! panic traps the component, and the call fails.
//!
//! Methods without a route attribute are ordinary methods. The attribute
//! also implements [`Plugin`] for the type and exports the component's
//! functions; a crate holds one plugin. The plugin value is created with
//! `Default::default()` when the first message arrives and kept for the
//! following ones as long as the host keeps the component instance, so it
//! may cache data in its fields (wrap them in `Cell` or `RefCell`: handlers
//! take `&self`). Keep anything that must last in [`Storage`].
//!
//! # Errors
//!
//! A handler returns `()` or `Result<(), E>` for any `E: Display`. An `Err`
//! is logged by the host with the plugin's identity; the sender is told only
//! that the handler failed. [`Result`] is `Result<T, warden_sdk::Error>`;
//! to use `?` on the SDK's errors and your own in one handler, return
//! `Result<(), Box<dyn std::error::Error>>` (or `anyhow::Result<()>`):
//!
//! ```no_run
//! use warden_sdk::{Message, Plugin};
//!
//! #[derive(Default)]
//! pub struct Adder;
//!
//! #[warden_sdk::plugin(id = "example.adder.Adder", description = "Adds to counters")]
//! impl Adder {
//!     #[respond_to(r"add (?P<n>\S+) to (?P<key>\w+)")]
//!     fn add(&self, msg: &Message, n: String, key: String) -> Result<(), Box<dyn std::error::Error>> {
//!         let n: i64 = n.parse()?; // a std::num::ParseIntError
//!         let total = self.storage().increment(&key, n)?; // a warden_sdk::Error
//!         msg.say(format!("{key} is now {total}"));
//!         Ok(())
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! # Storage
//!
//! [`Plugin::storage`] returns the plugin's private [`Storage`], and
//! [`Storage::shared`] the shared keyspace that the operator may grant to
//! some plugins. Values are JSON-encoded with `serde`
//! ([`set`](Storage::set), [`get`](Storage::get)) or raw bytes
//! ([`set_bytes`](Storage::set_bytes), [`get_bytes`](Storage::get_bytes));
//! keys may expire ([`set_expiring`](Storage::set_expiring)). Failures are
//! [`Error`]s.
//!
//! # Logging and output
//!
//! [`log`] writes to the host's log. [`Message::say`] replies in the
//! message's channel.

#![deny(missing_docs)]

// Lets the code generated by `#[plugin]` name this crate as `::warden_sdk`
// in this crate's own tests too.
extern crate self as warden_sdk;

mod error;
pub mod log;
mod message;
pub mod settings;
mod storage;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// The bindings generated from `wit/plugin.wit` (world
/// `warden:plugin/plugin`). Plugins use the types of this crate instead.
#[doc(hidden)]
// Generated code: the export glue is necessarily `unsafe`.
#[allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
pub mod __bindings {
    wit_bindgen::generate!({
        world: "warden:plugin/plugin@0.2.0",
        path: "../wit",
        // wasi:config/store, for the settings, too.
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "warden_sdk::__bindings",
    });
}

#[doc(hidden)]
pub use wit_bindgen;

pub use error::{Error, Result};
pub use message::{Message, Sender};
pub use storage::{KeyPage, Storage};
pub use warden_sdk_macros::plugin;

/// Sends `text` to the channel of the call under way: the message's
/// channel in a handler, the schedule's channel in a scheduled handler
/// (which has no message to call [`Message::say`] on).
pub fn say(text: impl AsRef<str>) {
    __bindings::warden::plugin::chat::say(text.as_ref(), None);
}

/// What every Warden plugin is. Implemented by [`#[plugin]`](plugin); do
/// not implement it by hand.
///
/// It gives handlers their storage:
///
/// ```no_run
/// use warden_sdk::{Message, Plugin, Result};
///
/// fn remember(plugin: &impl Plugin, msg: &Message) -> Result<()> {
///     plugin.storage().set("last-message", msg.text())
/// }
/// ```
pub trait Plugin: Default + 'static {
    /// The plugin's private key-value storage. Keys are namespaced by the
    /// plugin's identity on the host, so they never meet another plugin's
    /// keys; use [`Storage::shared`] for keys common to all plugins.
    fn storage(&self) -> Storage {
        Storage::private()
    }
}
