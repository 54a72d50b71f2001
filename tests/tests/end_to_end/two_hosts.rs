//! Two hosts configured for the same Redis server and key prefix share
//! their plugins' data, and keep every namespace and grant on both.
//!
//! The tests start their own `redis-server`; without one they skip (see
//! `warden_tests::redis_server`).

use std::time::Duration;

use warden::{Config, Host, Incoming};
use warden_tests::redis_server::{RedisServer, unique_prefix};
use warden_tests::*;

const PROBE_ID: &str = "warden.tests.Probe";
const PROBE_B_ID: &str = "warden.tests.ProbeB";

/// A host with the probes, storing in Redis through its configuration
/// (`backend = "redis"`, `url`, `prefix`) followed by `grants`.
async fn host(url: &str, prefix: &str, grants: &str) -> (Host, tempfile::TempDir) {
    let dir = plugins_dir(&[PROBE, PROBE_B]);
    let text =
        format!("[storage]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\n{grants}");
    let config = Config::parse(&text, "test.toml".as_ref()).unwrap();
    let host = Host::builder()
        .config(config)
        .plugins_dir(dir.path())
        .build()
        .await
        .unwrap();
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    (host, dir)
}

/// Sends `text` to the bot and returns each plugin's replies: Probe's,
/// then ProbeB's.
async fn say(host: &Host, text: &str) -> [String; 2] {
    let outcomes = host.dispatch(&Incoming::addressed(text)).await;
    let replies: Vec<(String, Vec<String>)> = outcomes
        .into_iter()
        .map(|o| {
            (
                o.plugin.to_string(),
                o.replies.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    match &replies[..] {
        [(a, ra), (b, rb)]
            if a == PROBE_ID && b == PROBE_B_ID && ra.len() == 1 && rb.len() == 1 =>
        {
            [ra[0].clone(), rb[0].clone()]
        }
        _ => panic!("{text}: expected one reply from each probe, got {replies:?}"),
    }
}

fn denied(reply: &str, plugin: &str) -> bool {
    reply.starts_with(&format!("error: access-denied: plugin {plugin} "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_reads_on_one_host_what_it_stored_on_the_other() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let prefix = unique_prefix("two-hosts");
    let (a, _da) = host(&server.url(), &prefix, "").await;
    let (b, _db) = host(&server.url(), &prefix, "").await;

    // Every command reaches both probes, so each stores its own copy of
    // `secret` through A and reads it back through B.
    assert_eq!(say(&a, "set secret = s3cret").await, ["ok", "ok"]);
    assert_eq!(
        say(&b, "get secret").await,
        ["value: s3cret", "value: s3cret"]
    );
    // ProbeB removes its copy (through a host where only ProbeB is
    // loaded). Probe's stays, and ProbeB sees nothing on either host.
    let (_dh, only_b) = host_with_only_probe_b(&server.url(), &prefix).await;
    assert_eq!(say_one(&only_b, "del secret").await, "ok");
    for host in [&a, &b] {
        assert_eq!(say(host, "get secret").await, ["value: s3cret", "none"]);
        assert_eq!(say(host, "has secret").await, ["true", "false"]);
    }
    // A change through B is seen through A.
    assert_eq!(say(&b, "set counter = 2").await, ["ok", "ok"]);
    assert_eq!(say(&a, "get counter").await, ["value: 2", "value: 2"]);
    assert_eq!(say(&a, "del counter").await, ["ok", "ok"]);
    assert_eq!(say(&b, "has counter").await, ["false", "false"]);

    // The key lives on the server under the prefix, in Probe's namespace,
    // whose name is its hash tag.
    assert_eq!(
        server.cli(&["GET", &format!("{prefix}:{{plugin:{PROBE_ID}}}:secret")]),
        "s3cret"
    );

    // An expiry set through one host holds on the other.
    assert_eq!(say(&a, "setex 1 temp = brief").await, ["ok", "ok"]);
    assert_eq!(say(&b, "has temp").await, ["true", "true"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(say(&b, "has temp").await, ["false", "false"]);

    // Both hosts measure the same store.
    let size_a = say(&a, "size").await;
    assert!(size_a[0].starts_with("size: "), "{size_a:?}");
    assert_eq!(say(&b, "size").await, size_a);

    for host in [a, b, only_b] {
        host.shutdown().await.unwrap();
    }
}

/// A host with only ProbeB, on the same store.
async fn host_with_only_probe_b(url: &str, prefix: &str) -> (tempfile::TempDir, Host) {
    let dir = plugins_dir(&[PROBE_B]);
    let text = format!("[storage]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\n");
    let config = Config::parse(&text, "test.toml".as_ref()).unwrap();
    let host = Host::builder()
        .config(config)
        .plugins_dir(dir.path())
        .build()
        .await
        .unwrap();
    (dir, host)
}

/// Sends `text` to a host with one plugin and returns its one reply.
async fn say_one(host: &Host, text: &str) -> String {
    let outcomes = host.dispatch(&Incoming::addressed(text)).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].replies.len(), 1, "{outcomes:?}");
    outcomes[0].replies[0].text.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_grants_hold_on_both_hosts() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let prefix = unique_prefix("two-hosts-shared");
    let grants = r#"
        [grants."warden.tests.Probe"]
        shared = "read-write"
        [grants."warden.tests.ProbeB"]
        shared = "read"
    "#;
    let (a, _da) = host(&server.url(), &prefix, grants).await;
    let (b, _db) = host(&server.url(), &prefix, grants).await;

    // Probe writes through A; ProbeB's write is refused on either host.
    let [probe, probe_b] = say(&a, "shared set motd = hello").await;
    assert_eq!(probe, "ok");
    assert!(denied(&probe_b, PROBE_B_ID), "{probe_b}");
    let [_, probe_b] = say(&b, "shared set motd = overwritten").await;
    assert!(denied(&probe_b, PROBE_B_ID), "{probe_b}");

    // Both read it through B (Probe's write through B went through).
    assert_eq!(
        say(&b, "shared get motd").await,
        ["value: overwritten", "value: overwritten"]
    );
    assert_eq!(say(&a, "shared has motd").await, ["true", "true"]);

    // Probe deletes through B; ProbeB is refused; A sees it gone.
    let [probe, probe_b] = say(&b, "shared del motd").await;
    assert_eq!(probe, "ok");
    assert!(denied(&probe_b, PROBE_B_ID), "{probe_b}");
    assert_eq!(say(&a, "shared get motd").await, ["none", "none"]);
    assert_eq!(say(&a, "shared set motd = again").await[0], "ok");

    // A third host on the same store without grants: no shared access at
    // all, though the value is there.
    let (c, _dc) = host(&server.url(), &prefix, "").await;
    for command in [
        "shared get motd",
        "shared has motd",
        "shared set motd = x",
        "shared del motd",
    ] {
        let [probe, probe_b] = say(&c, command).await;
        assert!(denied(&probe, PROBE_ID), "{command}: {probe}");
        assert!(denied(&probe_b, PROBE_B_ID), "{command}: {probe_b}");
    }
    assert_eq!(
        say(&b, "shared get motd").await,
        ["value: again", "value: again"]
    );

    for host in [a, b, c] {
        host.shutdown().await.unwrap();
    }
}
