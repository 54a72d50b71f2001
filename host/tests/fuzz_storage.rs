//! Property-based fuzzing of what a plugin controls: the keys, values and
//! flags it passes to the storage interface, checked against a model of the
//! rules (namespacing, grants, key and value limits, quotas), and the
//! namespace codec on arbitrary bytes. Every other operation goes through
//! the immediate (synchronous) calls the memory backend offers, so both
//! paths a plugin's call can take are held to the same model.
//!
//! A normal test run tries a few hundred cases. Set `WARDEN_FUZZ_SECONDS`
//! to keep generating new cases for that long (CI runs it for a minute);
//! a failure prints the seed that reproduces it (`WARDEN_FUZZ_SEED`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use warden::identity::{Namespace, PluginId};
use warden::storage::keys;
use warden::storage::{
    Backend, Grant, MemoryBackend, PluginStorage, StorageError, StorageLimits, Usage,
};

const LIMITS: StorageLimits = StorageLimits {
    max_key_bytes: 24,
    max_value_bytes: 32,
    max_stored_bytes: 160,
    max_read_bytes: 64,
};
const GRANTS: [Grant; 3] = [Grant::None, Grant::Read, Grant::ReadWrite];

#[derive(Debug, Clone)]
enum Op {
    Set {
        plugin: usize,
        key: String,
        value: Vec<u8>,
        shared: bool,
    },
    Get {
        plugin: usize,
        key: String,
        shared: bool,
    },
    Has {
        plugin: usize,
        key: String,
        shared: bool,
    },
    Delete {
        plugin: usize,
        key: String,
        shared: bool,
    },
}

fn key() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        // Few distinct keys, so that operations meet each other.
        "[ab:]{1,3}",
        // Separators, prefixes and the reserved namespace.
        "(plugin:|shared:|warden:|p0:|\\.\\.|/|:){1,3}[a-z]?",
        // Anything, control characters and odd unicode included.
        any::<String>(),
        // Around the length limit.
        "[x]{22,26}",
        Just(String::new()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let target = (0..GRANTS.len(), key(), any::<bool>());
    prop_oneof![
        4 => (target.clone(), prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|((plugin, key, shared), value)| Op::Set { plugin, key, value, shared }),
        2 => target.clone().prop_map(|(plugin, key, shared)| Op::Get { plugin, key, shared }),
        1 => target.clone().prop_map(|(plugin, key, shared)| Op::Has { plugin, key, shared }),
        2 => target.prop_map(|(plugin, key, shared)| Op::Delete { plugin, key, shared }),
    ]
}

/// What the rules say, kept apart from the code under test.
#[derive(Default)]
struct Model {
    data: BTreeMap<(Namespace, String), Vec<u8>>,
}

#[derive(Debug, PartialEq)]
enum Expect {
    InvalidKey,
    AccessDenied,
    TooLarge,
    Quota,
    Ok,
}

impl Model {
    fn usage(&self, ns: &Namespace) -> usize {
        self.data
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|((_, k), v)| k.len() + v.len())
            .sum()
    }

    fn check(&self, key: &str, shared: bool, write: bool, grant: Grant) -> Expect {
        let valid = !key.is_empty()
            && key.len() <= LIMITS.max_key_bytes
            && !key.chars().any(char::is_control);
        if !valid {
            return Expect::InvalidKey;
        }
        let allowed = !shared
            || (if write {
                grant == Grant::ReadWrite
            } else {
                grant != Grant::None
            });
        if !allowed {
            Expect::AccessDenied
        } else {
            Expect::Ok
        }
    }
}

fn kind(e: &StorageError) -> Expect {
    match e {
        StorageError::InvalidKey { .. } => Expect::InvalidKey,
        StorageError::AccessDenied(_) => Expect::AccessDenied,
        StorageError::TooLarge { .. } => Expect::TooLarge,
        StorageError::QuotaExceeded { .. } => Expect::Quota,
        other => panic!("unexpected error {other}"),
    }
}

fn result_kind<T>(r: &Result<T, StorageError>) -> Expect {
    r.as_ref().err().map_or(Expect::Ok, kind)
}

async fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let backend = Arc::new(MemoryBackend::new());
    let shared = Arc::new(Usage::default());
    let ids: Vec<PluginId> = (0..GRANTS.len())
        .map(|i| PluginId::new(&format!("p{i}.Plugin")).unwrap())
        .collect();
    let plugins: Vec<PluginStorage> = ids
        .iter()
        .zip(GRANTS)
        .map(|(id, grant)| {
            PluginStorage::new(backend.clone(), id.clone(), grant, LIMITS, shared.clone())
        })
        .collect();
    let mut model = Model::default();
    let ns = |plugin: usize, shared: bool| {
        if shared {
            Namespace::Shared
        } else {
            Namespace::Plugin(ids[plugin].clone())
        }
    };

    for (step, op) in ops.into_iter().enumerate() {
        let now = step % 2 == 1;
        match op {
            Op::Set {
                plugin,
                key,
                value,
                shared,
            } => {
                let mut expect = model.check(&key, shared, true, GRANTS[plugin]);
                let n = ns(plugin, shared);
                if expect == Expect::Ok && value.len() > LIMITS.max_value_bytes {
                    expect = Expect::TooLarge;
                }
                if expect == Expect::Ok {
                    let old = model
                        .data
                        .get(&(n.clone(), key.clone()))
                        .map_or(0, |v| key.len() + v.len());
                    let new = key.len() + value.len();
                    if new > old && model.usage(&n) - old + new > LIMITS.max_stored_bytes as usize {
                        expect = Expect::Quota;
                    }
                }
                let got = if now {
                    plugins[plugin].set_now(&key, &value, None, shared)
                } else {
                    plugins[plugin].set(&key, &value, None, shared).await
                };
                prop_assert_eq!(result_kind(&got), expect, "set {:?} shared={}", key, shared);
                if got.is_ok() {
                    model.data.insert((n, key), value);
                }
            }
            Op::Get {
                plugin,
                key,
                shared,
            } => {
                let expect = model.check(&key, shared, false, GRANTS[plugin]);
                let got = if now {
                    plugins[plugin].get_now(&key, shared)
                } else {
                    plugins[plugin].get(&key, shared).await
                };
                prop_assert_eq!(result_kind(&got), expect);
                if let Ok(value) = got {
                    prop_assert_eq!(value.as_ref(), model.data.get(&(ns(plugin, shared), key)));
                }
            }
            Op::Has {
                plugin,
                key,
                shared,
            } => {
                let expect = model.check(&key, shared, false, GRANTS[plugin]);
                let got = if now {
                    plugins[plugin].has_now(&key, shared)
                } else {
                    plugins[plugin].has(&key, shared).await
                };
                prop_assert_eq!(result_kind(&got), expect);
                if let Ok(has) = got {
                    prop_assert_eq!(has, model.data.contains_key(&(ns(plugin, shared), key)));
                }
            }
            Op::Delete {
                plugin,
                key,
                shared,
            } => {
                let expect = model.check(&key, shared, true, GRANTS[plugin]);
                let got = if now {
                    plugins[plugin].delete_now(&key, shared)
                } else {
                    plugins[plugin].delete(&key, shared).await
                };
                prop_assert_eq!(result_kind(&got), expect);
                if got.is_ok() {
                    model.data.remove(&(ns(plugin, shared), key));
                }
            }
        }
    }
    // The store holds exactly the model's entries, each under its encoding.
    let stored: BTreeMap<Vec<u8>, Vec<u8>> = backend
        .scan(b"", None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect();
    let expected: BTreeMap<Vec<u8>, Vec<u8>> = model
        .data
        .iter()
        .map(|((n, k), v)| (keys::encode_key(n, k), v.clone()))
        .collect();
    prop_assert_eq!(stored, expected);
    for (i, p) in plugins.iter().enumerate() {
        prop_assert_eq!(p.usage() as usize, model.usage(&ns(i, false)));
    }
    Ok(())
}

fn codec_case(raw: Vec<u8>) -> Result<(), TestCaseError> {
    // Decoding never panics, and whatever decodes encodes back to itself.
    if let Some((ns, key)) = keys::decode_key(&raw) {
        prop_assert_eq!(keys::encode_key(&ns, key), raw.clone());
    }
    Ok(())
}

/// Runs `test` on cases from `strategy` until the time budget is spent.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let budget = std::env::var("WARDEN_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(budget);
    let fixed_seed: Option<u64> = std::env::var("WARDEN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let mut cases = 0u64;
    loop {
        let seed = fixed_seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let config = Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(
            config,
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
        );
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("{name}: {e}\nreproduce with WARDEN_FUZZ_SEED={seed}");
        }
        cases += 256;
        if fixed_seed.is_some() || Instant::now() >= deadline {
            break;
        }
    }
    eprintln!("{name}: {cases} cases passed");
}

#[test]
fn the_storage_interface_follows_its_rules() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    fuzz("storage", prop::collection::vec(op(), 1..40), |ops| {
        rt.block_on(run_ops(ops))
    });
}

#[test]
fn the_namespace_codec_decodes_only_what_it_encodes() {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        "(plugin:|shared:|warden:)[a-zA-Z0-9_.:-]{0,20}".prop_map(String::into_bytes),
    ];
    fuzz("codec", bytes, codec_case);
}
