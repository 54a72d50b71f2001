//! The karma example: atomic counters and listing, under concurrency, on
//! every backend, and through two hosts sharing one Redis.

use std::sync::Arc;

use warden::storage::{Backend, MemoryBackend, SledBackend};
use warden::{Config, Host, Incoming};
use warden_tests::redis_server::{RedisCluster, RedisServer, unique_prefix};
use warden_tests::*;

async fn karma_host(backend: Arc<dyn Backend>, dir: &std::path::Path) -> Arc<Host> {
    Arc::new(
        Host::builder()
            .plugins_dir(dir)
            .backend(backend)
            .build()
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn karma_counts_and_ranks() {
    let dir = plugins_dir(&[KARMA, STORAGE]);
    let host = karma_host(Arc::new(MemoryBackend::new()), dir.path()).await;
    assert_eq!(say(&host, "top karma").await, ["nobody has karma yet."]);
    assert_eq!(say(&host, "rust++").await, ["rust now has 1 karma."]);
    assert_eq!(
        say(&host, "rust++ and go++, then go-- again").await,
        [
            "rust now has 2 karma.",
            "go now has 1 karma.",
            "go now has 0 karma."
        ],
        "every thing++ and thing-- of a message counts"
    );
    assert_eq!(say(&host, "go++").await, ["go now has 1 karma."]);
    assert_eq!(say(&host, "bugs--").await, ["bugs now has -1 karma."]);
    assert!(say(&host, "++ -- +x++ a + b").await.is_empty());
    let overheard = host.dispatch(&Incoming::overheard("c++ is fine")).await;
    assert_eq!(
        overheard[0].replies,
        ["c now has 1 karma."],
        "anyone may give karma"
    );
    assert_eq!(say(&host, "karma rust").await, ["rust has 2 karma."]);
    assert_eq!(say(&host, "karma nobody").await, ["nobody has 0 karma."]);
    assert_eq!(
        say(&host, "top karma").await,
        ["top karma: rust (2), c (1), go (1), bugs (-1)"]
    );
    // The seed's transcript is unaffected by the karma plugin.
    assert_eq!(
        say(&host, "store hello world under greeting").await,
        ["'hello world' stored under greeting!"]
    );
}

/// Fires `per_task` `thing++` messages from each of `tasks` tasks, spread
/// over `hosts`, all at once.
async fn storm(hosts: &[Arc<Host>], tasks: usize, per_task: usize) {
    let mut running = Vec::new();
    for t in 0..tasks {
        let host = hosts[t % hosts.len()].clone();
        running.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let replies = say(&host, "warden++").await;
                assert_eq!(replies.len(), 1, "{replies:?}");
            }
        }));
    }
    for task in running {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_increment_is_lost_on_memory_or_sled() {
    let data = tempfile::tempdir().unwrap();
    let backends: [Arc<dyn Backend>; 2] = [
        Arc::new(MemoryBackend::new()),
        Arc::new(SledBackend::open(data.path()).unwrap()),
    ];
    for backend in backends {
        let dir = plugins_dir(&[KARMA]);
        let host = karma_host(backend, dir.path()).await;
        storm(std::slice::from_ref(&host), 8, 50).await;
        assert_eq!(say(&host, "karma warden").await, ["warden has 400 karma."]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_increment_is_lost_through_two_hosts_on_one_redis() {
    let Some(redis) = RedisServer::start() else {
        return; // skipped, and said why
    };
    let config = format!(
        "[storage]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{}\"\n",
        redis.url(),
        unique_prefix("karma")
    );
    two_hosts_storm(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_increment_is_lost_through_two_hosts_on_a_redis_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return; // skipped, and said why
    };
    let urls: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    let config = format!(
        "[storage]\nbackend = \"redis-cluster\"\nurls = [{}]\nprefix = \"{}\"\n",
        urls.join(", "),
        unique_prefix("karma")
    );
    two_hosts_storm(&config).await;
}

/// Two hosts on the store `config` names, the karma plugin on each, 400
/// increments through both at once: every one counts.
async fn two_hosts_storm(config: &str) {
    let config = Config::parse(config, "redis.toml".as_ref()).unwrap();
    let dir = plugins_dir(&[KARMA]);
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let host = Host::builder()
            .config(config.clone())
            .plugins_dir(dir.path())
            .build()
            .await
            .unwrap();
        hosts.push(Arc::new(host));
    }
    storm(&hosts, 8, 50).await;
    for host in &hosts {
        assert_eq!(say(host, "karma warden").await, ["warden has 400 karma."]);
        assert_eq!(say(host, "top karma").await, ["top karma: warden (400)"]);
    }
}
