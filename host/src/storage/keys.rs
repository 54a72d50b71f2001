//! The backend key codec: where each (namespace, key) pair, and each of
//! Warden's own records, is stored in a [`Backend`](super::Backend).
//!
//! | area | backend key |
//! |---|---|
//! | plugin `ID`'s namespace | `plugin:ID:KEY` |
//! | the shared keyspace | `shared:KEY` |
//! | Warden's own records | `warden:...` |
//!
//! The codec is injective: an identity never contains `:`, so the first `:`
//! after `plugin:` ends the identity and every backend key decodes to exactly
//! one (namespace, key) pair. The three prefixes differ in their first byte,
//! so no shared key can ever name a private key or one of Warden's records,
//! whatever characters it contains.
//!
//! Every backend key Warden writes is made here, by [`Keys`]; nothing else
//! knows the prefixes.

use std::fmt;
use std::str::FromStr;

use crate::identity::{Namespace, PluginId};

/// Prefix of every key in a plugin's private namespace.
const PLUGIN_PREFIX: &str = "plugin:";
/// Prefix of every key in the shared keyspace.
const SHARED_PREFIX: &str = "shared:";
/// Prefix of Warden's own records; plugins can never produce it.
const RECORDS_PREFIX: &str = "warden:";

/// The part of a store a backend key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    /// A plugin's namespace or the shared keyspace.
    Namespace(Namespace),
    /// Warden's own records, such as identity bindings.
    Records,
    /// Keys Warden did not write (another application's, in a shared
    /// database).
    Foreign,
}

impl Area {
    /// The area of `raw`, and the key within it. A key that looks like a
    /// namespace's but does not decode (a bad identity, no `:` after it, or
    /// not UTF-8) is [`Area::Foreign`].
    pub fn of(raw: &[u8]) -> (Area, &[u8]) {
        if let Some(key) = raw.strip_prefix(SHARED_PREFIX.as_bytes()) {
            if std::str::from_utf8(key).is_ok() {
                return (Area::Namespace(Namespace::Shared), key);
            }
        } else if let Some(rest) = raw.strip_prefix(PLUGIN_PREFIX.as_bytes()) {
            let id_and_key = std::str::from_utf8(rest).ok();
            let split = id_and_key.and_then(|text| text.split_once(':'));
            if let Some((id, key)) = split
                && let Ok(id) = PluginId::new(id)
            {
                return (Area::Namespace(Namespace::Plugin(id)), key.as_bytes());
            }
        } else if let Some(rest) = raw.strip_prefix(RECORDS_PREFIX.as_bytes()) {
            return (Area::Records, rest);
        }
        (Area::Foreign, raw)
    }

    /// The area's label, as `warden storage` prints it and the export
    /// format names it: `plugin:ID`, `shared`, `warden` or `raw`.
    pub fn label(&self) -> String {
        self.to_string()
    }
}

impl From<Namespace> for Area {
    fn from(namespace: Namespace) -> Self {
        Area::Namespace(namespace)
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Area::Namespace(Namespace::Plugin(id)) => write!(f, "plugin:{id}"),
            Area::Namespace(Namespace::Shared) => f.write_str("shared"),
            Area::Records => f.write_str("warden"),
            Area::Foreign => f.write_str("raw"),
        }
    }
}

/// Why an area's label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AreaError {
    /// Not one of the labels.
    #[error("unknown namespace {0:?}: expected plugin:ID, shared, warden or raw")]
    Unknown(String),
    /// `plugin:` with an invalid identity.
    #[error(transparent)]
    Id(#[from] crate::identity::IdError),
}

impl FromStr for Area {
    type Err = AreaError;

    fn from_str(label: &str) -> Result<Self, Self::Err> {
        Ok(match label {
            "shared" => Area::Namespace(Namespace::Shared),
            "warden" => Area::Records,
            "raw" => Area::Foreign,
            other => match other.strip_prefix("plugin:") {
                Some(id) => Area::Namespace(Namespace::Plugin(PluginId::new(id)?)),
                None => return Err(AreaError::Unknown(other.to_owned())),
            },
        })
    }
}

/// The backend keys of one area: its prefix, and each key under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: std::sync::Arc<[u8]>,
}

impl Keys {
    /// The keys of `area`.
    pub fn of(area: impl Into<Area>) -> Self {
        let prefix = match area.into() {
            Area::Namespace(Namespace::Plugin(id)) => format!("{PLUGIN_PREFIX}{id}:").into_bytes(),
            Area::Namespace(Namespace::Shared) => SHARED_PREFIX.as_bytes().to_vec(),
            Area::Records => RECORDS_PREFIX.as_bytes().to_vec(),
            Area::Foreign => Vec::new(),
        };
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix every backend key of the area starts with.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The backend key of `key` in the area.
    pub fn key(&self, key: impl AsRef<[u8]>) -> Vec<u8> {
        let key = key.as_ref();
        let mut raw = Vec::with_capacity(self.prefix.len() + key.len());
        raw.extend_from_slice(&self.prefix);
        raw.extend_from_slice(key);
        raw
    }
}

/// The backend key of `key` in `namespace`.
pub fn encode_key(namespace: &Namespace, key: &str) -> Vec<u8> {
    Keys::of(namespace.clone()).key(key)
}

/// The backend-key prefix of every key of `namespace`.
pub fn namespace_prefix(namespace: &Namespace) -> Vec<u8> {
    Keys::of(namespace.clone()).prefix().to_vec()
}

/// Decodes a key of a namespace made by [`encode_key`]. Returns `None` for
/// keys that are not plugin or shared keys (Warden's own records, or
/// foreign data).
pub fn decode_key(raw: &[u8]) -> Option<(Namespace, &str)> {
    match Area::of(raw) {
        (Area::Namespace(namespace), key) => Some((namespace, std::str::from_utf8(key).ok()?)),
        _ => None,
    }
}

/// The record binding identity `id` to the file that loads with it.
pub(crate) fn binding_key(id: &PluginId) -> Vec<u8> {
    Keys::of(Area::Records).key(format!("binding:{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_readably() {
        let id = PluginId::new("example.storage.StoragePlugin").unwrap();
        assert_eq!(
            encode_key(&Namespace::Plugin(id.clone()), "greeting"),
            b"plugin:example.storage.StoragePlugin:greeting"
        );
        assert_eq!(
            encode_key(&Namespace::Shared, "greeting"),
            b"shared:greeting"
        );
        assert_eq!(
            binding_key(&id),
            b"warden:binding:example.storage.StoragePlugin"
        );
    }

    #[test]
    fn shared_keys_cannot_name_private_or_reserved_keys() {
        // The key a Slack Machine plugin would use to reach another plugin's data.
        let id = PluginId::new("other.Plugin").unwrap();
        let private = encode_key(&Namespace::Plugin(id), "secret");
        for key in [
            "other.Plugin:secret",
            "plugin:other.Plugin:secret",
            "warden:binding",
        ] {
            let shared = encode_key(&Namespace::Shared, key);
            assert_ne!(shared, private);
            assert!(!shared.starts_with(RECORDS_PREFIX.as_bytes()));
            assert_eq!(decode_key(&shared), Some((Namespace::Shared, key)));
        }
    }

    #[test]
    fn decodes_only_what_it_encodes() {
        assert_eq!(decode_key(b"warden:bindings/x"), None);
        assert_eq!(decode_key(b"plugin:no-colon"), None);
        assert_eq!(decode_key(b"plugin:bad id:k"), None);
        assert_eq!(decode_key(&[0xff, 0xfe]), None);
        assert_eq!(
            Area::of(b"warden:binding:a"),
            (Area::Records, &b"binding:a"[..])
        );
        assert_eq!(
            Area::of(b"plugin:bad id:k"),
            (Area::Foreign, &b"plugin:bad id:k"[..])
        );
        assert_eq!(Area::of(b"other"), (Area::Foreign, &b"other"[..]));
    }

    #[test]
    fn labels_round_trip() {
        let id = PluginId::new("a.B").unwrap();
        for area in [
            Area::Namespace(Namespace::Plugin(id)),
            Area::Namespace(Namespace::Shared),
            Area::Records,
            Area::Foreign,
        ] {
            assert_eq!(area.label().parse::<Area>(), Ok(area));
        }
        assert_eq!(
            "nope".parse::<Area>(),
            Err(AreaError::Unknown("nope".into()))
        );
        assert!("plugin:bad id".parse::<Area>().is_err());
    }

    fn id_strategy() -> impl Strategy<Value = PluginId> {
        "[A-Za-z_][A-Za-z0-9_-]{0,8}(\\.[A-Za-z_][A-Za-z0-9_-]{0,8}){0,3}"
            .prop_map(|s| PluginId::new(&s).expect("strategy makes valid identities"))
    }

    fn namespace_strategy() -> impl Strategy<Value = Namespace> {
        prop_oneof![
            Just(Namespace::Shared),
            id_strategy().prop_map(Namespace::Plugin)
        ]
    }

    /// Keys full of the characters that could confuse a codec.
    fn key_strategy() -> impl Strategy<Value = String> {
        "([:.a/\\\\]|plugin:|shared:|warden:|\\PC){0,12}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn codec_is_injective(a in namespace_strategy(), ka in key_strategy(),
                              b in namespace_strategy(), kb in key_strategy()) {
            let (ea, eb) = (encode_key(&a, &ka), encode_key(&b, &kb));
            prop_assert_eq!(ea == eb, a == b && ka == kb);
        }

        #[test]
        fn codec_round_trips(ns in namespace_strategy(), key in key_strategy()) {
            let encoded = encode_key(&ns, &key);
            prop_assert_eq!(decode_key(&encoded), Some((ns.clone(), key.as_str())));
            prop_assert!(encoded.starts_with(&namespace_prefix(&ns)));
        }

        #[test]
        fn no_shared_key_equals_a_private_key(id in id_strategy(), private in key_strategy(),
                                              shared in key_strategy()) {
            let p = encode_key(&Namespace::Plugin(id), &private);
            let s = encode_key(&Namespace::Shared, &shared);
            prop_assert_ne!(&p, &s);
            prop_assert!(!s.starts_with(&p[..PLUGIN_PREFIX.len()]));
        }
    }
}
