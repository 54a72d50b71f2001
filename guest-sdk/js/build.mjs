#!/usr/bin/env node
// Builds a JavaScript Warden plugin into a WebAssembly component.
//
//   node guest-sdk/js/build.mjs PLUGIN.js [-o OUT.wasm] [--wit DIR]
//
// PLUGIN.js is one ES module that imports the SDK as 'warden' and exports
// one subclass of Plugin; its identity is `MODULE.ClassName`, so
// `js_storage.js` exporting `StoragePlugin` is `js_storage.StoragePlugin`.
// The component embeds the module, the SDK and a JavaScript engine
// (StarlingMonkey), and is written to OUT (default: MODULE.wasm) in one
// step, so it can be built straight into a watched plugins directory.
//
// It needs Node.js 20 or later and componentize-js 0.23.0, installed once
// with `npm ci --prefix guest-sdk/js`; the build itself downloads nothing.

import { copyFile, mkdtemp, readFile, rename, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SDK_DIR = dirname(fileURLToPath(import.meta.url));
const ENTRY = 'warden_component_entry.js';

function fail(message) {
  console.error(`build.mjs: error: ${message}`);
  process.exit(1);
}

function parse(argv) {
  const args = { wit: resolve(SDK_DIR, '..', '..', 'wit') };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-o' || arg === '--output') args.output = argv[++i];
    else if (arg === '--wit') args.wit = argv[++i];
    else if (arg === '-h' || arg === '--help') {
      console.log('usage: node build.mjs PLUGIN.js [-o OUT.wasm] [--wit DIR]');
      process.exit(0);
    } else if (arg.startsWith('-') || args.plugin) fail(`unexpected argument ${arg}`);
    else args.plugin = arg;
  }
  if (!args.plugin) fail('usage: node build.mjs PLUGIN.js [-o OUT.wasm] [--wit DIR]');
  return args;
}

const args = parse(process.argv.slice(2));
const source = resolve(args.plugin);
const module = basename(source).replace(/\.m?js$/, '');
if (!/\.m?js$/.test(source)) fail(`${args.plugin} is not a .js file`);
if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(module) || module === 'warden') {
  fail(`"${module}" cannot be the plugin's module name: the file name must be a Warden identity segment`);
}
const output = resolve(args.output ?? `${module}.wasm`);

let componentize;
try {
  ({ componentize } = await import('@bytecodealliance/componentize-js'));
} catch (e) {
  fail(`componentize-js is not installed (${e.code ?? e.message}): run npm ci --prefix ${SDK_DIR}`);
}

const work = await mkdtemp(join(tmpdir(), 'warden-js-'));
try {
  const text = await readFile(source, 'utf8');
  // The plugin imports the SDK as 'warden'; in the component it is a file
  // next to it.
  const staged = text.replace(/(\bfrom\s*|\bimport\s*\(?\s*)(['"])warden\2/g, '$1$2./warden.js$2');
  await writeFile(join(work, `${module}.js`), staged);
  await copyFile(join(SDK_DIR, 'warden.js'), join(work, 'warden.js'));
  await writeFile(
    join(work, ENTRY),
    `import * as plugin from './${module}.js';\n` +
      `import { component } from './warden.js';\n` +
      `const world = component(plugin, ${JSON.stringify(module)});\n` +
      'export function manifest() { return world.manifest(); }\n' +
      'export async function handle(route, message, captures) {\n' +
      '  return await world.handle(route, message, captures);\n' +
      '}\n' +
      'export async function runSchedule(index) {\n' +
      '  return await world.runSchedule(index);\n' +
      '}\n',
  );
  const { component } = await componentize({
    sourcePath: join(work, ENTRY),
    witPath: resolve(args.wit),
    worldName: 'plugin',
    // Warden links no wasi:http; a plugin has no network.
    disableFeatures: ['http', 'fetch-event'],
  });
  await mkdir(dirname(output), { recursive: true });
  const partial = `${output}.partial`;
  await writeFile(partial, component);
  await rename(partial, output);
  console.log(`built ${output}`);
} catch (e) {
  fail(`componentize-js failed to build ${args.plugin}: ${e.stack ?? e}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
