//! Resource containment: a hostile plugin (written against the raw WIT,
//! where the SDK would get in its way) cannot stall, starve or flood the
//! host or the other plugins. Each test tries one attack, checks the exact
//! error, and checks that another plugin kept answering in its usual time
//! and that no other namespace changed.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::identity::{Namespace, PluginId};
use warden::storage::keys::namespace_prefix;
use warden::storage::{Backend, MemoryBackend, SledBackend, SledOptions, SyncPolicy};
use warden::{Config, Host, Incoming, LoadError, Outcome};
use warden_tests::server::Server;
use warden_tests::*;

/// The identity of copy `n` of the raw hostile plugin.
fn raw_id(n: usize) -> String {
    format!("warden.tests.RawHostile{n}")
}

/// A plugins directory with the named components and the given copies of
/// the raw hostile plugin, as `(n, mode)`.
fn dir_with(names: &[&str], raw: &[(usize, &str)]) -> tempfile::TempDir {
    let dir = plugins_dir(names);
    for &(n, mode) in raw {
        std::fs::write(
            dir.path().join(format!("raw_hostile_{n}.wasm")),
            raw_hostile(n, mode),
        )
        .unwrap();
    }
    dir
}

async fn host_over(dir: &Path, config: &str, backend: Arc<dyn Backend>) -> Host {
    Host::builder()
        .config(Config::parse(config, "containment.toml".as_ref()).unwrap())
        .plugins_dir(dir)
        .backend(backend)
        .build()
        .await
        .unwrap()
}

async fn send(host: &Host, text: &str) -> Vec<Outcome> {
    host.dispatch(&Incoming::addressed(text)).await
}

/// The replies of the one call `text` makes, which must be to `plugin`.
async fn replies_of(host: &Host, plugin: &str, text: &str) -> Vec<String> {
    let outcomes = send(host, text).await;
    assert_eq!(outcomes.len(), 1, "{text}: {outcomes:?}");
    assert_eq!(outcomes[0].plugin.as_str(), plugin, "{text}");
    assert_eq!(outcomes[0].error, None, "{text}");
    outcomes[0].replies.iter().map(|r| r.text.clone()).collect()
}

/// The error of the one call `text` makes, which must be to `plugin`.
async fn error_of(host: &Host, plugin: &str, text: &str) -> String {
    let outcomes = send(host, text).await;
    assert_eq!(outcomes.len(), 1, "{text}: {outcomes:?}");
    assert_eq!(outcomes[0].plugin.as_str(), plugin, "{text}");
    outcomes[0]
        .error
        .clone()
        .unwrap_or_else(|| panic!("{text} did not fail: {outcomes:?}"))
}

/// The bytes (keys without the namespace, and values) stored in `id`'s
/// namespace, counted from the store itself.
async fn stored_bytes(backend: &dyn Backend, id: &str) -> u64 {
    let prefix = namespace_prefix(&Namespace::Plugin(PluginId::new(id).unwrap()));
    let all = backend.scan(&prefix, None, usize::MAX).await.unwrap();
    all.iter()
        .map(|e| (e.key.len() - prefix.len() + e.value.len()) as u64)
        .sum()
}

/// Stores and reads back a value through the example storage plugin,
/// returning how long that took.
async fn storage_answers(host: &Host, key: &str) -> Duration {
    let started = Instant::now();
    assert_eq!(
        say(host, &format!("store v under {key}")).await,
        [format!("'v' stored under {key}!")]
    );
    assert_eq!(
        say(host, &format!("retrieve {key}")).await,
        [format!("'v' retrieved from <{key}>!")]
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_past_the_time_limit_is_stopped() {
    let dir = dir_with(&[STORAGE], &[(0, "normal")]);
    let config = format!(
        "[plugin_limits.\"{}\"]\nhandler_timeout_ms = 500\n",
        raw_id(0)
    );
    let host = host_over(dir.path(), &config, Arc::new(MemoryBackend::new())).await;
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    for attack in ["sleep 60000", "poll 60000"] {
        let started = Instant::now();
        let e = error_of(&host, &raw_id(0), attack).await;
        let took = started.elapsed();
        assert_eq!(
            e,
            "timed out: still running or waiting at its time limit of 500 ms \
             ([limits] handler_timeout_ms); the instance was stopped",
            "{attack}"
        );
        assert!(took < Duration::from_secs(3), "{attack} took {took:?}");
        // The instance was rebuilt.
        assert_eq!(replies_of(&host, &raw_id(0), "ping").await, ["pong"]);
        let outcomes = send(&host, "sleep 60000").await;
        assert_eq!(outcomes[0].failure, Some(warden::Failure::TimedOut));
    }
    // Honest waits within the limit still work.
    assert_eq!(
        replies_of(&host, &raw_id(0), "sleep 50").await,
        ["slept 50 ms"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_delays_only_its_own_replies() {
    // The hostile plugin has a catch-all listen-to route that sleeps 10 s
    // on every message; its limit is 1 s.
    let dir = dir_with(&[STORAGE], &[(1, "catchall")]);
    let config = format!(
        "[plugin_limits.\"{}\"]\nhandler_timeout_ms = 1000\n",
        raw_id(1)
    );
    let backend = Arc::new(MemoryBackend::new());
    let host = Arc::new(host_over(dir.path(), &config, backend.clone()).await);
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());

    // Two messages at once: each answers at the late plugin's deadline with
    // the storage plugin's reply and an error for the late one, and the
    // second does not wait for the first.
    let started = Instant::now();
    let sends: Vec<_> = ["store a under ka", "store b under kb"]
        .into_iter()
        .map(|text| {
            let host = host.clone();
            tokio::spawn(async move { send(&host, text).await })
        })
        .collect();
    for (send, key) in sends.into_iter().zip(["ka", "kb"]) {
        let outcomes = send.await.unwrap();
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        // Listen-to routes come first, then respond-to routes.
        assert_eq!(outcomes[0].plugin.as_str(), raw_id(1));
        assert!(outcomes[0].replies.is_empty());
        assert_eq!(outcomes[0].failure, Some(warden::Failure::TimedOut));
        // The second message waits for the instance the first holds: its
        // deadline may come while it waits, or while it starts the new
        // instance that replaces the one stopped at the first's deadline.
        let error = outcomes[0].error.as_deref().unwrap();
        let error = error
            .strip_prefix("cannot start a new instance: ")
            .unwrap_or(error);
        assert!(
            error.starts_with("timed out: ") && error.contains("1000 ms"),
            "{error}"
        );
        assert_eq!(outcomes[1].plugin.as_str(), "example.storage.StoragePlugin");
        assert_eq!(outcomes[1].error, None);
        let value = &key[1..];
        assert_eq!(
            outcomes[1].replies,
            [format!("'{value}' stored under {key}!")]
        );
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(took >= Duration::from_millis(950), "took {took:?}");

    // The storage plugin's own data is all there.
    let stored = others(&*backend, &raw_id(1)).await;
    assert!(stored.keys().any(|k| k.ends_with(b"StoragePlugin:ka")));
}

#[test]
fn over_http_and_the_console_a_late_plugin_gets_an_error_at_its_deadline() {
    let dir = dir_with(&[STORAGE], &[(1, "catchall")]);
    let data = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("warden.toml");
    std::fs::write(
        &config_file,
        format!(
            "[plugin_limits.\"{}\"]\nhandler_timeout_ms = 1000\n",
            raw_id(1)
        ),
    )
    .unwrap();
    let plugins = dir.path().as_os_str();
    let args: Vec<&OsStr> = vec![
        "run".as_ref(),
        "--config".as_ref(),
        config_file.as_os_str(),
        "--plugins".as_ref(),
        plugins,
        "--data".as_ref(),
        data.path().as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ];
    let server = Server::start(warden_bin!(), args, &[]);
    use_ring();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let answer: serde_json::Value = client
        .post(server.url("/v1/messages"))
        .json(&serde_json::json!({"text": "store v under k"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3000), "took {took:?}");
    assert_eq!(answer["replies"][0]["text"], "'v' stored under k!");
    assert_eq!(answer["errors"][0]["plugin"], raw_id(1));
    let error = answer["errors"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("timed out: "), "{error}");
    drop(server);

    // The console answers the same way, one line per reply or error.
    let started = Instant::now();
    let out = run_warden(
        warden_bin!(),
        [
            "run".as_ref(),
            "--console".as_ref(),
            "--config".as_ref(),
            config_file.as_os_str(),
            "--plugins".as_ref(),
            plugins,
            "--data".as_ref(),
            data.path().as_os_str(),
        ],
        "retrieve k\n",
    );
    let took = started.elapsed();
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}\n{}", stderr_text(&out));
    assert!(
        lines[0].starts_with(&format!("error: {}: timed out: ", raw_id(1))),
        "{lines:?}"
    );
    assert_eq!(lines[1], "'v' retrieved from <k>!");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_never_returns_delays_start_by_its_deadline_only() {
    let dir = dir_with(&[STORAGE], &[(2, "sleep"), (3, "spin")]);
    let config = "[limits]\nhandler_timeout_ms = 1000\n";
    let started = Instant::now();
    let host = host_over(dir.path(), config, Arc::new(MemoryBackend::new())).await;
    let took = started.elapsed();
    // Both time out side by side, each at its own deadline.
    assert!(took < Duration::from_secs(5), "start took {took:?}");
    let skipped = host.skipped();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    for (error, n) in skipped.iter().zip([2, 3]) {
        assert!(
            matches!(
                &**error,
                LoadError::TimedOut {
                    stage: "manifest",
                    limit_ms: 1000,
                    ..
                }
            ),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "raw_hostile_{n}.wasm: manifest did not return within the time limit of 1000 ms"
            )),
            "{text}"
        );
    }
    assert!(storage_answers(&host, "k").await < Duration::from_secs(1));

    // A reload does not try the unchanged files again: the same errors are
    // reported, and it takes less than one deadline.
    let started = Instant::now();
    host.reload().await.unwrap();
    let took = started.elapsed();
    let again = host.skipped();
    assert_eq!(again.len(), 2);
    for (before, after) in skipped.iter().zip(&again) {
        assert!(Arc::ptr_eq(before, after), "{after} was tried again");
    }
    assert!(took < Duration::from_millis(900), "reload took {took:?}");

    // Once the file changes, it is tried again.
    std::fs::write(
        dir.path().join("raw_hostile_2.wasm"),
        raw_hostile(2, "normal"),
    )
    .unwrap();
    let reloaded = host.reload().await.unwrap();
    assert_eq!(reloaded.added.len(), 1, "{reloaded:?}");
    assert_eq!(host.skipped().len(), 1);
    assert_eq!(replies_of(&host, &raw_id(2), "ping").await, ["pong"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_text_is_bounded_and_plain() {
    let dir = dir_with(&[STORAGE], &[(4, "bigmeta"), (5, "ctrlmeta")]);
    let host = host_over(dir.path(), "", Arc::new(MemoryBackend::new())).await;
    let skipped: Vec<String> = host.skipped().iter().map(|e| e.to_string()).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped[0].ends_with(&format!(
            "raw_hostile_4.wasm: invalid manifest: plugin {}: its version is 1000000 bytes long; \
             at most 64 are allowed",
            raw_id(4)
        )),
        "{}",
        skipped[0]
    );
    assert!(
        skipped[1].contains(&format!(
            "raw_hostile_5.wasm: invalid manifest: plugin {}: its version \"1.0\\n0\" holds \
             control or formatting characters",
            raw_id(5)
        )),
        "{}",
        skipped[1]
    );
    for e in &skipped {
        assert!(e.len() < 1000, "{e}");
    }
    assert!(storage_answers(&host, "k").await < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_keys_cannot_bypass_the_quota() {
    let dir = dir_with(&[STORAGE], &[(0, "normal")]);
    let id = raw_id(0);
    let config = format!("[plugin_limits.\"{id}\"]\nmax_stored_bytes = 1000000\n");
    let data = tempfile::tempdir().unwrap();
    for backend in [
        Arc::new(MemoryBackend::new()) as Arc<dyn Backend>,
        Arc::new(SledBackend::open(data.path()).unwrap()),
    ] {
        let host = host_over(dir.path(), &config, backend.clone()).await;
        storage_answers(&host, "k").await;
        let before = others(&*backend, &id).await;

        // Each round keeps 100 kB more while deleting one key four times:
        // the quota stops it at 1 MB, in round 8 (nine kept values and the
        // one to delete do not fit).
        let reply = replies_of(&host, &id, "refill k 100000 30").await;
        assert_eq!(reply.len(), 1);
        assert!(
            reply[0].starts_with("error at round 8: Error::QuotaExceeded("),
            "{reply:?}"
        );
        let stored = stored_bytes(&*backend, &id).await;
        assert!(stored <= 1_000_000, "stored {stored} bytes");
        assert_eq!(
            replies_of(&host, &id, "usage").await,
            [format!("usage {stored}")],
            "the count is exact"
        );

        // A key listed many times in set-many counts once.
        assert_eq!(replies_of(&host, &id, "deletemany k-0 1").await, ["ok"]);
        let stored = stored_bytes(&*backend, &id).await;
        assert_eq!(replies_of(&host, &id, "setmany dup 100000 8").await, ["ok"]);
        let with_dup = stored_bytes(&*backend, &id).await;
        assert_eq!(with_dup, stored + 100_003);
        assert_eq!(
            replies_of(&host, &id, "usage").await,
            [format!("usage {with_dup}")]
        );

        assert_eq!(
            others(&*backend, &id).await,
            before,
            "no other namespace changed"
        );
        host.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_instances_cannot_overshoot_the_quota() {
    let dir = dir_with(&[], &[(0, "normal")]);
    let id = raw_id(0);
    let config =
        format!("[plugin_limits.\"{id}\"]\nmax_stored_bytes = 1000000\nmax_instances = 4\n");
    // sled that waits for the disk on every write: writes are slow and
    // overlap.
    let data = tempfile::tempdir().unwrap();
    let options = SledOptions {
        sync: SyncPolicy::Always,
        sync_interval_ms: 500,
    };
    let backend = Arc::new(SledBackend::open_with(data.path(), options).unwrap());
    let host = Arc::new(host_over(dir.path(), &config, backend.clone()).await);
    let writes: Vec<_> = (0..16)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move { send(&host, &format!("setbig k{i} 300000")).await })
        })
        .collect();
    let mut ok = 0;
    for write in writes {
        let outcomes = write.await.unwrap();
        match outcomes[0].replies[0].text.as_str() {
            "ok" => ok += 1,
            refused => assert!(
                refused.starts_with("error: Error::QuotaExceeded("),
                "{refused}"
            ),
        }
    }
    let stored = stored_bytes(&*backend, &id).await;
    assert!(stored <= 1_000_000, "stored {stored} bytes");
    assert_eq!(ok, 3, "three 300 kB values fit in 1 MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_and_errors_are_bounded() {
    let dir = dir_with(&[STORAGE], &[(0, "normal")]);
    let id = raw_id(0);
    let host = host_over(dir.path(), "", Arc::new(MemoryBackend::new())).await;
    let replies = replies_of(&host, &id, "saymany 100000").await;
    assert_eq!(replies.len(), 100);
    let outcomes = send(&host, "errbig 40000000").await;
    let e = outcomes[0].detail.as_deref().unwrap();
    assert!(e.len() < 4200, "{} bytes", e.len());
    assert!(
        e.ends_with("… [cut: 40000000 bytes in all]"),
        "{}",
        &e[4000..]
    );
    let shown = outcomes[0].error.as_deref().unwrap();
    assert!(
        shown.starts_with("failed; see the host log (reference E"),
        "{shown}"
    );
    assert!(storage_answers(&host, "k").await < Duration::from_secs(1));
}

/// The host's log and console output, for a hostile plugin's text.
#[test]
fn plugin_text_cannot_flood_or_forge_the_log_or_the_console() {
    let dir = dir_with(&[STORAGE], &[(0, "normal")]);
    let data = tempfile::tempdir().unwrap();
    let input = "logbig 40000000\nlogmany 250000\nlogforge\nprintmany 20000\n\
                 saymany 100000\nsayforge\nerrforge\nerrbig 1000000\nstore v under k\nping\n";
    let started = Instant::now();
    // What is bounded here is the output, not the time: the floods get
    // time enough on a busy machine (an unoptimized build logs a few
    // hundred thousand records in seconds).
    let out = run_warden_with(
        warden_bin!(),
        [
            "run".as_ref(),
            "--console".as_ref(),
            "--plugins".as_ref(),
            dir.path().as_os_str(),
            "--data".as_ref(),
            data.path().as_os_str(),
        ],
        &[("WARDEN_LIMITS_HANDLER_TIMEOUT_MS", "30000")],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(started.elapsed() < Duration::from_secs(120));
    let log = stderr_text(&out);
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();

    // The log: bounded, one line per record, nothing forged.
    assert!(log.len() < 200_000, "the log has {} bytes", log.len());
    assert!(
        log.lines().all(|l| l.len() < 5000),
        "a log line is too long"
    );
    assert!(!log.contains('\u{1b}') && !log.contains('\r') && !log.contains('\u{202e}'));
    assert!(
        !log.lines().any(|l| l.starts_with("2026-12-01T00:00:00")),
        "a plugin forged a log line:\n{log}"
    );
    assert!(
        log.contains("innocent\\n2026-12-01T00:00:00.000000Z ERROR"),
        "{log}"
    );
    let record_lines = log.lines().filter(|l| l.contains("record ")).count();
    assert!(
        record_lines <= 200,
        "{record_lines} records of one call logged"
    );
    let stdout_lines_logged = log.lines().filter(|l| l.contains("stdout line")).count();
    assert!(
        stdout_lines_logged <= 200,
        "{stdout_lines_logged} stdout lines logged"
    );
    assert!(log.contains("dropped"), "{log}");
    assert_eq!(
        log.matches("replies over the limit of 100 per call were dropped")
            .count(),
        1,
        "{log}"
    );

    // The console: every reply framed, the forged ones recognisable.
    assert!(stdout.len() < 100_000, "{} bytes", stdout.len());
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"first line"), "{stdout}");
    assert!(
        lines.contains(&"  error: example.storage.StoragePlugin: forged"),
        "{stdout}"
    );
    assert!(lines.contains(&"\\u{001b}[2Jcleared"), "{stdout}");
    // A handler's error reaches the log (escaped), not the console.
    assert!(
        log.contains("handler failed: bad\\n<greeting> exists."),
        "{log}"
    );
    assert!(!lines.contains(&"<greeting> exists."), "{stdout}");
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|l| l.starts_with(&format!("error: {}: ", raw_id(0))))
    );
    assert!(lines.contains(&"'v' stored under k!"));
    assert_eq!(lines.last(), Some(&"pong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expensive_routes_are_refused_at_load() {
    let dir = dir_with(&[STORAGE], &[(6, "heavyroutes")]);
    let host = host_over(dir.path(), "", Arc::new(MemoryBackend::new())).await;
    let skipped = host.skipped();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        matches!(
            &*skipped[0],
            LoadError::BadRoute {
                source: warden::router::RouteError::PluginBudget { .. },
                ..
            }
        ),
        "{}",
        skipped[0]
    );
    let text = skipped[0].to_string();
    assert!(
        text.contains(&format!("plugin {}: its routes take", raw_id(6)))
            && text.contains("[routing] max_plugin_route_bytes"),
        "{text}"
    );
    // The other plugin answers, on long accented messages too.
    assert!(storage_answers(&host, "k").await < Duration::from_secs(1));
    let long = format!("store {} under k", "é".repeat(2000));
    let started = Instant::now();
    assert_eq!(say(&host, &long).await.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(1));

    // A message over the limit is refused before matching, with the reason.
    let over = Incoming::addressed("é".repeat(5000));
    let e = host.check_message(&over).unwrap_err().to_string();
    assert_eq!(
        e,
        "the message is 10000 bytes long; at most 4096 bytes are matched against plugins' \
         routes ([routing] max_message_bytes)"
    );
    assert!(host.dispatch(&over).await.is_empty());

    // The host's budget counts every plugin: with room for one plugin's
    // routes, the second is refused, naming the budget.
    let dir = dir_with(&[], &[(7, "normal"), (8, "normal")]);
    let one = host_over(dir.path(), "", Arc::new(MemoryBackend::new())).await;
    let cost = one.plugins()[0]
        .routes
        .iter()
        .map(|r| r.cost())
        .sum::<usize>();
    let config = format!(
        "[routing]\nmax_plugin_route_bytes = {cost}\nmax_host_route_bytes = {}\n",
        cost + cost / 2
    );
    let host = host_over(dir.path(), &config, Arc::new(MemoryBackend::new())).await;
    assert_eq!(host.plugins().len(), 1);
    let text = host.skipped()[0].to_string();
    assert!(
        text.contains("raw_hostile_8.wasm") && text.contains("[routing] max_host_route_bytes"),
        "{text}"
    );
}

/// The peak resident memory of this process since the last call, in bytes
/// (Linux: VmHWM, reset through `clear_refs`).
fn peak_resident_since_last() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak resident memory");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_bounded_per_call() {
    // The peak memory is the whole process's: measured with no other test
    // running beside this one.
    if !in_own_process("containment::reads_are_bounded_per_call") {
        return;
    }
    let dir = dir_with(&[STORAGE], &[(0, "normal")]);
    let id = raw_id(0);
    let backend = Arc::new(MemoryBackend::new());
    let host = host_over(dir.path(), "", backend.clone()).await;
    assert_eq!(replies_of(&host, &id, "setbig k 900000").await, ["ok"]);
    let before = others(&*backend, &id).await;
    let resident = peak_resident_since_last();

    // One 900 kB key listed 1000 times would copy 900 MB into the plugin.
    let reply = replies_of(&host, &id, "getmany k 1000").await;
    assert_eq!(reply.len(), 1);
    assert!(
        reply[0].starts_with("error: Error::TooLarge(")
            && reply[0].contains("900000000")
            && reply[0].contains("max_read_bytes"),
        "{reply:?}"
    );
    let peak = peak_resident_since_last();
    assert!(
        peak < resident + 300 * 1024 * 1024,
        "the host's peak memory rose from {resident} to {peak} bytes"
    );
    // Within the budget, duplicates are answered.
    assert_eq!(
        replies_of(&host, &id, "getmany k 5").await,
        ["got 5 values, 4500000 bytes"]
    );
    assert_eq!(others(&*backend, &id).await, before);
    assert!(storage_answers(&host, "k").await < Duration::from_secs(1));
}
