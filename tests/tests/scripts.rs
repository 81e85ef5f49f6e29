//! Lua through slotgate: EVAL/EVALSHA routed by their keys, SCRIPT LOAD on every primary, and
//! an EVALSHA that meets NOSCRIPT on a node that never loaded the script (a promoted replica,
//! a flushed cache) repaired with the body slotgate saw.

use std::time::Duration;

use slotgate_tests::raw::RawConn;
use slotgate_tests::{
    assert_eventually, shared_cluster, ClusterOptions, ProxyConfig, RedisCluster, Slotgate,
};

const SCRIPT: &str = "return redis.call('GET', KEYS[1])";

fn conn(proxy: &Slotgate) -> redis::Connection {
    redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn evalsha_after_a_failover_is_repaired() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let mut c = conn(&proxy);
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SCRIPT)
        .query(&mut c)
        .unwrap();
    let key = "lua:failover";
    let _: () = redis::cmd("SET").arg(key).arg("v1").query(&mut c).unwrap();
    let got: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg(key)
        .query(&mut c)
        .unwrap();
    assert_eq!(got, "v1");

    // Fail over the key's shard: the promoted replica never loaded the script.
    let slot = slotgate_cluster::slot(key.as_bytes());
    let old = cluster.node_for_slot(slot);
    let replica = cluster
        .replicas()
        .into_iter()
        .find(|&r| {
            cluster
                .cli(r, &["INFO", "replication"])
                .contains(&format!("master_port:{old}"))
        })
        .expect("a replica of the key's primary");
    cluster.failover(replica);
    assert_eventually!(
        cluster.node_for_slot(slot) == replica,
        Duration::from_secs(10)
    );
    let direct = cluster.cli(replica, &["EVALSHA", &sha, "1", key]);
    assert!(
        direct.starts_with("NOSCRIPT"),
        "the new primary has the script: {direct}"
    );

    let got: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg(key)
        .query(&mut c)
        .unwrap();
    assert_eq!(got, "v1", "EVALSHA through slotgate after the failover");
    assert_eq!(cluster.cli(replica, &["SCRIPT", "EXISTS", &sha]), "1");
}

#[test]
fn evalsha_after_a_script_flush_is_repaired_and_unknown_scripts_say_noscript() {
    let cluster = shared_cluster();
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let mut c = conn(&proxy);
    let body = "return 'flushed:' .. ARGV[1]";
    let key = "lua:flush";
    // EVAL teaches slotgate the body (Redis caches it on that node as well).
    let got: String = redis::cmd("EVAL")
        .arg(body)
        .arg(1)
        .arg(key)
        .arg("a")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, "flushed:a");
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query(&mut c)
        .unwrap();
    let owner = cluster.node_for_slot(slotgate_cluster::slot(key.as_bytes()));
    assert_eq!(cluster.cli(owner, &["SCRIPT", "FLUSH"]), "OK");
    let got: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg(key)
        .arg("b")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, "flushed:b");

    let mut raw = RawConn::connect(proxy.port());
    // The node's own NOSCRIPT, whose text differs by server (Redis 7.0 adds "Please use
    // EVAL.", Valkey does not).
    assert!(raw.send_command(&[
        b"EVALSHA",
        b"ffffffffffffffffffffffffffffffffffffffff",
        b"1",
        b"lua:x",
    ]));
    let reply = raw.read_reply().unwrap();
    assert!(
        reply.starts_with(b"-NOSCRIPT No matching script."),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}
