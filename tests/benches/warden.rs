//! Warden's performance against its targets. BENCHMARKS.md explains each
//! figure.
//!
//! ```sh
//! cargo bench -p warden-tests --bench warden                    # everything
//! cargo bench -p warden-tests --bench warden -- quick           # a quick, smaller run
//! cargo bench -p warden-tests --bench warden -- throughput      # one section
//! ```
//!
//! The sections are `overhead`, `throughput`, `startup`, `memory`,
//! `routing`, `redis` (which needs `redis-server`), `console`, `python`
//! (which needs componentize-py, and skips itself with a message without
//! it) and `peer` (Slack Machine, installed from PyPI into a virtual
//! environment; skipped with a message when it cannot be); name any of
//! them to run only those. `quick` (or `WARDEN_BENCH_QUICK=1`) runs
//! fewer, shorter repetitions. Environment variables:
//!
//! - `WARDEN_BENCH_TASKS`: concurrent senders of the throughput section
//!   (default: twice the number of cores);
//! - `WARDEN_BENCH_ONLY`: runs only the overhead and throughput figures
//!   whose name contains this text (case-insensitive), e.g. `get overhead`
//!   or `20 plugins, sled Periodic`;
//! - `WARDEN_BENCH_SLACK_MACHINE`: a virtual environment with
//!   `slack-machine==0.40.1` installed, for the peer section to use instead
//!   of making one;
//! - `WARDEN_BENCH_CACHE`: the compilation cache directory of the overhead
//!   and throughput hosts (default: a fresh one), so that repeated runs, for
//!   example under a profiler, skip compiling.
//!
//! Each figure is the median of several repetitions. The bench runs only
//! when Cargo passes `--bench` (as `cargo bench` does), so that test runs
//! never execute it.
//!
//! Two more modes serve profiling (see BENCHMARKS.md):
//!
//! - `--write-plugins DIR COUNT` writes copies 0 to COUNT - 1 of the bench
//!   plugin into DIR;
//! - `--start-host PLUGINS_DIR CACHE_DIR COUNT` starts a host on a fresh
//!   sled database with the plugins of PLUGINS_DIR (COUNT of them), leaves
//!   them idle for 200 ms, prints `started in MS ms` (the time the start
//!   took) and `resident BYTES`, and stops. The memory
//!   section runs it in a fresh process for each figure.
//! - `--instances FILE CACHE_DIR N MESSAGE` starts a host with the plugin
//!   FILE (or none, for `-`) and `max_instances = N`, sends MESSAGE N times
//!   at once so that N instances start (the plugin's answers must show
//!   N instances), leaves them idle for 300 ms, prints `resident BYTES`,
//!   where those pages are (`private_dirty`, `pss`, `rss_anon`,
//!   `rss_file`, `rss_shmem`, in bytes) and stops.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tempfile::TempDir;
use warden::config::RoutingConfig;
use warden::identity::{Namespace, PluginId};
use warden::router::{self, CompiledRoute, Routes};
use warden::router::{Route, RouteKind};
use warden::storage::keys::encode_key;
use warden::storage::{Backend, SledBackend, SledOptions, SyncPolicy};
use warden::{Config, Host, Incoming};
use warden_tests::bench_plugins_dir;

/// The value the bench plugin's `set` writes: 100 bytes.
const VALUE: [u8; 100] = [b'x'; 100];
/// The key every storage-overhead call uses.
const KEY: &str = "k";

/// How much work each section does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Repetitions of the storage-overhead measurements.
    overhead_repeats: usize,
    /// How long N direct calls should take: N is calibrated to it, since a
    /// `set` that waits for the disk can cost a thousand times a `get`.
    overhead_run: Duration,
    /// Repetitions of each throughput run.
    throughput_repeats: usize,
    /// Length of one throughput run.
    throughput_run: Duration,
    /// Plugins of the larger throughput host.
    throughput_plugins: usize,
    /// Concurrent senders.
    tasks: usize,
    /// Plugins loaded by the start-up section.
    startup_plugins: usize,
    startup_repeats: usize,
    /// Plugins of the memory section's host.
    memory_plugins: usize,
    memory_repeats: usize,
    /// Repetitions of each message of the routing section.
    routing_repeats: usize,
    /// Keys in the database at each step of the Redis section.
    redis_steps: [usize; 3],
    /// `store` lines (and as many `retrieve` lines) of the console's
    /// transcript.
    console_lines: usize,
    /// Messages of each kind sent to the Python and the Rust plugin.
    python_messages: usize,
}

impl Sizes {
    fn new(quick: bool, cores: usize) -> Self {
        let tasks = std::env::var("WARDEN_BENCH_TASKS")
            .ok()
            .and_then(|t| t.parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(2 * cores);
        if quick {
            Self {
                overhead_repeats: 2,
                overhead_run: Duration::from_millis(5),
                throughput_repeats: 1,
                throughput_run: Duration::from_millis(300),
                throughput_plugins: 20,
                tasks,
                startup_plugins: 10,
                startup_repeats: 1,
                memory_plugins: 20,
                memory_repeats: 1,
                routing_repeats: 3,
                redis_steps: [1_000, 10_000, 100_000],
                console_lines: 5_000,
                python_messages: 300,
            }
        } else {
            Self {
                overhead_repeats: 7,
                overhead_run: Duration::from_millis(40),
                throughput_repeats: 3,
                throughput_run: Duration::from_secs(2),
                throughput_plugins: 20,
                tasks,
                startup_plugins: 50,
                startup_repeats: 3,
                memory_plugins: 100,
                memory_repeats: 3,
                routing_repeats: 7,
                redis_steps: [10_000, 100_000, 1_000_000],
                console_lines: 50_000,
                python_messages: 3_000,
            }
        }
    }
}

/// One figure compared with its target.
#[derive(Debug)]
struct Check {
    what: String,
    figure: String,
    target: String,
    /// `None` for a figure without a target.
    pass: Option<bool>,
}

/// Every figure of the run, and the checks against the targets.
#[derive(Debug, Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn check(&mut self, what: impl Into<String>, figure: String, target: &str, pass: bool) {
        let check = Check {
            what: what.into(),
            figure,
            target: target.to_owned(),
            pass: Some(pass),
        };
        println!(
            "  => {}: {} (target {}) {}",
            check.what,
            check.figure,
            check.target,
            verdict(check.pass)
        );
        self.checks.push(check);
    }

    /// A figure reported without a target.
    fn info(&mut self, what: impl Into<String>, figure: String) {
        self.checks.push(Check {
            what: what.into(),
            figure,
            target: "—".to_owned(),
            pass: None,
        });
    }

    fn print(&self, quick: bool) {
        println!();
        println!("## Targets");
        if quick {
            println!(
                "(quick run: smaller sizes, fewer repetitions; the verdicts are indicative only)"
            );
        }
        println!();
        println!("| figure | measured | target | verdict |");
        println!("|---|---|---|---|");
        for c in &self.checks {
            println!(
                "| {} | {} | {} | {} |",
                c.what,
                c.figure,
                c.target,
                verdict(c.pass)
            );
        }
    }
}

fn verdict(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "—",
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--start-host") => return start_host(&args[1..]),
        Some("--instances") => return instances_host(&args[1..]),
        Some("--write-plugins") => return write_plugins(&args[1..]),
        _ => {}
    }
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "warden bench: not run (run it with `cargo bench -p warden-tests --bench warden`)"
        );
        return Ok(());
    }
    let quick = args.iter().any(|a| a == "quick")
        || std::env::var("WARDEN_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    const SECTIONS: [&str; 9] = [
        "overhead",
        "throughput",
        "startup",
        "memory",
        "routing",
        "redis",
        "console",
        "python",
        "peer",
    ];
    let mut sections: Vec<&str> = Vec::new();
    for arg in args.iter().filter(|a| !a.starts_with('-') && *a != "quick") {
        match SECTIONS.iter().find(|s| **s == arg.as_str()) {
            Some(s) => sections.push(s),
            None => bail!("unknown section {arg:?}; the sections are {SECTIONS:?} and `quick`"),
        }
    }
    if sections.is_empty() {
        sections = SECTIONS.to_vec();
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sizes = Sizes::new(quick, cores);
    println!("# Warden benchmarks");
    println!(
        "{cores} cores, {}{}; load average {}",
        cpu_model(),
        if quick { ", quick run" } else { "" },
        load_average()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    // Compiled plugins are shared by every host of the run, except where
    // the start-up and memory sections measure compilation itself.
    let scratch = tempfile::tempdir()?;
    let cache = match std::env::var_os("WARDEN_BENCH_CACHE") {
        Some(dir) => dir.into(),
        None => scratch.path().join("compile-cache"),
    };
    let mut report = Report::default();
    let started = Instant::now();
    for section in sections {
        let t = Instant::now();
        match section {
            "overhead" => runtime.block_on(overhead(&sizes, &cache, &mut report))?,
            "throughput" => runtime.block_on(throughput(&sizes, &cache, &mut report))?,
            "startup" => runtime.block_on(startup(&sizes, &mut report))?,
            "memory" => memory(&sizes, &mut report)?,
            "routing" => routing(&sizes, &mut report)?,
            "redis" => runtime.block_on(redis_scale(&sizes, &mut report))?,
            "console" => runtime.block_on(console(&sizes, &mut report))?,
            "python" => runtime.block_on(python(&sizes, &mut report))?,
            "peer" => runtime.block_on(peer(&sizes, &mut report))?,
            _ => unreachable!(),
        }
        println!("  ({section} took {:.1} s)", t.elapsed().as_secs_f64());
    }
    report.print(quick);
    println!(
        "\nthe whole run took {:.1} s; load average {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    Ok(())
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews
/// every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Whether the figure named `name` is to be measured (`WARDEN_BENCH_ONLY`).
fn selected(name: &str) -> bool {
    std::env::var("WARDEN_BENCH_ONLY").map_or(true, |only| {
        name.to_lowercase().contains(&only.to_lowercase())
    })
}

/// `--write-plugins DIR COUNT`.
fn write_plugins(args: &[String]) -> anyhow::Result<()> {
    let [dir, count] = args else {
        bail!("usage: --write-plugins DIR COUNT");
    };
    let dir = Path::new(dir);
    std::fs::create_dir_all(dir)?;
    for n in 0..count.parse()? {
        std::fs::write(
            dir.join(format!("bench{n:02}.wasm")),
            warden_tests::bench_plugin(n),
        )?;
    }
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

// ---------------------------------------------------------------------------
// Hosts

/// A host over a fresh sled database with `sync`, loading every plugin in
/// `plugins` and compiling through `cache`. Handler calls may take a minute,
/// for the long loops of the storage-overhead section. Each plugin has up to
/// `instances` instances.
async fn sled_host(
    plugins: &Path,
    sync: SyncPolicy,
    cache: &Path,
    instances: usize,
) -> anyhow::Result<(Host, TempDir)> {
    let data = tempfile::tempdir()?;
    let options = SledOptions {
        sync,
        ..SledOptions::default()
    };
    let backend = Arc::new(SledBackend::open_with(data.path(), options)?);
    let mut config = Config::default();
    config.limits.handler_timeout_ms = 60_000;
    config.limits.max_instances = instances;
    let host = Host::builder()
        .config(config)
        .backend(backend)
        .plugins_dir(plugins)
        .cache_dir(cache)
        .build()
        .await?;
    ensure!(
        host.skipped().is_empty(),
        "plugins skipped: {:?}",
        host.skipped()
    );
    Ok((host, data))
}

/// Sends `text` and returns the one reply it must get.
async fn ask(host: &Host, text: &str) -> anyhow::Result<String> {
    let outcomes = host.dispatch(&Incoming::addressed(text)).await;
    match &outcomes[..] {
        [one] if one.error.is_none() && one.replies.len() == 1 => Ok(one.replies[0].to_string()),
        _ => bail!("{text:?} was answered with {outcomes:?}"),
    }
}

async fn expect(host: &Host, text: &str, reply: &str) -> anyhow::Result<()> {
    let got = ask(host, text).await?;
    ensure!(got == reply, "{text:?}: expected {reply:?}, got {got:?}");
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

// ---------------------------------------------------------------------------
// 1. Storage overhead

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Set,
    Has,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Has => "has",
        }
    }

    fn reply(self, n: u64) -> String {
        match self {
            Op::Get if n == 0 => "got 0 x 0 bytes".to_owned(),
            Op::Get => format!("got {n} x {} bytes", VALUE.len()),
            Op::Set => format!("set {n}"),
            Op::Has => format!("has {n}/{n}"),
        }
    }
}

/// One handler call making `n` calls of `op`, timed from the caller.
async fn guest_run(host: &Host, op: Op, n: u64) -> anyhow::Result<Duration> {
    let text = format!("Bench00 {} {n} {KEY}", op.name());
    let msg = Incoming::addressed(text.as_str());
    let t = Instant::now();
    let outcomes = host.dispatch(&msg).await;
    let elapsed = t.elapsed();
    let reply = op.reply(n);
    match &outcomes[..] {
        [one] if one.error.is_none() && one.replies == [reply.as_str()] => Ok(elapsed),
        _ => bail!("{text:?}: expected {reply:?}, got {outcomes:?}"),
    }
}

/// `n` direct calls of `op` on the backend, with the key the plugin's calls
/// reach.
async fn native_run(backend: &dyn Backend, raw: &[u8], op: Op, n: u64) -> anyhow::Result<Duration> {
    let t = Instant::now();
    match op {
        Op::Get => {
            for _ in 0..n {
                let value = backend.get(raw).await?;
                ensure!(value.as_deref() == Some(&VALUE[..]), "the value is missing");
            }
        }
        Op::Set => {
            for _ in 0..n {
                backend.set(raw, &VALUE, None).await?;
            }
        }
        Op::Has => {
            for _ in 0..n {
                ensure!(backend.has(raw).await?, "the key is missing");
            }
        }
    }
    Ok(t.elapsed())
}

/// The median time of an empty handler call (`op` with a count of 0).
async fn empty_call(host: &Host, op: Op, samples: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        times.push(guest_run(host, op, 0).await?.as_secs_f64());
    }
    Ok(Duration::from_secs_f64(median(&mut times)))
}

/// Per-call times of `op` through the plugin and direct, their ratio, the
/// time of an empty handler call and the number of calls per run.
async fn compare(host: &Host, op: Op, run: Duration, repeats: usize) -> anyhow::Result<Compared> {
    let raw = encode_key(
        &Namespace::Plugin(PluginId::new("warden.bench.Bench00")?),
        KEY,
    );
    let backend = host.backend().clone();
    // Make sure the key holds its 100 bytes, and warm up both paths.
    guest_run(host, Op::Set, 1).await?;
    guest_run(host, op, 20).await?;
    let probe = native_run(&*backend, &raw, op, 20).await?;
    // Calls of about `run` on the direct path.
    let n = (run.as_secs_f64() / (probe.as_secs_f64() / 20.0)).clamp(20.0, 200_000.0) as u64;
    guest_run(host, op, n.div_ceil(10)).await?;
    native_run(&*backend, &raw, op, n.div_ceil(10)).await?;
    let (mut guest, mut native, mut ratios, mut empties) = (vec![], vec![], vec![], vec![]);
    for _ in 0..repeats {
        let empty = empty_call(host, op, 15).await?;
        let full = guest_run(host, op, n).await?;
        let direct = native_run(&*backend, &raw, op, n).await?;
        let g = micros(full.saturating_sub(empty)) / n as f64;
        let d = micros(direct) / n as f64;
        guest.push(g);
        native.push(d);
        ratios.push(g / d);
        empties.push(micros(empty));
    }
    let ratio = median(&mut ratios);
    Ok(Compared {
        guest: median(&mut guest),
        native: median(&mut native),
        ratio,
        // `median` sorted them.
        lowest: ratios[0],
        highest: ratios[ratios.len() - 1],
        empty: median(&mut empties),
        n,
    })
}

/// What [`compare`] measured: times in microseconds.
#[derive(Debug, Clone, Copy)]
struct Compared {
    /// One call through the plugin, the empty handler call subtracted.
    guest: f64,
    /// One direct call.
    native: f64,
    /// The median of the repetitions' ratios.
    ratio: f64,
    /// The lowest and highest ratio of the repetitions.
    lowest: f64,
    highest: f64,
    /// An empty handler call.
    empty: f64,
    /// Calls per run.
    n: u64,
}

async fn overhead(sizes: &Sizes, cache: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!(
        "\n## 1. Guest storage overhead (one handler call making N calls, against N direct Backend calls)"
    );
    let plugins = bench_plugins_dir(1);
    let name = |op: Op, sync: SyncPolicy| format!("{} overhead, sled {sync:?}", op.name());
    let runs: Vec<_> = [
        (SyncPolicy::Always, Op::Get),
        (SyncPolicy::Always, Op::Has),
        (SyncPolicy::Always, Op::Set),
        (SyncPolicy::Periodic, Op::Set),
    ]
    .into_iter()
    .filter(|&(sync, op)| selected(&name(op, sync)))
    .collect();
    for sync in [SyncPolicy::Always, SyncPolicy::Periodic] {
        if !runs.iter().any(|r| r.0 == sync) {
            continue;
        }
        let (host, _data) = sled_host(plugins.path(), sync, cache, 1).await?;
        for &(_, op) in runs.iter().filter(|r| r.0 == sync) {
            let Compared {
                guest,
                native,
                ratio,
                lowest,
                highest,
                empty,
                n,
            } = compare(&host, op, sizes.overhead_run, sizes.overhead_repeats).await?;
            let what = match op {
                Op::Set => format!("{} per call, sled sync {sync:?}", op.name()),
                _ => format!("{} per call, sled", op.name()),
            };
            println!(
                "  {what}: N = {n}, through the plugin {guest:.3} µs, direct {native:.3} µs, \
                 ratio {ratio:.2} ({lowest:.2} to {highest:.2}; empty handler call {empty:.1} µs)"
            );
            report.check(
                name(op, sync),
                format!("{ratio:.2}× ({guest:.2} µs vs {native:.2} µs, N = {n})"),
                "≤ 1.5×",
                ratio <= 1.5,
            );
            report.info(
                format!("empty handler call ({} 0), sled {sync:?}", op.name()),
                format!("{empty:.1} µs"),
            );
        }
        host.shutdown().await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Throughput and latency

/// Messages per second and latency percentiles of one run.
#[derive(Debug, Clone, Copy)]
struct Run {
    rate: f64,
    p50: f64,
    p99: f64,
    /// CPU time this process used during the run, in cores (wall time
    /// times cores): below the number of cores, the senders waited or other
    /// processes had the CPU.
    cores: f64,
}

impl Run {
    /// The run whose messages took `latencies` (in nanoseconds) in `wall`
    /// time, this process having used `cpu_before` seconds of CPU when it
    /// started.
    fn of(mut latencies: Vec<u32>, wall: Duration, cpu_before: f64) -> Self {
        latencies.sort_unstable();
        let pct = |p: f64| f64::from(latencies[((latencies.len() - 1) as f64 * p) as usize]) / 1e3;
        let wall = wall.as_secs_f64();
        Self {
            rate: latencies.len() as f64 / wall,
            p50: pct(0.50),
            p99: pct(0.99),
            cores: (cpu_seconds() - cpu_before) / wall,
        }
    }
}

/// The texts of the throughput section's messages to `plugins` plugins:
/// message i goes to plugin i mod `plugins`, 16 keys a plugin.
fn store_texts(plugins: usize) -> impl Iterator<Item = String> {
    (0..plugins * 16).map(move |i| {
        format!(
            "Bench{:02} store hello world under k{}",
            i % plugins,
            i / plugins
        )
    })
}

/// CPU time (user and system) this process has used so far, in seconds,
/// from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (which may contain spaces): utime
    // and stime are the 12th and 13th, in clock ticks of 1/100 s (USER_HZ).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// `tasks` senders dispatch the seed's `store` to the `plugins` plugins in
/// turn for `length`.
async fn drive(
    host: &Arc<Host>,
    plugins: usize,
    tasks: usize,
    length: Duration,
) -> anyhow::Result<Run> {
    // Message i goes to plugin i % plugins: consecutive messages of a
    // sender, and the senders among themselves, spread over the plugins.
    let messages: Arc<Vec<Incoming>> =
        Arc::new(store_texts(plugins).map(Incoming::addressed).collect());
    let cpu = cpu_seconds();
    let start = Instant::now();
    let deadline = start + length;
    let senders: Vec<_> = (0..tasks)
        .map(|task| {
            let host = host.clone();
            let messages = messages.clone();
            tokio::spawn(async move {
                let mut latencies: Vec<u32> = Vec::with_capacity(1 << 18);
                let mut failed = 0u64;
                let mut i = task;
                while Instant::now() < deadline {
                    let msg = &messages[i % messages.len()];
                    let t = Instant::now();
                    let outcomes = host.dispatch(msg).await;
                    latencies.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
                    if outcomes.len() != 1 || outcomes[0].error.is_some() {
                        failed += 1;
                    }
                    i += tasks;
                }
                (latencies, failed, Instant::now())
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut end = start;
    for sender in senders {
        let (latencies, failed, done) = sender.await?;
        ensure!(failed == 0, "{failed} messages failed");
        all.extend(latencies);
        end = end.max(done);
    }
    Ok(Run::of(all, end - start, cpu))
}

/// One HTTP/1.1 keep-alive connection to the host's HTTP API, speaking
/// just enough HTTP to post messages: a client that costs little next to
/// the server, so that the figure is mostly the server's.
struct HttpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
    request: String,
}

impl HttpClient {
    fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            line: String::new(),
            request: String::new(),
        })
    }

    /// Posts `body` (JSON) to `/v1/messages`; returns the response body.
    fn post(&mut self, body: &str) -> anyhow::Result<Vec<u8>> {
        // One write, so one segment: `write!` on the stream itself would
        // send each formatted piece as a segment of its own.
        use std::fmt::Write as _;
        self.request.clear();
        write!(
            self.request,
            "POST /v1/messages HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        self.writer.write_all(self.request.as_bytes())?;
        let mut status = None;
        let mut length = None;
        loop {
            self.line.clear();
            ensure!(
                self.reader.read_line(&mut self.line)? > 0,
                "connection closed"
            );
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if status.is_none() {
                status = line.split(' ').nth(1).map(str::to_owned);
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse::<usize>()?);
            }
        }
        let mut body = vec![0; length.context("no Content-Length in the response")?];
        self.reader.read_exact(&mut body)?;
        ensure!(
            status.as_deref() == Some("200"),
            "status {status:?}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}

/// As [`drive`], over the HTTP API at `addr`: `tasks` threads, each with
/// its own connection, post one message after the other.
fn drive_http(
    addr: SocketAddr,
    plugins: usize,
    tasks: usize,
    length: Duration,
    batch: usize,
) -> anyhow::Result<Run> {
    let one: Vec<String> = store_texts(plugins)
        .map(|text| format!(r#"{{"text":"{text}"}}"#))
        .collect();
    // With a batch, each request carries `batch` messages as a JSON array.
    let bodies: Arc<Vec<String>> = Arc::new(if batch <= 1 {
        one
    } else {
        (0..one.len())
            .map(|i| {
                let messages: Vec<&str> = (0..batch)
                    .map(|j| one[(i + j) % one.len()].as_str())
                    .collect();
                format!("[{}]", messages.join(","))
            })
            .collect()
    });
    let cpu = cpu_seconds();
    let start = Instant::now();
    let deadline = start + length;
    let senders: Vec<_> = (0..tasks)
        .map(|task| {
            let bodies = bodies.clone();
            std::thread::spawn(move || -> anyhow::Result<(Vec<u32>, Instant)> {
                let mut client = HttpClient::connect(addr)?;
                let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
                let mut i = task;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let reply = client.post(&bodies[i % bodies.len()])?;
                    latencies.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
                    ensure!(
                        reply.windows(9).any(|w| w == b"stored un"),
                        "unexpected reply {}",
                        String::from_utf8_lossy(&reply)
                    );
                    i += tasks;
                }
                Ok((latencies, Instant::now()))
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut end = start;
    for sender in senders {
        let (latencies, done) = sender
            .join()
            .map_err(|_| anyhow::anyhow!("an HTTP sender panicked"))??;
        all.extend(latencies);
        end = end.max(done);
    }
    let mut run = Run::of(all, end - start, cpu);
    // The rate counts messages, not requests.
    run.rate *= batch.max(1) as f64;
    Ok(run)
}

/// Messages a batch request of the throughput section carries.
const HTTP_BATCH: usize = 20;

/// The throughput of `host` over its HTTP API, served on a loopback port
/// for the occasion: median rate and latencies of `sizes.throughput_repeats`
/// runs.
async fn http_figure(
    host: &Arc<Host>,
    plugins: usize,
    sizes: &Sizes,
    batch: usize,
) -> anyhow::Result<Run> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(warden::adapters::http::serve(
        listener,
        host.clone(),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let (tasks, run, repeats) = (sizes.tasks, sizes.throughput_run, sizes.throughput_repeats);
    let runs = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Run>> {
        drive_http(addr, plugins, tasks, run / 4, batch)?;
        (0..repeats)
            .map(|_| drive_http(addr, plugins, tasks, run, batch))
            .collect()
    })
    .await??;
    let _ = stop.send(());
    server.await??;
    let med = |f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    Ok(Run {
        rate: med(|r| r.rate),
        p50: med(|r| r.p50),
        p99: med(|r| r.p99),
        cores: med(|r| r.cores),
    })
}

async fn throughput(sizes: &Sizes, cache: &Path, report: &mut Report) -> anyhow::Result<()> {
    println!(
        "\n## 2. Message throughput and latency (`BenchNN store hello world under kM` through Host::dispatch, {} concurrent senders)",
        sizes.tasks
    );
    let name = |plugins: usize, sync: SyncPolicy, instances: usize| {
        let s = if plugins == 1 { "" } else { "s" };
        let instances = match instances {
            1 => String::new(),
            n => format!(" ({n} instances)"),
        };
        format!("{plugins} plugin{s}{instances}, sled {sync:?}")
    };
    let configs = [
        (1, SyncPolicy::Periodic, 1),
        (1, SyncPolicy::Periodic, 2),
        (sizes.throughput_plugins, SyncPolicy::Periodic, 1),
        (1, SyncPolicy::Always, 1),
        (sizes.throughput_plugins, SyncPolicy::Always, 1),
    ];
    for (plugins, sync, instances) in configs {
        let what = name(plugins, sync, instances);
        if !selected(&format!("throughput, {what}")) {
            continue;
        }
        let dir = bench_plugins_dir(plugins);
        let (host, _data) = sled_host(dir.path(), sync, cache, instances).await?;
        let host = Arc::new(host);
        for p in 0..plugins {
            expect(
                &host,
                &format!("Bench{p:02} store hello world under greeting"),
                "'hello world' stored under greeting!",
            )
            .await?;
        }
        // Warm up: one sender, then all of them.
        let warm = sizes.throughput_run / 4;
        drive(&host, plugins, 1, warm).await?;
        drive(&host, plugins, sizes.tasks, warm).await?;

        let mut one = Vec::new();
        let mut loaded = Vec::new();
        for _ in 0..sizes.throughput_repeats {
            loaded.push(drive(&host, plugins, sizes.tasks, sizes.throughput_run).await?);
            one.push(drive(&host, plugins, 1, sizes.throughput_run / 2).await?);
        }
        let med =
            |runs: &[Run], f: fn(&Run) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        let (rate, p50, p99, cores) = (
            med(&loaded, |r| r.rate),
            med(&loaded, |r| r.p50),
            med(&loaded, |r| r.p99),
            med(&loaded, |r| r.cores),
        );
        let (rate1, p50_1, p99_1, cores1) = (
            med(&one, |r| r.rate),
            med(&one, |r| r.p50),
            med(&one, |r| r.p99),
            med(&one, |r| r.cores),
        );
        let rates: Vec<String> = loaded.iter().map(|r| format!("{:.0}", r.rate)).collect();
        println!(
            "  {what}: {rate:.0} msg/s (runs: {}), p50 {p50:.1} µs, p99 {p99:.1} µs \
             ({} senders, {cores:.2} cores busy); one sender: {rate1:.0} msg/s, \
             p50 {p50_1:.1} µs, p99 {p99_1:.1} µs ({cores1:.2} cores busy)",
            rates.join(", "),
            sizes.tasks
        );
        if plugins == sizes.throughput_plugins && sync == SyncPolicy::Periodic && instances == 1 {
            report.check(
                format!("throughput, {what}"),
                format!("{rate:.0} msg/s"),
                "≥ 100000 msg/s",
                rate >= 100_000.0,
            );
            report.check(
                format!("p99 latency, {what}"),
                format!("{p99:.1} µs (p50 {p50:.1} µs)"),
                "< 100 µs",
                p99 < 100.0,
            );
        } else {
            report.info(
                format!("throughput, {what}"),
                format!("{rate:.0} msg/s, p50 {p50:.1} µs, p99 {p99:.1} µs"),
            );
        }
        report.info(
            format!("one sender, {what}"),
            format!(
                "{rate1:.0} msg/s, p50 {p50_1:.1} µs, p99 {p99_1:.1} µs; \
                 {:.1} µs of CPU a message",
                cores1 * 1e6 / rate1
            ),
        );
        report.info(
            format!("CPU busy, {} senders, {what}", sizes.tasks),
            format!(
                "{cores:.2} cores; {:.1} µs of CPU a message",
                cores * 1e6 / rate
            ),
        );
        if sync == SyncPolicy::Periodic && instances == 1 {
            let batched = http_figure(&host, plugins, sizes, HTTP_BATCH).await?;
            println!(
                "  over HTTP in batches of {HTTP_BATCH}, {what}: {:.0} msg/s",
                batched.rate
            );
            report.info(
                format!("throughput over HTTP in batches of {HTTP_BATCH}, {what}"),
                format!(
                    "{:.0} msg/s; {:.1} µs of CPU a message, client included",
                    batched.rate,
                    batched.cores * 1e6 / batched.rate
                ),
            );
            let http = http_figure(&host, plugins, sizes, 1).await?;
            println!(
                "  over HTTP, {what}: {:.0} msg/s, p50 {:.1} µs, p99 {:.1} µs \
                 ({} connections, {:.2} cores busy, clients included)",
                http.rate, http.p50, http.p99, sizes.tasks, http.cores
            );
            report.info(
                format!("throughput over HTTP, {what}"),
                format!(
                    "{:.0} msg/s, p50 {:.1} µs, p99 {:.1} µs; {:.1} µs of CPU a message, \
                     client included",
                    http.rate,
                    http.p50,
                    http.p99,
                    http.cores * 1e6 / http.rate
                ),
            );
        }
        Arc::into_inner(host)
            .context("a sender still holds the host")?
            .shutdown()
            .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. Start-up

/// Builds a host over `backend` with the plugins of `dir` and the cache in
/// `cache`; returns the time `build` took.
async fn timed_start(
    dir: &Path,
    cache: &Path,
    backend: &Arc<SledBackend>,
    count: usize,
    reuse_functions: bool,
) -> anyhow::Result<(Duration, Host)> {
    let config = Config::parse(
        &format!("[plugins]\nreuse_functions = {reuse_functions}\n"),
        "bench.toml".as_ref(),
    )?;
    let t = Instant::now();
    let host = Host::builder()
        .config(config)
        .backend(backend.clone())
        .plugins_dir(dir)
        .cache_dir(cache)
        .build()
        .await?;
    let elapsed = t.elapsed();
    ensure!(
        host.skipped().is_empty() && host.plugins().len() == count,
        "loaded {} plugins of {count}; skipped {:?}",
        host.plugins().len(),
        host.skipped()
    );
    Ok((elapsed, host))
}

async fn startup(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let n = sizes.startup_plugins;
    println!(
        "\n## 3. Start-up: {n} distinct plugins, cold (empty compilation cache) and warm (the same cache again)"
    );
    let dir = bench_plugins_dir(n);
    let empty = tempfile::tempdir()?;
    let last = format!("Bench{:02} get 0 {KEY}", n - 1);
    let (mut cold, mut warm, mut bare) = (vec![], vec![], vec![]);
    let mut cold_reusing = vec![];
    for _ in 0..sizes.startup_repeats {
        let data = tempfile::tempdir()?;
        let cache = tempfile::tempdir()?;
        let backend = Arc::new(SledBackend::open(data.path())?);

        let (t, host) = timed_start(empty.path(), cache.path(), &backend, 0, true).await?;
        bare.push(t.as_secs_f64() * 1e3);
        host.shutdown().await?;

        // Cold, each plugin compiled from nothing: the copies share all
        // their code, which distinct plugins do not.
        let (t, host) = timed_start(dir.path(), cache.path(), &backend, n, false).await?;
        let cache_stats = host
            .cache()
            .map(|c| (c.hits(), c.misses(), c.functions_reused()));
        ensure!(
            cache_stats == Some((0, n as u64, 0)),
            "cold start: cache {cache_stats:?}"
        );
        expect(&host, &last, "got 0 x 0 bytes").await?;
        cold.push(t.as_secs_f64() * 1e3);
        host.shutdown().await?;

        // Cold again, the copies reusing each other's compiled functions.
        let shared_cache = tempfile::tempdir()?;
        let (t, host) = timed_start(dir.path(), shared_cache.path(), &backend, n, true).await?;
        let reused = host.cache().map_or(0, |c| c.functions_reused());
        ensure!(reused > 0, "the copies reused no compiled functions");
        expect(&host, &last, "got 0 x 0 bytes").await?;
        cold_reusing.push(t.as_secs_f64() * 1e3);
        host.shutdown().await?;

        let (t, host) = timed_start(dir.path(), cache.path(), &backend, n, true).await?;
        let cache_stats = host.cache().map(|c| (c.hits(), c.misses()));
        ensure!(
            cache_stats == Some((n as u64, 0)),
            "warm start: cache {cache_stats:?}"
        );
        expect(&host, &last, "got 0 x 0 bytes").await?;
        warm.push(t.as_secs_f64() * 1e3);
        host.shutdown().await?;
        println!(
            "  run: no plugins {:.1} ms, cold {:.0} ms (reusing compiled functions {:.0} ms), warm {:.1} ms",
            bare.last().unwrap_or(&0.0),
            cold.last().unwrap_or(&0.0),
            cold_reusing.last().unwrap_or(&0.0),
            warm.last().unwrap_or(&0.0)
        );
    }
    let (cold, warm, bare) = (median(&mut cold), median(&mut warm), median(&mut bare));
    let speedup = cold / warm;
    println!(
        "  {n} plugins: cold {cold:.0} ms ({:.1} ms a plugin), warm {warm:.1} ms ({:.2} ms a plugin), \
         {speedup:.1}× faster warm; a host with no plugins starts in {bare:.1} ms",
        cold / n as f64,
        warm / n as f64
    );
    // The target is 50 ms for 50 plugins; a quick run, with fewer, scales it.
    let warm_target = n as f64;
    report.check(
        format!("warm start, {n} plugins"),
        format!("{warm:.1} ms"),
        &format!("< {warm_target:.0} ms"),
        warm < warm_target,
    );
    report.check(
        format!("cold / warm start, {n} plugins"),
        format!("{speedup:.1}× (cold {cold:.0} ms)"),
        "≥ 20×",
        speedup >= 20.0,
    );
    report.info(
        format!("cold start, {n} plugins sharing their code, compiled functions reused"),
        format!("{:.0} ms", median(&mut cold_reusing)),
    );
    report.info("start of a host with no plugins", format!("{bare:.1} ms"));
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. Memory

/// Resident memory of this process in bytes, from /proc/self/statm.
fn resident_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("statm has no resident field")?
        .parse()?;
    // The base page size on x86_64 and on most aarch64 Linux kernels.
    Ok(pages * 4096)
}

/// `--start-host PLUGINS_DIR CACHE_DIR COUNT`: starts a host with the
/// plugins of the directory, leaves them idle and prints its resident
/// memory.
fn start_host(args: &[String]) -> anyhow::Result<()> {
    let [dir, cache, count] = args else {
        bail!("usage: --start-host PLUGINS_DIR CACHE_DIR COUNT");
    };
    let count: usize = count.parse()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let data = tempfile::tempdir()?;
        let backend = Arc::new(SledBackend::open(data.path())?);
        let (started, host) =
            timed_start(dir.as_ref(), cache.as_ref(), &backend, count, true).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        println!("started in {:.1} ms", started.as_secs_f64() * 1e3);
        println!("resident {}", resident_bytes()?);
        host.shutdown().await?;
        anyhow::Ok(())
    })
}

/// Runs `--start-host` in a fresh process and returns the resident memory it reported.
fn child_resident(dir: &Path, cache: &Path, count: usize) -> anyhow::Result<u64> {
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .arg("--start-host")
        .arg(dir)
        .arg(cache)
        .arg(count.to_string())
        .env("WARDEN_LOG", "warn")
        .output()?;
    ensure!(
        out.status.success(),
        "--start-host failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("resident "))
        .context("--start-host printed no figure")?
        .parse()
        .context("the figure --start-host printed")
}

fn memory(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let n = sizes.memory_plugins;
    println!(
        "\n## 4. Memory: resident memory of a host with {n} idle plugins against one with none (each in a fresh process, compiled code from a warm cache)"
    );
    let dir = bench_plugins_dir(n);
    let empty = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    // The first start compiles and fills the cache.
    let first = child_resident(dir.path(), cache.path(), n)?;
    println!(
        "  first start ({n} plugins, compiling): {:.1} MiB resident",
        mib(first)
    );
    let (mut none, mut full) = (vec![], vec![]);
    for _ in 0..sizes.memory_repeats {
        none.push(child_resident(empty.path(), cache.path(), 0)? as f64);
        full.push(child_resident(dir.path(), cache.path(), n)? as f64);
    }
    let (none, full) = (median(&mut none) as u64, median(&mut full) as u64);
    let per = full.saturating_sub(none) as f64 / n as f64;
    println!(
        "  no plugins {:.1} MiB, {n} plugins {:.1} MiB: {:.0} KiB a plugin",
        mib(none),
        mib(full),
        per / 1024.0
    );
    report.check(
        format!("resident memory per idle plugin ({n} plugins)"),
        format!(
            "{:.0} KiB ({:.1} MiB with none, {:.1} MiB with {n})",
            per / 1024.0,
            mib(none),
            mib(full)
        ),
        "< 1024 KiB",
        per < 1024.0 * 1024.0,
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. Routing

/// A listen-to route, case-insensitive (the SDK's default).
fn listen_to(pattern: String, handler: String) -> Route {
    Route {
        kind: RouteKind::ListenTo,
        pattern,
        ignore_case: true,
        handler,
        doc: String::new(),
    }
}

/// The routes of an ordinary plugin: those of the example plugins and of
/// Slack Machine's, all case-insensitive.
fn ordinary_routes() -> Vec<Route> {
    [
        (
            RouteKind::RespondTo,
            r"^store (?P<value>.+) under (?P<key>.+)$",
        ),
        (RouteKind::RespondTo, r"^retrieve (?P<key>.+)$"),
        (
            RouteKind::RespondTo,
            r"^(?P<shared>shared )?get (?P<key>\S+)$",
        ),
        (RouteKind::RespondTo, r"^delete (?P<key>\S+)$"),
        (
            RouteKind::RespondTo,
            r"^(?P<shared>shared )?list(?: (?P<prefix>\S+))?$",
        ),
        (RouteKind::RespondTo, r"^top karma$"),
        (
            RouteKind::RespondTo,
            r"^remind me in (?P<n>\d+) (?P<unit>minutes?|hours?) to (?P<what>.+)$",
        ),
        (RouteKind::ListenTo, r"(?P<name>\w+)\+\+"),
        (RouteKind::ListenTo, r"(?P<name>\w+)--"),
        (RouteKind::ListenTo, r"\bhello\b"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (kind, pattern))| Route {
        kind,
        pattern: pattern.to_owned(),
        ignore_case: true,
        handler: format!("handler{i}"),
        doc: String::new(),
    })
    .collect()
}

/// A pathological route shape: its pattern for route number `i` (a
/// different literal in each route), and the text that shows its worst.
struct Shape {
    name: &'static str,
    pattern: fn(usize) -> String,
}

/// The shapes that defeat the fast engines: the PikeVM then steps through
/// every live state of the automaton for each byte.
fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            name: r"\b(?s:.){0,100}\bq<i>z (Unicode word boundaries)",
            pattern: |i| format!(r"\b(?s:.){{0,100}}\bq{i}z"),
        },
        Shape {
            name: r"\b(?s:.){0,1000}\bq<i>z (the attack's routes, fewer)",
            pattern: |i| format!(r"\b(?s:.){{0,1000}}\bq{i}z"),
        },
        Shape {
            name: r"(?s:.){0,200}q<i>z (counted repetition)",
            pattern: |i| format!(r"(?s:.){{0,200}}q{i}z"),
        },
        Shape {
            name: r"\w{0,100}q<i>z (large Unicode class)",
            pattern: |i| format!(r"\w{{0,100}}q{i}z"),
        },
        Shape {
            name: r"\b(?s:(.)(.)(.)(.)){0,25}(q<i>z)? (matches, with groups)",
            pattern: |i| format!(r"\b(?s:(.)(.)(.)(.)){{0,25}}(q{i}z)?"),
        },
        Shape {
            name: r"[a-z ]*a[a-z ]{20}q<i>z (lazy DFA blow-up)",
            pattern: |i| format!(r"[a-z ]*a[a-z ]{{20}}q{i}z"),
        },
    ]
}

/// As many routes of `shape` as fit in one plugin's budget (at most
/// [`router::MAX_ROUTES`]), numbered from `first`; `None` if not even one
/// fits.
fn full_plugin(
    shape: &Shape,
    first: usize,
    limits: &RoutingConfig,
) -> anyhow::Result<Option<Vec<CompiledRoute>>> {
    let route = |i: usize| listen_to((shape.pattern)(first + i), format!("h{i}"));
    let one = match router::compile(&[route(0)], limits) {
        Ok(mut one) => one.remove(0).cost(),
        Err(router::RouteError::PluginBudget { .. }) => return Ok(None),
        // A pattern over the per-route cap is refused at load: it costs
        // nothing at run time.
        Err(e @ router::RouteError::BadPattern { .. }) => {
            if first == 0 {
                println!("  {}: refused at load: {e}", shape.name);
            }
            return Ok(None);
        }
        Err(e) => bail!("{}: {e}", shape.name),
    };
    let mut n = (limits.max_plugin_route_bytes / one).min(router::MAX_ROUTES);
    // Routes differ a little in cost (their literals do): drop one until
    // they fit.
    loop {
        let routes: Vec<Route> = (0..n).map(route).collect();
        match router::compile(&routes, limits) {
            Ok(compiled) => return Ok(Some(compiled)),
            Err(router::RouteError::PluginBudget { .. }) if n > 1 => n -= 1,
            Err(e) => bail!("{}: {e}", shape.name),
        }
    }
}

/// A host's worth of plugins, each from `plugin(p)`, added while the host
/// budget allows them (at most `max` of them).
fn full_host(
    limits: &RoutingConfig,
    max: usize,
    mut plugin: impl FnMut(usize) -> anyhow::Result<Option<Vec<CompiledRoute>>>,
) -> anyhow::Result<Vec<Vec<CompiledRoute>>> {
    let mut plugins: Vec<Vec<CompiledRoute>> = Vec::new();
    let mut loaded = 0;
    while plugins.len() < max {
        let Some(routes) = plugin(plugins.len())? else {
            break;
        };
        if router::check_host_budget(loaded, &routes, limits).is_err() {
            break;
        }
        loaded += routes.iter().map(CompiledRoute::cost).sum::<usize>();
        plugins.push(routes);
    }
    Ok(plugins)
}

/// `unit` repeated and cut (at a character boundary) to `bytes`.
fn text_of(unit: &str, bytes: usize) -> String {
    let mut text = unit.repeat(bytes / unit.len() + 1);
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

/// What matching one host's messages measured.
#[derive(Debug)]
struct Matched {
    /// The slowest of the messages: its name and time.
    slowest: (&'static str, Duration),
    /// One set of caches, after every message.
    cache_set: usize,
    /// Resident memory gained while two threads matched every message at
    /// once, so with two sets of caches.
    resident_two: u64,
}

/// Matches each of `messages` on `plugins`' table: the median time of a
/// message over several, after a warm-up on two threads at once.
fn match_host(
    name: &str,
    plugins: &[Vec<CompiledRoute>],
    messages: &[(&'static str, Incoming)],
    repeats: usize,
) -> anyhow::Result<Matched> {
    let table = Routes::new(plugins.iter().map(Vec::as_slice));
    let routes = plugins.iter().map(Vec::len).sum::<usize>();
    let kib = |b: usize| b as f64 / 1024.0;
    println!(
        "  {name}: {} plugins, {routes} routes, {:.0} KiB of routes ({:.0} KiB the largest plugin's)",
        plugins.len(),
        kib(table.cost()),
        kib(plugins
            .iter()
            .map(|p| p.iter().map(CompiledRoute::cost).sum())
            .max()
            .unwrap_or(0))
    );
    let before = resident_bytes()?;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for (_, msg) in messages {
                    table.matching_indices(|p| &plugins[p], msg);
                }
            });
        }
    });
    let resident_two = resident_bytes()?.saturating_sub(before);
    let mut slowest = ("", Duration::ZERO);
    for (what, msg) in messages {
        let mut times = Vec::new();
        let mut matched = 0;
        for _ in 0..repeats {
            let t = Instant::now();
            matched = table.matching_indices(|p| &plugins[p], msg).len();
            times.push(t.elapsed().as_secs_f64());
        }
        let time = Duration::from_secs_f64(median(&mut times));
        println!(
            "    {what} ({} bytes): {:.2} ms a message, {matched} routes match",
            msg.text.len(),
            time.as_secs_f64() * 1e3
        );
        if time > slowest.1 {
            slowest = (what, time);
        }
    }
    let cache_set = table.cache_memory();
    println!(
        "    caches: {:.0} KiB a set; {:.1} MiB more resident with two threads matching at once",
        kib(cache_set),
        resident_two as f64 / (1024.0 * 1024.0)
    );
    Ok(Matched {
        slowest,
        cache_set,
        resident_two,
    })
}

fn routing(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let limits = RoutingConfig::default();
    let max = limits.max_message_bytes;
    println!(
        "\n## 5. Routing: the time and memory of matching one message of up to {max} bytes, \
         on hosts filled to max_host_route_bytes = {} with pathological routes \
         ({} bytes a plugin), and on an ordinary host",
        limits.max_host_route_bytes, limits.max_plugin_route_bytes
    );
    let messages = [
        ("\"é\" repeated", Incoming::addressed(text_of("é", max))),
        (
            "mixed text",
            Incoming::addressed(text_of("word wörd é ", max)),
        ),
        (
            "ASCII text",
            Incoming::addressed(text_of("lorem ipsum ", max)),
        ),
        (
            "a command",
            Incoming::addressed("store hello world under greeting"),
        ),
    ];
    let repeats = sizes.routing_repeats;

    // The attack this budget defeats: 256 routes of the largest shape.
    let attack: Vec<Route> = (0..router::MAX_ROUTES)
        .map(|i| listen_to(format!(r"\b(?s:.){{0,1000}}\bq{i}z"), format!("h{i}")))
        .collect();
    match router::compile(&attack, &limits) {
        Ok(_) => bail!("256 routes \\b(?s:.){{0,1000}}\\bq<i>z were accepted"),
        Err(e) => println!("  256 routes \\b(?s:.){{0,1000}}\\bq<i>z are refused: {e}"),
    }

    let mut worst = ("", "", Duration::ZERO);
    let mut worst_cache = (0, 0);
    for shape in shapes() {
        let plugins = full_host(&limits, usize::MAX, |p| {
            full_plugin(&shape, p * router::MAX_ROUTES, &limits)
        })?;
        if plugins.is_empty() {
            println!("  {}: not one route fits a plugin's budget", shape.name);
            continue;
        }
        let m = match_host(shape.name, &plugins, &messages, repeats)?;
        if m.slowest.1 > worst.2 {
            worst = (shape.name, m.slowest.0, m.slowest.1);
        }
        worst_cache = (
            worst_cache.0.max(m.cache_set),
            worst_cache.1.max(m.resident_two),
        );
    }
    report.info(
        "slowest message, a host full of pathological routes (matched on the blocking pool)",
        format!(
            "{:.1} ms ({}, {})",
            worst.2.as_secs_f64() * 1e3,
            worst.0,
            worst.1
        ),
    );
    report.info(
        "largest set of caches, a host full of pathological routes",
        format!(
            "{:.1} MiB ({:.1} MiB resident for two sets)",
            worst_cache.0 as f64 / (1024.0 * 1024.0),
            worst_cache.1 as f64 / (1024.0 * 1024.0)
        ),
    );

    let ordinary = full_host(&limits, 40, |_| {
        Ok(Some(router::compile(&ordinary_routes(), &limits)?))
    })?;
    ensure!(
        ordinary.len() == 40,
        "only {} ordinary plugins fit",
        ordinary.len()
    );
    let m = match_host(
        "ordinary host (40 plugins x 10 routes)",
        &ordinary,
        &messages,
        repeats,
    )?;
    report.info(
        "slowest message, ordinary host (40 plugins x 10 routes)",
        format!(
            "{:.2} ms ({}); caches {:.0} KiB a set",
            m.slowest.1.as_secs_f64() * 1e3,
            m.slowest.0,
            m.cache_set as f64 / 1024.0
        ),
    );
    Ok(())
}

/// The Redis backend's costs as the database grows: each measured at
/// three sizes of the database, in one run, and compared with the first.
async fn redis_scale(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    use warden::storage::{Grant, PluginStorage, RedisBackend, StorageLimits};
    use warden_tests::redis_server::RedisServer;
    let steps = sizes.redis_steps;
    println!(
        "\n## 6. Redis at scale: a plugin's storage calls with {:?} keys in the database \
         (a tenth in its own namespace, four tenths in another plugin's, half another \
         deployment's)",
        steps
    );
    let Some(server) = RedisServer::start() else {
        println!("  skipped: no redis-server (see the README's test section)");
        return Ok(());
    };
    let url = server.url();
    let ours = Arc::new(RedisBackend::connect(&url, "bench").await?);
    let others = RedisBackend::connect(&url, "another-app").await?;
    let id = PluginId::new("bench.Scale")?;
    let limits = StorageLimits {
        max_stored_bytes: u64::MAX / 2,
        ..StorageLimits::default()
    };
    let storage = |backend: Arc<RedisBackend>| {
        let backend: Arc<dyn Backend> = backend;
        PluginStorage::new(backend, id.clone(), Grant::None, limits, Arc::default())
    };
    let plugin = storage(ours.clone());
    let own = Namespace::Plugin(id.clone());
    let neighbour = Namespace::Plugin(PluginId::new("bench.Neighbour")?);
    let value = [b'v'; 100];
    let calls = 200;
    let mut first: Option<Vec<f64>> = None;
    let mut filled = 0;
    let names = [
        "start (connect and recount)",
        "get",
        "set",
        "set-many of 10, quota checked",
        "list-keys page of 100",
        "storage-size",
        "namespace recount",
    ];
    for &total in &steps {
        let (from, to) = (filled, total);
        fill(&ours, &own, from / 10, to / 10).await?;
        fill(&ours, &neighbour, from * 4 / 10, to * 4 / 10).await?;
        fill(&others, &own, from / 2, to / 2).await?;
        filled = total;
        let in_own = (total / 10).max(1);
        let mut figures = Vec::new();
        // Start: what a host does for a plugin's storage at start.
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let backend = Arc::new(RedisBackend::connect(&url, "bench").await?);
            storage(backend).recount().await?;
            times.push(t.elapsed().as_secs_f64());
        }
        figures.push(median(&mut times));
        for which in 1..names.len() {
            let mut times = Vec::new();
            for r in 0..5 {
                let t = Instant::now();
                for i in 0..calls {
                    let key = format!("key{:08}", (i * 7919 + r) % in_own);
                    match which {
                        1 => drop(plugin.get(&key, false).await?),
                        2 => plugin.set(&key, &value, None, false).await?,
                        3 => {
                            let batch: Vec<(String, Vec<u8>)> = (0..10)
                                .map(|j| (format!("batch{i:03}-{j}"), value.to_vec()))
                                .collect();
                            plugin.set_many(&batch, None, false).await?;
                        }
                        4 => drop(plugin.list_keys("key", Some(&key), 100, false).await?),
                        5 => drop(plugin.size().await?),
                        _ => drop(plugin.recount().await?),
                    }
                }
                times.push(t.elapsed().as_secs_f64() / calls as f64);
            }
            figures.push(median(&mut times));
        }
        for (name, secs) in names.iter().zip(&figures) {
            println!("  {total} keys: {name}: {:.1} µs", secs * 1e6);
        }
        if first.is_none() {
            first = Some(figures.clone());
        }
        if total == steps[2] {
            let base = first.clone().unwrap_or_default();
            for ((name, secs), base) in names.iter().zip(&figures).zip(&base) {
                let ratio = secs / base;
                report.check(
                    format!("Redis {name}, {} keys against {}", steps[2], steps[0]),
                    format!("{ratio:.2}× ({:.1} µs vs {:.1} µs)", secs * 1e6, base * 1e6),
                    "≤ 1.5×",
                    ratio <= 1.5,
                );
            }
        }
    }
    Ok(())
}

/// Writes keys `key{from}` to `key{to}` (100-byte values) into `namespace`.
async fn fill(
    backend: &warden::storage::RedisBackend,
    namespace: &Namespace,
    from: usize,
    to: usize,
) -> anyhow::Result<()> {
    let value = [b'v'; 100];
    let keys: Vec<Vec<u8>> = (from..to)
        .map(|i| encode_key(namespace, &format!("key{i:08}")))
        .collect();
    for batch in keys.chunks(1000) {
        let entries: Vec<(&[u8], &[u8])> = batch.iter().map(|k| (&k[..], &value[..])).collect();
        backend.set_many(&entries, None).await?;
    }
    Ok(())
}

/// The console's speed: the seed's transcript, scaled up (N `store` lines
/// then N `retrieve` lines, the example storage plugin, memory backend),
/// piped into `warden run --console`, against the same messages sent
/// through `Host::dispatch` one at a time, in this run.
/// `warden run --console` over `plugins` (compiled code in `cache`), on the
/// memory backend, with `input` piped in: how long the process took, and
/// how many lines it wrote.
fn piped_console(plugins: &Path, cache: &Path, input: &str) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let out = warden_tests::run_warden_with(
        Path::new(env!("CARGO_BIN_EXE_warden-under-test")),
        [
            "run".as_ref(),
            "--console".as_ref(),
            "--no-watch".as_ref(),
            "--plugins".as_ref(),
            plugins.as_os_str(),
            "--cache-dir".as_ref(),
            cache.as_os_str(),
        ],
        &[("WARDEN_STORAGE_BACKEND", "memory"), ("WARDEN_LOG", "warn")],
        input.as_bytes(),
    );
    ensure!(
        out.status.success(),
        "warden run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((
        started.elapsed(),
        out.stdout.iter().filter(|&&b| b == b'\n').count(),
    ))
}

async fn console(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let n = sizes.console_lines;
    println!(
        "\n## 7. Console: {n} store and {n} retrieve lines piped into `warden run --console`, \
         against the same messages through Host::dispatch"
    );
    let plugins = warden_tests::plugins_dir(&[warden_tests::STORAGE]);
    let cache = tempfile::tempdir()?;
    let mut transcript = String::new();
    for i in 0..n {
        transcript.push_str(&format!("store value{i} under key{i}\n"));
    }
    for i in 0..n {
        transcript.push_str(&format!("retrieve key{i}\n"));
    }
    let messages = 2 * n;
    let console_run = |input: &str| piped_console(plugins.path(), cache.path(), input);
    // Start-up and shutdown alone (the cache warm), to take from the runs.
    console_run("")?;
    let (mut piped, mut dispatched) = (Vec::new(), Vec::new());
    for _ in 0..sizes.throughput_repeats {
        let (bare, _) = console_run("")?;
        let (whole, lines) = console_run(&transcript)?;
        ensure!(lines == messages, "{lines} replies to {messages} messages");
        let secs = whole.saturating_sub(bare).as_secs_f64().max(1e-9);
        piped.push(messages as f64 / secs);

        let host = Host::builder()
            .config(Config::default())
            .backend(Arc::new(warden::storage::MemoryBackend::new()))
            .plugins_dir(plugins.path())
            .cache_dir(cache.path())
            .build()
            .await?;
        let started = Instant::now();
        for line in transcript.lines() {
            let outcomes = host.dispatch(&Incoming::addressed(line)).await;
            ensure!(outcomes.len() == 1, "{line}: {outcomes:?}");
        }
        dispatched.push(messages as f64 / started.elapsed().as_secs_f64());
        host.shutdown().await?;
    }
    let (piped, dispatched) = (median(&mut piped), median(&mut dispatched));
    println!(
        "  piped console: {piped:.0} msg/s; Host::dispatch, one at a time: {dispatched:.0} msg/s"
    );
    report.info("console, piped transcript", format!("{piped:.0} msg/s"));
    report.info(
        "Host::dispatch, the same messages one at a time",
        format!("{dispatched:.0} msg/s"),
    );
    let ratio = piped / dispatched;
    report.check(
        "console against Host::dispatch",
        format!("{ratio:.2}× ({piped:.0} vs {dispatched:.0} msg/s)"),
        "≥ 0.5×",
        ratio >= 0.5,
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// 9. A Python plugin: its first answer after it is dropped in, and its cost
// per message

/// The Python storage plugin, built into `dir` with componentize-py; `None`
/// (with the reason) when it cannot be built here.
fn build_python_plugin(dir: &Path) -> Result<std::path::PathBuf, String> {
    let out = dir.join("python_storage.wasm");
    let built = std::process::Command::new("sh")
        .arg("example-plugins/python-storage/build.sh")
        .arg(&out)
        .current_dir(warden_tests::repo_root())
        .output()
        .map_err(|e| format!("cannot run the build: {e}"))?;
    if !built.status.success() {
        return Err(String::from_utf8_lossy(&built.stderr).trim().to_owned());
    }
    Ok(out)
}

/// The Python storage plugin with one handler more (`storage version`
/// answers `2`), built into `dir/changed/python_storage.wasm`: the same
/// identity, changed.
fn build_changed_python_plugin(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let root = warden_tests::repo_root();
    let source =
        std::fs::read_to_string(root.join("example-plugins/python-storage/python_storage.py"))?;
    let changed = dir.join("changed");
    std::fs::create_dir_all(&changed)?;
    std::fs::write(
        changed.join("python_storage.py"),
        format!(
            "{source}\n    @respond_to(r\"^storage version$\")\n    async def version(self, msg):\n        await msg.say(\"2\")\n"
        ),
    )?;
    let out = changed.join("python_storage.wasm");
    let built = std::process::Command::new("python3")
        .arg("guest-sdk/python/build.py")
        .arg(changed.join("python_storage.py"))
        .arg("-o")
        .arg(&out)
        .current_dir(&root)
        .output()?;
    ensure!(
        built.status.success(),
        "building the changed Python plugin failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Ok(out)
}

/// A host watching the empty directory `plugins`, with an empty cache in
/// `cache`, with the baseline compiler or without.
async fn watching_host(plugins: &Path, cache: &Path, baseline: bool) -> anyhow::Result<Host> {
    let config = Config::parse(
        &format!("[plugins]\nbaseline = {baseline}\n"),
        "bench.toml".as_ref(),
    )?;
    Ok(Host::builder()
        .config(config)
        .backend(Arc::new(warden::storage::MemoryBackend::new()))
        .plugins_dir(plugins)
        .cache_dir(cache)
        .watch(true)
        .build()
        .await?)
}

/// Drops `file` into `plugins` at once (a rename) and waits for the first
/// answer of its plugin; how long that took.
async fn first_answer(host: &Host, file: &Path, plugins: &Path) -> anyhow::Result<Duration> {
    let staged = plugins.with_extension("staged");
    std::fs::copy(file, &staged)?;
    let started = Instant::now();
    std::fs::rename(&staged, plugins.join("python_storage.wasm"))?;
    loop {
        let outcomes = host.dispatch(&Incoming::addressed("store v under k")).await;
        if let [one] = &outcomes[..] {
            ensure!(
                one.replies.first().map(|r| r.text.as_str()) == Some("'v' stored under k!"),
                "the first answer is {one:?}"
            );
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "no answer within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the plugin `id` runs optimized code; the time since
/// `dropped`.
async fn until_optimized(host: &Host, id: &str, dropped: Instant) -> anyhow::Result<Duration> {
    while host.plugin_code(id) != Some(warden::runtime::Code::Optimized) {
        ensure!(
            dropped.elapsed() < Duration::from_secs(600),
            "{id} was not optimized within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(dropped.elapsed())
}

/// The median time of the messages `first` and `second`, one after the
/// other, to `host`.
async fn per_pair(host: &Host, n: usize, first: &str, second: &str) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        ask(host, first).await?;
        ask(host, second).await?;
        times.push(micros(t.elapsed()));
    }
    Ok(median(&mut times))
}

/// The median time of a `store` and a `retrieve` message to `host`.
async fn per_message(host: &Host, n: usize) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        ask(host, &format!("store v{i} under k{i}")).await?;
        ask(host, &format!("retrieve k{i}")).await?;
        times.push(micros(t.elapsed()));
    }
    Ok(median(&mut times))
}

async fn python(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    println!(
        "\n## 9. A Python plugin (componentize-py): first answer after it is dropped into a running host, and its cost per message"
    );
    let build = tempfile::tempdir()?;
    let file = match build_python_plugin(build.path()) {
        Ok(file) => file,
        Err(why) => {
            println!("  skipped: the Python plugin cannot be built here: {why}");
            return Ok(());
        }
    };
    let mib = std::fs::metadata(&file)?.len() as f64 / (1024.0 * 1024.0);

    // Cranelift first (the baseline compiler off), then Winch first.
    let plugins = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let host = watching_host(plugins.path(), cache.path(), false).await?;
    let cold = first_answer(&host, &file, plugins.path()).await?;
    host.shutdown().await?;
    let plugins = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    let host = watching_host(plugins.path(), cache.path(), true).await?;
    let first = first_answer(&host, &file, plugins.path()).await?;
    let id = "python_storage.StoragePlugin";
    ensure!(
        host.plugin_code(id) == Some(warden::runtime::Code::Baseline),
        "the first answer did not come from baseline code"
    );
    let optimized = until_optimized(&host, id, Instant::now() - first).await?;

    // The plugin changed (one handler more, the same identity) and dropped
    // over the first while the host runs: the cache holds the compiled
    // functions of its earlier version.
    let changed = build_changed_python_plugin(build.path())?;
    let reused_before = host.cache().map_or(0, |c| c.functions_reused());
    let staged = plugins.path().with_extension("staged");
    std::fs::copy(&changed, &staged)?;
    let dropped = Instant::now();
    std::fs::rename(&staged, plugins.path().join("python_storage.wasm"))?;
    loop {
        let outcomes = host.dispatch(&Incoming::addressed("storage version")).await;
        if outcomes
            .iter()
            .any(|o| o.replies.iter().any(|r| r.text == "2"))
        {
            break;
        }
        ensure!(
            dropped.elapsed() < Duration::from_secs(600),
            "the changed plugin did not answer within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let changed_first = dropped.elapsed();
    let changed_optimized = until_optimized(&host, id, dropped).await?;
    let reused = host.cache().map_or(0, |c| c.functions_reused()) - reused_before;
    host.shutdown().await?;
    println!(
        "  the plugin changed and dropped in again: first answer {:.2} s, optimized code in place {:.2} s after the drop ({reused} compiled functions reused)",
        changed_first.as_secs_f64(),
        changed_optimized.as_secs_f64(),
    );
    println!(
        "  {mib:.1} MiB component: first answer {:.2} s with the baseline compiler, {:.2} s without; optimized code in place {:.2} s after the drop",
        first.as_secs_f64(),
        cold.as_secs_f64(),
        optimized.as_secs_f64()
    );
    report.check(
        format!("first answer of a {mib:.0} MiB Python plugin dropped into a running host"),
        format!(
            "{:.2} s ({:.1}× faster than {:.2} s optimizing first)",
            first.as_secs_f64(),
            cold.as_secs_f64() / first.as_secs_f64(),
            cold.as_secs_f64()
        ),
        "< 3 s",
        first < Duration::from_secs(3),
    );
    report.check(
        "optimized code in place after the drop, against optimizing first",
        format!(
            "{:.2} s ({:.2}× of {:.2} s)",
            optimized.as_secs_f64(),
            optimized.as_secs_f64() / cold.as_secs_f64(),
            cold.as_secs_f64()
        ),
        "≤ 1.0×",
        optimized <= cold,
    );

    report.info(
        "first answer of the changed Python plugin dropped in over the first",
        format!("{:.2} s", changed_first.as_secs_f64()),
    );
    report.check(
        "optimized code in place after the changed plugin is dropped in, against optimizing first",
        format!(
            "{:.2} s ({:.2}× of {:.2} s)",
            changed_optimized.as_secs_f64(),
            changed_optimized.as_secs_f64() / cold.as_secs_f64(),
            cold.as_secs_f64()
        ),
        "≤ 1.0×",
        changed_optimized <= cold,
    );

    // `warden plugins check`: the cache (warm now) and the baseline compiler.
    let inspector = warden::inspect::Inspector::new(&Config::default())?;
    let t = Instant::now();
    inspector.inspect(&file).await?;
    let check_cold = t.elapsed();
    let inspector = inspector.with_cache(Some(cache.path().to_path_buf()));
    let t = Instant::now();
    inspector.inspect(&file).await?;
    let check_warm = t.elapsed();
    report.info(
        "`warden plugins check` of the Python plugin",
        format!(
            "{:.2} s not cached (baseline compiler), {:.2} s cached",
            check_cold.as_secs_f64(),
            check_warm.as_secs_f64()
        ),
    );

    // Per message, against the Rust storage plugin, both warm, on the
    // memory backend.
    let n = sizes.python_messages;
    let py_dir = tempfile::tempdir()?;
    std::fs::copy(&file, py_dir.path().join("python_storage.wasm"))?;
    let rs_dir = warden_tests::plugins_dir(&[warden_tests::STORAGE]);
    let start = |dir: std::path::PathBuf| {
        let cache = cache.path().to_path_buf();
        async move {
            Host::builder()
                .backend(Arc::new(warden::storage::MemoryBackend::new()))
                .plugins_dir(dir)
                .cache_dir(cache)
                .build()
                .await
        }
    };
    let py = start(py_dir.path().to_path_buf()).await?;
    let rs = start(rs_dir.path().to_path_buf()).await?;
    per_message(&py, n / 10).await?;
    per_message(&rs, n / 10).await?;
    let (py_us, rs_us) = (per_message(&py, n).await?, per_message(&rs, n).await?);
    println!("  store + retrieve, median of {n}: Python {py_us:.0} µs, Rust {rs_us:.0} µs");
    report.check(
        "Python plugin's store + retrieve against the Rust plugin's",
        format!(
            "{:.2}× ({py_us:.0} µs against {rs_us:.0} µs)",
            py_us / rs_us
        ),
        "≤ 1.5×",
        py_us / rs_us <= 1.5,
    );
    py.shutdown().await?;
    rs.shutdown().await?;

    // Memory of idle instances, each figure in fresh processes.
    let probe = build.path().join("python_probe.wasm");
    let built = std::process::Command::new("python3")
        .args([
            "guest-sdk/python/build.py",
            "tests/python-plugins/python_probe.py",
            "-o",
        ])
        .arg(&probe)
        .current_dir(warden_tests::repo_root())
        .output()?;
    ensure!(
        built.status.success(),
        "building the Python probe failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    // The floor of a Python plugin's cost per message, with no storage
    // call: two messages to a handler that only answers (`py state`),
    // optimized code, against the Rust plugin's store + retrieve pair.
    // What no change to the storage path can remove.
    let floor_dir = tempfile::tempdir()?;
    std::fs::copy(&probe, floor_dir.path().join("python_probe.wasm"))?;
    let floor = start(floor_dir.path().to_path_buf()).await?;
    until_optimized(&floor, "python_probe.Probe", Instant::now()).await?;
    per_pair(&floor, n / 10, "py state", "py state").await?;
    let floor_us = per_pair(&floor, n, "py state", "py state").await?;
    println!("  two messages answered without storage, median of {n}: Python {floor_us:.0} µs");
    report.info(
        "Python plugin's floor (two messages, one answer each, no storage) against the Rust plugin's store + retrieve",
        format!(
            "{:.2}× ({floor_us:.0} µs against {rs_us:.0} µs; with storage {py_us:.0} µs)",
            floor_us / rs_us
        ),
    );
    floor.shutdown().await?;

    let repeats = sizes.memory_repeats;
    let memory_cache = tempfile::tempdir()?;
    instance_memory(
        "Rust (tests/plugins/hostile)",
        &warden_tests::wasm(warden_tests::HOSTILE),
        "counted 300",
        memory_cache.path(),
        repeats,
        report,
    )?;
    let (_, more) = instance_memory(
        "Python (python_probe)",
        &probe,
        "py wait",
        memory_cache.path(),
        repeats,
        report,
    )?;
    report.check(
        "resident memory of a further idle instance of a Python plugin",
        format!("{more:.2} MiB"),
        "< 2 MiB",
        more < 2.0,
    );
    Ok(())
}

/// `--instances FILE CACHE_DIR N MESSAGE`: see the module's docs.
fn instances_host(args: &[String]) -> anyhow::Result<()> {
    let [file, cache, count, message] = args else {
        bail!("usage: --instances FILE CACHE_DIR N MESSAGE");
    };
    let count: usize = count.parse()?;
    // A handler that spins holds its worker thread: one thread for each
    // instance lets every call start before the first ends. At least four,
    // so that the runs the bench compares have the same threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(count.max(4))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = Config::parse(
            &format!(
                "[limits]\nmax_instances = {count}\nmax_calls_in_flight = {}\n",
                count.max(2)
            ),
            "bench.toml".as_ref(),
        )?;
        let mut builder = Host::builder()
            .config(config)
            .backend(Arc::new(warden::storage::MemoryBackend::new()))
            .cache_dir(cache);
        if file != "-" {
            builder = builder.plugin_file(file);
        }
        let host = builder.build().await?;
        ensure!(host.skipped().is_empty(), "{:?}", host.skipped());
        let host = Arc::new(host);
        if file != "-" {
            let calls: Vec<_> = (0..count)
                .map(|_| {
                    let (host, message) = (host.clone(), message.clone());
                    tokio::spawn(async move { host.dispatch(&Incoming::addressed(message)).await })
                })
                .collect();
            // Each instance counts the calls it served: N first calls mean
            // N instances.
            for call in calls {
                let outcomes = call.await?;
                ensure!(
                    outcomes.len() == 1
                        && outcomes[0].error.is_none()
                        && outcomes[0]
                            .replies
                            .last()
                            .is_some_and(|r| r.text == "call 1 of this instance"),
                    "{message:?} did not start {count} instances: {outcomes:?}"
                );
            }
        }
        let host = Arc::into_inner(host).context("the host is still shared")?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("resident {}", resident_bytes()?);
        // Where the resident pages are: written by this process only
        // (private dirty), anonymous or mapped from files, and each
        // physical page counted once however often it is mapped
        // (proportional set size; this process is the only one mapping
        // most of them).
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
        let status = std::fs::read_to_string("/proc/self/status")?;
        for (text, field, name) in [
            (&rollup, "Private_Dirty:", "private_dirty"),
            (&rollup, "Pss:", "pss"),
            (&status, "RssAnon:", "rss_anon"),
            (&status, "RssFile:", "rss_file"),
            (&status, "RssShmem:", "rss_shmem"),
        ] {
            let kib: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("/proc/self has no {field}"))?;
            println!("{name} {}", kib * 1024);
        }
        host.shutdown().await?;
        anyhow::Ok(())
    })
}

/// The figures `--instances` prints, in bytes.
const PAGE_FIGURES: [&str; 6] = [
    "resident",
    "private_dirty",
    "pss",
    "rss_anon",
    "rss_file",
    "rss_shmem",
];

/// Runs `--instances` in a fresh process; the figures it printed, in the
/// order of [`PAGE_FIGURES`].
fn instances_resident(
    file: &str,
    cache: &Path,
    count: usize,
    message: &str,
) -> anyhow::Result<[u64; PAGE_FIGURES.len()]> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--instances", file])
        .arg(cache)
        .args([&count.to_string(), message])
        .env("WARDEN_LOG", "warn")
        .output()?;
    ensure!(
        out.status.success(),
        "--instances failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut figures = [0; PAGE_FIGURES.len()];
    for (figure, name) in figures.iter_mut().zip(PAGE_FIGURES) {
        *figure = stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .with_context(|| format!("--instances printed no {name}"))?
            .parse()
            .with_context(|| format!("the {name} --instances printed"))?;
    }
    Ok(figures)
}

/// Resident memory of a plugin with 1 and with 4 idle instances, above a
/// host with none: the median of `repeats` fresh processes each. Returns
/// the resident memory of the plugin with its first instance, and of each
/// further instance, in MiB.
fn instance_memory(
    name: &str,
    file: &Path,
    message: &str,
    cache: &Path,
    repeats: usize,
    report: &mut Report,
) -> anyhow::Result<(f64, f64)> {
    let file = file.to_str().context("a plugin path that is not UTF-8")?;
    // Warms the cache: the figures are of optimized code.
    instances_resident(file, cache, 1, message)?;
    let mut runs: [[Vec<f64>; PAGE_FIGURES.len()]; 3] = Default::default();
    for _ in 0..repeats {
        for (runs, (file, count)) in runs.iter_mut().zip([("-", 1), (file, 1), (file, 4)]) {
            let figures = instances_resident(file, cache, count, message)?;
            for (run, figure) in runs.iter_mut().zip(figures) {
                run.push(figure as f64);
            }
        }
    }
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let [none, one, four] = runs.map(|figures| figures.map(|mut runs| mib(median(&mut runs))));
    // Index 0 is the resident memory.
    let first = one[0] - none[0];
    let more = (four[0] - one[0]) / 3.0;
    println!(
        "  {name}: no plugin {:.1} MiB, 1 instance {:.1} MiB, 4 instances {:.1} MiB: {first:.2} MiB for the plugin and its first instance, {more:.2} MiB for each further one",
        none[0], one[0], four[0]
    );
    let each: Vec<String> = PAGE_FIGURES
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, name)| format!("{name} {:+.2}", (four[i] - one[i]) / 3.0))
        .collect();
    println!(
        "  {name}: each further instance, in MiB: {}",
        each.join(", ")
    );
    report.info(
        format!("resident memory of the {name} plugin, idle"),
        format!(
            "{first:.2} MiB with 1 instance, {:.2} MiB with 4 ({more:.2} MiB each further instance)",
            four[0] - none[0]
        ),
    );
    // Index 2 is the proportional set size: each physical page once.
    report.info(
        format!("proportional set size of each further idle instance of the {name} plugin"),
        format!("{:.2} MiB", (four[2] - one[2]) / 3.0),
    );
    Ok((first, more))
}

// ---------------------------------------------------------------------------
// 10. Side by side with Slack Machine

/// Slack Machine's version the peer section installs.
const SLACK_MACHINE: &str = "slack-machine==0.40.1";

/// The seed's transcript run as the example storage plugin runs it, on
/// Slack Machine's `PluginStorage` over its memory backend: the median time
/// of one transcript, in microseconds, over `repeats` runs of `rounds`.
const SLACK_MACHINE_TRANSCRIPT: &str = r#"
import asyncio, statistics, sys, time
from machine.storage import PluginStorage
from machine.storage.backends.memory import MemoryStorage

async def transcript(storage):
    await storage.set("greeting", "hello world")
    assert await storage.get("greeting") == "hello world"
    assert await storage.has("greeting")
    await storage.delete("greeting")
    assert not await storage.has("greeting")
    assert await storage.get("greeting") is None
    await storage.get_storage_size_human()

async def main(rounds, repeats):
    storage = PluginStorage("example.storage.StoragePlugin", MemoryStorage({}))
    for _ in range(rounds // 10):
        await transcript(storage)
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            await transcript(storage)
        runs.append((time.perf_counter() - started) / rounds * 1e6)
    print("transcript_us", statistics.median(runs))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"#;

/// The Python of a virtual environment with Slack Machine: the one
/// `WARDEN_BENCH_SLACK_MACHINE` names, or one made in `scratch`.
fn slack_machine_python(scratch: &Path) -> Result<std::path::PathBuf, String> {
    let venv = match std::env::var_os("WARDEN_BENCH_SLACK_MACHINE") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            let venv = scratch.join("venv");
            let run = |program: &Path, args: &[&std::ffi::OsStr]| {
                let out = std::process::Command::new(program)
                    .args(args)
                    .output()
                    .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
                }
            };
            run(
                Path::new("python3"),
                &["-m".as_ref(), "venv".as_ref(), venv.as_os_str()],
            )?;
            run(
                &venv.join("bin/pip"),
                &[
                    "install".as_ref(),
                    "--quiet".as_ref(),
                    SLACK_MACHINE.as_ref(),
                ],
            )?;
            venv
        }
    };
    Ok(venv.join("bin/python"))
}

async fn peer(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let rounds = sizes.console_lines / 5;
    let repeats = sizes.throughput_repeats.max(3);
    println!(
        "\n## 10. Side by side: the seed's transcript (7 storage calls), {rounds} times, through Warden and through Slack Machine 0.40.1's PluginStorage on its memory backend"
    );
    let scratch = tempfile::tempdir()?;
    let python = match slack_machine_python(scratch.path()) {
        Ok(python) => python,
        Err(why) => {
            println!("  skipped: Slack Machine cannot be installed here: {why}");
            return Ok(());
        }
    };
    let out = std::process::Command::new(&python)
        .args(["-c", SLACK_MACHINE_TRANSCRIPT])
        .args([rounds.to_string(), repeats.to_string()])
        .output()?;
    ensure!(
        out.status.success(),
        "the Slack Machine transcript failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer_us: f64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("transcript_us "))
        .context("the Slack Machine run printed no figure")?
        .trim()
        .parse()?;

    let transcript: Vec<&str> = warden_tests::TRANSCRIPT.lines().collect();
    let plugins = warden_tests::plugins_dir(&[warden_tests::STORAGE]);
    let cache = tempfile::tempdir()?;
    let host = Host::builder()
        .backend(Arc::new(warden::storage::MemoryBackend::new()))
        .plugins_dir(plugins.path())
        .cache_dir(cache.path())
        .build()
        .await?;
    let run_library = async |rounds: usize| -> anyhow::Result<f64> {
        let started = Instant::now();
        for _ in 0..rounds {
            for line in &transcript {
                let outcomes = host.dispatch(&Incoming::addressed(*line)).await;
                ensure!(
                    outcomes.len() == 1 && outcomes[0].error.is_none(),
                    "{line}: {outcomes:?}"
                );
            }
        }
        Ok(micros(started.elapsed()) / rounds as f64)
    };
    run_library(rounds / 10).await?;
    let mut library = Vec::new();
    for _ in 0..repeats {
        library.push(run_library(rounds).await?);
    }
    let library = median(&mut library);
    host.shutdown().await?;

    // The console: the transcript piped in `rounds` times, less a bare
    // start and stop.
    let console_run =
        |input: &str| piped_console(plugins.path(), cache.path(), input).map(|(took, _)| took);
    let input = warden_tests::TRANSCRIPT.repeat(rounds);
    let mut console = Vec::new();
    for _ in 0..repeats {
        let bare = console_run("")?;
        let whole = console_run(&input)?;
        console.push(micros(whole.saturating_sub(bare)) / rounds as f64);
    }
    let console = median(&mut console);
    println!(
        "  one transcript: Slack Machine {peer_us:.1} µs; Warden library {library:.1} µs, console {console:.1} µs"
    );
    report.info(
        "the seed's transcript on Slack Machine 0.40.1 (PluginStorage, memory backend, no sandbox)",
        format!("{peer_us:.1} µs"),
    );
    report.info(
        "the seed's transcript through Warden's Host::dispatch (routing and sandbox included)",
        format!(
            "{library:.1} µs ({:.2}× Slack Machine's)",
            library / peer_us
        ),
    );
    report.info(
        "the seed's transcript through Warden's console",
        format!(
            "{console:.1} µs ({:.2}× Slack Machine's)",
            console / peer_us
        ),
    );
    Ok(())
}
