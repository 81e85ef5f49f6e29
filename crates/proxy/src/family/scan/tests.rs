use bytes::{Bytes, BytesMut};
use slotgate_cluster::SlotMap;
use slotgate_resp::{encode, Request, Value};
use tokio::time::Instant;

use crate::telemetry::metrics::CmdResult;

use super::*;

/// A CLUSTER SLOTS reply: `(start, end, primary port)` per range, primaries on 127.0.0.1.
fn map(ranges: &[(i64, i64, i64)]) -> SlotMap {
    let entries = ranges
        .iter()
        .map(|&(start, end, port)| {
            Value::Array(vec![
                Value::Integer(start),
                Value::Integer(end),
                Value::Array(vec![
                    Value::Bulk(b"127.0.0.1".to_vec()),
                    Value::Integer(port),
                ]),
            ])
        })
        .collect();
    SlotMap::from_cluster_slots(&Value::Array(entries), "127.0.0.1:1").unwrap()
}

fn three() -> SlotMap {
    // Listed out of slot order, and with addresses that do not sort like the slots.
    map(&[(10923, 16383, 7000), (0, 5460, 7002), (5461, 10922, 7001)])
}

fn addrs(l: &Layout) -> Vec<&str> {
    l.primaries.iter().map(|a| a.as_str()).collect()
}

#[test]
fn cursor_fields_round_trip_below_2_63() {
    let c = Cursor {
        position: (MAX_PRIMARIES - 1) as u16,
        check: u16::MAX,
        node_cursor: NODE_CURSOR_LIMIT - 1,
    };
    assert_eq!(c.encode(), i64::MAX as u64);
    assert_eq!(Cursor::decode(c.encode()), c);
    let small = Cursor {
        position: 2,
        check: 0xbeef,
        node_cursor: 12345,
    };
    assert_eq!(Cursor::decode(small.encode()), small);
    assert_eq!(NODE_CURSOR_LIMIT, 1 << 37);
}

#[test]
fn cursor_parsing_copies_redis() {
    assert_eq!(parse_cursor(b"0"), Some(0));
    assert_eq!(parse_cursor(b"42"), Some(42));
    assert_eq!(parse_cursor(b"+42"), Some(42));
    assert_eq!(parse_cursor(b""), Some(0));
    assert_eq!(parse_cursor(b"-1"), Some(u64::MAX));
    assert_eq!(parse_cursor(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_cursor(b"7\0junk"), Some(7));
    for bad in [
        &b"abc"[..],
        b" 1",
        b"1 ",
        b"\t1",
        b"1x",
        b"0x10",
        b"-",
        b"+",
        b"18446744073709551616",
        b"99999999999999999999999",
        b"1.5",
    ] {
        assert_eq!(
            parse_cursor(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn primaries_are_ordered_by_their_lowest_slot() {
    let l = Layout::of(&three());
    assert!(l.complete);
    assert_eq!(
        addrs(&l),
        ["127.0.0.1:7002", "127.0.0.1:7001", "127.0.0.1:7000"]
    );
}

#[test]
fn a_full_iteration_walks_every_primary_once() {
    let l = Layout::of(&three());
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let (p, node_cursor) = l.resume(cursor);
        assert_eq!(node_cursor, 0);
        seen.push(p);
        cursor = l.step(p).after;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen, [0, 1, 2]);
}

#[test]
fn a_cursor_resumes_on_the_same_layout_and_node() {
    let l = Layout::of(&three());
    let step = l.step(1);
    let c = Cursor {
        position: 1,
        check: step.check,
        node_cursor: 99,
    }
    .encode();
    assert_eq!(l.resume(c), (1, 99));
    // Another map value with the same layout (a periodic refresh) agrees.
    assert_eq!(Layout::of(&three()).resume(c), (1, 99));
}

#[test]
fn failover_of_the_scanned_primary_restarts_others_do_not() {
    let before = Layout::of(&three());
    // 7001 (position 1) is replaced by its replica 7004: same slots, new address.
    let after = Layout::of(&map(&[
        (10923, 16383, 7000),
        (0, 5460, 7002),
        (5461, 10922, 7004),
    ]));
    assert_eq!(before.digest, after.digest);
    assert_eq!(addrs(&after)[1], "127.0.0.1:7004");
    let at = |l: &Layout, p: usize| {
        Cursor {
            position: p as u16,
            check: l.check(p),
            node_cursor: 7,
        }
        .encode()
    };
    assert_eq!(after.resume(at(&before, 1)), (0, 0));
    assert_eq!(after.resume(at(&before, 0)), (0, 7));
    assert_eq!(after.resume(at(&before, 2)), (2, 7));
    // A cursor at the start of the failed-over primary stays good: none of it was scanned.
    assert_eq!(after.resume(before.step(0).after), (1, 0));
}

#[test]
fn a_reshard_restarts_the_iteration() {
    let before = Layout::of(&three());
    // Slots 12000-12099 move from the last primary to the first one.
    let after = Layout::of(&map(&[
        (0, 5460, 7002),
        (5461, 10922, 7001),
        (10923, 11999, 7000),
        (12000, 12099, 7002),
        (12100, 16383, 7000),
    ]));
    assert_ne!(before.digest, after.digest);
    for p in 0..3 {
        let c = Cursor {
            position: p as u16,
            check: before.check(p),
            node_cursor: 5,
        }
        .encode();
        assert_eq!(after.resume(c), (0, 0), "position {p}");
    }
}

#[test]
fn foreign_cursors_restart() {
    let l = Layout::of(&three());
    for c in [1, 5, 1 << 40, u64::MAX, i64::MAX as u64] {
        assert_eq!(l.resume(c), (0, 0), "{c}");
    }
}

#[test]
fn an_uncovered_slot_makes_the_layout_incomplete() {
    let l = Layout::of(&map(&[(0, 5460, 7002), (5462, 16383, 7001)]));
    assert!(!l.complete);
}

fn reply(node_cursor: &str, keys: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    encode::array_header(&mut b, 2);
    encode::bulk(&mut b, node_cursor.as_bytes());
    encode::array_header(&mut b, keys.len());
    for k in keys {
        encode::bulk(&mut b, k.as_bytes());
    }
    b.freeze()
}

fn keys_array(keys: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    encode::array_header(&mut b, keys.len());
    for k in keys {
        encode::bulk(&mut b, k.as_bytes());
    }
    b.freeze()
}

/// `CLUSTER SLOTS` as a node would send it: `(start, end, primary port)` per range.
fn slots_reply(ranges: &[(i64, i64, i64)]) -> Bytes {
    let mut b = BytesMut::new();
    encode::array_header(&mut b, ranges.len());
    for &(start, end, port) in ranges {
        encode::array_header(&mut b, 3);
        encode::integer(&mut b, start);
        encode::integer(&mut b, end);
        encode::array_header(&mut b, 3);
        encode::bulk(&mut b, b"127.0.0.1");
        encode::integer(&mut b, port);
        encode::bulk(&mut b, format!("id{port}").as_bytes());
    }
    b.freeze()
}

const THREE: [(i64, i64, i64); 3] = [(10923, 16383, 7000), (0, 5460, 7002), (5461, 10922, 7001)];

fn scan_op(step: Step) -> ScanOp {
    ScanOp {
        step,
        deadline: Instant::now(),
        ops: Vec::new(),
        keys: None,
        outcome: CmdResult::Ok,
        done: None,
        budget: crate::testing::budget(),
    }
}

#[test]
fn node_replies_are_split_into_cursor_and_keys() {
    assert_eq!(
        split_scan_reply(&reply("48", &["a", "b"])),
        Some((48, keys_array(&["a", "b"])))
    );
    for odd in [
        &b":1\r\n"[..],
        b"*1\r\n$1\r\n0\r\n",
        b"*2\r\n$1\r\nx\r\n*0\r\n",
        b"*2\r\n$1\r\n0\r\n$1\r\nk\r\n",
        b"*2\r\n",
    ] {
        assert_eq!(split_scan_reply(&Bytes::copy_from_slice(odd)), None);
    }
}

#[test]
fn a_node_midway_gives_a_cursor_on_the_same_node() {
    let l = Layout::of(&three());
    let step = l.step(1);
    let check = step.check;
    let mut op = scan_op(step);
    let (cursor, keys) = op.first_stage(&[reply("48", &["a"])]).unwrap().unwrap();
    assert_eq!(keys, keys_array(&["a"]));
    assert_eq!(l.resume(cursor), (1, 48));
    assert_eq!(
        Cursor::decode(cursor),
        Cursor {
            position: 1,
            check,
            node_cursor: 48
        }
    );
}

#[test]
fn a_finished_node_is_checked_before_moving_on() {
    let l = Layout::of(&three());
    let mut op = scan_op(l.step(1));
    assert_eq!(op.first_stage(&[reply("0", &["z"])]), Ok(None));
    assert_eq!(op.keys, Some(keys_array(&["z"])));
    // The node's own view agrees with the layout: on to the next primary.
    assert_eq!(op.step.owns_what_it_says(&slots_reply(&THREE)), Some(true));
    assert_eq!(l.resume(op.step.after), (2, 0));
    assert_eq!(l.step(2).after, 0);
    // It lost slots 6000-6099 (a reshard slotgate has not heard of): restart.
    let resharded = [
        (10923, 16383, 7000),
        (0, 5460, 7002),
        (5461, 5999, 7001),
        (6000, 6099, 7000),
        (6100, 10922, 7001),
    ];
    assert_eq!(
        op.step.owns_what_it_says(&slots_reply(&resharded)),
        Some(false)
    );
    // It is a replica now (a failover slotgate has not heard of): restart.
    let failed_over = [(10923, 16383, 7000), (0, 5460, 7002), (5461, 10922, 7004)];
    assert_eq!(
        op.step.owns_what_it_says(&slots_reply(&failed_over)),
        Some(false)
    );
    // Another primary's failover does not concern this one.
    let other = [(10923, 16383, 7005), (0, 5460, 7002), (5461, 10922, 7001)];
    assert_eq!(op.step.owns_what_it_says(&slots_reply(&other)), Some(true));
    assert_eq!(
        op.step.owns_what_it_says(&Bytes::from_static(b"+OK\r\n")),
        None
    );
}

#[test]
fn a_start_check_that_fails_starts_that_primary_again() {
    let l = Layout::of(&three());
    let mut op = scan_op(l.step(0));
    let moved = [(10923, 16383, 7000), (0, 5000, 7002), (5001, 10922, 7001)];
    let got = op.first_stage(&[slots_reply(&moved), reply("12", &["k"])]);
    assert_eq!(got, Ok(Some((RESTART, keys_array(&[])))));
    assert_eq!(l.resume(RESTART), (0, 0));
    assert_ne!(RESTART, 0);
    // Further on, the same primary starts again (the check decides once the map is fresh).
    let mut op = scan_op(l.step(2));
    let failed_over = [(10923, 16383, 7003), (0, 5460, 7002), (5461, 10922, 7001)];
    let (cursor, _) = op
        .first_stage(&[slots_reply(&failed_over), reply("0", &["k"])])
        .unwrap()
        .unwrap();
    assert_eq!(l.resume(cursor), (2, 0));
    let fresh = Layout::of(&map(&failed_over));
    assert_eq!(fresh.resume(cursor), (2, 0));
    let mut op = scan_op(l.step(0));
    let got = op.first_stage(&[slots_reply(&THREE), reply("12", &["k"])]);
    assert_eq!(l.resume(got.unwrap().unwrap().0), (0, 12));
}

#[test]
fn a_node_cursor_that_does_not_fit_is_an_error() {
    let l = Layout::of(&three());
    let mut op = scan_op(l.step(0));
    let too_big = NODE_CURSOR_LIMIT.to_string();
    let err = op.first_stage(&[reply(&too_big, &["k"])]).unwrap_err();
    assert!(err.starts_with(b"-ERR slotgate: SCAN cursor "), "{err:?}");
    let fits = (NODE_CURSOR_LIMIT - 1).to_string();
    let (cursor, _) = op.first_stage(&[reply(&fits, &["k"])]).unwrap().unwrap();
    assert!(cursor <= i64::MAX as u64);
    assert_eq!(l.resume(cursor), (0, NODE_CURSOR_LIMIT - 1));
}

#[test]
fn own_digests_match_between_the_layout_and_a_nodes_view() {
    let m = three();
    let l = Layout::of(&m);
    for (p, node) in l.primaries.iter().enumerate() {
        assert_eq!(own_digest(&m, node), l.own[p]);
    }
}

#[test]
fn the_node_gets_the_clients_options_unchanged() {
    let req = Request::from_args(&[
        &b"scan"[..],
        b"123",
        b"MATCH",
        b"k*",
        b"COUNT",
        b"1000",
        b"TYPE",
        b"hash",
    ]);
    let wire = node_command(&req, 77);
    let expect = Request::from_args(&[
        &b"scan"[..],
        b"77",
        b"MATCH",
        b"k*",
        b"COUNT",
        b"1000",
        b"TYPE",
        b"hash",
    ]);
    assert_eq!(wire, expect.wire());
}
