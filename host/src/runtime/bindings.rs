//! Host bindings generated from the plugin contract, private to the
//! runtime, and the conversions between their types and the host's own.
//!
//! The host speaks every version of the contract: [`v2`] is the current
//! one, `wit/plugin.wit` (`warden:plugin@0.2.0`); [`v1`] the first,
//! `wit/0.1.0/plugin.wit`, whose components load and behave as they did.
//! The host functions are written once, for the current version; those of
//! the first forward to them.

#![allow(unsafe_code, missing_docs, missing_debug_implementations)]

use crate::router;

/// The current contract, `warden:plugin@0.2.0`.
pub(crate) mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "warden:plugin/plugin@0.2.0",
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
}

/// The first contract, `warden:plugin@0.1.0`.
pub(crate) mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "warden:plugin/plugin@0.1.0",
        imports: {
            "warden:plugin/storage": async | trappable,
        },
        exports: {
            default: async,
        },
        trappable_error_type: {
            "warden:plugin/storage.error" => crate::storage::StorageError,
        },
    });
}

pub(crate) use self::v2::warden::plugin::storage::Error as StorageErrorWit;

/// The contract versions the host speaks, newest first.
pub const CONTRACTS: [&str; 2] = ["warden:plugin@0.2.0", "warden:plugin@0.1.0"];

impl From<v2::warden::plugin::types::RouteKind> for router::RouteKind {
    fn from(kind: v2::warden::plugin::types::RouteKind) -> Self {
        use v2::warden::plugin::types::RouteKind;
        match kind {
            RouteKind::RespondTo => router::RouteKind::RespondTo,
            RouteKind::ListenTo => router::RouteKind::ListenTo,
        }
    }
}

impl From<v1::warden::plugin::types::RouteKind> for router::RouteKind {
    fn from(kind: v1::warden::plugin::types::RouteKind) -> Self {
        use v1::warden::plugin::types::RouteKind;
        match kind {
            RouteKind::RespondTo => router::RouteKind::RespondTo,
            RouteKind::ListenTo => router::RouteKind::ListenTo,
        }
    }
}

impl From<v2::warden::plugin::types::Route> for router::Route {
    fn from(route: v2::warden::plugin::types::Route) -> Self {
        router::Route {
            kind: route.kind.into(),
            pattern: route.pattern,
            ignore_case: route.ignore_case,
            handler: route.handler,
            doc: route.doc,
        }
    }
}

impl From<v1::warden::plugin::types::Route> for router::Route {
    fn from(route: v1::warden::plugin::types::Route) -> Self {
        router::Route {
            kind: route.kind.into(),
            pattern: route.pattern,
            ignore_case: route.ignore_case,
            handler: route.handler,
            doc: String::new(),
        }
    }
}

impl From<router::Capture> for v2::warden::plugin::types::Capture {
    fn from(capture: router::Capture) -> Self {
        Self {
            name: capture.name,
            value: capture.value,
        }
    }
}

impl From<router::Capture> for v1::warden::plugin::types::Capture {
    fn from(capture: router::Capture) -> Self {
        Self {
            name: capture.name,
            value: capture.value,
        }
    }
}

impl From<&router::Incoming> for v2::warden::plugin::types::Message {
    fn from(msg: &router::Incoming) -> Self {
        Self {
            text: msg.text.clone(),
            sender: v2::warden::plugin::types::Sender {
                id: msg.user.clone(),
                name: msg.user_name.clone(),
            },
            channel: msg.channel.clone(),
            addressed: msg.addressed,
            id: msg.id.clone(),
            thread: msg.thread.clone(),
        }
    }
}

impl From<&router::Incoming> for v1::warden::plugin::types::Message {
    fn from(msg: &router::Incoming) -> Self {
        Self {
            text: msg.text.clone(),
            user: msg.user.clone(),
            channel: msg.channel.clone(),
            addressed: msg.addressed,
        }
    }
}
