#!/usr/bin/env bash
# Local demo: a 6-node Redis Cluster (3 primaries + 3 replicas) on 127.0.0.1:7001-7006 and
# slotgate in front of it: TLS on 127.0.0.1:6380 with dev certificates made here (.demo/tls/),
# plaintext on 127.0.0.1:6381, metrics on 127.0.0.1:9090 (config/dev.yaml). Runs in the
# foreground until Ctrl-C, then stops everything.
#
#   scripts/demo.sh         start (installs redis-server/redis-tools if missing)
#   scripts/demo.sh stop    stop a demo left running and remove .demo/
# SLOTGATE_BIN=/path/to/slotgate skips the release build and runs that binary.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
PORTS=(7001 7002 7003 7004 7005 7006)
PROXY_PORT=6380
PLAIN_PORT=6381
ADMIN_PORT=9090
CONFIG=$ROOT/config/dev.yaml

say() { printf '==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

install_redis() {
  local tool missing=0
  for tool in redis-server redis-cli openssl; do command -v "$tool" >/dev/null || missing=1; done
  [ "$missing" = 0 ] && return
  say "installing redis-server, redis-tools and openssl"
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools openssl
}

# Pid in pid file $1 if that process is still the program named $2.
live_pid() {
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  if [ -n "$pid" ] && grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null; then echo "$pid"; fi
}

stop_demo() {
  [ -d "$DEMO" ] || return 0
  say "stopping the demo"
  local pids=() port pid
  pid=$(live_pid "$DEMO/slotgate.pid" slotgate); [ -n "$pid" ] && pids+=("$pid")
  for port in "${PORTS[@]}"; do
    pid=$(live_pid "$DEMO/node-$port/redis.pid" redis-server); [ -n "$pid" ] && pids+=("$pid")
  done
  if [ "${#pids[@]}" -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      local alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
  fi
  rm -rf "$DEMO"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Polls command "$@" every 0.2 s for up to 30 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 150); do "$@" && return 0; sleep 0.2; done
  die "timed out waiting for $what"
}

cluster_ok() {
  local port
  for port in "${PORTS[@]}"; do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

start_cluster() {
  local port dir
  for port in "${PORTS[@]}" "$PROXY_PORT" "$PLAIN_PORT" "$ADMIN_PORT"; do
    port_busy "$port" && die "port $port is in use (a demo still running? try: scripts/demo.sh stop)"
  done
  mkdir -p "$DEMO"
  say "starting redis-server on ports ${PORTS[*]} (data and logs in .demo/)"
  for port in "${PORTS[@]}"; do
    dir=$DEMO/node-$port
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --protected-mode no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 3000 \
      --save '' --appendonly no --repl-diskless-sync-delay 0 \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --daemonize yes
  done
  for port in "${PORTS[@]}"; do
    wait_for "redis-server on $port" redis-cli -p "$port" ping >/dev/null
  done
  say "creating the cluster (3 primaries, 3 replicas)"
  local seeds=()
  for port in "${PORTS[@]}"; do seeds+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${seeds[@]}" --cluster-replicas 1 --cluster-yes >"$DEMO/create.log" \
    || { cat "$DEMO/create.log"; die "redis-cli --cluster create failed"; }
  wait_for "cluster_state:ok on every node" cluster_ok
}

# Dev certificates: a CA and a server certificate for localhost and 127.0.0.1.
make_certs() {
  local t=$DEMO/tls
  mkdir -p "$t"
  say "making dev TLS certificates in .demo/tls/"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=slotgate demo CA" -keyout "$t/ca.key" -out "$t/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=localhost" -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$t/ext.cnf"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial \
    -days 30 -extfile "$t/ext.cnf" -out "$t/server.crt" 2>/dev/null
}

run_slotgate() {
  local bin=${SLOTGATE_BIN:-}
  if [ -z "$bin" ]; then
    say "building slotgate (cargo build --release -p slotgate; the first build takes several minutes)"
    cargo build --release -p slotgate
    bin=${CARGO_TARGET_DIR:-$ROOT/target}/release/slotgate
  fi
  [ -x "$bin" ] || die "no slotgate binary at $bin"
  say "starting slotgate on 127.0.0.1:$PROXY_PORT (TLS) with config/dev.yaml (log: .demo/slotgate.log)"
  "$bin" --config "$CONFIG" > >(tee "$DEMO/slotgate.log") 2>&1 &
  local pid=$!
  echo "$pid" >"$DEMO/slotgate.pid"
  local tls=(--tls --cacert "$DEMO/tls/ca.crt")
  for _ in $(seq 150); do
    redis-cli "${tls[@]}" -p "$PROXY_PORT" ping 2>/dev/null | grep -q PONG && break
    kill -0 "$pid" 2>/dev/null || die "slotgate exited; see .demo/slotgate.log"
    sleep 0.2
  done
  redis-cli "${tls[@]}" -p "$PROXY_PORT" ping 2>/dev/null | grep -q PONG \
    || die "slotgate does not answer PING over TLS"
  cat <<MSG

  slotgate is running. Connect with:

      redis-cli --tls --cacert $DEMO/tls/ca.crt -p $PROXY_PORT

  or from an application: rediss://127.0.0.1:$PROXY_PORT/0 trusting $DEMO/tls/ca.crt

  Plaintext (loopback): redis-cli -p $PLAIN_PORT    Metrics: curl http://127.0.0.1:$ADMIN_PORT/metrics
  The cluster directly: redis-cli -c -p 7001    Stop: Ctrl-C (or scripts/demo.sh stop)

MSG
  wait "$pid" || true
}

case "${1:-start}" in
  stop)
    stop_demo
    ;;
  start)
    install_redis
    stop_demo
    trap 'trap - INT TERM EXIT; stop_demo' INT TERM EXIT
    start_cluster
    make_certs
    run_slotgate
    ;;
  *)
    die "usage: scripts/demo.sh [start|stop]"
    ;;
esac
