use super::*;

fn node(host: &str, port: i64, id: &str) -> Value {
    Value::Array(vec![
        Value::Bulk(host.into()),
        Value::Integer(port),
        Value::Bulk(id.into()),
    ])
}

fn range(start: i64, end: i64, nodes: Vec<Value>) -> Value {
    let mut v = vec![Value::Integer(start), Value::Integer(end)];
    v.extend(nodes);
    Value::Array(v)
}

fn three_shards() -> Value {
    Value::Array(vec![
        range(
            0,
            5460,
            vec![node("127.0.0.1", 7000, "a"), node("127.0.0.1", 7003, "d")],
        ),
        range(
            5461,
            10922,
            vec![node("127.0.0.1", 7001, "b"), node("127.0.0.1", 7004, "e")],
        ),
        range(
            10923,
            16383,
            vec![node("127.0.0.1", 7002, "c"), node("127.0.0.1", 7005, "f")],
        ),
    ])
}

#[test]
fn builds_from_cluster_slots() {
    let map = SlotMap::from_cluster_slots(&three_shards(), "127.0.0.1:7000").unwrap();
    assert_eq!(map.covered(), 16384);
    assert_eq!(map.shards().len(), 3);
    assert_eq!(map.primary_for_slot(0).unwrap().as_str(), "127.0.0.1:7000");
    assert_eq!(
        map.primary_for_slot(12182).unwrap().as_str(),
        "127.0.0.1:7002"
    );
    assert_eq!(
        map.shard_for_slot(5461).unwrap().replicas[0].as_str(),
        "127.0.0.1:7004"
    );
    assert_eq!(
        map.ranges(),
        vec![(0, 5460, 0), (5461, 10922, 1), (10923, 16383, 2)]
    );
}

#[test]
fn empty_endpoint_is_the_asked_host_and_question_mark_is_skipped() {
    let reply = Value::Array(vec![
        range(0, 100, vec![node("", 7000, "a"), node("?", 7003, "d")]),
        range(101, 200, vec![node("?", 7001, "b")]),
    ]);
    let map = SlotMap::from_cluster_slots(&reply, "10.1.2.3:7000").unwrap();
    assert_eq!(map.primary_for_slot(5).unwrap().as_str(), "10.1.2.3:7000");
    assert!(map.shard_for_slot(5).unwrap().replicas.is_empty());
    assert_eq!(map.primary_for_slot(150), None);
    assert_eq!(map.covered(), 101);
}

#[test]
fn split_ranges_of_one_primary_share_a_shard() {
    let reply = Value::Array(vec![
        range(0, 10, vec![node("h", 1, "a")]),
        range(11, 20, vec![node("h", 2, "b")]),
        range(21, 30, vec![node("h", 1, "a")]),
    ]);
    let map = SlotMap::from_cluster_slots(&reply, "h:1").unwrap();
    assert_eq!(map.shards().len(), 2);
    assert_eq!(map.shard_index(25), Some(0));
}

#[test]
fn ipv6_endpoints_are_bracketed() {
    let reply = Value::Array(vec![range(0, 16383, vec![node("::1", 7000, "a")])]);
    let map = SlotMap::from_cluster_slots(&reply, "[::1]:7000").unwrap();
    assert_eq!(map.primary_for_slot(1).unwrap().as_str(), "[::1]:7000");
    assert_eq!(map.primary_for_slot(1).unwrap().host(), "::1");
}

#[test]
fn malformed_replies_are_errors_not_panics() {
    let bad = [
        Value::Integer(1),
        Value::Array(vec![Value::Integer(1)]),
        Value::Array(vec![range(5, 1, vec![node("h", 1, "a")])]),
        Value::Array(vec![range(0, 16384, vec![node("h", 1, "a")])]),
        Value::Array(vec![range(
            0,
            1,
            vec![Value::Array(vec![
                Value::Bulk(b"h".to_vec()),
                Value::Integer(0),
            ])],
        )]),
    ];
    for b in bad {
        assert!(SlotMap::from_cluster_slots(&b, "h:1").is_err(), "{b:?}");
    }
    let err =
        SlotMap::from_cluster_slots(&Value::Error(b"CLUSTERDOWN x".to_vec()), "h:1").unwrap_err();
    assert!(matches!(err, ClusterError::NodeError(_)));
}

#[test]
fn moved_patches_one_slot() {
    let map = SlotMap::from_cluster_slots(&three_shards(), "127.0.0.1:7000").unwrap();
    assert!(map.with_moved(0, "127.0.0.1:7000").is_none());
    let next = map.with_moved(0, "127.0.0.1:7001").unwrap();
    assert_eq!(next.primary_for_slot(0).unwrap().as_str(), "127.0.0.1:7001");
    assert_eq!(next.primary_for_slot(1).unwrap().as_str(), "127.0.0.1:7000");
    assert!(!next.same_assignment(&map));
    let new_node = next.with_moved(1, "127.0.0.1:7009").unwrap();
    assert_eq!(new_node.shards().len(), 4);
    assert_eq!(
        new_node.primary_for_slot(1).unwrap().as_str(),
        "127.0.0.1:7009"
    );
}

#[test]
fn all_nodes_lists_primaries_then_replicas() {
    let map = SlotMap::from_cluster_slots(&three_shards(), "127.0.0.1:7000").unwrap();
    let nodes: Vec<String> = map.all_nodes().iter().map(|n| n.to_string()).collect();
    assert_eq!(nodes.len(), 6);
    assert_eq!(nodes[0], "127.0.0.1:7000");
    assert_eq!(nodes[3], "127.0.0.1:7003");
}

#[test]
fn fuzz_entry_point_takes_a_real_reply_and_garbage() {
    let real = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/corpus/cluster_slots/seed-three_shards"
    ))
    .unwrap();
    let (value, _) = slotgate_resp::value::parse_value(&real).unwrap().unwrap();
    assert_eq!(
        SlotMap::from_cluster_slots(&value, "127.0.0.1:7101")
            .unwrap()
            .covered(),
        16384
    );
    for cut in 0..real.len() {
        crate::fuzzing::cluster_slots(&real[..cut]);
    }
    crate::fuzzing::cluster_slots(b"*1\r\n*3\r\n:5\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n");
}

#[test]
fn every_map_gets_its_own_id() {
    let a = SlotMap::from_cluster_slots(&three_shards(), "127.0.0.1:7000").unwrap();
    let b = SlotMap::from_cluster_slots(&three_shards(), "127.0.0.1:7000").unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(a, b, "equality ignores the id");
    let c = a.with_moved(0, "127.0.0.1:7001").unwrap();
    assert_ne!(c.id(), a.id());
}

/// The block index agrees with the per-slot owners for maps whose ranges start and end
/// anywhere (inside blocks, gaps left uncovered) and after MOVED patches.
#[test]
fn block_index_agrees_with_every_slot() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    for _ in 0..50 {
        // Owner per slot as built: None for a gap, Some(port) for a primary.
        let mut owner: Vec<Option<i64>> = vec![None; 16384];
        let mut ranges = Vec::new();
        let mut start = 0;
        while start < 16384 {
            let end = (start + next(300) as i64).min(16383);
            if next(5) > 0 {
                let port = 7000 + next(4) as i64;
                owner[start as usize..=end as usize].fill(Some(port));
                ranges.push(range(start, end, vec![node("10.0.0.1", port, "")]));
            }
            start = end + 1;
        }
        let mut map = SlotMap::from_cluster_slots(&Value::Array(ranges), "h:1").unwrap();
        for _ in 0..next(40) {
            let slot = next(16384) as u16;
            let port = 7000 + next(6) as i64;
            if let Some(moved) = map.with_moved(slot, &format!("10.0.0.1:{port}")) {
                map = moved;
            }
            owner[slot as usize] = Some(port);
        }
        for (slot, want) in owner.iter().enumerate() {
            let got = map.primary_for_slot(slot as u16).map(|p| p.to_string());
            assert_eq!(
                got,
                want.map(|port| format!("10.0.0.1:{port}")),
                "slot {slot}"
            );
        }
        assert_eq!(map.covered(), owner.iter().filter(|o| o.is_some()).count());
    }
    assert_eq!(SlotMap::empty().shard_index(16383), None);
    assert_eq!(SlotMap::empty().shard_index(16384), None);
}

#[test]
fn a_single_primary_owns_every_slot() {
    let primary = NodeAddr::new("10.0.0.1:6379");
    let replica = NodeAddr::new("10.0.0.2:6379");
    let map = SlotMap::single(primary.clone(), vec![replica.clone()]);
    assert_eq!(map.covered(), SLOT_COUNT);
    for slot in [0u16, 63, 64, 8000, 16383] {
        assert_eq!(map.primary_for_slot(slot), Some(&primary));
    }
    assert_eq!(map.serving_shards().len(), 1);
    assert_eq!(map.all_nodes(), vec![primary.clone(), replica]);
    assert!(map.same_assignment(&SlotMap::single(primary, Vec::new())));
}
