//! Operator tools over a store: listing, reading and writing keys in any
//! namespace, sizes, and export and import as JSON lines.
//!
//! These work on a [`Backend`] directly, outside any plugin, so no grant
//! applies: they are for the operator, who owns the data.
//!
//! # The export format
//!
//! One JSON object a line, one line an entry:
//!
//! ```json
//! {"namespace":"plugin:example.storage.StoragePlugin","key":"greeting","value":"\"hello\""}
//! {"namespace":"shared","key":"motd","value_base64":"AAEC/w==","expires_at_ms":1790000000000}
//! ```
//!
//! - `namespace` is `plugin:ID` for a plugin's own keys, `shared` for the
//!   shared keyspace, and `warden` for Warden's own records.
//! - `value` holds a value that is valid UTF-8, `value_base64` any other.
//! - `expires_at_ms`, when present, is the expiry time in milliseconds
//!   since the Unix epoch. Import keeps it: an entry that has expired by
//!   then is skipped, one that has not gets the time it has left.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::keys::{Area, AreaError, Keys};
use super::{Backend, BackendError, Entry};
use crate::identity::{Namespace, PluginId};

/// Entries fetched from the backend per scan call.
const PAGE: usize = 1000;

/// Which keys an operator command addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace.
    All,
    /// One plugin's own keys.
    Plugin(PluginId),
    /// The shared keyspace.
    Shared,
}

impl Scope {
    /// The backend-key prefix of the scope, and of `key_prefix` within it.
    fn raw_prefix(&self, key_prefix: &str) -> Vec<u8> {
        match self.namespace() {
            None => Vec::new(),
            Some(namespace) => Keys::of(namespace).key(key_prefix),
        }
    }

    /// The namespace a single-key command addresses, if the scope names one.
    fn namespace(&self) -> Option<Namespace> {
        match self {
            Scope::All => None,
            Scope::Plugin(id) => Some(Namespace::Plugin(id.clone())),
            Scope::Shared => Some(Namespace::Shared),
        }
    }
}

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A command on one key needs `--plugin ID` or `--shared`.
    #[error("name the namespace of the key: --plugin ID or --shared")]
    NoNamespace,
    /// An import line is not a JSON object (or not UTF-8).
    #[error("line {line} is not a JSON object: {message}")]
    NotAnObject {
        /// The line number, from 1.
        line: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// An import line is a JSON object but not a valid entry.
    #[error("line {line}: {message}")]
    BadLine {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Reading the import or writing the export failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A stored key, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Where the key is: a namespace, Warden's own records, or neither
    /// (keys Warden did not write).
    pub namespace: Area,
    /// The key within its namespace (lossy UTF-8 for `raw` keys).
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// When it expires, if it does.
    pub expires_at: Option<SystemTime>,
}

fn decode(entry: Entry) -> Listed {
    let (namespace, key) = Area::of(&entry.key);
    Listed {
        namespace,
        key: String::from_utf8_lossy(key).into_owned(),
        value: entry.value,
        expires_at: entry.expires_at,
    }
}

/// Calls `each` with every live entry whose backend key starts with
/// `prefix`, in key order, a page at a time.
async fn for_each_entry(
    backend: &dyn Backend,
    prefix: &[u8],
    mut each: impl FnMut(Entry) -> Result<(), AdminError>,
) -> Result<(), AdminError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = backend.scan(prefix, after.as_deref(), PAGE).await?;
        let full = page.len() == PAGE;
        after = page.last().map(|e| e.key.clone());
        for entry in page {
            each(entry)?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// The keys in `scope` whose key (within the namespace) starts with
/// `key_prefix`, in backend-key order.
pub async fn list(
    backend: &dyn Backend,
    scope: &Scope,
    key_prefix: &str,
) -> Result<Vec<Listed>, AdminError> {
    let mut out = Vec::new();
    for_each_entry(backend, &scope.raw_prefix(key_prefix), |entry| {
        let listed = decode(entry);
        if listed.key.starts_with(key_prefix) {
            out.push(listed);
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

fn raw_key(scope: &Scope, key: &str) -> Result<Vec<u8>, AdminError> {
    let namespace = scope.namespace().ok_or(AdminError::NoNamespace)?;
    Ok(Keys::of(namespace).key(key))
}

/// The value of `key` in the scope's namespace.
pub async fn get(
    backend: &dyn Backend,
    scope: &Scope,
    key: &str,
) -> Result<Option<Vec<u8>>, AdminError> {
    Ok(backend.get(&raw_key(scope, key)?).await?)
}

/// Stores `value` under `key` in the scope's namespace.
pub async fn set(
    backend: &dyn Backend,
    scope: &Scope,
    key: &str,
    value: &[u8],
    expires_in: Option<Duration>,
) -> Result<(), AdminError> {
    Ok(backend
        .set(&raw_key(scope, key)?, value, expires_in)
        .await?)
}

/// Removes `key` from the scope's namespace; returns whether it was there.
pub async fn delete(backend: &dyn Backend, scope: &Scope, key: &str) -> Result<bool, AdminError> {
    let raw = raw_key(scope, key)?;
    let existed = backend.has(&raw).await?;
    backend.delete(&raw).await?;
    Ok(existed)
}

/// The keys and bytes of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSize {
    /// Where the keys are.
    pub namespace: Area,
    /// Live keys.
    pub keys: u64,
    /// Bytes of their keys (within the namespace) and values.
    pub bytes: u64,
}

/// Sizes per namespace, in namespace order, and the store's own size as
/// the backend reports it.
pub async fn sizes(backend: &dyn Backend) -> Result<(Vec<NamespaceSize>, u64), AdminError> {
    let mut out: Vec<NamespaceSize> = Vec::new();
    for_each_entry(backend, b"", |entry| {
        let listed = decode(entry);
        let bytes = (listed.key.len() + listed.value.len()) as u64;
        match out.iter_mut().find(|n| n.namespace == listed.namespace) {
            Some(n) => {
                n.keys += 1;
                n.bytes += bytes;
            }
            None => out.push(NamespaceSize {
                namespace: listed.namespace,
                keys: 1,
                bytes,
            }),
        }
        Ok(())
    })
    .await?;
    out.sort_by_cached_key(|n| n.namespace.label());
    Ok((out, backend.size().await?))
}

/// One line of the export format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine {
    /// `plugin:ID`, `shared`, `warden` or `raw`.
    pub namespace: String,
    /// The key within the namespace, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Any other key (only keys Warden did not write can be such).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// A value that is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Any other value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Expiry in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

fn to_line(entry: Entry) -> ExportLine {
    let expires_at_ms = entry.expires_at.map(|t| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    let (value, value_base64) = match String::from_utf8(entry.value) {
        Ok(text) => (Some(text), None),
        Err(e) => (None, Some(BASE64.encode(e.as_bytes()))),
    };
    let (area, key) = Area::of(&entry.key);
    let namespace = area.label();
    let (key, key_base64) = match std::str::from_utf8(key) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (None, Some(BASE64.encode(key))),
    };
    ExportLine {
        namespace,
        key,
        key_base64,
        value,
        value_base64,
        expires_at_ms,
    }
}

/// Writes every live entry as JSON lines; returns how many.
pub async fn export(
    backend: &dyn Backend,
    mut out: impl std::io::Write,
) -> Result<u64, AdminError> {
    let mut count = 0;
    for_each_entry(backend, b"", |entry| {
        serde_json::to_writer(&mut out, &to_line(entry)).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        count += 1;
        Ok(())
    })
    .await?;
    out.flush()?;
    Ok(count)
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    /// Entries written.
    pub written: u64,
    /// Entries skipped because they had expired.
    pub expired: u64,
}

impl fmt::Display for Imported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = if self.written == 1 {
            "entry"
        } else {
            "entries"
        };
        write!(f, "imported {} {entries}", self.written)?;
        if self.expired > 0 {
            write!(f, " ({} already expired, skipped)", self.expired)?;
        }
        Ok(())
    }
}

/// A parsed line: backend key, value, expiry.
type Parsed = (Vec<u8>, Vec<u8>, Option<u64>);

/// A JSON parser's message about one line, without its `at line 1`: the
/// line number is the import's.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => format!("{message} at column {}", e.column()),
        None => text,
    }
}

fn parse_line(text: &str, line: usize) -> Result<Parsed, AdminError> {
    let bad = |message: String| AdminError::BadLine { line, message };
    let object = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        Ok(other) => {
            let kind = match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Object(_) => "an object",
            };
            return Err(AdminError::NotAnObject {
                line,
                message: format!("it is {kind}"),
            });
        }
        Err(e) => {
            return Err(AdminError::NotAnObject {
                line,
                message: json_message(&e),
            });
        }
    };
    let l: ExportLine = serde_json::from_value(object).map_err(|e| bad(json_message(&e)))?;
    let key = match (&l.key, &l.key_base64) {
        (Some(key), None) => key.clone().into_bytes(),
        (None, Some(b64)) => BASE64
            .decode(b64)
            .map_err(|e| bad(format!("key_base64: {e}")))?,
        _ => {
            return Err(bad(
                "needs exactly one of key and key_base64 (raw only)".into()
            ));
        }
    };
    let area: Area = l
        .namespace
        .parse()
        .map_err(|e: AreaError| bad(e.to_string()))?;
    if let Area::Namespace(_) = area {
        // A namespace's keys are text; only foreign keys may be any bytes.
        std::str::from_utf8(&key).map_err(|e| bad(e.to_string()))?;
    }
    let raw = Keys::of(area).key(&key);
    let value = match (l.value, l.value_base64) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => BASE64
            .decode(b64)
            .map_err(|e| bad(format!("value_base64: {e}")))?,
        _ => return Err(bad("needs exactly one of value and value_base64".into())),
    };
    Ok((raw, value, l.expires_at_ms))
}

/// Reads JSON lines (the export format) and stores every entry. Every line
/// is checked before anything is written, so a bad line changes nothing.
/// Blank lines are skipped.
pub async fn import(
    backend: &dyn Backend,
    input: impl std::io::BufRead,
) -> Result<Imported, AdminError> {
    let mut parsed = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(AdminError::NotAnObject {
                    line: i + 1,
                    message: "it is not valid UTF-8".into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if !line.trim().is_empty() {
            parsed.push(parse_line(&line, i + 1)?);
        }
    }
    let mut done = Imported::default();
    for (key, value, expires_at_ms) in parsed {
        let expires_in = match expires_at_ms {
            None => None,
            Some(at) => {
                let at = SystemTime::UNIX_EPOCH + Duration::from_millis(at);
                match at.duration_since(SystemTime::now()) {
                    Ok(left) if !left.is_zero() => Some(left),
                    _ => {
                        done.expired += 1;
                        continue;
                    }
                }
            }
        };
        backend.set(&key, &value, expires_in).await?;
        done.written += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryBackend;

    fn id(s: &str) -> PluginId {
        PluginId::new(s).unwrap()
    }

    #[test]
    fn imports_count_in_words() {
        let one = Imported {
            written: 1,
            expired: 0,
        };
        assert_eq!(one.to_string(), "imported 1 entry");
        let two = Imported {
            written: 2,
            expired: 1,
        };
        assert_eq!(
            two.to_string(),
            "imported 2 entries (1 already expired, skipped)"
        );
    }

    #[tokio::test]
    async fn lists_by_scope_and_prefix() {
        let b = MemoryBackend::new();
        let a = Scope::Plugin(id("a.A"));
        set(&b, &a, "k1", b"1", None).await.unwrap();
        set(&b, &a, "x", b"2", None).await.unwrap();
        set(&b, &Scope::Plugin(id("a.AB")), "k1", b"3", None)
            .await
            .unwrap();
        set(&b, &Scope::Shared, "k1", b"4", None).await.unwrap();
        let keys = |v: Vec<Listed>| {
            v.into_iter()
                .map(|l| format!("{}/{}", l.namespace, l.key))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(list(&b, &a, "").await.unwrap()),
            ["plugin:a.A/k1", "plugin:a.A/x"]
        );
        assert_eq!(keys(list(&b, &a, "k").await.unwrap()), ["plugin:a.A/k1"]);
        assert_eq!(
            keys(list(&b, &Scope::Shared, "").await.unwrap()),
            ["shared/k1"]
        );
        assert_eq!(
            keys(list(&b, &Scope::All, "k").await.unwrap()),
            ["plugin:a.A/k1", "plugin:a.AB/k1", "shared/k1"]
        );
        assert!(matches!(
            get(&b, &Scope::All, "k1").await,
            Err(AdminError::NoNamespace)
        ));
        assert!(delete(&b, &a, "k1").await.unwrap());
        assert!(!delete(&b, &a, "k1").await.unwrap());
    }

    #[tokio::test]
    async fn sizes_count_each_namespace() {
        let b = MemoryBackend::new();
        set(&b, &Scope::Plugin(id("a.A")), "k", b"vv", None)
            .await
            .unwrap();
        set(&b, &Scope::Plugin(id("a.A")), "k2", b"v", None)
            .await
            .unwrap();
        set(&b, &Scope::Shared, "s", b"", None).await.unwrap();
        let (by_ns, total) = sizes(&b).await.unwrap();
        assert_eq!(
            by_ns,
            [
                NamespaceSize {
                    namespace: "plugin:a.A".parse().unwrap(),
                    keys: 2,
                    bytes: 6
                },
                NamespaceSize {
                    namespace: "shared".parse().unwrap(),
                    keys: 1,
                    bytes: 1
                },
            ]
        );
        assert_eq!(total, b.size().await.unwrap());
    }

    #[tokio::test]
    async fn export_then_import_round_trips_everything() {
        let from = MemoryBackend::new();
        let binary: Vec<u8> = (0..=255).collect();
        set(&from, &Scope::Plugin(id("a.A")), "bin", &binary, None)
            .await
            .unwrap();
        set(
            &from,
            &Scope::Shared,
            "text ✓",
            b"hello",
            Some(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
        from.set(b"warden:binding/a.A", b"file", None)
            .await
            .unwrap();
        from.set(&[0xff, 0x00], b"foreign", None).await.unwrap();
        let mut out = Vec::new();
        assert_eq!(export(&from, &mut out).await.unwrap(), 4);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains(r#""namespace":"shared","key":"text ✓","value":"hello""#),
            "{text}"
        );
        assert!(
            text.contains(r#""namespace":"warden","key":"binding/a.A""#),
            "{text}"
        );

        let to = MemoryBackend::new();
        let done = import(&to, out.as_slice()).await.unwrap();
        assert_eq!(
            done,
            Imported {
                written: 4,
                expired: 0
            }
        );
        let (a, b) = (
            from.scan(b"", None, 100).await.unwrap(),
            to.scan(b"", None, 100).await.unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((&x.key, &x.value), (&y.key, &y.value));
            assert_eq!(x.expires_at.is_some(), y.expires_at.is_some());
        }
    }

    #[tokio::test]
    async fn import_skips_expired_and_checks_every_line_first() {
        let b = MemoryBackend::new();
        let input = concat!(
            r#"{"namespace":"shared","key":"old","value":"v","expires_at_ms":1000}"#,
            "\n\n",
            r#"{"namespace":"shared","key":"new","value":"v"}"#,
            "\n"
        );
        assert_eq!(
            import(&b, input.as_bytes()).await.unwrap(),
            Imported {
                written: 1,
                expired: 1
            }
        );

        let bad = concat!(
            r#"{"namespace":"shared","key":"a","value":"v"}"#,
            "\n",
            r#"{"namespace":"plugin:bad id","key":"a","value":"v"}"#,
            "\n"
        );
        let before = b.stored_entries();
        let e = import(&b, bad.as_bytes()).await.unwrap_err().to_string();
        assert!(e.starts_with("line 2:") && e.contains("bad id"), "{e}");
        assert_eq!(b.stored_entries(), before, "nothing written");

        for (input, said) in [
            (
                "{\"namespace\":\"shared\",\"key\":\"a\",\"value\":\"v\"}\n{\"namespace\"",
                "line 2 is not a JSON object: EOF while parsing",
            ),
            ("[1]", "line 1 is not a JSON object: it is an array"),
            (
                "\n\n\"text\"",
                "line 3 is not a JSON object: it is a string",
            ),
            (
                "\u{ff}",
                "line 1 is not a JSON object: expected value at column 1",
            ),
        ] {
            let e = import(&b, input.as_bytes()).await.unwrap_err().to_string();
            assert!(e.starts_with(said), "{input:?}: {e}");
        }
        let e = import(&b, b"\xff\xfe".as_slice()).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1 is not a JSON object: it is not valid UTF-8"
        );
        assert_eq!(b.stored_entries(), before, "nothing written");
    }
}
