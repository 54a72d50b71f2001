//! Environment overrides of the configuration file, through the command
//! line.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use reqwest::blocking::Client;
use serde_json::{Value, json};
use warden_tests::server::Server;
use warden_tests::*;

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let plugins = plugins_dir(&[STORAGE]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        "[storage]\nbackend = \"sled\"\n[limits]\nmax_value_bytes = 1000\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        warden_bin!(),
        [
            "run".as_ref(),
            "--plugins".as_ref(),
            plugins.path().as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
        ] as [&OsStr; 7],
        &[
            // HTTP without --listen.
            ("WARDEN_HTTP_LISTEN", "127.0.0.1:0"),
            ("WARDEN_STORAGE_BACKEND", "memory"),
            ("WARDEN_LIMITS_MAX_VALUE_BYTES", "8"),
        ],
    );
    let client = Client::builder().no_proxy().build().unwrap();
    let answer: Value = client
        .post(server.url("/v1/messages"))
        .json(&json!({"text": "store much too long under k"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["replies"], json!([]), "{answer:#}");
    let error = answer["errors"][0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer:#}"));
    // The sender sees a reference; the log has the handler's error.
    let reference = error
        .strip_prefix("failed; see the host log (reference ")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{error}"));
    let stopped = server.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped
            .stderr
            .lines()
            .any(|l| l.contains(&format!("reference={reference}")) && l.contains("at most 8")),
        "{}",
        stopped.stderr
    );
    assert!(
        !data.exists(),
        "the memory backend does not create sled's directory"
    );

    // --listen wins over WARDEN_HTTP_LISTEN.
    let server = Server::start(
        warden_bin!(),
        [
            "run".as_ref(),
            "--plugins".as_ref(),
            plugins.path().as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ] as [&OsStr; 5],
        &[
            ("WARDEN_HTTP_LISTEN", "192.0.2.1:9"),
            ("WARDEN_STORAGE_BACKEND", "memory"),
        ],
    );
    assert!(server.addr().ip().is_loopback());
    let stopped = server.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn invalid_overrides_fail_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value, detail) in [
        ("WARDEN_LIMITS_HANDLER_TIMEOUT_MS", "soon", "soon"),
        ("WARDEN_STORAGE_BACKEND", "floppy", "floppy"),
        ("WARDEN_STORAGE_BAKEND", "memory", "bakend"),
        ("WARDEN_HTTP_MAX_BODY_BYTES", "0", "greater than 0"),
    ] {
        let out = Command::new(warden_bin!())
            .args(["run", "--plugins"])
            .arg(dir.path())
            .env(var, value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{var}={value} was accepted");
        let err = stderr_text(&out);
        assert!(
            err.contains(&format!("invalid environment variable {var}")) && err.contains(detail),
            "{var}={value}: {err}"
        );
    }
}
