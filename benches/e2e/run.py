#!/usr/bin/env python3
"""End-to-end benchmark: Redis Cluster direct vs. through slotgate.

Starts its own 6-node cluster (3 primaries + 3 replicas) on free loopback
ports, starts slotgate in front of it, and runs redis-benchmark against both
in interleaved rounds. Prints Markdown tables (median ops/s, p50/p99, CPU per
request) and optionally writes every raw number to a JSON file.

Python 3 standard library only. See docs/benchmarks.md.

    cargo build --release -p slotgate && python3 benches/e2e/run.py
"""

import argparse
import atexit
import csv
import ctypes
import io
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
CSV_HEADER = ["test", "rps", "avg_latency_ms", "min_latency_ms", "p50_latency_ms",
              "p95_latency_ms", "p99_latency_ms", "max_latency_ms"]

# Lines redis-benchmark may print that are not results and not errors.
# Anything else (apart from the CSV) fails the run.
# --cluster mode prints the primaries it found before the CSV.
INFO_LINES = (
    re.compile(r"Cluster has \d+ master nodes:"),
    re.compile(r"Master \d+: [0-9a-f]{40} \S+:\d+"),
)
BENIGN_PREFIXES = (
    # CONFIG GET save/appendonly refused: redis-benchmark only warns.
    "WARNING: Could not fetch server CONFIG",
)


class HarnessError(Exception):
    pass


class Interrupted(Exception):
    def __init__(self, signum):
        super().__init__(f"signal {signal.Signals(signum).name}")
        self.signum = signum


def log(msg):
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Process management
# --------------------------------------------------------------------------

def _pdeathsig():
    """Runs in the child before exec: die with SIGKILL if the harness dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Procs:
    """Every long-running process the harness started; all stopped at exit."""

    def __init__(self):
        self.procs = []  # (name, Popen, logfile)
        self.stopped = False

    def start(self, name, argv, logpath, cwd=None):
        logf = open(logpath, "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                 stderr=subprocess.STDOUT, cwd=cwd,
                                 start_new_session=True, preexec_fn=_pdeathsig)
        except OSError as e:
            logf.close()
            raise HarnessError(f"cannot start {name} ({argv[0]}): {e}")
        self.procs.append((name, p, logf))
        return p

    def stop_all(self):
        if self.stopped:
            return
        self.stopped = True
        for _, p, _ in self.procs:
            if p.poll() is None:
                try:
                    p.terminate()
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for _, p, _ in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                    p.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        for _, _, f in self.procs:
            f.close()


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("    " + l for l in lines[-n:])
    except OSError:
        return "    (no log)"


def cpu_ticks(pid):
    """utime+stime of a whole process (all threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError as e:
        raise HarnessError(f"cannot read /proc/{pid}/stat (process gone?): {e}")
    # comm (field 2) may contain spaces; fields after the last ')' are fixed.
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return int(fields[11]) + int(fields[12])


# --------------------------------------------------------------------------
# Ports, redis-cli helpers, cluster start-up
# --------------------------------------------------------------------------

def free_ports(count, need_bus):
    """Ports from the OS. With need_bus, port+10000 (cluster bus) is free too."""
    held, ports = [], []
    try:
        attempts = 0
        while len(ports) < count:
            attempts += 1
            if attempts > 1000:
                raise HarnessError("could not find enough free loopback ports")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            if need_bus:
                if port + 10000 > 65535:
                    s.close()
                    continue
                b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    b.bind((HOST, port + 10000))
                except OSError:
                    s.close()
                    b.close()
                    continue
                held.append(b)
            held.append(s)
            ports.append(port)
    finally:
        for s in held:
            s.close()
    return ports


def redis_cli(port, *args, timeout=10):
    r = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), *args],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def wait_for(what, check, timeout, procs_to_watch=()):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for name, p, logpath in procs_to_watch:
            if p.poll() is not None:
                raise HarnessError(f"{name} exited with status {p.returncode} while "
                                   f"waiting for {what}; last log lines:\n{tail(logpath)}")
        try:
            ok, last = check()
        except (subprocess.TimeoutExpired, OSError) as e:
            ok, last = False, str(e)
        if ok:
            return
        time.sleep(0.1)
    raise HarnessError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def pinged(port):
    rc, out, err = redis_cli(port, "ping", timeout=2)
    return rc == 0 and out.strip() == "PONG", (out + err).strip()


def start_cluster(procs, tmp, args):
    ports = free_ports(6, need_bus=True)
    nodes = []
    for port in ports:
        d = os.path.join(tmp, f"redis-{port}")
        os.mkdir(d)
        logpath = os.path.join(d, "redis.log")
        argv = [args.redis_server, "--port", str(port), "--bind", HOST,
                "--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
                "--dir", d, "--daemonize", "no", "--protected-mode", "no"]
        p = procs.start(f"redis-server :{port}", argv, logpath, cwd=d)
        nodes.append({"port": port, "proc": p, "log": logpath})
    watch = [(f"redis-server :{n['port']}", n["proc"], n["log"]) for n in nodes]
    for n in nodes:
        wait_for(f"redis-server :{n['port']} to answer PING",
                 lambda n=n: pinged(n["port"]), 20, watch)

    create = ["redis-cli", "--cluster", "create", *[f"{HOST}:{p}" for p in ports],
              "--cluster-replicas", "1", "--cluster-yes"]
    r = subprocess.run(create, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    if r.returncode != 0 or "[OK] All 16384 slots covered" not in out:
        raise HarnessError(f"redis-cli --cluster create failed (status {r.returncode}):\n{out}")

    def all_ok():
        for n in nodes:
            rc, info, err = redis_cli(n["port"], "cluster", "info", timeout=2)
            if rc != 0:
                return False, err
            kv = dict(l.split(":", 1) for l in info.split() if ":" in l)
            if (kv.get("cluster_state") != "ok" or kv.get("cluster_known_nodes") != "6"
                    or kv.get("cluster_slots_ok") != "16384"):
                return False, f":{n['port']} {kv}"
        return True, None

    wait_for("cluster_state:ok on all nodes", all_ok, 60, watch)

    # Every node must agree on the roles: 3 primaries with slots, 3 replicas
    # (redis-benchmark --cluster and slotgate both read the topology from a node,
    # and right after `create` a replica can still look like a slotless master).
    def roles_agree():
        views = set()
        for n in nodes:
            rc, out, err = redis_cli(n["port"], "cluster", "nodes", timeout=2)
            if rc != 0:
                return False, err
            prim, repl = set(), set()
            for line in out.splitlines():
                f = line.split()
                if len(f) < 8:
                    continue
                port = int(f[1].split("@")[0].rsplit(":", 1)[1])
                flags = f[2].split(",")
                if "master" in flags and len(f) > 8:
                    prim.add(port)
                elif "slave" in flags:
                    repl.add(port)
            views.add((frozenset(prim), frozenset(repl)))
        if len(views) == 1:
            ((prim, repl),) = views
            if len(prim) == 3 and len(repl) == 3:
                return True, sorted(prim)
        return False, [(sorted(p), sorted(r)) for p, r in views]

    wait_for("all nodes to agree on 3 primaries + 3 replicas", roles_agree, 30, watch)
    _, prim = roles_agree()

    # Replicas finished their initial sync (no RDB transfer during the first run).
    def synced():
        for n in nodes:
            if n["port"] in prim:
                continue
            rc, out, err = redis_cli(n["port"], "info", "replication", timeout=2)
            if rc != 0 or "master_link_status:up" not in out:
                return False, f":{n['port']} not in sync"
        return True, None

    wait_for("replicas to finish their initial sync", synced, 30, watch)
    for n in nodes:
        n["role"] = "primary" if n["port"] in prim else "replica"
    return nodes


def start_slotgate(procs, tmp, args, nodes):
    port = free_ports(1, need_bus=False)[0]
    primaries = [n["port"] for n in nodes if n["role"] == "primary"]
    cfg = os.path.join(tmp, "slotgate.yaml")
    with open(cfg, "w") as f:
        f.write(f'listen: "{HOST}:{port}"\n'
                f'upstream:\n'
                f'  seeds: ["{HOST}:{primaries[0]}", "{HOST}:{primaries[1]}"]\n'
                f'workers: {args.workers}\n'
                f'log: {{ level: warn }}\n')
    logpath = os.path.join(tmp, "slotgate.log")
    p = procs.start("slotgate", [args.slotgate, "--config", cfg], logpath, cwd=tmp)
    wait_for(f"slotgate on :{port} to answer PING", lambda: pinged(port), 30,
             [("slotgate", p, logpath)])
    return {"port": port, "proc": p, "log": logpath, "config": cfg}


# --------------------------------------------------------------------------
# One redis-benchmark run
# --------------------------------------------------------------------------

def parse_benchmark(out, err, rc, argv):
    """Returns [row dict]; raises HarnessError on anything but clean CSV."""
    text = out + err
    cmd = " ".join(argv)
    rows, warnings = [], []
    header_seen = False
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith('"test"'):
            got = next(csv.reader([s]))
            if got != CSV_HEADER:
                raise HarnessError(f"unexpected CSV header from `{cmd}`:\n  {s}")
            header_seen = True
            continue
        if any(p.fullmatch(s) for p in INFO_LINES):
            continue
        if s.startswith(BENIGN_PREFIXES):
            warnings.append(s)
            continue
        if s.startswith('"') and header_seen:
            vals = next(csv.reader([s]))
            if len(vals) != len(CSV_HEADER):
                raise HarnessError(f"bad CSV row from `{cmd}`:\n  {s}")
            d = dict(zip(CSV_HEADER, vals))
            try:
                rows.append({"test": d["test"], "rps": float(d["rps"]),
                             "avg_ms": float(d["avg_latency_ms"]),
                             "p50_ms": float(d["p50_latency_ms"]),
                             "p95_ms": float(d["p95_latency_ms"]),
                             "p99_ms": float(d["p99_latency_ms"]),
                             "max_ms": float(d["max_latency_ms"])})
            except ValueError:
                raise HarnessError(f"bad number in CSV row from `{cmd}`:\n  {s}")
            continue
        # Anything else is an error message (redis-benchmark prints one and stops).
        raise HarnessError(f"redis-benchmark reported an error (exit {rc}) for `{cmd}`:\n"
                           f"  {s}\nfull output:\n{text}")
    if rc != 0:
        raise HarnessError(f"redis-benchmark exited with status {rc} for `{cmd}`; "
                           f"output:\n{text or '(none)'}")
    if not rows:
        raise HarnessError(f"redis-benchmark printed no results for `{cmd}`; output:\n"
                           f"{text or '(none)'}")
    for r in rows:
        if r["rps"] <= 0:
            raise HarnessError(f"redis-benchmark reported 0 ops/s for `{cmd}`:\n{text}")
    return rows, warnings


def run_one(mode, test, pipeline, n, args, nodes, sg):
    if mode == "direct":
        target = ["--cluster", "-h", HOST, "-p", str(nodes[0]["port"])]
    else:
        target = ["-h", HOST, "-p", str(sg["port"])]
    argv = [args.redis_benchmark, *target, "--threads", "1", "-t", test,
            "-c", str(args.clients), "-d", str(args.data_size), "-r", "100000",
            "-P", str(pipeline), "-n", str(n), "--csv", "-q"]
    redis_pids = [nd["proc"].pid for nd in nodes]
    sg_pid = sg["proc"].pid

    r0 = {p: cpu_ticks(p) for p in redis_pids}
    s0 = cpu_ticks(sg_pid)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=args.run_timeout)
    except subprocess.TimeoutExpired as e:
        partial = ((e.stdout or b"") + (e.stderr or b"")).decode("utf-8", "replace")
        raise HarnessError(f"redis-benchmark timed out after {args.run_timeout}s "
                           f"(it spins forever when it loses its server): "
                           f"`{' '.join(argv)}`; output so far:\n{partial}")
    wall = time.monotonic() - t0
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s1 = cpu_ticks(sg_pid)
    r1 = {p: cpu_ticks(p) for p in redis_pids}

    rows, warnings = parse_benchmark(res.stdout.decode("utf-8", "replace"),
                                     res.stderr.decode("utf-8", "replace"),
                                     res.returncode, argv)
    for nd in nodes:
        if nd["proc"].poll() is not None:
            raise HarnessError(f"redis-server :{nd['port']} died during the run; log:\n"
                               f"{tail(nd['log'])}")
    if sg["proc"].poll() is not None:
        raise HarnessError(f"slotgate died during the run; log:\n{tail(sg['log'])}")

    total_requests = n * len(rows)
    return {
        "mode": mode, "test": test, "pipeline": pipeline, "requests": n,
        "total_requests": total_requests, "argv": argv, "wall_s": wall,
        "rows": rows, "warnings": warnings,
        "slotgate_cpu_s": (s1 - s0) / CLK_TCK,
        "redis_cpu_s": sum(r1[p] - r0[p] for p in redis_pids) / CLK_TCK,
        "redis_cpu_s_by_port": {str(nd["port"]): (r1[nd["proc"].pid] - r0[nd["proc"].pid]) / CLK_TCK
                                for nd in nodes},
        "client_cpu_s": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
    }


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def us_per_req(cpu_s, reqs):
    return cpu_s / reqs * 1e6 if reqs else float("nan")


def fmt_ops(x):
    return f"{x:,.0f}"


def summarize(runs, test_name, pipeline):
    """Per-mode medians for one CSV test name at one pipeline depth."""
    out = {}
    for mode in ("direct", "slotgate"):
        rs = [r for r in runs if r["mode"] == mode and r["pipeline"] == pipeline
              and any(row["test"] == test_name for row in r["rows"])]
        rows = [next(row for row in r["rows"] if row["test"] == test_name) for r in rs]
        out[mode] = {
            "rounds": len(rs),
            "ops": med([row["rps"] for row in rows]),
            "p50": med([row["p50_ms"] for row in rows]),
            "p99": med([row["p99_ms"] for row in rows]),
            "sg_us": med([us_per_req(r["slotgate_cpu_s"], r["total_requests"]) for r in rs]),
            "redis_us": med([us_per_req(r["redis_cpu_s"], r["total_requests"]) for r in rs]),
            "client_us": med([us_per_req(r["client_cpu_s"], r["total_requests"]) for r in rs]),
            "wall": med([r["wall_s"] for r in rs]),
            "per_round": [(r["round"], row, r) for r, row in zip(rs, rows)],
        }
    d, s = out["direct"], out["slotgate"]
    out["ratio"] = s["ops"] / d["ops"] if d["ops"] else float("nan")
    # Paired ratios: same round, back to back -> less sensitive to machine drift.
    by_round_d = {rnd: row["rps"] for rnd, row, _ in d["per_round"]}
    out["paired"] = [row["rps"] / by_round_d[rnd] for rnd, row, _ in s["per_round"]
                     if rnd in by_round_d]
    return out


def print_report(runs, meta):
    print()
    print(f"## slotgate end-to-end benchmark")
    print()
    print(f"{meta['when']} · {meta['cpus']} CPUs · {meta['redis_version']} · "
          f"{meta['slotgate_version']} (workers: {meta['args']['workers']}) · "
          f"rounds: {meta['args']['rounds']} · -c {meta['args']['clients']} "
          f"-d {meta['args']['data_size']} -r 100000 --threads 1 · "
          f"load avg before: {meta['loadavg_before']}")
    summary_rows = []
    seen = []
    for r in runs:
        for row in r["rows"]:
            key = (row["test"], r["pipeline"])
            if key not in seen:
                seen.append(key)
    for test_name, pipeline in seen:
        s = summarize(runs, test_name, pipeline)
        d, g = s["direct"], s["slotgate"]
        print()
        print(f"### {test_name}, -P {pipeline}")
        print()
        print("| mode | ops/s (median) | vs direct | p50 ms | p99 ms | slotgate CPU µs/req "
              "| redis CPU µs/req | client CPU µs/req | wall s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, m in (("direct", d), ("slotgate", g)):
            ratio = 1.0 if name == "direct" else s["ratio"]
            sg_col = "–" if name == "direct" else f"{m['sg_us']:.2f}"
            print(f"| {name} | {fmt_ops(m['ops'])} | {ratio:.2f} | {m['p50']:.3f} | "
                  f"{m['p99']:.3f} | {sg_col} | {m['redis_us']:.2f} | {m['client_us']:.2f} | "
                  f"{m['wall']:.2f} |")
        paired = " ".join(f"{x:.2f}" for x in s["paired"])
        print()
        print(f"Per-round slotgate/direct: {paired} (median {med(s['paired']):.2f})")
        print()
        print("| round | mode | ops/s | p50 ms | p99 ms | slotgate CPU s | redis CPU s "
              "| client CPU s | wall s |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        per = sorted([(rnd, r["order"], "direct", row, r) for rnd, row, r in d["per_round"]] +
                     [(rnd, r["order"], "slotgate", row, r) for rnd, row, r in g["per_round"]],
                     key=lambda x: (x[0], x[1]))
        for rnd, _, mode, row, r in per:
            print(f"| {rnd} | {mode} | {fmt_ops(row['rps'])} | {row['p50_ms']:.3f} | "
                  f"{row['p99_ms']:.3f} | {r['slotgate_cpu_s']:.2f} | {r['redis_cpu_s']:.2f} | "
                  f"{r['client_cpu_s']:.2f} | {r['wall_s']:.2f} |")
        summary_rows.append((test_name, pipeline, s))
    print()
    print("### Summary")
    print()
    print("| test | -P | direct ops/s | slotgate ops/s | ratio | p50 ms d/s | p99 ms d/s "
          "| slotgate µs/req | redis µs/req d/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for test_name, pipeline, s in summary_rows:
        d, g = s["direct"], s["slotgate"]
        print(f"| {test_name} | {pipeline} | {fmt_ops(d['ops'])} | {fmt_ops(g['ops'])} | "
              f"{s['ratio']:.2f} | {d['p50']:.3f} / {g['p50']:.3f} | "
              f"{d['p99']:.3f} / {g['p99']:.3f} | {g['sg_us']:.2f} | "
              f"{d['redis_us']:.2f} / {g['redis_us']:.2f} |")
    print(flush=True)
    return [{"test": t, "pipeline": p,
             "direct": {k: v for k, v in s["direct"].items() if k != "per_round"},
             "slotgate": {k: v for k, v in s["slotgate"].items() if k != "per_round"},
             "ratio_of_medians": s["ratio"], "paired_ratios": s["paired"]}
            for t, p, s in summary_rows]


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def csv_list(s):
    return [x.strip() for x in s.split(",") if x.strip()]


def int_list(s):
    try:
        out = [int(x) for x in csv_list(s)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {s!r}")
    if not out or any(x < 1 for x in out):
        raise argparse.ArgumentTypeError(f"need positive integers: {s!r}")
    return out


def positive(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return v


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Compare redis-benchmark against a Redis Cluster directly and "
                    "through slotgate, in interleaved rounds.")
    ap.add_argument("--slotgate", default="target/release/slotgate",
                    help="slotgate binary (default: %(default)s)")
    ap.add_argument("--workers", type=positive, default=1,
                    help="slotgate worker threads (default: %(default)s)")
    ap.add_argument("--tests", type=csv_list, default=["get", "set"],
                    help="redis-benchmark -t tests, comma-separated (default: get,set)")
    ap.add_argument("--pipelines", type=int_list, default=[1, 16],
                    help="pipeline depths -P, comma-separated (default: 1,16)")
    ap.add_argument("--rounds", type=positive, default=5,
                    help="interleaved rounds per (test, -P) (default: %(default)s)")
    ap.add_argument("--requests-p1", type=positive, default=200_000,
                    help="-n for -P 1 (default: %(default)s)")
    ap.add_argument("--requests-pipelined", type=positive, default=2_000_000,
                    help="-n for -P > 1 (default: %(default)s)")
    ap.add_argument("--clients", type=positive, default=50,
                    help="redis-benchmark -c (default: %(default)s)")
    ap.add_argument("--data-size", type=positive, default=64,
                    help="redis-benchmark -d (default: %(default)s)")
    ap.add_argument("--run-timeout", type=positive, default=600,
                    help="seconds before one redis-benchmark run counts as hung "
                         "(default: %(default)s)")
    ap.add_argument("--json", metavar="FILE", help="write all raw data to FILE")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp dir (logs, configs) after exit")
    ap.add_argument("--redis-server", default="redis-server", help=argparse.SUPPRESS)
    ap.add_argument("--redis-benchmark", default="redis-benchmark", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.tests:
        ap.error("--tests is empty")
    return args


def check_tools(args):
    for tool in (args.redis_server, args.redis_benchmark, "redis-cli"):
        if shutil.which(tool) is None:
            raise HarnessError(f"`{tool}` not found on PATH. Install Redis 7 "
                               f"(Debian/Ubuntu: `apt-get install redis-server redis-tools`).")
    sg = args.slotgate
    if not (os.path.isfile(sg) and os.access(sg, os.X_OK)):
        raise HarnessError(f"slotgate binary not found at `{sg}`. Build it first:\n"
                           f"    cargo build --release -p slotgate\n"
                           f"or pass --slotgate PATH.")
    args.slotgate = os.path.abspath(sg)


def version_of(argv):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        return (r.stdout or r.stderr).decode("utf-8", "replace").strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def main(argv):
    args = parse_args(argv)
    procs = Procs()
    tmp = None

    def cleanup():
        procs.stop_all()
        if tmp and os.path.isdir(tmp) and not getattr(cleanup, "done", False):
            cleanup.done = True
            if args.keep_tmp:
                log(f"kept temp dir {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    def on_signal(signum, _frame):
        raise Interrupted(signum)

    atexit.register(cleanup)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    try:
        check_tools(args)
        tmp = tempfile.mkdtemp(prefix="slotgate-e2e-")
        log(f"temp dir {tmp}")
        meta = {
            "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "host": platform.node(), "kernel": platform.release(),
            "cpus": os.cpu_count(), "loadavg_before": " ".join(
                f"{x:.2f}" for x in os.getloadavg()),
            "redis_version": version_of([args.redis_server, "--version"]).split(" sha=")[0],
            "redis_benchmark_version": version_of([args.redis_benchmark, "--version"]),
            "slotgate_version": version_of([args.slotgate, "--version"]),
            "slotgate_binary": args.slotgate, "clk_tck": CLK_TCK,
            "args": vars(args),
        }
        log("starting 6-node cluster")
        t0 = time.monotonic()
        nodes = start_cluster(procs, tmp, args)
        log(f"cluster ok after {time.monotonic() - t0:.1f}s: primaries " + ", ".join(
            str(n["port"]) for n in nodes if n["role"] == "primary") + "; replicas " +
            ", ".join(str(n["port"]) for n in nodes if n["role"] == "replica"))
        # redis-benchmark --cluster: point it at a primary.
        nodes.sort(key=lambda n: n["role"] != "primary")
        sg = start_slotgate(procs, tmp, args, nodes)
        log(f"slotgate up on :{sg['port']} (workers: {args.workers})")
        meta["ports"] = {"redis": {str(n["port"]): n["role"] for n in nodes},
                         "slotgate": sg["port"]}

        runs = []
        for test in args.tests:
            for pipeline in args.pipelines:
                n = args.requests_p1 if pipeline == 1 else args.requests_pipelined
                for rnd in range(1, args.rounds + 1):
                    order = ("direct", "slotgate") if rnd % 2 == 1 else ("slotgate", "direct")
                    for i, mode in enumerate(order):
                        r = run_one(mode, test, pipeline, n, args, nodes, sg)
                        r["round"], r["order"] = rnd, i
                        runs.append(r)
                        for w in r["warnings"]:
                            log(f"note ({mode}): {w}")
                        log(f"{test} -P {pipeline} round {rnd}/{args.rounds} {mode:8s}: "
                            + ", ".join(f"{row['test']} {fmt_ops(row['rps'])} ops/s "
                                        f"p50 {row['p50_ms']:.3f} p99 {row['p99_ms']:.3f}"
                                        for row in r["rows"])
                            + f" (wall {r['wall_s']:.2f}s)")
        meta["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        summary = print_report(runs, meta)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"meta": meta, "summary": summary, "runs": runs}, f, indent=2)
            log(f"raw data written to {args.json}")
        return 0
    except HarnessError as e:
        print(f"\nFAIL: {e}", file=sys.stderr, flush=True)
        if args.keep_tmp is False and tmp:
            print("(re-run with --keep-tmp to keep logs and configs)", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt) as e:
        print(f"\ninterrupted ({e or 'SIGINT'}); stopping everything", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:
        # Ignore further signals while tearing down so cleanup runs to the end.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
