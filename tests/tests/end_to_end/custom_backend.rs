//! Embedding Warden with a backend written outside it: namespacing, grants
//! and limits still apply on top of it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use warden::storage::{Backend, BackendError, Counted, Entry, ImmediateReads, ImmediateWrites};
use warden::{Config, Host};
use warden_tests::*;

/// A stored value and its expiry.
type Stored = (Vec<u8>, Option<Instant>);

/// A user's backend: an ordered map that also records every key it is
/// asked to read or write. With `immediate`, it offers immediate reads and
/// writes, recorded apart.
#[derive(Debug, Default)]
struct Recording {
    map: Mutex<BTreeMap<Vec<u8>, Stored>>,
    reads: Mutex<Vec<String>>,
    writes: Mutex<Vec<String>>,
    immediate: bool,
    immediate_reads: Mutex<Vec<String>>,
    immediate_writes: Mutex<Vec<String>>,
}

impl ImmediateWrites for Recording {
    fn replace_now(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<u64>, BackendError> {
        self.immediate_writes
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(key).into_owned());
        let at = ttl.map(|d| Instant::now() + d);
        let old = self
            .map
            .lock()
            .unwrap()
            .insert(key.to_vec(), (value.to_vec(), at));
        Ok(old.filter(Self::live).map(|e| e.0.len() as u64))
    }

    fn remove_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        self.immediate_writes
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(key).into_owned());
        let old = self.map.lock().unwrap().remove(key);
        Ok(old.filter(Self::live).map(|e| e.0.len() as u64))
    }

    fn value_len_now(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        let map = self.map.lock().unwrap();
        Ok(map
            .get(key)
            .filter(|e| Self::live(e))
            .map(|e| e.0.len() as u64))
    }

    fn scan_now(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        let start = after.map_or(Bound::Included(prefix), Bound::Excluded);
        let map = self.map.lock().unwrap();
        Ok(map
            .range::<[u8], _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| Self::live(e))
            .take(limit)
            .map(|(k, e)| Entry {
                key: k.clone(),
                value: e.0.clone(),
                expires_at: e
                    .1
                    .map(|at| SystemTime::now() + at.saturating_duration_since(Instant::now())),
            })
            .collect())
    }
}

impl ImmediateReads for Recording {
    fn get_now(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.immediate_reads
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(key).into_owned());
        Ok(self.read(key))
    }

    fn has_now(&self, key: &[u8]) -> Result<bool, BackendError> {
        self.get_now(key).map(|v| v.is_some())
    }
}

impl Recording {
    fn saw(&self, key: &[u8]) {
        self.reads
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(key).into_owned());
    }

    fn wrote(&self, key: &[u8]) {
        self.writes
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(key).into_owned());
    }

    /// The keys recorded in `log`, but for Warden's own records, with
    /// repeats in a row counted once.
    fn plugin_keys(log: &Mutex<Vec<String>>) -> Vec<String> {
        let mut keys: Vec<_> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|k| !k.starts_with("warden:"))
            .cloned()
            .collect();
        keys.dedup();
        keys
    }

    fn live(entry: &Stored) -> bool {
        entry.1.is_none_or(|at| Instant::now() < at)
    }

    fn read(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.map
            .lock()
            .unwrap()
            .get(key)
            .filter(|e| Self::live(e))
            .map(|e| e.0.clone())
    }
}

#[async_trait::async_trait]
impl Backend for Recording {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.saw(key);
        Ok(self.read(key))
    }

    fn immediate_reads(&self) -> Option<&dyn ImmediateReads> {
        self.immediate.then_some(self)
    }

    fn immediate_writes(&self) -> Option<&dyn ImmediateWrites> {
        self.immediate.then_some(self)
    }

    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.wrote(key);
        let at = ttl.map(|d| Instant::now() + d);
        self.map
            .lock()
            .unwrap()
            .insert(key.to_vec(), (value.to_vec(), at));
        Ok(())
    }

    async fn delete(&self, key: &[u8]) -> Result<(), BackendError> {
        self.wrote(key);
        self.map.lock().unwrap().remove(key);
        Ok(())
    }

    async fn has(&self, key: &[u8]) -> Result<bool, BackendError> {
        Ok(self.get(key).await?.is_some())
    }

    async fn increment(&self, key: &[u8], delta: i64) -> Result<Counted, BackendError> {
        self.wrote(key);
        let mut map = self.map.lock().unwrap();
        let live = map.get(key).filter(|e| Self::live(e));
        let base = match live {
            None => 0,
            Some((value, _)) => match warden::storage::parse_counter(value) {
                Some(n) => n,
                None => return Ok(Counted::NotACounter),
            },
        };
        let Some(value) = base.checked_add(delta) else {
            return Ok(Counted::Overflow);
        };
        let expiry = live.and_then(|e| e.1);
        map.insert(
            key.to_vec(),
            (warden::storage::counter_bytes(value), expiry),
        );
        Ok(Counted::Value(value))
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        self.wrote(key);
        let mut map = self.map.lock().unwrap();
        let current = map
            .get(key)
            .filter(|e| Self::live(e))
            .map(|e| e.0.as_slice());
        if current != expected {
            return Ok(false);
        }
        match new {
            Some(value) => map.insert(key.to_vec(), (value.to_vec(), None)),
            None => map.remove(key),
        };
        Ok(true)
    }

    async fn set_many(
        &self,
        entries: &[(&[u8], &[u8])],
        ttl: Option<Duration>,
    ) -> Result<(), BackendError> {
        let at = ttl.map(|d| Instant::now() + d);
        let mut map = self.map.lock().unwrap();
        for (key, value) in entries {
            self.wrote(key);
            map.insert(key.to_vec(), (value.to_vec(), at));
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[&[u8]]) -> Result<(), BackendError> {
        let mut map = self.map.lock().unwrap();
        for key in keys {
            self.wrote(key);
            map.remove(*key);
        }
        Ok(())
    }

    async fn size(&self) -> Result<u64, BackendError> {
        Ok(self
            .map
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.len() + v.0.len()) as u64)
            .sum())
    }

    async fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        self.scan_now(prefix, after, limit)
    }

    async fn close(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_user_backend_gets_only_namespaced_keys_and_grants_still_hold() {
    let backend = Arc::new(Recording::default());
    let dir = plugins_dir(&[PROBE, STORAGE]);
    let config = Config::parse(
        "[grants.\"warden.tests.Probe\"]\nshared = \"read\"\n",
        "warden.toml".as_ref(),
    )
    .unwrap();
    let host = Host::builder()
        .config(config)
        .plugins_dir(dir.path())
        .backend(backend.clone())
        .build()
        .await
        .unwrap();
    let say = async |text: &str| say(&host, text).await;

    assert_eq!(
        say("store hello under greeting").await,
        ["'hello' stored under greeting!"]
    );
    assert_eq!(say("set greeting = mine").await, ["ok"]);
    assert_eq!(say("get greeting").await, ["value: mine"]);
    assert_eq!(
        say("retrieve greeting").await,
        ["'hello' retrieved from <greeting>!"]
    );
    let denied = say("shared set greeting = x").await;
    assert!(denied[0].starts_with("error: access-denied:"), "{denied:?}");
    assert_eq!(say("shared get greeting").await, ["none"]);

    // The host's own write first: the help manual, which Probe's grant
    // lets it read.
    assert_eq!(
        Recording::plugin_keys(&backend.writes),
        [
            "shared:manual",
            "plugin:example.storage.StoragePlugin:greeting",
            "plugin:warden.tests.Probe:greeting"
        ],
        "the denied shared write never reached the backend"
    );
    assert_eq!(
        Recording::plugin_keys(&backend.reads),
        [
            "plugin:example.storage.StoragePlugin:greeting",
            "plugin:warden.tests.Probe:greeting",
            "plugin:example.storage.StoragePlugin:greeting",
            "shared:greeting",
        ]
    );
    host.shutdown().await.unwrap();
}

#[tokio::test]
async fn plugins_call_immediate_operations_where_the_backend_has_them() {
    for immediate in [false, true] {
        let backend = Arc::new(Recording {
            immediate,
            ..Recording::default()
        });
        let dir = plugins_dir(&[PROBE]);
        let host = Host::builder()
            .plugins_dir(dir.path())
            .backend(backend.clone())
            .build()
            .await
            .unwrap();
        let say = async |text: &str| say(&host, text).await;
        assert_eq!(say("set k = v").await, ["ok"]);
        assert_eq!(say("set gone = v").await, ["ok"]);
        assert_eq!(say("del gone").await, ["ok"]);
        let written = [
            "plugin:warden.tests.Probe:k",
            "plugin:warden.tests.Probe:gone",
        ];
        let (async_writes, immediate_writes) = (
            Recording::plugin_keys(&backend.writes),
            Recording::plugin_keys(&backend.immediate_writes),
        );
        if immediate {
            assert_eq!(immediate_writes, written);
            assert!(async_writes.is_empty(), "{async_writes:?}");
        } else {
            assert!(immediate_writes.is_empty(), "{immediate_writes:?}");
            assert_eq!(async_writes, written);
        }
        backend.reads.lock().unwrap().clear();
        assert_eq!(say("get k").await, ["value: v"]);
        assert_eq!(say("has k").await, ["true"]);
        assert_eq!(say("get missing").await, ["none"]);
        // A bad key is refused before it reaches either kind of read.
        let refused = say("has bad\u{0}key").await;
        assert!(refused[0].starts_with("error: invalid-key"), "{refused:?}");

        let async_reads = Recording::plugin_keys(&backend.reads);
        let immediate_reads = Recording::plugin_keys(&backend.immediate_reads);
        let read = [
            "plugin:warden.tests.Probe:k",
            "plugin:warden.tests.Probe:missing",
        ];
        if immediate {
            assert_eq!(immediate_reads, read);
            assert!(async_reads.is_empty(), "{async_reads:?}");
        } else {
            assert!(immediate_reads.is_empty(), "{immediate_reads:?}");
            assert_eq!(async_reads, read);
        }
        host.shutdown().await.unwrap();
    }
}
