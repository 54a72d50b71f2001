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
    backends: [memory, sled, redis],
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

    use warden::storage::{Backend, RedisBackend};
    use warden_tests::redis_server::{RedisServer, unique_prefix};
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
        // `raw` sees the server's keys as they are.
        let raw = connect(&url, "").await;
        let app = connect(&url, "app1").await;
        let neighbour = connect(&url, "app10").await;
        assert_eq!(app.prefix(), "app1");
        assert_eq!(app.server(), url);

        app.set(b"plugin:a.A:k", b"mine", None).await.unwrap();
        neighbour
            .set(b"plugin:a.A:k", b"theirs", None)
            .await
            .unwrap();
        raw.set(b"unprefixed", b"foreign", None).await.unwrap();
        assert_eq!(
            raw.get(b"app1:plugin:a.A:k").await.unwrap().as_deref(),
            Some(&b"mine"[..])
        );
        assert_eq!(
            raw.get(b"app10:plugin:a.A:k").await.unwrap().as_deref(),
            Some(&b"theirs"[..])
        );
        assert_eq!(raw.get(b"plugin:a.A:k").await.unwrap(), None);
        assert_eq!(
            app.get(b"plugin:a.A:k").await.unwrap().as_deref(),
            Some(&b"mine"[..])
        );

        // Each backend lists, counts and sizes only its own keys.
        let listed = app.scan(b"", None, 100).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, b"plugin:a.A:k");
        let mut all: Vec<Vec<u8>> = raw
            .scan(b"", None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                b"app10:plugin:a.A:k".to_vec(),
                b"app1:plugin:a.A:k".to_vec(),
                b"unprefixed".to_vec()
            ]
        );
        let (mine, everything) = (app.size().await.unwrap(), raw.size().await.unwrap());
        assert!(0 < mine && mine < everything, "{mine} of {everything}");

        app.delete(b"plugin:a.A:k").await.unwrap();
        assert_eq!(app.size().await.unwrap(), 0);
        assert!(neighbour.has(b"plugin:a.A:k").await.unwrap());
        app.close().await.unwrap();
    }

    #[tokio::test]
    async fn expiry_is_the_servers_own() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let raw = connect(&server.url(), "").await;
        let app = connect(&server.url(), "app").await;
        app.set(b"k", b"v", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        // The server holds the expiry (PTTL), not a header in the value.
        let listed = raw.scan(b"app:k", None, 1).await.unwrap();
        assert_eq!(listed[0].value, b"v");
        assert!(listed[0].expires_at.is_some());
        // A sub-millisecond expiry is rounded up, not treated as zero.
        app.set(b"brief", b"v", Some(Duration::from_micros(10)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!app.has(b"brief").await.unwrap());
        assert_eq!(app.purge_expired().await.unwrap(), 0, "nothing to purge");
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
