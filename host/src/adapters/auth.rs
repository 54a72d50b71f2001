//! Bearer tokens for the HTTP API, and the scopes they grant.
//!
//! Tokens come from `[http] tokens_file` (one a line: the token or its
//! SHA-256 as `sha256:HEX`, then optionally its scopes) and from
//! `[http] token` (`WARDEN_HTTP_TOKEN`, both scopes). Only their SHA-256
//! digests are kept; a presented token is hashed and compared with every
//! digest in constant time. Tokens never reach logs or metrics.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::config::HttpConfig;

/// What a token may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `POST /v1/messages`.
    Messages,
    /// `GET /v1/plugins` and `GET /metrics`.
    Admin,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::Messages => "messages",
            Scope::Admin => "admin",
        }
    }
}

/// Why the tokens could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokensError {
    /// The file could not be read.
    #[error("cannot read the tokens file {file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a token with scopes.
    #[error("{file} line {line}: {message}")]
    BadLine {
        /// The file.
        file: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong (never the token itself).
        message: String,
    },
}

/// One accepted token: its digest and scopes.
#[derive(Clone)]
struct Token {
    digest: [u8; 32],
    messages: bool,
    admin: bool,
}

/// The tokens the API accepts. Empty: no authentication.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.tokens.len())
            .finish()
    }
}

/// How a request's credentials fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through; with the index of the token that was presented, when
    /// tokens are configured.
    Allowed(Option<usize>),
    /// No token, or not one of ours: 401.
    Unauthenticated,
    /// A valid token without the scope: 403.
    Forbidden(Scope),
}

impl Tokens {
    /// The tokens `config` names: its file's and its `token`.
    pub fn from_config(config: &HttpConfig) -> Result<Self, TokensError> {
        let mut tokens = match &config.tokens_file {
            Some(file) => Self::read(file)?,
            None => Self::default(),
        };
        if let Some(token) = config.token.as_deref().filter(|t| !t.is_empty()) {
            tokens.tokens.push(Token {
                digest: Sha256::digest(token.as_bytes()).into(),
                messages: true,
                admin: true,
            });
        }
        Ok(tokens)
    }

    fn read(file: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(file).map_err(|source| TokensError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let bad = |message: &str| TokensError::BadLine {
                file: file.to_path_buf(),
                line: i + 1,
                message: message.to_owned(),
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let secret = words.next().unwrap_or_default();
            let digest: [u8; 32] = match secret.strip_prefix("sha256:") {
                Some(hex) => parse_hex(hex)
                    .ok_or_else(|| bad("sha256: must be followed by 64 hexadecimal digits"))?,
                None => Sha256::digest(secret.as_bytes()).into(),
            };
            let (mut messages, mut admin) = (false, false);
            match words.next() {
                None => messages = true,
                Some(scopes) => {
                    for scope in scopes.split(',') {
                        match scope {
                            "messages" => messages = true,
                            "admin" => admin = true,
                            _ => {
                                return Err(bad(&format!(
                                    "unknown scope {scope:?}; the scopes are messages and admin"
                                )));
                            }
                        }
                    }
                }
            }
            if words.next().is_some() {
                return Err(bad(
                    "expected a token and its scopes (e.g. `TOKEN messages,admin`), no more",
                ));
            }
            tokens.push(Token {
                digest,
                messages,
                admin,
            });
        }
        Ok(Self { tokens })
    }

    /// Whether any token is configured; without one the API is open.
    pub fn any(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether the `Authorization` header `header` grants `scope`.
    pub fn check(&self, header: Option<&[u8]>, scope: Scope) -> Verdict {
        if !self.any() {
            return Verdict::Allowed(None);
        }
        let Some(presented) = header.and_then(bearer) else {
            return Verdict::Unauthenticated;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Every digest is compared, whatever matches, in constant time.
        let mut found: Option<(usize, &Token)> = None;
        for (i, token) in self.tokens.iter().enumerate() {
            if constant_time_eq(&digest, &token.digest) {
                found = Some((i, token));
            }
        }
        match found {
            None => Verdict::Unauthenticated,
            Some((i, t)) if scope == Scope::Messages && t.messages => Verdict::Allowed(Some(i)),
            Some((i, t)) if scope == Scope::Admin && t.admin => Verdict::Allowed(Some(i)),
            Some(_) => Verdict::Forbidden(scope),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = header.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

/// Whether `a` and `b` are equal, in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What a refusal says: the scope's name.
pub fn scope_name(scope: Scope) -> &'static str {
    scope.name()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(file: &str, token: Option<&str>) -> Tokens {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, file).unwrap();
        let config = HttpConfig {
            tokens_file: Some(path),
            token: token.map(str::to_owned),
            ..HttpConfig::default()
        };
        Tokens::from_config(&config).unwrap()
    }

    #[test]
    fn tokens_grant_their_scopes_only() {
        let digest: String = Sha256::digest(b"hashed")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let t = tokens(
            &format!("# comment\nplain\nsha256:{digest} admin\nboth messages,admin\n"),
            Some("from-env"),
        );
        let check = |token: &str, scope| t.check(Some(format!("Bearer {token}").as_bytes()), scope);
        assert_eq!(check("plain", Scope::Messages), Verdict::Allowed(Some(0)));
        assert_eq!(
            check("plain", Scope::Admin),
            Verdict::Forbidden(Scope::Admin)
        );
        assert_eq!(check("hashed", Scope::Admin), Verdict::Allowed(Some(1)));
        assert_eq!(
            check("hashed", Scope::Messages),
            Verdict::Forbidden(Scope::Messages)
        );
        assert_eq!(check("both", Scope::Admin), Verdict::Allowed(Some(2)));
        assert_eq!(check("from-env", Scope::Admin), Verdict::Allowed(Some(3)));
        assert_eq!(check("wrong", Scope::Messages), Verdict::Unauthenticated);
        assert_eq!(t.check(None, Scope::Messages), Verdict::Unauthenticated);
        assert_eq!(
            t.check(Some(b"Basic cGxhaW4="), Scope::Messages),
            Verdict::Unauthenticated
        );
        assert_eq!(
            t.check(Some(b"bearer plain"), Scope::Messages),
            Verdict::Allowed(Some(0))
        );
        assert!(!format!("{t:?}").contains("plain"));
    }

    #[test]
    fn bad_lines_name_the_line_not_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        for (text, detail) in [
            ("s3cret everything\n", "unknown scope"),
            ("sha256:abc\n", "64 hexadecimal"),
            ("s3cret admin extra\n", "no more"),
        ] {
            std::fs::write(&path, text).unwrap();
            let config = HttpConfig {
                tokens_file: Some(path.clone()),
                ..HttpConfig::default()
            };
            let e = Tokens::from_config(&config).unwrap_err().to_string();
            assert!(e.contains("line 1") && e.contains(detail), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        assert!(!Tokens::default().any());
        assert_eq!(
            Tokens::default().check(None, Scope::Admin),
            Verdict::Allowed(None)
        );
    }
}
