//! Ways messages reach the host.

pub mod auth;
pub mod console;
pub mod http;
pub mod slack;
