use slotgate_cluster::SlotMap;
use slotgate_resp::{Request, Value};

use super::*;

fn req(args: &[&str]) -> (&'static Command, Request) {
    let req = Request::from_args(args);
    let cmd = slotgate_commands::lookup(&ReqArgs(&req)).expect("known command");
    (cmd, req)
}

fn note(written: &mut WrittenSlots, args: &[&str]) {
    let (cmd, req) = req(args);
    written.note(cmd, &req);
}

fn slot(key: &str) -> u16 {
    slotgate_cluster::slot(key.as_bytes())
}

/// Three shards on 127.0.0.1: primaries 7000..7002, one replica each on 7100..7102.
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
            Value::Array(vec![
                Value::Integer(start),
                Value::Integer(end),
                node(port),
                node(port + 100),
            ])
        })
        .collect();
    SlotMap::from_cluster_slots(&Value::Array(entries), "127.0.0.1:1").unwrap()
}

#[test]
fn only_writes_are_remembered_with_their_slots() {
    let mut w = WrittenSlots::default();
    note(&mut w, &["GET", "a"]);
    note(&mut w, &["EVAL_RO", "return 1", "1", "a"]);
    note(&mut w, &["PING"]);
    assert!(w.is_empty());
    note(&mut w, &["SET", "a", "1"]);
    note(&mut w, &["SET", "a", "2"]);
    assert_eq!(w.slots, vec![slot("a")]);
    // Split writes: every key's slot.
    note(&mut w, &["MSET", "b", "1", "c", "2"]);
    note(&mut w, &["DEL", "d", "a"]);
    assert_eq!(w.slots, vec![slot("a"), slot("b"), slot("c"), slot("d")]);
    // Scripts write through their keys.
    note(&mut w, &["EVAL", "return 1", "1", "e"]);
    assert_eq!(w.slots.last(), Some(&slot("e")));
    assert!(!w.everywhere);
}

#[test]
fn keyless_writes_and_too_many_slots_mean_everywhere() {
    let mut w = WrittenSlots::default();
    note(&mut w, &["EVAL", "return 1", "0"]);
    assert!(w.everywhere && !w.is_empty());

    let mut w = WrittenSlots::default();
    note(&mut w, &["FLUSHALL"]);
    assert!(w.everywhere);

    let mut w = WrittenSlots::default();
    let mut i = 0;
    while w.slots.len() < MAX_SLOTS {
        note(&mut w, &["SET", &format!("k{i}"), "v"]);
        i += 1;
    }
    assert!(!w.everywhere);
    // A slot already remembered changes nothing; one more distinct slot tips it over.
    note(&mut w, &["SET", "k0", "v"]);
    assert!(!w.everywhere);
    let extra = (i..)
        .map(|j| format!("k{j}"))
        .find(|k| !w.slots.contains(&slot(k)))
        .unwrap();
    note(&mut w, &["SET", &extra, "v"]);
    assert!(w.everywhere && w.slots.is_empty());
}

#[test]
fn a_malformed_key_count_writes_nothing() {
    let mut w = WrittenSlots::default();
    note(&mut w, &["EVAL", "return 1", "5", "a"]);
    assert!(w.is_empty());
}

#[test]
fn plan_covers_the_shards_of_the_written_slots() {
    let map = three();
    let primary = |p: &Shard| p.primary.as_ref().map(|n| n.as_str().to_string());
    // Nothing written: every shard.
    let all = plan(&map, &WrittenSlots::default());
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].replicas, vec![NodeAddr::new("127.0.0.1:7100")]);

    let w = WrittenSlots {
        slots: vec![100, 200, 16000],
        everywhere: false,
    };
    let shards = plan(&map, &w);
    let names: Vec<_> = shards.iter().map(primary).collect();
    assert_eq!(
        names,
        vec![Some("127.0.0.1:7000".into()), Some("127.0.0.1:7002".into())]
    );
    let w = WrittenSlots {
        slots: vec![],
        everywhere: true,
    };
    assert_eq!(plan(&map, &w).len(), 3);
    // A slot nobody serves is a shard that never acknowledges.
    let w = WrittenSlots {
        slots: vec![100],
        everywhere: false,
    };
    let shards = plan(&SlotMap::empty(), &w);
    assert_eq!(
        shards,
        vec![Shard {
            primary: None,
            replicas: vec![]
        }]
    );
}

#[test]
fn tally_answers_with_the_least_acknowledged_shard() {
    let shard = |n: usize| Shard {
        primary: Some(NodeAddr::new("127.0.0.1:7000")),
        replicas: (0..n)
            .map(|i| NodeAddr::new(&format!("127.0.0.1:{}", 7100 + i)))
            .collect(),
    };
    let mut t = Tally::new(&[shard(2), shard(1)]);
    assert!(!t.enough(1));
    assert!(!t.enough(0), "WAIT 0 waits for one round of answers");
    t.record(0, true, true);
    assert!(!t.enough(1));
    t.record(1, true, false);
    t.record(0, true, false);
    assert!(t.enough(0));
    assert_eq!(t.answer(), 0);
    t.record(1, false, true);
    assert!(t.enough(1) && !t.enough(2));
    assert_eq!(t.answer(), 1);
    assert!(t.enough(-3));
    // Replicas the primary named, when the slot map listed none.
    t.found(1, 3);
    assert!(!t.enough(0));
    // An out-of-range report changes nothing.
    t.record(7, true, true);
    assert_eq!(t.answer(), 1);
}

#[test]
fn role_replies_are_parsed() {
    assert_eq!(
        parse_role(b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n"),
        Role::Primary(3129659, vec![NodeAddr::new("127.0.0.1:9001")])
    );
    assert_eq!(
        parse_role(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"),
        Role::Primary(0, vec![])
    );
    assert_eq!(
        parse_role(
            b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n"
        ),
        Role::Replica(3167038)
    );
    assert_eq!(parse_role(b"*2\r\n$8\r\nsentinel\r\n*0\r\n"), Role::Other);
    assert_eq!(parse_role(b"-ERR x\r\n"), Role::Other);
    assert_eq!(parse_role(b"*1\r\n$5\r\nslave\r\n"), Role::Other);
}
