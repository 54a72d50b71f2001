//! The backend conformance suite (`warden_tests::conformance`), run against
//! every built-in backend, and the behaviour only the Redis backend has.
//!
//! The Redis tests start their own `redis-server`; without one they skip
//! (see `warden_tests::redis_server`).

use warden_tests::conformance::{self, Subject};

/// One `#[tokio::test]` per case per backend, as `backend::case`, each on a
/// fresh, empty backend from `Subject::backend()`.
macro_rules! conformance {
    (backends: [$($backend:ident),* $(,)?], cases: $cases:tt $(,)?) => {
        $( conformance!(@backend $backend $cases); )*
    };
    (@backend $backend:ident [$($case:ident),* $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(subject) = Subject::$backend().await else {
                        return;
                    };
                    conformance::$case(&subject).await;
                }
            )*
        }
    };
}

conformance! {
    backends: [memory, sled, redis, redis_cluster],
    cases: [
        round_trip,
        overwrite,
        has_and_delete,
        delete_missing_key,
        empty_value_is_not_missing,
        binary_values,
        unicode_keys,
        large_value,
        short_expiry,
        zero_expiry,
        overwrite_replaces_expiry,
        replace_and_remove_report_the_old_length,
        purge_keeps_live_keys,
        size_follows_data,
        concurrent_writers_lose_nothing,
        scan_filters_by_prefix,
        scan_prefix_is_literal,
        scan_orders_keys_bytewise,
        scan_pages_visit_each_key_once,
        scan_respects_limit,
        scan_skips_expired_keys,
        scan_reports_expiry,
        increment_counts,
        increment_keeps_expiry,
        concurrent_increments_lose_nothing,
        compare_and_swap_checks_the_current_value,
        concurrent_compare_and_swap_loses_nothing,
        batches_set_get_and_delete,
        batches_expire_together,
        quota_counts_a_key_listed_twice_in_a_batch_once,
        quota_cannot_be_bypassed_by_repeated_deletes,
        expiring_re_sets_do_not_grow_the_store,
    ],
}

/// What only the Redis backend does: key prefixes on the server, native
/// expiry, credentials and databases from the URL, TLS, and errors that
/// name the server without its password.
mod redis_only {
    use std::time::Duration;

    use std::sync::Arc;

    use warden::identity::PluginId;
    use warden::storage::{
        Backend, Grant, PluginStorage, RedisBackend, StorageError, StorageLimits,
    };
    use warden_tests::redis_server::{RedisCluster, RedisServer, unique_prefix};
    use warden_tests::*;

    async fn connect(url: &str, prefix: &str) -> RedisBackend {
        RedisBackend::connect(url, prefix)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
    }

    #[tokio::test]
    async fn keys_live_under_the_prefix() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let url = server.url();
        server.cli(&["SET", "unprefixed", "foreign"]);
        let app = connect(&url, "app1").await;
        let neighbour = connect(&url, "app10").await;
        assert_eq!(app.prefix(), "app1");
        assert_eq!(app.server(), url);

        app.set(b"plugin:a.A:k", b"mine", None).await.unwrap();
        neighbour
            .set(b"plugin:a.A:k", b"theirs", None)
            .await
            .unwrap();
        // A namespace's keys share its hash tag, under the prefix.
        assert_eq!(server.cli(&["GET", "app1:{plugin:a.A}:k"]), "mine");
        assert_eq!(server.cli(&["GET", "app10:{plugin:a.A}:k"]), "theirs");
        assert_eq!(server.cli(&["GET", "plugin:a.A:k"]), "");
        assert_eq!(
            app.get(b"plugin:a.A:k").await.unwrap().as_deref(),
            Some(&b"mine"[..])
        );
        let mut keys: Vec<String> = server
            .cli(&["KEYS", "app1*"])
            .lines()
            .map(str::to_owned)
            .filter(|k| k.starts_with("app1:"))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "app1:#areas",
                "app1:#layout",
                "app1:{plugin:a.A}#b",
                "app1:{plugin:a.A}#i",
                "app1:{plugin:a.A}:k"
            ]
        );

        // Braces in a key change neither its slot nor its namespace.
        app.set(b"plugin:a.A:}{plugin:b.B}:x", b"braced", None)
            .await
            .unwrap();
        assert_eq!(
            server.cli(&["GET", "app1:{plugin:a.A}:}{plugin:b.B}:x"]),
            "braced"
        );
        assert_eq!(app.scan(b"plugin:b.B:", None, 10).await.unwrap(), []);
        app.delete(b"plugin:a.A:}{plugin:b.B}:x").await.unwrap();

        // Each backend lists, counts and sizes only its own keys.
        let listed = app.scan(b"", None, 100).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, b"plugin:a.A:k");
        assert_eq!(app.size().await.unwrap(), 5, "k and mine");
        assert_eq!(neighbour.size().await.unwrap(), 7, "k and theirs");
        assert_eq!(app.counted_bytes(b"plugin:a.A:").await.unwrap(), Some(5));

        // A backend with no prefix leaves the keys it did not write alone,
        // those of other applications and of prefixed deployments alike.
        let bare = connect(&url, "").await;
        assert_eq!(bare.scan(b"", None, 100).await.unwrap(), []);
        assert_eq!(server.cli(&["GET", "unprefixed"]), "foreign");
        assert_eq!(server.cli(&["GET", "app1:{plugin:a.A}:k"]), "mine");

        app.delete(b"plugin:a.A:k").await.unwrap();
        assert_eq!(app.size().await.unwrap(), 0);
        assert_eq!(server.cli(&["ZCARD", "app1:{plugin:a.A}#i"]), "0");
        assert!(neighbour.has(b"plugin:a.A:k").await.unwrap());
        app.close().await.unwrap();
    }

    #[tokio::test]
    async fn expiry_is_the_servers_own_and_leaves_the_index() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let app = connect(&server.url(), "app").await;
        app.set(b"shared:k", b"v", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        // The server holds the expiry (PTTL), not a header in the value.
        assert_eq!(server.cli(&["GET", "app:{shared}:k"]), "v");
        let ttl: i64 = server.cli(&["PTTL", "app:{shared}:k"]).parse().unwrap();
        assert!(0 < ttl && ttl <= 60_000, "{ttl}");
        let listed = app.scan(b"shared:", None, 10).await.unwrap();
        assert_eq!(listed[0].value, b"v");
        assert!(listed[0].expires_at.is_some());
        // A sub-millisecond expiry is rounded up, not treated as zero.
        app.set(b"shared:brief", b"v", Some(Duration::from_micros(10)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!app.has(b"shared:brief").await.unwrap());
        // Expired, it is listed no more, and its bytes leave the count at
        // the next sweep.
        assert_eq!(app.scan(b"shared:", None, 10).await.unwrap().len(), 1);
        assert_eq!(app.counted_bytes(b"shared:").await.unwrap(), Some(2 + 6));
        assert_eq!(app.purge_expired().await.unwrap(), 1);
        assert_eq!(app.counted_bytes(b"shared:").await.unwrap(), Some(2));
        assert_eq!(server.cli(&["ZCARD", "app:{shared}#i"]), "1");
        assert_eq!(
            app.purge_expired().await.unwrap(),
            0,
            "nothing more to sweep"
        );
        // A key written again after it expired is counted once.
        app.set(b"shared:again", b"v", Some(Duration::from_millis(20)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        app.set(b"shared:again", b"vv", None).await.unwrap();
        assert_eq!(
            app.counted_bytes(b"shared:").await.unwrap(),
            Some(2 + 5 + 2)
        );
    }

    #[tokio::test]
    async fn a_database_of_the_first_layout_is_moved_once() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        // Keys as the first layout stored them: `{prefix}:{backend key}`.
        server.cli(&["SET", "app:plugin:a.A:k1", "v1"]);
        server.cli(&["SET", "app:shared:motd", "hello", "PX", "600000"]);
        server.cli(&["SET", "app:warden:binding:a.A", "a.wasm"]);
        // Not Warden's: another application's, under the same prefix.
        server.cli(&["SET", "app:other", "theirs"]);
        let app = connect(&server.url(), "app").await;
        assert_eq!(server.cli(&["GET", "app:#layout"]), "2");
        assert_eq!(
            app.get(b"plugin:a.A:k1").await.unwrap().as_deref(),
            Some(&b"v1"[..])
        );
        assert_eq!(server.cli(&["EXISTS", "app:plugin:a.A:k1"]), "0");
        let ttl: i64 = server.cli(&["PTTL", "app:{shared}:motd"]).parse().unwrap();
        assert!(ttl > 0, "the expiry moves with the key: {ttl}");
        assert_eq!(app.counted_bytes(b"plugin:a.A:").await.unwrap(), Some(4));
        assert_eq!(app.counted_bytes(b"shared:").await.unwrap(), Some(9));
        let keys: Vec<Vec<u8>> = app
            .scan(b"", None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            [
                b"plugin:a.A:k1".to_vec(),
                b"shared:motd".to_vec(),
                b"warden:binding:a.A".to_vec()
            ]
        );
        assert_eq!(server.cli(&["GET", "app:other"]), "theirs");
        // A second start finds the layout recorded and moves nothing.
        server.cli(&["SET", "app:plugin:a.A:late", "x"]);
        let again = connect(&server.url(), "app").await;
        assert_eq!(again.get(b"plugin:a.A:late").await.unwrap(), None);
        assert_eq!(again.counted_bytes(b"plugin:a.A:").await.unwrap(), Some(4));
    }

    #[tokio::test]
    async fn nothing_walks_the_database_once_it_is_indexed() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        // Another application's keys in the same database.
        let mut mset = vec!["MSET".to_owned()];
        for i in 0..2000 {
            mset.push(format!("other:{i}"));
            mset.push("x".into());
        }
        let args: Vec<&str> = mset.iter().map(String::as_str).collect();
        server.cli(&args);
        drop(connect(&server.url(), "app").await);
        server.cli(&["CONFIG", "RESETSTAT"]);
        let app = connect(&server.url(), "app").await;
        app.set(b"plugin:a.A:k", b"v", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        app.set_many(&[(b"plugin:a.A:j", b"w")], None)
            .await
            .unwrap();
        assert_eq!(app.scan(b"plugin:a.A:", None, 10).await.unwrap().len(), 2);
        assert_eq!(app.size().await.unwrap(), 4);
        assert_eq!(app.counted_bytes(b"plugin:a.A:").await.unwrap(), Some(4));
        app.increment(b"plugin:a.A:n", 1).await.unwrap();
        app.compare_and_swap(b"plugin:a.A:n", Some(b"1"), Some(b"2"))
            .await
            .unwrap();
        app.purge_expired().await.unwrap();
        app.delete_many(&[b"plugin:a.A:j"]).await.unwrap();
        let stats = server.cli(&["INFO", "commandstats"]);
        for walk in ["cmdstat_scan:", "cmdstat_keys:", "cmdstat_memory"] {
            assert!(!stats.contains(walk), "{walk} in {stats}");
        }
    }

    async fn connect_cluster(urls: &[String], prefix: &str) -> RedisBackend {
        RedisBackend::connect_cluster(urls, prefix)
            .await
            .unwrap_or_else(|e| panic!("connect to the cluster {urls:?}: {e}"))
    }

    /// Plugin `a.Quota`'s storage through `backend`, as one host sees it,
    /// with a quota of `max` bytes.
    fn quota_storage(backend: &Arc<RedisBackend>, max: u64) -> PluginStorage {
        let limits = StorageLimits {
            max_stored_bytes: max,
            ..StorageLimits::default()
        };
        let backend: Arc<dyn Backend> = backend.clone();
        PluginStorage::new(
            backend,
            PluginId::new("a.Quota").unwrap(),
            Grant::None,
            limits,
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn two_hosts_writing_at_once_never_overshoot_a_quota() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        // Two hosts: their own connections, and counts of their own.
        let one = Arc::new(connect(&server.url(), "app").await);
        let two = Arc::new(connect(&server.url(), "app").await);
        writing_at_once_never_overshoots(one, two).await;
    }

    #[tokio::test]
    async fn two_hosts_on_a_cluster_writing_at_once_never_overshoot_a_quota() {
        let Some(cluster) = RedisCluster::start() else {
            return;
        };
        let one = Arc::new(connect_cluster(&cluster.urls(), "app").await);
        let two = Arc::new(connect_cluster(&cluster.urls(), "app").await);
        writing_at_once_never_overshoots(one, two).await;
    }

    async fn writing_at_once_never_overshoots(one: Arc<RedisBackend>, two: Arc<RedisBackend>) {
        const QUOTA: u64 = 2_000;
        let (a, b) = (quota_storage(&one, QUOTA), quota_storage(&two, QUOTA));
        let writer = |storage: PluginStorage, host: &'static str| async move {
            let (mut stored, mut refused) = (0u64, 0u64);
            for i in 0..300 {
                let key = format!("{host}-{i:03}");
                let result = if i % 3 == 0 {
                    let batch = vec![(format!("{key}-x"), vec![b'v'; 20])];
                    storage.set_many(&batch, None, false).await
                } else {
                    storage.set(&key, &[b'v'; 20], None, false).await
                };
                match result {
                    Ok(()) => stored += 1,
                    Err(StorageError::QuotaExceeded { max, .. }) => {
                        assert_eq!(max, QUOTA);
                        refused += 1;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            (stored, refused)
        };
        let ((stored_a, refused_a), (stored_b, refused_b)) =
            tokio::join!(writer(a.clone(), "a"), writer(b.clone(), "b"));
        assert!(refused_a > 0 && refused_b > 0, "both reached the quota");
        // What the store holds, counted from its values, is within the
        // quota, and is what the backend counts.
        let held: u64 = one
            .scan(b"plugin:a.Quota:", None, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.key.len() - b"plugin:a.Quota:".len() + e.value.len()) as u64)
            .sum();
        assert!(held <= QUOTA, "{held} bytes held over the quota of {QUOTA}");
        assert!(held > QUOTA - 60, "the quota was filled: {held}");
        assert_eq!(
            one.counted_bytes(b"plugin:a.Quota:").await.unwrap(),
            Some(held)
        );
        assert_eq!(
            stored_a + stored_b,
            one.scan(b"plugin:a.Quota:", None, 1000)
                .await
                .unwrap()
                .len() as u64
        );
        // An increment and a swap are bounded the same way, and a write
        // that does not grow the namespace is never refused.
        assert!(matches!(
            a.increment("counter-with-a-long-name-0123456789", 1, false)
                .await,
            Err(StorageError::QuotaExceeded { .. })
        ));
        let first = one.scan(b"plugin:a.Quota:", None, 1).await.unwrap();
        let first_key = std::str::from_utf8(&first[0].key[b"plugin:a.Quota:".len()..])
            .unwrap()
            .to_owned();
        assert!(matches!(
            b.compare_and_swap(&first_key, Some(&first[0].value), Some(&[b'w'; 200]), false)
                .await,
            Err(StorageError::QuotaExceeded { .. })
        ));
        b.set(&first_key, b"shorter", None, false).await.unwrap();
        b.delete(&first_key, false).await.unwrap();
        a.set("fits", b"v", None, false).await.unwrap();
    }

    #[tokio::test]
    async fn two_hosts_incrementing_at_once_lose_no_increment() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let one = Arc::new(connect(&server.url(), "app").await);
        let two = Arc::new(connect(&server.url(), "app").await);
        incrementing_at_once_loses_nothing(one, two).await;
    }

    #[tokio::test]
    async fn two_hosts_on_a_cluster_incrementing_at_once_lose_no_increment() {
        let Some(cluster) = RedisCluster::start() else {
            return;
        };
        let one = Arc::new(connect_cluster(&cluster.urls(), "app").await);
        let two = Arc::new(connect_cluster(&cluster.urls(), "app").await);
        incrementing_at_once_loses_nothing(one, two).await;
        // Every key of a namespace is in one slot: its hash tag's.
        let slot = |key: &str| cluster.cli(&["CLUSTER", "KEYSLOT", key]);
        let tag = slot("{plugin:a.Quota}");
        for key in [
            "app:{plugin:a.Quota}:karma:rust",
            "app:{plugin:a.Quota}#i",
            "app:{plugin:a.Quota}#b",
        ] {
            assert_eq!(slot(key), tag, "{key}");
        }
        assert_eq!(
            cluster.cli(&["GET", "app:{plugin:a.Quota}:karma:rust"]),
            "600"
        );
    }

    async fn incrementing_at_once_loses_nothing(one: Arc<RedisBackend>, two: Arc<RedisBackend>) {
        let (a, b) = (quota_storage(&one, 1 << 20), quota_storage(&two, 1 << 20));
        let bump = |storage: PluginStorage| async move {
            for _ in 0..200 {
                storage.increment("karma:rust", 1, false).await.unwrap();
            }
        };
        tokio::join!(bump(a.clone()), bump(b.clone()), bump(a.clone()));
        assert_eq!(a.increment("karma:rust", 0, false).await.unwrap(), 600);
        assert_eq!(
            one.counted_bytes(b"plugin:a.Quota:").await.unwrap(),
            Some(("karma:rust".len() + 3) as u64)
        );
    }

    const ALICE_PASSWORD: &str = "al1ce-Pw-7f3e";
    const DEFAULT_PASSWORD: &str = "dfl7-Pw-90ab";

    #[tokio::test]
    async fn credentials_and_database_come_from_the_url() {
        let Some(server) = RedisServer::start_with(&[
            "--requirepass",
            DEFAULT_PASSWORD,
            "--user",
            "alice",
            "on",
            &format!(">{ALICE_PASSWORD}"),
            "~*",
            "&*",
            "+@all",
        ]) else {
            return;
        };
        let port = server.port();
        let alice = format!("redis://alice:{ALICE_PASSWORD}@127.0.0.1:{port}/3");
        let default_user = format!("redis://:{DEFAULT_PASSWORD}@127.0.0.1:{port}/3");
        let other_db = format!("redis://:{DEFAULT_PASSWORD}@127.0.0.1:{port}/0");

        let a = connect(&alice, "p").await;
        assert_eq!(a.server(), format!("redis://alice:***@127.0.0.1:{port}/3"));
        assert!(!format!("{a:?}").contains(ALICE_PASSWORD));
        a.set(b"k", b"in db 3", None).await.unwrap();
        let same_db = connect(&default_user, "p").await;
        assert_eq!(
            same_db.get(b"k").await.unwrap().as_deref(),
            Some(&b"in db 3"[..])
        );
        assert_eq!(connect(&other_db, "p").await.get(b"k").await.unwrap(), None);

        // Refused credentials fail at connect, naming the server but not
        // the password.
        for (url, secret) in [
            (
                format!("redis://alice:wrong-{ALICE_PASSWORD}@127.0.0.1:{port}/3"),
                format!("wrong-{ALICE_PASSWORD}"),
            ),
            (format!("redis://127.0.0.1:{port}/3"), String::new()),
        ] {
            let e = RedisBackend::connect(&url, "p")
                .await
                .unwrap_err()
                .to_string();
            if secret.is_empty() {
                assert!(e.contains(&url), "{e}");
            } else {
                assert!(e.contains(&url.replace(&secret, "***")), "{e}");
                assert!(!e.contains(&secret), "{e}");
            }
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://u:s3cret-pw@127.0.0.1:{port}/0");
        let started = std::time::Instant::now();
        let e = RedisBackend::connect(&url, "p")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("redis://u:***@127.0.0.1:{port}/0")),
            "{e}"
        );
        assert!(!e.contains("s3cret-pw"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    /// A new certificate authority: its PEM certificate and its issuer.
    fn authority() -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    }

    /// As PEM files in `dir`: a certificate authority, a certificate it
    /// signed for `localhost` and that certificate's key, and an unrelated
    /// certificate authority.
    fn certificates(dir: &std::path::Path) -> [std::path::PathBuf; 4] {
        let (ca, issuer) = authority();
        let (other_ca, _) = authority();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let files = [
            ("ca.pem", ca),
            ("cert.pem", cert.pem()),
            ("key.pem", key.serialize_pem()),
            ("other-ca.pem", other_ca),
        ];
        files.map(|(name, pem)| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        })
    }

    /// `rediss://` end to end: the `warden` command, configured for Redis
    /// over TLS, stores and reads through the probe plugin when it trusts
    /// the server's certificate authority, and refuses to start when it
    /// trusts only another one.
    #[test]
    fn tls_from_the_config_file() {
        let certs = tempfile::tempdir().unwrap();
        let [ca, cert, key, other_ca] = certificates(certs.path());
        let Some(server) = RedisServer::start_tls(&cert, &key) else {
            return;
        };
        let plugins = plugins_dir(&[PROBE]);
        let config = certs.path().join("warden.toml");
        std::fs::write(
            &config,
            format!(
                "[storage]\nbackend = \"redis\"\nurl = \"{}\"\nprefix = \"{}\"\n",
                server.url(),
                unique_prefix("tls")
            ),
        )
        .unwrap();
        let run = |trusted: &std::path::Path| {
            let mut cmd = std::process::Command::new(warden_bin!());
            cmd.arg("run")
                .arg("--console")
                .arg("--plugins")
                .arg(plugins.path())
                .arg("--config")
                .arg(&config)
                .env("WARDEN_LOG", "warn")
                .env("SSL_CERT_FILE", trusted)
                .env_remove("SSL_CERT_DIR")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"set greeting = over tls\nget greeting\n")
                .unwrap();
            child.wait_with_output().unwrap()
        };

        let out = run(&ca);
        assert!(out.status.success(), "{}", stderr_text(&out));
        assert_eq!(stdout_lines(&out), ["ok", "value: over tls"]);

        let out = run(&other_ca);
        assert!(!out.status.success());
        let stderr = stderr_text(&out);
        assert!(stderr.contains(&server.url()), "{stderr}");
        assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    }
}
