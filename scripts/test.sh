#!/usr/bin/env bash
# Runs every test of the workspace: builds the binaries first (the end-to-end suites in
# tests/ run the real `slotgate` binary from target/<profile>/), then `cargo test`.
# Needs redis-server, redis-cli, redis-benchmark, openssl and promtool on PATH (.ci/run installs them).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

for tool in redis-server redis-cli redis-benchmark openssl; do
  command -v "$tool" >/dev/null || {
    echo "$tool not found: apt-get install redis-server redis-tools openssl" >&2
    exit 1
  }
done
command -v promtool >/dev/null || {
  echo "promtool not found: apt-get install --no-install-recommends prometheus" >&2
  exit 1
}

# The end-to-end suites drive the real binary under redis-benchmark load: give them the
# optimised build (the debug build is used only by tests that ask for it).
step "cargo build --release -p slotgate"
cargo build --release -p slotgate
export SLOTGATE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/slotgate"

step "cargo build --workspace --bins"
cargo build --workspace --bins

step "cargo test --workspace --no-fail-fast"
cargo test --workspace --no-fail-fast

step "all tests passed"
