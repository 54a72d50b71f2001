//! Beyond Slack Machine's storage, from a plugin: listing keys, atomic
//! increment and compare-and-swap, scoped shared grants, host-provided
//! shared data and the plugin's own size.

use std::sync::Arc;

use warden::storage::{Backend, MemoryBackend};
use warden::{Host, Incoming, Reply};
use warden_tests::*;

async fn host(names: &[&str], config: &str) -> (Host, Arc<MemoryBackend>, tempfile::TempDir) {
    let backend = Arc::new(MemoryBackend::new());
    let (host, dir) = warden_tests::host(names, config, backend.clone()).await;
    (host, backend, dir)
}

#[tokio::test]
async fn listing_stays_in_the_namespace() {
    let (host, _backend, _dir) = host(
        &[PROBE, PROBE_B],
        "[grants.\"warden.tests.Probe\"]\nshared = \"read-write\"\n",
    )
    .await;
    for command in [
        "set a1 = x",
        "set a2 = x",
        "set b1 = x",
        "shared set a9 = x",
    ] {
        say(&host, command).await;
    }
    let r = host.dispatch(&Incoming::addressed("list a")).await;
    assert_eq!(r[0].replies, ["keys: a1,a2"], "Probe lists its own keys");
    assert_eq!(
        r[1].replies,
        ["keys: a1,a2"],
        "ProbeB its own, which it set too"
    );
    let r = host.dispatch(&Incoming::addressed("list")).await;
    assert_eq!(r[0].replies, ["keys: a1,a2,b1"]);
    let r = host.dispatch(&Incoming::addressed("shared list")).await;
    // The help manual is there too: Probe may read it, so the host wrote it.
    assert_eq!(r[0].replies, ["keys: a9,manual"]);
    assert!(r[1].replies[0].text.starts_with(
        "error: access-denied: plugin warden.tests.ProbeB may not read shared prefix"
    ));
}

#[tokio::test]
async fn increments_and_swaps_are_checked() {
    let (host, _backend, _dir) = host(&[PROBE], "").await;
    assert_eq!(say(&host, "incr n 5").await, ["value: 5"]);
    assert_eq!(say(&host, "incr n -8").await, ["value: -3"]);
    assert_eq!(say(&host, "get n").await, ["value: -3"]);
    assert_eq!(say(&host, "set word = hello").await, ["ok"]);
    let r = say(&host, "incr word 1").await;
    assert!(
        r[0].starts_with("error: invalid-value: ") && r[0].contains("\"word\""),
        "{r:?}"
    );
    assert_eq!(say(&host, "set big = 9223372036854775807").await, ["ok"]);
    let r = say(&host, "incr big 1").await;
    assert!(
        r[0].starts_with("error: invalid-value: ") && r[0].contains("overflow"),
        "{r:?}"
    );

    assert_eq!(say(&host, "cas job - mine").await, ["swapped: true"]);
    assert_eq!(say(&host, "cas job - theirs").await, ["swapped: false"]);
    assert_eq!(say(&host, "cas job mine done").await, ["swapped: true"]);
    assert_eq!(say(&host, "get job").await, ["value: done"]);
    assert_eq!(say(&host, "cas job done -").await, ["swapped: true"]);
    assert_eq!(say(&host, "get job").await, ["none"]);
}

#[tokio::test]
async fn scoped_grants_cover_only_their_prefixes() {
    let config = r#"
        [grants."warden.tests.Probe"]
        read = ["manual", "rbac:"]
        write = ["karma:"]

        [shared_data]
        manual = "Ask me anything."
        "rbac:admins" = ["ada", "grace"]
    "#;
    let (host, backend, _dir) = host(&[PROBE], config).await;
    // Host-provided data, stored as JSON.
    assert_eq!(
        say(&host, "shared get manual").await,
        ["value: \"Ask me anything.\""]
    );
    assert_eq!(
        say(&host, "shared get rbac:admins").await,
        ["value: [\"ada\",\"grace\"]"]
    );
    assert_eq!(say(&host, "shared list rbac:").await, ["keys: rbac:admins"]);
    // Writes only under the write prefix; reads under either.
    assert_eq!(say(&host, "shared incr karma:rust 1").await, ["value: 1"]);
    assert_eq!(say(&host, "shared get karma:rust").await, ["value: 1"]);
    for denied in [
        "shared set manual = changed",
        "shared del rbac:admins",
        "shared get secrets",
        "shared list",
    ] {
        let r = say(&host, denied).await;
        assert!(
            r[0].starts_with("error: access-denied: "),
            "{denied}: {r:?}"
        );
        assert!(
            r[0].contains("[grants.\"warden.tests.Probe\"]"),
            "the missing grant is named: {r:?}"
        );
    }
    let r = say(&host, "shared set manual = changed").await;
    assert!(r[0].contains("write = [...]"), "{r:?}");
    assert_eq!(
        backend.get(b"shared:manual").await.unwrap().as_deref(),
        Some(&b"\"Ask me anything.\""[..]),
        "the denied write changed nothing"
    );
}

#[tokio::test]
async fn a_plugin_sees_its_own_size() {
    let (host, _backend, _dir) = host(&[PROBE, PROBE_B], "").await;
    let r = host.dispatch(&Incoming::addressed("own size")).await;
    assert_eq!(
        (r[0].replies.clone(), r[1].replies.clone()),
        (vec![Reply::plain("own: 0")], vec![Reply::plain("own: 0")])
    );
    say(&host, "set key = 12345").await; // both probes: 3 + 5 bytes each
    let r = host.dispatch(&Incoming::addressed("own size")).await;
    assert_eq!(r[0].replies, ["own: 8"]);
    assert_eq!(r[1].replies, ["own: 8"]);
}
