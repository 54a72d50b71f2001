//! `warden storage`: the operator's commands on the store.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use warden_tests::*;

const STORAGE_ID: &str = "example.storage.StoragePlugin";

fn storage(data: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut all: Vec<&OsStr> = vec!["storage".as_ref(), "--data".as_ref(), data.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    run_warden_bytes(warden_bin!(), all, stdin)
}

fn ok_bytes(out: Output) -> Vec<u8> {
    assert!(out.status.success(), "{}", stderr_text(&out));
    out.stdout
}

fn ok(out: Output) -> String {
    String::from_utf8(ok_bytes(out)).unwrap()
}

fn run(plugins: &Path, data: &Path, stdin: &str) {
    let out = run_warden(warden_bin!(), run_args(plugins, data, &[]), stdin);
    assert!(out.status.success(), "{}", stderr_text(&out));
}

#[test]
fn operators_see_and_change_plugin_data() {
    let plugins = plugins_dir(&[STORAGE, NOTES]);
    let data = tempfile::tempdir().unwrap();
    run(
        plugins.path(),
        data.path(),
        "store hello world under greeting\nremember hi as greeting\n",
    );

    let ls = ok(storage(data.path(), &["ls"], b""));
    let lines: Vec<_> = ls.lines().collect();
    assert_eq!(
        lines,
        [
            "plugin:example.notes.NotesPlugin\tgreeting\t4 B\t-",
            "plugin:example.storage.StoragePlugin\tgreeting\t13 B\t-",
            "warden\tbinding:example.notes.NotesPlugin\t10 B\t-",
            "warden\tbinding:example.storage.StoragePlugin\t12 B\t-",
        ]
    );
    assert_eq!(
        ok(storage(
            data.path(),
            &["get", "--plugin", STORAGE_ID, "greeting"],
            b""
        )),
        "\"hello world\""
    );

    // Change a plugin's value and share one; the plugin sees the change.
    ok(storage(
        data.path(),
        &["set", "--plugin", STORAGE_ID, "greeting", "\"changed\""],
        b"",
    ));
    ok(storage(
        data.path(),
        &[
            "set",
            "--shared",
            "motd",
            "\"hi all\"",
            "--expires-in",
            "3600",
        ],
        b"",
    ));
    let shared = ok(storage(data.path(), &["ls", "--shared"], b""));
    assert!(
        shared.starts_with("shared\tmotd\t8 B\texpires in 3"),
        "{shared}"
    );
    let out = run_warden(
        warden_bin!(),
        run_args(plugins.path(), data.path(), &[]),
        "retrieve greeting\n",
    );
    assert_eq!(stdout_lines(&out), ["'changed' retrieved from <greeting>!"]);

    let size = ok(storage(data.path(), &["size"], b""));
    assert!(
        size.contains("plugin:example.notes.NotesPlugin\t1 key\t12 B"),
        "{size}"
    );
    assert!(size.contains("shared\t1 key\t12 B"), "{size}");
    assert!(size.contains("warden\t2 keys\t"), "{size}");
    assert!(
        size.lines().last().unwrap().starts_with("total\t5 keys\t"),
        "{size}"
    );

    ok(storage(
        data.path(),
        &["delete", "--plugin", STORAGE_ID, "greeting"],
        b"",
    ));
    let missing = storage(
        data.path(),
        &["get", "--plugin", STORAGE_ID, "greeting"],
        b"",
    );
    assert!(!missing.status.success());
    assert!(
        stderr_text(&missing)
            .contains("no key \"greeting\" in plugin example.storage.StoragePlugin")
    );
    let unscoped = storage(data.path(), &["get", "greeting"], b"");
    assert!(!unscoped.status.success());
    assert!(
        stderr_text(&unscoped).contains("--plugin ID or --shared"),
        "{}",
        stderr_text(&unscoped)
    );
}

#[test]
fn export_and_import_round_trip_binary_values_and_expiries() {
    let from = tempfile::tempdir().unwrap();
    let binary: Vec<u8> = (0..=255).collect();
    ok(storage(
        from.path(),
        &["set", "--plugin", "a.Binary", "blob"],
        &binary,
    ));
    ok(storage(
        from.path(),
        &[
            "set",
            "--shared",
            "soon",
            "gone later",
            "--expires-in",
            "3600",
        ],
        b"",
    ));
    ok(storage(
        from.path(),
        &["set", "--plugin", "a.Text", "ключ ✓", "значение"],
        b"",
    ));
    let exported = ok(storage(from.path(), &["export"], b""));
    assert_eq!(exported.lines().count(), 3, "{exported}");

    let to = tempfile::tempdir().unwrap();
    let imported = storage(to.path(), &["import"], exported.as_bytes());
    assert!(
        stderr_text(&imported).contains("imported 3 entries"),
        "{}",
        stderr_text(&imported)
    );
    assert_eq!(
        ok_bytes(storage(
            to.path(),
            &["get", "--plugin", "a.Binary", "blob"],
            b""
        )),
        binary
    );
    assert_eq!(
        ok(storage(
            to.path(),
            &["get", "--plugin", "a.Text", "ключ ✓"],
            b""
        )),
        "значение"
    );
    let soon = ok(storage(to.path(), &["ls", "--shared"], b""));
    assert!(
        soon.starts_with("shared\tsoon\t10 B\texpires in 3"),
        "{soon}"
    );
    // A second export is the same, but for expiry times computed anew from
    // the time left (to the millisecond).
    let again = ok(storage(to.path(), &["export"], b""));
    let (first, second) = (split_expiry(&exported), split_expiry(&again));
    assert_eq!(first.0, second.0);
    for (a, b) in first.1.iter().zip(&second.1) {
        assert!(a.abs_diff(*b) < 1000, "{a} vs {b}");
    }
}

/// The export with `expires_at_ms` values cut out, and those values.
fn split_expiry(export: &str) -> (String, Vec<u64>) {
    let mut rest = String::new();
    let mut times = Vec::new();
    for part in export.split("\"expires_at_ms\":") {
        match part.find('}') {
            Some(end) if !rest.is_empty() => {
                times.push(part[..end].parse().unwrap());
                rest.push_str(&part[end..]);
            }
            _ => rest.push_str(part),
        }
    }
    assert_eq!(times.len(), 1, "{export}");
    (rest, times)
}

#[test]
fn data_moves_from_sled_to_redis_and_back_with_nothing_lost() {
    let Some(redis) = warden_tests::redis_server::RedisServer::start() else {
        return; // skipped, and said why
    };
    let binary: Vec<u8> = (0..=255).rev().collect();
    let from = tempfile::tempdir().unwrap();
    ok(storage(
        from.path(),
        &["set", "--plugin", "a.Binary", "blob"],
        &binary,
    ));
    ok(storage(
        from.path(),
        &["set", "--shared", "soon", "later", "--expires-in", "3600"],
        b"",
    ));
    ok(storage(
        from.path(),
        &["set", "--plugin", "a.Text", "ключ ✓", "значение"],
        b"",
    ));
    let exported = ok(storage(from.path(), &["export"], b""));

    let config = from.path().join("redis.toml");
    let prefix = warden_tests::redis_server::unique_prefix("move");
    std::fs::write(
        &config,
        format!(
            "[storage]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let on_redis = |args: &[&str], stdin: &[u8]| {
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        storage(from.path(), &all, stdin)
    };
    let imported = on_redis(&["import"], exported.as_bytes());
    assert!(
        stderr_text(&imported).contains("imported 3 entries"),
        "{}",
        stderr_text(&imported)
    );
    assert_eq!(
        ok_bytes(on_redis(&["get", "--plugin", "a.Binary", "blob"], b"")),
        binary
    );
    let listed = ok(on_redis(&["ls", "--shared"], b""));
    assert!(
        listed.starts_with("shared\tsoon\t5 B\texpires in 3"),
        "{listed}"
    );
    let from_redis = ok(on_redis(&["export"], b""));

    let back = tempfile::tempdir().unwrap();
    ok(storage(back.path(), &["import"], from_redis.as_bytes()));
    let again = ok(storage(back.path(), &["export"], b""));
    let (first, last) = (split_expiry(&exported), split_expiry(&again));
    assert_eq!(first.0, last.0, "the same entries came back");
    assert!(
        first.1[0].abs_diff(last.1[0]) < 2000,
        "the expiry survived the trip"
    );
}

#[test]
fn a_running_host_holding_the_store_is_named() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let mut host = Command::new(warden_bin!())
        .arg("run")
        .arg("--plugins")
        .arg(plugins.path())
        .arg("--data")
        .arg(data.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the host has opened the store and loaded its plugin.
    let mut stdin = host.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"store x under k\n").unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(host.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, "'x' stored under k!\n");

    let out = storage(data.path(), &["ls"], b"");
    drop(stdin);
    host.wait().unwrap();
    assert!(!out.status.success());
    let err = stderr_text(&out);
    assert!(
        err.contains("in use by another process")
            && err.contains(&data.path().display().to_string()),
        "{err}"
    );
}

/// The one line a failed command writes to stderr.
fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", stderr_text(out));
    let err = stderr_text(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(!err.contains("Caused by"), "{err}");
    lines[0].to_owned()
}

#[test]
fn reading_commands_refuse_a_missing_store_and_do_not_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nowhere");
    for args in [
        &["ls"][..],
        &["ls", "--shared"],
        &["get", "--shared", "k"],
        &["size"],
        &["export"],
    ] {
        let out = storage(&data, args, b"");
        assert_eq!(
            error_line(&out),
            format!(
                "error: no store at {}: the directory does not exist \
                 (check --data, or storage.path in the config)",
                data.display()
            ),
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!data.exists(), "{args:?} created the store");
    }

    // The store a config file names counts the same.
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!("[storage]\npath = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let out = run_warden(
        warden_bin!(),
        [
            "storage".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "ls".as_ref(),
        ],
        "",
    );
    assert!(error_line(&out).contains("does not exist"));
    assert!(!data.exists());

    // Writing creates it.
    ok(storage(&data, &["set", "--shared", "k", "v"], b""));
    assert_eq!(ok(storage(&data, &["get", "--shared", "k"], b"")), "v");
}

#[test]
fn counts_and_errors_read_right() {
    let data = tempfile::tempdir().unwrap();
    let one = concat!(r#"{"namespace":"shared","key":"k","value":"v"}"#, "\n");
    let imported = storage(data.path(), &["import"], one.as_bytes());
    assert_eq!(stderr_text(&imported).trim(), "imported 1 entry");
    let size = ok(storage(data.path(), &["size"], b""));
    let lines: Vec<&str> = size.lines().collect();
    assert_eq!(lines.len(), 2, "{size}");
    assert_eq!(lines[0], "shared\t1 key\t2 B");
    assert!(
        lines[1].starts_with("total\t1 key\t2 B\t(store size "),
        "{size}"
    );
    let exported = storage(data.path(), &["export"], b"");
    assert_eq!(stderr_text(&exported).trim(), "exported 1 entry");

    let bad = format!("{one}\n[1, 2]\n");
    let out = storage(data.path(), &["import"], bad.as_bytes());
    assert_eq!(
        error_line(&out),
        "error: line 3 is not a JSON object: it is an array"
    );
    let out = storage(data.path(), &["import"], b"not json\n");
    assert_eq!(
        error_line(&out),
        "error: line 1 is not a JSON object: expected ident at column 2"
    );

    // An invalid identity: the reason once, on one line.
    let out = storage(data.path(), &["get", "--plugin", "bad id", "k"], b"");
    let line = error_line(&out);
    assert!(
        line.starts_with("error: --plugin bad id: the plugin identity \"bad id\" has ' '"),
        "{line}"
    );
}

#[test]
fn a_redis_store_of_the_first_layout_moves_when_a_command_first_opens_it() {
    let Some(redis) = warden_tests::redis_server::RedisServer::start() else {
        return; // skipped, and said why
    };
    // Keys as an earlier Warden stored them: `{prefix}:{backend key}`.
    redis.cli(&["SET", "old:plugin:a.Old:greeting", "\"hello\""]);
    redis.cli(&["SET", "old:shared:motd", "\"hi\""]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("redis.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"old\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let listed = storage(
        dir.path(),
        &["--config", config.to_str().unwrap(), "ls"],
        b"",
    );
    let log = stderr_text(&listed);
    assert!(
        log.contains("moving the Redis store to the indexed layout"),
        "{log}"
    );
    assert!(log.contains("the Redis store is indexed"), "{log}");
    let listed = ok(listed);
    assert!(listed.contains("plugin:a.Old\tgreeting\t7 B"), "{listed}");
    assert!(listed.contains("shared\tmotd\t4 B"), "{listed}");
    assert_eq!(redis.cli(&["GET", "old:#layout"]), "2");
    // Once moved, nothing moves again.
    let again = storage(
        dir.path(),
        &["--config", config.to_str().unwrap(), "size"],
        b"",
    );
    assert!(
        !stderr_text(&again).contains("moving"),
        "{}",
        stderr_text(&again)
    );
    assert!(ok(again).contains("total\t2 keys\t"));
}
