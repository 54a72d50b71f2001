//! Ways messages reach the host.

pub mod console;
