#!/usr/bin/env bash
# Installs the client libraries the client_libraries suite (tests/tests/client_libraries.rs)
# runs through slotgate, into the build tree, never globally:
#   Python (redis-py, tests/clients/python/requirements.txt)  -> TARGET/clients/python
#   Node.js (ioredis, node-redis, BullMQ, tests/clients/node)  -> TARGET/clients/node/node_modules
# where TARGET is $CARGO_TARGET_DIR, or target/ at the top of the repository.
# Idempotent: each half is skipped while a stamp holds the checksum of the files it came from.
# Needs python3 with pip, Node.js 20+ and npm (.ci/run installs them); fails loudly without.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
case "$target" in /*) ;; *) target="$repo/$target" ;; esac
dest="$target/clients"

fail() {
  echo "tests/clients/install.sh: $*" >&2
  exit 1
}

python3 -m pip --version >/dev/null 2>&1 ||
  fail "python3 with pip not found: apt-get install python3 python3-pip"
command -v node >/dev/null || fail "node not found: apt-get install nodejs npm"
command -v npm >/dev/null || fail "npm not found: apt-get install npm"
# ioredis 6 needs Node.js 20 (package.json "engines").
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || fail "Node.js 20 or newer needed, found $(node --version)"

# Python: `pip install --target`, used through PYTHONPATH.
py_dir="$dest/python"
py_sum="$(sha256sum <"$here/python/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$py_dir/.installed" 2>/dev/null)" != "$py_sum" ]; then
  echo "==> pip install -r tests/clients/python/requirements.txt (into $py_dir)"
  rm -rf "$py_dir"
  mkdir -p "$py_dir"
  python3 -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    --root-user-action=ignore --target "$py_dir" -r "$here/python/requirements.txt"
  echo "$py_sum" >"$py_dir/.installed"
fi

# Node.js: `npm ci` of the committed lock file, used through NODE_PATH.
node_dir="$dest/node"
node_sum="$(cat "$here/node/package.json" "$here/node/package-lock.json" |
  sha256sum | cut -d' ' -f1)"
if [ "$(cat "$node_dir/.installed" 2>/dev/null)" != "$node_sum" ]; then
  echo "==> npm ci tests/clients/node (into $node_dir)"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp "$here/node/package.json" "$here/node/package-lock.json" "$node_dir/"
  npm ci --prefix "$node_dir" --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$node_sum" >"$node_dir/.installed"
fi
