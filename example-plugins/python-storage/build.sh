#!/bin/sh
# Builds the Python storage plugin into a component:
#
#   example-plugins/python-storage/build.sh [OUT.wasm]
#
# OUT defaults to example-plugins/target/python/python_storage.wasm. Needs
# python3; installs componentize-py 0.25.1 with pip if it is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/python/python_storage.wasm}
exec python3 "$here/../../guest-sdk/python/build.py" "$here/python_storage.py" -o "$out"
