//! The behaviour every [`Backend`] must have, written once and run against
//! each backend (see `tests/tests/end_to_end/conformance.rs`).
//!
//! Each case is an async function taking a fresh, empty [`Subject`]: the
//! backend under test and what its [`size`](Backend::size) measures. A new
//! backend passes by getting a `Subject` constructor and one line in the
//! list of backends there.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tempfile::TempDir;
use warden::identity::{Namespace, PluginId};
use warden::storage::{
    Backend, Counted, Entry, Grant, MemoryBackend, PluginStorage, RedisBackend, SledBackend,
    StorageError, StorageLimits,
};

use crate::redis_server::{RedisCluster, RedisServer, unique_prefix};

/// What a backend's [`size`](Backend::size) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeKind {
    /// The bytes of the live data: zero when empty, growing with every
    /// write and back to where it was once the writes are deleted.
    LiveData,
    /// The size of files on disk, which a log-structured store grows by
    /// appending and shrinks only when it reclaims old segments.
    OnDisk,
}

/// A fresh, empty backend under test.
#[derive(Debug)]
pub struct Subject {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// What its `size` measures.
    pub size: SizeKind,
    /// The same backend when it is sled, for its expiry index.
    sled: Option<Arc<SledBackend>>,
    /// The directory it stores in, removed once the test is done.
    _dir: Option<TempDir>,
    /// The server it stores in, stopped once the test is done.
    _server: Option<RedisServer>,
    /// The cluster it stores in, stopped once the test is done.
    _cluster: Option<RedisCluster>,
}

impl Subject {
    /// A [`MemoryBackend`].
    pub async fn memory() -> Option<Self> {
        Some(Self {
            backend: Arc::new(MemoryBackend::new()),
            size: SizeKind::LiveData,
            sled: None,
            _dir: None,
            _server: None,
            _cluster: None,
        })
    }

    /// A [`SledBackend`] in a temporary directory.
    pub async fn sled() -> Option<Self> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let backend = Arc::new(SledBackend::open(dir.path()).expect("open sled"));
        Some(Self {
            backend: backend.clone(),
            size: SizeKind::OnDisk,
            sled: Some(backend),
            _dir: Some(dir),
            _server: None,
            _cluster: None,
        })
    }

    /// A [`RedisBackend`] on a server of its own, under a unique prefix; `None`
    /// when there is no `redis-server` (see [`crate::redis_server`]).
    pub async fn redis() -> Option<Self> {
        let server = RedisServer::start()?;
        let backend = RedisBackend::connect(&server.url(), &unique_prefix("conformance"))
            .await
            .expect("connect to the test redis-server");
        Some(Self {
            backend: Arc::new(backend),
            size: SizeKind::LiveData,
            sled: None,
            _dir: None,
            _server: Some(server),
            _cluster: None,
        })
    }
}

impl Subject {
    /// A [`RedisBackend`] on a Redis Cluster of its own (three masters);
    /// `None` when there is no `redis-server`.
    pub async fn redis_cluster() -> Option<Self> {
        let cluster = RedisCluster::start()?;
        let backend = RedisBackend::connect_cluster(&cluster.urls(), &unique_prefix("cluster"))
            .await
            .expect("connect to the test cluster");
        Some(Self {
            backend: Arc::new(backend),
            size: SizeKind::LiveData,
            sled: None,
            _dir: None,
            _server: None,
            _cluster: Some(cluster),
        })
    }

    /// How many entries the backend's own expiry index holds, for a
    /// backend that keeps one (sled); `None` for the others.
    pub fn expiry_index_len(&self) -> Option<usize> {
        self.sled.as_ref().map(|sled| sled.expiry_index_len())
    }
}

/// A short expiry, and how long to wait for it to pass.
const SHORT_TTL: Duration = Duration::from_millis(300);
const PAST_SHORT_TTL: Duration = Duration::from_millis(450);

/// Whether less than [`SHORT_TTL`] has passed since `since`, so a key set
/// with it after `since` must still be there. On a machine so loaded that
/// the writes themselves took longer, the checks that depend on it are
/// skipped rather than failed.
fn before_short_ttl(since: Instant) -> bool {
    since.elapsed() < SHORT_TTL
}
/// An expiry no test outlives.
const LONG_TTL: Duration = Duration::from_secs(3600);

async fn get(s: &Subject, key: &[u8]) -> Option<Vec<u8>> {
    s.backend.get(key).await.expect("get")
}

async fn has(s: &Subject, key: &[u8]) -> bool {
    s.backend.has(key).await.expect("has")
}

async fn set(s: &Subject, key: &[u8], value: &[u8], ttl: Option<Duration>) {
    s.backend.set(key, value, ttl).await.expect("set");
}

async fn scan(s: &Subject, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<Entry> {
    s.backend.scan(prefix, after, limit).await.expect("scan")
}

fn keys(entries: &[Entry]) -> Vec<Vec<u8>> {
    entries.iter().map(|e| e.key.clone()).collect()
}

/// Every entry under `prefix`, read in pages of `page`, checking that each
/// page is within the limit, in order, and after the previous one.
async fn scan_all(s: &Subject, prefix: &[u8], page: usize) -> Vec<Entry> {
    let mut all: Vec<Entry> = Vec::new();
    loop {
        let after = all.last().map(|e| e.key.clone());
        let batch = scan(s, prefix, after.as_deref(), page).await;
        assert!(batch.len() <= page, "a page of {page} held {}", batch.len());
        for entry in &batch {
            assert!(
                entry.key.starts_with(prefix),
                "{:?} is outside the prefix",
                entry.key
            );
            if let Some(last) = all.last() {
                assert!(
                    last.key < entry.key,
                    "{:?} came after {:?}",
                    entry.key,
                    last.key
                );
            }
            all.push(entry.clone());
        }
        if batch.len() < page {
            return all;
        }
    }
}

/// A value is read back as it was written.
pub async fn round_trip(s: &Subject) {
    set(s, b"greeting", b"hello", None).await;
    assert_eq!(get(s, b"greeting").await.as_deref(), Some(&b"hello"[..]));
    assert_eq!(get(s, b"greeting2").await, None, "only the key written");
    assert_eq!(get(s, b"greetin").await, None, "only the key written");
}

/// Setting a key again replaces its value.
pub async fn overwrite(s: &Subject) {
    set(s, b"k", b"first, and longer", None).await;
    set(s, b"k", b"second", None).await;
    assert_eq!(get(s, b"k").await.as_deref(), Some(&b"second"[..]));
    assert_eq!(keys(&scan(s, b"", None, 10).await), [b"k".to_vec()]);
}

/// `has` follows `set` and `delete`.
pub async fn has_and_delete(s: &Subject) {
    assert!(!has(s, b"k").await);
    set(s, b"k", b"v", None).await;
    set(s, b"other", b"v", None).await;
    assert!(has(s, b"k").await);
    s.backend.delete(b"k").await.expect("delete");
    assert!(!has(s, b"k").await);
    assert_eq!(get(s, b"k").await, None);
    assert!(has(s, b"other").await, "delete removes only its key");
}

/// Deleting a key that is not there succeeds, and twice too.
pub async fn delete_missing_key(s: &Subject) {
    s.backend
        .delete(b"never-set")
        .await
        .expect("delete missing");
    set(s, b"k", b"v", None).await;
    s.backend.delete(b"k").await.expect("delete");
    s.backend.delete(b"k").await.expect("delete again");
    assert!(!has(s, b"k").await);
}

/// An empty value is a value: present, and distinct from a missing key.
pub async fn empty_value_is_not_missing(s: &Subject) {
    set(s, b"empty", b"", None).await;
    assert_eq!(get(s, b"empty").await, Some(Vec::new()));
    assert!(has(s, b"empty").await);
    assert_eq!(get(s, b"missing").await, None);
    assert!(!has(s, b"missing").await);
    let listed = scan(s, b"", None, 10).await;
    assert_eq!(keys(&listed), [b"empty".to_vec()]);
    assert_eq!(listed[0].value, b"");
}

/// Values (and keys) are bytes: every byte value survives.
pub async fn binary_values(s: &Subject) {
    let all: Vec<u8> = (0..=255).collect();
    let reversed: Vec<u8> = all.iter().rev().copied().collect();
    set(s, b"all-bytes", &all, None).await;
    assert_eq!(get(s, b"all-bytes").await, Some(all.clone()));
    let key = b"bin\x00\xff\r\n*?[]\\key";
    set(s, key, &reversed, None).await;
    assert_eq!(get(s, key).await, Some(reversed));
    assert!(has(s, key).await);
    let listed = scan(s, b"bin\x00", None, 10).await;
    assert_eq!(keys(&listed), [key.to_vec()]);
}

/// Keys of any UTF-8 text are stored and listed as their bytes.
pub async fn unicode_keys(s: &Subject) {
    let texts = ["ключ ✓", "日本語のキー", "emoji 🦀🔑", "é", "e\u{301}"];
    for (i, text) in texts.iter().enumerate() {
        set(s, text.as_bytes(), i.to_string().as_bytes(), None).await;
    }
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(
            get(s, text.as_bytes()).await,
            Some(i.to_string().into_bytes()),
            "{text}"
        );
    }
    let mut expected: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
    expected.sort();
    assert_eq!(keys(&scan(s, b"", None, 100).await), expected);
}

/// A value of 1 MiB (Warden's default limit) round-trips.
pub async fn large_value(s: &Subject) {
    let value: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    set(s, b"big", &value, None).await;
    assert_eq!(get(s, b"big").await, Some(value.clone()));
    assert_eq!(scan(s, b"big", None, 1).await[0].value, value);
}

/// A key with a short expiry is there before it passes and gone after it,
/// for `get`, `has` and `scan`; a key without expiry stays.
pub async fn short_expiry(s: &Subject) {
    set(s, b"kept", b"here", None).await;
    let since = Instant::now();
    set(s, b"temp", b"soon gone", Some(SHORT_TTL)).await;
    let (value, present) = (get(s, b"temp").await, has(s, b"temp").await);
    let listed = keys(&scan(s, b"", None, 10).await);
    if before_short_ttl(since) {
        assert_eq!(value.as_deref(), Some(&b"soon gone"[..]));
        assert!(present);
        assert_eq!(listed, [b"kept".to_vec(), b"temp".to_vec()]);
    }
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert!(!has(s, b"temp").await);
    assert_eq!(get(s, b"temp").await, None);
    assert_eq!(keys(&scan(s, b"", None, 10).await), [b"kept".to_vec()]);
    assert!(has(s, b"kept").await);
}

/// A zero expiry means expired at once, and the old value is gone too.
pub async fn zero_expiry(s: &Subject) {
    set(s, b"k", b"old", None).await;
    set(s, b"k", b"new", Some(Duration::ZERO)).await;
    assert_eq!(get(s, b"k").await, None);
    assert!(!has(s, b"k").await);
    assert!(scan(s, b"", None, 10).await.is_empty());
}

/// Setting a key again without expiry removes its expiry; setting it again
/// with one gives it one.
pub async fn overwrite_replaces_expiry(s: &Subject) {
    set(s, b"made-permanent", b"v1", Some(SHORT_TTL)).await;
    set(s, b"made-permanent", b"v2", None).await;
    set(s, b"made-temporary", b"v1", None).await;
    set(s, b"made-temporary", b"v2", Some(SHORT_TTL)).await;
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(get(s, b"made-permanent").await.as_deref(), Some(&b"v2"[..]));
    assert_eq!(get(s, b"made-temporary").await, None);
    let listed = scan(s, b"", None, 10).await;
    assert_eq!(keys(&listed), [b"made-permanent".to_vec()]);
    assert_eq!(listed[0].expires_at, None);
}

/// `replace` and `remove` write as `set` and `delete` do, and report the
/// length of the live value they replaced or removed: none for a missing
/// or expired key.
pub async fn replace_and_remove_report_the_old_length(s: &Subject) {
    let b = &s.backend;
    let replace = |key: &'static [u8], value: &'static [u8], ttl| async move {
        b.replace(key, value, ttl).await.expect("replace")
    };
    assert_eq!(replace(b"k", b"12345", None).await, None);
    assert_eq!(get(s, b"k").await.as_deref(), Some(&b"12345"[..]));
    assert_eq!(replace(b"k", b"", None).await, Some(5));
    assert_eq!(replace(b"k", b"abc", Some(SHORT_TTL)).await, Some(0));
    assert_eq!(b.remove(b"k").await.expect("remove"), Some(3));
    assert!(!has(s, b"k").await);
    assert_eq!(b.remove(b"k").await.expect("remove"), None);

    replace(b"expiring", b"old value", Some(SHORT_TTL)).await;
    replace(b"expiring-removed", b"old value", Some(SHORT_TTL)).await;
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(replace(b"expiring", b"new", None).await, None);
    assert_eq!(get(s, b"expiring").await.as_deref(), Some(&b"new"[..]));
    assert_eq!(b.remove(b"expiring-removed").await.expect("remove"), None);
}

/// `purge_expired` removes at most the expired keys and never a live one.
pub async fn purge_keeps_live_keys(s: &Subject) {
    for i in 0..20u8 {
        set(s, &[b'p', i], b"permanent", None).await;
        set(s, &[b'l', i], b"long", Some(LONG_TTL)).await;
    }
    let since = Instant::now();
    for i in 0..5u8 {
        set(s, &[b's', i], b"short", Some(SHORT_TTL)).await;
    }
    // Before anything has expired, nothing may be purged.
    let purged = s.backend.purge_expired().await.expect("purge");
    if before_short_ttl(since) {
        assert_eq!(purged, 0);
    }
    tokio::time::sleep(PAST_SHORT_TTL).await;
    let purged = s.backend.purge_expired().await.expect("purge");
    assert!(purged <= 5, "purged {purged} keys, but only 5 had expired");
    for i in 0..20u8 {
        assert!(has(s, &[b'p', i]).await);
        assert!(has(s, &[b'l', i]).await);
    }
    for i in 0..5u8 {
        assert!(!has(s, &[b's', i]).await);
    }
    assert_eq!(scan_all(s, b"", 7).await.len(), 40);
}

/// `size` grows with the data written, and, where it measures live data,
/// shrinks back once the data is deleted.
pub async fn size_follows_data(s: &Subject) {
    const KEYS: usize = 32;
    const VALUE: usize = 64 * 1024;
    let written = (KEYS * VALUE) as u64;
    let before = s.backend.size().await.expect("size");
    for i in 0..KEYS {
        let value = vec![i as u8; VALUE];
        set(s, format!("size/{i:02}").as_bytes(), &value, None).await;
    }
    let full = s.backend.size().await.expect("size");
    for i in 0..KEYS {
        s.backend
            .delete(format!("size/{i:02}").as_bytes())
            .await
            .expect("delete");
    }
    let emptied = s.backend.size().await.expect("size");
    match s.size {
        SizeKind::LiveData => {
            assert_eq!(before, 0, "an empty store has no live data");
            assert!(
                full >= written,
                "{written} bytes of values written, but size is {full}"
            );
            // Per-key overhead may be counted, but not several times the data.
            assert!(
                full < 2 * written,
                "size {full} for {written} bytes written"
            );
            assert_eq!(emptied, before, "every written key was deleted");
        }
        SizeKind::OnDisk => {
            // Every write is on disk once acknowledged, so the files hold
            // at least the data written. A deletion is itself a record
            // appended to the log; the space of deleted values comes back
            // only when the store later rewrites its segments, so the size
            // need not shrink right after the deletes, and is not checked
            // for it.
            assert!(
                full >= before + written,
                "{written} bytes written, but the size went from {before} to {full}"
            );
            assert!(emptied > 0);
        }
    }
}

/// Many tasks writing distinct keys at once lose none of them.
pub async fn concurrent_writers_lose_nothing(s: &Subject) {
    const TASKS: usize = 16;
    const KEYS: usize = 200;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let backend = s.backend.clone();
            tokio::spawn(async move {
                for k in 0..KEYS {
                    let key = format!("task{t:02}/key{k:03}");
                    backend
                        .set(key.as_bytes(), key.as_bytes(), None)
                        .await
                        .expect("set");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    for t in 0..TASKS {
        for k in 0..KEYS {
            let key = format!("task{t:02}/key{k:03}");
            assert_eq!(get(s, key.as_bytes()).await, Some(key.into_bytes()));
        }
    }
    let listed = scan_all(s, b"task", 1000).await;
    assert_eq!(listed.len(), TASKS * KEYS);
}

/// `scan` lists exactly the keys that start with the prefix.
pub async fn scan_filters_by_prefix(s: &Subject) {
    for key in [
        &b"app"[..],
        b"apple/1",
        b"apple/2",
        b"apple/",
        b"apples",
        b"appl",
        b"banana/1",
        b"Apple/1",
    ] {
        set(s, key, b"v", None).await;
    }
    assert_eq!(
        keys(&scan(s, b"apple/", None, 100).await),
        [b"apple/".to_vec(), b"apple/1".to_vec(), b"apple/2".to_vec()]
    );
    assert_eq!(keys(&scan(s, b"apple", None, 100).await).len(), 4);
    assert_eq!(keys(&scan(s, b"", None, 100).await).len(), 8);
    assert!(scan(s, b"cherry", None, 100).await.is_empty());
    assert!(scan(s, b"apple/1/", None, 100).await.is_empty());
}

/// Characters that are special in glob patterns or regular expressions are
/// literal in a scan prefix.
pub async fn scan_prefix_is_literal(s: &Subject) {
    for key in [
        &b"a*/1"[..],
        b"ab/1",
        b"a?/1",
        b"a[x]/1",
        b"ax/1",
        b"a\\/1",
        b"a.^$/1",
        b"a..../1",
    ] {
        set(s, key, b"v", None).await;
    }
    for (prefix, only) in [
        (&b"a*"[..], &b"a*/1"[..]),
        (b"a?", b"a?/1"),
        (b"a[x]", b"a[x]/1"),
        (b"a\\", b"a\\/1"),
        (b"a.^$", b"a.^$/1"),
    ] {
        assert_eq!(
            keys(&scan(s, prefix, None, 100).await),
            [only.to_vec()],
            "prefix {:?}",
            String::from_utf8_lossy(prefix)
        );
    }
}

/// `scan` returns keys in bytewise order, not insertion or text order.
pub async fn scan_orders_keys_bytewise(s: &Subject) {
    let inserted: [&[u8]; 9] = [
        b"k/b",
        b"k/\xc3\xa9",
        b"k/B",
        b"k/a",
        b"k/",
        b"k/aa",
        b"k/\x00",
        b"k/\xff",
        b"k/Z",
    ];
    for key in inserted {
        set(s, key, key, None).await;
    }
    let listed = scan(s, b"k/", None, 100).await;
    let mut expected: Vec<Vec<u8>> = inserted.iter().map(|k| k.to_vec()).collect();
    expected.sort();
    assert_eq!(keys(&listed), expected);
    assert!(
        listed
            .iter()
            .all(|e| e.key == e.value && e.expires_at.is_none())
    );
}

/// Paging with the last key of each page as the next `after` visits every
/// key exactly once, whatever the page size.
pub async fn scan_pages_visit_each_key_once(s: &Subject) {
    let mut expected = BTreeSet::new();
    for i in 0..57u32 {
        let key = format!("page/{:x}", i * 7919).into_bytes();
        set(s, &key, &i.to_be_bytes(), None).await;
        expected.insert(key);
    }
    set(s, b"pag", b"outside", None).await;
    set(s, b"pagf", b"outside", None).await;
    set(s, b"q", b"outside", None).await;
    let expected: Vec<Vec<u8>> = expected.into_iter().collect();
    for page in [1, 2, 10, 56, 57, 58, 1000] {
        assert_eq!(
            keys(&scan_all(s, b"page/", page).await),
            expected,
            "page size {page}"
        );
    }
    // `after` need not be a stored key, and may sort before the prefix.
    let after_mid = scan(s, b"page/", Some(b"page/8"), 1000).await;
    let mid: Vec<_> = expected
        .iter()
        .filter(|k| k.as_slice() > &b"page/8"[..])
        .cloned()
        .collect();
    assert_eq!(keys(&after_mid), mid);
    assert_eq!(keys(&scan(s, b"page/", Some(b"a"), 1000).await), expected);
    assert!(scan(s, b"page/", Some(b"page/\xff"), 1000).await.is_empty());
}

/// `scan` returns at most `limit` entries, and exactly `limit` while more
/// remain.
pub async fn scan_respects_limit(s: &Subject) {
    for i in 0..10u8 {
        set(s, &[b'k', b'0' + i], b"v", None).await;
    }
    assert!(scan(s, b"k", None, 0).await.is_empty());
    for limit in [1, 3, 9, 10] {
        let listed = scan(s, b"k", None, limit).await;
        assert_eq!(listed.len(), limit);
        assert_eq!(listed[0].key, b"k0");
    }
    assert_eq!(scan(s, b"k", None, 11).await.len(), 10);
    assert_eq!(scan(s, b"k", Some(b"k7"), 5).await.len(), 2);
}

/// Expired keys are not listed, and a page is still filled from the live
/// keys after them.
pub async fn scan_skips_expired_keys(s: &Subject) {
    for i in (1..10u8).step_by(2) {
        set(s, &[b'k', b'0' + i], b"v", None).await;
    }
    let since = Instant::now();
    for i in (0..10u8).step_by(2) {
        set(s, &[b'k', b'0' + i], b"v", Some(SHORT_TTL)).await;
    }
    let listed = scan(s, b"k", None, 100).await;
    if before_short_ttl(since) {
        assert_eq!(listed.len(), 10);
    }
    tokio::time::sleep(PAST_SHORT_TTL).await;
    let odd: Vec<Vec<u8>> = (0..10u8)
        .filter(|i| i % 2 == 1)
        .map(|i| vec![b'k', b'0' + i])
        .collect();
    assert_eq!(keys(&scan(s, b"k", None, 100).await), odd);
    assert_eq!(keys(&scan(s, b"k", None, 3).await), odd[..3]);
    assert_eq!(keys(&scan_all(s, b"k", 2).await), odd);
}

/// `scan` reports when an expiring entry expires, and `None` for the rest.
pub async fn scan_reports_expiry(s: &Subject) {
    let before = SystemTime::now();
    set(s, b"expiring", b"v", Some(Duration::from_secs(60))).await;
    set(s, b"forever", b"v", None).await;
    let after = SystemTime::now();
    let listed = scan(s, b"", None, 10).await;
    assert_eq!(keys(&listed), [b"expiring".to_vec(), b"forever".to_vec()]);
    let at = listed[0].expires_at.expect("expiring has an expiry");
    // Allow for clock rounding (milliseconds) and the time the calls took.
    let slack = Duration::from_secs(1);
    let earliest = before + Duration::from_secs(60) - slack;
    let latest = after + Duration::from_secs(60) + slack;
    assert!(
        earliest <= at && at <= latest,
        "expires at {at:?}, expected between {earliest:?} and {latest:?}"
    );
    assert_eq!(listed[1].expires_at, None);
}

async fn increment(s: &Subject, key: &[u8], delta: i64) -> Counted {
    s.backend.increment(key, delta).await.expect("increment")
}

async fn cas(s: &Subject, key: &[u8], expected: Option<&[u8]>, new: Option<&[u8]>) -> bool {
    s.backend
        .compare_and_swap(key, expected, new)
        .await
        .expect("compare_and_swap")
}

/// A missing counter starts at the delta; counters are stored as decimal
/// digits, readable with `get`; a value that is not a counter, and an
/// overflow, change nothing.
pub async fn increment_counts(s: &Subject) {
    assert_eq!(increment(s, b"c", 5).await, Counted::Value(5));
    assert_eq!(increment(s, b"c", -7).await, Counted::Value(-2));
    assert_eq!(get(s, b"c").await.as_deref(), Some(&b"-2"[..]));
    set(s, b"c", b"40", None).await;
    assert_eq!(increment(s, b"c", 2).await, Counted::Value(42));

    set(s, b"text", b"forty-two", None).await;
    assert_eq!(increment(s, b"text", 1).await, Counted::NotACounter);
    assert_eq!(get(s, b"text").await.as_deref(), Some(&b"forty-two"[..]));

    set(s, b"max", i64::MAX.to_string().as_bytes(), None).await;
    assert_eq!(increment(s, b"max", 1).await, Counted::Overflow);
    assert_eq!(
        get(s, b"max").await,
        Some(i64::MAX.to_string().into_bytes())
    );
}

/// An increment keeps the counter's expiry.
pub async fn increment_keeps_expiry(s: &Subject) {
    set(s, b"c", b"1", Some(LONG_TTL)).await;
    assert_eq!(increment(s, b"c", 1).await, Counted::Value(2));
    let listed = scan(s, b"c", None, 10).await;
    assert!(
        listed[0].expires_at.is_some(),
        "the expiry was lost: {listed:?}"
    );
}

/// Many tasks incrementing one counter at once lose no increment.
pub async fn concurrent_increments_lose_nothing(s: &Subject) {
    const TASKS: i64 = 8;
    const EACH: i64 = 100;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let backend = s.backend.clone();
            tokio::spawn(async move {
                for _ in 0..EACH {
                    backend
                        .increment(b"shared-counter", 1)
                        .await
                        .expect("increment");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("incrementing task");
    }
    assert_eq!(
        increment(s, b"shared-counter", 0).await,
        Counted::Value(TASKS * EACH)
    );
}

/// Compare-and-swap writes only over the expected value (or absence), and
/// can delete.
pub async fn compare_and_swap_checks_the_current_value(s: &Subject) {
    assert!(cas(s, b"k", None, Some(b"v1")).await, "created when absent");
    assert!(
        !cas(s, b"k", None, Some(b"other")).await,
        "not absent any more"
    );
    assert!(
        !cas(s, b"k", Some(b"v0"), Some(b"other")).await,
        "wrong expectation"
    );
    assert_eq!(get(s, b"k").await.as_deref(), Some(&b"v1"[..]));
    assert!(cas(s, b"k", Some(b"v1"), Some(b"v2")).await);
    assert_eq!(get(s, b"k").await.as_deref(), Some(&b"v2"[..]));
    assert!(cas(s, b"k", Some(b"v2"), None).await, "deleted");
    assert!(!has(s, b"k").await);
    // The empty value is a value, not absence.
    assert!(cas(s, b"e", None, Some(b"")).await);
    assert!(!cas(s, b"e", None, Some(b"x")).await);
    assert!(cas(s, b"e", Some(b""), Some(b"x")).await);
    // An expired value counts as absent.
    set(s, b"gone", b"old", Some(Duration::from_millis(1))).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(cas(s, b"gone", None, Some(b"new")).await);
    assert_eq!(get(s, b"gone").await.as_deref(), Some(&b"new"[..]));
}

/// Many tasks updating one value with compare-and-swap retries lose no
/// update.
pub async fn concurrent_compare_and_swap_loses_nothing(s: &Subject) {
    const TASKS: u64 = 8;
    const EACH: u64 = 25;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let backend = s.backend.clone();
            tokio::spawn(async move {
                for _ in 0..EACH {
                    loop {
                        let current = backend.get(b"n").await.expect("get");
                        let n: u64 = current
                            .as_deref()
                            .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                        let next = (n + 1).to_string();
                        if backend
                            .compare_and_swap(b"n", current.as_deref(), Some(next.as_bytes()))
                            .await
                            .expect("compare_and_swap")
                        {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("updating task");
    }
    assert_eq!(
        get(s, b"n").await,
        Some((TASKS * EACH).to_string().into_bytes())
    );
}

/// Batches: `set_many` stores every pair (a repeated key takes its last
/// value), `get_many` answers in order with `None` for missing keys, and
/// `delete_many` removes every key.
pub async fn batches_set_get_and_delete(s: &Subject) {
    let b = &s.backend;
    b.set_many(
        &[(b"a", b"1"), (b"b", b""), (b"c", b"3"), (b"a", b"last")],
        None,
    )
    .await
    .expect("set_many");
    let got = b
        .get_many(&[b"a", b"missing", b"b", b"c"])
        .await
        .expect("get_many");
    assert_eq!(
        got,
        [
            Some(b"last".to_vec()),
            None,
            Some(Vec::new()),
            Some(b"3".to_vec())
        ]
    );
    assert!(b.get_many(&[]).await.expect("empty get_many").is_empty());
    b.delete_many(&[b"a", b"c", b"never-there"])
        .await
        .expect("delete_many");
    assert_eq!(
        b.get_many(&[b"a", b"b", b"c"]).await.expect("get_many"),
        [None, Some(Vec::new()), None]
    );
    b.delete_many(&[]).await.expect("empty delete_many");
}

/// A batch's expiry applies to every key in it.
pub async fn batches_expire_together(s: &Subject) {
    let since = Instant::now();
    s.backend
        .set_many(&[(b"x", b"1"), (b"y", b"2")], Some(SHORT_TTL))
        .await
        .expect("set_many");
    if before_short_ttl(since) {
        assert_eq!(
            s.backend
                .get_many(&[b"x", b"y"])
                .await
                .expect("get_many")
                .iter()
                .flatten()
                .count(),
            2
        );
    }
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(
        s.backend.get_many(&[b"x", b"y"]).await.expect("get_many"),
        [None, None]
    );
}

/// The storage plugin `conformance.Plugin` sees over the backend, its own
/// namespace holding at most `quota` bytes, recounted from the store.
async fn plugin_storage(s: &Subject, quota: u64) -> PluginStorage {
    let storage = PluginStorage::new(
        s.backend.clone(),
        PluginId::new("conformance.Plugin").expect("identity"),
        Grant::None,
        StorageLimits {
            max_stored_bytes: quota,
            ..StorageLimits::default()
        },
        Arc::default(),
    );
    storage.recount().await.expect("recount");
    storage
}

fn pairs(entries: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
        .collect()
}

/// Quotas: a key listed more than once in a `set_many` is stored with its
/// last value and counts once, what it held before once too.
pub async fn quota_counts_a_key_listed_twice_in_a_batch_once(s: &Subject) {
    let p = plugin_storage(s, 10).await;
    // Three listings of nine bytes each would not fit; one does.
    let batch = pairs(&[("k", b"first..."), ("k", b"second.."), ("k", b"last")]);
    p.set_many(&batch, None, false).await.expect("set_many");
    assert_eq!(
        p.get("k", false).await.expect("get").as_deref(),
        Some(&b"last"[..])
    );
    assert_eq!(p.usage(), 5);
    let batch = pairs(&[("k", b"12345678"), ("k", b"12345678")]);
    p.set_many(&batch, None, false).await.expect("set_many");
    assert_eq!(p.usage(), 9);
    assert_eq!(p.recount().await.expect("recount"), 9);
}

/// Quotas: a key listed more than once in a `delete_many` is uncounted
/// once, so deleting it repeatedly cannot make room beyond the quota.
pub async fn quota_cannot_be_bypassed_by_repeated_deletes(s: &Subject) {
    let p = plugin_storage(s, 20).await;
    p.set("a", b"123456789", None, false).await.expect("set");
    p.set("b", b"123456789", None, false).await.expect("set");
    let a = vec!["a".to_owned(); 3];
    for _ in 0..3 {
        p.delete_many(&a, false).await.expect("delete_many");
        assert_eq!(p.usage(), 10, "b is still stored");
    }
    p.set("c", b"123456789", None, false).await.expect("set");
    let e = p.set("d", b"123456789", None, false).await.unwrap_err();
    assert!(matches!(e, StorageError::QuotaExceeded { .. }), "{e}");
    assert!(!p.has("d", false).await.expect("has"));
    assert_eq!(p.usage(), 20);
    assert_eq!(p.recount().await.expect("recount"), 20);
}

/// Setting expiring keys again and again keeps what the store holds to the
/// live data (and, for a backend with an expiry index, one index entry per
/// key), and deleting them leaves nothing behind.
pub async fn expiring_re_sets_do_not_grow_the_store(s: &Subject) {
    const KEYS: usize = 20;
    let p = plugin_storage(s, 1 << 20).await;
    let prefix = warden::storage::keys::namespace_prefix(&Namespace::Plugin(p.plugin().clone()));
    let keys: Vec<String> = (0..KEYS).map(|i| format!("k{i:02}")).collect();
    let live = (KEYS * (3 + 5)) as u64;
    for round in 0..30 {
        // A different deadline each round.
        let ttl = Some(LONG_TTL + Duration::from_secs(round));
        for key in &keys[..KEYS / 2] {
            p.set(key, b"value", ttl, false).await.expect("set");
        }
        let batch: Vec<(String, Vec<u8>)> = keys[KEYS / 2..]
            .iter()
            .map(|k| (k.clone(), b"value".to_vec()))
            .collect();
        p.set_many(&batch, ttl, false).await.expect("set_many");
    }
    assert_eq!(p.usage(), live);
    assert_eq!(p.recount().await.expect("recount"), live);
    assert_eq!(scan(s, &prefix, None, 1000).await.len(), KEYS);
    if let Some(indexed) = s.expiry_index_len() {
        assert_eq!(indexed, KEYS, "one index entry per expiring key");
    }

    for key in &keys[..KEYS / 2] {
        p.delete(key, false).await.expect("delete");
    }
    p.delete_many(&keys[KEYS / 2..], false)
        .await
        .expect("delete_many");
    assert_eq!(p.usage(), 0);
    assert_eq!(p.recount().await.expect("recount"), 0);
    assert!(scan(s, &prefix, None, 1000).await.is_empty());
    if let Some(indexed) = s.expiry_index_len() {
        assert_eq!(indexed, 0, "deleted keys leave no index entry");
    }
}
