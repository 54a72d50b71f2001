//! Host bindings generated from `wit/plugin.wit`.

#![allow(unsafe_code, missing_docs, missing_debug_implementations)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "warden:plugin/plugin",
    imports: {
        "warden:plugin/storage": async,
    },
    exports: {
        default: async,
    },
});

pub use self::warden::plugin::storage::Error as StorageErrorWit;
pub use self::warden::plugin::types::{Route, RouteKind};
