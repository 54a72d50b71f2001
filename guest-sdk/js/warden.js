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
// - `this.storage` and `msg.say` return promises to await.
// - One instance of the class is created for the first message and kept for
//   the next ones; `async init()` runs once right after it is created.
// - An exception escaping a handler is logged by the host with the plugin's
//   identity and answered with an error reply; the plugin keeps running.

import * as chat from 'warden:plugin/chat@0.1.0';
import * as logging from 'warden:plugin/logging@0.1.0';
import * as host from 'warden:plugin/storage@0.1.0';

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
/** The value is over the size limit. */
export class TooLarge extends StorageError {}
/** The plugin's namespace is over its byte quota. */
export class QuotaExceeded extends StorageError {}
/** The store itself failed; the message is meant for logs. */
export class Backend extends StorageError {}
/** The stored value does not fit the operation. */
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

/** The message being handled. */
export class Message {
  constructor({ text, user, channel, addressed }) {
    this.text = text;
    this.user = user;
    this.channel = channel;
    this.isAddressed = addressed;
  }

  /** Replies `text` to the message. */
  async say(text) {
    if (typeof text !== 'string') throw new TypeError(`msg.say takes a string, not ${typeof text}`);
    chat.say(text);
  }
}

const STORAGE = new PluginStorage();

/** The base class of a Warden plugin (Slack Machine's `MachineBasePlugin`). */
export class Plugin {
  /** The plugin's key-value storage, namespaced by its identity. */
  get storage() {
    return STORAGE;
  }

  /** Runs once, before the plugin's first message. */
  async init() {}
}

const INLINE_FLAGS = { m: 'm', s: 's' };

function route(kind) {
  return (pattern, handler, { ignoreCase } = {}) => {
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
    return Object.freeze({ kind, pattern: source, ignoreCase: ignore, handler });
  };
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
        })),
      };
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
