//! Hostile plugins: whatever one does, it cannot reach other plugins' data,
//! the shared keyspace beyond its grant, the host's files, environment or
//! network, or take the host or other plugins down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::identity::{Namespace, PluginId};
use warden::storage::keys::encode_key;
use warden::storage::{Backend, MemoryBackend};
use warden::{Host, Incoming, Outcome};
use warden_tests::*;

const HOSTILE_ID: &str = "warden.tests.Hostile";
const PROBE_ID: &str = "warden.tests.Probe";

async fn send(host: &Host, text: &str) -> Vec<Outcome> {
    host.dispatch(&Incoming::addressed(text)).await
}

/// The error of the one call `text` makes, to the hostile plugin.
async fn failure(host: &Host, text: &str) -> String {
    let outcomes = send(host, text).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].plugin.as_str(), HOSTILE_ID);
    outcomes[0]
        .error
        .clone()
        .unwrap_or_else(|| panic!("{text} did not fail: {outcomes:?}"))
}

fn hex(s: &str) -> String {
    let digits: String = s.bytes().map(|b| format!("{b:02x}")).collect();
    format!("hex:{digits}")
}

#[tokio::test]
async fn crafted_keys_stay_in_the_plugins_namespace() {
    let backend = Arc::new(MemoryBackend::new());
    // Data of another plugin, a shared key and a Warden record to attack.
    let victim = Namespace::Plugin(PluginId::new("example.storage.StoragePlugin").unwrap());
    backend
        .set(&encode_key(&victim, "secret"), b"victim", None)
        .await
        .unwrap();
    backend.set(b"shared:motd", b"shared", None).await.unwrap();
    backend
        .set(
            b"warden:binding:example.storage.StoragePlugin",
            b"storage.wasm",
            None,
        )
        .await
        .unwrap();
    let (host, _dir) = host(&[PROBE], "", backend.clone()).await;
    let before = others(&*backend, PROBE_ID).await;

    let escapes = [
        "example.storage.StoragePlugin:secret",
        "plugin:example.storage.StoragePlugin:secret",
        ":secret",
        "::",
        "shared:motd",
        "../example.storage.StoragePlugin/secret",
        "..",
        "warden:binding:example.storage.StoragePlugin",
        "\u{202e}terces",
        "e\u{301}\u{200d}",
        "🔑",
    ];
    for key in escapes {
        assert_eq!(
            say(&host, &format!("set {} = overwritten", hex(key))).await,
            ["ok"],
            "{key:?}"
        );
        assert_eq!(
            say(&host, &format!("get {}", hex(key))).await,
            ["value: overwritten"],
            "{key:?}"
        );
        let raw = encode_key(&Namespace::Plugin(PluginId::new(PROBE_ID).unwrap()), key);
        assert_eq!(
            backend.get(&raw).await.unwrap().as_deref(),
            Some(&b"overwritten"[..]),
            "{key:?}"
        );
        assert_eq!(
            say(&host, &format!("del {}", hex(key))).await,
            ["ok"],
            "{key:?}"
        );
    }
    // Keys that no namespace may hold are refused.
    let refused = [
        ("nul\0byte", "control character"),
        ("new\nline", "control character"),
        ("", "empty"),
    ];
    for (key, why) in refused {
        let reply = say(&host, &format!("set {} = x", hex(key))).await;
        assert!(
            reply[0].starts_with("error: invalid-key: ") && reply[0].contains(why),
            "{key:?}: {reply:?}"
        );
    }
    let long = "k".repeat(513);
    let reply = say(&host, &format!("set {long} = x")).await;
    assert!(
        reply[0].starts_with("error: invalid-key: ") && reply[0].contains("513 bytes"),
        "{reply:?}"
    );
    assert_eq!(
        others(&*backend, PROBE_ID).await,
        before,
        "no other namespace changed"
    );
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_quota_bounds_a_namespace() {
    let backend = Arc::new(MemoryBackend::new());
    backend.set(b"shared:motd", b"shared", None).await.unwrap();
    let config = "[plugin_limits.\"warden.tests.Probe\"]\nmax_stored_bytes = 100\n";
    let (host, _dir) = host(&[PROBE, STORAGE], config, backend.clone()).await;
    let before = others(&*backend, PROBE_ID).await;
    let fill = "x".repeat(90);
    assert_eq!(say(&host, &format!("set a = {fill}")).await, ["ok"]);
    let reply = say(&host, "set b = 0123456789").await;
    assert_eq!(reply.len(), 1);
    assert!(reply[0].starts_with("error: quota-exceeded: "), "{reply:?}");
    assert!(
        reply[0].contains("\"b\"") && reply[0].contains("quota of 100 bytes"),
        "{reply:?}"
    );
    assert_eq!(say(&host, "get b").await, ["none"]);
    // Other plugins keep their own, larger default quota.
    assert_eq!(
        say(&host, &format!("store {fill}{fill} under big"))
            .await
            .len(),
        1
    );
    // Deleting makes room again.
    assert_eq!(say(&host, "del a").await, ["ok"]);
    assert_eq!(say(&host, "set b = 0123456789").await, ["ok"]);
    let after = others(&*backend, PROBE_ID).await;
    assert_eq!(
        after.len(),
        before.len() + 1,
        "only the storage plugin's key was added"
    );
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn wasi_grants_nothing_but_the_clock_and_randomness() {
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host(&[HOSTILE], "", backend).await;
    for path in ["/etc/passwd", "/", ".", "Cargo.toml", "../../Cargo.toml"] {
        let reply = say(&host, &format!("open {path}")).await;
        assert!(reply[0].starts_with("denied: "), "{path}: {reply:?}");
    }
    assert!(say(&host, "ls").await[0].starts_with("denied: "));
    assert_eq!(say(&host, "env").await, ["0 vars, 0 args"]);
    let reply = say(&host, "connect 127.0.0.1:9").await;
    assert!(reply[0].starts_with("denied: "), "{reply:?}");
    let reply = say(&host, "listen").await;
    assert!(reply[0].starts_with("denied: "), "{reply:?}");
    assert_eq!(
        say(&host, "clock").await,
        ["clock ok: true, random ok: true, monotonic ok: true"]
    );
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_stay_inside_the_plugin() {
    let backend = Arc::new(MemoryBackend::new());
    let config = "
        [plugin_limits.\"warden.tests.Hostile\"]
        handler_timeout_ms = 300
        max_memory_bytes = 33554432
    ";
    let (host, _dir) = host(&[HOSTILE, STORAGE], config, backend).await;
    let faults = [
        (
            "spin",
            "timed out: still running or waiting at its time limit of 300 ms \
             ([limits] handler_timeout_ms); the instance was stopped",
        ),
        (
            "grow",
            "trapped: ran out of memory (its limit is 33554432 bytes)",
        ),
        ("recurse", "trapped: stack overflow"),
        ("smash", "trapped: wasm trap: out of bounds memory access"),
    ];
    for (command, expected) in faults {
        assert_eq!(failure(&host, command).await, expected, "{command}");
        let kind = send(&host, command).await[0].failure;
        let expected_kind = if command == "spin" {
            warden::Failure::TimedOut
        } else {
            warden::Failure::Trapped
        };
        assert_eq!(kind, Some(expected_kind), "{command}");
        // Its next message gets a fresh instance; the other plugin is fine.
        assert_eq!(say(&host, "ping").await, ["pong"], "after {command}");
        assert_eq!(
            say(&host, "store v under k").await,
            ["'v' stored under k!"],
            "after {command}"
        );
    }
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_plugins_answer_while_one_spins() {
    let backend = Arc::new(MemoryBackend::new());
    let config = "[plugin_limits.\"warden.tests.Hostile\"]\nhandler_timeout_ms = 3000\n";
    let (host, _dir) = host(&[HOSTILE, STORAGE], config, backend).await;
    let host = Arc::new(host);
    let spinning = {
        let host = host.clone();
        tokio::spawn(async move { failure(&host, "spin").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert_eq!(say(&host, "store v under k").await, ["'v' stored under k!"]);
    assert!(
        !spinning.is_finished(),
        "answered while the other plugin was still spinning"
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert!(spinning.await.unwrap().contains("time limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_faulting_is_paused_not_rebuilt_in_a_loop() {
    let backend = Arc::new(MemoryBackend::new());
    let config = "[plugin_limits.\"warden.tests.Hostile\"]\nhandler_timeout_ms = 50\n";
    let (host, _dir) = host(&[HOSTILE], config, backend).await;
    for _ in 0..3 {
        assert!(failure(&host, "spin").await.contains("time limit"));
    }
    // Paused: the call fails at once, without running the plugin.
    let started = Instant::now();
    let paused = failure(&host, "ping").await;
    assert!(
        paused.starts_with("paused for ") && paused.ends_with("after 3 faults in a row"),
        "{paused}"
    );
    assert!(started.elapsed() < Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(say(&host, "ping").await, ["pong"], "back after the pause");
    // A success resets the count: the next fault does not pause it.
    assert!(failure(&host, "spin").await.contains("time limit"));
    assert_eq!(say(&host, "ping").await, ["pong"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_are_bounded() {
    let backend = Arc::new(MemoryBackend::new());
    let config = "
        [plugin_limits.\"warden.tests.Hostile\"]
        handler_timeout_ms = 1000
        max_calls_in_flight = 1
    ";
    let (host, _dir) = host(&[HOSTILE], config, backend).await;
    let host = Arc::new(host);
    let spinning = {
        let host = host.clone();
        tokio::spawn(async move { failure(&host, "spin").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        failure(&host, "ping").await,
        "busy: 1 calls are already waiting or running"
    );
    assert!(spinning.await.unwrap().contains("time limit"));
    assert_eq!(say(&host, "ping").await, ["pong"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_serves_calls_at_once_only_with_several_instances() {
    for (config, expected) in [
        // One instance (the default): the second call waits for it.
        ("", ["call 1 of this instance", "call 2 of this instance"]),
        // Two: the second call gets an instance of its own.
        (
            "[plugin_limits.\"warden.tests.Hostile\"]\nmax_instances = 2\n",
            ["call 1 of this instance", "call 1 of this instance"],
        ),
    ] {
        let (host, _dir) = host(&[HOSTILE], config, Arc::new(MemoryBackend::new())).await;
        let host = Arc::new(host);
        // Each call holds its instance for a second, so the two overlap.
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let host = host.clone();
                tokio::spawn(async move { say(&host, "counted 1000").await })
            })
            .collect();
        let mut counts = Vec::new();
        for call in calls {
            let replies = call.await.unwrap();
            assert_eq!(replies[0], "done after 1000 ms", "{replies:?}");
            counts.push(replies[1].clone());
        }
        counts.sort();
        assert_eq!(counts, expected, "{config}");
    }
}
