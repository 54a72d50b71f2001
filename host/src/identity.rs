//! Plugin identities, namespaces, and the keys plugins pass.
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
//! The codec that stores each (namespace, key) pair in a backend is
//! [`crate::storage::keys`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Longest identity accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A validated plugin identity. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct PluginId(Arc<str>);

impl TryFrom<String> for PluginId {
    type Error = IdError;

    fn try_from(id: String) -> Result<Self, IdError> {
        PluginId::new(&id)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
