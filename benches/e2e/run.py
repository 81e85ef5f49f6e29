#!/usr/bin/env python3
"""End-to-end benchmark: Redis Cluster direct vs. through slotgate.

Starts its own 6-node cluster (3 primaries + 3 replicas) on free loopback
ports, starts one slotgate per slotgate mode in front of it (see MODES), and
runs redis-benchmark against every mode in interleaved rounds. Prints Markdown
tables (median ops/s, p50/p99, CPU per request, ratios to direct) and
optionally writes every raw number to a JSON file.

Python 3 standard library only. See docs/benchmarks.md.

    cargo build --release -p slotgate && python3 benches/e2e/run.py
    python3 benches/e2e/run.py --modes direct,slotgate,slotgate-nometrics
    python3 benches/e2e/run.py --modes direct,direct-tls,slotgate,slotgate-tls
    python3 benches/e2e/run.py --modes direct,slotgate,slotgate-cache --keyspace 10000 --preload
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
import urllib.error
import urllib.request

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


# --------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------
#
# One entry per mode that --modes can name. A mode with "slotgate": True gets
# its own slotgate process, started once before the rounds, with its own
# listen port, admin port, config file and log file.
#
#   config_extra  YAML appended to the generated slotgate config. Placeholders:
#                 {admin} = "127.0.0.1:<free port>" for this mode, {dir} = the
#                 mode's own directory (for files such as certificates), and,
#                 in a run with a TLS mode, {ca}, {cert}, {key} = the run's CA
#                 certificate and server certificate / key (see make_certs).
#   bench_args    extra redis-benchmark arguments (same placeholders; a direct
#                 mode has only {ca}, {cert}, {key}).
#   tls           the client speaks TLS: redis-benchmark (and the start-up PING)
#                 use the bench_args' --tls, a direct mode targets a node's
#                 tls-port. Any such mode makes the run generate certificates
#                 and give every node a tls-port (see start_cluster).
#   admin         the config has an admin port: wait for /readyz at start-up.
#   check_metrics scrape /metrics after the rounds and compare the total of
#                 slotgate_commands_total with the requests the harness sent.
#   setup         None, or a function(mode_dir) run before the config is
#                 written.
#
# slotgate's upstream is plaintext in every mode (it seeds from the nodes'
# plaintext ports, and Redis answers plaintext clients with plaintext ports).

ADMIN = 'admin:\n  listen: "{admin}"\n'
TLS_CLIENT = ["--tls", "--cacert", "{ca}"]

MODES = {
    # redis-benchmark --cluster straight at the cluster; no slotgate involved.
    "direct": {"slotgate": False, "tls": False, "admin": False, "check_metrics": False,
               "setup": None, "config_extra": "", "bench_args": []},
    # redis-benchmark --tls --cluster at a node's tls-port; no slotgate involved.
    "direct-tls": {"slotgate": False, "tls": True, "admin": False, "check_metrics": False,
                   "setup": None, "config_extra": "", "bench_args": TLS_CLIENT},
    # Production-like: admin port on, metrics on (the default).
    "slotgate": {"slotgate": True, "tls": False, "admin": True, "check_metrics": True,
                 "setup": None, "config_extra": ADMIN, "bench_args": []},
    # Same, with the per-command / per-upstream-request metrics switched off.
    "slotgate-nometrics": {"slotgate": True, "tls": False, "admin": True,
                           "check_metrics": False, "setup": None,
                           "config_extra": ADMIN + "  metrics: false\n", "bench_args": []},
    # Exactly like "slotgate", but running the --baseline binary: an interleaved A/B of
    # two builds (e.g. before and after a change) in one run.
    "slotgate-baseline": {"slotgate": True, "tls": False, "admin": True, "check_metrics": True,
                          "setup": None, "config_extra": ADMIN, "bench_args": [],
                          "binary": "baseline"},
    # Like "slotgate", but clients connect over TLS (rustls, the run's server
    # certificate); the upstream stays plaintext.
    "slotgate-tls": {"slotgate": True, "tls": True, "admin": True, "check_metrics": True,
                     "setup": None,
                     "config_extra": ADMIN + 'tls:\n  cert: "{cert}"\n  key: "{key}"\n',
                     "bench_args": TLS_CLIENT},
    # Like "slotgate", with the read cache on (docs/cache.md); pair it with --preload so
    # GET finds values to cache.
    "slotgate-cache": {"slotgate": True, "tls": False, "admin": True, "check_metrics": True,
                       "setup": None,
                       "config_extra": ADMIN + "cache:\n  enabled: true\n",
                       "bench_args": []},
}
DEFAULT_MODES = ["direct", "slotgate"]

# Ratios printed besides "vs direct" when both modes ran:
# (label, numerator, denominator). The CPU ratio is of slotgate CPU µs/req,
# so only when both modes have a slotgate.
COMPARISONS = [
    ("metrics overhead", "slotgate", "slotgate-nometrics"),
    ("TLS cost", "slotgate-tls", "slotgate"),
    ("vs direct-tls", "slotgate-tls", "direct-tls"),
    ("vs baseline", "slotgate", "slotgate-baseline"),
    ("cache on vs off", "slotgate-cache", "slotgate"),
]


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

def free_ports(count, need_bus, extra=0):
    """count + extra distinct ports from the OS. With need_bus, port+10000
    (cluster bus) is free too for the first count (not for the extra ones, which
    are also distinct from those bus ports: everything is held until the end)."""
    held, ports = [], []
    try:
        attempts = 0
        while len(ports) < count + extra:
            attempts += 1
            if attempts > 1000:
                raise HarnessError("could not find enough free loopback ports")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            if need_bus and len(ports) < count:
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


def redis_cli(port, *args, timeout=10, tls=()):
    """tls: redis-cli's TLS arguments (e.g. --tls --cacert CA), or () for plaintext."""
    r = subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), *tls, *args],
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


def pinged(port, tls=()):
    rc, out, err = redis_cli(port, "ping", timeout=2, tls=tls)
    return rc == 0 and out.strip() == "PONG", (out + err).strip()


# Extensions for make_certs, in a config of our own so the system's
# openssl.cnf defaults do not matter.
OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
# clientAuth too: with tls-cluster / tls-replication the nodes present this
# certificate when they connect to each other, and OpenSSL refuses a
# serverAuth-only certificate as a client certificate.
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def start_sentinel_group(procs, tmp, args):
    """--upstream sentinel: one primary and one sentinel monitoring it (quorum 1).
    Returns (nodes, sentinel port); nodes has the primary alone."""
    port, sport = free_ports(2, need_bus=False)
    d = os.path.join(tmp, f"redis-{port}")
    os.mkdir(d)
    logpath = os.path.join(d, "redis.log")
    argv = [args.redis_server, "--port", str(port), "--bind", HOST, "--save", "",
            "--appendonly", "no", "--dir", d, "--daemonize", "no", "--protected-mode", "no"]
    p = procs.start(f"redis-server :{port}", argv, logpath, cwd=d)
    nodes = [{"port": port, "tls_port": None, "proc": p, "log": logpath, "role": "primary"}]
    sd = os.path.join(tmp, f"sentinel-{sport}")
    os.mkdir(sd)
    conf = os.path.join(sd, "sentinel.conf")
    with open(conf, "w") as f:
        f.write(f"port {sport}\nbind {HOST}\ndaemonize no\ndir {sd}\n"
                f"sentinel monitor mymaster {HOST} {port} 1\n")
    slog = os.path.join(sd, "sentinel.log")
    sp = procs.start(f"sentinel :{sport}", [args.redis_server, conf, "--sentinel"], slog, cwd=sd)
    watch = [(f"redis-server :{port}", p, logpath), (f"sentinel :{sport}", sp, slog)]
    wait_for(f"redis-server :{port} to answer PING", lambda: pinged(port), 20, watch)
    wait_for(f"sentinel :{sport} to answer PING", lambda: pinged(sport), 20, watch)
    return nodes, sport


def make_certs(tmp):
    """A CA and a server certificate signed by it (EC P-256, SAN IP:127.0.0.1 and
    DNS:localhost, valid 7 days) in tmp/tls, made with the openssl CLI. The nodes'
    tls-port and slotgate-tls both serve the server certificate. Returns
    {"dir", "ca", "cert", "key"} (absolute paths)."""
    d = os.path.join(tmp, "tls")
    os.mkdir(d)
    f = {name: os.path.join(d, name) for name in
         ("openssl.cnf", "ca.key", "ca.pem", "server.key", "server.csr", "server.pem")}
    with open(f["openssl.cnf"], "w") as fh:
        fh.write(OPENSSL_CNF)
    ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
    steps = [
        ["genpkey", *ec, "-out", f["ca.key"]],
        ["req", "-config", f["openssl.cnf"], "-x509", "-new", "-key", f["ca.key"],
         "-sha256", "-days", "7", "-subj", "/CN=slotgate e2e CA",
         "-extensions", "ca_ext", "-out", f["ca.pem"]],
        ["genpkey", *ec, "-out", f["server.key"]],
        ["req", "-config", f["openssl.cnf"], "-new", "-key", f["server.key"],
         "-subj", "/CN=localhost", "-out", f["server.csr"]],
        ["x509", "-req", "-in", f["server.csr"], "-CA", f["ca.pem"], "-CAkey", f["ca.key"],
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "7",
         "-sha256", "-extfile", f["openssl.cnf"], "-extensions", "server_ext",
         "-out", f["server.pem"]],
        ["verify", "-CAfile", f["ca.pem"], f["server.pem"]],
    ]
    for step in steps:
        argv = ["openssl", *step]
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise HarnessError(f"`{' '.join(argv)}` failed (status {r.returncode}):\n"
                               + (r.stdout + r.stderr).decode("utf-8", "replace"))
    return {"dir": d, "ca": f["ca.pem"], "cert": f["server.pem"], "key": f["server.key"]}


def start_cluster(procs, tmp, args, certs=None):
    """With certs (from make_certs), every node also listens on a tls-port; see
    below for why the bus and replication then use TLS too."""
    if certs:
        ports_all = free_ports(6, need_bus=True, extra=6)
        ports, tls_ports = ports_all[:6], ports_all[6:]
    else:
        ports, tls_ports = free_ports(6, need_bus=True), [None] * 6
    nodes = []
    for port, tls_port in zip(ports, tls_ports):
        d = os.path.join(tmp, f"redis-{port}")
        os.mkdir(d)
        logpath = os.path.join(d, "redis.log")
        argv = [args.redis_server, "--port", str(port), "--bind", HOST,
                "--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
                "--dir", d, "--daemonize", "no", "--protected-mode", "no"]
        if certs:
            # Clients may connect over TLS (no client certificate asked for); the
            # plaintext port stays for the harness, slotgate's upstream and the
            # plaintext modes. Redis 7.0 answers CLUSTER SLOTS / CLUSTER NODES /
            # MOVED to a TLS client with TLS ports only when tls-cluster is yes
            # (with no, a TLS client is sent to the plaintext ports, and
            # redis-benchmark --tls --cluster hangs in the TLS handshake with
            # them). tls-cluster yes makes a replica dial its primary's tls-port,
            # so tls-replication must be yes too. The bus would then move to
            # tls-port+10000; cluster-port keeps it on the port+10000 that
            # free_ports reserved.
            argv += ["--tls-port", str(tls_port), "--tls-cert-file", certs["cert"],
                     "--tls-key-file", certs["key"], "--tls-ca-cert-file", certs["ca"],
                     "--tls-auth-clients", "no", "--tls-cluster", "yes",
                     "--tls-replication", "yes", "--cluster-port", str(port + 10000)]
        p = procs.start(f"redis-server :{port}", argv, logpath, cwd=d)
        nodes.append({"port": port, "tls_port": tls_port, "proc": p, "log": logpath})
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

    if certs:
        tls = ["--tls", "--cacert", certs["ca"]]
        for n in nodes:
            wait_for(f"redis-server :{n['port']} to answer PING on tls-port {n['tls_port']}",
                     lambda n=n: pinged(n["tls_port"], tls), 20, watch)
        # A TLS client must be sent to TLS ports (see above), or redis-benchmark
        # --tls --cluster would hang until --run-timeout.
        tls_ports = {n["tls_port"] for n in nodes}
        primary = next(n for n in nodes if n["role"] == "primary")
        rc, out, err = redis_cli(primary["tls_port"], "cluster", "slots", timeout=5, tls=tls)
        lines = [l.strip() for l in out.splitlines()]
        named = {int(lines[i + 1]) for i, l in enumerate(lines[:-1]) if l == HOST}
        if rc != 0 or not named or not named <= tls_ports:
            raise HarnessError(f"CLUSTER SLOTS over TLS on :{primary['tls_port']} does not "
                               f"name only the tls-ports {sorted(tls_ports)} (status {rc}):\n"
                               f"{out}{err}")
    return nodes


def http_get(url, timeout=5):
    """(status, body) of a GET; HTTP error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def readyz(admin_port):
    try:
        status, body = http_get(f"http://{HOST}:{admin_port}/readyz", timeout=2)
    except (urllib.error.URLError, OSError) as e:
        return False, str(e)
    return status == 200, f"{status} {body.strip()}"


def cert_subst(certs):
    """The {ca}/{cert}/{key} placeholders (empty strings in a run without TLS)."""
    return {k: (certs or {}).get(k, "") for k in ("ca", "cert", "key")}


def start_slotgates(procs, tmp, args, nodes, modes, certs=None, sentinel=None):
    """One slotgate per slotgate mode, all with the same --workers; returns
    {mode: {"port", "admin", "proc", "log", "config", "dir", "bench_args",
    "tls_cli"}}."""
    sg_modes = [m for m in modes if MODES[m]["slotgate"]]
    # All ports in one call: they are held together, so they are all distinct.
    ports = free_ports(2 * len(sg_modes), need_bus=False)
    primaries = [n["port"] for n in nodes if n["role"] == "primary"]
    sgs = {}
    for i, mode in enumerate(sg_modes):
        spec = MODES[mode]
        port, admin_port = ports[2 * i], ports[2 * i + 1]
        d = os.path.join(tmp, mode)
        os.mkdir(d)
        subst = {"admin": f"{HOST}:{admin_port}", "dir": d, **cert_subst(certs)}
        if spec["setup"]:
            spec["setup"](d)
        cfg = os.path.join(tmp, f"{mode}.yaml")
        if sentinel:
            upstream = (f'  mode: sentinel\n  sentinels: ["{HOST}:{sentinel}"]\n'
                        f'  master_name: mymaster\n')
        else:
            upstream = f'  seeds: ["{HOST}:{primaries[0]}", "{HOST}:{primaries[1]}"]\n'
        with open(cfg, "w") as f:
            f.write(f'listen: "{HOST}:{port}"\n'
                    f'upstream:\n' + upstream +
                    f'workers: {args.workers}\n'
                    f'log: {{ level: warn }}\n'
                    + spec["config_extra"].format(**subst))
        logpath = os.path.join(tmp, f"{mode}.log")
        binary = args.baseline if spec.get("binary") == "baseline" else args.slotgate
        p = procs.start(mode, [binary, "--config", cfg], logpath, cwd=d)
        sgs[mode] = {"port": port, "admin": admin_port if spec["admin"] else None,
                     "proc": p, "log": logpath, "config": cfg, "dir": d,
                     "bench_args": [a.format(**subst) for a in spec["bench_args"]],
                     "tls_cli": ["--tls", "--cacert", certs["ca"]] if spec["tls"] else []}
    watch = [(m, sg["proc"], sg["log"]) for m, sg in sgs.items()]
    for mode, sg in sgs.items():
        wait_for(f"{mode} on :{sg['port']} to answer PING"
                 + (" over TLS" if sg["tls_cli"] else ""),
                 lambda sg=sg: pinged(sg["port"], sg["tls_cli"]), 30, watch)
        if sg["admin"]:
            wait_for(f"{mode} admin :{sg['admin']}/readyz to answer 200",
                     lambda sg=sg: readyz(sg["admin"]), 30, watch)
    return sgs


def scrape_commands_total(admin_port):
    """Sum over all series of slotgate_commands_total, and the sum per command."""
    status, body = http_get(f"http://{HOST}:{admin_port}/metrics", timeout=10)
    if status != 200:
        raise HarnessError(f"/metrics answered {status}")
    total, by_cmd, series = 0.0, {}, 0
    pat = re.compile(r'slotgate_commands_total(\{[^}]*\})?\s+(\S+)(\s+\d+)?')
    for line in body.splitlines():
        m = pat.fullmatch(line.strip())
        if not m:
            continue
        v = float(m.group(2))
        series += 1
        total += v
        cm = re.search(r'command="([^"]*)"', m.group(1) or "")
        cmd = cm.group(1) if cm else "?"
        by_cmd[cmd] = by_cmd.get(cmd, 0.0) + v
    if series == 0:
        raise HarnessError("no slotgate_commands_total series in /metrics")
    return total, by_cmd


def scrape_cache(admin_port):
    """The read cache's counters (slotgate_cache_requests_total by result, bytes held),
    or {} when nothing was counted."""
    status, body = http_get(f"http://{HOST}:{admin_port}/metrics", timeout=10)
    if status != 200:
        return {}
    out = {}
    for line in body.splitlines():
        m = re.fullmatch(r'slotgate_cache_requests_total\{result="(\w+)"\}\s+(\S+)', line.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
        m = re.fullmatch(r'slotgate_cache_bytes\s+(\S+)', line.strip())
        if m:
            out["bytes"] = float(m.group(1))
    return out if any(out.get(k) for k in ("hit", "miss", "bypass")) else {}


def metrics_checks(runs, sgs, modes):
    """For every mode with check_metrics: scrape once, compare with the requests
    the harness sent through it. Never fails the run."""
    out = {}
    for mode in modes:
        if not MODES[mode]["check_metrics"]:
            continue
        sent = sum(r["total_requests"] for r in runs if r["mode"] == mode)
        entry = {"mode": mode, "requests_sent": sent, "runs": sum(
            1 for r in runs if r["mode"] == mode)}
        try:
            total, by_cmd = scrape_commands_total(sgs[mode]["admin"])
            entry.update(commands_total=total, by_command=by_cmd, difference=total - sent)
            cache = scrape_cache(sgs[mode]["admin"])
            if cache:
                entry["cache"] = cache
        except (HarnessError, urllib.error.URLError, OSError, ValueError) as e:
            entry["error"] = str(e)
        out[mode] = entry
    return out


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


def preload(port, keyspace, data_size):
    """SET key:%012d (redis-benchmark's -r names) for the whole keyspace through the
    slotgate on `port`, pipelined."""
    value = b"x" * data_size
    with socket.create_connection((HOST, port), timeout=30) as s:
        batch = 1000
        for start in range(0, keyspace, batch):
            buf = bytearray()
            end = min(start + batch, keyspace)
            for i in range(start, end):
                key = b"key:%012d" % i
                buf += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(key), key, len(value), value)
            s.sendall(buf)
            want, got = (end - start) * len(b"+OK\r\n"), b""
            while len(got) < want:
                chunk = s.recv(65536)
                if not chunk:
                    raise HarnessError("preload: slotgate closed the connection")
                got += chunk
            if got != b"+OK\r\n" * (end - start):
                raise HarnessError(f"preload: unexpected replies {got[:200]!r}")


def bench_target(mode, nodes, sgs, certs, cluster=True):
    """redis-benchmark's arguments saying where to connect and how."""
    sg = sgs.get(mode)
    if sg is not None:
        return ["-h", HOST, "-p", str(sg["port"]), *sg["bench_args"]]
    # nodes[0] is a primary; a TLS direct mode uses its tls-port.
    port = nodes[0]["tls_port"] if MODES[mode]["tls"] else nodes[0]["port"]
    return [*(["--cluster"] if cluster else []), "-h", HOST, "-p", str(port),
            *[a.format(**cert_subst(certs)) for a in MODES[mode]["bench_args"]]]


def run_one(mode, test, pipeline, n, args, nodes, sgs, target):
    argv = [args.redis_benchmark, *target, "--threads", "1", "-t", test,
            "-c", str(args.clients), "-d", str(args.data_size), "-r", str(args.keyspace),
            "-P", str(pipeline), "-n", str(n), "--csv", "-q"]
    redis_pids = [nd["proc"].pid for nd in nodes]
    # Every slotgate is measured: the one under test, and the idle ones (they
    # share the 2 cores, so their background work is recorded too).
    sg_pids = {m: s["proc"].pid for m, s in sgs.items()}

    r0 = {p: cpu_ticks(p) for p in redis_pids}
    s0 = {m: cpu_ticks(p) for m, p in sg_pids.items()}
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
    s1 = {m: cpu_ticks(p) for m, p in sg_pids.items()}
    r1 = {p: cpu_ticks(p) for p in redis_pids}

    rows, warnings = parse_benchmark(res.stdout.decode("utf-8", "replace"),
                                     res.stderr.decode("utf-8", "replace"),
                                     res.returncode, argv)
    for nd in nodes:
        if nd["proc"].poll() is not None:
            raise HarnessError(f"redis-server :{nd['port']} died during the run; log:\n"
                               f"{tail(nd['log'])}")
    for m, s in sgs.items():
        if s["proc"].poll() is not None:
            raise HarnessError(f"slotgate ({m}) died during the {mode} run; log:\n"
                               f"{tail(s['log'])}")

    total_requests = n * len(rows)
    return {
        "mode": mode, "test": test, "pipeline": pipeline, "requests": n,
        "total_requests": total_requests, "argv": argv, "wall_s": wall,
        "rows": rows, "warnings": warnings,
        # CPU of this mode's slotgate; None for modes without one.
        "slotgate_cpu_s": (s1[mode] - s0[mode]) / CLK_TCK if mode in sgs else None,
        "idle_slotgates_cpu_s": {m: (s1[m] - s0[m]) / CLK_TCK for m in sgs if m != mode},
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


def fmt_num(x, spec):
    return "–" if x is None or x != x else format(x, spec)


def ratio(a, b):
    return a / b if a == a and b == b and b else float("nan")


def summarize(runs, test_name, pipeline, modes):
    """Per-mode medians for one CSV test name at one pipeline depth."""
    out = {"modes": {}}
    for mode in modes:
        rs = [r for r in runs if r["mode"] == mode and r["pipeline"] == pipeline
              and any(row["test"] == test_name for row in r["rows"])]
        rows = [next(row for row in r["rows"] if row["test"] == test_name) for r in rs]
        out["modes"][mode] = {
            "rounds": len(rs),
            "ops": med([row["rps"] for row in rows]),
            "p50": med([row["p50_ms"] for row in rows]),
            "p99": med([row["p99_ms"] for row in rows]),
            "sg_us": med([us_per_req(r["slotgate_cpu_s"], r["total_requests"]) for r in rs
                          if r["slotgate_cpu_s"] is not None]),
            "redis_us": med([us_per_req(r["redis_cpu_s"], r["total_requests"]) for r in rs]),
            "client_us": med([us_per_req(r["client_cpu_s"], r["total_requests"]) for r in rs]),
            # slotgate's CPU over the CPU of the redis-benchmark that drove it, per run: the
            # client does the same work whatever slotgate does, so it gauges how expensive
            # the machine was during that run (see benchmarks.md).
            "sg_per_client": med([ratio(r["slotgate_cpu_s"], r["client_cpu_s"]) for r in rs
                                  if r["slotgate_cpu_s"] is not None]),
            "wall": med([r["wall_s"] for r in rs]),
            "per_round": [(r["round"], row, r) for r, row in zip(rs, rows)],
        }

    def paired(num, den):
        # Same round, seconds apart -> less sensitive to machine drift.
        by_round = {rnd: row["rps"] for rnd, row, _ in out["modes"][den]["per_round"]}
        return [(rnd, row["rps"] / by_round[rnd])
                for rnd, row, _ in out["modes"][num]["per_round"] if rnd in by_round]

    d = out["modes"].get("direct")
    for mode, m in out["modes"].items():
        m["ratio_vs_direct"] = ratio(m["ops"], d["ops"]) if d else float("nan")
        m["paired_vs_direct"] = paired(mode, "direct") if d and mode != "direct" else []
    # The COMPARISONS whose two modes both ran, e.g. TLS cost = slotgate-tls ÷
    # slotgate. cpu_us_ratio: slotgate CPU µs/req, numerator ÷ denominator (NaN
    # when a side has no slotgate).
    out["comparisons"] = []
    for label, num, den in COMPARISONS:
        if num not in out["modes"] or den not in out["modes"]:
            continue
        a, b = out["modes"][num], out["modes"][den]
        pr = paired(num, den)
        out["comparisons"].append({
            "label": label, "num": num, "den": den,
            "ops_ratio": ratio(a["ops"], b["ops"]),
            "paired": pr, "paired_median": med([x for _, x in pr]),
            "cpu_us_ratio": ratio(a["sg_us"], b["sg_us"]),
            # The same, each side first divided by its runs' client CPU.
            "cpu_per_client_ratio": ratio(a["sg_per_client"], b["sg_per_client"]),
        })
    # The key of earlier versions of this file (same numbers, no label).
    out["metrics_overhead"] = next(
        ({k: v for k, v in c.items() if k not in ("label", "num", "den")}
         for c in out["comparisons"] if c["label"] == "metrics overhead"), None)
    return out


def print_report(runs, meta, modes, checks):
    print()
    print(f"## slotgate end-to-end benchmark")
    print()
    print(f"{meta['when']} · {meta['cpus']} CPUs · {meta['redis_version']} · "
          f"{meta['slotgate_version']} (workers: {meta['args']['workers']}) · "
          f"modes: {', '.join(modes)} · "
          f"rounds: {meta['args']['rounds']} · -c {meta['args']['clients']} "
          f"-d {meta['args']['data_size']} -r {meta['args'].get('keyspace', 100000)} "
          f"--threads 1{' (preloaded)' if meta['args'].get('preload') else ''} · "
          f"load avg before: {meta['loadavg_before']}")
    if meta.get("tls"):
        print()
        print("TLS run: every node also has a tls-port, with tls-cluster and tls-replication "
              "yes (so the bus and replication use TLS in every mode); one EC P-256 "
              "server certificate for the nodes and slotgate-tls; slotgate's upstream is "
              "plaintext in every mode.")
    summary_rows = []
    seen = []
    for r in runs:
        for row in r["rows"]:
            key = (row["test"], r["pipeline"])
            if key not in seen:
                seen.append(key)
    for test_name, pipeline in seen:
        s = summarize(runs, test_name, pipeline, modes)
        print()
        print(f"### {test_name}, -P {pipeline}")
        print()
        print("| mode | ops/s (median) | vs direct | p50 ms | p99 ms | slotgate CPU µs/req "
              "| redis CPU µs/req | client CPU µs/req | slotgate ÷ client CPU | wall s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, m in s["modes"].items():
            print(f"| {name} | {fmt_ops(m['ops'])} | {fmt_num(m['ratio_vs_direct'], '.2f')} | "
                  f"{m['p50']:.3f} | {m['p99']:.3f} | {fmt_num(m['sg_us'], '.2f')} | "
                  f"{m['redis_us']:.2f} | {m['client_us']:.2f} | "
                  f"{fmt_num(m['sg_per_client'], '.2f')} | {m['wall']:.2f} |")
        print()
        for name, m in s["modes"].items():
            if name == "direct" or "direct" not in s["modes"]:
                continue
            xs = [x for _, x in m["paired_vs_direct"]]
            print(f"Per-round {name}/direct: {' '.join(f'{x:.2f}' for x in xs)} "
                  f"(median {fmt_num(med(xs), '.2f')})  ")
        for c in s["comparisons"]:
            cpu = (f"; CPU µs/req ratio = {fmt_num(c['cpu_us_ratio'], '.3f')}, of slotgate "
                   f"÷ client CPU = {fmt_num(c['cpu_per_client_ratio'], '.3f')}"
                   if c["cpu_us_ratio"] == c["cpu_us_ratio"] else "")
            print(f"{c['label']}: ops/s {c['num']} ÷ {c['den']} = "
                  f"{fmt_num(c['ops_ratio'], '.3f')} (paired per round: "
                  f"{' '.join(f'{x:.3f}' for _, x in c['paired'])}, median "
                  f"{fmt_num(c['paired_median'], '.3f')}){cpu}  ")
        print()
        print("| round | # | mode | ops/s | p50 ms | p99 ms | slotgate CPU s | redis CPU s "
              "| client CPU s | wall s |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        per = sorted([(rnd, r["order"], mode, row, r)
                      for mode, m in s["modes"].items() for rnd, row, r in m["per_round"]],
                     key=lambda x: (x[0], x[1]))
        for rnd, order, mode, row, r in per:
            print(f"| {rnd} | {order + 1} | {mode} | {fmt_ops(row['rps'])} | "
                  f"{row['p50_ms']:.3f} | {row['p99_ms']:.3f} | "
                  f"{fmt_num(r['slotgate_cpu_s'], '.2f')} | {r['redis_cpu_s']:.2f} | "
                  f"{r['client_cpu_s']:.2f} | {r['wall_s']:.2f} |")
        summary_rows.append((test_name, pipeline, s))
    print()
    print("### Summary")
    print()
    print("| test | -P | mode | ops/s | vs direct | paired vs direct | p50 ms | p99 ms "
          "| slotgate µs/req | redis µs/req | client µs/req | slotgate ÷ client CPU |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for test_name, pipeline, s in summary_rows:
        for name, m in s["modes"].items():
            pm = med([x for _, x in m["paired_vs_direct"]]) if m["paired_vs_direct"] \
                else float("nan")
            print(f"| {test_name} | {pipeline} | {name} | {fmt_ops(m['ops'])} | "
                  f"{fmt_num(m['ratio_vs_direct'], '.2f')} | {fmt_num(pm, '.2f')} | "
                  f"{m['p50']:.3f} | {m['p99']:.3f} | {fmt_num(m['sg_us'], '.2f')} | "
                  f"{m['redis_us']:.2f} | {m['client_us']:.2f} | "
                  f"{fmt_num(m['sg_per_client'], '.2f')} |")
    if any(s["comparisons"] for _, _, s in summary_rows):
        print()
        print("### Ratios")
        print()
        print("| test | -P | ratio | ops/s, ratio of medians | paired per round, median "
              "| slotgate CPU µs/req ratio | ratio of slotgate ÷ client CPU |")
        print("|---|---:|---|---:|---:|---:|---:|")
        for test_name, pipeline, s in summary_rows:
            for c in s["comparisons"]:
                print(f"| {test_name} | {pipeline} | {c['label']}: {c['num']} ÷ {c['den']} | "
                      f"{fmt_num(c['ops_ratio'], '.3f')} | "
                      f"{fmt_num(c['paired_median'], '.3f')} | "
                      f"{fmt_num(c['cpu_us_ratio'], '.3f')} | "
                      f"{fmt_num(c['cpu_per_client_ratio'], '.3f')} |")
    if checks:
        print()
        print("### Metrics check")
        print()
        for mode, c in checks.items():
            if "error" in c:
                print(f"- {mode}: could not read slotgate_commands_total: {c['error']} "
                      f"(requests sent by the harness: {c['requests_sent']:,})")
                continue
            by = ", ".join(f"{k} {v:,.0f}" for k, v in
                           sorted(c["by_command"].items(), key=lambda kv: -kv[1]))
            print(f"- {mode}: sum of slotgate_commands_total = {c['commands_total']:,.0f}; "
                  f"requests sent by the harness = {c['requests_sent']:,} in {c['runs']} "
                  f"runs; difference {c['difference']:+,.0f} (redis-benchmark's own "
                  f"CONFIG GET etc., the start-up PING). By command: {by}")
            if c.get("cache"):
                k = c["cache"]
                print(f"  read cache: {k.get('hit', 0):,.0f} hits, {k.get('miss', 0):,.0f} "
                      f"misses, {k.get('bypass', 0):,.0f} bypassed; "
                      f"{k.get('bytes', 0):,.0f} bytes held at the end")
    print(flush=True)

    def plain(m):
        return {k: v for k, v in m.items() if k not in ("per_round",)}

    summary = []
    for t, p, s in summary_rows:
        entry = {"test": t, "pipeline": p, "modes": list(s["modes"]),
                 "metrics_overhead": s["metrics_overhead"],
                 "comparisons": s["comparisons"]}
        for name, m in s["modes"].items():
            entry[name] = plain(m)
        if "direct" in s["modes"] and "slotgate" in s["modes"]:
            # The two-mode keys of earlier versions of this file.
            entry["ratio_of_medians"] = s["modes"]["slotgate"]["ratio_vs_direct"]
            entry["paired_ratios"] = [x for _, x in s["modes"]["slotgate"]["paired_vs_direct"]]
        summary.append(entry)
    return summary


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


def mode_list(s):
    out = csv_list(s)
    unknown = [m for m in out if m not in MODES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    if not out:
        raise argparse.ArgumentTypeError("no modes given")
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"a mode is listed twice: {s!r}")
    return out


def positive(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return v


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Compare redis-benchmark against a Redis Cluster directly and "
                    "through slotgate (in one or more configurations), in interleaved "
                    "rounds.")
    ap.add_argument("--slotgate", default="target/release/slotgate",
                    help="slotgate binary (default: %(default)s)")
    ap.add_argument("--baseline", metavar="PATH",
                    help="second slotgate binary, run by the slotgate-baseline mode (an "
                         "interleaved A/B of two builds)")
    ap.add_argument("--modes", type=mode_list, default=list(DEFAULT_MODES),
                    help="modes to compare, comma-separated, from: " + ", ".join(MODES)
                         + " (default: " + ",".join(DEFAULT_MODES) + "). Each slotgate "
                         "mode runs its own slotgate process")
    ap.add_argument("--workers", type=positive, default=1,
                    help="slotgate worker threads, all slotgate modes (default: %(default)s)")
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
    ap.add_argument("--keyspace", type=positive, default=100_000,
                    help="redis-benchmark -r: keys key:000000000000 up to this many "
                         "(default: %(default)s)")
    ap.add_argument("--preload", action="store_true",
                    help="before the rounds, SET every key of the keyspace to a -d sized "
                         "value (so GET reads values, and a cache has something to keep)")
    ap.add_argument("--run-timeout", type=positive, default=600,
                    help="seconds before one redis-benchmark run counts as hung "
                         "(default: %(default)s)")
    ap.add_argument("--upstream", choices=["cluster", "sentinel"], default="cluster",
                    help="what stands behind slotgate: a 6-node cluster (direct mode: "
                         "redis-benchmark --cluster), or a primary with a sentinel (slotgate "
                         "in sentinel mode; direct mode: redis-benchmark at the primary)")
    ap.add_argument("--json", metavar="FILE", help="write all raw data to FILE")
    ap.add_argument("--report", metavar="FILE",
                    help="run nothing: print the report of a run saved with --json FILE "
                         "again (with this version's columns)")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp dir (logs, configs) after exit")
    ap.add_argument("--redis-server", default="redis-server", help=argparse.SUPPRESS)
    ap.add_argument("--redis-benchmark", default="redis-benchmark", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.tests:
        ap.error("--tests is empty")
    if ("slotgate-baseline" in args.modes) != (args.baseline is not None):
        ap.error("--baseline PATH and the slotgate-baseline mode go together")
    return args


def check_tools(args):
    tools = [args.redis_server, args.redis_benchmark, "redis-cli"]
    if any(MODES[m]["tls"] for m in args.modes):
        tools.append("openssl")
    for tool in tools:
        if shutil.which(tool) is None:
            if tool == "openssl":
                raise HarnessError("`openssl` not found on PATH; the TLS modes make their "
                                   "certificates with it (Debian/Ubuntu: `apt-get install "
                                   "openssl`).")
            raise HarnessError(f"`{tool}` not found on PATH. Install Redis 7 "
                               f"(Debian/Ubuntu: `apt-get install redis-server redis-tools`).")
    sg = args.slotgate
    if not (os.path.isfile(sg) and os.access(sg, os.X_OK)):
        raise HarnessError(f"slotgate binary not found at `{sg}`. Build it first:\n"
                           f"    cargo build --release -p slotgate\n"
                           f"or pass --slotgate PATH.")
    args.slotgate = os.path.abspath(sg)
    if args.baseline is not None:
        if not (os.path.isfile(args.baseline) and os.access(args.baseline, os.X_OK)):
            raise HarnessError(f"--baseline binary not found at `{args.baseline}`.")
        args.baseline = os.path.abspath(args.baseline)


def version_of(argv):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        return (r.stdout or r.stderr).decode("utf-8", "replace").strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def report_saved(path):
    """Print the report of a run saved with --json again; 0, or 1 when it cannot be read."""
    try:
        with open(path) as f:
            saved = json.load(f)
        runs, meta, modes = saved["runs"], saved["meta"], saved["meta"]["modes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"FAIL: cannot read a saved run from {path}: {e!r}", file=sys.stderr)
        return 1
    print_report(runs, meta, modes, saved.get("metrics_checks") or {})
    return 0


def main(argv):
    args = parse_args(argv)
    if args.report:
        return report_saved(args.report)
    return harness_main(args, "slotgate-e2e-", lambda procs, tmp: benchmark(args, procs, tmp))


def harness_main(args, prefix, work, on_cleanup=None):
    """Runs `work(procs, tmp)` the way every harness here runs: SIGINT, SIGTERM and SIGHUP
    raise Interrupted; a temp dir named `prefix`…; at the end, whatever happened,
    `on_cleanup()`, every process in `procs` stopped and the temp dir removed (kept with
    --keep-tmp). Returns the exit status: work's, 1 on a HarnessError (printed), 128 + the
    signal when interrupted."""
    procs = Procs()
    tmp = None

    def cleanup():
        if on_cleanup:
            on_cleanup()
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
        tmp = tempfile.mkdtemp(prefix=prefix)
        log(f"temp dir {tmp}")
        return work(procs, tmp)
    except HarnessError as e:
        print(f"\nFAIL: {e}", file=sys.stderr, flush=True)
        if not args.keep_tmp and tmp:
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


def benchmark(args, procs, tmp):
    """The benchmark itself (see the module's doc): returns the exit status."""
    check_tools(args)
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(), "kernel": platform.release(),
        "cpus": os.cpu_count(), "loadavg_before": " ".join(
            f"{x:.2f}" for x in os.getloadavg()),
        "redis_version": version_of([args.redis_server, "--version"]).split(" sha=")[0],
        "redis_benchmark_version": version_of([args.redis_benchmark, "--version"]),
        "slotgate_version": version_of([args.slotgate, "--version"]),
        "slotgate_binary": args.slotgate, "baseline_binary": args.baseline, "clk_tck": CLK_TCK,
        "args": vars(args),
    }
    modes = args.modes
    certs = None
    if any(MODES[m]["tls"] for m in modes):
        certs = make_certs(tmp)
        log(f"certificates in {certs['dir']} (CA + server certificate, EC P-256)")
    meta["tls"] = bool(certs)
    sentinel = None
    if args.upstream == "sentinel":
        if certs:
            raise HarnessError("--upstream sentinel runs plaintext modes only")
        log("starting a primary and a sentinel")
        t0 = time.monotonic()
        nodes, sentinel = start_sentinel_group(procs, tmp, args)
    else:
        log("starting 6-node cluster" + (" (with tls-ports)" if certs else ""))
        t0 = time.monotonic()
        nodes = start_cluster(procs, tmp, args, certs)

    def names(role):
        return ", ".join(str(n["port"]) + (f" (tls {n['tls_port']})" if certs else "")
                         for n in nodes if n["role"] == role)

    log(f"upstream ok after {time.monotonic() - t0:.1f}s: primaries {names('primary')}; "
        f"replicas {names('replica')}")
    # redis-benchmark --cluster: point it at a primary.
    nodes.sort(key=lambda n: n["role"] != "primary")
    sgs = start_slotgates(procs, tmp, args, nodes, modes, certs, sentinel)
    for mode, sg in sgs.items():
        log(f"{mode} up on :{sg['port']} (admin: {sg['admin'] or 'none'}, "
            f"workers: {args.workers}" + (", client TLS" if sg["tls_cli"] else "") + ")")
    targets = {m: bench_target(m, nodes, sgs, certs, sentinel is None) for m in modes}
    if args.preload:
        plain = [sg for sg in sgs.values() if not sg["tls_cli"]]
        if not plain:
            raise HarnessError("--preload needs a plaintext slotgate mode")
        t0 = time.monotonic()
        preload(plain[0]["port"], args.keyspace, args.data_size)
        log(f"preloaded {args.keyspace} keys in {time.monotonic() - t0:.1f}s")
    meta["ports"] = {"redis": {str(n["port"]): n["role"] for n in nodes},
                     "slotgate": {m: {"port": sg["port"], "admin": sg["admin"]}
                                  for m, sg in sgs.items()}}
    if certs:
        meta["ports"]["redis_tls"] = {str(n["port"]): n["tls_port"] for n in nodes}
    meta["modes"] = {m: {"config_extra": MODES[m]["config_extra"],
                         "bench_args": MODES[m]["bench_args"], "tls": MODES[m]["tls"],
                         "target": targets[m]} for m in modes}
    width = max(len(m) for m in modes)

    runs = []
    for test in args.tests:
        for pipeline in args.pipelines:
            n = args.requests_p1 if pipeline == 1 else args.requests_pipelined
            for rnd in range(1, args.rounds + 1):
                # Rotate: round 1 starts with the first mode, round 2 with the
                # second, ... so no mode always runs first (or last).
                start = (rnd - 1) % len(modes)
                order = modes[start:] + modes[:start]
                for i, mode in enumerate(order):
                    r = run_one(mode, test, pipeline, n, args, nodes, sgs,
                                targets[mode])
                    r["round"], r["order"] = rnd, i
                    runs.append(r)
                    for w in r["warnings"]:
                        log(f"note ({mode}): {w}")
                    log(f"{test} -P {pipeline} round {rnd}/{args.rounds} "
                        f"{mode:{width}s}: "
                        + ", ".join(f"{row['test']} {fmt_ops(row['rps'])} ops/s "
                                    f"p50 {row['p50_ms']:.3f} p99 {row['p99_ms']:.3f}"
                                    for row in r["rows"])
                        + f" (wall {r['wall_s']:.2f}s)")
    meta["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    checks = metrics_checks(runs, sgs, modes)
    summary = print_report(runs, meta, modes, checks)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "summary": summary, "runs": runs,
                       "metrics_checks": checks}, f, indent=2)
        log(f"raw data written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
