//! WAIT through slotgate against a real cluster with replicas: it counts the replicas that
//! processed this connection's writes (on every shard it wrote to), waits for earlier
//! pipelined commands, honours its own timeout (not `op_timeout`), counts a stopped replica
//! as not acknowledging, refuses bad arguments with Redis's exact texts, and a client that
//! leaves while WAIT waits releases everything it held.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, shared_cluster, unique_key_prefix, ClusterOptions, ProxyConfig,
    RedisCluster, Slotgate,
};

/// slotgate in front of `cluster`, with an admin port.
fn proxy_on(cluster: &RedisCluster) -> Slotgate {
    ProxyConfig::new(&cluster.seeds()).admin().spawn()
}

/// A cluster whose replicas may be stopped for a few seconds without being declared failed
/// (so the slot map keeps listing them).
fn patient_cluster() -> RedisCluster {
    RedisCluster::start(ClusterOptions {
        node_timeout_ms: 15_000,
        ..ClusterOptions::default()
    })
}

/// `WAIT n timeout`: the count and how long it took.
fn wait(c: &mut redis::Connection, n: i64, timeout_ms: i64) -> (i64, Duration) {
    let start = Instant::now();
    let count: i64 = redis::cmd("WAIT").arg(n).arg(timeout_ms).query(c).unwrap();
    (count, start.elapsed())
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

/// The only replica of the primary on `port`.
fn replica_of(cluster: &RedisCluster, port: u16) -> u16 {
    let replicas = cluster.replicas_of(port);
    assert_eq!(replicas.len(), 1, "replicas of {port}: {replicas:?}");
    replicas[0]
}

/// A direct connection to the node on `port` that may read on a replica.
fn node_reader(port: u16) -> redis::Connection {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("READONLY").query(&mut c).unwrap();
    c
}

#[test]
fn a_write_is_acknowledged_by_its_replica_promptly() {
    let cluster = shared_cluster();
    let proxy = proxy_on(cluster);
    let prefix = unique_key_prefix("wait");
    let mut c = proxy.connection();
    // Nothing written yet: every connected replica counts (one per shard here).
    assert_eq!(wait(&mut c, 1, 1000).0, 1);

    let mut readers: HashMap<u16, redis::Connection> = HashMap::new();
    let mut slowest = Duration::ZERO;
    for i in 0..60 {
        let key = format!("{prefix}{i}");
        let value = format!("v{i}");
        set(&mut c, &key, &value);
        let (count, took) = wait(&mut c, 1, 1000);
        assert_eq!(count, 1, "WAIT after SET {key}");
        slowest = slowest.max(took);
        // It means what it says: the replica has the write now.
        let primary = cluster.node_for_slot(slotgate_cluster::slot(key.as_bytes()));
        let replica = replica_of(cluster, primary);
        let reader = readers
            .entry(replica)
            .or_insert_with(|| node_reader(replica));
        let got: Option<String> = redis::cmd("GET").arg(&key).query(reader).unwrap();
        assert_eq!(got.as_deref(), Some(value.as_str()), "replica {replica}");
    }
    assert!(
        slowest < Duration::from_millis(250),
        "slowest WAIT 1 1000 took {slowest:?}"
    );
}

#[test]
fn a_pipelined_wait_waits_for_the_commands_before_it() {
    let proxy = proxy_on(shared_cluster());
    let prefix = unique_key_prefix("wait-pipe");
    let mut c = proxy.connection();
    let (ok, count): (String, i64) = redis::pipe()
        .cmd("SET")
        .arg(format!("{prefix}a"))
        .arg("1")
        .cmd("WAIT")
        .arg(1)
        .arg(1000)
        .query(&mut c)
        .unwrap();
    assert_eq!((ok.as_str(), count), ("OK", 1));

    // WAIT's own timeout starts only once the BLPOP before it was answered: about 1 s +
    // 300 ms, not 1 s (5 replicas never acknowledge: there is one per shard).
    let start = Instant::now();
    let (_, popped, count): (String, Option<(String, String)>, i64) = redis::pipe()
        .cmd("SET")
        .arg(format!("{prefix}b"))
        .arg("1")
        .cmd("BLPOP")
        .arg(format!("{prefix}empty"))
        .arg(1)
        .cmd("WAIT")
        .arg(5)
        .arg(300)
        .query(&mut c)
        .unwrap();
    let took = start.elapsed();
    assert_eq!((popped, count), (None, 1));
    assert!(
        took >= Duration::from_millis(1250) && took < Duration::from_secs(3),
        "SET + BLPOP 1 + WAIT 5 300 took {took:?}"
    );
}

#[test]
fn writes_on_two_shards_are_acknowledged_on_both() {
    let cluster = shared_cluster();
    let proxy = proxy_on(cluster);
    let prefix = unique_key_prefix("wait-two");
    let (p1, p2) = (cluster.primaries()[0], cluster.primaries()[1]);
    let (k1, k2) = (key_on(cluster, p1, &prefix), key_on(cluster, p2, &prefix));
    let mut c = proxy.connection();
    set(&mut c, &k1, "one");
    set(&mut c, &k2, "two");
    let (count, took) = wait(&mut c, 1, 2000);
    assert_eq!(count, 1);
    assert!(took < Duration::from_millis(500), "{took:?}");
    for (key, primary, value) in [(&k1, p1, "one"), (&k2, p2, "two")] {
        let mut reader = node_reader(replica_of(cluster, primary));
        let got: Option<String> = redis::cmd("GET").arg(key).query(&mut reader).unwrap();
        assert_eq!(got.as_deref(), Some(value));
    }
    // A split MSET over both shards counts as writes to both.
    let mut c = proxy.connection();
    let _: () = redis::cmd("MSET")
        .arg(&[&k1, "1", &k2, "2"])
        .query(&mut c)
        .unwrap();
    assert_eq!(wait(&mut c, 1, 2000).0, 1);
}

#[test]
fn a_stopped_replica_does_not_acknowledge_and_op_timeout_does_not_cut_wait() {
    let cluster = patient_cluster();
    // op_timeout well below WAIT's timeout: it must not end the WAIT.
    let proxy = ProxyConfig::new(&cluster.seeds())
        .admin()
        .op_timeout(Duration::from_millis(200))
        .spawn();
    let (p1, p2) = (cluster.primaries()[0], cluster.primaries()[1]);
    let (k1, k2) = (key_on(&cluster, p1, "ws:"), key_on(&cluster, p2, "ws:"));
    let (mut only1, mut only2, mut both) =
        (proxy.connection(), proxy.connection(), proxy.connection());
    set(&mut only1, &k1, "a");
    set(&mut only2, &k2, "b");
    set(&mut both, &k2, "c");
    set(&mut both, &k1, "d");
    for c in [&mut only1, &mut only2, &mut both] {
        assert_eq!(wait(c, 1, 2000).0, 1);
    }

    let r1 = replica_of(&cluster, p1);
    cluster.stop_node(r1);
    set(&mut only1, &k1, "e");
    let (count, took) = wait(&mut only1, 1, 300);
    assert_eq!(count, 0, "the stopped replica acknowledged");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "WAIT 1 300 took {took:?}"
    );
    // A client that wrote on the other shard only is not held up by the stopped replica;
    // one that wrote on both shards is.
    let (count, took) = wait(&mut only2, 1, 1000);
    assert_eq!(count, 1);
    assert!(took < Duration::from_millis(250), "{took:?}");
    let (count, took) = wait(&mut both, 1, 300);
    assert_eq!(count, 0);
    assert!(took >= Duration::from_millis(290), "{took:?}");
    // WAIT 0 answers at once even with a replica that never answers.
    let (_, took) = wait(&mut only1, 0, 0);
    assert!(took < Duration::from_millis(500), "WAIT 0 0 took {took:?}");

    cluster.cont_node(r1);
    let (count, took) = wait(&mut only1, 1, 2000);
    assert_eq!(count, 1, "WAIT after SIGCONT ({took:?})");
    assert_eq!(wait(&mut both, 1, 2000).0, 1);
    let mut reader = node_reader(r1);
    let got: Option<String> = redis::cmd("GET").arg(&k1).query(&mut reader).unwrap();
    assert_eq!(got.as_deref(), Some("e"));
}

#[test]
fn wait_zero_answers_at_once() {
    let proxy = proxy_on(shared_cluster());
    let prefix = unique_key_prefix("wait-zero");
    let mut c = proxy.connection();
    let (count, took) = wait(&mut c, 0, 0);
    assert!(count >= 0);
    assert!(took < Duration::from_millis(150), "{took:?}");
    set(&mut c, &format!("{prefix}k"), "v");
    let (count, took) = wait(&mut c, 0, 0);
    assert!((0..=1).contains(&count), "{count}");
    assert!(took < Duration::from_millis(150), "{took:?}");
}

#[test]
fn argument_errors_match_redis() {
    let cluster = shared_cluster();
    let proxy = proxy_on(cluster);
    let mut through = RawConn::connect(proxy.port());
    let mut direct = RawConn::connect(cluster.primaries()[0]);
    let cases: &[&[&[u8]]] = &[
        &[b"WAIT", b"a", b"0"],
        &[b"WAIT", b"a", b"-1"],
        &[b"WAIT", b"1", b"-1"],
        &[b"WAIT", b"1", b"a"],
        &[b"WAIT", b"1", b"1.5"],
        &[b"WAIT", b"1", b"00"],
        &[b"WAIT", b"1", b"+5"],
        &[b"WAIT", b"1", b"-0"],
        &[b"WAIT", b"1", b"9223372036854775808"],
        &[b"WAIT", b"99999999999999999999", b"0"],
        &[b"WAIT", b"1"],
        &[b"WAIT", b"1", b"0", b"x"],
        &[b"wait", b"x", b"y"],
    ];
    for args in cases {
        through.send_command(args);
        direct.send_command(args);
        let (a, b) = (through.read_line().unwrap(), direct.read_line().unwrap());
        assert!(a.starts_with(b"-"), "{:?}", String::from_utf8_lossy(&a));
        assert_eq!(
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            "{args:?}"
        );
    }
    // A negative count is no error: the current count, at once.
    through.send_command(&[b"WAIT", b"-1", b"0"]);
    assert!(through.read_line().unwrap().starts_with(b":"));
}

#[test]
fn wait_inside_multi_answers_at_once_like_redis() {
    let proxy = proxy_on(shared_cluster());
    let prefix = unique_key_prefix("wait-multi");
    let mut c = proxy.connection();
    let start = Instant::now();
    let (ok, count): (String, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(format!("{prefix}k"))
        .arg("v")
        .cmd("WAIT")
        .arg(1)
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, "OK");
    assert!((0..=1).contains(&count), "{count}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_client_leaving_during_wait_releases_its_connections() {
    let cluster = patient_cluster();
    let proxy = proxy_on(&cluster);
    let (p1, p2) = (cluster.primaries()[0], cluster.primaries()[1]);
    let (k1, k2) = (key_on(&cluster, p1, "wl:"), key_on(&cluster, p2, "wl:"));
    let r1 = replica_of(&cluster, p1);
    // slotgate's dedicated connections to the replica that will stop.
    let to_r1 = || {
        proxy.scrape().sum(
            "slotgate_upstream_connections",
            &["kind=\"dedicated\"", &format!("node=\"127.0.0.1:{r1}\"")],
        )
    };
    let mut other = proxy.connection();
    // Warm up: WAIT leaves a pooled connection to the replica behind.
    set(&mut other, &k1, "0");
    assert_eq!(wait(&mut other, 1, 2000).0, 1);
    let idle = to_r1();
    assert!(idle <= 1.0, "{idle}");

    cluster.stop_node(r1);
    let mut waiting = Vec::new();
    for i in 0..5 {
        let mut raw = RawConn::connect(proxy.port());
        let (key, value) = (k1.as_bytes(), format!("{i}"));
        raw.send_command(&[b"SET", key, value.as_bytes()]);
        raw.send_command(&[b"WAIT", b"1", b"0"]);
        assert_eq!(raw.read_line().unwrap(), b"+OK\r\n");
        waiting.push(raw);
    }
    // Each waiting client polls the stopped replica on a connection of its own.
    assert_eventually!(
        to_r1() >= 5.0,
        Duration::from_secs(5),
        "WAITs hold no connections to the stopped replica: {}",
        to_r1()
    );
    // Nobody else is slowed down meanwhile.
    let mut lat = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        set(&mut other, &k2, &i.to_string());
        lat.push(t.elapsed());
    }
    lat.sort();
    let p99 = lat[lat.len() * 99 / 100];
    assert!(p99 < Duration::from_millis(10), "SET p99 {p99:?}");
    let mut on_other_shard = proxy.connection();
    set(&mut on_other_shard, &k2, "x");
    let (count, took) = wait(&mut on_other_shard, 1, 1000);
    assert_eq!(count, 1);
    assert!(took < Duration::from_millis(250), "{took:?}");

    drop(waiting);
    assert_eventually!(
        to_r1() <= idle,
        Duration::from_secs(5),
        "connections to the stopped replica not released: {} (idle {idle})",
        to_r1()
    );
    cluster.cont_node(r1);
    // The replica sees them closed too: only its link to the primary, this probe, and what
    // slotgate still reports holding remain. That can be the warm-up's pooled connection:
    // it sits in one worker's pool, and when every waiting client landed on the other
    // worker, no poller took it (and closed it) while the replica was stopped.
    let clients = || {
        cluster
            .cli(r1, &["CLIENT", "LIST"])
            .lines()
            .filter(|l| !l.contains("flags=M"))
            .count()
    };
    assert_eventually!(
        clients() <= 1 + to_r1() as usize,
        Duration::from_secs(5),
        "slotgate holds {}: {}",
        to_r1(),
        cluster.cli(r1, &["CLIENT", "LIST"])
    );
    set(&mut other, &k1, "after");
    assert_eq!(wait(&mut other, 1, 2000).0, 1);
}
