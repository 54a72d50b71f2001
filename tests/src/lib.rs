//! Helpers for Warden's end-to-end tests: where the built plugin components
//! are, throwaway plugins directories, and running the real `warden` binary.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use tempfile::TempDir;
use warden::identity::{Namespace, PluginId};
use warden::storage::Backend;
use warden::storage::keys::encode_key;
use warden::{Config, Host};

pub mod componentize;
pub mod conformance;
pub mod redis_server;
pub mod server;

/// The example storage plugin (`example.storage.StoragePlugin`).
pub const STORAGE: &str = "storage.wasm";
/// The second example plugin (`example.notes.NotesPlugin`).
pub const NOTES: &str = "notes.wasm";
/// The karma example plugin (`example.karma.Karma`).
pub const KARMA: &str = "karma.wasm";
/// A test plugin exposing every storage call (`warden.tests.Probe`).
pub const PROBE: &str = "probe.wasm";
/// The same plugin under another identity (`warden.tests.ProbeB`).
pub const PROBE_B: &str = "probe_b.wasm";
/// A plugin that misbehaves on command (`warden.tests.Hostile`).
pub const HOSTILE: &str = "hostile.wasm";
/// A plugin declaring the invalid identity `not a valid id!`.
pub const BAD_IDENTITY: &str = "bad_identity.wasm";
/// The benchmark plugin (`warden.bench.Bench00`); see [`bench_plugin`].
pub const BENCH: &str = "bench.wasm";
/// A plugin that misbehaves through the raw WIT (`warden.tests.RawHostile0`).
pub const RAW_HOSTILE: &str = "raw_hostile.wasm";
/// The test plugin of the second contract's features
/// (`warden.tests.Contract`); it needs the setting `greeting`.
pub const CONTRACT: &str = "contract.wasm";
/// The example help plugin (`example.help.HelpPlugin`).
pub const HELP: &str = "help.wasm";

/// The example storage plugin as built against the first contract,
/// `warden:plugin@0.1.0` (tests/fixtures/storage-0.1.0.wasm).
pub fn storage_0_1_0() -> PathBuf {
    repo_root().join("tests/fixtures/storage-0.1.0.wasm")
}

/// The marker that ends the benchmark plugin's identity and starts each of
/// its routes.
pub const BENCH_MARKER: &str = "Bench00";

/// The seed transcript and the replies Warden must print for it.
pub const TRANSCRIPT: &str = "store hello world under greeting
retrieve greeting
does greeting exist?
delete greeting
does greeting exist?
retrieve greeting
size
";

/// The replies to [`TRANSCRIPT`] up to the size line.
pub const TRANSCRIPT_REPLIES: [&str; 6] = [
    "'hello world' stored under greeting!",
    "'hello world' retrieved from <greeting>!",
    "<greeting> exists.",
    "data in <greeting> deleted!",
    "<greeting> does not exist!",
    "Key not found!",
];

/// Makes rustls's ring provider the process's default, which the tests'
/// HTTP clients need: the host builds reqwest with TLS but no default
/// provider (it configures its own).
pub fn use_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// Writes `message` to standard error past the test harness's capture, so
/// that a skip shows in the output of a passing test.
fn notice(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// For a test that cannot run here because of `why` (a tool is missing):
/// `None` after a notice that it is skipped, so that the test can return
/// early and pass, or, when the environment variable `require_var` is `1`
/// (as CI sets it), a panic, so that the test cannot be skipped by
/// accident. `kind` names the test in the notice when its thread has no
/// name ("Redis": "a Redis test").
pub fn unavailable<T>(kind: &str, require_var: &str, why: &str) -> Option<T> {
    if std::env::var(require_var).is_ok_and(|v| v == "1") {
        panic!("{why}; {require_var}=1 makes this a failure");
    }
    let test = std::thread::current()
        .name()
        .map_or_else(|| format!("a {kind} test"), str::to_owned);
    notice(&format!(
        "skipping {test}: {why}, or set {require_var}=1 to fail instead"
    ));
    None
}

/// The path of a built component, by file name.
pub fn wasm(name: &str) -> PathBuf {
    let path = Path::new(env!("WARDEN_WASM_DIR")).join(name);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A temporary plugins directory holding copies of the named components,
/// each under its own name.
pub fn plugins_dir(names: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for name in names {
        std::fs::copy(wasm(name), dir.path().join(name)).expect("copy component");
    }
    dir
}

/// Copy number `n` (0 to 99) of the benchmark plugin: every occurrence of
/// [`BENCH_MARKER`] in the component replaced by `Bench{n:02}`. The marker
/// keeps its length, so the copy is a valid component with its own identity
/// (`warden.bench.Bench07`), routes (`Bench07 get ...`) and digest.
pub fn bench_plugin(n: usize) -> Vec<u8> {
    assert!(n < 100, "the marker has room for two digits");
    let original = std::fs::read(wasm(BENCH)).expect("read the benchmark plugin");
    let (out, found) = replace_marker(&original, BENCH_MARKER, &format!("Bench{n:02}"));
    assert!(
        found > 0,
        "{BENCH} does not contain the marker {BENCH_MARKER}"
    );
    out
}

/// A temporary plugins directory holding copies 0 to `count - 1` of the
/// benchmark plugin (see [`bench_plugin`]), as `bench00.wasm`, ...
pub fn bench_plugins_dir(count: usize) -> TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for n in 0..count {
        std::fs::write(
            dir.path().join(format!("bench{n:02}.wasm")),
            bench_plugin(n),
        )
        .expect("write a benchmark plugin");
    }
    dir
}

/// Copy `n` (0 to 9) of the raw hostile plugin, as identity
/// `warden.tests.RawHostile{n}`, whose manifest behaves as `mode` (at most
/// 11 bytes: normal, sleep, spin, bigmeta, ctrlmeta, catchall, heavyroutes).
/// Both fields keep their length, so the copy is a valid component.
pub fn raw_hostile(n: usize, mode: &str) -> Vec<u8> {
    const ID_MARKER: &str = "RawHostile0";
    const MODE_MARKER: &str = "MODE:normal.....";
    assert!(n < 10, "the identity marker has room for one digit");
    assert!(
        mode.len() <= 11 && !mode.contains('.'),
        "the mode field has room for 11 bytes, without dots: {mode:?}"
    );
    let original = std::fs::read(wasm(RAW_HOSTILE)).expect("read the raw hostile plugin");
    let (renamed, found) = replace_marker(&original, ID_MARKER, &format!("RawHostile{n}"));
    assert_eq!(found, 1, "{RAW_HOSTILE} must contain {ID_MARKER} once");
    let (out, found) = replace_marker(&renamed, MODE_MARKER, &format!("MODE:{mode:.<11}"));
    assert_eq!(found, 1, "{RAW_HOSTILE} must contain {MODE_MARKER} once");
    out
}

/// `bytes` with every occurrence of `marker` replaced by `replacement`, of
/// the same length, and how many there were.
fn replace_marker(bytes: &[u8], marker: &str, replacement: &str) -> (Vec<u8>, usize) {
    assert_eq!(
        marker.len(),
        replacement.len(),
        "{replacement:?} must be as long as the marker {marker:?}"
    );
    let marker = marker.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    let mut found = 0;
    while let Some(at) = rest.windows(marker.len()).position(|w| w == marker) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(replacement.as_bytes());
        rest = &rest[at + marker.len()..];
        found += 1;
    }
    out.extend_from_slice(rest);
    (out, found)
}

/// A host over copies of the named components (see [`plugins_dir`]) with
/// the configuration `config` (TOML) and `backend`, which must load them
/// all; and the directory of the copies.
pub async fn host(names: &[&str], config: &str, backend: Arc<dyn Backend>) -> (Host, TempDir) {
    let dir = plugins_dir(names);
    let config = Config::parse(config, "test.toml".as_ref()).unwrap();
    let host = Host::builder()
        .config(config)
        .plugins_dir(dir.path())
        .backend(backend)
        .build()
        .await
        .unwrap();
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    (host, dir)
}

/// The key under which the backend holds `key` of plugin `id`.
pub fn plugin_key(id: &str, key: &str) -> Vec<u8> {
    encode_key(&Namespace::Plugin(PluginId::new(id).unwrap()), key)
}

/// The `warden` command line under test. Cargo tells only integration
/// tests where it is, so this expands in the calling test.
#[macro_export]
macro_rules! warden_bin {
    () => {
        ::std::path::Path::new(env!("CARGO_BIN_EXE_warden-under-test"))
    };
}

/// The arguments `run --plugins PLUGINS --data DATA`, then `extra`.
pub fn run_args<'a>(plugins: &'a Path, data: &'a Path, extra: &[&'a OsStr]) -> Vec<&'a OsStr> {
    let mut args: Vec<&OsStr> = vec![
        "run".as_ref(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs the command line `bin` (see [`warden_bin!`]) with `args` and
/// `stdin` as its input, to completion.
pub fn run_warden<I, S>(bin: &Path, args: I, stdin: &str) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_warden_bytes(bin, args, stdin.as_bytes())
}

/// [`run_warden`] with any bytes as input.
pub fn run_warden_bytes<I, S>(bin: &Path, args: I, stdin: &[u8]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_warden_with(bin, args, &[], stdin)
}

/// [`run_warden_bytes`] with the extra environment `envs`.
pub fn run_warden_with<I, S>(bin: &Path, args: I, envs: &[(&str, &str)], stdin: &[u8]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut child = Command::new(bin)
        .args(args)
        .env("WARDEN_LOG", "info")
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warden");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write to warden's stdin");
    child.wait_with_output().expect("wait for warden")
}

/// Set in a test process that [`in_own_process`] started: the name of the
/// one test it runs.
const OWN_PROCESS_VAR: &str = "WARDEN_TEST_OWN_PROCESS";

/// Runs test `name` (its path in the test binary, e.g.
/// `containment::reads_are_bounded_per_call`) in a process of its own, for
/// a test that measures the whole process (its memory, say), which other
/// tests running beside it in the same binary would disturb.
///
/// Called first in that test: in the test binary's own run it starts the
/// binary again for that one test, fails if the test does not pass there,
/// and returns `false`, so the caller returns; in the process it started it
/// returns `true`, and the caller goes on with the test.
pub fn in_own_process(name: &str) -> bool {
    if std::env::var_os(OWN_PROCESS_VAR).is_some_and(|v| v == name) {
        return true;
    }
    let binary = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(&binary)
        .args([name, "--exact", "--test-threads=1"])
        .env(OWN_PROCESS_VAR, name)
        .stdin(Stdio::null())
        .output()
        .expect("run the test binary");
    // Indented, so that the child's summary is not read as this run's.
    let indent = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed;"),
        "{name} in a process of its own ({}): {}\n{}{}",
        binary.display(),
        out.status,
        indent(&out.stdout),
        indent(&out.stderr)
    );
    false
}

/// Standard output as lines.
pub fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Standard error as text.
pub fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The replies of every handler call `text`, addressed to the bot, makes
/// on `host`, in order.
pub async fn say(host: &warden::Host, text: &str) -> Vec<String> {
    host.dispatch(&warden::Incoming::addressed(text))
        .await
        .into_iter()
        .flat_map(|o| o.replies.into_iter().map(|r| r.to_string()))
        .collect()
}

/// The replies of each handler call `text`, addressed to the bot, makes on
/// `host`, with the identity of the plugin that made them.
pub async fn say_each(host: &warden::Host, text: &str) -> Vec<(String, Vec<String>)> {
    host.dispatch(&warden::Incoming::addressed(text))
        .await
        .into_iter()
        .map(|o| {
            let replies = o.replies.iter().map(ToString::to_string).collect();
            (o.plugin.to_string(), replies)
        })
        .collect()
}

/// Every entry of `backend` outside the namespace of plugin `except`: what
/// a test compares before and after an attack, to show that no other
/// namespace changed.
pub async fn others(
    backend: &dyn Backend,
    except: &str,
) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    use warden::storage::keys::namespace_prefix;
    let own = namespace_prefix(&Namespace::Plugin(
        PluginId::new(except).expect("a valid plugin identity"),
    ));
    let all = backend
        .scan(b"", None, usize::MAX)
        .await
        .expect("scan the store");
    all.into_iter()
        .filter(|e| !e.key.starts_with(&own))
        .map(|e| (e.key, e.value))
        .collect()
}
