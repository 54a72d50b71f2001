//! The `#[plugin]` attribute of [`warden-sdk`](https://docs.rs/warden-sdk).
//!
//! Use it through `warden_sdk::plugin`; its documentation, and the
//! crate-level documentation of `warden-sdk`, describe it with examples.

use proc_macro::TokenStream;

mod expand;
mod pattern;

/// Turns the inherent `impl` block of a plugin type into a Warden plugin.
///
/// ```text
/// #[warden_sdk::plugin(id = "example.storage.StoragePlugin", description = "...")]
/// impl StoragePlugin {
///     #[respond_to(r"retrieve (?P<key>\w+)")]
///     fn retrieve(&self, msg: &Message, key: String) -> Result<()> { ... }
///
///     #[listen_to(r"^ping$", ignore_case = false)]
///     fn ping(&self, msg: &Message) { ... }
/// }
/// ```
///
/// Arguments: `id` (required, the plugin's identity), `description`
/// (optional, one line for operators) and `version` (optional, the plugin
/// crate's version by default).
///
/// Methods marked `#[respond_to("regex")]` or `#[listen_to("regex")]`,
/// optionally with `ignore_case = false` (matching ignores case by default),
/// become the plugin's routes in the order they are written. A handler
/// takes `&self`, `msg: &Message`, then one parameter per named group it
/// uses, named like the group and typed `String`, `&str` or
/// `Option<String>`. It returns `()` or `Result<(), E>` with `E: Display`.
///
/// The attribute implements `warden_sdk::Plugin` for the type and exports
/// the component's `manifest` and `handle` functions. The type must
/// implement `Default`: the plugin value is created with
/// `Default::default()` and kept between messages.
///
/// Compile errors point at a route attribute without a pattern, at a
/// pattern whose group names cannot be read, and at a parameter whose name
/// is not a named group of one of its method's patterns.
#[proc_macro_attribute]
pub fn plugin(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(args.into(), item.into()).into()
}
