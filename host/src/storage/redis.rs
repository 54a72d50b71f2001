//! A backend on a [Redis](https://redis.io) server (or one that speaks its
//! protocol, such as Valkey), which several Warden hosts can share.
//!
//! Every backend key is stored as a Redis string under `{prefix}:{key}` (or
//! `{key}` alone when the prefix is empty), so several deployments can share
//! one server or database by using different prefixes. Expiry is Redis's
//! own: a key set with an expiry is stored with `SET ... PX`, and the server
//! removes it when it is due, so [`purge_expired`](Backend::purge_expired)
//! has nothing to do.
//!
//! The connection is multiplexed: every call from every task goes over one
//! connection, without blocking the async runtime. When the connection
//! drops, the call in flight fails and the next calls reconnect.

use std::fmt;
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, RedisError, Value};

use super::{Backend, BackendError, Counted, Entry};

const NAME: &str = "redis";

/// `[storage] backend = "redis"`: a Redis server, which several hosts can
/// share.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "RedisFields")]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server: `redis://[user[:password]@]host[:port][/db]`, or
    /// `rediss://...` for TLS (see [`RedisBackend::connect`]).
    pub url: String,
    /// The prefix of every key Warden writes (default `warden`), so that
    /// several deployments can share a server.
    pub prefix: String,
}

/// The table as written, before the rule that it needs a url.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RedisFields {
    url: Option<String>,
    prefix: String,
}

impl Default for RedisFields {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "warden".into(),
        }
    }
}

impl TryFrom<RedisFields> for RedisConfig {
    type Error = String;

    fn try_from(fields: RedisFields) -> Result<Self, String> {
        let url = fields.url.ok_or_else(|| {
            "[storage] backend = \"redis\" needs url = \"redis://host:port/db\"".to_owned()
        })?;
        Ok(Self {
            url,
            prefix: fields.prefix,
        })
    }
}

impl RedisConfig {
    /// A server at `url`, with the default prefix.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: RedisFields::default().prefix,
        }
    }

    /// Connects to the server (see [`RedisBackend::connect`]).
    pub async fn open(&self) -> Result<RedisBackend, BackendError> {
        RedisBackend::connect(&self.url, &self.prefix).await
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// How long one attempt to reach the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer one command or pipeline.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest delay between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// How many keys one `SCAN` step asks for, and how many commands one
/// pipeline carries.
const BATCH: usize = 1000;
/// The longest expiry passed to Redis, in milliseconds (about 136 years),
/// well inside what `SET ... PX` accepts.
const MAX_TTL_MS: u64 = u32::MAX as u64 * 1000;

/// A Redis server as a Warden store.
///
/// What each operation costs and means:
///
/// - [`get`](Backend::get), [`set`](Backend::set), [`delete`](Backend::delete)
///   and [`has`](Backend::has) are one command each (`GET`, `SET` with `PX`
///   for an expiry, `DEL`, `EXISTS`). Expiry has millisecond precision; a
///   zero expiry deletes the key, since the value would be expired at once.
/// - [`scan`](Backend::scan) collects every key under the prefix with
///   `SCAN ... MATCH` (the prefix glob-escaped), sorts them, and reads the
///   page with `GET` and `PTTL` in one `MULTI`/`EXEC` transaction. Redis
///   keeps no key order, so **each call costs time in proportion to the
///   number of keys in the selected database** (`SCAN` visits them all;
///   `MATCH` only filters) **and memory in proportion to the number of keys
///   under the prefix**, whatever the page size: paging through N keys in
///   pages of L makes N/L such passes. `expires_at` is computed from `PTTL`
///   and the local clock.
/// - [`replace_many`](Backend::replace_many) and
///   [`remove_many`](Backend::remove_many) ask every key's `EXISTS` and
///   `STRLEN` and write (`SET`, `DEL`) in one `MULTI`/`EXEC` transaction,
///   so the lengths they report are those the batch replaced.
/// - [`size`](Backend::size) is the sum of `MEMORY USAGE` over every key
///   under this backend's prefix: the bytes the server spends on this
///   deployment's keys and values, including its per-key overhead. It is
///   not the server's `used_memory` (what Slack Machine reports), which also
///   counts the server's own baseline and every other deployment sharing
///   the server, so it would not grow or shrink with this deployment's
///   data. It costs one `SCAN` pass (as above) and one pipelined
///   `MEMORY USAGE` per key under the prefix, and needs Redis 4 or later.
///   With an empty prefix it covers every key in the selected database.
/// - [`close`](Backend::close) has nothing to flush: a write is complete
///   when the server acknowledges it. How durable it is then is the
///   server's configuration (RDB snapshots, the append-only file).
pub struct RedisBackend {
    conn: ConnectionManager,
    /// `{prefix}:`, or empty.
    key_prefix: Vec<u8>,
    prefix: String,
    /// The URL with any password replaced by `***`.
    server: String,
    /// Strings that must never appear in an error message.
    secrets: Vec<String>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.server)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to the server at `url` and stores every key under
    /// `{prefix}:` (an empty `prefix` stores keys as they are).
    ///
    /// `url` is `redis://[[user]:password@]host[:port][/db]`, or `rediss://`
    /// for TLS. Over TLS the server's certificate and name are always
    /// verified, against the system's trusted certificates (or those in the
    /// file named by `SSL_CERT_FILE`, or the directories in `SSL_CERT_DIR`).
    /// The port defaults to 6379 and the database to 0. A password with
    /// reserved characters (`@`, `:`, `/`, `%`, ...) must be
    /// percent-encoded. Unix sockets work too:
    /// `redis+unix:///path/to/socket?db=0&user=...&pass=...`.
    ///
    /// Fails if the URL is invalid or the server cannot be reached, refuses
    /// the credentials, or does not answer `PING` within a few seconds.
    /// Errors name the server by its URL with the password replaced by
    /// `***`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BackendError> {
        let server = redact(url);
        let mut secrets = url_secrets(url);
        let error =
            |secrets: &[String], message: String| BackendError::new(NAME, scrub(&message, secrets));
        let client = Client::open(url)
            .map_err(|e| error(&secrets, format!("invalid server URL {server}: {e}")))?;
        if let Some(password) = client.get_connection_info().redis_settings().password() {
            secrets.push(password.to_owned());
        }
        secrets.retain(|s| !s.is_empty());
        if url.starts_with("rediss:") || url.starts_with("valkeys:") {
            // rustls needs a process-wide crypto provider. Installing one
            // fails harmlessly when the application has installed its own.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }

        // Check the server, the credentials and the database now, with one
        // attempt, so that a wrong URL fails at start with a clear error
        // rather than on the first plugin call.
        let check = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&check)
            .await
            .map_err(|e| error(&secrets, format!("cannot connect to {server}: {e}")))?;
        redis::cmd("PING")
            .query_async::<()>(&mut probe)
            .await
            .map_err(|e| error(&secrets, format!("PING on {server} failed: {e}")))?;
        drop(probe);

        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(MAX_RECONNECT_DELAY);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| error(&secrets, format!("cannot connect to {server}: {e}")))?;
        let key_prefix = if prefix.is_empty() {
            Vec::new()
        } else {
            format!("{prefix}:").into_bytes()
        };
        Ok(Self {
            conn,
            key_prefix,
            prefix: prefix.to_owned(),
            server,
            secrets,
        })
    }

    /// The server's URL, with any password replaced by `***`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The prefix of every key on the server, without the `:` that follows
    /// it; empty if keys are stored as they are.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key on the server for backend key `key`.
    fn server_key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.key_prefix.len() + key.len());
        out.extend_from_slice(&self.key_prefix);
        out.extend_from_slice(key);
        out
    }

    fn fail(&self, what: &str, e: RedisError) -> BackendError {
        BackendError::new(
            NAME,
            scrub(&format!("{what} on {}: {e}", self.server), &self.secrets),
        )
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| self.fail(what, e))
    }

    async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        what: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn)
            .await
            .map_err(|e| self.fail(what, e))
    }

    /// Adds `EXISTS` and `STRLEN` of every key to `pipe`, for
    /// [`lengths`](Self::lengths): `STRLEN` alone answers 0 for a missing
    /// key and for an empty value alike.
    fn ask_lengths(&self, pipe: &mut redis::Pipeline, keys: &[&[u8]]) {
        for key in keys {
            let key = self.server_key(key);
            pipe.cmd("EXISTS").arg(&key).cmd("STRLEN").arg(&key);
        }
    }

    /// The length of each of `count` keys from the replies to
    /// [`ask_lengths`](Self::ask_lengths), `None` where a key was missing.
    fn lengths(&self, replies: &[u64], count: usize) -> Result<Vec<Option<u64>>, BackendError> {
        if replies.len() != 2 * count {
            return Err(BackendError::new(
                NAME,
                format!("{} answered a transaction incompletely", self.server),
            ));
        }
        Ok(replies
            .chunks(2)
            .map(|pair| (pair[0] > 0).then_some(pair[1]))
            .collect())
    }

    /// Every key on the server that starts with `{prefix}:{key_prefix}`, as
    /// backend keys, sorted bytewise and without duplicates.
    async fn keys_under(&self, key_prefix: &[u8]) -> Result<Vec<Vec<u8>>, BackendError> {
        let mut pattern = glob_escape(&self.server_key(key_prefix));
        pattern.push(b'*');
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH);
            let (next, batch): (u64, Vec<Vec<u8>>) = self.query("SCAN", &cmd).await?;
            keys.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&self.key_prefix[..]).map(<[u8]>::to_vec))
                    .filter(|k| k.starts_with(key_prefix)),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key more than once.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.server_key(key));
        self.query("GET", &cmd).await
    }

    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<(), BackendError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.server_key(key)).arg(value);
        match expires_in.map(ttl_millis) {
            // Expired at once: the key must not keep its old value either.
            Some(0) => return self.delete(key).await,
            Some(ms) => {
                cmd.arg("PX").arg(ms);
            }
            None => {}
        }
        self.query("SET", &cmd).await
    }

    async fn delete(&self, key: &[u8]) -> Result<(), BackendError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.server_key(key));
        self.query::<()>("DEL", &cmd).await
    }

    async fn has(&self, key: &[u8]) -> Result<bool, BackendError> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.server_key(key));
        Ok(self.query::<u64>("EXISTS", &cmd).await? > 0)
    }

    async fn size(&self) -> Result<u64, BackendError> {
        let mut total = 0u64;
        for batch in self.keys_under(b"").await?.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for key in batch {
                pipe.cmd("MEMORY").arg("USAGE").arg(self.server_key(key));
            }
            // A key removed since the SCAN has no usage (nil).
            let usages: Vec<Option<u64>> = self.query_pipe("MEMORY USAGE", &pipe).await?;
            total = usages
                .into_iter()
                .flatten()
                .fold(total, u64::saturating_add);
        }
        Ok(total)
    }

    async fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // MGET reads every key as of one moment.
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.server_key(key));
        }
        self.query("MGET", &cmd).await
    }

    async fn set_many(
        &self,
        entries: &[(&[u8], &[u8])],
        expires_in: Option<Duration>,
    ) -> Result<(), BackendError> {
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
        let ms = match expires_in.map(ttl_millis) {
            Some(0) => return self.delete_many(&keys).await,
            other => other,
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, value) in entries {
            let cmd = pipe.cmd("SET").arg(self.server_key(key)).arg(*value);
            if let Some(ms) = ms {
                cmd.arg("PX").arg(ms);
            }
            cmd.ignore();
        }
        self.query_pipe::<()>("MULTI/SET/EXEC", &pipe).await
    }

    async fn delete_many(&self, keys: &[&[u8]]) -> Result<(), BackendError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("DEL");
        for key in keys {
            cmd.arg(self.server_key(key));
        }
        self.query::<()>("DEL", &cmd).await
    }

    async fn replace_many(
        &self,
        entries: &[(&[u8], &[u8])],
        expires_in: Option<Duration>,
    ) -> Result<Vec<Option<u64>>, BackendError> {
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
        let ms = match expires_in.map(ttl_millis) {
            Some(0) => return self.remove_many(&keys).await,
            other => other,
        };
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // One transaction: the old lengths are those the writes replace.
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.ask_lengths(&mut pipe, &keys);
        for (key, value) in entries {
            let cmd = pipe.cmd("SET").arg(self.server_key(key)).arg(*value);
            if let Some(ms) = ms {
                cmd.arg("PX").arg(ms);
            }
            cmd.ignore();
        }
        let replies: Vec<u64> = self
            .query_pipe("MULTI/EXISTS/STRLEN/SET/EXEC", &pipe)
            .await?;
        self.lengths(&replies, keys.len())
    }

    async fn remove_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.ask_lengths(&mut pipe, keys);
        let del = pipe.cmd("DEL");
        for key in keys {
            del.arg(self.server_key(key));
        }
        del.ignore();
        let replies: Vec<u64> = self
            .query_pipe("MULTI/EXISTS/STRLEN/DEL/EXEC", &pipe)
            .await?;
        self.lengths(&replies, keys.len())
    }

    async fn increment(&self, key: &[u8], delta: i64) -> Result<Counted, BackendError> {
        let mut cmd = redis::cmd("INCRBY");
        cmd.arg(self.server_key(key)).arg(delta);
        let mut conn = self.conn.clone();
        match cmd.query_async::<i64>(&mut conn).await {
            Ok(value) => Ok(Counted::Value(value)),
            // INCRBY refuses, changing nothing, when the value is not an
            // integer or the result would overflow; which one, the value
            // tells.
            Err(e) if e.code() == Some("ERR") => {
                let current = self.get(key).await?;
                let counter = current.as_deref().and_then(super::parse_counter);
                Ok(match counter {
                    Some(n) if n.checked_add(delta).is_none() => Counted::Overflow,
                    _ => Counted::NotACounter,
                })
            }
            Err(e) => Err(self.fail("INCRBY", e)),
        }
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, BackendError> {
        // Runs on the server as one step: nothing else sees the key between
        // the comparison and the write.
        const SCRIPT: &str = r"
            local current = redis.call('GET', KEYS[1])
            local expected_present = ARGV[1] == '1'
            if expected_present then
                if current ~= ARGV[2] then return 0 end
            elseif current then
                return 0
            end
            if ARGV[3] == '1' then
                redis.call('SET', KEYS[1], ARGV[4])
            else
                redis.call('DEL', KEYS[1])
            end
            return 1
        ";
        let script = redis::Script::new(SCRIPT);
        let mut invocation = script.key(self.server_key(key));
        invocation
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" })
            .arg(new.unwrap_or_default());
        let mut conn = self.conn.clone();
        let swapped: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail("compare-and-swap", e))?;
        Ok(swapped == 1)
    }

    async fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = self.keys_under(prefix).await?;
        let start = after.map_or(0, |after| keys.partition_point(|k| k.as_slice() <= after));
        let mut candidates = keys[start..].iter();
        let mut out = Vec::new();
        // Keys that expire or are deleted between the SCAN and the reads
        // are skipped, and more candidates are read in their place.
        while out.len() < limit {
            let batch: Vec<&Vec<u8>> = candidates
                .by_ref()
                .take((limit - out.len()).min(BATCH))
                .collect();
            if batch.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            for key in &batch {
                let key = self.server_key(key);
                pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
            }
            let replies: Vec<Value> = self.query_pipe("GET and PTTL", &pipe).await?;
            let now = SystemTime::now();
            for (key, pair) in batch.into_iter().zip(replies.chunks(2)) {
                let [value, ttl] = pair else {
                    return Err(BackendError::new(
                        NAME,
                        format!("{} answered a transaction incompletely", self.server),
                    ));
                };
                let parse_error = |e: redis::ParsingError| {
                    BackendError::new(NAME, format!("unexpected reply from {}: {e}", self.server))
                };
                let Some(value) =
                    redis::from_redis_value_ref::<Option<Vec<u8>>>(value).map_err(parse_error)?
                else {
                    continue;
                };
                let ttl = redis::from_redis_value_ref::<i64>(ttl).map_err(parse_error)?;
                let expires_at = u64::try_from(ttl)
                    .ok()
                    .and_then(|ms| now.checked_add(Duration::from_millis(ms)));
                out.push(Entry {
                    key: key.clone(),
                    value,
                    expires_at,
                });
            }
        }
        Ok(out)
    }

    async fn close(&self) -> Result<(), BackendError> {
        // Every write is complete once the server has acknowledged it; the
        // connection closes when the backend is dropped.
        Ok(())
    }
}

/// An expiry in whole milliseconds for `PX`: a nonzero expiry shorter than
/// a millisecond is rounded up, so only a zero expiry means "expired now".
fn ttl_millis(expires_in: Duration) -> u64 {
    u64::try_from(expires_in.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .min(MAX_TTL_MS)
}

/// `bytes` as a literal in a Redis glob pattern (`SCAN ... MATCH`): every
/// character the glob treats specially is escaped with `\`.
fn glob_escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The start of the user information in `url` (after `scheme://`), and the
/// position of the `@` that ends it, if there is one.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://").map_or(0, |i| i + 3);
    // The last `@`: a password with an unencoded `@` is hidden whole, at
    // worst with more of the URL.
    let at = start + url[start..].rfind('@')?;
    Some((start, at))
}

/// Query parameters whose values are secrets (unix socket URLs carry the
/// password as `pass=`).
const SECRET_PARAMS: [&str; 2] = ["pass", "password"];

/// `url` with its password, and any `pass=` or `password=` query value,
/// replaced by `***`. Works on any text, so that even an unparseable URL is
/// shown without its secrets.
fn redact(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some((start, at)) = userinfo(url)
        && let Some(colon) = url[start..at].find(':')
    {
        shown.replace_range(start + colon + 1..at, "***");
    }
    let Some(q) = shown.find('?') else {
        return shown;
    };
    let (base, query) = shown.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.contains(&name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}{}{fragment}", query.join("&"))
}

/// The secrets in `url` as written: the password and secret query values.
fn url_secrets(url: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some((start, at)) = userinfo(url)
        && let Some((_, password)) = url[start..at].split_once(':')
    {
        secrets.push(password.to_owned());
    }
    if let Some((_, query)) = url.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=')
                && SECRET_PARAMS.contains(&name)
            {
                secrets.push(value.to_owned());
            }
        }
    }
    secrets
}

/// `message` with every occurrence of every secret replaced by `***`.
fn scrub(message: &str, secrets: &[String]) -> String {
    let mut message = message.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        message = message.replace(secret.as_str(), "***");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("redis://alice:s3cret@db.example:6380/2"),
            "redis://alice:***@db.example:6380/2"
        );
        assert_eq!(redact("rediss://:pw@host"), "rediss://:***@host");
        assert_eq!(redact("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(redact("redis://alice@host"), "redis://alice@host");
        // An unencoded `@` in the password, and a URL that does not parse.
        assert_eq!(redact("redis://u:p@ss@host/1"), "redis://u:***@host/1");
        assert_eq!(redact("u:pw@host"), "u:***@host");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=pw&user=u#x"),
            "redis+unix:///run/redis.sock?db=1&pass=***&user=u#x"
        );
        assert_eq!(
            url_secrets("redis+unix:///s?pass=pw1&db=0"),
            ["pw1".to_owned()]
        );
        assert_eq!(url_secrets("redis://u:p%40w@host"), ["p%40w".to_owned()]);
        assert_eq!(
            scrub("bad p@w and p%40w", &["p@w".into(), "p%40w".into()]),
            "bad *** and ***"
        );
    }

    #[tokio::test]
    async fn an_invalid_url_is_refused_without_its_password() {
        for url in ["http://u:hunter2@host", "redis://u:hunter2@host/notadb"] {
            let e = RedisBackend::connect(url, "p")
                .await
                .unwrap_err()
                .to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("u:***@host"), "{e}");
        }
    }

    #[test]
    fn glob_characters_are_literal() {
        assert_eq!(
            glob_escape(b"a*b?c[d]e\\f^g-h"),
            b"a\\*b\\?c\\[d\\]e\\\\f^g-h"
        );
        assert_eq!(glob_escape("ключ".as_bytes()), "ключ".as_bytes());
    }

    #[test]
    fn expiries_round_up_to_milliseconds() {
        assert_eq!(ttl_millis(Duration::ZERO), 0);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_millis(300)), 300);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MS);
    }
}
