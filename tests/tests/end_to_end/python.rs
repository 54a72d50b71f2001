//! Plugins written in Python: the SDK's own unit tests, a probe plugin
//! exercising the SDK inside a real component
//! (tests/python-plugins/python_probe.py), and the Python storage example
//! (example-plugins/python-storage, built by its `build.sh`) answering like
//! the Rust one, through the library and through the command line.
//!
//! The components are built with componentize-py into
//! target/python-plugins, once per test binary and only when their sources
//! changed; their compiled code is cached there too.
//!
//! These need `python3`, and componentize-py 0.25.1 or pip to install it.
//! Without them the tests say so on standard error and pass; with
//! `WARDEN_REQUIRE_PYTHON=1` they fail instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use warden::runtime::Code;
use warden::storage::{Backend, MemoryBackend};
use warden::{Config, Host, Incoming};
use warden_tests::componentize::{self, Component};
use warden_tests::*;

const PYTHON_ID: &str = "python_storage.StoragePlugin";
const RUST_ID: &str = "example.storage.StoragePlugin";
const REQUIRE_VAR: &str = "WARDEN_REQUIRE_PYTHON";

/// Where the Python components are built, next to the Rust plugins.
fn build_dir() -> PathBuf {
    repo_root().join("target").join("python-plugins")
}

/// The compilation cache of these tests. Each componentize-py build gives
/// different bytes, so its entries are dropped whenever a plugin is
/// rebuilt.
fn cache_dir() -> PathBuf {
    build_dir().join("compiled")
}

/// Runs `guest-sdk/python/build.py` with `args`, to completion.
fn build_py(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("python3")
        .arg(repo_root().join("guest-sdk/python/build.py"))
        .args(args)
        .output()
        .expect("run build.py")
}

/// `None` after a notice, or a panic under `WARDEN_REQUIRE_PYTHON=1`.
fn unavailable<T>(why: &str) -> Option<T> {
    warden_tests::unavailable("Python", REQUIRE_VAR, why)
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn python_available() -> bool {
    succeeds("python3", &["--version"])
}

/// The storage example, built by its documented command.
const STORAGE_EXAMPLE: Component = Component {
    wasm: "python_storage.wasm",
    source: "example-plugins/python-storage/python_storage.py",
    command: &["sh", "example-plugins/python-storage/build.sh"],
};

/// A plugin exercising the SDK (`python_probe.Probe`).
const PROBE_PLUGIN: Component = Component {
    wasm: "python_probe.wasm",
    source: "tests/python-plugins/python_probe.py",
    command: &[
        "python3",
        "guest-sdk/python/build.py",
        "tests/python-plugins/python_probe.py",
        "-o",
    ],
};

/// A fingerprint of the files `component` is built from.
fn fingerprint(component: &Component) -> String {
    let root = repo_root();
    let mut files = vec![
        root.join("guest-sdk/python/build.py"),
        root.join("example-plugins/python-storage/build.sh"),
        root.join(component.source),
    ];
    for dir in ["guest-sdk/python/warden", "wit", "wit/deps/config"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|e| e == "py" || e == "wit"))
            .collect();
        found.sort();
        files.extend(found);
    }
    componentize::fingerprint(&files)
}

/// Why the Python plugins are not there.
#[derive(Debug, Clone)]
enum NotBuilt {
    /// Python or componentize-py is missing here: skip, unless required.
    Unavailable(String),
    /// A build failed.
    Failed(String),
}

/// The built components: the storage example and the probe.
type Built = (PathBuf, PathBuf);

/// The built components, or `None` (after a notice) when they cannot be
/// built here. Built once per test binary, and only when their sources
/// changed since the last build.
fn python_plugins() -> Option<Built> {
    static BUILT: OnceLock<Result<Built, NotBuilt>> = OnceLock::new();
    match BUILT.get_or_init(build_python_plugins) {
        Ok(built) => Some(built.clone()),
        Err(NotBuilt::Unavailable(why)) => unavailable(why),
        Err(NotBuilt::Failed(why)) => panic!("{why}"),
    }
}

/// The Python storage example.
fn python_plugin() -> Option<PathBuf> {
    python_plugins().map(|(storage, _)| storage)
}

/// The Python probe.
fn python_probe() -> Option<PathBuf> {
    python_plugins().map(|(_, probe)| probe)
}

fn build_python_plugins() -> Result<Built, NotBuilt> {
    if !python_available() {
        return Err(NotBuilt::Unavailable("python3 is not installed".into()));
    }
    // Without componentize-py, build.py installs it with pip.
    let has_componentize_py = succeeds("componentize-py", &["--version"])
        || succeeds("python3", &["-c", "import componentize_py"]);
    if !has_componentize_py && !succeeds("python3", &["-m", "pip", "--version"]) {
        return Err(NotBuilt::Unavailable(
            "componentize-py is not installed and pip is not available to install it \
             (pip install componentize-py==0.25.1)"
                .into(),
        ));
    }
    let dir = build_dir();
    std::fs::create_dir_all(&dir).expect("create the build directory");
    let stale = componentize::stale(&[&STORAGE_EXAMPLE, &PROBE_PLUGIN], &dir, fingerprint);
    if !stale.is_empty() {
        // The cache's entries for the old builds would never be used again.
        let _ = std::fs::remove_dir_all(cache_dir());
        let results: Vec<Result<(), NotBuilt>> = if has_componentize_py {
            std::thread::scope(|scope| {
                let builds: Vec<_> = stale
                    .iter()
                    .map(|c| scope.spawn(|| build_one(c, &dir)))
                    .collect();
                builds.into_iter().map(|b| b.join().unwrap()).collect()
            })
        } else {
            // The first build installs componentize-py; the others wait.
            stale.iter().map(|c| build_one(c, &dir)).collect()
        };
        results.into_iter().collect::<Result<(), NotBuilt>>()?;
    }
    let built = (dir.join(STORAGE_EXAMPLE.wasm), dir.join(PROBE_PLUGIN.wasm));
    if !stale.is_empty() || !cache_dir().is_dir() {
        componentize::warm_cache(&[&built.0, &built.1], &cache_dir(), "Python");
    }
    Ok(built)
}

fn build_one(component: &Component, dir: &Path) -> Result<(), NotBuilt> {
    componentize::build(component, dir, fingerprint).map_err(|failed| match failed.code {
        // build.py could not install componentize-py.
        Some(3) => NotBuilt::Unavailable(failed.report),
        _ => NotBuilt::Failed(failed.report),
    })
}

async fn host_with(
    rust_plugins: &[&str],
    python: Option<&Path>,
    backend: Arc<MemoryBackend>,
) -> (Host, tempfile::TempDir) {
    componentize::host_with(rust_plugins, python, backend, &cache_dir()).await
}

/// Sends `text` to the bot; the replies of each plugin that answered.
async fn say_each(host: &Host, text: &str) -> Vec<(String, Vec<String>)> {
    host.dispatch(&Incoming::addressed(text))
        .await
        .into_iter()
        .map(|o| {
            assert_eq!(o.error, None, "{} failed on {text:?}", o.plugin);
            let replies = o.replies.iter().map(ToString::to_string).collect();
            (o.plugin.to_string(), replies)
        })
        .collect()
}

/// Sends `text` to a host with one plugin; its replies.
async fn say(host: &Host, text: &str) -> Vec<String> {
    let mut each = say_each(host, text).await;
    assert_eq!(each.len(), 1, "{each:?}");
    each.remove(0).1
}

#[tokio::test]
async fn python_plugin_replies_like_the_rust_plugin() {
    let Some(python) = python_plugin() else {
        return;
    };
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host_with(&[STORAGE], Some(&python), backend.clone()).await;

    let (mut from_python, mut from_rust) = (Vec::new(), Vec::new());
    for line in TRANSCRIPT.lines() {
        let each = say_each(&host, line).await;
        assert_eq!(each.len(), 2, "{line:?}: {each:?}");
        for (plugin, replies) in each {
            match plugin.as_str() {
                PYTHON_ID => from_python.push(replies),
                RUST_ID => from_rust.push(replies),
                other => panic!("unexpected plugin {other}"),
            }
        }
    }
    assert_eq!(from_python, from_rust);
    let from_python: Vec<String> = from_python.into_iter().flatten().collect();
    assert_eq!(from_python[..6], TRANSCRIPT_REPLIES);
    assert!(
        from_python[6].starts_with("storage size: "),
        "{from_python:?}"
    );

    // Both store text as the same JSON, so each reads the other's values.
    for text in ["hello world", r#"héllo "wörld" \ ✓ {"$bytes": 1}"#] {
        say_each(&host, &format!("store {text} under same")).await;
        let stored = backend.get(&plugin_key(PYTHON_ID, "same")).await.unwrap();
        assert_eq!(
            stored,
            backend.get(&plugin_key(RUST_ID, "same")).await.unwrap(),
            "{text}"
        );
        let json = format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
        assert_eq!(stored.as_deref(), Some(json.as_bytes()));
    }
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn python_and_rust_plugins_keep_their_own_keys() {
    let Some(python) = python_plugin() else {
        return;
    };
    // Two hosts, each with one of the plugins, on one store.
    let backend = Arc::new(MemoryBackend::new());
    let (py, _py_dir) = host_with(&[], Some(&python), backend.clone()).await;
    let (rs, _rs_dir) = host_with(&[STORAGE], None, backend.clone()).await;

    assert_eq!(
        say(&py, "store from python under greeting").await,
        ["'from python' stored under greeting!"]
    );
    assert_eq!(
        say(&rs, "store from rust under greeting").await,
        ["'from rust' stored under greeting!"]
    );
    assert_eq!(
        say(&py, "retrieve greeting").await,
        ["'from python' retrieved from <greeting>!"]
    );
    assert_eq!(
        say(&rs, "retrieve greeting").await,
        ["'from rust' retrieved from <greeting>!"]
    );
    assert_eq!(
        say(&py, "delete greeting").await,
        ["data in <greeting> deleted!"]
    );
    assert_eq!(
        say(&py, "does greeting exist?").await,
        ["<greeting> does not exist!"]
    );
    assert_eq!(
        say(&rs, "does greeting exist?").await,
        ["<greeting> exists."]
    );
    assert_eq!(
        say(&rs, "retrieve greeting").await,
        ["'from rust' retrieved from <greeting>!"]
    );
    assert_eq!(
        say(&rs, "store only rust under other").await,
        ["'only rust' stored under other!"]
    );
    assert_eq!(say(&py, "retrieve other").await, ["Key not found!"]);

    assert_eq!(
        backend
            .get(&plugin_key(PYTHON_ID, "greeting"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        backend
            .get(&plugin_key(RUST_ID, "greeting"))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"\"from rust\""[..])
    );
    py.shutdown().await.unwrap();
    rs.shutdown().await.unwrap();
}

#[test]
fn python_plugin_answers_the_transcript_through_the_cli() {
    let Some(python) = python_plugin() else {
        return;
    };
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(&python, plugins.path().join("python_storage.wasm")).unwrap();
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
    let size = lines[6].strip_prefix("storage size: ").expect("size reply");
    let (number, unit) = size.split_once(' ').expect("a number and a unit");
    assert!(number.parse::<f64>().unwrap() > 0.0, "{size}");
    assert!(["B", "KiB", "MiB", "GiB"].contains(&unit), "{size}");
    assert!(
        log.lines()
            .any(|l| l.contains("plugin loaded") && l.contains(PYTHON_ID)),
        "{log}"
    );

    // Without the cache, the compile is announced before it starts: with
    // the baseline compiler, for a plugin this large.
    let out = run_warden(
        warden_bin!(),
        run_args(
            plugins.path(),
            data.path(),
            &["--no-cache".as_ref(), "--no-watch".as_ref()],
        ),
        "",
    );
    let log = stderr_text(&out);
    assert!(out.status.success(), "{log}");
    let compiling = log
        .lines()
        .position(|l| {
            l.contains("compiling") && l.contains("MiB) with the baseline compiler first")
        })
        .unwrap_or_else(|| panic!("no compiling line:\n{log}"));
    let loaded = log
        .lines()
        .position(|l| l.contains("plugin loaded"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(compiling < loaded, "{log}");
}

const PROBE_ID: &str = "python_probe.Probe";

/// The SDK inside a real component: values, errors, expiry, failures,
/// state and logging (tests/python-plugins/python_probe.py).
#[tokio::test]
async fn python_sdk_works_inside_a_component() {
    let Some(probe) = python_probe() else {
        return;
    };
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host_with(&[], Some(&probe), backend.clone()).await;
    let info = host.plugins();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].id.as_str(), PROBE_ID);
    assert_eq!(info[0].version, "2.0.0");
    assert_eq!(info[0].description, "Exercises the Python SDK.");

    let expect = [
        // Values of each type, stored as JSON and read back.
        ("py set s = \"héllo\"", "ok"),
        ("py get s", "str 'héllo'"),
        (r#"py set d = {"n": [1, 2.5, null, true], "e": {}}"#, "ok"),
        ("py get d", "Record {'n': [1, 2.5, None, True], 'e': {}}"),
        ("py set i = -12345678901234567890", "ok"),
        ("py get i", "int -12345678901234567890"),
        ("py set-bytes b = 00ff10", "ok"),
        ("py get b", "bytes b'\\x00\\xff\\x10'"),
        ("py set-tuple t", "ok"),
        ("py get t", "list ['a', [1, b'\\x00']]"),
        ("py has s", "bool True"),
        ("py delete s", "ok"),
        ("py delete s", "ok"),
        ("py has s", "bool False"),
        ("py get s", "NoneType None"),
        ("py get never-set", "NoneType None"),
        // Expiry in seconds or as a timedelta.
        ("py expire gone in 0", "ok"),
        ("py has gone", "bool False"),
        ("py expire kept in 3600", "ok"),
        ("py has kept", "bool True"),
        ("py expire kept-too in 1500 ms", "ok"),
        ("py has kept-too", "bool True"),
        // Storage errors, as the exceptions named after the WIT cases.
        (
            "py store set",
            "Encode: value: cannot store a value of type set",
        ),
        ("py store bad key", "InvalidKey: invalid key"),
        ("py store too large", "TooLarge: "),
        (
            "py shared get motd",
            "AccessDenied: plugin python_probe.Probe may not read",
        ),
        (
            "py shared set motd",
            "AccessDenied: plugin python_probe.Probe may not write",
        ),
        ("py sizes", "int str"),
        // One instance serves every message; `init` ran once.
        ("py state", "inits 1 calls 1"),
        ("py state", "inits 1 calls 2"),
        ("py log hello log", "ok"),
        ("py message", "py message | console | console | True | None"),
        (
            "py message xyz",
            "py message xyz | console | console | True | 'xyz'",
        ),
    ];
    for (text, reply) in expect {
        let replies = say(&host, text).await;
        assert_eq!(replies.len(), 1, "{text}: {replies:?}");
        assert!(replies[0].starts_with(reply), "{text}: {replies:?}");
    }

    // listen_to routes see messages not addressed to the bot.
    let outcomes = host
        .dispatch(&Incoming {
            user: "ada".into(),
            channel: "general".into(),
            ..Incoming::overheard("py message")
        })
        .await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(
        outcomes[0].replies,
        ["py message | ada | general | False | None"]
    );

    // An exception fails the handler, not the plugin.
    for (text, error) in [
        ("py fail", "ValueError: boom"),
        ("py sleep", "RuntimeError: "),
    ] {
        let outcomes = host.dispatch(&Incoming::addressed(text)).await;
        assert_eq!(outcomes.len(), 1);
        let failed = outcomes[0].detail.as_deref().unwrap_or_default();
        assert!(failed.starts_with(error), "{text}: {failed}");
    }
    assert_eq!(say(&host, "py state").await, ["inits 1 calls 3"]);

    // What Rust plugins and the operator's tools see.
    let stored = |key: &str| {
        let backend = backend.clone();
        let key = plugin_key(PROBE_ID, key);
        async move { backend.get(&key).await.unwrap() }
    };
    assert_eq!(
        stored("d").await.as_deref(),
        Some(&br#"{"n":[1,2.5,null,true],"e":{}}"#[..])
    );
    assert_eq!(
        stored("b").await.as_deref(),
        Some(&br#"{"$bytes":"AP8Q"}"#[..])
    );
    assert_eq!(stored("gone").await, None);
    host.shutdown().await.unwrap();
}

/// The storage calls beyond Slack Machine's inside a real component: raw
/// bytes, key pages, counters, compare-and-swap, batches and the namespace
/// size, each with the error it can raise.
#[tokio::test]
async fn python_sdk_has_the_whole_storage_api() {
    let Some(probe) = python_probe() else {
        return;
    };
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host_with(&[], Some(&probe), backend.clone()).await;

    let expect = [
        // Bytes stored unchanged, and the JSON that `set` stores.
        ("py raw set r = 89504e47", "NoneType None"),
        ("py raw get r", r"bytes b'\x89PNG'"),
        ("py raw get never-set", "NoneType None"),
        ("py set j = [1, \"two\"]", "ok"),
        ("py raw get j", r#"bytes b'[1,"two"]'"#),
        // Batches, then pages of their keys.
        (
            r#"py set-many {"l:b": 2, "l:a": "one", "l:c": [3]}"#,
            "NoneType None",
        ),
        (
            "py get-many l:a,l:b,never-set,l:c",
            "list ['one', 2, None, [3]]",
        ),
        ("py list l: limit 2", "KeyPage ['l:a', 'l:b'] 'l:b'"),
        ("py list l: limit 2 after l:b", "KeyPage ['l:c'] None"),
        ("py list l: limit 0", "KeyPage ['l:a'] 'l:a'"),
        ("py list  limit 1", "KeyPage ['j'] 'j'"),
        ("py keys l:", "list ['l:a', 'l:b', 'l:c']"),
        ("py keys nothing:", "list []"),
        (
            "py list l: limit 10 shared",
            "AccessDenied: plugin python_probe.Probe may not read",
        ),
        ("py delete-many l:a,l:c,never-set", "NoneType None"),
        ("py keys l:", "list ['l:b']"),
        (r#"py set-many {"x:1": 1} expires 0"#, "NoneType None"),
        ("py has x:1", "bool False"),
        ("py set-many too many", "TooLarge: "),
        ("py keys k", "list []"),
        ("py many keys m: 2500", "2500 ordered True"),
        // Counters are JSON numbers: `get` reads them, and a number that
        // `set` stored counts on.
        ("py incr n by 5", "int 5"),
        ("py incr n by -7", "int -2"),
        ("py get n", "int -2"),
        ("py incr l:b by 1", "int 3"),
        ("py incr j by 1", "InvalidValue: "),
        (
            "py incr big by 9223372036854775807",
            "int 9223372036854775807",
        ),
        ("py incr big by 1", "InvalidValue: "),
        ("py get big", "int 9223372036854775807"),
        // Compare-and-swap on JSON values and on bytes.
        (r#"py cas job missing -> "a""#, "bool True"),
        (r#"py cas job missing -> "b""#, "bool False"),
        (r#"py cas job "b" -> "c""#, "bool False"),
        ("py get job", "str 'a'"),
        (r#"py cas job "a" -> {"by": [1]}"#, "bool True"),
        ("py get job", "Record {'by': [1]}"),
        (r#"py cas job {"by": [1]} -> missing"#, "bool True"),
        ("py has job", "bool False"),
        ("py cas-bytes rb missing -> 0102", "bool True"),
        ("py cas-bytes rb 01 -> 03", "bool False"),
        ("py cas-bytes rb 0102 -> 03", "bool True"),
        (r"py raw get rb", r"bytes b'\x03'"),
    ];
    for (text, reply) in expect {
        let replies = say(&host, text).await;
        assert_eq!(replies.len(), 1, "{text}: {replies:?}");
        assert!(replies[0].starts_with(reply), "{text}: {replies:?}");
    }
    let stored = |key: &str| {
        let backend = backend.clone();
        let key = plugin_key(PROBE_ID, key);
        async move { backend.get(&key).await.unwrap() }
    };
    assert_eq!(stored("r").await.as_deref(), Some(&b"\x89PNG"[..]));
    assert_eq!(stored("n").await.as_deref(), Some(&b"-2"[..]));
    assert_eq!(stored("l:a").await, None);
    assert_eq!(stored("k0").await, None, "a failed batch stores nothing");

    // The namespace size counts the bytes of bare keys and values.
    let size = || async {
        let reply = say(&host, "py namespace size").await;
        let size = reply[0].strip_prefix("int ").expect("an int");
        size.parse::<u64>().expect("a size")
    };
    let before = size().await;
    assert!(before > 2500, "{before}");
    assert_eq!(say(&host, "py raw set ns = 0000").await, ["NoneType None"]);
    assert_eq!(size().await, before + 4);
    host.shutdown().await.unwrap();
}

/// The SDK's unit tests (guest-sdk/python/tests), on the host's Python.
#[test]
fn python_sdk_unit_tests_pass() {
    if !python_available() {
        let _: Option<()> = unavailable("python3 is not installed");
        return;
    }
    let out: Output = Command::new("python3")
        .args(["-B", "-m", "unittest", "discover", "-s"])
        .arg(repo_root().join("guest-sdk/python/tests"))
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A host over the Rust plugins `rust_plugins` and the components `files`,
/// configured with `config` (TOML), with the tests' compilation cache.
async fn configured_host(
    rust_plugins: &[&str],
    files: &[&Path],
    config: &str,
) -> (Host, tempfile::TempDir) {
    let dir = plugins_dir(rust_plugins);
    let mut builder = Host::builder()
        .config(warden::Config::parse(config, "test.toml".as_ref()).unwrap())
        .plugins_dir(dir.path())
        .backend(Arc::new(MemoryBackend::new()))
        .cache_dir(cache_dir());
    for file in files {
        builder = builder.plugin_file(file);
    }
    let host = builder.build().await.expect("start a host");
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    (host, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_speaks_the_second_contract() {
    let Some(probe) = python_probe() else {
        return;
    };
    let config = "[settings.\"python_probe.Probe\"]\ncolour = \"teal\"\n\
                  [settings.\"warden.tests.Probe\"]\nother = \"not the python probe's\"\n";
    let (host, _dir) = configured_host(&[PROBE], &[&probe], config).await;
    let info = host.plugins();
    let python = info.iter().find(|p| p.id.as_str() == PROBE_ID).unwrap();
    assert_eq!(python.contract, warden::runtime::Contract::V0_2);
    let setting = python
        .routes
        .iter()
        .find(|r| r.handler == "setting")
        .unwrap();
    assert_eq!(setting.doc, "py setting NAME: tells a setting's value");
    assert_eq!(python.schedules.len(), 1);
    assert_eq!(python.schedules[0].cron, "* * * * * * *");
    assert_eq!(python.schedules[0].channel.as_deref(), Some("py-ticks"));

    assert_eq!(say(&host, "py setting colour").await, ["colour = teal"]);
    assert_eq!(say(&host, "py setting other").await, ["other = (not set)"]);
    assert_eq!(say(&host, "py settings").await, ["settings: ['colour']"]);

    let mut msg = Incoming::addressed("py reply");
    msg.user = "U9".into();
    msg.user_name = Some("Bea".into());
    msg.id = Some("1700.5".into());
    let outcomes = host.dispatch(&msg).await;
    let replies = &outcomes[0].replies;
    assert_eq!(
        replies
            .iter()
            .map(|r| (r.text.as_str(), r.thread.as_deref(), r.mention.as_deref()))
            .collect::<Vec<_>>(),
        [
            ("replied", None, Some("U9")),
            ("threaded", Some("1700.5"), None),
            ("said", Some("T42"), None),
        ]
    );
    msg.text = "py who".into();
    let outcomes = host.dispatch(&msg).await;
    assert_eq!(outcomes[0].replies, ["U9 Bea 1700.5 None <@U9>"]);

    // The schedule fires every second into its channel.
    let mut sent = host.outbox().subscribe();
    let tick = tokio::time::timeout(Duration::from_secs(10), sent.recv())
        .await
        .expect("a tick within 10 s")
        .unwrap();
    assert_eq!(tick.channel, "py-ticks");
    assert!(tick.reply.text.starts_with("py tick "), "{:?}", tick.reply);
    host.shutdown().await.unwrap();
}

/// Slack Machine 0.40.1's built-in help plugin, `machine/plugins/builtin/help.py`
/// from its wheel on PyPI, with only its import lines changed, under
/// target/python-plugins/slack-machine/slack_help.py; `None` (after a
/// notice) where PyPI cannot be reached.
fn slack_machine_help() -> Option<PathBuf> {
    let dir = build_dir().join("slack-machine");
    let source = dir.join("slack_help.py");
    if source.is_file() {
        return Some(source);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let fetched = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "slack-machine==0.40.1",
            "--no-deps",
            "--only-binary",
            ":all:",
            "-q",
            "-d",
        ])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run pip");
    if !fetched.status.success() {
        return unavailable(&format!(
            "cannot download slack-machine 0.40.1 from PyPI: {}",
            String::from_utf8_lossy(&fetched.stderr)
        ));
    }
    let extract = "import glob, sys, zipfile\n\
                   wheel = glob.glob(sys.argv[1] + '/slack_machine-0.40.1-*.whl')[0]\n\
                   sys.stdout.write(zipfile.ZipFile(wheel).read('machine/plugins/builtin/help.py').decode())\n";
    let out = Command::new("python3")
        .args(["-c", extract])
        .arg(&dir)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let original = String::from_utf8(out.stdout).unwrap();
    // The import lines, and nothing else, change.
    let imports = [
        (
            "from structlog.stdlib import get_logger",
            "from warden.log import get_logger",
        ),
        (
            "from machine.models.core import HumanHelp, Manual",
            "from warden.models import HumanHelp, Manual",
        ),
        (
            "from machine.plugins.base import MachineBasePlugin",
            "from warden import MachineBasePlugin",
        ),
        (
            "from machine.plugins.decorators import respond_to",
            "from warden import respond_to",
        ),
        (
            "from machine.plugins.message import Message",
            "from warden import Message",
        ),
    ];
    let mut moved = String::new();
    let mut changed = 0;
    for line in original.lines() {
        match imports.iter().find(|(from, _)| line == *from) {
            Some((_, to)) => {
                moved.push_str(to);
                changed += 1;
            }
            None => {
                assert!(
                    !line.starts_with("from ") && !line.starts_with("import ")
                        || line.starts_with("from __future__"),
                    "an import the test does not know: {line}"
                );
                moved.push_str(line);
            }
        }
        moved.push('\n');
    }
    assert_eq!(
        changed,
        imports.len(),
        "help.py's imports changed:\n{original}"
    );
    std::fs::write(&source, moved).unwrap();
    Some(source)
}

#[tokio::test]
async fn slack_machines_help_plugin_runs_with_only_its_imports_changed() {
    if python_plugins().is_none() {
        return;
    }
    let Some(source) = slack_machine_help() else {
        return;
    };
    let wasm = source.with_extension("wasm");
    let stamp = source.with_extension("stamp");
    let sdk = std::fs::read_dir(repo_root().join("guest-sdk/python/warden"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .chain([
            repo_root().join("guest-sdk/python/build.py"),
            repo_root().join("wit/plugin.wit"),
            source.clone(),
        ]);
    let mut files: Vec<PathBuf> = sdk.collect();
    files.sort();
    let fingerprint = componentize::fingerprint(&files);
    if !wasm.is_file()
        || std::fs::read_to_string(&stamp).ok().as_deref() != Some(fingerprint.as_str())
    {
        let built = build_py(&[source.as_os_str(), "-o".as_ref(), wasm.as_os_str()]);
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        std::fs::write(&stamp, &fingerprint).unwrap();
    }
    let config = "[grants.\"slack_help.HelpPlugin\"]\nread = [\"manual\"]\n";
    let (host, _dir) = configured_host(&[STORAGE], &[&wasm], config).await;
    let help = say_each(&host, "help").await;
    let text = &help
        .iter()
        .find(|(id, _)| id == "slack_help.HelpPlugin")
        .unwrap()
        .1[0];
    assert!(
        text.starts_with("This is what I can respond to:\n\n"),
        "{text}"
    );
    assert!(
        text.contains("*Stores, retrieves and deletes text by key:*\n\t*store TEXT under KEY:* keeps TEXT under KEY"),
        "{text}"
    );
    assert!(
        text.contains("*Getting Help:*\n\t*help:* display this help text"),
        "{text}"
    );
    let robot = say_each(&host, "robot help").await;
    let text = &robot
        .iter()
        .find(|(id, _)| id == "slack_help.HelpPlugin")
        .unwrap()
        .1[0];
    assert!(text.starts_with("This is what triggers me:\n\n"), "{text}");
    assert!(text.contains("\t`@warden ^help$`"), "{text}");
}

#[test]
fn the_builder_reports_a_missing_class_before_componentizing() {
    if !python_available() {
        let _: Option<()> = unavailable("python3 is not installed");
        return;
    }
    let started = std::time::Instant::now();
    let out = build_py(&[
        repo_root()
            .join("tests/python-plugins/layout/plugins")
            .as_os_str(),
        "--class".as_ref(),
        "NoSuchPlugin".as_ref(),
        "-o".as_ref(),
        build_dir().join("never.wasm").as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("module plugins defines no Plugin subclass named 'NoSuchPlugin'"),
        "{stderr}"
    );
    // Found by importing the module, not by componentize-py, which takes
    // tens of seconds.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // Without --class, the package's two plugins are both named.
    let out = build_py(&[
        repo_root()
            .join("tests/python-plugins/layout/plugins")
            .as_os_str(),
        "-o".as_ref(),
        build_dir().join("never.wasm").as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("plugins.greeter.GreeterPlugin, plugins.hitchhikers.UltimateQuestionPlugin"),
        "{stderr}"
    );
}

#[tokio::test]
async fn slack_machines_package_layout_builds_with_the_dotted_identity() {
    if python_plugins().is_none() {
        return;
    }
    let wasm = build_dir().join("hitchhikers.wasm");
    let built = build_py(&[
        repo_root()
            .join("tests/python-plugins/layout/plugins/hitchhikers.py")
            .as_os_str(),
        "-o".as_ref(),
        wasm.as_os_str(),
    ]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let (host, _dir) = configured_host(&[], &[&wasm], "").await;
    let info = host.plugins();
    assert_eq!(
        info[0].id.as_str(),
        "plugins.hitchhikers.UltimateQuestionPlugin"
    );
    assert_eq!(
        say(
            &host,
            "what is the answer to the ultimate question about life, the universe and everything"
        )
        .await,
        ["42"]
    );
}

#[tokio::test]
async fn a_class_in_any_module_of_a_package_builds_and_needs_its_settings() {
    if python_plugins().is_none() {
        return;
    }
    let wasm = build_dir().join("greeter.wasm");
    let built = build_py(&[
        repo_root()
            .join("tests/python-plugins/layout/plugins")
            .as_os_str(),
        "--class".as_ref(),
        "GreeterPlugin".as_ref(),
        "-o".as_ref(),
        wasm.as_os_str(),
    ]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    // Without its setting the plugin is not loaded, and the error says why.
    let host = Host::builder()
        .plugin_file(&wasm)
        .backend(Arc::new(MemoryBackend::new()))
        .cache_dir(cache_dir())
        .build()
        .await
        .unwrap();
    assert!(host.plugins().is_empty());
    let skipped = host.skipped();
    assert!(
        matches!(&*skipped[0], warden::LoadError::MissingSetting { id, setting, .. }
            if id.as_str() == "plugins.greeter.GreeterPlugin" && setting == "greeting"),
        "{skipped:?}"
    );
    host.shutdown().await.unwrap();

    let config = "[settings.\"plugins.greeter.GreeterPlugin\"]\ngreeting = \"well met\"\n";
    let (host, _dir) = configured_host(&[], &[&wasm], config).await;
    assert_eq!(
        host.plugins()[0].id.as_str(),
        "plugins.greeter.GreeterPlugin"
    );
    assert_eq!(host.plugins()[0].required_settings, ["greeting"]);
    assert_eq!(say(&host, "hello").await, ["@console: well met"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_dropped_in_serves_baseline_code_then_optimized_code() {
    let Some(python) = python_plugin() else {
        return;
    };
    // A running host, and a cache that does not hold the plugin.
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let backend = Arc::new(MemoryBackend::new());
    let host = Host::builder()
        .plugins_dir(dir.path())
        .backend(backend.clone())
        .cache_dir(cache.path())
        .build()
        .await
        .unwrap();
    assert!(host.plugins().is_empty());
    std::fs::copy(&python, dir.path().join("python_storage.wasm")).unwrap();
    let reloaded = host.reload().await.unwrap();
    assert_eq!(reloaded.added.len(), 1, "{:?}", host.skipped());
    // It serves at once, on code from the baseline compiler, which the
    // cache does not keep.
    assert_eq!(host.plugin_code(PYTHON_ID), Some(Code::Baseline));
    assert_eq!(say(&host, "store v under k").await, ["'v' stored under k!"]);
    // The optimized code takes its place between calls, and is cached.
    let deadline = Instant::now() + Duration::from_secs(300);
    while host.plugin_code(PYTHON_ID) != Some(Code::Optimized) {
        assert!(Instant::now() < deadline, "never optimized");
        assert_eq!(say(&host, "retrieve k").await, ["'v' retrieved from <k>!"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(say(&host, "retrieve k").await, ["'v' retrieved from <k>!"]);
    let files: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let count = |ext: &str| files.iter().filter(|f| f.ends_with(ext)).count();
    assert_eq!(
        count(".cwasm"),
        1,
        "the optimized code is cached: {files:?}"
    );
    assert_eq!(count(".functions"), 1, "and its functions: {files:?}");
    assert_eq!(files.len(), 2, "{files:?}");
    host.shutdown().await.unwrap();

    // A restart takes the optimized code from the cache.
    let again = Host::builder()
        .plugins_dir(dir.path())
        .backend(backend)
        .cache_dir(cache.path())
        .build()
        .await
        .unwrap();
    assert_eq!(again.plugin_code(PYTHON_ID), Some(Code::Optimized));
    assert_eq!(say(&again, "retrieve k").await, ["'v' retrieved from <k>!"]);

    // Another Python plugin, dropped in: its optimized code is compiled
    // mostly from the functions of the first (the same interpreter), and
    // runs.
    let Some(probe) = python_probe() else {
        return;
    };
    std::fs::copy(&probe, dir.path().join("python_probe.wasm")).unwrap();
    let reloaded = again.reload().await.unwrap();
    assert_eq!(reloaded.added.len(), 1, "{:?}", again.skipped());
    while again.plugin_code(PROBE_ID) != Some(Code::Optimized) {
        assert!(Instant::now() < deadline, "the probe was never optimized");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let compiled = again.cache().unwrap();
    let (reused, new) = (compiled.functions_reused(), compiled.functions_compiled());
    assert!(
        reused > new * 4,
        "the probe reused {reused} compiled functions and compiled {new}"
    );
    assert_eq!(say(&again, "py set n = [1, 2.5]").await, ["ok"]);
    assert_eq!(say(&again, "py get n").await, ["list [1, 2.5]"]);
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_code_is_held_to_the_same_deadline() {
    let Some(probe) = python_probe() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&probe, dir.path().join("python_probe.wasm")).unwrap();
    // An empty cache: the probe runs on baseline code.
    let cache = tempfile::tempdir().unwrap();
    let config = Config::parse("[limits]\nhandler_timeout_ms = 1000\n", "t.toml".as_ref()).unwrap();
    let host = Host::builder()
        .config(config)
        .plugins_dir(dir.path())
        .backend(Arc::new(MemoryBackend::new()))
        .cache_dir(cache.path())
        .build()
        .await
        .unwrap();
    assert_eq!(host.plugin_code(PROBE_ID), Some(Code::Baseline));
    let started = Instant::now();
    let outcomes = host.dispatch(&Incoming::addressed("py spin")).await;
    let error = outcomes[0].error.clone().unwrap_or_default();
    assert!(
        error.starts_with("timed out: ") && error.contains("1000 ms"),
        "{outcomes:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // A fresh instance serves the next message.
    assert_eq!(say(&host, "py state").await, ["inits 1 calls 1"]);
    host.shutdown().await.unwrap();
}
