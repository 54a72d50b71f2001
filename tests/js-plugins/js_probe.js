// Exercises the JavaScript SDK inside a real component: values, storage
// errors, expiry, handler failures, state, logging, and the storage calls
// beyond Slack Machine's (key pages, counters, compare-and-swap, batches,
// the namespace size).

import { Plugin, respondTo, listenTo, StorageError, log } from 'warden';

function show(value) {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'bigint') return `BigInt ${value}`;
  const shown = value instanceof Uint8Array ? Array.from(value).join(',') : JSON.stringify(value);
  return `${value.constructor.name} ${shown}`;
}

export class Probe extends Plugin {
  static version = '3.0.0';
  static routes = [
    respondTo(/^js set (?<key>\S+) = (?<value>.*)$/, 'setJson'),
    respondTo(/^js set-bytes (?<key>\S+)$/, 'setBytes'),
    respondTo(/^js get (?<key>\S+)$/, 'get'),
    respondTo(/^js has (?<key>\S+)$/, 'has'),
    respondTo(/^js shared get (?<key>\S+)$/, 'sharedGet'),
    respondTo(/^js bad (?<what>value|key)$/, 'bad'),
    respondTo(/^js fail$/, 'fail'),
    respondTo(/^js state$/, 'state'),
    respondTo(/^js expire (?<key>\S+) in (?<secs>[\d.]+)$/, 'expire'),
    listenTo(/^js message(?: (?<extra>\w+))?$/, 'message'),
    respondTo(/^js raw set (?<key>\S+) = (?<hex>[0-9a-f]*)$/, 'rawSet'),
    respondTo(/^js raw get (?<key>\S+)$/, 'rawGet'),
    respondTo(/^js list (?<prefix>\S*) limit (?<limit>\d+)(?: after (?<cursor>\S+))?(?<shared> shared)?$/, 'list'),
    respondTo(/^js keys (?<prefix>\S*)$/, 'keys'),
    respondTo(/^js many keys (?<prefix>\S+) (?<count>\d+)$/, 'manyKeys'),
    respondTo(/^js incr (?<key>\S+) by (?<delta>-?\d+)(?<big>n)?$/, 'incr'),
    respondTo(/^js cas (?<key>\S+) (?<expected>.+) -> (?<next>.+)$/, 'cas'),
    respondTo(/^js cas-bytes (?<key>\S+) (?<expected>\S+) -> (?<next>\S+)$/, 'casBytes'),
    respondTo(/^js get-many (?<keys>\S+)$/, 'getMany'),
    respondTo(/^js set-many (?<entries>\{.*\})(?: expires (?<expires>\d+))?$/, 'setMany'),
    respondTo(/^js set-many too many$/, 'setTooMany'),
    respondTo(/^js set-many map$/, 'setMap'),
    respondTo(/^js delete-many (?<keys>\S+)$/, 'deleteMany'),
    respondTo(/^js namespace size$/, 'namespaceSize'),
  ];
  async init() {
    this.inits = (this.inits ?? 0) + 1;
    this.calls = 0;
  }

  async setJson(msg, { key, value }) {
    await this.storage.set(key, JSON.parse(value));
    await msg.say('ok');
  }

  async setBytes(msg, { key }) {
    await this.storage.set(key, new Uint8Array([0, 255, 16]));
    await msg.say('ok');
  }

  async get(msg, { key }) {
    await msg.say(show(await this.storage.get(key)));
  }

  async has(msg, { key }) {
    await msg.say(String(await this.storage.has(key)));
  }

  async sharedGet(msg, { key }) {
    try {
      await this.storage.get(key, { shared: true });
    } catch (e) {
      await msg.say(`${e.name} ${e instanceof StorageError}: ${e.message}`);
    }
  }

  async bad(msg, { what }) {
    try {
      if (what === 'value') await this.storage.set('k', new Map());
      else await this.storage.set('', 1);
    } catch (e) {
      await msg.say(`${e.name}: ${e.message}`);
    }
  }

  async fail(msg) {
    await msg.say('about to fail');
    throw new RangeError('boom');
  }

  async state(msg) {
    this.calls++;
    log.info('state');
    await msg.say(`inits ${this.inits} calls ${this.calls}`);
  }

  async expire(msg, { key, secs }) {
    await this.storage.set(key, 'e', { expires: Number(secs) });
    await msg.say('ok');
  }

  async message(msg, { extra }) {
    await msg.say(`${msg.text} | ${msg.user} | ${msg.isAddressed} | ${extra}`);
  }

  // Beyond Slack Machine: each route replies with the call's result, or
  // with the error it threw.

  async answer(msg, promise) {
    try {
      await msg.say(show(await promise));
    } catch (e) {
      await msg.say(`${e.name}: ${e.message}`);
    }
  }

  async rawSet(msg, { key, hex }) {
    const data = new Uint8Array((hex.match(/../g) ?? []).map((b) => parseInt(b, 16)));
    await this.answer(msg, this.storage.setBytes(key, data));
  }

  async rawGet(msg, { key }) {
    await this.answer(msg, this.storage.getBytes(key));
  }

  async list(msg, { prefix, limit, cursor, shared }) {
    const page = this.storage.listKeys(prefix, { cursor, limit: Number(limit), shared: Boolean(shared) });
    await this.answer(msg, page);
  }

  async keys(msg, { prefix }) {
    await this.answer(msg, this.storage.keys(prefix));
  }

  async manyKeys(msg, { prefix, count }) {
    // More keys than one page holds, for `keys` to page through.
    const n = Number(count);
    const name = (i) => `${prefix}${String(i).padStart(5, '0')}`;
    for (let start = 0; start < n; start += 1000) {
      const entries = [];
      for (let i = start; i < Math.min(n, start + 1000); i++) entries.push([name(i), i]);
      await this.storage.setMany(entries);
    }
    const keys = await this.storage.keys(prefix);
    const ordered = keys.length === n && keys.every((k, i) => k === name(i));
    await msg.say(`${keys.length} ordered ${ordered}`);
  }

  async incr(msg, { key, delta, big }) {
    await this.answer(msg, this.storage.increment(key, big ? BigInt(delta) : Number(delta)));
  }

  async cas(msg, { key, expected, next }) {
    const value = (text) => (text === 'missing' ? null : JSON.parse(text));
    await this.answer(msg, this.storage.compareAndSwap(key, value(expected), value(next)));
  }

  async casBytes(msg, { key, expected, next }) {
    const value = (hex) =>
      hex === 'missing' ? null : new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
    await this.answer(msg, this.storage.compareAndSwapBytes(key, value(expected), value(next)));
  }

  async getMany(msg, { keys }) {
    await this.answer(msg, this.storage.getMany(keys.split(',')));
  }

  async setMany(msg, { entries, expires }) {
    const options = expires === undefined ? {} : { expires: Number(expires) };
    await this.answer(msg, this.storage.setMany(JSON.parse(entries), options));
  }

  async setTooMany(msg) {
    const entries = Array.from({ length: 1001 }, (_, i) => [`k${i}`, i]);
    await this.answer(msg, this.storage.setMany(entries));
  }

  async setMap(msg) {
    await this.answer(msg, this.storage.setMany(new Map([['m:x', 1], ['m:y', [true]]])));
  }

  async deleteMany(msg, { keys }) {
    await this.answer(msg, this.storage.deleteMany(keys.split(',')));
  }

  async namespaceSize(msg) {
    await this.answer(msg, this.storage.getNamespaceSize());
  }
}
