//! The keyspace across the cluster through slotgate: SCAN with one cursor over every primary
//! (each key exactly once with no writes in between, at least once across a failover and a
//! reshard), KEYS, DBSIZE, RANDOMKEY, FLUSHALL/FLUSHDB ASYNC, INFO keyspace and PUBSUB
//! NUMSUB/SHARDNUMSUB, against real clusters with redis-rs and raw connections.
//!
//! Exact counts need a cluster nobody else writes to: those tests start their own.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, shared_cluster, unique_key_prefix, ClusterOptions, ProxyConfig,
    RedisCluster, Reply, Slotgate,
};

const STRINGS: usize = 45_000;
const HASHES: usize = 5_000;
const EXPIRING: usize = 1_000;
const TOTAL: usize = STRINGS + HASHES;

fn string_key(i: usize) -> String {
    format!("str:{i}")
}

fn hash_key(i: usize) -> String {
    format!("hash:{i}")
}

fn proxy_for(cluster: &RedisCluster) -> Slotgate {
    ProxyConfig::new(&cluster.seeds()).spawn()
}

fn connect(proxy: &Slotgate) -> redis::Connection {
    redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// `STRINGS` strings (the first `EXPIRING` with a one-hour TTL) and `HASHES` hashes, written
/// through slotgate in pipelines of 1,000 commands.
fn write_keys(con: &mut redis::Connection) {
    for chunk in (0..STRINGS).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let set = pipe.cmd("SET").arg(string_key(i)).arg(i);
            if i < EXPIRING {
                set.arg("EX").arg(3600);
            }
            set.ignore();
        }
        pipe.query::<()>(con).unwrap();
    }
    for chunk in (0..HASHES).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            pipe.cmd("HSET").arg(hash_key(i)).arg("f").arg(i).ignore();
        }
        pipe.query::<()>(con).unwrap();
    }
}

/// One SCAN call: the next cursor and the keys.
fn scan_once(
    con: &mut redis::Connection,
    cursor: u64,
    options: &[&str],
) -> redis::RedisResult<(u64, Vec<String>)> {
    redis::cmd("SCAN").arg(cursor).arg(options).query(con)
}

/// A full SCAN iteration: every key returned with how often, and how many calls it took.
fn scan_all(con: &mut redis::Connection, options: &[&str]) -> (HashMap<String, usize>, usize) {
    let mut seen = HashMap::new();
    let (mut cursor, mut calls) = (0, 0);
    loop {
        let (next, keys) = scan_once(con, cursor, options).unwrap();
        calls += 1;
        for k in keys {
            *seen.entry(k).or_default() += 1;
        }
        if next == 0 {
            return (seen, calls);
        }
        cursor = next;
    }
}

/// Each key of `expected` exactly once, and nothing else.
fn assert_exactly_once(seen: &HashMap<String, usize>, expected: &HashSet<String>, what: &str) {
    let repeated: Vec<_> = seen.iter().filter(|(_, &n)| n != 1).take(5).collect();
    assert!(
        repeated.is_empty(),
        "{what}: keys returned more than once: {repeated:?}"
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|k| !seen.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: keys never returned: {missing:?}"
    );
    let extra: Vec<_> = seen
        .keys()
        .filter(|k| !expected.contains(*k))
        .take(5)
        .collect();
    assert!(extra.is_empty(), "{what}: unexpected keys: {extra:?}");
}

fn int(reply: Result<Reply, String>) -> i64 {
    match reply {
        Ok(Reply::Int(n)) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

/// `field=value` from an INFO keyspace line like `db0:keys=1,expires=0,avg_ttl=0`.
fn keyspace_field(info: &str, field: &str) -> Option<i64> {
    let line = info.lines().find(|l| l.starts_with("db0:"))?;
    line["db0:".len()..].split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == field).then(|| v.parse().ok())?
    })
}

#[test]
fn keyspace_of_a_cluster_of_its_own() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = proxy_for(&cluster);
    let mut con = connect(&proxy);
    write_keys(&mut con);
    let strings: HashSet<String> = (0..STRINGS).map(string_key).collect();
    let hashes: HashSet<String> = (0..HASHES).map(hash_key).collect();
    let all: HashSet<String> = strings.union(&hashes).cloned().collect();

    // DBSIZE sums the primaries.
    let dbsize: usize = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, TOTAL);
    let direct: i64 = cluster
        .primaries()
        .iter()
        .map(|&p| int(cluster.query(p, &["DBSIZE"])))
        .sum();
    assert_eq!(direct, TOTAL as i64);

    // SCAN: every key exactly once, with COUNT 1000 and with the default COUNT.
    let (seen, calls) = scan_all(&mut con, &["COUNT", "1000"]);
    assert_exactly_once(&seen, &all, "SCAN COUNT 1000");
    assert!(calls >= 3, "one call per primary at least, got {calls}");
    eprintln!("SCAN COUNT 1000 over {TOTAL} keys: {calls} calls");
    let (seen, _) = scan_all(&mut con, &[]);
    assert_exactly_once(&seen, &all, "SCAN");

    // MATCH and TYPE are the nodes' own filters.
    let (seen, _) = scan_all(&mut con, &["MATCH", "hash:*", "COUNT", "1000"]);
    assert_exactly_once(&seen, &hashes, "SCAN MATCH hash:*");
    let (seen, _) = scan_all(&mut con, &["COUNT", "1000", "TYPE", "hash"]);
    assert_exactly_once(&seen, &hashes, "SCAN TYPE hash");
    let ones: HashSet<String> = strings
        .iter()
        .filter(|k| k.starts_with("str:1"))
        .cloned()
        .collect();
    let (seen, _) = scan_all(
        &mut con,
        &["MATCH", "str:1*", "TYPE", "string", "COUNT", "500"],
    );
    assert_exactly_once(&seen, &ones, "SCAN MATCH str:1* TYPE string");
    let (seen, _) = scan_all(
        &mut con,
        &["MATCH", "str:1*", "TYPE", "hash", "COUNT", "500"],
    );
    assert!(
        seen.is_empty(),
        "{:?}",
        seen.keys().take(3).collect::<Vec<_>>()
    );

    // redis-rs's own iterators drive the cursor.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for key in redis::Commands::scan::<String>(&mut con).unwrap() {
        *seen.entry(key.unwrap()).or_default() += 1;
    }
    assert_exactly_once(&seen, &all, "redis-rs scan()");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for key in redis::Commands::scan_match::<_, String>(&mut con, "hash:1*").unwrap() {
        *seen.entry(key.unwrap()).or_default() += 1;
    }
    let hash_ones: HashSet<String> = hashes
        .iter()
        .filter(|k| k.starts_with("hash:1"))
        .cloned()
        .collect();
    assert_exactly_once(&seen, &hash_ones, "redis-rs scan_match()");

    // KEYS merges every primary's answer.
    let keys: Vec<String> = redis::cmd("KEYS").arg("hash:*").query(&mut con).unwrap();
    assert_eq!(keys.len(), HASHES);
    assert_eq!(keys.into_iter().collect::<HashSet<_>>(), hashes);

    // INFO keyspace sums the primaries; INFO (default) has it too, INFO server does not.
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert!(info.starts_with("# Keyspace\r\n"), "{info}");
    assert_eq!(keyspace_field(&info, "keys"), Some(TOTAL as i64), "{info}");
    assert_eq!(
        keyspace_field(&info, "expires"),
        Some(EXPIRING as i64),
        "{info}"
    );
    let avg_ttl = keyspace_field(&info, "avg_ttl").unwrap();
    assert!((0..=3_600_000).contains(&avg_ttl), "{info}");
    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(
        info.contains("# Server\r\n") && info.contains("# Keyspace\r\n"),
        "{info}"
    );
    assert_eq!(keyspace_field(&info, "keys"), Some(TOTAL as i64), "{info}");
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    assert!(!info.contains("# Keyspace"), "{info}");

    // INFO commandstats and stats sum the primaries: the SETs and GETs sent so far, counted
    // by the nodes themselves.
    let calls = |info: &str, cmd: &str| -> i64 {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let direct: i64 = cluster
        .primaries()
        .iter()
        .map(|&p| {
            calls(
                &cluster
                    .query(p, &["INFO", "commandstats"])
                    .unwrap()
                    .string(),
                "set",
            )
        })
        .sum();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .arg("stats")
        .query(&mut con)
        .unwrap();
    assert!(
        info.contains("# Stats\r\n") && info.contains("# Commandstats\r\n"),
        "{info}"
    );
    assert!(!info.contains("# Server"), "{info}");
    assert_eq!(calls(&info, "set"), direct, "{info}");
    assert!(direct >= STRINGS as i64, "{info}");
    let everything: String = redis::cmd("INFO")
        .arg("everything")
        .query(&mut con)
        .unwrap();
    for section in [
        "# Server",
        "# Memory",
        "# Stats",
        "# Errorstats",
        "# Commandstats",
        "# Latencystats",
        "# Keyspace",
        "# Slotgate",
    ] {
        assert!(
            everything.contains(section),
            "{section} missing:\n{everything}"
        );
    }

    // RANDOMKEY: existing keys, from more than one primary.
    let owners = cluster.slot_owners();
    let mut from = HashSet::new();
    for _ in 0..100 {
        let key: String = redis::cmd("RANDOMKEY").query(&mut con).unwrap();
        assert!(all.contains(&key), "{key}");
        from.insert(owners[slotgate_cluster::slot(key.as_bytes()) as usize]);
    }
    assert!(
        from.len() > 1,
        "RANDOMKEY only ever picked keys of {from:?}"
    );

    // FLUSHALL ASYNC empties every primary (and so every replica).
    let ok: String = redis::cmd("FLUSHALL").arg("ASYNC").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, 0);
    for port in cluster.primaries() {
        assert_eq!(int(cluster.query(port, &["DBSIZE"])), 0, "primary {port}");
    }
    for port in cluster.replicas() {
        assert_eventually!(
            int(cluster.query(port, &["DBSIZE"])) == 0,
            Duration::from_secs(10),
            "replica {port} kept keys"
        );
    }
    let randomkey: Option<String> = redis::cmd("RANDOMKEY").query(&mut con).unwrap();
    assert_eq!(randomkey, None);
    let (seen, calls) = scan_all(&mut con, &[]);
    assert!(seen.is_empty());
    assert_eq!(calls, 3, "one call per primary on an empty cluster");
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert_eq!(info, "# Keyspace\r\n\r\n");

    // FLUSHDB ASYNC too.
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET").arg(string_key(i)).arg(i).ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    let ok: String = redis::cmd("FLUSHDB").arg("ASYNC").query(&mut con).unwrap();
    assert_eq!(ok, "OK");
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, 0);
}

/// The replica of the primary on `primary` (per `INFO replication` of the replicas).
fn replica_of(cluster: &RedisCluster, primary: u16) -> u16 {
    cluster
        .replicas()
        .into_iter()
        .find(|&r| {
            cluster
                .query(r, &["INFO", "replication"])
                .ok()
                .and_then(|i| i.text())
                .is_some_and(|info| {
                    info.lines()
                        .any(|l| l.trim_end() == format!("master_port:{primary}"))
                })
        })
        .unwrap_or_else(|| panic!("no replica of {primary}"))
}

/// The primary position a client cursor names (its low 10 bits, per `scan.rs`).
fn position(cursor: u64) -> u64 {
    cursor & 1023
}

/// SCAN from `cursor` to the end, retrying a call that fails (as a client would while the
/// cluster changes) until `deadline`; adds what it sees to `seen`. Returns the errors met.
fn scan_to_end(
    con: &mut redis::Connection,
    mut cursor: u64,
    seen: &mut HashMap<String, usize>,
    deadline: Instant,
) -> Vec<String> {
    let mut errors = Vec::new();
    loop {
        match scan_once(con, cursor, &["COUNT", "200"]) {
            Ok((next, keys)) => {
                for k in keys {
                    *seen.entry(k).or_default() += 1;
                }
                if next == 0 {
                    return errors;
                }
                cursor = next;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "SCAN kept failing: {errors:?}");
                errors.push(e.to_string());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Every key of `expected` returned at least once; returns how many repeats there were.
fn assert_all_seen(seen: &HashMap<String, usize>, expected: &HashSet<String>, what: &str) -> usize {
    let missing: Vec<_> = expected.iter().filter(|k| !seen.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} keys present throughout were never returned, e.g. {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let repeats: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "{what}: all {} keys returned, {repeats} repeats",
        expected.len()
    );
    repeats
}

#[test]
fn scan_cursors_survive_a_failover_and_a_reshard() {
    const KEYS: usize = 20_000;
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = proxy_for(&cluster);
    let mut con = connect(&proxy);
    let expected: HashSet<String> = (0..KEYS).map(string_key).collect();
    let mut pipe = redis::pipe();
    for (i, key) in expected.iter().enumerate() {
        pipe.cmd("SET").arg(key).arg(i).ignore();
        if i % 1000 == 999 {
            pipe.query::<()>(&mut con).unwrap();
            pipe.clear();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);

    // Fail over the primary being scanned (position 0 serves slot 0) midway through it.
    let mut seen = HashMap::new();
    let (cursor, keys) = scan_once(&mut con, 0, &["COUNT", "200"]).unwrap();
    assert!(cursor != 0 && position(cursor) == 0, "{cursor}");
    for k in keys {
        *seen.entry(k).or_default() += 1;
    }
    let first = cluster.node_for_slot(0);
    cluster.failover(replica_of(&cluster, first));
    assert_ne!(cluster.node_for_slot(0), first);
    let errors = scan_to_end(&mut con, cursor, &mut seen, deadline);
    assert_all_seen(
        &seen,
        &expected,
        "SCAN across a failover of the scanned primary",
    );
    eprintln!("errors during the failover scan: {errors:?}");

    // Fail over a primary not scanned yet while the first one is being scanned.
    let mut seen = HashMap::new();
    let (cursor, keys) = scan_once(&mut con, 0, &["COUNT", "200"]).unwrap();
    for k in keys {
        *seen.entry(k).or_default() += 1;
    }
    let last = cluster.node_for_slot(16383);
    cluster.failover(replica_of(&cluster, last));
    scan_to_end(&mut con, cursor, &mut seen, deadline);
    let repeats = assert_all_seen(
        &seen,
        &expected,
        "SCAN across a failover of a later primary",
    );
    assert_eq!(
        repeats, 0,
        "a failover of a primary not scanned yet restarted the iteration"
    );

    // Reshard while the second primary is being scanned: slots move from the last primary
    // (not scanned yet) to the first (done). Without a restart their keys would be missed.
    let mut seen = HashMap::new();
    let mut cursor = 0;
    loop {
        let (next, keys) = scan_once(&mut con, cursor, &["COUNT", "200"]).unwrap();
        for k in keys {
            *seen.entry(k).or_default() += 1;
        }
        assert_ne!(
            next, 0,
            "the iteration ended before the second primary was half done"
        );
        cursor = next;
        if position(cursor) == 1 && cursor >> 26 != 0 {
            break;
        }
    }
    let (from, to) = (cluster.node_for_slot(16383), cluster.node_for_slot(0));
    cluster.reshard(from, to, 500);
    let moved = cluster
        .slot_owners()
        .iter()
        .enumerate()
        .filter(|&(slot, &owner)| owner == to && slot > 10_000)
        .count();
    assert!(moved > 0, "the reshard moved nothing");
    scan_to_end(&mut con, cursor, &mut seen, deadline);
    assert_all_seen(&seen, &expected, "SCAN across a reshard");
}

#[test]
fn invalid_cursors_get_redis_own_error() {
    let cluster = shared_cluster();
    let proxy = proxy_for(cluster);
    let node = cluster.primaries()[0];
    let mut raw = RawConn::connect(proxy.port());
    raw.roundtrip(&[b"SCAN", b"abc"], b"-ERR invalid cursor\r\n");
    raw.roundtrip(&[b"SCAN", b"0", b"COUNT", b"0"], b"-ERR syntax error\r\n");
    raw.roundtrip(&[b"SCAN", b"0", b"BOGUS"], b"-ERR syntax error\r\n");
    raw.roundtrip(
        &[b"SCAN"],
        b"-ERR wrong number of arguments for 'scan' command\r\n",
    );
    // Whatever Redis 7.0 accepts as a cursor slotgate accepts, and the other way round:
    // slotgate parses cursors as 7.0 does. Newer servers differ on a few (Redis 8.2 takes
    // " 1" and refuses "", Valkey 8.1 refuses ""; docs/support.md), so the comparison runs
    // against Redis 7.0 only.
    let seven = matches!(
        cluster.query(node, &["INFO", "server"]),
        Ok(Reply::Bulk(Some(info)))
            if String::from_utf8_lossy(&info).contains("redis_version:7.0.")
                && !String::from_utf8_lossy(&info).contains("valkey")
    );
    if !seven {
        return;
    }
    for cursor in [
        "",
        " 1",
        "1 ",
        "+1",
        "-1",
        "1x",
        "0x10",
        "-",
        "18446744073709551615",
        "18446744073709551616",
        "007",
    ] {
        let direct = cluster
            .query(node, &["SCAN", cursor, "COUNT", "1"])
            .unwrap();
        raw.send_command(&[b"SCAN", cursor.as_bytes(), b"COUNT", b"1"]);
        let through = raw.read_reply().unwrap();
        match direct {
            Reply::Error(e) => assert_eq!(
                String::from_utf8_lossy(&through),
                format!("-{e}\r\n"),
                "cursor {cursor:?}"
            ),
            _ => assert!(
                through.starts_with(b"*2\r\n"),
                "cursor {cursor:?}: {through:?}"
            ),
        }
    }
}

#[test]
fn pubsub_numsub_sums_the_primaries() {
    let cluster = shared_cluster();
    let proxy = proxy_for(cluster);
    let p = unique_key_prefix("numsub");
    let (a, b, none) = (format!("{p}a"), format!("{p}b"), format!("{p}none"));
    // Subscribers on two different primaries, one on a third channel only on the first.
    let primaries = cluster.primaries();
    let mut subs = Vec::new();
    for (port, channels) in [(primaries[0], vec![&a, &b]), (primaries[1], vec![&a])] {
        let mut sub = RawConn::connect(port);
        for ch in channels {
            sub.send_command(&[b"SUBSCRIBE", ch.as_bytes()]);
            sub.read_reply().unwrap();
        }
        subs.push(sub);
    }
    let mut raw = RawConn::connect(proxy.port());
    let expect = format!(
        "*6\r\n${}\r\n{a}\r\n:2\r\n${}\r\n{none}\r\n:0\r\n${}\r\n{b}\r\n:1\r\n",
        a.len(),
        none.len(),
        b.len()
    );
    raw.roundtrip(
        &[
            b"PUBSUB",
            b"NUMSUB",
            a.as_bytes(),
            none.as_bytes(),
            b.as_bytes(),
        ],
        expect.as_bytes(),
    );
    raw.roundtrip(&[b"PUBSUB", b"NUMSUB"], b"*0\r\n");

    // A sharded channel's subscribers are on the shard owning its slot.
    let owner = cluster.node_for_slot(slotgate_cluster::slot(a.as_bytes()));
    let mut ssub = RawConn::connect(owner);
    ssub.send_command(&[b"SSUBSCRIBE", a.as_bytes()]);
    ssub.read_reply().unwrap();
    let expect = format!("*2\r\n${}\r\n{a}\r\n:1\r\n", a.len());
    raw.roundtrip(
        &[b"PUBSUB", b"SHARDNUMSUB", a.as_bytes()],
        expect.as_bytes(),
    );
    drop(subs);
}

#[test]
fn keys_and_info_on_a_shared_cluster() {
    let cluster = shared_cluster();
    let proxy = proxy_for(cluster);
    let mut con = connect(&proxy);
    let p = unique_key_prefix("keys");
    let keys: HashSet<String> = (0..300).map(|i| format!("{p}{i}")).collect();
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(1).query(&mut con).unwrap();
    }
    let got: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{p}*"))
        .query(&mut con)
        .unwrap();
    assert_eq!(got.len(), keys.len());
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), keys);
    // SCAN MATCH on a shared cluster: this test's keys, each once.
    let (seen, _) = scan_all(&mut con, &["MATCH", &format!("{p}*"), "COUNT", "1000"]);
    assert_exactly_once(&seen, &keys, "SCAN MATCH prefix");
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert!(
        keyspace_field(&info, "keys").unwrap() >= keys.len() as i64,
        "{info}"
    );
}
