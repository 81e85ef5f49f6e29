//! RESP3 through slotgate against a real cluster: `HELLO 3` switches the client, its
//! replies arrive as RESP3 types (maps, sets, doubles, booleans, verbatim strings, nulls)
//! exactly as a node sends them, Pub/Sub messages arrive as pushes while other commands
//! run, transactions and blocking commands keep the protocol, and `HELLO 2` switches back.

use redis::Value;
use slotgate_tests::raw::bulk_text as bulk;
use slotgate_tests::raw::RawConn;
use slotgate_tests::{shared_cluster, ProxyConfig, Slotgate};

fn proxy() -> Slotgate {
    let cluster = shared_cluster();
    ProxyConfig::new(&cluster.seeds()).spawn()
}

/// `HELLO 3` on a raw connection; returns the reply.
fn hello(raw: &mut RawConn, version: &str) -> Vec<u8> {
    assert!(raw.send_command(&[b"HELLO", version.as_bytes()]));
    raw.read_reply().expect("HELLO reply")
}

fn text(v: &Value) -> String {
    match v {
        Value::VerbatimString { text, .. } => text.clone(),
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("not text: {other:?}"),
    }
}

#[test]
fn replies_decode_as_resp3_types_in_redis_rs() {
    let proxy = proxy();
    let url = format!("{}/?protocol=resp3", proxy.url());
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&["{r3t}h", "{r3t}s", "{r3t}z"])
        .query(&mut c)
        .unwrap();

    let hello: Value = redis::cmd("HELLO").query(&mut c).unwrap();
    let Value::Map(fields) = hello else {
        panic!("HELLO is not a map: {hello:?}")
    };
    assert!(fields
        .iter()
        .any(|(k, v)| k == &Value::BulkString(b"proto".to_vec()) && v == &Value::Int(3)));

    let _: () = redis::cmd("HSET")
        .arg(&["{r3t}h", "a", "1", "b", "2"])
        .query(&mut c)
        .unwrap();
    let v: Value = redis::cmd("HGETALL").arg("{r3t}h").query(&mut c).unwrap();
    assert!(matches!(&v, Value::Map(m) if m.len() == 2), "{v:?}");

    let _: () = redis::cmd("SADD")
        .arg(&["{r3t}s", "x", "y", "z"])
        .query(&mut c)
        .unwrap();
    let v: Value = redis::cmd("SMEMBERS").arg("{r3t}s").query(&mut c).unwrap();
    assert!(matches!(&v, Value::Set(s) if s.len() == 3), "{v:?}");

    let _: () = redis::cmd("ZADD")
        .arg(&["{r3t}z", "1.5", "m"])
        .query(&mut c)
        .unwrap();
    let v: Value = redis::cmd("ZSCORE")
        .arg(&["{r3t}z", "m"])
        .query(&mut c)
        .unwrap();
    assert_eq!(v, Value::Double(1.5));

    let v: Value = redis::cmd("GET").arg("{r3t}missing").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);

    // A script's RESP3 values pass through (a boolean needs RESP3 on the node's side too).
    let v: Value = redis::cmd("EVAL")
        .arg(&["redis.setresp(3); return true", "0"])
        .query(&mut c)
        .unwrap();
    assert_eq!(v, Value::Boolean(true));

    // Split across slots: the nulls of missing keys stay RESP3 nulls.
    let _: () = redis::cmd("MSET")
        .arg(&["{r3a}k", "1", "{r3b}k", "2"])
        .query(&mut c)
        .unwrap();
    let v: Value = redis::cmd("MGET")
        .arg(&["{r3a}k", "{r3c}missing", "{r3b}k"])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        v,
        Value::Array(vec![
            Value::BulkString(b"1".to_vec()),
            Value::Nil,
            Value::BulkString(b"2".to_vec()),
        ])
    );

    // slotgate's own replies: verbatim strings and maps, as Redis sends them.
    let v: Value = redis::cmd("INFO").query(&mut c).unwrap();
    assert!(matches!(&v, Value::VerbatimString { .. }), "{v:?}");
    assert!(text(&v).contains("redis_version:"));
    assert!(text(&v).contains("# Keyspace"));
    let v: Value = redis::cmd("CLIENT").arg("INFO").query(&mut c).unwrap();
    assert!(matches!(&v, Value::VerbatimString { .. }), "{v:?}");
    assert!(text(&v).contains(" resp=3"), "{v:?}");
    let v: Value = redis::cmd("CONFIG")
        .arg(&["GET", "appendonly"])
        .query(&mut c)
        .unwrap();
    assert!(matches!(&v, Value::Map(m) if m.len() == 1), "{v:?}");
    let v: Value = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(v, Value::Nil);

    // HELLO 2 switches back: the same hash is a flat array again.
    let _: Value = redis::cmd("HELLO").arg(2).query(&mut c).unwrap();
    let v: Value = redis::cmd("HGETALL").arg("{r3t}h").query(&mut c).unwrap();
    assert!(matches!(&v, Value::Array(a) if a.len() == 4), "{v:?}");
    let v: Value = redis::cmd("ZSCORE")
        .arg(&["{r3t}z", "m"])
        .query(&mut c)
        .unwrap();
    assert_eq!(v, Value::BulkString(b"1.5".to_vec()));
}

/// The same commands sent to the key's node directly and through slotgate, both after
/// `HELLO <version>`, give the same bytes.
fn same_bytes_as_the_node(version: &str) {
    let cluster = shared_cluster();
    let proxy = proxy();
    let key = format!("{{r3w{version}}}");
    let owner = cluster.node_for_slot(slotgate_cluster::slot(key.as_bytes()));
    let mut direct = RawConn::connect(owner);
    let mut via = RawConn::connect(proxy.port());
    hello(&mut direct, version);
    hello(&mut via, version);
    let script = "redis.setresp(3); return {true, false, redis.call('ZSCORE', KEYS[1], 'm')}";
    // Each side writes its own keys (same slot, same node), so both start from nothing.
    let commands = |side: &str| -> Vec<Vec<String>> {
        let k = |s: &str| format!("{key}{side}:{s}");
        vec![
            vec!["DEL".into(), k("h"), k("s"), k("z"), k("l")],
            vec!["HSET".into(), k("h"), "f".into(), "v".into()],
            vec!["HGETALL".into(), k("h")],
            vec!["HGETALL".into(), k("none")],
            vec!["SADD".into(), k("s"), "a".into()],
            vec!["SMEMBERS".into(), k("s")],
            vec!["ZADD".into(), k("z"), "2.5".into(), "m".into()],
            vec!["ZSCORE".into(), k("z"), "m".into()],
            vec![
                "ZRANGE".into(),
                k("z"),
                "0".into(),
                "-1".into(),
                "WITHSCORES".into(),
            ],
            vec!["ZSCORE".into(), k("z"), "nobody".into()],
            vec!["GET".into(), k("missing")],
            vec!["LPOP".into(), k("l")],
            vec!["LPOP".into(), k("l"), "2".into()],
            vec!["BLPOP".into(), k("l"), "0.05".into()],
            vec!["EVAL".into(), script.into(), "1".into(), k("z")],
            vec!["XINFO".into(), "HELP".into()],
            vec!["MULTI".into()],
            vec!["HGETALL".into(), k("h")],
            vec!["ZSCORE".into(), k("z"), "m".into()],
            vec!["EXEC".into()],
            vec!["HELLO".into(), "4".into()],
        ]
    };
    for (cmd, mine) in commands("direct").iter().zip(commands("proxy")) {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        assert!(direct.send_command(&args));
        let args: Vec<&[u8]> = mine.iter().map(|a| a.as_bytes()).collect();
        assert!(via.send_command(&args));
        let want = direct.read_reply().expect("node reply");
        let got = via.read_reply().expect("slotgate reply");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "RESP{version} reply to {cmd:?}"
        );
    }
}

#[test]
fn resp3_replies_are_byte_for_byte_the_nodes() {
    same_bytes_as_the_node("3");
}

#[test]
fn resp2_replies_after_hello_2_are_byte_for_byte_the_nodes() {
    same_bytes_as_the_node("2");
}

#[test]
fn hello_switches_both_ways_and_rejects_other_versions() {
    let proxy = proxy();
    let mut raw = RawConn::connect(proxy.port());
    let reply = String::from_utf8(hello(&mut raw, "3")).unwrap();
    assert!(reply.starts_with("%7\r\n"), "{reply}");
    assert!(
        reply.contains(&format!("{}:3\r\n", bulk("proto"))),
        "{reply}"
    );
    raw.roundtrip(&[b"GET", b"{r3h}missing"], b"_\r\n");
    raw.roundtrip(&[b"CLIENT", b"GETNAME"], b"_\r\n");
    // A blocking command on a dedicated connection answers in RESP3 too …
    raw.roundtrip(&[b"BLPOP", b"{r3h}nothing", b"0.05"], b"_\r\n");
    // … and HELLO 4 leaves the protocol alone.
    raw.roundtrip(
        &[b"HELLO", b"4"],
        b"-NOPROTO unsupported protocol version\r\n",
    );
    raw.roundtrip(&[b"GET", b"{r3h}missing"], b"_\r\n");

    let reply = String::from_utf8(hello(&mut raw, "2")).unwrap();
    assert!(reply.starts_with("*14\r\n"), "{reply}");
    assert!(
        reply.contains(&format!("{}:2\r\n", bulk("proto"))),
        "{reply}"
    );
    raw.roundtrip(&[b"GET", b"{r3h}missing"], b"$-1\r\n");
    // The pooled dedicated connection spoke RESP3 last: it is switched back.
    raw.roundtrip(&[b"BLPOP", b"{r3h}nothing", b"0.05"], b"*-1\r\n");

    // RESET goes back to RESP2 as well.
    hello(&mut raw, "3");
    raw.roundtrip(&[b"RESET"], b"+RESET\r\n");
    raw.roundtrip(&[b"GET", b"{r3h}missing"], b"$-1\r\n");
}

#[test]
fn watch_abort_is_a_resp3_null() {
    let proxy = proxy();
    let mut raw = RawConn::connect(proxy.port());
    hello(&mut raw, "3");
    let mut other = proxy.connection();
    raw.roundtrip(&[b"WATCH", b"{r3x}k"], b"+OK\r\n");
    let _: () = redis::cmd("SET")
        .arg(&["{r3x}k", "changed"])
        .query(&mut other)
        .unwrap();
    raw.roundtrip(&[b"MULTI"], b"+OK\r\n");
    raw.roundtrip(&[b"SET", b"{r3x}k", b"mine"], b"+QUEUED\r\n");
    raw.roundtrip(&[b"EXEC"], b"_\r\n");
}

#[test]
fn pubsub_messages_are_pushes_and_other_commands_still_run() {
    let proxy = proxy();
    let mut raw = RawConn::connect(proxy.port());
    hello(&mut raw, "3");
    raw.send_command(&[b"SUBSCRIBE", b"r3:news"]);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!(">3\r\n{}{}:1\r\n", bulk("subscribe"), bulk("r3:news")).into_bytes()
    );
    // Not restricted to the Pub/Sub family in RESP3; PING is a plain PONG.
    raw.roundtrip(&[b"GET", b"{r3p}missing"], b"_\r\n");
    raw.roundtrip(&[b"PING"], b"+PONG\r\n");

    let mut publisher = proxy.connection();
    let n: i64 = redis::cmd("PUBLISH")
        .arg(&["r3:news", "hello"])
        .query(&mut publisher)
        .unwrap();
    assert!(n >= 1);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!(
            ">3\r\n{}{}{}",
            bulk("message"),
            bulk("r3:news"),
            bulk("hello")
        )
        .into_bytes()
    );

    raw.send_command(&[b"SSUBSCRIBE", b"r3:shard"]);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!(">3\r\n{}{}:1\r\n", bulk("ssubscribe"), bulk("r3:shard")).into_bytes()
    );
    let n: i64 = redis::cmd("SPUBLISH")
        .arg(&["r3:shard", "sharded"])
        .query(&mut publisher)
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!(
            ">3\r\n{}{}{}",
            bulk("smessage"),
            bulk("r3:shard"),
            bulk("sharded")
        )
        .into_bytes()
    );

    raw.send_command(&[b"UNSUBSCRIBE"]);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!(">3\r\n{}{}:0\r\n", bulk("unsubscribe"), bulk("r3:news")).into_bytes()
    );
    // Nothing left to unsubscribe: the channel is a RESP3 null, as Redis sends it.
    raw.send_command(&[b"PUNSUBSCRIBE"]);
    assert_eq!(
        raw.read_reply().unwrap(),
        format!(">3\r\n{}_\r\n:0\r\n", bulk("punsubscribe")).into_bytes()
    );
    raw.roundtrip(&[b"PING"], b"+PONG\r\n");
}

#[test]
fn resp3_connections_say_hello_3_again_after_the_node_drops_them() {
    // A cluster of its own: killing every client connection of a node would disturb the
    // other suites' proxies on the shared cluster.
    let cluster = slotgate_tests::RedisCluster::start(slotgate_tests::ClusterOptions {
        replicas_per_primary: 0,
        ..Default::default()
    });
    let proxy = ProxyConfig::new(&cluster.seeds()).spawn();
    let mut raw = RawConn::connect(proxy.port());
    hello(&mut raw, "3");
    let keys: Vec<String> = (0..30).map(|i| format!("r3k:{i}")).collect();
    for k in &keys {
        raw.roundtrip(&[b"HSET", k.as_bytes(), b"f", b"v"], b":1\r\n");
    }
    for port in cluster.primaries() {
        let killed = cluster.cli(port, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        assert!(killed.trim().parse::<u32>().unwrap_or(0) > 0, "{killed}");
    }
    // Reads are resent once after a lost connection; either way the reconnected
    // connections must speak RESP3 again.
    for k in &keys {
        raw.roundtrip(&[b"HGETALL", k.as_bytes()], b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    }
}
