//! Plugins written in JavaScript: a probe plugin exercising the SDK inside
//! a real component (tests/js-plugins/js_probe.js), and the JavaScript
//! storage example (example-plugins/js-storage, built by its `build.sh`)
//! answering like the Rust one, through the library and the command line.
//!
//! The components are built with componentize-js into target/js-plugins,
//! once per test binary and only when their sources changed; their compiled
//! code is cached there too.
//!
//! These need Node.js and componentize-js (`npm ci --prefix guest-sdk/js`).
//! Without them the tests say so on standard error and pass; with
//! `WARDEN_REQUIRE_JS=1` they fail instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use warden::storage::{Backend, MemoryBackend};
use warden::{Host, Incoming};
use warden_tests::componentize::{self, Component};
use warden_tests::*;

const JS_ID: &str = "js_storage.StoragePlugin";
const PROBE_ID: &str = "js_probe.Probe";
const RUST_ID: &str = "example.storage.StoragePlugin";
const REQUIRE_VAR: &str = "WARDEN_REQUIRE_JS";

/// Where the JavaScript components are built, next to the Rust plugins.
fn build_dir() -> PathBuf {
    repo_root().join("target").join("js-plugins")
}

/// The compilation cache of these tests, emptied whenever a plugin is
/// rebuilt (a new build never has the old build's bytes).
fn cache_dir() -> PathBuf {
    build_dir().join("compiled")
}

/// `None` after a notice, or a panic under `WARDEN_REQUIRE_JS=1`.
fn unavailable<T>(why: &str) -> Option<T> {
    warden_tests::unavailable("JavaScript", REQUIRE_VAR, why)
}

const STORAGE_EXAMPLE: Component = Component {
    wasm: "js_storage.wasm",
    source: "example-plugins/js-storage/js_storage.js",
    command: &["sh", "example-plugins/js-storage/build.sh"],
};

const PROBE_PLUGIN: Component = Component {
    wasm: "js_probe.wasm",
    source: "tests/js-plugins/js_probe.js",
    command: &[
        "node",
        "guest-sdk/js/build.mjs",
        "tests/js-plugins/js_probe.js",
        "-o",
    ],
};

fn fingerprint(component: &Component) -> String {
    let root = repo_root();
    let mut files = vec![
        root.join("guest-sdk/js/warden.js"),
        root.join("guest-sdk/js/build.mjs"),
        root.join("guest-sdk/js/package-lock.json"),
        root.join("example-plugins/js-storage/build.sh"),
        root.join(component.source),
    ];
    // The contract's files, and its dependencies' (wasi:config).
    let mut wit: Vec<PathBuf> = ["wit", "wit/deps/config"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root.join(dir)).expect("list the WIT files"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    wit.sort();
    files.extend(wit);
    componentize::fingerprint(&files)
}

/// The built storage example and probe, or `None` (after a notice).
fn js_plugins() -> Option<(PathBuf, PathBuf)> {
    static BUILT: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    match BUILT.get_or_init(build_js_plugins) {
        Ok(built) => Some(built.clone()),
        Err(why) => unavailable(why),
    }
}

fn build_js_plugins() -> Result<(PathBuf, PathBuf), String> {
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    if !node.is_ok_and(|out| out.status.success()) {
        return Err("node is not installed".into());
    }
    let sdk = repo_root().join("guest-sdk/js");
    if !sdk
        .join("node_modules/@bytecodealliance/componentize-js")
        .is_dir()
    {
        return Err(format!(
            "componentize-js is not installed: npm ci --prefix {}",
            sdk.display()
        ));
    }
    let dir = build_dir();
    std::fs::create_dir_all(&dir).expect("create the build directory");
    let stale = componentize::stale(&[&STORAGE_EXAMPLE, &PROBE_PLUGIN], &dir, fingerprint);
    if !stale.is_empty() {
        let _ = std::fs::remove_dir_all(cache_dir());
        for component in &stale {
            if let Err(failed) = componentize::build(component, &dir, fingerprint) {
                panic!("{}", failed.report);
            }
        }
    }
    let built = (dir.join(STORAGE_EXAMPLE.wasm), dir.join(PROBE_PLUGIN.wasm));
    if !stale.is_empty() || !cache_dir().is_dir() {
        componentize::warm_cache(&[&built.0, &built.1], &cache_dir(), "JavaScript");
    }
    Ok(built)
}

async fn host_with(
    rust_plugins: &[&str],
    js: &Path,
    backend: Arc<MemoryBackend>,
) -> (Host, tempfile::TempDir) {
    componentize::host_with(rust_plugins, Some(js), backend, &cache_dir()).await
}

#[tokio::test]
async fn js_plugin_replies_like_the_rust_plugin() {
    let Some((js, _)) = js_plugins() else {
        return;
    };
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host_with(&[STORAGE], &js, backend.clone()).await;

    let (mut from_js, mut from_rust) = (Vec::new(), Vec::new());
    for line in TRANSCRIPT.lines() {
        let outcomes = host.dispatch(&Incoming::addressed(line)).await;
        assert_eq!(outcomes.len(), 2, "{line:?}: {outcomes:?}");
        for o in outcomes {
            assert_eq!(o.error, None, "{} failed on {line:?}", o.plugin);
            match o.plugin.as_str() {
                JS_ID => from_js.push(o.replies),
                RUST_ID => from_rust.push(o.replies),
                other => panic!("unexpected plugin {other}"),
            }
        }
    }
    assert_eq!(from_js, from_rust);
    let from_js: Vec<String> = from_js.into_iter().flatten().map(|r| r.text).collect();
    assert_eq!(from_js[..6], TRANSCRIPT_REPLIES);
    assert!(from_js[6].starts_with("storage size: "), "{from_js:?}");

    // Both store text as the same JSON, so each reads the other's values.
    for text in ["hello world", r#"héllo "wörld" \ ✓"#] {
        host.dispatch(&Incoming::addressed(format!("store {text} under same")))
            .await;
        let stored = backend.get(&plugin_key(JS_ID, "same")).await.unwrap();
        assert_eq!(
            stored,
            backend.get(&plugin_key(RUST_ID, "same")).await.unwrap()
        );
        let json = format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
        assert_eq!(stored.as_deref(), Some(json.as_bytes()));
    }
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn js_sdk_works_inside_a_component() {
    let Some((_, probe)) = js_plugins() else {
        return;
    };
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host_with(&[], &probe, backend.clone()).await;
    assert_eq!(host.plugins()[0].version, "3.0.0");
    let expect = [
        ("js set a = \"héllo\"", "ok"),
        ("js get a", "String \"héllo\""),
        (r#"js set b = {"n":[1,2.5,null,true]}"#, "ok"),
        ("js get b", r#"Object {"n":[1,2.5,null,true]}"#),
        ("js set-bytes c", "ok"),
        ("js get c", "Uint8Array 0,255,16"),
        ("js get never-set", "null"),
        ("js has a", "true"),
        (
            "js shared get x",
            "AccessDenied true: plugin js_probe.Probe may not read",
        ),
        ("js bad value", "Encode: value: cannot store Map"),
        ("js bad key", "InvalidKey: invalid key"),
        ("js state", "inits 1 calls 1"),
        ("js state", "inits 1 calls 2"),
        ("js expire gone in 0", "ok"),
        ("js has gone", "false"),
        ("js expire kept in 0.5", "ok"),
        ("js has kept", "true"),
        ("js message", "js message | console | true | undefined"),
        ("js message xyz", "js message xyz | console | true | xyz"),
    ];
    for (text, reply) in expect {
        let outcomes = host.dispatch(&Incoming::addressed(text)).await;
        assert_eq!(outcomes.len(), 1, "{text}");
        assert_eq!(outcomes[0].error, None, "{text}");
        let replies = &outcomes[0].replies;
        assert!(
            replies.len() == 1 && replies[0].text.starts_with(reply),
            "{text}: {replies:?}"
        );
    }
    let outcomes = host.dispatch(&Incoming::addressed("js fail")).await;
    assert_eq!(outcomes[0].replies, ["about to fail"]);
    assert_eq!(outcomes[0].detail.as_deref(), Some("RangeError: boom"));
    let outcomes = host.dispatch(&Incoming::addressed("js state")).await;
    assert_eq!(outcomes[0].replies, ["inits 1 calls 3"]);

    assert_eq!(
        backend
            .get(&plugin_key(PROBE_ID, "b"))
            .await
            .unwrap()
            .as_deref(),
        Some(&br#"{"n":[1,2.5,null,true]}"#[..])
    );
    assert_eq!(
        backend
            .get(&plugin_key(PROBE_ID, "c"))
            .await
            .unwrap()
            .as_deref(),
        Some(&br#"{"$bytes":"AP8Q"}"#[..])
    );
    host.shutdown().await.unwrap();
}

/// Sends `text` to a host with the probe alone; its one reply.
async fn reply(host: &Host, text: &str) -> String {
    let outcomes = host.dispatch(&Incoming::addressed(text)).await;
    assert_eq!(outcomes.len(), 1, "{text}");
    assert_eq!(outcomes[0].error, None, "{text}");
    let replies = &outcomes[0].replies;
    assert_eq!(replies.len(), 1, "{text}: {replies:?}");
    replies[0].text.clone()
}

/// The storage calls beyond Slack Machine's inside a real component: raw
/// bytes, key pages, counters, compare-and-swap, batches and the namespace
/// size, each with the error it can throw.
#[tokio::test]
async fn js_sdk_has_the_whole_storage_api() {
    let Some((_, probe)) = js_plugins() else {
        return;
    };
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host_with(&[], &probe, backend.clone()).await;
    let expect = [
        // Bytes stored unchanged, and the JSON that `set` stores.
        ("js raw set r = 89504e47", "undefined"),
        ("js raw get r", "Uint8Array 137,80,78,71"),
        ("js raw get never-set", "null"),
        (r#"js set j = [1,"two"]"#, "ok"),
        ("js raw get j", "Uint8Array 91,49,44,34,116,119,111,34,93"),
        // Batches, then pages of their keys.
        (
            r#"js set-many {"l:b": 2, "l:a": "one", "l:c": [3]}"#,
            "undefined",
        ),
        (
            "js get-many l:a,l:b,never-set,l:c",
            r#"Array ["one",2,null,[3]]"#,
        ),
        ("js set-many map", "undefined"),
        ("js get-many m:x,m:y", "Array [1,[true]]"),
        (
            "js list l: limit 2",
            r#"Object {"keys":["l:a","l:b"],"next":"l:b"}"#,
        ),
        (
            "js list l: limit 2 after l:b",
            r#"Object {"keys":["l:c"],"next":null}"#,
        ),
        (
            "js list l: limit 0",
            r#"Object {"keys":["l:a"],"next":"l:a"}"#,
        ),
        ("js list  limit 1", r#"Object {"keys":["j"],"next":"j"}"#),
        ("js keys l:", r#"Array ["l:a","l:b","l:c"]"#),
        ("js keys nothing:", "Array []"),
        (
            "js list l: limit 10 shared",
            "AccessDenied: plugin js_probe.Probe may not read",
        ),
        ("js delete-many l:a,l:c,never-set", "undefined"),
        ("js keys l:", r#"Array ["l:b"]"#),
        (r#"js set-many {"x:1": 1} expires 0"#, "undefined"),
        ("js has x:1", "false"),
        ("js set-many too many", "TooLarge: "),
        ("js keys k", "Array []"),
        ("js many keys p: 2500", "2500 ordered true"),
        // Counters are JSON numbers: `get` reads them, and a number that
        // `set` stored counts on.
        ("js incr n by 5", "Number 5"),
        ("js incr n by 2n", "BigInt 7"),
        ("js get n", "Number 7"),
        ("js incr l:b by 1", "Number 3"),
        ("js incr j by 1", "InvalidValue: "),
        // componentize-js cannot pass a negative s64 to the host; the SDK
        // refuses it before the call instead of trapping.
        (
            "js incr n by -7",
            "RangeError: increment cannot take a negative",
        ),
        (
            "js incr n by -7n",
            "RangeError: increment cannot take a negative",
        ),
        ("js get n", "Number 7"),
        ("js incr big by 9007199254740991", "Number 9007199254740991"),
        ("js incr big by 1", "BigInt 9007199254740992"),
        ("js incr big by 9223372036854775807n", "InvalidValue: "),
        (
            "js incr huge by 9223372036854775807n",
            "BigInt 9223372036854775807",
        ),
        // Compare-and-swap on JSON values and on bytes.
        (r#"js cas job missing -> "a""#, "Boolean true"),
        (r#"js cas job missing -> "b""#, "Boolean false"),
        (r#"js cas job "b" -> "c""#, "Boolean false"),
        ("js get job", r#"String "a""#),
        (r#"js cas job "a" -> {"by":[1]}"#, "Boolean true"),
        ("js get job", r#"Object {"by":[1]}"#),
        (r#"js cas job {"by":[1]} -> missing"#, "Boolean true"),
        ("js has job", "false"),
        ("js cas-bytes rb missing -> 0102", "Boolean true"),
        ("js cas-bytes rb 01 -> 03", "Boolean false"),
        ("js cas-bytes rb 0102 -> 03", "Boolean true"),
        ("js raw get rb", "Uint8Array 3"),
    ];
    for (text, expected) in expect {
        let got = reply(&host, text).await;
        assert!(got.starts_with(expected), "{text}: {got:?}");
    }
    let stored = |key: &str| {
        let backend = backend.clone();
        let key = plugin_key(PROBE_ID, key);
        async move { backend.get(&key).await.unwrap() }
    };
    assert_eq!(stored("r").await.as_deref(), Some(&b"\x89PNG"[..]));
    assert_eq!(stored("n").await.as_deref(), Some(&b"7"[..]));
    assert_eq!(stored("l:a").await, None);
    assert_eq!(stored("k0").await, None, "a failed batch stores nothing");

    // The namespace size counts the bytes of bare keys and values.
    let size = |text: String| -> u64 {
        let size = text.strip_prefix("Number ").expect("a number");
        size.parse().expect("a size")
    };
    let before = size(reply(&host, "js namespace size").await);
    assert!(before > 2500, "{before}");
    assert_eq!(reply(&host, "js raw set ns = 0000").await, "undefined");
    assert_eq!(size(reply(&host, "js namespace size").await), before + 4);
    host.shutdown().await.unwrap();
}

#[test]
fn js_plugin_answers_the_transcript_through_the_cli() {
    let Some((js, _)) = js_plugins() else {
        return;
    };
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(&js, plugins.path().join("js_storage.wasm")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let cache = cache_dir();
    let out = run_warden(
        warden_bin!(),
        run_args(
            plugins.path(),
            data.path(),
            &[
                "--cache-dir".as_ref(),
                cache.as_os_str(),
                "--no-watch".as_ref(),
            ],
        ),
        TRANSCRIPT,
    );
    let log = stderr_text(&out);
    assert!(out.status.success(), "{log}");
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 7, "{lines:#?}\n{log}");
    assert_eq!(lines[..6], TRANSCRIPT_REPLIES, "{log}");
    assert!(lines[6].starts_with("storage size: "), "{lines:?}");
    assert!(
        log.lines()
            .any(|l| l.contains("plugin loaded") && l.contains(JS_ID)),
        "{log}"
    );
}
