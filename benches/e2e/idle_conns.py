#!/usr/bin/env python3
"""Memory per idle client connection: slotgate's resident memory with N idle TLS clients.

Starts a 3-primary + 3-replica Redis cluster and one slotgate with TLS on its client port
(the helpers of run.py), then measures slotgate's RSS (VmRSS in /proc/PID/status):

  1. before any client connects;
  2. after N TLS clients connected, each did a handshake and one PING, and went idle;
  3. after every client sent one large SET and a GET of it (--value-size bytes), and
     went idle again: grown buffers must have shrunk back;
  3b. with --malloc-trim, the same after gdb made slotgate call malloc_trim(0): what the
     allocator kept of the burst's peak as free pages, not what slotgate holds;
  4. after every client closed.

Prints MiB and KiB per connection for each step. Python 3 standard library only; one
process drives every client with non-blocking sockets and a selector. See
docs/benchmarks.md.

    cargo build --release -p slotgate && python3 benches/e2e/idle_conns.py
    python3 benches/e2e/idle_conns.py --clients 2000 --value-size 10000
"""

import argparse
import json
import os
import resource
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as e2e  # noqa: E402  (the cluster, certificate and slotgate helpers)

HOST = e2e.HOST
MODE = "slotgate-idle"
R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
# The burst's keys: spread over the slots (and so the primaries), few enough that the
# cluster holds only this many values.
BURST_KEYS = 64
# File descriptors besides the clients' (the harness, slotgate's upstream connections).
FD_SPARE = 256


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Measure slotgate's resident memory with many idle TLS clients, "
                    "before and after each client sent a large request.")
    ap.add_argument("--slotgate", default="target/release/slotgate",
                    help="slotgate binary (default: %(default)s)")
    ap.add_argument("--clients", type=e2e.positive, default=10_000,
                    help="client connections held open (default: %(default)s)")
    ap.add_argument("--workers", type=e2e.positive, default=1,
                    help="slotgate worker threads (default: %(default)s)")
    ap.add_argument("--value-size", type=e2e.positive, default=100_000,
                    help="bytes of the value each client SETs and GETs in the burst "
                         "(default: %(default)s)")
    ap.add_argument("--concurrency", type=e2e.positive, default=256,
                    help="clients connecting, or doing their burst, at once "
                         "(default: %(default)s; the listen backlog is 1024)")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds to wait before each measurement (default: %(default)s)")
    ap.add_argument("--malloc-trim", action="store_true",
                    help="after the burst, also measure after `gdb -p PID` made slotgate "
                         "call glibc's malloc_trim(0) (needs gdb and ptrace permission)")
    ap.add_argument("--json", metavar="FILE", help="write the measurements to FILE")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp dir (logs, config) after exit")
    ap.add_argument("--redis-server", default="redis-server", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def check_tools(args):
    for tool in (args.redis_server, "redis-cli", "openssl") + (("gdb",) if args.malloc_trim else ()):
        if shutil.which(tool) is None:
            raise e2e.HarnessError(f"`{tool}` not found on PATH (Redis 7 with TLS and the "
                                   f"openssl command are needed).")
    if not (os.path.isfile(args.slotgate) and os.access(args.slotgate, os.X_OK)):
        raise e2e.HarnessError(f"slotgate binary not found at `{args.slotgate}`. Build it "
                               f"first (cargo build --release -p slotgate) or pass --slotgate.")
    args.slotgate = os.path.abspath(args.slotgate)
    # start_slotgates reads these.
    args.baseline = None


def raise_fd_limit(need):
    """Soft RLIMIT_NOFILE up to the hard limit; slotgate and the nodes inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise e2e.HarnessError(f"{need} file descriptors needed, the hard limit is {hard} "
                               f"(raise it, e.g. `ulimit -Hn {need}` as root, or use fewer "
                               f"--clients)")
    if soft == resource.RLIM_INFINITY or soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid):
    """VmRSS of a process in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError as e:
        raise e2e.HarnessError(f"cannot read /proc/{pid}/status (slotgate gone?): {e}")
    raise e2e.HarnessError(f"no VmRSS in /proc/{pid}/status")


# --------------------------------------------------------------------------
# Clients: one generator per connection step, driven by a selector
# --------------------------------------------------------------------------
#
# A step is a generator that does non-blocking work on its socket and yields
# (socket, EVENT_READ | EVENT_WRITE) when that work would block. It always tries
# first and waits only after a want-read/want-write, so bytes already decrypted
# inside the SSL object are never waited for.

def reply_length(buf):
    """Length of the first complete RESP reply in buf (simple string, error, integer or
    bulk string), or None while incomplete."""
    end = buf.find(b"\r\n")
    if end < 0:
        return None
    if buf[:1] in (b"+", b"-", b":"):
        return end + 2
    if buf[:1] == b"$":
        n = int(buf[1:end])
        total = end + 2 + (n + 2 if n >= 0 else 0)
        return total if len(buf) >= total else None
    raise e2e.HarnessError(f"unexpected reply {bytes(buf[:40])!r}")


def exchange(sock, request):
    """Send one request, read its one reply (a generator; its value is the reply)."""
    view = memoryview(request)
    while view:
        try:
            view = view[sock.send(view):]
        except ssl.SSLWantWriteError:
            yield sock, W
        except ssl.SSLWantReadError:
            yield sock, R
    buf = bytearray()
    while True:
        n = reply_length(buf)
        if n is not None:
            if n != len(buf):
                raise e2e.HarnessError(f"more than one reply: {bytes(buf[:60])!r}")
            return bytes(buf)
        try:
            chunk = sock.recv(256 * 1024)
        except ssl.SSLWantReadError:
            yield sock, R
            continue
        except ssl.SSLWantWriteError:
            yield sock, W
            continue
        if not chunk:
            raise e2e.HarnessError("slotgate closed a client connection")
        buf += chunk


def expect(reply, wanted, what):
    if reply != wanted:
        raise e2e.HarnessError(f"{what}: expected {wanted!r}, got {reply[:80]!r}")


def connect(ctx, port, clients):
    """Connect one TLS client, PING, and keep it in `clients`."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setblocking(False)
    if raw.connect_ex((HOST, port)) not in (0, 115):  # 115: EINPROGRESS
        raise e2e.HarnessError("cannot connect to slotgate")
    yield raw, W
    err = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise e2e.HarnessError(f"connecting to slotgate: {os.strerror(err)}")
    sock = ctx.wrap_socket(raw, server_hostname=HOST, do_handshake_on_connect=False)
    while True:
        try:
            sock.do_handshake()
            break
        except ssl.SSLWantReadError:
            yield sock, R
        except ssl.SSLWantWriteError:
            yield sock, W
    clients.append(sock)
    expect((yield from exchange(sock, b"*1\r\n$4\r\nPING\r\n")), b"+PONG\r\n", "PING")


def burst(sock, i, value):
    """One large SET and a GET of it."""
    key = b"idle-conns:%d" % (i % BURST_KEYS)
    head = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (len(key), key, len(value))
    expect((yield from exchange(sock, head + value + b"\r\n")), b"+OK\r\n", "SET")
    get = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)
    expect((yield from exchange(sock, get)), b"$%d\r\n" % len(value) + value + b"\r\n", "GET")


def drive(steps, concurrency, timeout, on_progress=None):
    """Run the generators in `steps`, at most `concurrency` at once."""
    sel = selectors.DefaultSelector()
    steps = iter(steps)
    active, done = 0, 0
    deadline = time.monotonic() + timeout

    def advance(gen, sock=None):
        nonlocal active, done
        if sock is not None:
            sel.unregister(sock)
        try:
            sock, event = next(gen)
        except StopIteration:
            active -= 1
            done += 1
            return
        sel.register(sock, event, gen)

    def fill():
        nonlocal active
        while active < concurrency:
            gen = next(steps, None)
            if gen is None:
                return
            active += 1
            advance(gen)

    fill()
    while active:
        if time.monotonic() > deadline:
            raise e2e.HarnessError(f"timed out after {timeout}s with {active} clients "
                                   f"unfinished ({done} done)")
        for key, _ in sel.select(timeout=1.0):
            advance(key.data, key.fileobj)
        fill()
        if on_progress:
            on_progress(done)
    sel.close()
    return done


def malloc_trim(pid):
    """Make the process call glibc's malloc_trim(0): its free heap pages go back to the OS."""
    argv = ["gdb", "-p", str(pid), "-batch", "-ex", "call (int) malloc_trim(0)"]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    if r.returncode != 0:
        raise e2e.HarnessError(f"`{' '.join(argv)}` failed (status {r.returncode}):\n"
                               + (r.stdout + r.stderr).decode("utf-8", "replace")[-2000:])


def measure(label, pid, settle, base, n):
    time.sleep(settle)
    kib = rss_kib(pid)
    row = {"step": label, "rss_kib": kib}
    if base is not None:
        row["per_conn_kib"] = (kib - base) / n
    extra = f", {row['per_conn_kib']:.1f} KiB per connection" if base is not None else ""
    e2e.log(f"{label}: RSS {kib / 1024:.1f} MiB{extra}")
    return row


def print_report(rows, meta):
    print(f"\n## slotgate RSS with {meta['clients']} idle TLS clients\n")
    print(f"slotgate {meta['slotgate_version']}, workers: {meta['workers']}, "
          f"burst: SET + GET of {meta['value_size']} bytes per client, "
          f"{meta['concurrency']} clients at once\n")
    print("| step | RSS MiB | over idle slotgate MiB | KiB per connection |")
    print("|---|---:|---:|---:|")
    base = rows[0]["rss_kib"]
    for r in rows:
        per = f"{r['per_conn_kib']:.1f}" if "per_conn_kib" in r else "–"
        print(f"| {r['step']} | {r['rss_kib'] / 1024:.1f} | "
              f"{(r['rss_kib'] - base) / 1024:.1f} | {per} |")
    print(f"\npeak RSS during the burst: {meta['burst_peak_kib'] / 1024:.1f} MiB")


def main(argv):
    args = parse_args(argv)
    clients = []

    def close_clients():
        for s in clients:
            s.close()

    return e2e.harness_main(args, "slotgate-idle-",
                            lambda procs, tmp: measure_all(args, procs, tmp, clients),
                            on_cleanup=close_clients)


def measure_all(args, procs, tmp, clients):
    """The measurements (see the module's doc), with the client sockets kept in `clients`;
    returns the exit status."""
    check_tools(args)
    raise_fd_limit(args.clients + FD_SPARE)
    certs = e2e.make_certs(tmp)
    e2e.log("starting 6-node cluster")
    nodes = e2e.start_cluster(procs, tmp, args)
    nodes.sort(key=lambda n: n["role"] != "primary")
    # Like the slotgate-tls mode of run.py, with room for every client.
    e2e.MODES[MODE] = dict(
        e2e.MODES["slotgate-tls"], check_metrics=False,
        config_extra=e2e.MODES["slotgate-tls"]["config_extra"]
        + f"limits:\n  max_clients: {args.clients + FD_SPARE}\n")
    sg = e2e.start_slotgates(procs, tmp, args, nodes, [MODE], certs)[MODE]
    pid = sg["proc"].pid
    e2e.log(f"slotgate up on :{sg['port']} (pid {pid}, workers: {args.workers})")

    ctx = ssl.create_default_context(cafile=certs["ca"])
    n = args.clients
    value = os.urandom(args.value_size // 2).hex().encode()[:args.value_size].ljust(
        args.value_size, b"x")
    rows = [measure("before any client", pid, args.settle, None, n)]
    base = rows[0]["rss_kib"]

    t0 = time.monotonic()
    drive((connect(ctx, sg["port"], clients) for _ in range(n)), args.concurrency,
          timeout=600)
    e2e.log(f"{n} clients connected and PINGed in {time.monotonic() - t0:.1f}s")
    rows.append(measure(f"{n} idle clients (handshake + PING)", pid, args.settle, base, n))

    peak = [0]

    def sample(_done):
        peak[0] = max(peak[0], rss_kib(pid))

    t0 = time.monotonic()
    drive((burst(s, i, value) for i, s in enumerate(clients)), args.concurrency,
          timeout=1200, on_progress=sample)
    e2e.log(f"burst done in {time.monotonic() - t0:.1f}s")
    rows.append(measure(f"{n} idle clients after a {args.value_size}-byte SET + GET each",
                        pid, args.settle, base, n))
    if args.malloc_trim:
        malloc_trim(pid)
        rows.append(measure("the same after malloc_trim(0)", pid, args.settle, base, n))

    for s in clients:
        s.close()
    clients.clear()
    rows.append(measure("every client closed", pid, args.settle, None, n))

    meta = {"clients": n, "workers": args.workers, "value_size": args.value_size,
            "concurrency": args.concurrency, "burst_peak_kib": peak[0],
            "slotgate_version": e2e.version_of([args.slotgate, "--version"]),
            "slotgate_binary": args.slotgate,
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    print_report(rows, meta)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
        e2e.log(f"measurements written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
