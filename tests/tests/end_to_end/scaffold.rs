//! `warden new`: a new plugin project, created outside the repository,
//! builds as it is and answers the seed's transcript.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use warden::Host;
use warden::storage::MemoryBackend;
use warden_tests::*;

/// Runs `cargo` in `dir` as a plugin author would: without the variables
/// of the cargo that runs this test.
fn cargo_in(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key.starts_with("RUSTC") {
            cmd.env_remove(&*key);
        }
        if matches!(&*key, "RUSTFLAGS" | "RUSTUP_TOOLCHAIN") {
            cmd.env_remove(&*key);
        }
    }
    cmd.output().expect("run cargo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rust_plugin_builds_outside_the_repository_and_answers() {
    let parent = tempfile::tempdir().unwrap();
    let out = run_warden(
        warden_bin!(),
        [
            "new".as_ref(),
            "my-notes".as_ref(),
            "--in".as_ref(),
            parent.path().as_os_str(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("created plugin my_notes.StoragePlugin")
            && said.contains("cargo build --release"),
        "{said}"
    );
    let dir = parent.path().join("my-notes");
    for file in [
        "Cargo.toml",
        "rust-toolchain.toml",
        ".cargo/config.toml",
        "src/lib.rs",
    ] {
        assert!(dir.join(file).is_file(), "{file} was not created");
    }
    // A second time, the directory is there: refused, nothing changed.
    let again = run_warden(
        warden_bin!(),
        [
            "new".as_ref(),
            "my-notes".as_ref(),
            "--in".as_ref(),
            parent.path().as_os_str(),
        ],
        "",
    );
    assert!(!again.status.success());
    assert!(
        stderr_text(&again).contains("already exists"),
        "{}",
        stderr_text(&again)
    );

    // It builds with the command it printed, for wasm32-wasip2 by default.
    let built = cargo_in(&dir, &["build", "--release", "--offline"]);
    let built = if built.status.success() {
        built
    } else {
        // The registry may be needed for the SDK's dependencies.
        cargo_in(&dir, &["build", "--release"])
    };
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let component = dir.join("target/wasm32-wasip2/release/my_notes.wasm");
    assert!(component.is_file(), "{} was not built", component.display());

    // And it answers the seed's transcript under its own identity.
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(&component, plugins.path().join("my_notes.wasm")).unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .backend(Arc::new(MemoryBackend::new()))
        .build()
        .await
        .unwrap();
    assert_eq!(host.plugins()[0].id.as_str(), "my_notes.StoragePlugin");
    let mut replies = Vec::new();
    for line in TRANSCRIPT.lines().take(TRANSCRIPT_REPLIES.len()) {
        replies.extend(say(&host, line).await);
    }
    assert_eq!(replies, TRANSCRIPT_REPLIES);
}

#[test]
fn a_new_python_plugin_has_its_module_and_build() {
    let parent = tempfile::tempdir().unwrap();
    let out = run_warden(
        warden_bin!(),
        [
            "new".as_ref(),
            "todo".as_ref(),
            "--python".as_ref(),
            "--in".as_ref(),
            parent.path().as_os_str(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    let dir = parent.path().join("todo");
    let module = std::fs::read_to_string(dir.join("todo.py")).unwrap();
    assert!(module.contains("class StoragePlugin(Plugin)"), "{module}");
    let build = std::fs::read_to_string(dir.join("build.sh")).unwrap();
    assert!(build.contains("build.py' todo.py -o todo.wasm"), "{build}");
    let bad = run_warden(warden_bin!(), ["new", "Bad Name"], "");
    assert!(!bad.status.success());
    assert!(
        stderr_text(&bad).contains("cannot name a plugin"),
        "{}",
        stderr_text(&bad)
    );
}
