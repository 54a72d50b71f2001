// Write Warden plugins in JavaScript, the way Slack Machine plugins are
// written, and build them with `node guest-sdk/js/build.mjs PLUGIN.js`.
//
//   import { Plugin, respondTo, listenTo } from 'warden';
//
//   export class GreeterPlugin extends Plugin {
//     static description = 'Greets people';
//     static routes = [
//       respondTo(/hello (?<name>\w+)/i, 'hello'),
//       listenTo(/^good (?<when>morning|night)$/, 'good'),
//     ];
//
//     async hello(msg, { name }) {
//       await this.storage.set(`seen-${name}`, true);
//       await msg.say(`hello, ${name}!`);
//     }
//
//     async good(msg, { when }) {
//       await msg.say(`good ${when} to you too`);
//     }
//   }
//
// - The plugin's identity is its module (the file name without `.js`) and
//   class name, as in Slack Machine: the class above in `greeter.js` is
//   `greeter.GreeterPlugin`.
// - `static description` and `static version` describe it (defaults: none
//   and `0.0.0`).
// - Each route names the method that handles it. Named groups of the
//   pattern arrive as one object, the second argument (`undefined` for a
//   group that did not take part in the match).
// - A RegExp's own flags apply (`i`: ignore case, `m`, `s`); a pattern given
//   as a string ignores case unless `{ ignoreCase: false }`, as in Slack
//   Machine.
// - `this.storage` and `msg.say` return promises to await. Beyond Slack
//   Machine's `set`, `get`, `has` and `delete`, the storage lists keys a
//   page at a time (`listKeys`, `keys`), keeps atomic counters
//   (`increment`), replaces values atomically (`compareAndSwap`), reads and
//   writes batches (`getMany`, `setMany`, `deleteMany`), stores bytes
//   unchanged (`setBytes`, `getBytes`) and reports the bytes the plugin's
//   namespace holds (`getNamespaceSize`).
// - One instance of the class is created for the first message and kept for
//   the next ones; `async init()` runs once right after it is created.
// - An exception escaping a handler is logged by the host with the plugin's
//   identity and answered with an error reply; the plugin keeps running.
// - `msg.reply(text)` answers mentioning the sender, `msg.reply(text,
//   { inThread: true })` in the message's thread; `msg.say(text, { threadTs })`
//   posts in a thread; `msg.sender` is `{ id, name }`.
// - A route's `{ doc: 'command: what it does' }` is its line in the help
//   manual; `static schedules = [schedule('0 9 * * mon-fri', 'standup')]`
//   runs a method on a timetable (it sends with `say`);
//   `static requiredSettings = ['api_key']` keeps the plugin from loading
//   while a setting is missing; `this.settings` holds the plugin's settings.

import * as chat from 'warden:plugin/chat@0.2.0';
import * as logging from 'warden:plugin/logging@0.2.0';
import * as host from 'warden:plugin/storage@0.2.0';
import * as config from 'wasi:config/store@0.2.0-draft';

// ---------------------------------------------------------------- errors

/** A storage call failed; `message` says why. */
export class StorageError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}
/** Shared access without a grant, or a write with a read-only grant. */
export class AccessDenied extends StorageError {}
/** The key is empty, too long, or has characters that are not allowed. */
export class InvalidKey extends StorageError {}
/** The value, the batch, or what the call would return is over its size limit. */
export class TooLarge extends StorageError {}
/** The plugin's namespace is over its byte quota. */
export class QuotaExceeded extends StorageError {}
/** The store itself failed; the message is meant for logs. */
export class Backend extends StorageError {}
/**
 * The stored value does not fit the operation: `increment` on a value that
 * is not a counter, or a counter that would overflow.
 */
export class InvalidValue extends StorageError {}
/** The value cannot be stored: it has no JSON form here. */
export class Encode extends StorageError {}
/** The stored value is not JSON. */
export class Decode extends StorageError {}

const ERRORS = {
  'access-denied': AccessDenied,
  'invalid-key': InvalidKey,
  'too-large': TooLarge,
  'quota-exceeded': QuotaExceeded,
  backend: Backend,
  'invalid-value': InvalidValue,
};

function call(fn, ...args) {
  try {
    return fn(...args);
  } catch (e) {
    const payload = e && e.payload;
    if (payload && ERRORS[payload.tag]) {
      throw new ERRORS[payload.tag](payload.val);
    }
    throw e;
  }
}

// ---------------------------------------------------------------- values

const BYTES_TAG = '$bytes';

function toBase64(bytes) {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function jsonable(value, path) {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') {
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Encode(`${path}: ${value} has no JSON form`);
    return value;
  }
  if (value instanceof Uint8Array) {
    return { [BYTES_TAG]: toBase64(value) };
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => jsonable(item, `${path}[${i}]`));
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      out[key] = jsonable(item, `${path}.${key}`);
    }
    const keys = Object.keys(out);
    if (keys.length === 1 && keys[0] === BYTES_TAG) {
      throw new Encode(`${path}: an object whose only key is "${BYTES_TAG}" is reserved for bytes`);
    }
    return out;
  }
  const kind = value === undefined ? 'undefined' : value?.constructor?.name ?? typeof value;
  throw new Encode(
    `${path}: cannot store ${kind} (strings, numbers, booleans, null, arrays, ` +
      'plain objects and Uint8Array can be stored)',
  );
}

/** The bytes `set` stores for `value`: compact UTF-8 JSON. */
export function encodeValue(value) {
  return new TextEncoder().encode(JSON.stringify(jsonable(value, 'value')));
}

/** The value `get` returns for the stored bytes `raw`. */
export function decodeValue(raw) {
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch (e) {
    throw new Decode(`the stored value is not UTF-8 text: ${e.message}`);
  }
  try {
    return JSON.parse(text, (key, value) => {
      if (value && typeof value === 'object' && !Array.isArray(value)) {
        const keys = Object.keys(value);
        if (keys.length === 1 && keys[0] === BYTES_TAG && typeof value[BYTES_TAG] === 'string') {
          return fromBase64(value[BYTES_TAG]);
        }
      }
      return value;
    });
  } catch (e) {
    if (e instanceof StorageError) throw e;
    throw new Decode(`the stored value is not JSON: ${e.message}`);
  }
}

function expiry(expires) {
  if (expires === undefined || expires === null) return undefined;
  if (typeof expires !== 'number' || !Number.isFinite(expires) || expires < 0) {
    throw new TypeError(`expires must be a number of seconds, at least 0: ${expires}`);
  }
  return BigInt(Math.ceil(expires));
}

function key(k) {
  if (typeof k !== 'string') throw new TypeError(`storage keys are strings, not ${typeof k}`);
  return k;
}

function keyList(keys) {
  if (typeof keys === 'string' || keys === null || typeof keys?.[Symbol.iterator] !== 'function') {
    throw new TypeError('pass an array (or another iterable) of keys');
  }
  return Array.from(keys, key);
}

function entryList(entries) {
  if (entries === null || typeof entries !== 'object') {
    throw new TypeError('setMany takes a Map, an array of [key, value] pairs or a plain object');
  }
  const pairs =
    typeof entries[Symbol.iterator] === 'function' ? Array.from(entries) : Object.entries(entries);
  return pairs.map((pair) => {
    if (!Array.isArray(pair) || pair.length !== 2) {
      throw new TypeError(`setMany takes [key, value] pairs, not ${JSON.stringify(pair)}`);
    }
    return [key(pair[0]), encodeValue(pair[1])];
  });
}

function bytes(value, what) {
  if (value === undefined || value === null) return undefined;
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`${what} must be a Uint8Array, not ${value?.constructor?.name ?? typeof value}`);
  }
  return value;
}

function isNone(value) {
  return value === undefined || value === null;
}

// The host returns at most this many keys a page; `keys` asks for full pages.
const PAGE = 1000;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

function delta(d) {
  let big;
  if (typeof d === 'bigint') big = d;
  else if (typeof d === 'number' && Number.isSafeInteger(d)) big = BigInt(d);
  else throw new TypeError(`delta must be an integer (a safe integer number or a BigInt): ${d}`);
  if (big < I64_MIN || big > I64_MAX) {
    throw new RangeError(`delta must fit in a signed 64-bit integer: ${d}`);
  }
  // componentize-js 0.23.0 traps while passing a negative s64 to the host
  // (bytecodealliance/ComponentizeJS#343), which would end the handler
  // call uncatchably; refuse it with an error the plugin can handle.
  if (big < 0n) {
    throw new RangeError(`increment cannot take a negative delta in a JavaScript plugin yet: ${d}`);
  }
  return big;
}

// --------------------------------------------------------------- storage

/**
 * The plugin's key-value storage (Slack Machine's `PluginStorage`). Keys
 * are namespaced by the plugin's identity on the host; `{ shared: true }`
 * addresses the shared keyspace, which needs the operator's grant.
 */
export class PluginStorage {
  /** Stores `value` (as JSON); `expires`: seconds, rounded up. */
  async set(k, value, { expires, shared = false } = {}) {
    const data = encodeValue(value);
    call(host.set, key(k), data, expiry(expires), Boolean(shared));
  }

  /** The value under `k`, or `null`. */
  async get(k, { shared = false } = {}) {
    const raw = call(host.get, key(k), Boolean(shared));
    return raw === undefined || raw === null ? null : decodeValue(raw);
  }

  /** Whether a value is stored under `k`. */
  async has(k, { shared = false } = {}) {
    return call(host.has, key(k), Boolean(shared));
  }

  /** Removes `k`; a missing key is fine. */
  async delete(k, { shared = false } = {}) {
    call(host.delete, key(k), Boolean(shared));
  }

  /** The size of the whole store in bytes. */
  async getStorageSize() {
    return Number(call(host.storageSize));
  }

  /** The same size formatted for people, e.g. `32.0 KiB`. */
  async getStorageSizeHuman() {
    return call(host.storageSizeHuman);
  }

  /** The bytes of keys and values the plugin's own namespace holds: what its quota counts. */
  async getNamespaceSize() {
    return Number(call(host.namespaceSize));
  }

  /**
   * Stores the bytes `data` (a Uint8Array) under `k` unchanged, not as
   * JSON, the way a Rust plugin's `set_bytes` does; `expires` as for `set`.
   */
  async setBytes(k, data, { expires, shared = false } = {}) {
    if (isNone(data)) throw new TypeError('data must be a Uint8Array');
    call(host.set, key(k), bytes(data, 'data'), expiry(expires), Boolean(shared));
  }

  /** The bytes stored under `k`, not decoded (a Uint8Array), or `null`. */
  async getBytes(k, { shared = false } = {}) {
    const raw = call(host.get, key(k), Boolean(shared));
    // A copy: the array the bindings return fails `instanceof Uint8Array`.
    return isNone(raw) ? null : Uint8Array.from(raw);
  }

  /**
   * One page of the keys that start with `prefix`, in bytewise order:
   * `{ keys, next }`. Pass `next` as `cursor` for the following page; it is
   * `null` on the last one. `limit`: at most this many keys (the host caps
   * it at 1000). With `shared`, the prefix must be covered by the plugin's
   * read grant.
   *
   *   let cursor = null;
   *   do {
   *     const page = await this.storage.listKeys('karma:', { cursor, limit: 100 });
   *     for (const k of page.keys) console.log(k);
   *     cursor = page.next;
   *   } while (cursor !== null);
   */
  async listKeys(prefix = '', { cursor = null, limit = PAGE, shared = false } = {}) {
    if (typeof prefix !== 'string') throw new TypeError(`the prefix is a string, not ${typeof prefix}`);
    if (!Number.isInteger(limit) || limit < 0 || limit > 0xffffffff) {
      throw new RangeError(`limit must be an integer from 0 to 4294967295: ${limit}`);
    }
    const after = isNone(cursor) ? undefined : key(cursor);
    const page = call(host.listKeys, prefix, after, limit, Boolean(shared));
    return { keys: Array.from(page.keys), next: isNone(page.next) ? null : page.next };
  }

  /** Every key that starts with `prefix`, in bytewise order, fetched a page at a time. */
  async keys(prefix = '', { shared = false } = {}) {
    const keys = [];
    let cursor = null;
    do {
      const page = await this.listKeys(prefix, { cursor, limit: PAGE, shared });
      keys.push(...page.keys);
      cursor = page.next;
    } while (cursor !== null);
    return keys;
  }

  /**
   * Atomically adds `delta` (a safe integer or a BigInt) to the signed
   * 64-bit counter under `k` (created at `delta` if missing; its expiry is
   * kept) and returns the new value: a number, or a BigInt when `delta` is
   * one or the counter is beyond `Number.MAX_SAFE_INTEGER`. Counters are
   * stored as decimal digits, so `get` reads them as numbers. Throws
   * `InvalidValue` if the key holds something else or the sum would
   * overflow.
   *
   * A negative `delta` throws `RangeError`: componentize-js 0.23.0 cannot
   * pass one to the host. Count down with `compareAndSwap` meanwhile (it
   * drops the key's expiry).
   */
  async increment(k, d = 1, { shared = false } = {}) {
    const big = delta(d);
    const value = call(host.increment, key(k), big, Boolean(shared));
    const number = Number(value);
    return typeof d === 'bigint' || !Number.isSafeInteger(number) ? BigInt(value) : number;
  }

  /**
   * Atomically replaces the value under `k` with `next` (`null`: deletes
   * it) if the value there now is `expected` (`null`: the key is missing);
   * resolves to whether it did. Values are compared as stored JSON, so use
   * it on values this SDK (or a Rust plugin's `set`) wrote. The new value
   * has no expiry.
   *
   *   // Claim a job unless someone else has.
   *   const mine = await this.storage.compareAndSwap('job:42', null, 'worker-a');
   */
  async compareAndSwap(k, expected, next, { shared = false } = {}) {
    return this.compareAndSwapBytes(
      k,
      isNone(expected) ? null : encodeValue(expected),
      isNone(next) ? null : encodeValue(next),
      { shared },
    );
  }

  /** `compareAndSwap` on bytes stored unchanged (`setBytes`), as Uint8Arrays. */
  async compareAndSwapBytes(k, expected, next, { shared = false } = {}) {
    const old = bytes(expected, 'expected');
    const now = bytes(next, 'next');
    return call(host.compareAndSwap, key(k), old, now, Boolean(shared));
  }

  /** The values under `keys` (at most 1000), in the same order, `null` for a missing one. */
  async getMany(keys, { shared = false } = {}) {
    const values = call(host.getMany, keyList(keys), Boolean(shared));
    return Array.from(values, (raw) => (isNone(raw) ? null : decodeValue(raw)));
  }

  /**
   * Stores every entry (a Map, an array of `[key, value]` pairs or a plain
   * object; at most 1000) as `set` would, all or none, with one `expires`
   * for all. A key given twice takes its last value.
   */
  async setMany(entries, { expires, shared = false } = {}) {
    const encoded = entryList(entries);
    call(host.setMany, encoded, expiry(expires), Boolean(shared));
  }

  /** Removes every key (at most 1000), all or none; missing keys are fine. */
  async deleteMany(keys, { shared = false } = {}) {
    call(host.deleteMany, keyList(keys), Boolean(shared));
  }
}

// --------------------------------------------------------------- logging

/** Logging into the host's log, tagged with the plugin's identity. */
export const log = Object.freeze(
  Object.fromEntries(
    ['trace', 'debug', 'info', 'warn', 'error'].map((level) => [
      level,
      (message) => logging.log(level, String(message)),
    ]),
  ),
);

// --------------------------------------------------------------- plugins

function text(method, value) {
  if (typeof value !== 'string') throw new TypeError(`msg.${method} takes a string, not ${typeof value}`);
  return value;
}

/** The message being handled. */
export class Message {
  constructor({ text, sender, channel, addressed, id, thread }) {
    this.text = text;
    /** Who sent it: `{ id, name }` (`name` is the id where the adapter knows none). */
    this.sender = Object.freeze({ id: sender.id, name: sender.name ?? sender.id });
    this.channel = channel;
    this.isAddressed = addressed;
    /** The message's id in its channel (Slack's `ts`), or `undefined`. */
    this.ts = id ?? undefined;
    /** The thread it was posted in (Slack's `thread_ts`), or `undefined`. */
    this.threadTs = thread ?? undefined;
  }

  /** The sender's id. */
  get user() {
    return this.sender.id;
  }

  /** The sender as a Slack mention, `<@ID>`. */
  get atSender() {
    return `<@${this.sender.id}>`;
  }

  /** Sends `text` to the message's channel; in thread `threadTs` when given. */
  async say(value, { threadTs } = {}) {
    if (threadTs !== undefined && typeof threadTs !== 'string') {
      throw new TypeError('msg.say: threadTs must be a string');
    }
    chat.say(text('say', value), threadTs);
  }

  /**
   * Answers the sender: in the channel, mentioning them, or with
   * `{ inThread: true }` in the message's thread without the mention.
   */
  async reply(value, { inThread = false } = {}) {
    chat.reply(text('reply', value), Boolean(inThread));
  }
}

/** Sends `text` to the channel of the call under way (a schedule's channel). */
export async function say(value) {
  chat.say(text('say', value), undefined);
}

const STORAGE = new PluginStorage();

let SETTINGS = null;

/** The plugin's settings, `[settings."ID"]` of the host's configuration. */
function settings() {
  if (SETTINGS === null) {
    SETTINGS = Object.freeze(Object.fromEntries(config.getAll()));
  }
  return SETTINGS;
}

/** The base class of a Warden plugin (Slack Machine's `MachineBasePlugin`). */
export class Plugin {
  /** The plugin's key-value storage, namespaced by its identity. */
  get storage() {
    return STORAGE;
  }

  /** The plugin's settings: a frozen object of names to strings. */
  get settings() {
    return settings();
  }

  /** Runs once, before the plugin's first message. */
  async init() {}
}

const INLINE_FLAGS = { m: 'm', s: 's' };

function route(kind) {
  return (pattern, handler, { ignoreCase, doc = '' } = {}) => {
    if (typeof handler !== 'string') {
      throw new TypeError(`${kind}(${pattern}): name the method that handles the route`);
    }
    let source;
    let ignore;
    if (pattern instanceof RegExp) {
      const inline = [...pattern.flags].filter((f) => INLINE_FLAGS[f]).join('');
      source = inline ? `(?${inline})${pattern.source}` : pattern.source;
      ignore = ignoreCase ?? pattern.flags.includes('i');
    } else if (typeof pattern === 'string') {
      source = pattern;
      ignore = ignoreCase ?? true;
    } else {
      throw new TypeError(`${kind}: the pattern must be a RegExp or a string`);
    }
    return Object.freeze({ kind, pattern: source, ignoreCase: ignore, handler, doc: String(doc) });
  };
}

/**
 * A schedule: method `handler` runs at the times of `cron` (five fields,
 * `minute hour day-of-month month day-of-week`, or six with seconds first;
 * UTC); what it sends with `say` goes to `channel`, or to `[schedules]
 * channel` of the host's configuration.
 */
export function schedule(cron, handler, { channel, doc = '' } = {}) {
  if (typeof cron !== 'string') throw new TypeError('schedule: the cron expression must be a string');
  if (typeof handler !== 'string') throw new TypeError(`schedule(${cron}): name the method that runs`);
  if (channel !== undefined && typeof channel !== 'string') {
    throw new TypeError('schedule: channel must be a string');
  }
  return Object.freeze({ cron, handler, channel, doc: String(doc) });
}

/** A route for messages addressed to the bot, handled by method `handler`. */
export const respondTo = route('respond-to');
/** A route for every message the bot sees, handled by method `handler`. */
export const listenTo = route('listen-to');

const IDENTITY = /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$/;

function findClass(module) {
  const classes = Object.values(module).filter(
    (v) => typeof v === 'function' && v.prototype instanceof Plugin,
  );
  if (classes.length !== 1) {
    const names = classes.map((c) => c.name).join(', ') || 'none';
    throw new Error(`the plugin module must export exactly one subclass of Plugin (found: ${names})`);
  }
  return classes[0];
}

/**
 * The component's exports (`manifest` and `handle`) for the one Plugin
 * subclass the module `module` exports, named `moduleName` (the file name
 * without `.js`). `build.mjs` calls this for you.
 */
export function component(module, moduleName) {
  const cls = findClass(module);
  const id = `${moduleName}.${cls.name}`;
  if (!IDENTITY.test(id) || new TextEncoder().encode(id).length > 128) {
    throw new Error(`"${id}" is not a valid Warden identity (module and class name)`);
  }
  const routes = cls.routes ?? [];
  for (const r of routes) {
    if (typeof cls.prototype[r.handler] !== 'function') {
      throw new Error(`${cls.name}: route ${r.pattern} names ${r.handler}, which is not a method`);
    }
  }
  const schedules = cls.schedules ?? [];
  for (const s of schedules) {
    if (typeof cls.prototype[s.handler] !== 'function') {
      throw new Error(`${cls.name}: schedule ${s.cron} names ${s.handler}, which is not a method`);
    }
  }
  const required = [...(cls.requiredSettings ?? [])].map(String);
  let instance = null;

  async function plugin() {
    if (instance === null) {
      const created = new cls();
      await created.init();
      instance = created;
    }
    return instance;
  }

  return {
    manifest() {
      return {
        id,
        version: String(cls.version ?? '0.0.0'),
        description: String(cls.description ?? ''),
        routes: routes.map((r) => ({
          kind: r.kind,
          pattern: r.pattern,
          ignoreCase: r.ignoreCase,
          handler: r.handler,
          doc: r.doc ?? '',
        })),
        schedules: schedules.map((s) => ({
          cron: s.cron,
          channel: s.channel,
          handler: s.handler,
          doc: s.doc ?? '',
        })),
        requiredSettings: required,
      };
    },

    async runSchedule(index) {
      try {
        const s = schedules[index];
        if (!s) throw new RangeError(`no schedule number ${index}`);
        const self = await plugin();
        await self[s.handler]();
      } catch (e) {
        const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        if (e instanceof Error && e.stack) console.error(`${text}\n${e.stack}`);
        throw text;
      }
    },

    async handle(index, message, captures) {
      try {
        const r = routes[index];
        if (!r) throw new RangeError(`no route number ${index}`);
        const groups = {};
        for (const { name, value } of captures) groups[name] = value;
        const self = await plugin();
        await self[r.handler](new Message(message), groups);
      } catch (e) {
        const text = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        if (e instanceof Error && e.stack) console.error(`${text}\n${e.stack}`);
        throw text;
      }
    },
  };
}
