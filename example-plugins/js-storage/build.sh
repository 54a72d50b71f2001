#!/bin/sh
# Builds the JavaScript storage plugin into a component:
#
#   example-plugins/js-storage/build.sh [OUT.wasm]
#
# OUT defaults to example-plugins/target/js/js_storage.wasm. Needs Node.js
# 20+ and componentize-js, installed once with npm ci --prefix guest-sdk/js.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/js/js_storage.wasm}
exec node "$here/../../guest-sdk/js/build.mjs" "$here/js_storage.js" -o "$out"
