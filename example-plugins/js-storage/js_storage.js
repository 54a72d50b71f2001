// Stores, retrieves and deletes text by key, in the plugin's private
// storage: Slack Machine's storage example, as a Warden plugin.
//
//   @bot store hello world under greeting   'hello world' stored under greeting!
//   @bot retrieve greeting                  'hello world' retrieved from <greeting>!
//   @bot does greeting exist?               <greeting> exists.
//   @bot delete greeting                    data in <greeting> deleted!
//   @bot size                               storage size: 32.0 KiB
//
// Build it with ./build.sh; its identity is js_storage.StoragePlugin.

import { Plugin, respondTo } from 'warden';

export class StoragePlugin extends Plugin {
  static description = 'Stores, retrieves and deletes text by key';

  static routes = [
    respondTo(/store (?<text>.*) under (?<key>\w+)/i, 'store'),
    respondTo(/retrieve (?<key>\w+)/i, 'retrieve'),
    respondTo(/delete (?<key>\w+)/i, 'delete'),
    respondTo(/does (?<key>\w+) exist?/i, 'exists'),
    respondTo(/size/i, 'size'),
  ];

  async store(msg, { text, key }) {
    await this.storage.set(key, text);
    await msg.say(`'${text}' stored under ${key}!`);
  }

  async retrieve(msg, { key }) {
    const data = await this.storage.get(key);
    if (data) {
      await msg.say(`'${data}' retrieved from <${key}>!`);
    } else {
      await msg.say('Key not found!');
    }
  }

  async delete(msg, { key }) {
    await this.storage.delete(key);
    await msg.say(`data in <${key}> deleted!`);
  }

  async exists(msg, { key }) {
    if (await this.storage.has(key)) {
      await msg.say(`<${key}> exists.`);
    } else {
      await msg.say(`<${key}> does not exist!`);
    }
  }

  async size(msg) {
    const humanSize = await this.storage.getStorageSizeHuman();
    await msg.say(`storage size: ${humanSize}`);
  }
}
