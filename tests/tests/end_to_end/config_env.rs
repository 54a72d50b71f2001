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
    use_ring();
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
        ("WARDEN_PLUGINS_CACHE_MAX_BYTES", "0", "greater than 0"),
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

/// The `.cwasm` entries in `dir`, none if it does not exist.
fn cache_entries(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "cwasm")
            })
            .count()
    })
}

#[test]
fn the_plugins_table_sets_the_cache_and_flags_override_it() {
    let plugins = plugins_dir(&[STORAGE]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.toml");
    // The default directory, which a configured one replaces.
    let xdg = dir.path().join("xdg");
    let run = |table: &str, args: &[&OsStr], envs: &[(&str, &OsStr)]| {
        std::fs::write(
            &config,
            format!("[storage]\nbackend = \"memory\"\n[plugins]\nwatch = false\n{table}"),
        )
        .unwrap();
        let out = Command::new(warden_bin!())
            .args(["run", "--plugins"])
            .arg(plugins.path())
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("XDG_CACHE_HOME", &xdg)
            .env_remove("WARDEN_CACHE_DIR")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_text(&out));
    };

    // Relative to the config file.
    run("cache_dir = \"cache\"", &[], &[]);
    assert_eq!(cache_entries(&dir.path().join("cache")), 1);
    assert_eq!(cache_entries(&xdg.join("warden")), 0);

    // The environment overrides the file.
    let from_env = dir.path().join("env-cache");
    run(
        "cache_dir = \"cache\"",
        &[],
        &[("WARDEN_PLUGINS_CACHE_DIR", from_env.as_os_str())],
    );
    assert_eq!(cache_entries(&from_env), 1);

    // --cache-dir overrides both, and cache = false.
    let from_flag = dir.path().join("flag-cache");
    run(
        "cache = false\ncache_dir = \"cache\"",
        &["--cache-dir".as_ref(), from_flag.as_os_str()],
        &[],
    );
    assert_eq!(cache_entries(&from_flag), 1);

    // cache = false, or --no-cache, turns the cache off.
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    run("cache = false\ncache_dir = \"cache\"", &[], &[]);
    run("cache_dir = \"cache\"", &["--no-cache".as_ref()], &[]);
    assert!(!dir.path().join("cache").exists());
    run("cache = false", &[], &[]);
    assert!(!xdg.exists());

    // Without a table setting, the default directory.
    run("", &[], &[]);
    assert_eq!(cache_entries(&xdg.join("warden")), 1);
}
