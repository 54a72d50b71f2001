//! The benchmark plugin and its patched copies load side by side, each with
//! its own identity, routes and data.

use std::sync::Arc;

use warden::storage::{Backend, MemoryBackend};
use warden::{Host, Incoming};
use warden_tests::*;

async fn say(host: &Host, text: &str) -> Vec<(String, Vec<String>)> {
    host.dispatch(&Incoming::addressed(text))
        .await
        .into_iter()
        .map(|o| {
            assert_eq!(o.error, None, "{text}");
            (
                o.plugin.to_string(),
                o.replies.iter().map(ToString::to_string).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn patched_copies_load_and_answer_under_their_own_identity() {
    let dir = bench_plugins_dir(3);
    let backend = Arc::new(MemoryBackend::new());
    let host = Host::builder()
        .plugins_dir(dir.path())
        .backend(backend.clone())
        .build()
        .await
        .unwrap();
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    let ids: Vec<String> = host.plugins().iter().map(|p| p.id.to_string()).collect();
    assert_eq!(
        ids,
        [
            "warden.bench.Bench00",
            "warden.bench.Bench01",
            "warden.bench.Bench02"
        ]
    );
    let digests: std::collections::HashSet<String> =
        host.plugins().into_iter().map(|p| p.digest).collect();
    assert_eq!(digests.len(), 3, "each copy has its own digest");

    let one = |replies: &[&str]| {
        vec![(
            "warden.bench.Bench02".to_owned(),
            replies.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        )]
    };
    assert_eq!(say(&host, "Bench02 set 3 k").await, one(&["set 3"]));
    assert_eq!(
        say(&host, "Bench02 get 2 k").await,
        one(&["got 2 x 100 bytes"])
    );
    assert_eq!(say(&host, "Bench02 has 4 k").await, one(&["has 4/4"]));
    assert_eq!(
        say(&host, "Bench02 get 0 k").await,
        one(&["got 0 x 0 bytes"])
    );
    assert_eq!(
        say(&host, "Bench02 store hello world under greeting").await,
        one(&["'hello world' stored under greeting!"])
    );

    assert_eq!(
        backend
            .get(&plugin_key("warden.bench.Bench02", "k"))
            .await
            .unwrap(),
        Some(vec![b'x'; 100])
    );
    assert_eq!(
        backend
            .get(&plugin_key("warden.bench.Bench02", "greeting"))
            .await
            .unwrap(),
        Some(b"\"hello world\"".to_vec())
    );
    assert_eq!(
        say(&host, "Bench01 has 1 k").await,
        vec![(
            "warden.bench.Bench01".to_owned(),
            vec!["has 0/1".to_owned()]
        )],
        "copies do not share data"
    );
    host.shutdown().await.unwrap();
}

/// The functions of each plugin compiled into the compilation cache:
/// reused compiled functions, compiled ones.
async fn compile_into(cache: &std::path::Path, n: usize) -> (u64, u64) {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::write(plugins.path().join("bench.wasm"), bench_plugin(n)).unwrap();
    let host = Host::builder()
        .plugins_dir(plugins.path())
        .cache_dir(cache)
        .backend(Arc::new(MemoryBackend::new()))
        .build()
        .await
        .unwrap();
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    let id = format!("Bench{n:02}");
    assert_eq!(
        say(&host, &format!("{id} set 1 k")).await,
        [(format!("warden.bench.{id}"), vec!["set 1".to_owned()])]
    );
    let compiled = host.cache().unwrap();
    let figures = (compiled.functions_reused(), compiled.functions_compiled());
    host.shutdown().await.unwrap();
    figures
}

#[tokio::test]
async fn a_plugin_sharing_code_with_one_compiled_before_reuses_its_functions() {
    let cache = tempfile::tempdir().unwrap();
    // Only functions the component holds twice are reused.
    let (reused, compiled) = compile_into(cache.path(), 0).await;
    assert!(
        compiled > 100 && reused < compiled,
        "{compiled} functions compiled, {reused} reused"
    );
    let packs = || {
        std::fs::read_dir(cache.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_str().unwrap().ends_with(".functions")
            })
            .count()
    };
    assert_eq!(packs(), 1);

    // Another copy: other data (its identity and routes), the same code.
    let (reused_again, compiled_again) = compile_into(cache.path(), 1).await;
    assert!(
        reused_again + compiled_again == reused + compiled && compiled_again * 5 <= compiled,
        "the copy reused {reused_again} functions and compiled {compiled_again}; \
         the first reused {reused} and compiled {compiled}"
    );
    assert!(packs() <= 2);
}
