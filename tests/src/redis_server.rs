//! A throwaway `redis-server` for tests: started on a free loopback port in
//! a temporary directory, with persistence off, and killed when dropped.
//!
//! The binary is `$WARDEN_REDIS_SERVER` if set, else `redis-server` on
//! `PATH`. Without it, [`RedisServer::start`] prints why to standard error
//! and returns `None`, so the test can return early and pass; with
//! `WARDEN_REQUIRE_REDIS=1` it panics instead, so CI cannot skip the Redis
//! tests by accident.
//!
//! ```no_run
//! # async fn test() {
//! use warden_tests::redis_server::{RedisServer, unique_prefix};
//! let Some(server) = RedisServer::start() else { return };
//! let backend = warden::storage::RedisBackend::connect(&server.url(), &unique_prefix("t"))
//!     .await
//!     .unwrap();
//! # }
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Names the binary to use instead of `redis-server` on `PATH`.
pub const BINARY_VAR: &str = "WARDEN_REDIS_SERVER";
/// Set to `1` to make a missing `redis-server` a failure, not a skip.
pub const REQUIRE_VAR: &str = "WARDEN_REQUIRE_REDIS";

/// How long a server may take to answer its first `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The server's log, in its directory.
const LOG_FILE: &str = "redis.log";

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    tls: bool,
    dir: TempDir,
}

/// Whether a missing `redis-server` must fail the test.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// The `redis-server` binary, if there is one.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_VAR) {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

/// A key prefix no other test in this run uses, starting with `name`, so
/// that tests can share one server.
pub fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "test-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl RedisServer {
    /// Starts a server, or returns `None` (after saying so on standard
    /// error) when there is no `redis-server` binary and
    /// `WARDEN_REQUIRE_REDIS` is not `1`.
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// Like [`start`](Self::start), with extra command-line arguments for
    /// `redis-server`, e.g. `["--requirepass", "pw"]`.
    pub fn start_with(args: &[&str]) -> Option<Self> {
        let binary = find_binary()?;
        Some(Self::spawn(&binary, args, false))
    }

    /// Starts a server that accepts only TLS, with the certificate and key
    /// in the PEM files `cert` and `key`; clients need no certificate.
    pub fn start_tls(cert: &Path, key: &Path) -> Option<Self> {
        let binary = find_binary()?;
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let args = [
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-auth-clients",
            "no",
        ];
        Some(Self::spawn(&binary, &args, true))
    }

    fn spawn(binary: &Path, args: &[&str], tls: bool) -> Self {
        // Another process may take the free port between our probe and the
        // server's bind; then the server exits, and we try another port.
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temporary directory for redis-server");
            let port = free_port();
            let port_arg = port.to_string();
            let (plain, tls_port) = if tls {
                ("0", port_arg.as_str())
            } else {
                (port_arg.as_str(), "0")
            };
            let mut cmd = Command::new(binary);
            cmd.args(["--port", plain, "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(dir.path().join(LOG_FILE));
            if tls {
                cmd.args(["--tls-port", tls_port]);
            }
            let child = cmd
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut server = Self {
                child,
                port,
                tls,
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("{} did not start: {last_error}", binary.display());
    }

    /// Waits until this server's log says it is ready (so that a server
    /// another test started on the same port cannot pass for it) and it
    /// answers `PING` (any reply, even an authentication error, means it is
    /// up), or, for TLS, accepts connections.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let log_file = self.dir.path().join(LOG_FILE);
        loop {
            let log = std::fs::read_to_string(&log_file).unwrap_or_default();
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!("it exited ({status}): {stderr}{log}"));
            }
            if log.contains("Ready to accept connections") && self.answers(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer on port {} after {READY_TIMEOUT:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self, addr: SocketAddr) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        if self.tls {
            return true;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 1];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && matches!(reply[0], b'+' | b'-')
    }

    /// The server's URL, `redis://127.0.0.1:PORT` (or `rediss://localhost:PORT`
    /// for TLS, the name its certificate must carry).
    pub fn url(&self) -> String {
        if self.tls {
            format!("rediss://localhost:{}", self.port)
        } else {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `redis-cli --raw` with `args` on the server (not over TLS), to
    /// look at its keys as they are, and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(&["-p", &self.port.to_string(), "--raw"], args)
    }
}

/// Runs `redis-cli` (beside `redis-server`, else on `PATH`) with `options`
/// then `args`; returns its output, trimmed.
fn cli(options: &[&str], args: &[&str]) -> String {
    let cli = binary()
        .and_then(|b| b.parent().map(|d| d.join("redis-cli")))
        .filter(|c| c.exists())
        .unwrap_or_else(|| PathBuf::from("redis-cli"));
    let out = Command::new(&cli)
        .args(options)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", cli.display()));
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A Redis Cluster of three masters on free loopback ports, each a
/// `redis-server --cluster-enabled yes` with a directory of its own, joined
/// with `redis-cli --cluster create`; stopped when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the cluster and waits until every slot is served, or returns
    /// `None` as [`RedisServer::start`] does.
    pub fn start() -> Option<Self> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
            ])?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(&[], &args);
        let cluster = Self { nodes };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = cluster.nodes.iter().all(|n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
            });
            if ready {
                return Some(cluster);
            }
            assert!(
                Instant::now() < deadline,
                "the cluster on {addrs:?} did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes' URLs, `redis://127.0.0.1:PORT`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Runs `redis-cli -c --raw` with `args` through the first node, which
    /// follows the cluster's redirections.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(
            &["-c", "-p", &self.nodes[0].port().to_string(), "--raw"],
            args,
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary, or `None` after a notice when the tests may skip.
fn find_binary() -> Option<PathBuf> {
    if let Some(binary) = binary() {
        return Some(binary);
    }
    let why = format!(
        "redis-server not found (looked for ${BINARY_VAR}, then redis-server on PATH); \
         install it (e.g. apt-get install redis-server) to run the Redis tests"
    );
    crate::unavailable("Redis", REQUIRE_VAR, &why)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}
