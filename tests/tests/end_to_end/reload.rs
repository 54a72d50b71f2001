//! Hot reload and the compilation cache, against a running host.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::Host;
use warden::storage::MemoryBackend;
use warden_tests::*;

/// Polls until `check` holds, for at most ten seconds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Writes `bytes` to `dest` the way an operator's copy would be seen:
/// written under another name, then renamed into place.
fn drop_in(dest: &Path, bytes: &[u8]) {
    let tmp = dest.with_extension("partial");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dest).unwrap();
}

/// `component` with a custom section appended: different bytes, same plugin.
fn rebuilt(component: &[u8], tag: u8) -> Vec<u8> {
    let mut out = component.to_vec();
    out.extend_from_slice(&[0, 3, 1, b't', tag]);
    out
}

async fn watching(names: &[&str]) -> (Arc<Host>, tempfile::TempDir) {
    let dir = plugins_dir(names);
    let host = Host::builder()
        .plugins_dir(dir.path())
        .backend(Arc::new(MemoryBackend::new()))
        .watch(true)
        .build()
        .await
        .unwrap();
    (Arc::new(host), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_goes_live_and_a_removed_one_goes_away() {
    let (host, dir) = watching(&[STORAGE]).await;
    assert!(say(&host, "remember x as k").await.is_empty());

    drop_in(
        &dir.path().join(NOTES),
        &std::fs::read(wasm(NOTES)).unwrap(),
    );
    let took = eventually("the new plugin answers", async || {
        say(&host, "remember x as k").await == ["noted 'x' as <k>."]
    })
    .await;
    assert!(took < Duration::from_secs(3), "{took:?}");

    std::fs::remove_file(dir.path().join(NOTES)).unwrap();
    eventually("the removed plugin is gone", async || {
        say(&host, "recall k").await.is_empty()
    })
    .await;
    assert_eq!(
        say(&host, "store v under k").await,
        ["'v' stored under k!"],
        "the other plugin stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_plugin_keeps_its_data_and_calls_under_way_finish() {
    let (host, dir) = watching(&[STORAGE, HOSTILE]).await;
    assert_eq!(
        say(&host, "store kept under memo").await,
        ["'kept' stored under memo!"]
    );
    let digest = |host: &Host, id: &str| {
        host.plugins()
            .into_iter()
            .find(|p| p.id.as_str() == id)
            .map(|p| p.digest)
            .unwrap()
    };

    // A slow call starts on the old hostile plugin...
    let slow = {
        let host = host.clone();
        tokio::spawn(async move { say(&host, "busy 3000").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...both plugins are replaced meanwhile...
    let old_hostile = digest(&host, "warden.tests.Hostile");
    let old_storage = digest(&host, "example.storage.StoragePlugin");
    drop_in(
        &dir.path().join(HOSTILE),
        &rebuilt(&std::fs::read(wasm(HOSTILE)).unwrap(), 1),
    );
    drop_in(
        &dir.path().join(STORAGE),
        &rebuilt(&std::fs::read(wasm(STORAGE)).unwrap(), 1),
    );
    let took = eventually("both new versions are loaded", async || {
        digest(&host, "warden.tests.Hostile") != old_hostile
            && digest(&host, "example.storage.StoragePlugin") != old_storage
    })
    .await;
    assert!(took < Duration::from_secs(5), "reloading took {took:?}");
    // ...the new version serves new calls while the old one finishes.
    assert_eq!(say(&host, "ping").await, ["pong"]);
    assert!(
        !slow.is_finished(),
        "the slow call is still running on the old instance"
    );
    assert_eq!(slow.await.unwrap(), ["done after 3000 ms"]);
    // The same identity keeps its data.
    assert_eq!(
        say(&host, "retrieve memo").await,
        ["'kept' retrieved from <memo>!"]
    );
}

#[tokio::test]
async fn a_broken_replacement_leaves_the_old_version_serving() {
    let dir = plugins_dir(&[STORAGE]);
    let host = Host::builder()
        .plugins_dir(dir.path())
        .backend(Arc::new(MemoryBackend::new()))
        .build()
        .await
        .unwrap();
    std::fs::write(dir.path().join(STORAGE), b"half a file").unwrap();
    let reloaded = host.reload().await.unwrap();
    assert!(reloaded.replaced.is_empty() && reloaded.added.is_empty());
    assert_eq!(reloaded.failed.len(), 1);
    assert!(
        reloaded.failed[0]
            .to_string()
            .contains("storage.wasm: not a valid WebAssembly component")
    );
    assert_eq!(say(&host, "store v under k").await, ["'v' stored under k!"]);
    assert_eq!(host.skipped().len(), 1, "the failure is reported");

    // Once the file is whole again it is reloaded.
    drop_in(
        &dir.path().join(STORAGE),
        &rebuilt(&std::fs::read(wasm(STORAGE)).unwrap(), 2),
    );
    let reloaded = host.reload().await.unwrap();
    assert_eq!(reloaded.replaced, [dir.path().join(STORAGE)]);
    assert!(host.skipped().is_empty());
    assert_eq!(say(&host, "retrieve k").await, ["'v' retrieved from <k>!"]);
}

#[tokio::test]
async fn a_restart_with_unchanged_plugins_skips_compilation() {
    let dir = plugins_dir(&[STORAGE, NOTES, PROBE]);
    let cache = tempfile::tempdir().unwrap();
    let start = async || {
        Host::builder()
            .plugins_dir(dir.path())
            .backend(Arc::new(MemoryBackend::new()))
            .cache_dir(cache.path())
            .build()
            .await
            .unwrap()
    };
    let cold = start().await;
    let c = cold.cache().unwrap();
    assert_eq!((c.hits(), c.misses()), (0, 3));
    drop(cold);

    let warm = start().await;
    let c = warm.cache().unwrap();
    assert_eq!((c.hits(), c.misses()), (3, 0), "nothing compiled");
    assert_eq!(say(&warm, "store v under k").await, ["'v' stored under k!"]);
    drop(warm);

    // A changed file is compiled again; the others still come from the cache.
    drop_in(
        &dir.path().join(NOTES),
        &rebuilt(&std::fs::read(wasm(NOTES)).unwrap(), 3),
    );
    let changed = start().await;
    let c = changed.cache().unwrap();
    assert_eq!((c.hits(), c.misses()), (2, 1));
}

/// The CPU time (user and system) process `pid` has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux reports CPU time in clock ticks of 1/100 s.
    Duration::from_millis(ticks * 10)
}

#[test]
fn skipped_files_do_not_keep_the_watcher_reloading() {
    use std::ffi::OsStr;
    let dir = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let args: Vec<&OsStr> = run_args(
        dir.path(),
        data.path(),
        &["--listen".as_ref(), "127.0.0.1:0".as_ref()],
    );
    let server = warden_tests::server::Server::start(
        warden_bin!(),
        args,
        &[("WARDEN_LOG", "info,warden=debug")],
    );
    // A junk file, and the README's upgrade path: a second file declaring
    // the same identity, refused until rebound.
    drop_in(&dir.path().join("junk.wasm"), b"not a component");
    drop_in(
        &dir.path().join("storage-v2.wasm"),
        &rebuilt(&std::fs::read(wasm(STORAGE)).unwrap(), 2),
    );
    let reported = |log: &str, file: &str| {
        log.lines()
            .filter(|l| l.contains("plugin skipped") && l.contains(file))
            .count()
    };
    let started = Instant::now();
    while reported(&server.stderr(), "storage-v2.wasm") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Quiet for a while: no reload, no log line, no CPU.
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time(server.pid());
    std::thread::sleep(Duration::from_secs(2));
    let busy = cpu_time(server.pid()) - cpu;
    assert!(
        busy < Duration::from_millis(200),
        "{busy:?} of CPU in 2 s idle"
    );
    let log = server.stderr();
    assert_eq!(reported(&log, "junk.wasm"), 1, "{log}");
    assert_eq!(reported(&log, "storage-v2.wasm"), 1, "{log}");
    let reloads = log.matches("plugins directory reloaded").count();
    assert!(
        (1..=2).contains(&reloads),
        "{reloads} reloads for two new files:\n{log}"
    );

    // Other files do not count; a real change reloads once, and the
    // unchanged skipped file is not tried again.
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    std::fs::remove_file(dir.path().join("junk.wasm")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let log = server.stderr();
    assert_eq!(reported(&log, "junk.wasm"), 1, "{log}");
    assert_eq!(reported(&log, "storage-v2.wasm"), 1, "{log}");
    assert_eq!(
        log.matches("plugins directory reloaded").count(),
        reloads + 1,
        "{log}"
    );
    drop(server);
}
