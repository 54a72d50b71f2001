// Exercises the JavaScript SDK inside a real component: values, storage
// errors, expiry, handler failures, state and logging.

import { Plugin, respondTo, listenTo, StorageError, log } from 'warden';

function show(value) {
  if (value === null) return 'null';
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
}
