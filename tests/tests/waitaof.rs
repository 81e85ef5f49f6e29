//! WAITAOF through slotgate against a real cluster with replicas: with the AOF on, the
//! primaries of the slots this connection wrote to (each on a connection of slotgate's own
//! that wrote after the client) count the fsyncs, and the answer is the smallest over them;
//! a stopped replica does not count and the timeout is honoured; the node's errors (AOF
//! off, bad arguments) come back as the node words them; ACL categories apply; inside MULTI
//! it answers at once. Servers without WAITAOF (Redis 7.0) keep Redis's unknown-command
//! error. This suite runs against every tested server.

use std::time::{Duration, Instant};

use slotgate_tests::probe::Reply;
use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, shared_cluster, unique_key_prefix, ClusterOptions, ProxyConfig, RedisCluster,
};

/// Whether the servers of `cluster` know WAITAOF (Redis 7.2+, Valkey).
fn has_waitaof(cluster: &RedisCluster) -> bool {
    let port = cluster.primaries()[0];
    match cluster.query(port, &["COMMAND", "INFO", "WAITAOF"]) {
        Ok(Reply::Array(Some(items))) => !matches!(
            items.first(),
            Some(Reply::Array(None) | Reply::Bulk(None)) | None
        ),
        other => panic!("COMMAND INFO WAITAOF: {other:?}"),
    }
}

/// A cluster whose nodes fsync every write to their AOF, and whose replicas may be stopped
/// for a few seconds without being declared failed.
fn appendonly_cluster() -> RedisCluster {
    RedisCluster::start(ClusterOptions {
        node_timeout_ms: 15_000,
        extra_args: ["--appendonly", "yes", "--appendfsync", "always"]
            .map(String::from)
            .to_vec(),
        ..ClusterOptions::default()
    })
}

/// `WAITAOF numlocal numreplicas timeout`: the two counts and how long it took.
fn waitaof(
    c: &mut redis::Connection,
    local: i64,
    replicas: i64,
    timeout_ms: i64,
) -> ([i64; 2], Duration) {
    let start = Instant::now();
    let counts: Vec<i64> = redis::cmd("WAITAOF")
        .arg(local)
        .arg(replicas)
        .arg(timeout_ms)
        .query(c)
        .unwrap();
    let counts: [i64; 2] = counts.try_into().unwrap();
    (counts, start.elapsed())
}

fn set(c: &mut redis::Connection, key: &str, value: &str) {
    let _: () = redis::cmd("SET").arg(key).arg(value).query(c).unwrap();
}

/// A key under `prefix` whose slot the primary on `port` owns.
fn key_on(cluster: &RedisCluster, port: u16, prefix: &str) -> String {
    let owners = cluster.slot_owners();
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| owners[slotgate_cluster::slot(k.as_bytes()) as usize] == port)
        .unwrap()
}

/// `args` sent through slotgate and straight to a primary: the same error line.
fn same_error(cluster: &RedisCluster, through: u16, args: &[&[u8]]) -> String {
    let mut via = RawConn::connect(through);
    let mut direct = RawConn::connect(cluster.primaries()[0]);
    via.send_command(args);
    direct.send_command(args);
    let (a, b) = (via.read_reply().unwrap(), direct.read_reply().unwrap());
    let a = String::from_utf8_lossy(&a).into_owned();
    assert!(a.starts_with('-'), "{args:?}: {a:?}");
    assert_eq!(a, String::from_utf8_lossy(&b), "{args:?}");
    a
}

#[test]
fn with_the_aof_on_writes_are_counted_on_every_shard_written() {
    let cluster = appendonly_cluster();
    if !has_waitaof(&cluster) {
        eprintln!("the servers have no WAITAOF: skipped");
        return;
    }
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let primaries = cluster.primaries();
    // Nothing written yet: every primary and its replica count.
    let mut c = proxy.connection();
    let (counts, took) = waitaof(&mut c, 1, 1, 5000);
    assert_eq!(counts, [1, 1], "{took:?}");
    // Writes on every shard: each primary's AOF and its replica's have them.
    for (i, &port) in primaries.iter().enumerate() {
        set(&mut c, &key_on(&cluster, port, "aof:"), &i.to_string());
    }
    let (counts, took) = waitaof(&mut c, 1, 1, 5000);
    assert_eq!(counts, [1, 1]);
    assert!(
        took < Duration::from_secs(2),
        "WAITAOF 1 1 5000 took {took:?}"
    );
    // Pipelined after a write: it waits for the write's answer first.
    let (ok, counts): (String, Vec<i64>) = redis::pipe()
        .cmd("SET")
        .arg(key_on(&cluster, primaries[1], "aof-pipe:"))
        .arg("1")
        .cmd("WAITAOF")
        .arg(1)
        .arg(1)
        .arg(5000)
        .query(&mut c)
        .unwrap();
    assert_eq!((ok.as_str(), counts.as_slice()), ("OK", &[1, 1][..]));
    // slotgate's own key is gone again on every primary.
    for &port in &primaries {
        let keys = cluster.cli(port, &["KEYS", "slotgate:waitaof:*"]);
        assert_eq!(keys.trim(), "", "node {port}");
    }

    // A stopped replica fsyncs nothing: `[1, 0]` once the timeout passed, for a client that
    // wrote on its shard; a client that wrote elsewhere only is not held up.
    let (p1, p2) = (primaries[0], primaries[1]);
    let (k1, k2) = (
        key_on(&cluster, p1, "aof-stop:"),
        key_on(&cluster, p2, "aof-stop:"),
    );
    let (mut on1, mut on2) = (proxy.connection(), proxy.connection());
    set(&mut on1, &k1, "a");
    set(&mut on2, &k2, "b");
    let replica = cluster.replicas_of(p1)[0];
    cluster.stop_node(replica);
    set(&mut on1, &k1, "c");
    let (counts, took) = waitaof(&mut on1, 0, 1, 300);
    assert_eq!(counts, [1, 0]);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "WAITAOF 0 1 300 took {took:?}"
    );
    let (counts, took) = waitaof(&mut on2, 1, 1, 2000);
    assert_eq!(counts, [1, 1]);
    assert!(took < Duration::from_millis(500), "{took:?}");
    cluster.cont_node(replica);
    let (counts, took) = waitaof(&mut on1, 1, 1, 5000);
    assert_eq!(counts, [1, 1], "after SIGCONT ({took:?})");
}

#[test]
fn with_the_aof_off_the_node_answers() {
    let cluster = shared_cluster();
    if !has_waitaof(cluster) {
        return;
    }
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let error = same_error(cluster, proxy.port(), &[b"WAITAOF", b"1", b"0", b"0"]);
    assert!(error.contains("appendonly is disabled"), "{error}");
    // Without fsyncs to wait for, it answers at once.
    let mut c = proxy.connection();
    set(&mut c, &format!("{}k", unique_key_prefix("aof-off")), "v");
    let (counts, took) = waitaof(&mut c, 0, 0, 0);
    assert!(counts.iter().all(|n| (0..=1).contains(n)), "{counts:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
}

#[test]
fn argument_errors_are_the_nodes() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let mut cases = vec!["WAITAOF 0 0", "WAITAOF 0 0 0 0"];
    if has_waitaof(cluster) {
        cases.extend([
            "WAITAOF a 0 0",
            "WAITAOF 2 0 0",
            "WAITAOF -1 0 0",
            "WAITAOF 00 0 0",
            "WAITAOF 0 a 0",
            "WAITAOF 0 -1 0",
            "WAITAOF 0 0 a",
            "WAITAOF 0 0 -1",
            "WAITAOF 0 0 1.5",
            "WAITAOF 0 0 9223372036854775807",
            "waitaof x y z",
        ]);
    } else {
        // Redis 7.0: its unknown-command error, with the arguments, whatever they are.
        cases.extend(["WAITAOF 1 1 1000", "waitaof x y z"]);
    }
    for case in cases {
        let args: Vec<&[u8]> = case.split(' ').map(str::as_bytes).collect();
        let error = same_error(cluster, proxy.port(), &args);
        eprintln!("{case}: {}", error.trim_end());
    }
}

#[test]
fn acl_categories_apply() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds())
        .user("default", "pw", "+@all ~* &*")
        .user("app", "pw", "+@all -@connection ~* &*")
        .spawn();
    let login = |user: &str| {
        let mut c = RawConn::connect(proxy.port());
        c.roundtrip(&[b"AUTH", user.as_bytes(), b"pw"], b"+OK\r\n");
        c.send_command(&[b"WAITAOF", b"0", b"0", b"0"]);
        String::from_utf8(c.read_reply().unwrap()).unwrap()
    };
    let (allowed, refused) = (login("default"), login("app"));
    if has_waitaof(cluster) {
        assert!(allowed.starts_with("*2\r\n:"), "{allowed:?}");
        assert!(
            refused.starts_with("-NOPERM") && refused.contains("'waitaof'"),
            "{refused:?}"
        );
    } else {
        // Unknown before the ACL is asked, as in Redis.
        for reply in [allowed, refused] {
            assert!(
                reply.starts_with("-ERR unknown command 'WAITAOF'"),
                "{reply:?}"
            );
        }
    }
}

#[test]
fn inside_multi_it_answers_at_once_like_redis() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let key = format!("{}k", unique_key_prefix("aof-multi"));
    let mut c = RawConn::connect(proxy.port());
    let start = Instant::now();
    c.roundtrip(&[b"MULTI"], b"+OK\r\n");
    c.roundtrip(&[b"SET", key.as_bytes(), b"v"], b"+QUEUED\r\n");
    c.send_command(&[b"WAITAOF", b"0", b"1", b"0"]);
    if has_waitaof(cluster) {
        assert_eq!(c.read_reply().unwrap(), b"+QUEUED\r\n");
        c.send_command(&[b"EXEC"]);
        let exec = String::from_utf8(c.read_reply().unwrap()).unwrap();
        assert!(exec.starts_with("*2\r\n+OK\r\n*2\r\n:"), "{exec:?}");
    } else {
        let unknown = c.read_reply().unwrap();
        assert!(unknown.starts_with(b"-ERR unknown command 'WAITAOF'"));
        c.roundtrip(
            &[b"EXEC"],
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
        );
    }
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_client_leaving_releases_the_primaries() {
    let cluster = shared_cluster();
    if !has_waitaof(cluster) {
        return;
    }
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let blocked = || -> usize {
        cluster
            .primaries()
            .iter()
            .map(|&port| {
                let info = cluster.cli(port, &["INFO", "clients"]);
                info.lines()
                    .find_map(|l| l.strip_prefix("blocked_clients:"))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    // Five replicas per shard never fsync: every primary blocks for ever.
    let mut c = RawConn::connect(proxy.port());
    c.send_command(&[b"WAITAOF", b"0", b"5", b"0"]);
    assert_eventually!(
        blocked() == cluster.primaries().len(),
        Duration::from_secs(5),
        "blocked: {}",
        blocked()
    );
    drop(c);
    assert_eventually!(
        blocked() == 0,
        Duration::from_secs(5),
        "still blocked: {}",
        blocked()
    );
}
