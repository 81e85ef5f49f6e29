use slotgate_cluster::SlotMap;
use slotgate_resp::{Request, Value};

use super::*;

/// Three shards on 127.0.0.1: primaries 7000..7002 (no replicas).
fn three() -> SlotMap {
    let node = |port: i64| {
        Value::Array(vec![
            Value::Bulk(b"127.0.0.1".to_vec()),
            Value::Integer(port),
        ])
    };
    let entries = [(0, 5460, 7000), (5461, 10922, 7001), (10923, 16383, 7002)]
        .iter()
        .map(|&(start, end, port)| {
            Value::Array(vec![Value::Integer(start), Value::Integer(end), node(port)])
        })
        .collect();
    SlotMap::from_cluster_slots(&Value::Array(entries), "127.0.0.1:1").unwrap()
}

fn timeout(args: &[&str]) -> Option<Option<Duration>> {
    parse_timeout(&Request::from_args(args))
}

#[test]
fn arguments_parse_as_redis_takes_them() {
    assert_eq!(
        timeout(&["WAITAOF", "1", "2", "300"]),
        Some(Some(Duration::from_millis(300)))
    );
    assert_eq!(timeout(&["WAITAOF", "0", "0", "0"]), Some(None));
    // Anything the node refuses goes to it as it is, for its own error text.
    for bad in [
        ["WAITAOF", "2", "0", "0"],
        ["WAITAOF", "-1", "0", "0"],
        ["WAITAOF", "x", "0", "0"],
        ["WAITAOF", "01", "0", "0"],
        ["WAITAOF", "0", "-1", "0"],
        ["WAITAOF", "0", "x", "0"],
        ["WAITAOF", "0", "0", "-1"],
        ["WAITAOF", "0", "0", "1.5"],
        ["WAITAOF", "0", "0", "9223372036854775807"],
    ] {
        assert_eq!(timeout(&bad), None, "{bad:?}");
    }
}

#[test]
fn the_mark_key_is_served_by_the_primary_asked() {
    let map = three();
    for slot in [0, 5460, 5461, 16383] {
        let (n, key) = mark_key(&map, slot, 0);
        let key_slot = slotgate_cluster::slot(&key);
        assert_eq!(map.shard_index(key_slot), map.shard_index(slot), "{slot}");
        assert!(key.starts_with(b"slotgate:waitaof:{"), "{key:?}");
        assert_eq!(slotgate_cluster::slot(n.to_string().as_bytes()), key_slot);
        // Past a tag (its slot migrating): the next one of the same shard.
        let (next, key) = mark_key(&map, slot, n + 1);
        assert!(next > n);
        let key_slot = slotgate_cluster::slot(&key);
        assert_eq!(map.shard_index(key_slot), map.shard_index(slot));
    }
    // One primary (standalone, sentinel): the first tag.
    let one = SlotMap::single(NodeAddr::new("127.0.0.1:6379"), Vec::new());
    assert_eq!(mark_key(&one, 1234, 0).1, b"slotgate:waitaof:{0}");
}

#[test]
fn every_slot_has_a_tag() {
    let mut seen = vec![false; slotgate_cluster::SLOT_COUNT];
    for n in 0..110_000u32 {
        seen[slotgate_cluster::slot(n.to_string().as_bytes()) as usize] = true;
    }
    assert!(seen.iter().all(|&s| s));
}

#[test]
fn primaries_answer_counts_or_errors() {
    assert_eq!(counts(b"*2\r\n:1\r\n:2\r\n"), Some((1, 2)));
    assert_eq!(counts(b"*1\r\n:1\r\n"), None);
    assert_eq!(
        counts(b"-ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled.\r\n"),
        None
    );
}
