//! Plugin identities, storage keys, and the codec that maps a (namespace, key)
//! pair to the key a backend stores.
//!
//! # Identities
//!
//! A plugin declares its identity in its manifest, for example
//! `example.storage.StoragePlugin` (Slack Machine's "fully qualified class
//! name"). A valid identity:
//!
//! - is 1 to [`MAX_ID_LEN`] bytes long;
//! - is one or more segments separated by single dots;
//! - has segments that start with an ASCII letter or `_` and go on with ASCII
//!   letters, digits, `_` or `-`.
//!
//! # Keys
//!
//! A key passed by a plugin is any non-empty UTF-8 string of at most the
//! configured number of bytes (512 by default) without control characters
//! (`U+0000`–`U+001F`, `U+007F`–`U+009F`). Plugins pass bare keys; the host
//! adds the namespace.
//!
//! # The backend key codec
//!
//! | namespace | backend key |
//! |---|---|
//! | plugin `ID` | `plugin:ID:KEY` |
//! | shared | `shared:KEY` |
//! | Warden's own records | `warden:...` |
//!
//! The codec is injective: an identity never contains `:`, so the first `:`
//! after `plugin:` ends the identity and every backend key decodes to exactly
//! one (namespace, key) pair. The three prefixes differ in their first byte,
//! so no shared key can ever name a private key or one of Warden's records,
//! whatever characters it contains.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Longest identity accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Prefix of every key in a plugin's private namespace.
const PLUGIN_PREFIX: &str = "plugin:";
/// Prefix of every key in the shared keyspace.
const SHARED_PREFIX: &str = "shared:";
/// Prefix reserved for Warden's own records; plugins can never produce it.
pub const RESERVED_PREFIX: &str = "warden:";

/// A validated plugin identity. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PluginId(Arc<str>);

/// Why an identity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The identity is the empty string.
    #[error("the plugin identity is empty")]
    Empty,
    /// The identity is longer than [`MAX_ID_LEN`] bytes.
    #[error("the plugin identity is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A dot at the start or end, or two dots in a row.
    #[error("the plugin identity {id:?} has an empty segment (a leading, trailing or doubled '.')")]
    EmptySegment {
        /// The refused identity.
        id: String,
    },
    /// A character outside the allowed set.
    #[error(
        "the plugin identity {id:?} has {ch:?} at byte {at}; segments start with an ASCII letter \
         or '_' and go on with ASCII letters, digits, '_' or '-', separated by '.'"
    )]
    BadChar {
        /// The refused identity.
        id: String,
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
}

impl PluginId {
    /// Validates `id` as a plugin identity.
    ///
    /// ```
    /// use warden::identity::PluginId;
    /// assert!(PluginId::new("example.storage.StoragePlugin").is_ok());
    /// assert!(PluginId::new("no spaces allowed").is_err());
    /// ```
    pub fn new(id: &str) -> Result<Self, IdError> {
        if id.is_empty() {
            return Err(IdError::Empty);
        }
        if id.len() > MAX_ID_LEN {
            return Err(IdError::TooLong { len: id.len() });
        }
        let mut offset = 0;
        for segment in id.split('.') {
            if segment.is_empty() {
                return Err(IdError::EmptySegment { id: id.to_owned() });
            }
            for (i, ch) in segment.char_indices() {
                let ok = if i == 0 {
                    ch.is_ascii_alphabetic() || ch == '_'
                } else {
                    ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'
                };
                if !ok {
                    return Err(IdError::BadChar {
                        id: id.to_owned(),
                        ch,
                        at: offset + i,
                    });
                }
            }
            offset += segment.len() + 1;
        }
        Ok(Self(Arc::from(id)))
    }

    /// The identity as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PluginId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Where a key lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// A plugin's private namespace.
    Plugin(PluginId),
    /// The keyspace shared by every plugin with a grant.
    Shared,
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Namespace::Plugin(id) => write!(f, "plugin {id}"),
            Namespace::Shared => f.write_str("the shared keyspace"),
        }
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is the empty string.
    #[error("the key is empty")]
    Empty,
    /// The key is longer than the limit.
    #[error("the key is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The key has a control character.
    #[error("the key has the control character {ch:?} at byte {at}")]
    ControlChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
}

/// Checks a key passed by a plugin against the rules above and a length
/// limit in bytes.
pub fn validate_key(key: &str, max_len: usize) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > max_len {
        return Err(KeyError::TooLong {
            len: key.len(),
            max: max_len,
        });
    }
    if let Some((at, ch)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KeyError::ControlChar { ch, at });
    }
    Ok(())
}

/// Encodes (namespace, key) as a backend key. See the module docs.
pub fn encode_key(namespace: &Namespace, key: &str) -> Vec<u8> {
    let mut out;
    match namespace {
        Namespace::Plugin(id) => {
            out = Vec::with_capacity(PLUGIN_PREFIX.len() + id.as_str().len() + 1 + key.len());
            out.extend_from_slice(PLUGIN_PREFIX.as_bytes());
            out.extend_from_slice(id.as_str().as_bytes());
            out.push(b':');
        }
        Namespace::Shared => {
            out = Vec::with_capacity(SHARED_PREFIX.len() + key.len());
            out.extend_from_slice(SHARED_PREFIX.as_bytes());
        }
    }
    out.extend_from_slice(key.as_bytes());
    out
}

/// The backend-key prefix under which every key of `namespace` is stored.
pub fn namespace_prefix(namespace: &Namespace) -> Vec<u8> {
    encode_key(namespace, "")
}

/// The backend key recording which plugin file an identity is bound to.
pub fn binding_key(id: &PluginId) -> Vec<u8> {
    format!("{RESERVED_PREFIX}binding:{id}").into_bytes()
}

/// Decodes a backend key made by [`encode_key`]. Returns `None` for keys that
/// are not plugin or shared keys (Warden's own records, or foreign data).
pub fn decode_key(raw: &[u8]) -> Option<(Namespace, &str)> {
    let text = std::str::from_utf8(raw).ok()?;
    if let Some(rest) = text.strip_prefix(SHARED_PREFIX) {
        return Some((Namespace::Shared, rest));
    }
    let rest = text.strip_prefix(PLUGIN_PREFIX)?;
    let (id, key) = rest.split_once(':')?;
    Some((Namespace::Plugin(PluginId::new(id).ok()?), key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_dotted_names() {
        for id in [
            "example.storage.StoragePlugin",
            "a",
            "_private.x",
            "my-org.bot_2.Plugin",
        ] {
            assert_eq!(PluginId::new(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(PluginId::new(""), Err(IdError::Empty));
        assert!(matches!(
            PluginId::new(&"a".repeat(129)),
            Err(IdError::TooLong { len: 129 })
        ));
        assert!(PluginId::new(&"a".repeat(128)).is_ok());
        for id in ["a..b", ".a", "a.", "."] {
            assert!(
                matches!(PluginId::new(id), Err(IdError::EmptySegment { .. })),
                "{id}"
            );
        }
        assert_eq!(
            PluginId::new("a.b:c"),
            Err(IdError::BadChar {
                id: "a.b:c".into(),
                ch: ':',
                at: 3
            })
        );
        for id in ["1abc", "a.9b", "a b", "a/b", "ä", "a.-b", "not a valid id!"] {
            assert!(
                matches!(PluginId::new(id), Err(IdError::BadChar { .. })),
                "{id}"
            );
        }
    }

    #[test]
    fn error_messages_name_the_identity() {
        let msg = PluginId::new("bad id").unwrap_err().to_string();
        assert!(msg.contains("\"bad id\""), "{msg}");
        assert!(msg.contains("' '"), "{msg}");
    }

    #[test]
    fn validates_keys() {
        assert_eq!(validate_key("", 10), Err(KeyError::Empty));
        assert_eq!(
            validate_key("abcdef", 5),
            Err(KeyError::TooLong { len: 6, max: 5 })
        );
        assert_eq!(
            validate_key("a\0b", 10),
            Err(KeyError::ControlChar { ch: '\0', at: 1 })
        );
        assert_eq!(
            validate_key("a\nb", 10),
            Err(KeyError::ControlChar { ch: '\n', at: 1 })
        );
        for key in [
            "greeting",
            "../x",
            "plugin:other.P:k",
            "shared:",
            "ключ ✓",
            ":",
            ".",
        ] {
            assert_eq!(validate_key(key, 512), Ok(()), "{key}");
        }
    }

    #[test]
    fn encodes_readably() {
        let id = PluginId::new("example.storage.StoragePlugin").unwrap();
        assert_eq!(
            encode_key(&Namespace::Plugin(id), "greeting"),
            b"plugin:example.storage.StoragePlugin:greeting"
        );
        assert_eq!(
            encode_key(&Namespace::Shared, "greeting"),
            b"shared:greeting"
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
            assert!(!shared.starts_with(RESERVED_PREFIX.as_bytes()));
            assert_eq!(decode_key(&shared), Some((Namespace::Shared, key)));
        }
    }

    #[test]
    fn decodes_only_what_it_encodes() {
        assert_eq!(decode_key(b"warden:bindings/x"), None);
        assert_eq!(decode_key(b"plugin:no-colon"), None);
        assert_eq!(decode_key(b"plugin:bad id:k"), None);
        assert_eq!(decode_key(&[0xff, 0xfe]), None);
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
