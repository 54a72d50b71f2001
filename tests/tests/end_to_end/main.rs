//! Warden's end-to-end tests: the example and test plugins, built by the
//! package's build script, driven through the library and the real
//! `warden` command line. One test binary, one module per area, sharing the
//! harness in `warden_tests` (`tests/src`).
//!
//! Run one area with `cargo test -p warden-tests --test end_to_end
//! MODULE::`, e.g. `containment::`. A new area is a module file here and a
//! line below, not a new file in `tests/tests/`.
//!
//! The tests share one process: none may set environment variables, the
//! current directory or other process-wide state, nor assert on what the
//! tests running at the same time change, such as the process's memory
//! (`warden_tests::in_own_process` runs a test alone where it must).

mod bench_plugin;
mod config_env;
mod conformance;
mod console;
mod containment;
mod contract;
mod custom_backend;
mod durability;
mod host;
mod http;
mod identity;
mod javascript;
mod karma;
mod logs;
mod operations;
mod plugin_commands;
mod python;
mod reload;
mod sandbox;
mod scaffold;
mod slack;
mod storage_cli;
mod two_hosts;
