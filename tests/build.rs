//! Builds the example plugins and the test plugins for wasm32-wasip2, once,
//! and tells the tests where the components are (`WARDEN_WASM_DIR`).

use std::path::{Path, PathBuf};
use std::process::Command;

const WORKSPACES: [&str; 2] = ["example-plugins", "tests/plugins"];

fn main() {
    let tests_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = tests_dir
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf();
    let target_dir = root.join("target").join("wasm-plugins");

    for path in [
        "wit",
        "guest-sdk/src",
        "guest-sdk/macros/src",
        "guest-sdk/Cargo.toml",
        "guest-sdk/macros/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    for workspace in WORKSPACES {
        let dir = root.join(workspace);
        watch_workspace(&dir);
        build(&dir.join("Cargo.toml"), &target_dir);
    }
    let out = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=WARDEN_WASM_DIR={}", out.display());
}

/// Reruns this script when a plugin's sources or manifests change (but not
/// when a build elsewhere touches the workspace's own `target/`).
fn watch_workspace(dir: &Path) {
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", dir.join(file).display());
    }
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let crate_dir = entry.path();
        if crate_dir.join("Cargo.toml").is_file() {
            println!(
                "cargo:rerun-if-changed={}",
                crate_dir.join("Cargo.toml").display()
            );
            println!("cargo:rerun-if-changed={}", crate_dir.join("src").display());
        }
    }
}

fn build(manifest: &Path, target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir);
    // This script runs inside another cargo build: drop the variables that
    // describe that build so they do not leak into the nested one.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let leaks = (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || matches!(
                &*key,
                "RUSTFLAGS"
                    | "RUSTDOC"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if leaks {
            cmd.env_remove(&*key);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {}: {e}", manifest.display()));
    assert!(
        status.success(),
        "building the plugins in {} failed ({status})",
        manifest.display()
    );
}
