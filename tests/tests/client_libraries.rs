//! Real client libraries through slotgate, as applications use them: redis-py (RESP2, RESP3,
//! `RedisCluster`, and a numbered database in sentinel mode), ioredis (`Redis` and
//! `Cluster`), node-redis (RESP2 and RESP3) and BullMQ. Each library connects with AUTH as a
//! configured user and runs a pipeline, MULTI/EXEC, Pub/Sub across two connections and a
//! BLPOP answered by a push from another connection; BullMQ runs a job through a worker.
//! redis-rs is the client of every other suite. In cluster mode BullMQ's queue prefix carries
//! a hash tag, as BullMQ asks for Redis Cluster: its scripts name several keys of a queue, and
//! without one slotgate answers them `-CROSSSLOT` (docs/compatibility.md).
//!
//! The scripts live in `tests/clients/`; `tests/clients/install.sh` installs the pinned
//! libraries into the build tree (`target/clients/`) the first time, and quickly does
//! nothing after. Without python3/pip or node/npm the suite fails, saying what to install.

use std::sync::OnceLock;
use std::time::Duration;

use slotgate_tests::clients::{self, Runtime};
use slotgate_tests::process::run_captured;
use slotgate_tests::sentinel::{SentinelGroup, SentinelOptions, MASTER_NAME};
use slotgate_tests::{shared_cluster, unique_key_prefix, ProxyConfig, Slotgate};

/// The downstream user every client logs in as.
const USER: &str = "app";
const PASSWORD: &str = "app-secret";
/// The longest one client script may run (each of its waits has a 10 s deadline).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// slotgate in front of the shared cluster, with the user [`USER`].
fn cluster_proxy() -> &'static Slotgate {
    static PROXY: OnceLock<Slotgate> = OnceLock::new();
    PROXY.get_or_init(|| {
        ProxyConfig::new(&shared_cluster().seeds())
            .user(USER, PASSWORD, "+@all ~* &*")
            .spawn()
    })
}

/// Runs `tests/clients/<script> <args>` against `proxy` and asserts that it exits 0, showing
/// its output and slotgate's log otherwise. Returns the key prefix the script was given.
fn run_client(
    proxy: &Slotgate,
    runtime: Runtime,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut cmd = clients::script(runtime, script);
    let path = clients::scripts_dir().join(script);
    let stem = path.file_stem().expect("script name").to_string_lossy();
    let prefix = unique_key_prefix(&format!("{stem}-{}", args.join("-")));
    cmd.args(args)
        .env("SLOTGATE_PORT", proxy.port().to_string())
        .env("SLOTGATE_USER", USER)
        .env("SLOTGATE_PASSWORD", PASSWORD)
        .env("SLOTGATE_PREFIX", &prefix)
        .envs(env.iter().copied());
    let out = run_captured(&mut cmd, SCRIPT_TIMEOUT)
        .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
    assert!(
        out.success(),
        "{} {} {}: {}\n--- stdout\n{}--- stderr\n{}--- slotgate log (last lines)\n{}",
        runtime.name(),
        path.display(),
        args.join(" "),
        match out.status {
            Some(status) => format!("exited with {status}"),
            None => format!("killed after {SCRIPT_TIMEOUT:?}"),
        },
        out.stdout,
        out.stderr,
        tail(&proxy.log(), 40)
    );
    prefix
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn redis_py_resp2() {
    run_client(
        cluster_proxy(),
        Runtime::Python,
        "python/redis_py.py",
        &["resp2"],
        &[],
    );
}

#[test]
fn redis_py_resp3() {
    run_client(
        cluster_proxy(),
        Runtime::Python,
        "python/redis_py.py",
        &["resp3"],
        &[],
    );
}

/// `RedisCluster` sends `COMMAND` and `CLUSTER SLOTS` when it is made, and finds the one-node
/// cluster slotgate emulates.
#[test]
fn redis_py_cluster_client() {
    run_client(
        cluster_proxy(),
        Runtime::Python,
        "python/redis_py.py",
        &["cluster"],
        &[],
    );
}

/// `redis.Redis(db=3)` through slotgate in sentinel mode: the client's SELECT holds for all
/// its commands, and the key is in database 3 of the primary, not in database 0.
#[test]
fn redis_py_numbered_database_in_sentinel_mode() {
    let group = SentinelGroup::start(SentinelOptions::default());
    let proxy = ProxyConfig::sentinel(&group.sentinel_addrs(), MASTER_NAME)
        .user(USER, PASSWORD, "+@all ~* &*")
        .spawn();
    let prefix = run_client(
        &proxy,
        Runtime::Python,
        "python/redis_py.py",
        &["db"],
        &[("SLOTGATE_DB", "3")],
    );
    let marker = format!("{prefix}db-marker");
    let primary = group.primary();
    let get_in = |db: u8| -> Option<String> {
        let url = format!("redis://127.0.0.1:{primary}/{db}");
        let mut con = redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("connect to the primary");
        redis::cmd("GET").arg(&marker).query(&mut con).expect("GET")
    };
    assert_eq!(
        get_in(3).as_deref(),
        Some("db3"),
        "the marker in database 3"
    );
    assert_eq!(get_in(0), None, "the marker in database 0");
}

/// ioredis 6 speaks RESP3 unless told otherwise (`HELLO 3 AUTH`).
#[test]
fn ioredis_resp3() {
    run_client(
        cluster_proxy(),
        Runtime::Node,
        "node/ioredis.js",
        &["plain", "3"],
        &[],
    );
}

#[test]
fn ioredis_resp2() {
    run_client(
        cluster_proxy(),
        Runtime::Node,
        "node/ioredis.js",
        &["plain", "2"],
        &[],
    );
}

/// `Redis.Cluster` discovers the one-node cluster with `CLUSTER SLOTS`.
#[test]
fn ioredis_cluster_client() {
    run_client(
        cluster_proxy(),
        Runtime::Node,
        "node/ioredis.js",
        &["cluster", "3"],
        &[],
    );
}

#[test]
fn node_redis_resp2() {
    run_client(
        cluster_proxy(),
        Runtime::Node,
        "node/node_redis.js",
        &["2"],
        &[],
    );
}

#[test]
fn node_redis_resp3() {
    run_client(
        cluster_proxy(),
        Runtime::Node,
        "node/node_redis.js",
        &["3"],
        &[],
    );
}

#[test]
fn bullmq_job_through_a_worker() {
    run_client(cluster_proxy(), Runtime::Node, "node/bullmq.js", &[], &[]);
}
