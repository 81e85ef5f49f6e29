#!/usr/bin/env bash
# Instructions slotgate executes per request, counted by callgrind (exact and repeatable on a
# noisy machine, unlike wall-clock throughput). Starts a 3-primary cluster on free ports, runs
# slotgate under `valgrind --tool=callgrind` once per variant and load size, drives it with
# redis-benchmark, and reports the marginal instructions per request:
#   (Ir at N2 requests - Ir at N1 requests) / (N2 - N1)
# so start-up and shutdown cancel out.
#
#   benches/e2e/instructions.sh [TEST] [PIPELINE]      (defaults: get 1)
# Variants: metrics on (admin port, the default) and off (admin.metrics: false).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TEST=${1:-get}
PIPE=${2:-1}
N1=${N1:-5000}
N2=${N2:-25000}
# CLIENTS (default 10): redis-benchmark -c. CONFIG_EXTRA: YAML lines added to slotgate's
# config (e.g. CONFIG_EXTRA='cache: { enabled: true }' for the read cache).
# KEYSPACE (default 10000): redis-benchmark -r.
BIN=${SLOTGATE_BIN:-target/release/slotgate}
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install valgrind" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release -p slotgate
TMP=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ports=()
while [ "${#ports[@]}" -lt 3 ]; do
  p=$(free_port)
  [ "$p" -lt 55000 ] && ports+=("$p")
done
for p in "${ports[@]}"; do
  mkdir -p "$TMP/$p"
  redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --save '' --appendonly no \
    --dir "$TMP/$p" --daemonize no --logfile "$TMP/$p/log" &
  pids+=($!)
done
for p in "${ports[@]}"; do
  for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-yes >/dev/null
for _ in $(seq 100); do
  redis-cli -p "${ports[0]}" cluster info | grep -q cluster_state:ok && break; sleep 0.1
done

run() { # variant requests -> Ir
  local variant=$1 n=$2 port admin cfg
  port=$(free_port); admin=$(free_port); cfg=$TMP/$variant-$n.yaml
  {
    echo "listen: \"127.0.0.1:$port\""
    echo "upstream: { seeds: [\"127.0.0.1:${ports[0]}\"] }"
    echo "workers: 1"
    echo "log: { level: warn }"
    echo "admin:"
    echo "  listen: \"127.0.0.1:$admin\""
    [ "$variant" = off ] && echo "  metrics: false"
    [ -n "${CONFIG_EXTRA:-}" ] && echo "$CONFIG_EXTRA"
  } >"$cfg"
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg-$variant-$n" "$BIN" --config "$cfg" \
    2>"$TMP/vg-$variant-$n.log" &
  local vg=$!
  for _ in $(seq 600); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  redis-benchmark -p "$port" -t "$TEST" -n "$n" -c "${CLIENTS:-10}" -P "$PIPE" -r "${KEYSPACE:-10000}" -q >/dev/null
  kill -TERM "$vg"; wait "$vg" || true
  grep -m1 '^summary:' "$TMP/cg-$variant-$n" | awk '{print $2}'
}

for variant in on off; do
  a=$(run "$variant" "$N1"); b=$(run "$variant" "$N2")
  echo "$variant $(( (b - a) / (N2 - N1) ))"
done | awk -v t="$TEST" -v p="$PIPE" '
  { v[$1]=$2; printf "metrics %-3s: %d instructions per %s request (-P %s)\n", $1, $2, t, p }
  END { if (v["off"] > 0) printf "metrics on / off = %.3f\n", v["on"] / v["off"] }'
