//! Every routing family through slotgate in front of a real 3+3 cluster, with redis-rs as the
//! client and a raw connection for byte-exact replies.

use std::collections::HashSet;

use redis::Value;
use slotgate_tests::raw::RawConn;
use slotgate_tests::{shared_cluster, shared_proxy, unique_key_prefix, Slotgate};

fn proxy() -> &'static Slotgate {
    shared_proxy()
}

fn conn() -> redis::Connection {
    redis::Client::open(proxy().url())
        .unwrap()
        .get_connection()
        .unwrap()
}

fn slot(key: &str) -> u16 {
    slotgate_cluster::slot(key.as_bytes())
}

#[test]
fn local_commands() {
    let mut raw = RawConn::connect(proxy().port());
    raw.roundtrip(&[b"PING"], b"+PONG\r\n");
    raw.roundtrip(&[b"ping", b"hi"], b"$2\r\nhi\r\n");
    raw.roundtrip(&[b"ECHO", b"x\r\ny"], b"$4\r\nx\r\ny\r\n");
    raw.roundtrip(&[b"SELECT", b"0"], b"+OK\r\n");
    raw.roundtrip(
        &[b"SELECT", b"1"],
        b"-ERR SELECT is not allowed in cluster mode\r\n",
    );
    raw.roundtrip(
        &[b"SELECT", b"x"],
        b"-ERR value is not an integer or out of range\r\n",
    );
    raw.roundtrip(&[b"CLIENT", b"GETNAME"], b"$-1\r\n");
    raw.roundtrip(&[b"CLIENT", b"SETNAME", b"worker-1"], b"+OK\r\n");
    raw.roundtrip(&[b"client", b"getname"], b"$8\r\nworker-1\r\n");
    raw.roundtrip(
        &[b"CLIENT", b"SETNAME", b"bad name"],
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    );
    raw.roundtrip(
        &[b"CLIENT", b"SETINFO", b"lib-name", b"redis-py"],
        b"+OK\r\n",
    );
    raw.roundtrip(
        &[b"HELLO", b"4"],
        b"-NOPROTO unsupported protocol version\r\n",
    );
    raw.roundtrip(
        &[b"CONFIG", b"GET", b"save"],
        b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n",
    );
    raw.roundtrip(
        &[b"CONFIG", b"GET", b"appendonly"],
        b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
    );
    raw.roundtrip(&[b"CONFIG", b"GET", b"maxmemory"], b"*0\r\n");
    raw.roundtrip(
        &[b"CLUSTER", b"KEYSLOT", b"{user1000}.following"],
        b":3443\r\n",
    );
    raw.roundtrip(&[b"QUIT"], b"+OK\r\n");
    assert!(raw.closed_within(std::time::Duration::from_secs(5)));

    let mut c = conn();
    let hello: Vec<Value> = redis::cmd("HELLO").arg(2).query(&mut c).unwrap();
    assert_eq!(hello.len(), 14);
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).unwrap();
    assert!(id > 0);
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    assert!(info.contains("redis_version:"), "{info}");
    assert!(info.contains("slots_covered:16384"), "{info}");
    let server_only: String = redis::cmd("INFO").arg("server").query(&mut c).unwrap();
    assert!(!server_only.contains("# Slotgate"));
    // COMMAND is answered from a primary's own table.
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(count > 200, "{count}");
    let info: Vec<Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .query(&mut c)
        .unwrap();
    assert_eq!(info.len(), 1);
}

#[test]
fn errors_match_redis_and_keep_the_connection() {
    let mut raw = RawConn::connect(proxy().port());
    raw.roundtrip(
        &[b"foo", b"a", b"b"],
        b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n",
    );
    raw.roundtrip(
        &[b"GET"],
        b"-ERR wrong number of arguments for 'get' command\r\n",
    );
    raw.roundtrip(
        &[b"CLIENT", b"bogus"],
        b"-ERR unknown subcommand 'bogus'. Try CLIENT HELP.\r\n",
    );
    raw.roundtrip(
        &[b"SUNIONSTORE", b"a", b"b", b"c"],
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
    );
    raw.roundtrip(
        &[b"MSETNX", b"a", b"1", b"b", b"2"],
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n",
    );
    raw.roundtrip(&[b"PING"], b"+PONG\r\n");
    // The upstream's own errors pass through untouched.
    let p = unique_key_prefix("err");
    let key = format!("{p}list");
    raw.roundtrip(&[b"LPUSH", key.as_bytes(), b"x"], b":1\r\n");
    raw.roundtrip(
        &[b"GET", key.as_bytes()],
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
    raw.roundtrip(
        &[b"INCR", key.as_bytes(), b"extra"],
        b"-ERR wrong number of arguments for 'incr' command\r\n",
    );
}

#[test]
fn inline_commands() {
    let p = unique_key_prefix("inline");
    let mut raw = RawConn::connect(proxy().port());
    assert!(raw.send(b"PING\r\n"));
    raw.expect(b"+PONG\r\n");
    assert!(raw.send(format!("SET {p}k \"hello world\"\r\n\r\nGET {p}k\n").as_bytes()));
    raw.expect(b"+OK\r\n$11\r\nhello world\r\n");
}

#[test]
fn single_slot_commands_route_by_key() {
    let p = unique_key_prefix("single");
    let mut c = conn();
    // Keys on every primary.
    let keys: Vec<String> = (0..50).map(|i| format!("{p}{i}")).collect();
    let owners_by_slot = shared_cluster().slot_owners();
    let owners: HashSet<u16> = keys
        .iter()
        .map(|k| owners_by_slot[slot(k) as usize])
        .collect();
    assert_eq!(owners.len(), 3, "test keys should cover all primaries");
    for (i, k) in keys.iter().enumerate() {
        let _: () = redis::cmd("SET").arg(k).arg(i).query(&mut c).unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        let v: usize = redis::cmd("GET").arg(k).query(&mut c).unwrap();
        assert_eq!(v, i);
    }
    // Multi-key commands within one slot via hash tags.
    let a = format!("{{{p}tag}}a");
    let b = format!("{{{p}tag}}b");
    let d = format!("{{{p}tag}}dest");
    let _: () = redis::cmd("SADD")
        .arg(&a)
        .arg("x")
        .arg("y")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg(&b)
        .arg("y")
        .arg("z")
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("SUNIONSTORE")
        .arg(&d)
        .arg(&a)
        .arg(&b)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 3);
    // EVAL routes by its numkeys keys; a keyless script goes to any primary.
    let got: String = redis::cmd("EVAL")
        .arg("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])")
        .arg(1)
        .arg(format!("{p}eval"))
        .arg("scripted")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, "scripted");
    let one: i64 = redis::cmd("EVAL")
        .arg("return 1")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(one, 1);
    let err = redis::cmd("EVAL")
        .arg("return 1")
        .arg(5)
        .arg("k")
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Number of keys can't be greater than number of args"),
        "{err}"
    );
}

#[test]
fn mget_of_500_keys_across_slots_keeps_order_and_nils() {
    let p = unique_key_prefix("mget");
    let mut c = conn();
    let keys: Vec<String> = (0..500).map(|i| format!("{p}{i}")).collect();
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 3 != 0) {
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(format!("v{i}"))
            .query(&mut c)
            .unwrap();
    }
    let got: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
    assert_eq!(got.len(), 500);
    for (i, v) in got.iter().enumerate() {
        if i % 3 == 0 {
            assert_eq!(v, &None, "key {i} should be missing");
        } else {
            assert_eq!(v.as_deref(), Some(format!("v{i}").as_str()), "key {i}");
        }
    }
    // Duplicate keys keep their positions too.
    let dup: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys[1])
        .arg(&keys[0])
        .arg(&keys[1])
        .query(&mut c)
        .unwrap();
    assert_eq!(dup, vec![Some("v1".into()), None, Some("v1".into())]);
}

#[test]
fn split_writes_sum_and_ack() {
    let p = unique_key_prefix("split");
    let mut c = conn();
    let keys: Vec<String> = (0..40).map(|i| format!("{p}{i}")).collect();
    let mut mset = redis::cmd("MSET");
    for k in &keys {
        mset.arg(k).arg(format!("{k}-value"));
    }
    let _: () = mset.query(&mut c).unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&keys)
        .arg(&keys[0])
        .arg(format!("{p}missing"))
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 41, "EXISTS counts duplicates like Redis");
    let touched: i64 = redis::cmd("TOUCH").arg(&keys[..10]).query(&mut c).unwrap();
    assert_eq!(touched, 10);
    let deleted: i64 = redis::cmd("DEL")
        .arg(&keys[..20])
        .arg(format!("{p}missing"))
        .query(&mut c)
        .unwrap();
    assert_eq!(deleted, 20);
    let unlinked: i64 = redis::cmd("UNLINK").arg(&keys).query(&mut c).unwrap();
    assert_eq!(unlinked, 20);
    let left: i64 = redis::cmd("EXISTS").arg(&keys).query(&mut c).unwrap();
    assert_eq!(left, 0);
}

#[test]
fn pipeline_of_10000_commands_across_all_primaries_in_order() {
    let p = unique_key_prefix("pipe");
    let mut c = conn();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        let k = format!("{p}{i}");
        pipe.cmd("SET").arg(&k).arg(i * 7);
        pipe.cmd("INCRBY").arg(&k).arg(i);
    }
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 10_000);
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0], Value::Okay, "SET {i}");
        assert_eq!(pair[1], Value::Int(i as i64 * 8), "INCRBY {i}");
    }
    let owners_by_slot = shared_cluster().slot_owners();
    let owners: HashSet<u16> = (0..5000)
        .map(|i| owners_by_slot[slot(&format!("{p}{i}")) as usize])
        .collect();
    assert_eq!(owners.len(), 3);
    // Reads interleaved with local commands keep their order too.
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("GET").arg(format!("{p}{i}"));
        pipe.cmd("ECHO").arg(i);
    }
    let replies: Vec<String> = pipe.query(&mut c).unwrap();
    for (i, pair) in replies.chunks(2).enumerate() {
        assert_eq!(pair[0], (i * 8).to_string());
        assert_eq!(pair[1], i.to_string());
    }
}

#[test]
fn keyspace_fanout_commands() {
    let p = unique_key_prefix("fan");
    let mut c = conn();
    for i in 0..30 {
        let _: () = redis::cmd("SET")
            .arg(format!("{p}{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{p}*"))
        .query(&mut c)
        .unwrap();
    keys.sort();
    let mut expected: Vec<String> = (0..30).map(|i| format!("{p}{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected);
    let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert!(size >= 30, "{size}");
    let direct: i64 = shared_cluster()
        .primaries()
        .iter()
        .map(|&port| {
            shared_cluster()
                .cli(port, &["DBSIZE"])
                .trim()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    // Other tests write concurrently; the proxy's sum is close to the direct sum.
    assert!(
        (size - direct).abs() < 20_000,
        "proxy {size} vs direct {direct}"
    );
    let random: Option<String> = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
    assert!(random.is_some());
}

#[test]
fn client_reply_off_and_skip_drop_replies_in_order() {
    let p = unique_key_prefix("client-reply");
    let (a, b) = (format!("{p}:a"), format!("{p}:b"));
    let mut raw = slotgate_tests::raw::RawConn::connect(proxy().port());
    // One pipeline: OFF mutes itself and what follows until ON, whose +OK comes back.
    let mut pipeline = Vec::new();
    for args in [
        vec!["CLIENT", "REPLY", "OFF"],
        vec!["SET", &a, "1"],
        vec!["GET", &a],
        vec!["GET", "no-such-key-anywhere"],
        vec!["CLIENT", "REPLY", "ON"],
        vec!["GET", &a],
        // SKIP mutes itself and the next command only.
        vec!["CLIENT", "REPLY", "SKIP"],
        vec!["SET", &b, "2"],
        vec!["GET", &b],
    ] {
        pipeline.extend(slotgate_tests::probe::encode(&args));
    }
    assert!(raw.send(&pipeline));
    raw.expect(b"+OK\r\n$1\r\n1\r\n$1\r\n2\r\n");
    // Nothing else was owed: the next command's reply comes next.
    raw.roundtrip(&[b"PING"], b"+PONG\r\n");
    raw.roundtrip(&[b"CLIENT", b"REPLY", b"MAYBE"], b"-ERR syntax error\r\n");
}
