//! Ways messages reach the host.

pub mod console;
pub mod http;
