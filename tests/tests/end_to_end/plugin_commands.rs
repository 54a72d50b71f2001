//! `warden plugins check`, `warden plugins list` and `warden plugins
//! rebind`: what a plugin file declares, what a directory would load, and
//! moving an identity, without serving.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;

use warden_tests::server::Server;
use warden_tests::*;

const STORAGE_ID: &str = "example.storage.StoragePlugin";

/// An empty component: valid WebAssembly, but not of the plugin world.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
/// An empty core module: WebAssembly, but not a component.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn warden(args: &[&OsStr]) -> Output {
    run_warden(warden_bin!(), args, "")
}

fn check(file: &Path) -> Output {
    warden(&["plugins".as_ref(), "check".as_ref(), file.as_os_str()])
}

fn list(plugins: &Path, data: &Path) -> Output {
    warden(&[
        "plugins".as_ref(),
        "list".as_ref(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ])
}

fn ok_stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr_text(out));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn check_prints_what_a_plugin_declares() {
    let file = wasm(STORAGE);
    let out = ok_stdout(&check(&file));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("{}: ok, a Warden plugin", file.display()));
    assert!(lines.contains(&"  identity:    example.storage.StoragePlugin"));
    assert!(lines.contains(&"  version:     0.1.0"));
    assert!(lines.contains(&"  description: Stores, retrieves and deletes text by key"));
    assert!(
        lines.contains(&r#"  route:       respond-to "retrieve (?P<key>\\w+)" -> retrieve"#),
        "{out}"
    );
    let digest = lines
        .iter()
        .find_map(|l| l.strip_prefix("  sha256:      "))
        .expect(&out);
    assert_eq!(digest.len(), 64, "{digest}");
}

#[test]
fn check_refuses_what_cannot_load_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not wasm").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, CORE_MODULE).unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, EMPTY_COMPONENT).unwrap();
    let missing = dir.path().join("missing.wasm");

    for (file, why) in [
        (&garbage, "not a valid WebAssembly component"),
        (&core, "not a valid WebAssembly component"),
        (&empty, "does not implement the warden:plugin/plugin world"),
        (&wasm(BAD_IDENTITY), "invalid plugin identity"),
        (&missing, "cannot read"),
    ] {
        let out = check(file);
        assert!(!out.status.success(), "{} passed", file.display());
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = stderr_text(&out);
        assert!(
            err.contains(&format!("{}: {why}", file.display())),
            "{}: {err}",
            file.display()
        );
    }
    let err = stderr_text(&check(&empty));
    assert!(err.contains("no export `handle`"), "{err}");
    let err = stderr_text(&check(&wasm(BAD_IDENTITY)));
    assert!(err.contains("not a valid id!"), "{err}");
}

#[test]
fn list_shows_what_would_load_and_why_not() {
    let plugins = plugins_dir(&[STORAGE, NOTES, BAD_IDENTITY]);
    std::fs::write(plugins.path().join("garbage.wasm"), b"not wasm").unwrap();
    std::fs::write(plugins.path().join("empty.wasm"), EMPTY_COMPONENT).unwrap();
    std::fs::copy(wasm(STORAGE), plugins.path().join("zz-copy.wasm")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("db");

    // No store yet: nothing is bound, and listing does not create one.
    let out = ok_stdout(&list(plugins.path(), &store));
    assert!(!store.exists(), "listing created the store");
    let name = |file: &str| plugins.path().join(file).display().to_string();
    let has_line = |out: &str, line: String| {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    };
    has_line(
        &out,
        format!("{}: loads as {STORAGE_ID} 0.1.0", name(STORAGE)),
    );
    has_line(
        &out,
        format!("{}: loads as example.notes.NotesPlugin 0.1.0", name(NOTES)),
    );
    has_line(
        &out,
        format!(
            "{}: skipped: declares plugin identity {STORAGE_ID}, which {} already declared",
            name("zz-copy.wasm"),
            name(STORAGE)
        ),
    );
    for (file, why) in [
        (BAD_IDENTITY, "skipped: invalid plugin identity"),
        ("garbage.wasm", "skipped: not a valid WebAssembly component"),
        (
            "empty.wasm",
            "skipped: does not implement the warden:plugin/plugin world",
        ),
    ] {
        let prefix = format!("{}: {why}", name(file));
        assert!(
            out.lines().any(|l| l.starts_with(&prefix)),
            "{prefix}\n{out}"
        );
    }
    assert!(out.contains("binding:     not bound (no store in"), "{out}");
    assert!(
        out.contains(r#"route:       respond-to "recall (?P<key>\\w+)" -> recall"#),
        "{out}"
    );
    has_line(
        &out,
        format!("2 of 6 files would load from {}", plugins.path().display()),
    );

    // After a run, the identities are bound to their files; another file
    // declaring one is refused.
    let run = run_warden(warden_bin!(), run_args(plugins.path(), &store, &[]), "");
    assert!(run.status.success(), "{}", stderr_text(&run));
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::copy(wasm(STORAGE), elsewhere.path().join(STORAGE)).unwrap();
    std::fs::copy(wasm(STORAGE), elsewhere.path().join("impostor.wasm")).unwrap();
    let out = ok_stdout(&list(elsewhere.path(), &store));
    let blocks: Vec<&str> = out
        .split(&format!("{}/", elsewhere.path().display()))
        .collect();
    let impostor = blocks
        .iter()
        .find(|b| b.starts_with("impostor.wasm:"))
        .expect(&out);
    assert!(
        impostor.starts_with("impostor.wasm: skipped: its identity"),
        "{impostor}"
    );
    assert!(
        impostor.contains(&format!(
            "binding:     bound to storage.wasm; this file is refused until `warden plugins rebind {STORAGE_ID}"
        )),
        "{impostor}"
    );
    let storage = blocks
        .iter()
        .find(|b| b.starts_with("storage.wasm:"))
        .expect(&out);
    assert!(
        storage.contains("binding:     bound to this file"),
        "{storage}"
    );
}

#[test]
fn list_says_when_the_store_is_in_use() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        warden_bin!(),
        run_args(
            plugins.path(),
            data.path(),
            &["--listen".as_ref(), OsStr::new("127.0.0.1:0")],
        ),
        &[],
    );
    let out = ok_stdout(&list(plugins.path(), data.path()));
    assert!(
        out.contains("binding:     unknown (cannot open the store:") && out.contains("in use"),
        "{out}"
    );
    assert!(
        out.contains(&format!("loads as {STORAGE_ID} 0.1.0")),
        "{out}"
    );
    let stopped = server.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn list_fails_on_a_missing_directory() {
    let data = tempfile::tempdir().unwrap();
    let out = list(&data.path().join("nowhere"), data.path());
    assert!(!out.status.success());
    assert!(
        stderr_text(&out).contains("nowhere"),
        "{}",
        stderr_text(&out)
    );
}

/// `warden run` over `plugins` with `data`, to the end of empty input.
fn run_once(plugins: &Path, data: &Path) -> Output {
    let out = warden(&run_args(plugins, data, &[]));
    assert!(out.status.success(), "{}", stderr_text(&out));
    out
}

#[test]
fn check_with_a_store_refuses_a_file_whose_identity_is_bound_elsewhere() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("db");
    let original = plugins.path().join(STORAGE);

    // No store yet: nothing is bound, and checking does not create one.
    let out = warden(&[
        "plugins".as_ref(),
        "check".as_ref(),
        original.as_os_str(),
        "--data".as_ref(),
        store.as_os_str(),
    ]);
    let text = ok_stdout(&out);
    assert!(
        text.contains("  binding:     not bound (no store in"),
        "{text}"
    );
    assert!(!store.exists(), "checking created the store");

    run_once(plugins.path(), &store);
    let impostor = plugins.path().join("impostor.wasm");
    std::fs::copy(wasm(STORAGE), &impostor).unwrap();

    // Without a store, check says what it said before: the file is fine.
    let out = ok_stdout(&check(&impostor));
    assert!(!out.contains("binding:"), "{out}");

    // With one, the file is refused with the reason loading gives.
    let out = warden(&[
        "plugins".as_ref(),
        "check".as_ref(),
        impostor.as_os_str(),
        "--data".as_ref(),
        store.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let refusal = format!(
        "{}: declares plugin identity {STORAGE_ID}, which is bound to the file storage.wasm; \
         {} is not loaded. If it is meant to replace storage.wasm and take over its data, \
         run `warden plugins rebind {STORAGE_ID} impostor.wasm --plugins {} --data {}`",
        impostor.display(),
        impostor.display(),
        plugins.path().display(),
        store.display()
    );
    assert_eq!(stderr_text(&out).trim(), format!("error: {refusal}"));

    // `warden run` on the same store skips it for that reason, and
    // `plugins list` agrees.
    let run = run_once(plugins.path(), &store);
    assert!(
        stderr_text(&run).contains(&refusal),
        "{}",
        stderr_text(&run)
    );
    let listed = ok_stdout(&list(plugins.path(), &store));
    assert!(
        listed.contains(&format!(
            "{}: skipped: its identity {STORAGE_ID} is bound to another file",
            impostor.display()
        )),
        "{listed}"
    );

    // The bound file passes, and says so.
    let out = warden(&[
        "plugins".as_ref(),
        "check".as_ref(),
        original.as_os_str(),
        "--data".as_ref(),
        store.as_os_str(),
    ]);
    assert!(
        ok_stdout(&out).contains("  binding:     bound to this file"),
        "{}",
        ok_stdout(&out)
    );

    // A config file naming the store counts as --data does.
    let config = data.path().join("warden.toml");
    std::fs::write(
        &config,
        format!("[storage]\npath = {:?}\n", store.display().to_string()),
    )
    .unwrap();
    let out = warden(&[
        "plugins".as_ref(),
        "check".as_ref(),
        impostor.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr_text(&out).contains(&format!(
            "run `warden plugins rebind {STORAGE_ID} impostor.wasm --plugins {} --config {}`",
            plugins.path().display(),
            config.display()
        )),
        "{}",
        stderr_text(&out)
    );
}

fn rebind(id: &str, file: &Path, plugins: &Path, data: &Path) -> Output {
    warden(&[
        "plugins".as_ref(),
        "rebind".as_ref(),
        id.as_ref(),
        file.as_os_str(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ])
}

/// The one line a failed command writes to stderr, without `error: `.
fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", stderr_text(out));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = stderr_text(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0]["error: ".len()..].to_owned()
}

#[test]
fn rebind_refuses_unknown_identities_and_missing_files_and_writes_nothing() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("db");
    let file = plugins.path().join(STORAGE);

    // Each refusal says why, and no store is created.
    let e = failure(&rebind("not an id", &file, plugins.path(), &store));
    assert!(
        e.starts_with("cannot rebind: the plugin identity \"not an id\" has ' ' at byte 3"),
        "{e}"
    );
    let e = failure(&rebind("example.Nobody", &file, plugins.path(), &store));
    assert_eq!(
        e,
        format!(
            "cannot rebind example.Nobody: it has no binding, and no plugin in {} declares it",
            plugins.path().display()
        )
    );
    let missing = plugins.path().join("missing.wasm");
    let e = failure(&rebind(
        STORAGE_ID,
        Path::new("missing.wasm"),
        plugins.path(),
        &store,
    ));
    assert_eq!(
        e,
        format!(
            "cannot rebind {STORAGE_ID} to missing.wasm: no such file in the plugins directory \
             (looked for {})",
            missing.display()
        )
    );
    assert!(!store.exists(), "a refused rebind created the store");

    // An identity a plugin in the directory declares may be bound before
    // anything loaded; the bound identity may then move, even to a file
    // that does not declare it, with a warning.
    let out = rebind(STORAGE_ID, Path::new(STORAGE), plugins.path(), &store);
    assert_eq!(
        ok_stdout(&out).trim(),
        format!("{STORAGE_ID} is now bound to {STORAGE}")
    );
    std::fs::copy(wasm(NOTES), plugins.path().join(NOTES)).unwrap();
    let out = rebind(STORAGE_ID, Path::new(NOTES), plugins.path(), &store);
    assert_eq!(
        ok_stdout(&out).trim(),
        format!("{STORAGE_ID} is now bound to {NOTES} (it was bound to {STORAGE})")
    );
    assert!(
        stderr_text(&out).contains(&format!(
            "warning: {} declares plugin identity example.notes.NotesPlugin, not {STORAGE_ID}",
            plugins.path().join(NOTES).display()
        )),
        "{}",
        stderr_text(&out)
    );

    // A refused rebind on an existing store leaves the binding as it was.
    let e = failure(&rebind(
        STORAGE_ID,
        Path::new("missing.wasm"),
        plugins.path(),
        &store,
    ));
    assert!(e.contains("looked for"), "{e}");
    let listed = ok_stdout(&list(plugins.path(), &store));
    assert!(
        listed.contains(&format!(
            "binding:     bound to {NOTES}; this file is refused"
        )),
        "{listed}"
    );
}
