//! Host bindings generated from `wit/plugin.wit`, private to the runtime,
//! and the conversions between their types and the host's own.

#![allow(unsafe_code, missing_docs, missing_debug_implementations)]

use crate::router;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "warden:plugin/plugin",
    imports: {
        "warden:plugin/storage": async | trappable,
    },
    exports: {
        default: async,
    },
    // Storage host functions return the host's own error; the storage
    // interface's `convert_error` says what the plugin sees of it.
    trappable_error_type: {
        "warden:plugin/storage.error" => crate::storage::StorageError,
    },
});

pub(crate) use self::warden::plugin::storage::Error as StorageErrorWit;
use self::warden::plugin::types;

impl From<types::RouteKind> for router::RouteKind {
    fn from(kind: types::RouteKind) -> Self {
        match kind {
            types::RouteKind::RespondTo => router::RouteKind::RespondTo,
            types::RouteKind::ListenTo => router::RouteKind::ListenTo,
        }
    }
}

impl From<types::Route> for router::Route {
    fn from(route: types::Route) -> Self {
        router::Route {
            kind: route.kind.into(),
            pattern: route.pattern,
            ignore_case: route.ignore_case,
            handler: route.handler,
        }
    }
}

impl From<router::Capture> for types::Capture {
    fn from(capture: router::Capture) -> Self {
        types::Capture {
            name: capture.name,
            value: capture.value,
        }
    }
}
