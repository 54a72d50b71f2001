//! A backend on a [Redis](https://redis.io) server (or one that speaks its
//! protocol, such as Valkey), which several Warden hosts can share.
//!
//! Every key lives under `{prefix}:` (or nothing, when the prefix is
//! empty), so several deployments can share one server or database by
//! using different prefixes. Each namespace keeps an index of its keys and
//! a count of its bytes beside its values, updated in the same Lua script
//! as each write, so that listing, sizes and quota recounts never walk the
//! database: see [`RedisBackend`] for the layout and what each operation
//! costs. Expiry is Redis's own (`SET ... PX`).

use std::fmt;
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, Value};

use super::keys::{Area, Keys};
use super::{Backend, BackendError, Bounded, Counted, Entry, Quota};

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
        if fields.prefix.contains(['{', '}']) {
            return Err(format!(
                "[storage] prefix = {:?} holds a brace; braces mark Redis hash tags",
                fields.prefix
            ));
        }
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

/// `[storage] backend = "redis-cluster"`: a Redis Cluster, reached through
/// any of its nodes.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "RedisClusterFields")]
#[non_exhaustive]
pub struct RedisClusterConfig {
    /// Seed nodes: `redis://[user[:password]@]host:port` or `rediss://...`,
    /// one or more; the client learns the others from them.
    pub urls: Vec<String>,
    /// The prefix of every key Warden writes (default `warden`).
    pub prefix: String,
}

/// Seed nodes as a list, or as one string of URLs separated by commas (as
/// an environment variable gives them).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Urls {
    List(Vec<String>),
    Text(String),
}

/// The table as written, before its rules.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RedisClusterFields {
    urls: Option<Urls>,
    prefix: String,
}

impl Default for RedisClusterFields {
    fn default() -> Self {
        Self {
            urls: None,
            prefix: "warden".into(),
        }
    }
}

impl TryFrom<RedisClusterFields> for RedisClusterConfig {
    type Error = String;

    fn try_from(fields: RedisClusterFields) -> Result<Self, String> {
        let urls: Vec<String> = match fields.urls {
            Some(Urls::List(urls)) => urls,
            Some(Urls::Text(text)) => text
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect(),
            None => Vec::new(),
        };
        if urls.is_empty() {
            return Err("[storage] backend = \"redis-cluster\" needs urls = \
                        [\"redis://host:port\", ...], one node or more"
                .to_owned());
        }
        if fields.prefix.contains(['{', '}']) {
            return Err(format!(
                "[storage] prefix = {:?} holds a brace; braces mark Redis hash tags",
                fields.prefix
            ));
        }
        Ok(Self {
            urls,
            prefix: fields.prefix,
        })
    }
}

impl RedisClusterConfig {
    /// A cluster reached through `urls`, with the default prefix.
    pub fn new(urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            prefix: RedisClusterFields::default().prefix,
        }
    }

    /// Connects to the cluster (see [`RedisBackend::connect_cluster`]).
    pub async fn open(&self) -> Result<RedisBackend, BackendError> {
        RedisBackend::connect_cluster(&self.urls, &self.prefix).await
    }
}

impl fmt::Debug for RedisClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may hold a password.
        let urls: Vec<String> = self.urls.iter().map(|u| redact(u)).collect();
        f.debug_struct("RedisClusterConfig")
            .field("urls", &urls)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// How far the move of a database of the first layout has got, as
/// [`RedisBackend::connect_reporting`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Moving {
    /// The move starts; the database holds `keys` keys in all (Warden's
    /// among them), so at most that many will move.
    Started {
        /// `DBSIZE`.
        keys: u64,
    },
    /// `moved` keys have moved so far.
    Moved {
        /// How many.
        moved: u64,
    },
    /// Every key has moved, `moved` in all.
    Done {
        /// How many.
        moved: u64,
    },
}

/// The connection: to one server, or to a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How long one attempt to reach the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to answer one command or pipeline.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest delay between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// How many keys one `SCAN` step asks for (migration only), and how many
/// entries one read of an index asks for.
const BATCH: usize = 1000;
/// The longest expiry passed to Redis, in milliseconds (about 136 years),
/// well inside what `SET ... PX` accepts.
const MAX_TTL_MS: u64 = u32::MAX as u64 * 1000;
/// The layout this backend reads and writes, recorded under `#layout`.
const LAYOUT: &str = "2";
/// Expired keys one sweep step removes from one area's index.
const SWEEP_STEP: usize = 100;

/// The Lua functions every writing script shares. `forget` removes a key's
/// entry from its area's index and counter, live or expired, and returns
/// the length of its live value (-1 if none); `put` writes a value and
/// indexes and counts it.
const LUA_LIB: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function forget(vk, ik, bk, ek, lk, member)
  local old = -1
  if redis.call('EXISTS', vk) == 1 then
    old = redis.call('STRLEN', vk)
    redis.call('DECRBY', bk, string.len(member) + old)
  elseif redis.call('ZSCORE', ik, member) then
    local counted = redis.call('HGET', lk, member)
    if counted then redis.call('DECRBY', bk, counted) end
  end
  redis.call('ZREM', ik, member)
  redis.call('ZREM', ek, member)
  redis.call('HDEL', lk, member)
  return old
end
local function sweep(ik, bk, ek, lk, values, step)
  local due = redis.call('ZRANGEBYSCORE', ek, '-inf', now_ms(), 'LIMIT', 0, step)
  local removed = 0
  for _, member in ipairs(due) do
    if redis.call('EXISTS', values .. member) == 0 then
      local counted = redis.call('HGET', lk, member)
      if counted then redis.call('DECRBY', bk, counted) end
      redis.call('ZREM', ik, member)
      redis.call('ZREM', ek, member)
      redis.call('HDEL', lk, member)
      removed = removed + 1
    end
  end
  return removed
end
local function count(bk)
  return tonumber(redis.call('GET', bk) or '0')
end
-- Whether a write growing the area by `growth()` bytes takes it past `max`,
-- after a sweep of its expired keys, which may free what it needs.
local function over(ik, bk, ek, lk, values, max, growth)
  local g = growth()
  if g <= 0 or count(bk) + g <= max then return false end
  sweep(ik, bk, ek, lk, values, 100)
  g = growth()
  return g > 0 and count(bk) + g > max, count(bk) + g
end
local function put(vk, ik, bk, ek, lk, member, value, ttl, now)
  local bytes = string.len(member) + string.len(value)
  if ttl > 0 then
    redis.call('SET', vk, value, 'PX', ttl)
    redis.call('ZADD', ek, now + ttl, member)
    redis.call('HSET', lk, member, bytes)
  else
    redis.call('SET', vk, value)
  end
  redis.call('ZADD', ik, 0, member)
  redis.call('INCRBY', bk, bytes)
end
";

/// `replace_many` of keys of one area: KEYS = five keys an entry (value,
/// index, counter, expiries, lengths); ARGV = the expiry in ms (0: none),
/// then member and value an entry. Returns each entry's old length.
const LUA_REPLACE: &str = r"
local ttl = tonumber(ARGV[1])
local now = now_ms()
local out = {}
for i = 1, #KEYS / 5 do
  local k = 5 * (i - 1)
  local member = ARGV[2 * i]
  out[i] = forget(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], member)
  put(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], member, ARGV[2 * i + 1], ttl, now)
end
return out
";

/// `remove_many` of keys of one area: five KEYS and one member (ARGV) an
/// entry. Returns each entry's old length.
const LUA_REMOVE: &str = r"
local out = {}
for i = 1, #ARGV do
  local k = 5 * (i - 1)
  out[i] = forget(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], ARGV[i])
  redis.call('DEL', KEYS[k + 1])
end
return out
";

/// `increment`: KEYS = the entry's five; ARGV = member, delta. Returns
/// {1, the new value} or {0} when INCRBY refused (nothing changed). The
/// value's expiry is kept.
const LUA_INCREMENT: &str = r"
local vk, ik, bk, ek, lk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member = ARGV[1]
local live = redis.call('EXISTS', vk) == 1
local before = 0
if live then
  before = string.len(member) + redis.call('STRLEN', vk)
else
  forget(vk, ik, bk, ek, lk, member)
end
local res = redis.pcall('INCRBY', vk, ARGV[2])
if type(res) == 'table' and res.err then return {0} end
local after = string.len(member) + redis.call('STRLEN', vk)
redis.call('INCRBY', bk, after - before)
redis.call('ZADD', ik, 0, member)
if live and redis.call('PTTL', vk) > 0 then redis.call('HSET', lk, member, after) end
return {1, redis.call('GET', vk)}
";

/// `compare_and_swap`: KEYS = the entry's five; ARGV = member, expected
/// present ('1'/'0'), expected, new present, new.
const LUA_SWAP: &str = r"
local vk, ik, bk, ek, lk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member = ARGV[1]
local current = redis.call('GET', vk)
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return 0 end
elseif current then
  return 0
end
forget(vk, ik, bk, ek, lk, member)
if ARGV[4] == '1' then
  put(vk, ik, bk, ek, lk, member, ARGV[5], 0, 0)
else
  redis.call('DEL', vk)
end
return 1
";

/// One sweep step of an area: KEYS = index, counter, expiries, lengths;
/// ARGV = the area's value-key prefix, the step. Removes up to a step of
/// the keys due from the index and the counter; returns how many.
const LUA_SWEEP: &str = r"
return sweep(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], tonumber(ARGV[2]))
";

/// `replace_many_bounded`, all in one area: KEYS = the area's index,
/// counter, expiries, lengths, then each entry's value key; ARGV = expiry
/// in ms, the quota, the area's value prefix, then member and value an
/// entry. Returns {0, would} when refused (nothing changed), else {1, bytes
/// after, each entry's old length...}.
const LUA_REPLACE_BOUNDED: &str = r"
local ik, bk, ek, lk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ttl, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = #KEYS - 4
local function growth()
  local g = 0
  for i = 1, n do
    local vk, member, value = KEYS[4 + i], ARGV[2 + 2 * i], ARGV[3 + 2 * i]
    g = g + string.len(member) + string.len(value)
    if redis.call('EXISTS', vk) == 1 then
      g = g - string.len(member) - redis.call('STRLEN', vk)
    elseif redis.call('ZSCORE', ik, member) then
      local counted = redis.call('HGET', lk, member)
      if counted then g = g - tonumber(counted) end
    end
  end
  return g
end
local refused, would = over(ik, bk, ek, lk, ARGV[3], max, growth)
if refused then return {0, would} end
local now = now_ms()
local out = {1, 0}
for i = 1, n do
  local vk, member = KEYS[4 + i], ARGV[2 + 2 * i]
  out[2 + i] = forget(vk, ik, bk, ek, lk, member)
  put(vk, ik, bk, ek, lk, member, ARGV[3 + 2 * i], ttl, now)
end
out[2] = count(bk)
return out
";

/// `increment_bounded`: KEYS = the entry's five; ARGV = member, delta, the
/// quota, the area's value prefix. Returns {0} when INCRBY refused, {2,
/// would} when the quota did (nothing changed either way), else {1, the new
/// value, bytes after}.
const LUA_INCREMENT_BOUNDED: &str = r"
local vk, ik, bk, ek, lk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member = ARGV[1]
local live = redis.call('EXISTS', vk) == 1
local before, old = 0, false
if live then
  old = redis.call('GET', vk)
  before = string.len(member) + string.len(old)
else
  forget(vk, ik, bk, ek, lk, member)
end
local res = redis.pcall('INCRBY', vk, ARGV[2])
if type(res) == 'table' and res.err then return {0} end
local after = string.len(member) + redis.call('STRLEN', vk)
local refused, would = over(ik, bk, ek, lk, ARGV[4], tonumber(ARGV[3]),
  function() return after - before end)
if refused then
  if live then redis.call('SET', vk, old, 'KEEPTTL') else redis.call('DEL', vk) end
  return {2, would}
end
redis.call('INCRBY', bk, after - before)
redis.call('ZADD', ik, 0, member)
if live and redis.call('PTTL', vk) > 0 then redis.call('HSET', lk, member, after) end
return {1, redis.call('GET', vk), count(bk)}
";

/// `compare_and_swap_bounded`: KEYS = the entry's five; ARGV = member,
/// expected present, expected, new present, new, the quota, the area's
/// value prefix. Returns {0} when the value differs, {2, would} when the
/// quota refused, else {1, bytes after}.
const LUA_SWAP_BOUNDED: &str = r"
local vk, ik, bk, ek, lk = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local member = ARGV[1]
local current = redis.call('GET', vk)
if ARGV[2] == '1' then
  if current ~= ARGV[3] then return {0} end
elseif current then
  return {0}
end
local function growth()
  local g = 0
  if ARGV[4] == '1' then g = string.len(member) + string.len(ARGV[5]) end
  if redis.call('EXISTS', vk) == 1 then
    g = g - string.len(member) - redis.call('STRLEN', vk)
  end
  return g
end
local refused, would = over(ik, bk, ek, lk, ARGV[7], tonumber(ARGV[6]), growth)
if refused then return {2, would} end
forget(vk, ik, bk, ek, lk, member)
if ARGV[4] == '1' then
  put(vk, ik, bk, ek, lk, member, ARGV[5], 0, 0)
else
  redis.call('DEL', vk)
end
return {1, count(bk)}
";

/// Moves one key of the first layout (`{prefix}:{backend key}`) to its
/// place, indexed and counted: KEYS = the old key, then the entry's five;
/// ARGV = member. A key written meanwhile in the new layout wins. Returns 1
/// if it moved the key.
const LUA_MIGRATE: &str = r"
local old = KEYS[1]
local vk, ik, bk, ek, lk = KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local member = ARGV[1]
if redis.call('TYPE', old).ok ~= 'string' then return 0 end
if redis.call('EXISTS', vk) == 1 then
  redis.call('DEL', old)
  return 0
end
forget(vk, ik, bk, ek, lk, member)
local ttl = redis.call('PTTL', old)
redis.call('RENAME', old, vk)
local bytes = string.len(member) + redis.call('STRLEN', vk)
redis.call('ZADD', ik, 0, member)
redis.call('INCRBY', bk, bytes)
if ttl > 0 then
  redis.call('ZADD', ek, now_ms() + ttl, member)
  redis.call('HSET', lk, member, bytes)
end
return 1
";

/// The server keys of one area (see the module docs).
#[derive(Debug, Clone)]
struct AreaKeys {
    /// The area's label, as the registry lists it.
    tag: String,
    /// `{prefix}:{tag}:`: every value key of the area starts with it.
    values: Vec<u8>,
    index: Vec<u8>,
    bytes: Vec<u8>,
    expiry: Vec<u8>,
    lengths: Vec<u8>,
    /// The backend keys of the area.
    keys: Keys,
}

impl AreaKeys {
    fn new(key_prefix: &[u8], area: Area) -> Self {
        let tag = area.label();
        let base = [key_prefix, b"{", tag.as_bytes(), b"}"].concat();
        let with = |suffix: &[u8]| [&base[..], suffix].concat();
        Self {
            values: with(b":"),
            index: with(b"#i"),
            bytes: with(b"#b"),
            expiry: with(b"#e"),
            lengths: with(b"#l"),
            keys: Keys::of(area),
            tag,
        }
    }

    fn value(&self, member: &[u8]) -> Vec<u8> {
        [&self.values[..], member].concat()
    }

    /// Adds the five keys of `member`'s entry to `invocation`, in the
    /// order the scripts read them.
    fn add_keys(&self, invocation: &mut redis::ScriptInvocation<'_>, member: &[u8]) {
        invocation
            .key(self.value(member))
            .key(&self.index)
            .key(&self.bytes)
            .key(&self.expiry)
            .key(&self.lengths);
    }
}

/// A Redis server as a Warden store.
///
/// # Layout
///
/// Each area of the store (a plugin's namespace, the shared keyspace,
/// Warden's own records; see [`super::keys`]) has its tag `T`, its label
/// (`plugin:ID`, `shared`, `warden`, or `raw` for other keys), and these
/// keys on the server, all under the backend's prefix `P` (`P:` is left
/// out when the prefix is empty):
///
/// | key | type | holds |
/// |---|---|---|
/// | `P:{T}:KEY` | string | the value of `KEY` |
/// | `P:{T}#i` | sorted set | every key of the area, score 0, for listing in order |
/// | `P:{T}#b` | string | the bytes of the area's keys and values, for its quota |
/// | `P:{T}#e` | sorted set | the keys that expire, by when |
/// | `P:{T}#l` | hash | the bytes each key that expires is counted for |
/// | `P:#areas` | set | every area's tag |
/// | `P:#layout` | string | the layout's version |
///
/// The braces make `T` the Redis Cluster hash tag of every key of an
/// area. Every write changes the value, the index and the counter in one
/// Lua script, so they never disagree.
///
/// # Costs
///
/// None grows with the number of keys in the database:
///
/// - `get`, `has`, `get_many` are one command (`GET`, `EXISTS`, `MGET`);
///   `set`, `delete`, the batches, `increment` and `compare_and_swap` one
///   script each, O(log n) in the keys of the area.
/// - [`scan`](Backend::scan) of a namespace reads its index with
///   `ZRANGEBYLEX` (O(log n + page)), then the page's values and expiries.
///   A scan of every area (the operator's `warden storage ls`, `export`)
///   reads the registry first.
/// - [`counted_bytes`](Backend::counted_bytes) of a namespace is one `GET`,
///   so quota recounts never scan; [`size`](Backend::size) is one `MGET` of
///   every area's counter: the bytes of keys and values this deployment
///   keeps, not the server's memory.
/// - Redis expires values itself. An expired key leaves its index and
///   counter when next written, and otherwise within one
///   [`purge_expired`](Backend::purge_expired) (every 5 s) per 100 due keys
///   of its area: each call removes at most 100 a area.
///
/// A database of the first layout (`P:KEY` strings, no index) is moved to
/// this one when the backend first connects to it: every key of a
/// namespace or of Warden's records is renamed, indexed and counted, one
/// script a key, with a log line every 10,000 keys (other keys under the
/// prefix are left where they are: they may be another application's). The
/// layout is recorded only once every key has moved, so an interrupted move
/// resumes at the next start; several hosts may move it at once. This one
/// `SCAN` of the database is the only one the backend ever makes.
///
/// The connection is multiplexed: every call from every task goes over one
/// connection, without blocking the async runtime. When the connection
/// drops, the call in flight fails and the next calls reconnect.
/// [`close`](Backend::close) has nothing to flush: a write is complete
/// when the server acknowledges it.
pub struct RedisBackend {
    conn: Conn,
    /// `{prefix}:`, or empty.
    key_prefix: Vec<u8>,
    prefix: String,
    /// The URL with any password replaced by `***`.
    server: String,
    /// Strings that must never appear in an error message.
    secrets: Vec<String>,
    registry: Vec<u8>,
    /// The areas this process has listed in the registry.
    registered: std::sync::Mutex<std::collections::HashSet<String>>,
    scripts: Scripts,
}

/// The scripts, each loaded once (by its digest) and run with `EVALSHA`.
struct Scripts {
    replace: redis::Script,
    remove: redis::Script,
    increment: redis::Script,
    swap: redis::Script,
    sweep: redis::Script,
    migrate: redis::Script,
    replace_bounded: redis::Script,
    increment_bounded: redis::Script,
    swap_bounded: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        let with_lib = |body: &str| redis::Script::new(&format!("{LUA_LIB}{body}"));
        Self {
            replace: with_lib(LUA_REPLACE),
            remove: with_lib(LUA_REMOVE),
            increment: with_lib(LUA_INCREMENT),
            swap: with_lib(LUA_SWAP),
            sweep: with_lib(LUA_SWEEP),
            migrate: with_lib(LUA_MIGRATE),
            replace_bounded: with_lib(LUA_REPLACE_BOUNDED),
            increment_bounded: with_lib(LUA_INCREMENT_BOUNDED),
            swap_bounded: with_lib(LUA_SWAP_BOUNDED),
        }
    }
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
    /// `{prefix}:` (an empty `prefix` stores keys as they are), moving a
    /// database of the first layout to the indexed one first (see the
    /// type's documentation).
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
    /// Fails if the prefix holds `{` or `}` (they would change the keys'
    /// hash tags), if the URL is invalid or the server cannot be reached,
    /// refuses the credentials, or does not answer `PING` within a few
    /// seconds. Errors name the server by its URL with the password
    /// replaced by `***`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BackendError> {
        Self::connect_reporting(url, prefix, &|_| {}).await
    }

    /// [`connect`](Self::connect), reporting the progress of a move of the
    /// database from the first layout, if one is needed, to `report`
    /// (`warden` draws a bar with it).
    pub async fn connect_reporting(
        url: &str,
        prefix: &str,
        report: &(dyn Fn(Moving) + Sync),
    ) -> Result<Self, BackendError> {
        let server = redact(url);
        let mut secrets = url_secrets(url);
        let error =
            |secrets: &[String], message: String| BackendError::new(NAME, scrub(&message, secrets));
        if prefix.contains(['{', '}']) {
            return Err(BackendError::new(
                NAME,
                format!("the key prefix {prefix:?} holds a brace; braces mark Redis hash tags"),
            ));
        }
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
        let backend = Self::with(Conn::Single(conn), prefix, server, secrets);
        backend.migrate(report).await?;
        Ok(backend)
    }

    /// Connects to the Redis Cluster whose nodes include those at `urls`
    /// (`redis://[[user]:password@]host:port` or `rediss://...`; every
    /// node takes the same credentials), and stores every key under
    /// `{prefix}:`. Each namespace's keys carry its hash tag, so they live
    /// in one slot and every write stays one atomic script; nothing is
    /// atomic across namespaces. A database of the first layout is not
    /// looked for: that layout never ran on a cluster.
    ///
    /// Fails as [`connect`](Self::connect) does, and if the cluster's
    /// slots cannot be read from any seed node.
    pub async fn connect_cluster(urls: &[String], prefix: &str) -> Result<Self, BackendError> {
        let server = urls
            .iter()
            .map(|u| redact(u))
            .collect::<Vec<_>>()
            .join(", ");
        let mut secrets: Vec<String> = urls.iter().flat_map(|u| url_secrets(u)).collect();
        secrets.retain(|s| !s.is_empty());
        let error =
            |secrets: &[String], message: String| BackendError::new(NAME, scrub(&message, secrets));
        if prefix.contains(['{', '}']) {
            return Err(BackendError::new(
                NAME,
                format!("the key prefix {prefix:?} holds a brace; braces mark Redis hash tags"),
            ));
        }
        if urls.is_empty() {
            return Err(BackendError::new(
                NAME,
                "a cluster needs one seed node or more",
            ));
        }
        if urls
            .iter()
            .any(|u| u.starts_with("rediss:") || u.starts_with("valkeys:"))
        {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .map_err(|e| error(&secrets, format!("invalid cluster URLs {server}: {e}")))?;
        let conn = client.get_async_connection().await.map_err(|e| {
            error(
                &secrets,
                format!("cannot connect to the cluster {server}: {e}"),
            )
        })?;
        let backend = Self::with(Conn::Cluster(conn), prefix, server, secrets);
        let mut ping = redis::cmd("PING");
        ping.arg("warden");
        backend.query::<String>("PING", &ping).await?;
        backend.record_layout().await?;
        Ok(backend)
    }

    fn with(conn: Conn, prefix: &str, server: String, secrets: Vec<String>) -> Self {
        let key_prefix = if prefix.is_empty() {
            Vec::new()
        } else {
            format!("{prefix}:").into_bytes()
        };
        Self {
            conn,
            registry: [&key_prefix[..], b"#areas"].concat(),
            key_prefix,
            prefix: prefix.to_owned(),
            server,
            secrets,
            registered: std::sync::Mutex::default(),
            scripts: Scripts::new(),
        }
    }

    /// Records this layout where none is, and refuses another.
    async fn record_layout(&self) -> Result<(), BackendError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.layout_key());
        let layout: Option<String> = self.query("GET", &cmd).await?;
        match layout.as_deref() {
            None => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(self.layout_key()).arg(LAYOUT);
                self.query::<()>("SET", &cmd).await
            }
            Some(LAYOUT) => Ok(()),
            Some(other) => Err(self.other_layout(other)),
        }
    }

    fn other_layout(&self, other: &str) -> BackendError {
        BackendError::new(
            NAME,
            format!(
                "{} holds Warden data of layout {other:?} under the prefix {:?}; this Warden \
                 reads layout {LAYOUT}: upgrade it",
                self.server, self.prefix
            ),
        )
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

    fn layout_key(&self) -> Vec<u8> {
        [&self.key_prefix[..], b"#layout"].concat()
    }

    /// The server keys of the area of backend key `key`, and the key within
    /// it.
    fn locate<'k>(&self, key: &'k [u8]) -> (AreaKeys, &'k [u8]) {
        let (area, member) = Area::of(key);
        (AreaKeys::new(&self.key_prefix, area), member)
    }

    fn fail(&self, what: &str, e: RedisError) -> BackendError {
        BackendError::new(
            NAME,
            scrub(&format!("{what} on {}: {e}", self.server), &self.secrets),
        )
    }

    fn unexpected(&self, e: impl fmt::Display) -> BackendError {
        BackendError::new(NAME, format!("unexpected reply from {}: {e}", self.server))
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

    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.fail(what, e))
    }

    /// Lists `area` in the registry, once a process: the registry is what
    /// [`size`](Backend::size), the sweep and the operator's listings go
    /// through. It is written before the area's first key, in a command of
    /// its own (on a cluster it lives in another slot).
    async fn register(&self, area: &AreaKeys) -> Result<(), BackendError> {
        let known = |registered: &std::collections::HashSet<String>| registered.contains(&area.tag);
        if known(&self.registered.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        let mut cmd = redis::cmd("SADD");
        cmd.arg(&self.registry).arg(&area.tag);
        self.query::<()>("SADD", &cmd).await?;
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(area.tag.clone());
        Ok(())
    }

    /// Every area's tag, as the registry lists them.
    async fn areas(&self) -> Result<Vec<Area>, BackendError> {
        let mut cmd = redis::cmd("SMEMBERS");
        cmd.arg(&self.registry);
        let tags: Vec<String> = self.query("SMEMBERS", &cmd).await?;
        Ok(tags.iter().filter_map(|t| t.parse().ok()).collect())
    }

    /// Moves a database of the first layout to this one, once.
    async fn migrate(&self, report: &(dyn Fn(Moving) + Sync)) -> Result<(), BackendError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.layout_key());
        let layout: Option<String> = self.query("GET", &cmd).await?;
        match layout.as_deref() {
            Some(LAYOUT) => return Ok(()),
            Some(other) => return Err(self.other_layout(other)),
            None => {}
        }
        let mut pattern = glob_escape(&self.key_prefix);
        pattern.push(b'*');
        let new_value = [&self.key_prefix[..], b"{"].concat();
        let new_meta = [&self.key_prefix[..], b"#"].concat();
        let (mut moved, mut announced) = (0u64, false);
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH);
            let (next, batch): (u64, Vec<Vec<u8>>) = self.query("SCAN", &cmd).await?;
            for old in batch {
                if old.starts_with(&new_value) || old.starts_with(&new_meta) {
                    continue;
                }
                let Some(key) = old.strip_prefix(&self.key_prefix[..]) else {
                    continue;
                };
                // Only what Warden wrote moves: a key that is no
                // namespace's nor one of Warden's records may be another
                // application's (with an empty prefix, every key of the
                // database is looked at).
                if matches!(Area::of(key).0, Area::Foreign) {
                    continue;
                }
                if !announced {
                    tracing::info!(server = %self.server, prefix = %self.prefix,
                        "moving the Redis store to the indexed layout; this runs once");
                    let keys: u64 = self.query("DBSIZE", &redis::cmd("DBSIZE")).await?;
                    report(Moving::Started { keys });
                    announced = true;
                }
                let (area, member) = self.locate(key);
                self.register(&area).await?;
                let mut invocation = self.scripts.migrate.prepare_invoke();
                invocation.key(&old);
                area.add_keys(&mut invocation, member);
                invocation.arg(member);
                let before = moved;
                moved += self.run::<u64>("moving a key", &invocation).await?;
                if moved > before && moved.is_multiple_of(1_000) {
                    report(Moving::Moved { moved });
                    if moved.is_multiple_of(10_000) {
                        tracing::info!(moved, "moving the Redis store to the indexed layout");
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.layout_key()).arg(LAYOUT);
        self.query::<()>("SET", &cmd).await?;
        if announced {
            report(Moving::Done { moved });
            tracing::info!(moved, server = %self.server, "the Redis store is indexed");
        }
        Ok(())
    }

    /// Up to `limit` live entries of `area` whose key within it starts with
    /// `member_prefix` and sorts after `after` (a key within it), in order.
    async fn scan_area(
        &self,
        area: &AreaKeys,
        member_prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, BackendError> {
        let mut min = match after {
            Some(after) if after >= member_prefix => [b"(", after].concat(),
            _ => [b"[", member_prefix].concat(),
        };
        let max = match successor(member_prefix) {
            Some(next) => [b"(", &next[..]].concat(),
            None => b"+".to_vec(),
        };
        let mut out = Vec::new();
        // Keys expired but not yet swept from the index are skipped, and
        // more of the index is read in their place.
        while out.len() < limit {
            let want = (limit - out.len()).min(BATCH);
            let mut cmd = redis::cmd("ZRANGEBYLEX");
            cmd.arg(&area.index)
                .arg(&min)
                .arg(&max)
                .arg("LIMIT")
                .arg(0)
                .arg(want);
            let members: Vec<Vec<u8>> = self.query("ZRANGEBYLEX", &cmd).await?;
            if members.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            for member in &members {
                let key = area.value(member);
                pipe.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
            }
            let replies: Vec<Value> = self.query_pipe("GET and PTTL", &pipe).await?;
            if replies.len() != 2 * members.len() {
                return Err(self.unexpected("an incomplete pipeline"));
            }
            let now = SystemTime::now();
            for (member, pair) in members.iter().zip(replies.chunks(2)) {
                let value = redis::from_redis_value_ref::<Option<Vec<u8>>>(&pair[0])
                    .map_err(|e| self.unexpected(e))?;
                let Some(value) = value else { continue };
                let ttl =
                    redis::from_redis_value_ref::<i64>(&pair[1]).map_err(|e| self.unexpected(e))?;
                let expires_at = u64::try_from(ttl)
                    .ok()
                    .and_then(|ms| now.checked_add(Duration::from_millis(ms)));
                out.push(Entry {
                    key: area.keys.key(member),
                    value,
                    expires_at,
                });
            }
            let full = members.len() == want;
            if let Some(last) = members.last() {
                min = [b"(", &last[..]].concat();
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }
}

/// The areas of `keys`, each with the positions of its keys among them, in
/// the order each area first appears.
fn by_area<'k>(
    key_prefix: &[u8],
    keys: impl Iterator<Item = &'k [u8]>,
) -> Vec<(AreaKeys, Vec<usize>)> {
    let mut groups: Vec<(Area, Vec<usize>)> = Vec::new();
    for (i, key) in keys.enumerate() {
        let (area, _) = Area::of(key);
        match groups.iter_mut().find(|(a, _)| *a == area) {
            Some((_, at)) => at.push(i),
            None => groups.push((area, vec![i])),
        }
    }
    groups
        .into_iter()
        .map(|(area, at)| (AreaKeys::new(key_prefix, area), at))
        .collect()
}

/// The area `quota` names, or an error if its prefix names none.
fn quota_area(key_prefix: &[u8], quota: &Quota<'_>) -> Result<AreaKeys, BackendError> {
    match Area::of(quota.prefix) {
        (area, b"") if !matches!(area, Area::Foreign) => Ok(AreaKeys::new(key_prefix, area)),
        _ => Err(BackendError::new(
            NAME,
            format!(
                "a quota must name a namespace's prefix, not {:?}",
                String::from_utf8_lossy(quota.prefix)
            ),
        )),
    }
}

/// The member of `key` in `area`, or an error if the key is not in it.
fn member_in<'k>(area: &AreaKeys, key: &'k [u8]) -> Result<&'k [u8], BackendError> {
    key.strip_prefix(area.keys.prefix()).ok_or_else(|| {
        BackendError::new(
            NAME,
            format!(
                "a bounded write of {:?} outside the namespace of its quota",
                String::from_utf8_lossy(key)
            ),
        )
    })
}

/// An integer of a script's reply.
fn int_at(reply: &[Value], i: usize) -> Option<i64> {
    reply
        .get(i)
        .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
}

/// The smallest byte string greater than every string that starts with
/// `prefix`, if there is one (there is none for the empty prefix, or one
/// of only `0xff` bytes).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(&last) = next.last() {
        if last == u8::MAX {
            next.pop();
        } else {
            *next.last_mut()? += 1;
            return Some(next);
        }
    }
    None
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        let (area, member) = self.locate(key);
        let mut cmd = redis::cmd("GET");
        cmd.arg(area.value(member));
        self.query("GET", &cmd).await
    }

    async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.replace_many(&[(key, value)], expires_in)
            .await
            .map(drop)
    }

    async fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        expires_in: Option<Duration>,
    ) -> Result<Option<u64>, BackendError> {
        let old = self.replace_many(&[(key, value)], expires_in).await?;
        Ok(old.into_iter().next().flatten())
    }

    async fn delete(&self, key: &[u8]) -> Result<(), BackendError> {
        self.remove_many(&[key]).await.map(drop)
    }

    async fn remove(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        Ok(self.remove_many(&[key]).await?.into_iter().next().flatten())
    }

    async fn value_len(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        let (area, member) = self.locate(key);
        let value = area.value(member);
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&value).cmd("STRLEN").arg(&value);
        let (exists, len): (u64, u64) = self.query_pipe("EXISTS and STRLEN", &pipe).await?;
        Ok((exists > 0).then_some(len))
    }

    async fn has(&self, key: &[u8]) -> Result<bool, BackendError> {
        let (area, member) = self.locate(key);
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(area.value(member));
        Ok(self.query::<u64>("EXISTS", &cmd).await? > 0)
    }

    async fn size(&self) -> Result<u64, BackendError> {
        let areas = self.areas().await?;
        if areas.is_empty() {
            return Ok(0);
        }
        // One pipeline of GETs: on a cluster each count is in its
        // namespace's slot.
        let mut pipe = redis::pipe();
        for area in areas {
            pipe.cmd("GET")
                .arg(AreaKeys::new(&self.key_prefix, area).bytes);
        }
        let counts: Vec<Option<i64>> = self.query_pipe("GET", &pipe).await?;
        Ok(counts
            .into_iter()
            .flatten()
            .map(|n| u64::try_from(n).unwrap_or(0))
            .fold(0, u64::saturating_add))
    }

    async fn counted_bytes(&self, prefix: &[u8]) -> Result<Option<u64>, BackendError> {
        let (area, member) = Area::of(prefix);
        if !member.is_empty() || matches!(area, Area::Foreign) {
            return Ok(None);
        }
        let mut cmd = redis::cmd("GET");
        cmd.arg(AreaKeys::new(&self.key_prefix, area).bytes);
        let count: Option<i64> = self.query("GET", &cmd).await?;
        Ok(Some(count.map_or(0, |n| u64::try_from(n).unwrap_or(0))))
    }

    async fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // MGET reads every key as of one moment.
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            let (area, member) = self.locate(key);
            cmd.arg(area.value(member));
        }
        self.query("MGET", &cmd).await
    }

    async fn set_many(
        &self,
        entries: &[(&[u8], &[u8])],
        expires_in: Option<Duration>,
    ) -> Result<(), BackendError> {
        self.replace_many(entries, expires_in).await.map(drop)
    }

    async fn delete_many(&self, keys: &[&[u8]]) -> Result<(), BackendError> {
        self.remove_many(keys).await.map(drop)
    }

    async fn replace_many(
        &self,
        entries: &[(&[u8], &[u8])],
        expires_in: Option<Duration>,
    ) -> Result<Vec<Option<u64>>, BackendError> {
        let ms = match expires_in.map(ttl_millis) {
            // Expired at once: the keys must not keep their old values either.
            Some(0) => {
                let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
                return self.remove_many(&keys).await;
            }
            other => other.unwrap_or(0),
        };
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        // One script an area: all or none within each (a batch of a plugin
        // is always in one).
        let mut old = vec![None; entries.len()];
        for (area, at) in by_area(&self.key_prefix, entries.iter().map(|(k, _)| *k)) {
            self.register(&area).await?;
            let mut invocation = self.scripts.replace.prepare_invoke();
            invocation.arg(ms);
            for &i in &at {
                let (key, value) = entries[i];
                let member = &key[area.keys.prefix().len()..];
                area.add_keys(&mut invocation, member);
                invocation.arg(member).arg(value);
            }
            let lengths: Vec<i64> = self.run("writing", &invocation).await?;
            for (i, n) in at.into_iter().zip(lengths) {
                old[i] = u64::try_from(n).ok();
            }
        }
        Ok(old)
    }

    async fn remove_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut old = vec![None; keys.len()];
        for (area, at) in by_area(&self.key_prefix, keys.iter().copied()) {
            let mut invocation = self.scripts.remove.prepare_invoke();
            for &i in &at {
                let member = &keys[i][area.keys.prefix().len()..];
                area.add_keys(&mut invocation, member);
                invocation.arg(member);
            }
            let lengths: Vec<i64> = self.run("deleting", &invocation).await?;
            for (i, n) in at.into_iter().zip(lengths) {
                old[i] = u64::try_from(n).ok();
            }
        }
        Ok(old)
    }

    async fn increment(&self, key: &[u8], delta: i64) -> Result<Counted, BackendError> {
        let (area, member) = self.locate(key);
        self.register(&area).await?;
        let mut invocation = self.scripts.increment.prepare_invoke();
        area.add_keys(&mut invocation, member);
        invocation.arg(member).arg(delta);
        let reply: Vec<Value> = self.run("increment", &invocation).await?;
        match reply.as_slice() {
            [done, value] if redis::from_redis_value_ref::<i64>(done).ok() == Some(1) => {
                let value: Vec<u8> =
                    redis::from_redis_value_ref(value).map_err(|e| self.unexpected(e))?;
                super::parse_counter(&value)
                    .map(Counted::Value)
                    .ok_or_else(|| self.unexpected("a counter that is not a number"))
            }
            // INCRBY refused, changing nothing: the value is not an
            // integer, or the result would overflow; which one, the value
            // tells.
            [_] => {
                let current = self.get(key).await?;
                let counter = current.as_deref().and_then(super::parse_counter);
                Ok(match counter {
                    Some(n) if n.checked_add(delta).is_none() => Counted::Overflow,
                    _ => Counted::NotACounter,
                })
            }
            _ => Err(self.unexpected("an increment's reply")),
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
        let (area, member) = self.locate(key);
        self.register(&area).await?;
        let mut invocation = self.scripts.swap.prepare_invoke();
        area.add_keys(&mut invocation, member);
        invocation
            .arg(member)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" })
            .arg(new.unwrap_or_default());
        let swapped: i64 = self.run("compare-and-swap", &invocation).await?;
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
        // The areas the prefix reaches: the one it names, with the keys
        // Warden did not write; or, for a prefix that names none (every
        // key, say), every area there is.
        let candidates: Vec<Area> = match Area::of(prefix) {
            (Area::Foreign, _) => self.areas().await?,
            (area, _) => vec![area, Area::Foreign],
        };
        let mut out: Vec<Entry> = Vec::new();
        for area in candidates {
            let keys = AreaKeys::new(&self.key_prefix, area);
            let area_prefix = keys.keys.prefix();
            // The part of `prefix` within the area, if the area is under it.
            let member_prefix: &[u8] = if let Some(rest) = prefix.strip_prefix(area_prefix) {
                rest
            } else if area_prefix.starts_with(prefix) {
                b""
            } else {
                continue;
            };
            let member_after = match after {
                None => None,
                Some(after) => match after.strip_prefix(area_prefix) {
                    Some(rest) => Some(rest),
                    // Every key of the area sorts after `after`, or none.
                    None if area_prefix > after => None,
                    None => continue,
                },
            };
            let page = self
                .scan_area(&keys, member_prefix, member_after, limit)
                .await?;
            out.extend(page.into_iter().filter(|e| e.key.starts_with(prefix)));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        out.truncate(limit);
        Ok(out)
    }

    async fn purge_expired(&self) -> Result<u64, BackendError> {
        let mut removed = 0;
        for area in self.areas().await? {
            let keys = AreaKeys::new(&self.key_prefix, area);
            let mut invocation = self.scripts.sweep.prepare_invoke();
            invocation
                .key(&keys.index)
                .key(&keys.bytes)
                .key(&keys.expiry)
                .key(&keys.lengths)
                .arg(&keys.values)
                .arg(SWEEP_STEP);
            removed += self
                .run::<u64>("sweeping expired keys", &invocation)
                .await?;
        }
        Ok(removed)
    }

    fn bounds_quotas(&self) -> bool {
        true
    }

    async fn replace_many_bounded(
        &self,
        entries: &[(&[u8], &[u8])],
        expires_in: Option<Duration>,
        quota: Quota<'_>,
    ) -> Result<Bounded<Vec<Option<u64>>>, BackendError> {
        let ms = match expires_in.map(ttl_millis) {
            // Expired at once: a removal, which never grows the namespace.
            Some(0) => {
                let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
                let old = self.remove_many(&keys).await?;
                let bytes = self.counted_bytes(quota.prefix).await?;
                return Ok(Bounded::Written { value: old, bytes });
            }
            other => other.unwrap_or(0),
        };
        let area = quota_area(&self.key_prefix, &quota)?;
        self.register(&area).await?;
        let mut invocation = self.scripts.replace_bounded.prepare_invoke();
        invocation
            .key(&area.index)
            .key(&area.bytes)
            .key(&area.expiry)
            .key(&area.lengths);
        invocation.arg(ms).arg(quota.max).arg(&area.values);
        for (key, value) in entries {
            let member = member_in(&area, key)?;
            invocation.key(area.value(member)).arg(member).arg(*value);
        }
        let reply: Vec<Value> = self.run("writing", &invocation).await?;
        match int_at(&reply, 0) {
            Some(0) => Ok(Bounded::Refused {
                would: int_at(&reply, 1).map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            }),
            Some(1) if reply.len() == 2 + entries.len() => Ok(Bounded::Written {
                value: (2..reply.len())
                    .map(|i| int_at(&reply, i).and_then(|n| u64::try_from(n).ok()))
                    .collect(),
                bytes: int_at(&reply, 1).map(|n| u64::try_from(n).unwrap_or(0)),
            }),
            _ => Err(self.unexpected("a bounded write's reply")),
        }
    }

    async fn increment_bounded(
        &self,
        key: &[u8],
        delta: i64,
        quota: Quota<'_>,
    ) -> Result<Bounded<Counted>, BackendError> {
        let area = quota_area(&self.key_prefix, &quota)?;
        let member = member_in(&area, key)?;
        self.register(&area).await?;
        let mut invocation = self.scripts.increment_bounded.prepare_invoke();
        area.add_keys(&mut invocation, member);
        invocation
            .arg(member)
            .arg(delta)
            .arg(quota.max)
            .arg(&area.values);
        let reply: Vec<Value> = self.run("increment", &invocation).await?;
        match int_at(&reply, 0) {
            Some(1) => {
                let value: Vec<u8> = reply
                    .get(1)
                    .map(redis::from_redis_value_ref)
                    .transpose()
                    .map_err(|e| self.unexpected(e))?
                    .unwrap_or_default();
                let value = super::parse_counter(&value)
                    .ok_or_else(|| self.unexpected("a counter that is not a number"))?;
                Ok(Bounded::Written {
                    value: Counted::Value(value),
                    bytes: int_at(&reply, 2).map(|n| u64::try_from(n).unwrap_or(0)),
                })
            }
            Some(2) => Ok(Bounded::Refused {
                would: int_at(&reply, 1).map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            }),
            Some(0) => {
                // INCRBY refused: which way, the value tells.
                let current = self.get(key).await?;
                let counter = current.as_deref().and_then(super::parse_counter);
                let value = match counter {
                    Some(n) if n.checked_add(delta).is_none() => Counted::Overflow,
                    _ => Counted::NotACounter,
                };
                Ok(Bounded::Written { value, bytes: None })
            }
            _ => Err(self.unexpected("an increment's reply")),
        }
    }

    async fn compare_and_swap_bounded(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: Quota<'_>,
    ) -> Result<Bounded<bool>, BackendError> {
        let area = quota_area(&self.key_prefix, &quota)?;
        let member = member_in(&area, key)?;
        self.register(&area).await?;
        let mut invocation = self.scripts.swap_bounded.prepare_invoke();
        area.add_keys(&mut invocation, member);
        invocation
            .arg(member)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(if new.is_some() { "1" } else { "0" })
            .arg(new.unwrap_or_default())
            .arg(quota.max)
            .arg(&area.values);
        let reply: Vec<Value> = self.run("compare-and-swap", &invocation).await?;
        match int_at(&reply, 0) {
            Some(1) => Ok(Bounded::Written {
                value: true,
                bytes: int_at(&reply, 1).map(|n| u64::try_from(n).unwrap_or(0)),
            }),
            Some(0) => Ok(Bounded::Written {
                value: false,
                bytes: None,
            }),
            Some(2) => Ok(Bounded::Refused {
                would: int_at(&reply, 1).map_or(0, |n| u64::try_from(n).unwrap_or(0)),
            }),
            _ => Err(self.unexpected("a swap's reply")),
        }
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
