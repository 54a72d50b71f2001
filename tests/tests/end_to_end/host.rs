//! The host driven through its library API with the real plugins.

use std::sync::Arc;
use std::time::Duration;

use warden::storage::{Backend, MemoryBackend};
use warden::{Host, Incoming, LoadError};
use warden_tests::*;

/// Entries in the probe's namespace, expired ones included until purged
/// (Warden's own records, such as identity bindings, are not counted).
fn probe_entries(backend: &MemoryBackend) -> usize {
    backend.stored_entries() - backend.stored_entries_with_prefix(b"warden:")
}

#[tokio::test]
async fn plugins_with_the_same_key_see_their_own_values() {
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host(&[STORAGE, NOTES], "", backend.clone()).await;
    assert_eq!(
        say(&host, "store from storage under greeting").await,
        ["'from storage' stored under greeting!"]
    );
    assert_eq!(
        say(&host, "remember from notes as greeting").await,
        ["noted 'from notes' as <greeting>."]
    );
    assert_eq!(
        say(&host, "retrieve greeting").await,
        ["'from storage' retrieved from <greeting>!"]
    );
    assert_eq!(
        say(&host, "recall greeting").await,
        ["<greeting> is 'from notes'."]
    );
    assert_eq!(
        say(&host, "delete greeting").await,
        ["data in <greeting> deleted!"]
    );
    assert_eq!(
        say(&host, "recall greeting").await,
        ["<greeting> is 'from notes'."]
    );

    // The backend holds each value under its plugin's namespace, JSON-encoded.
    assert_eq!(
        backend
            .get(&plugin_key("example.storage.StoragePlugin", "greeting"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        backend
            .get(&plugin_key("example.notes.NotesPlugin", "greeting"))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"\"from notes\""[..])
    );
    assert_eq!(
        backend.get(b"greeting").await.unwrap(),
        None,
        "no bare key is ever written"
    );
    host.shutdown().await.unwrap();
}

const PROBE_ID: &str = "warden.tests.Probe";
const PROBE_B_ID: &str = "warden.tests.ProbeB";

fn replies(pairs: &[(&str, &str)]) -> Vec<(String, Vec<String>)> {
    pairs
        .iter()
        .map(|(id, r)| (id.to_string(), vec![r.to_string()]))
        .collect()
}

#[tokio::test]
async fn shared_keys_follow_the_grants() {
    let backend = Arc::new(MemoryBackend::new());
    let config = r#"
        [grants."warden.tests.Probe"]
        shared = "read-write"
        [grants."warden.tests.ProbeB"]
        shared = "read"
    "#;
    let (host, _dir) = host(&[PROBE, PROBE_B], config, backend.clone()).await;

    // Every probe command reaches both probes, Probe first (file order).
    let r = say_each(&host, "shared set motd = hello").await;
    assert_eq!(r[0], (PROBE_ID.into(), vec!["ok".into()]));
    assert_eq!(r[1].0, PROBE_B_ID);
    assert!(r[1].1[0].starts_with("error: access-denied: "), "{r:?}");
    assert!(
        r[1].1[0].contains(PROBE_B_ID) && r[1].1[0].contains("motd"),
        "{r:?}"
    );

    assert_eq!(
        say_each(&host, "shared get motd").await,
        replies(&[(PROBE_ID, "value: hello"), (PROBE_B_ID, "value: hello")])
    );
    assert_eq!(
        say_each(&host, "shared has motd").await,
        replies(&[(PROBE_ID, "true"), (PROBE_B_ID, "true")])
    );
    // Probe deletes the key; ProbeB, with a read grant, is refused.
    let r = say_each(&host, "shared del motd").await;
    assert_eq!(r[0].1, ["ok"]);
    assert!(r[1].1[0].starts_with("error: access-denied: "), "{r:?}");
    assert_eq!(backend.get(b"shared:motd").await.unwrap(), None);
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_grant_means_no_shared_access() {
    let backend = Arc::new(MemoryBackend::new());
    backend.set(b"shared:motd", b"hello", None).await.unwrap();
    let (host, _dir) = host(&[PROBE], "", backend.clone()).await;
    for command in [
        "shared get motd",
        "shared has motd",
        "shared set motd = x",
        "shared del motd",
    ] {
        let r = say(&host, command).await;
        assert_eq!(r.len(), 1);
        assert!(
            r[0].starts_with("error: access-denied: plugin warden.tests.Probe"),
            "{command}: {r:?}"
        );
    }
    assert_eq!(
        backend.get(b"shared:motd").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn shared_keys_cannot_name_private_keys() {
    let backend = Arc::new(MemoryBackend::new());
    let config = "[grants.\"warden.tests.ProbeB\"]\nshared = \"read-write\"\n";
    let (host, _dir) = host(&[PROBE, PROBE_B], config, backend.clone()).await;
    let r = say_each(&host, "set secret = s3cret").await;
    assert_eq!(r, replies(&[(PROBE_ID, "ok"), (PROBE_B_ID, "ok")]));
    // Slack Machine's shared keys are raw, so these would reach Probe's key there.
    for spelled in [
        "warden.tests.Probe:secret",
        "plugin:warden.tests.Probe:secret",
    ] {
        let r = say_each(&host, &format!("shared get {spelled}")).await;
        assert_eq!(r[1], (PROBE_B_ID.into(), vec!["none".into()]), "{spelled}");
        let r = say_each(&host, &format!("shared set {spelled} = overwritten")).await;
        assert_eq!(r[1].1, ["ok"]);
    }
    assert_eq!(
        backend
            .get(&plugin_key(PROBE_ID, "secret"))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"s3cret"[..])
    );
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn keys_expire_and_their_space_is_reclaimed() {
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host(&[PROBE], "", backend.clone()).await;
    assert_eq!(say(&host, "setex 1 temp = soon gone").await, ["ok"]);
    assert_eq!(say(&host, "set kept = here").await, ["ok"]);
    assert_eq!(say(&host, "get temp").await, ["value: soon gone"]);
    assert_eq!(say(&host, "has temp").await, ["true"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(probe_entries(&backend), 2, "expired but not yet purged");
    assert_eq!(say(&host, "has temp").await, ["false"]);
    host.purge_expired().await.unwrap();
    assert_eq!(
        probe_entries(&backend),
        1,
        "the purge reclaimed the expired key"
    );
    assert_eq!(say(&host, "get temp").await, ["none"]);
    assert_eq!(say(&host, "get kept").await, ["value: here"]);
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn expiry_on_sled_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let sled = || -> Arc<dyn Backend> {
        Arc::new(warden::storage::SledBackend::open(data.path()).unwrap())
    };
    let (host1, _dir) = host(&[PROBE], "", sled()).await;
    assert_eq!(say(&host1, "setex 1 temp = v").await, ["ok"]);
    assert_eq!(say(&host1, "set kept = v").await, ["ok"]);
    host1.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (host2, _dir) = host(&[PROBE], "", sled()).await;
    assert_eq!(say(&host2, "get temp").await, ["none"]);
    assert_eq!(say(&host2, "get kept").await, ["value: v"]);
    host2.shutdown().await.unwrap();
}

#[tokio::test]
async fn storage_errors_reach_the_plugin() {
    let backend = Arc::new(MemoryBackend::new());
    let config = "[limits]\nmax_key_bytes = 8\nmax_value_bytes = 4\n";
    let (host, _dir) = host(&[PROBE], config, backend.clone()).await;
    let r = say(&host, "set waytoolongkey = v").await;
    assert!(
        r[0].starts_with("error: invalid-key: ") && r[0].contains("waytoolongkey"),
        "{r:?}"
    );
    let r = say(&host, "set k = 12345").await;
    assert!(
        r[0].starts_with("error: too-large: ") && r[0].contains("5 bytes"),
        "{r:?}"
    );
    // hex:00 is a NUL byte, which no key may contain.
    let r = say(&host, "set hex:610062 = v").await;
    assert!(r[0].starts_with("error: invalid-key: "), "{r:?}");
    assert_eq!(probe_entries(&backend), 0);
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_trapping_handler_is_isolated_and_its_instance_rebuilt() {
    let backend = Arc::new(MemoryBackend::new());
    let (host, _dir) = host(&[PROBE, STORAGE], "", backend).await;
    assert_eq!(say(&host, "set before = 1").await, ["ok"]);
    let outcomes = host.dispatch(&Incoming::addressed("panic")).await;
    assert_eq!(outcomes.len(), 1);
    let error = outcomes[0].error.as_deref().expect("the trap is reported");
    assert!(error.contains("unreachable"), "{error}");
    // The other plugin is unaffected, and the probe answers again.
    assert_eq!(say(&host, "store x under k").await, ["'x' stored under k!"]);
    assert_eq!(say(&host, "get before").await, ["value: 1"]);
    // A handler's own error reaches the log, not the sender, who gets a
    // short, stable line with the reference of the log entry.
    let outcomes = host.dispatch(&Incoming::addressed("fail")).await;
    assert_eq!(outcomes[0].detail.as_deref(), Some("probe asked to fail"));
    assert_eq!(outcomes[0].failure, Some(warden::Failure::Handler));
    let error = outcomes[0].error.as_deref().unwrap();
    assert!(
        error.starts_with("failed; see the host log (reference E") && error.ends_with(')'),
        "{error}"
    );
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_duplicate_and_malformed_components_are_skipped() {
    let dir = plugins_dir(&[STORAGE, BAD_IDENTITY, NOTES]);
    std::fs::copy(wasm(STORAGE), dir.path().join("zz-copy.wasm")).unwrap();
    std::fs::write(dir.path().join("garbage.wasm"), b"not wasm at all").unwrap();
    // A valid core module, and a valid but empty component.
    std::fs::write(dir.path().join("core-module.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(
        dir.path().join("empty-component.wasm"),
        b"\0asm\x0d\0\x01\0",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.txt"), b"not a plugin, not loaded").unwrap();
    let host = Host::builder()
        .plugins_dir(dir.path())
        .backend(Arc::new(MemoryBackend::new()))
        .build()
        .await
        .unwrap();
    let loaded: Vec<_> = host
        .plugins()
        .into_iter()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(
        loaded,
        ["example.notes.NotesPlugin", "example.storage.StoragePlugin"]
    );

    let skipped = host.skipped();
    assert_eq!(skipped.len(), 5, "{skipped:#?}");
    let by_file = |name: &str| -> &LoadError {
        skipped
            .iter()
            .find(|e| e.to_string().contains(name))
            .unwrap_or_else(|| panic!("{name} not reported: {skipped:#?}"))
    };
    assert!(matches!(
        by_file("bad_identity.wasm"),
        LoadError::InvalidId { .. }
    ));
    assert!(matches!(
        by_file("garbage.wasm"),
        LoadError::NotAComponent { .. }
    ));
    assert!(matches!(
        by_file("core-module.wasm"),
        LoadError::NotAComponent { .. }
    ));
    assert!(matches!(
        by_file("empty-component.wasm"),
        LoadError::WrongWorld { .. }
    ));
    match by_file("zz-copy.wasm") {
        LoadError::DuplicateId { id, first, .. } => {
            assert_eq!(id.as_str(), "example.storage.StoragePlugin");
            assert_eq!(first.file_name().unwrap(), STORAGE);
        }
        other => panic!("{other}"),
    }
    // The plugins that loaded still answer.
    assert_eq!(say(&host, "store v under k").await, ["'v' stored under k!"]);
    host.shutdown().await.unwrap();
}
