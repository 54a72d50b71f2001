//! Sandboxed key-value storage.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::warden::plugin::storage as wit;
use crate::{Error, Result};

/// A handle on the plugin's key-value storage.
///
/// Get one with [`Plugin::storage`](crate::Plugin::storage). It addresses
/// the plugin's **private namespace**: keys are bare strings and the host
/// prefixes them with the plugin's identity, so two plugins that use the
/// same key never see each other's values. [`Storage::shared`] gives a
/// handle on the **shared keyspace** instead, which every plugin can name
/// but which the host only lets a plugin use when the operator granted it.
///
/// Values are bytes on the host. [`set`](Storage::set) and
/// [`get`](Storage::get) store any `serde` value as JSON, so that host-side
/// tools show readable values; [`set_bytes`](Storage::set_bytes) and
/// [`get_bytes`](Storage::get_bytes) store bytes unchanged.
///
/// A key is a non-empty string without control characters, at most 512
/// bytes long unless the operator configured another limit; a bad key fails
/// with [`Error::InvalidKey`].
///
/// ```no_run
/// use std::time::Duration;
/// use warden_sdk::{Result, Storage};
///
/// fn count_visit(storage: &Storage, user: &str) -> Result<u64> {
///     let visits = storage.get::<u64>(user)?.unwrap_or(0) + 1;
///     storage.set(user, &visits)?;
///     storage.set_expiring("last-visitor", user, Duration::from_secs(3600))?;
///     Ok(visits)
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    shared: bool,
}

impl Storage {
    pub(crate) const fn private() -> Self {
        Storage { shared: false }
    }

    /// The same operations on the shared keyspace, which is common to all
    /// plugins. The host refuses shared calls with [`Error::AccessDenied`]
    /// unless the operator granted this plugin access (writes need a
    /// read-write grant).
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// let topic: Option<String> = storage.shared().get("topic")?;
    /// # Ok(()) }
    /// ```
    pub const fn shared(&self) -> Storage {
        Storage { shared: true }
    }

    /// Whether this handle addresses the shared keyspace.
    pub const fn is_shared(&self) -> bool {
        self.shared
    }

    /// Stores `value`, encoded as JSON, under `key`, replacing any previous
    /// value.
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// storage.set("greeting", "hello")?;
    /// storage.set("scores", &vec![3, 1, 4])?;
    /// # Ok(()) }
    /// ```
    pub fn set<V>(&self, key: impl AsRef<str>, value: &V) -> Result<()>
    where
        V: Serialize + ?Sized,
    {
        let key = key.as_ref();
        let bytes = encode(key, value)?;
        self.put(key, &bytes, None)
    }

    /// Like [`set`](Storage::set), but the key expires after `ttl`. The
    /// host counts in whole seconds, so `ttl` is rounded up: the key lives
    /// at least `ttl`.
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// use std::time::Duration;
    ///
    /// storage.set_expiring("token", "abc123", Duration::from_secs(15 * 60))?;
    /// # Ok(()) }
    /// ```
    pub fn set_expiring<V>(&self, key: impl AsRef<str>, value: &V, ttl: Duration) -> Result<()>
    where
        V: Serialize + ?Sized,
    {
        let key = key.as_ref();
        let bytes = encode(key, value)?;
        self.put(key, &bytes, Some(ttl_secs(ttl)))
    }

    /// The JSON value stored under `key`, decoded as `T`, or `None` if
    /// there is none. A value that is not JSON of type `T` fails with
    /// [`Error::Decode`].
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// let greeting: Option<String> = storage.get("greeting")?;
    /// let scores = storage.get::<Vec<u32>>("scores")?.unwrap_or_default();
    /// # Ok(()) }
    /// ```
    pub fn get<T>(&self, key: impl AsRef<str>) -> Result<Option<T>>
    where
        T: DeserializeOwned,
    {
        let key = key.as_ref();
        match self.get_bytes(key)? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Stores `value` under `key` as it is, replacing any previous value.
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// storage.set_bytes("avatar", &[0x89, b'P', b'N', b'G'])?;
    /// # Ok(()) }
    /// ```
    pub fn set_bytes(&self, key: impl AsRef<str>, value: &[u8]) -> Result<()> {
        self.put(key.as_ref(), value, None)
    }

    /// Like [`set_bytes`](Storage::set_bytes), but the key expires after
    /// `ttl`, rounded up to whole seconds.
    pub fn set_bytes_expiring(
        &self,
        key: impl AsRef<str>,
        value: &[u8],
        ttl: Duration,
    ) -> Result<()> {
        self.put(key.as_ref(), value, Some(ttl_secs(ttl)))
    }

    /// The bytes stored under `key`, or `None` if there are none.
    pub fn get_bytes(&self, key: impl AsRef<str>) -> Result<Option<Vec<u8>>> {
        wit::get(key.as_ref(), self.shared).map_err(Error::from_wit)
    }

    /// Whether a value is stored under `key`.
    pub fn has(&self, key: impl AsRef<str>) -> Result<bool> {
        wit::has(key.as_ref(), self.shared).map_err(Error::from_wit)
    }

    /// Removes `key` and its value. Removing a key that does not exist is
    /// not an error.
    pub fn delete(&self, key: impl AsRef<str>) -> Result<()> {
        wit::delete(key.as_ref(), self.shared).map_err(Error::from_wit)
    }

    /// The size in bytes of the host's whole store (all plugins and the
    /// shared keyspace), as its backend reports it.
    pub fn size(&self) -> Result<u64> {
        wit::storage_size().map_err(Error::from_wit)
    }

    /// The same size as [`size`](Storage::size), formatted for people by the
    /// host, for example `32.0 KiB`.
    pub fn size_human(&self) -> Result<String> {
        wit::storage_size_human().map_err(Error::from_wit)
    }

    /// The bytes of keys and values the plugin's own namespace holds: what
    /// its quota counts.
    pub fn namespace_size(&self) -> Result<u64> {
        wit::namespace_size().map_err(Error::from_wit)
    }

    /// One page of keys that start with `prefix`, in bytewise order, after
    /// `cursor` (the `next` of the previous page), at most `limit` (the
    /// host caps it at 1000). On the shared keyspace the prefix must be
    /// covered by the plugin's read grant.
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// let mut cursor = None;
    /// loop {
    ///     let page = storage.list_keys("karma:", cursor.as_deref(), 100)?;
    ///     for key in &page.keys {
    ///         println!("{key}");
    ///     }
    ///     match page.next {
    ///         Some(next) => cursor = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list_keys(
        &self,
        prefix: impl AsRef<str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<KeyPage> {
        let page =
            wit::list_keys(prefix.as_ref(), cursor, limit, self.shared).map_err(Error::from_wit)?;
        Ok(KeyPage {
            keys: page.keys,
            next: page.next,
        })
    }

    /// Every key that starts with `prefix`, fetched a page at a time.
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// let things: Vec<String> = storage.keys("karma:")?;
    /// # Ok(()) }
    /// ```
    pub fn keys(&self, prefix: impl AsRef<str>) -> Result<Vec<String>> {
        let prefix = prefix.as_ref();
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list_keys(prefix, cursor.as_deref(), 1000)?;
            keys.extend(page.keys);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Atomically adds `delta` to the counter under `key` (created at
    /// `delta` if missing) and returns its new value. Counters are stored
    /// as decimal digits, so `get::<i64>` reads them too. Fails with
    /// [`Error::InvalidValue`] if the key holds something else, or the sum
    /// would overflow.
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// let visits = storage.increment("visits", 1)?;
    /// # Ok(()) }
    /// ```
    pub fn increment(&self, key: impl AsRef<str>, delta: i64) -> Result<i64> {
        wit::increment(key.as_ref(), delta, self.shared).map_err(Error::from_wit)
    }

    /// Atomically replaces the JSON value under `key` with `new` (`None`:
    /// deletes it) if the value there now is `expected` (`None`: the key is
    /// missing); returns whether it did. Values are compared as stored, so
    /// use it on values written by this SDK.
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// // Claim a job unless someone else has.
    /// let mine = storage.compare_and_swap::<String>("job:42", None, Some(&"worker-a".to_owned()))?;
    /// # Ok(()) }
    /// ```
    pub fn compare_and_swap<V>(
        &self,
        key: impl AsRef<str>,
        expected: Option<&V>,
        new: Option<&V>,
    ) -> Result<bool>
    where
        V: Serialize + ?Sized,
    {
        let key = key.as_ref();
        let expected = expected.map(|v| encode(key, v)).transpose()?;
        let new = new.map(|v| encode(key, v)).transpose()?;
        self.compare_and_swap_bytes(key, expected.as_deref(), new.as_deref())
    }

    /// [`compare_and_swap`](Storage::compare_and_swap) on raw bytes.
    pub fn compare_and_swap_bytes(
        &self,
        key: impl AsRef<str>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        wit::compare_and_swap(key.as_ref(), expected, new, self.shared).map_err(Error::from_wit)
    }

    /// The JSON values under `keys`, decoded as `T`, in the same order.
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// let scores: Vec<Option<i64>> = storage.get_many(&["karma:rust", "karma:go"])?;
    /// # Ok(()) }
    /// ```
    pub fn get_many<T, K>(&self, keys: &[K]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned,
        K: AsRef<str>,
    {
        let names: Vec<String> = keys.iter().map(|k| k.as_ref().to_owned()).collect();
        let values = wit::get_many(&names, self.shared).map_err(Error::from_wit)?;
        names
            .iter()
            .zip(values)
            .map(|(key, value)| value.map(|bytes| decode(key, &bytes)).transpose())
            .collect()
    }

    /// Stores every `(key, value)` pair as JSON, all or none.
    ///
    /// ```no_run
    /// # fn demo(storage: warden_sdk::Storage) -> warden_sdk::Result<()> {
    /// storage.set_many(&[("a", 1), ("b", 2)])?;
    /// # Ok(()) }
    /// ```
    pub fn set_many<K, V>(&self, entries: &[(K, V)]) -> Result<()>
    where
        K: AsRef<str>,
        V: Serialize,
    {
        let encoded = entries
            .iter()
            .map(|(k, v)| Ok((k.as_ref().to_owned(), encode(k.as_ref(), v)?)))
            .collect::<Result<Vec<_>>>()?;
        wit::set_many(&encoded, None, self.shared).map_err(Error::from_wit)
    }

    /// Removes every key, all or none.
    pub fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<()> {
        let names: Vec<String> = keys.iter().map(|k| k.as_ref().to_owned()).collect();
        wit::delete_many(&names, self.shared).map_err(Error::from_wit)
    }

    fn put(&self, key: &str, value: &[u8], expires_in_secs: Option<u64>) -> Result<()> {
        wit::set(key, value, expires_in_secs, self.shared).map_err(Error::from_wit)
    }
}

/// One page of keys from [`Storage::list_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys, in bytewise order.
    pub keys: Vec<String>,
    /// The cursor for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// A time to live in the host's whole seconds, rounded up so that a key
/// never expires before `ttl` has passed.
pub(crate) fn ttl_secs(ttl: Duration) -> u64 {
    let extra = u64::from(ttl.subsec_nanos() > 0);
    ttl.as_secs().saturating_add(extra)
}

fn encode<V>(key: &str, value: &V) -> Result<Vec<u8>>
where
    V: Serialize + ?Sized,
{
    serde_json::to_vec(value).map_err(|error| Error::Encode {
        key: key.to_owned(),
        message: error.to_string(),
    })
}

fn decode<T>(key: &str, bytes: &[u8]) -> Result<T>
where
    T: DeserializeOwned,
{
    serde_json::from_slice(bytes).map_err(|error| Error::Decode {
        key: key.to_owned(),
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn ttl_is_rounded_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::ZERO), 0);
        assert_eq!(ttl_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(999)), 1);
        assert_eq!(ttl_secs(Duration::from_secs(1)), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ttl_secs(Duration::from_secs(3600)), 3600);
    }

    #[test]
    fn ttl_rounding_saturates() {
        assert_eq!(ttl_secs(Duration::MAX), u64::MAX);
        assert_eq!(ttl_secs(Duration::from_secs(u64::MAX)), u64::MAX);
    }

    #[test]
    fn values_are_stored_as_json() {
        assert_eq!(encode("k", "hello").unwrap(), br#""hello""#);
        assert_eq!(encode("k", &vec![1, 2]).unwrap(), b"[1,2]");
        assert_eq!(decode::<String>("k", br#""hello""#).unwrap(), "hello");
        assert_eq!(decode::<Option<u8>>("k", b"null").unwrap(), None);
    }

    #[test]
    fn encode_failures_name_the_key() {
        let mut map = BTreeMap::new();
        map.insert(vec![1u8], 1);
        match encode("scores", &map) {
            Err(Error::Encode { key, message }) => {
                assert_eq!(key, "scores");
                assert!(!message.is_empty());
            }
            other => panic!("expected an encode error, got {other:?}"),
        }
    }

    #[test]
    fn decode_failures_name_the_key() {
        match decode::<String>("greeting", b"\x01\x02 not json") {
            Err(Error::Decode { key, message }) => {
                assert_eq!(key, "greeting");
                assert!(!message.is_empty());
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
        assert_eq!(
            decode::<u32>("n", b"\"seven\"").unwrap_err().kind(),
            "decode"
        );
    }

    #[test]
    fn shared_handles_address_the_shared_keyspace() {
        let private = Storage::private();
        assert!(!private.is_shared());
        assert!(private.shared().is_shared());
        assert!(private.shared().shared().is_shared());
    }
}
