//! The error type of storage calls.

use std::fmt;

use crate::__bindings::warden::plugin::storage::Error as WitError;

/// Why a storage call failed.
///
/// The first five variants come from the host and carry its message; the
/// last two are raised by the SDK when a value cannot be converted to or
/// from JSON. The enum is `#[non_exhaustive]`: match the variants you handle
/// and keep a `_` arm.
///
/// ```no_run
/// use warden_sdk::{Error, Storage};
///
/// fn publish(shared: &Storage, key: &str, text: &str) -> String {
///     match shared.set(key, text) {
///         Ok(()) => format!("published <{key}>"),
///         Err(Error::AccessDenied(_)) => "this plugin may not write shared keys".to_owned(),
///         Err(error) => format!("failed: {error}"),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The plugin has no grant for the shared keyspace, or only a read-only
    /// grant and tried to write.
    AccessDenied(String),
    /// The key is empty, too long, or contains characters that are not
    /// allowed (control characters).
    InvalidKey(String),
    /// The value is over the host's size limit.
    TooLarge(String),
    /// The plugin's namespace is over its byte quota.
    QuotaExceeded(String),
    /// The host's store failed.
    Backend(String),
    /// The stored value does not fit the operation: an increment of a value
    /// that is not a counter, or of a counter that would overflow.
    InvalidValue(String),
    /// The value could not be encoded as JSON (for example a map whose keys
    /// are not strings).
    Encode {
        /// The key the value was to be stored under.
        key: String,
        /// What `serde_json` reported.
        message: String,
    },
    /// The stored value is not JSON of the requested type (for example it
    /// was written with [`Storage::set_bytes`](crate::Storage::set_bytes),
    /// or with a different type).
    Decode {
        /// The key the value was read from.
        key: String,
        /// What `serde_json` reported.
        message: String,
    },
}

impl Error {
    /// A short, stable name for the kind of error, suitable for replies and
    /// tests: `access-denied`, `invalid-key`, `too-large`, `quota-exceeded`
    /// and `backend` (the names of the host's error cases), or `encode` and
    /// `decode`.
    ///
    /// ```
    /// use warden_sdk::Error;
    ///
    /// assert_eq!(Error::QuotaExceeded("full".into()).kind(), "quota-exceeded");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Error::AccessDenied(_) => "access-denied",
            Error::InvalidKey(_) => "invalid-key",
            Error::TooLarge(_) => "too-large",
            Error::QuotaExceeded(_) => "quota-exceeded",
            Error::Backend(_) => "backend",
            Error::InvalidValue(_) => "invalid-value",
            Error::Encode { .. } => "encode",
            Error::Decode { .. } => "decode",
        }
    }

    /// The message that came with the error: the host's text for the host's
    /// errors, `serde_json`'s for [`Error::Encode`] and [`Error::Decode`].
    ///
    /// ```
    /// use warden_sdk::Error;
    ///
    /// let error = Error::AccessDenied("no grant for the shared keyspace".into());
    /// assert_eq!(error.message(), "no grant for the shared keyspace");
    /// assert_eq!(error.to_string(), "access denied: no grant for the shared keyspace");
    /// ```
    pub fn message(&self) -> &str {
        match self {
            Error::AccessDenied(message)
            | Error::InvalidKey(message)
            | Error::TooLarge(message)
            | Error::QuotaExceeded(message)
            | Error::Backend(message)
            | Error::InvalidValue(message)
            | Error::Encode { message, .. }
            | Error::Decode { message, .. } => message,
        }
    }

    pub(crate) fn from_wit(error: WitError) -> Self {
        match error {
            WitError::AccessDenied(message) => Error::AccessDenied(message),
            WitError::InvalidKey(message) => Error::InvalidKey(message),
            WitError::TooLarge(message) => Error::TooLarge(message),
            WitError::QuotaExceeded(message) => Error::QuotaExceeded(message),
            WitError::Backend(message) => Error::Backend(message),
            WitError::InvalidValue(message) => Error::InvalidValue(message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AccessDenied(message) => write!(f, "access denied: {message}"),
            Error::InvalidKey(message) => write!(f, "invalid key: {message}"),
            Error::TooLarge(message) => write!(f, "value too large: {message}"),
            Error::QuotaExceeded(message) => write!(f, "quota exceeded: {message}"),
            Error::Backend(message) => write!(f, "storage backend error: {message}"),
            Error::InvalidValue(message) => write!(f, "invalid value: {message}"),
            Error::Encode { key, message } => {
                write!(f, "cannot encode the value for key {key:?}: {message}")
            }
            Error::Decode { key, message } => {
                write!(f, "cannot decode the value of key {key:?}: {message}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// The result of SDK calls: `Result<T, warden_sdk::Error>` unless another
/// error type is named.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wit_error_maps_to_the_variant_of_the_same_name() {
        let cases = [
            (
                WitError::AccessDenied("a".into()),
                Error::AccessDenied("a".into()),
            ),
            (
                WitError::InvalidKey("b".into()),
                Error::InvalidKey("b".into()),
            ),
            (WitError::TooLarge("c".into()), Error::TooLarge("c".into())),
            (
                WitError::QuotaExceeded("d".into()),
                Error::QuotaExceeded("d".into()),
            ),
            (WitError::Backend("e".into()), Error::Backend("e".into())),
        ];
        for (wit, expected) in cases {
            assert_eq!(Error::from_wit(wit), expected);
        }
    }

    #[test]
    fn kinds_are_the_wit_case_names() {
        assert_eq!(Error::AccessDenied(String::new()).kind(), "access-denied");
        assert_eq!(Error::InvalidKey(String::new()).kind(), "invalid-key");
        assert_eq!(Error::TooLarge(String::new()).kind(), "too-large");
        assert_eq!(Error::QuotaExceeded(String::new()).kind(), "quota-exceeded");
        assert_eq!(Error::Backend(String::new()).kind(), "backend");
        let serde = |key: &str| (key.to_owned(), "m".to_owned());
        let (key, message) = serde("k");
        assert_eq!(Error::Encode { key, message }.kind(), "encode");
        let (key, message) = serde("k");
        assert_eq!(Error::Decode { key, message }.kind(), "decode");
    }

    #[test]
    fn display_prefixes_the_host_message_with_the_kind() {
        let shown = |error: Error| error.to_string();
        assert_eq!(
            shown(Error::AccessDenied("no grant".into())),
            "access denied: no grant"
        );
        assert_eq!(
            shown(Error::InvalidKey("empty".into())),
            "invalid key: empty"
        );
        assert_eq!(
            shown(Error::TooLarge("2 MiB".into())),
            "value too large: 2 MiB"
        );
        assert_eq!(
            shown(Error::QuotaExceeded("1 MiB".into())),
            "quota exceeded: 1 MiB"
        );
        assert_eq!(
            shown(Error::Backend("io".into())),
            "storage backend error: io"
        );
        assert_eq!(
            shown(Error::Decode {
                key: "k".into(),
                message: "expected a string".into()
            }),
            "cannot decode the value of key \"k\": expected a string"
        );
    }

    #[test]
    fn message_is_the_text_without_the_prefix() {
        assert_eq!(Error::Backend("disk full".into()).message(), "disk full");
        let error = Error::Encode {
            key: "k".into(),
            message: "bad map key".into(),
        };
        assert_eq!(error.message(), "bad map key");
    }
}
