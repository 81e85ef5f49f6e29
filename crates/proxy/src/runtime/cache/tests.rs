use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::*;
use crate::config::CacheConfig;
use crate::telemetry::metrics::Metrics;

const TAG: u32 = 0;
const TOPO: u64 = 7;

fn cache_with(max_bytes: usize, keys: &[&str]) -> Rc<ReadCache> {
    let cfg = CacheConfig {
        enabled: true,
        keys: keys.iter().map(|k| k.to_string()).collect(),
        max_ttl: Duration::from_secs(60),
        ..CacheConfig::default()
    };
    let cache = Rc::new(ReadCache::new(
        &cfg,
        max_bytes,
        Arc::new(Metrics::new(true)),
    ));
    cache.set_ready(Some(TOPO));
    cache
}

fn cache() -> Rc<ReadCache> {
    cache_with(1 << 20, &["*"])
}

fn get(key: &str) -> Bytes {
    Bytes::from(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()))
}

fn bulk(v: &str) -> Bytes {
    Bytes::from(format!("${}\r\n{v}\r\n", v.len()))
}

fn look(c: &Rc<ReadCache>, key: &str) -> Lookup {
    c.lookup(TAG, key.as_bytes(), &get(key), Instant::now(), TOPO)
}

fn miss(c: &Rc<ReadCache>, key: &str) -> FillTicket {
    match look(c, key) {
        Lookup::Miss(t) => t,
        other => panic!("expected a miss for {key}, got {other:?}"),
    }
}

fn hit(c: &Rc<ReadCache>, key: &str) -> Option<Bytes> {
    match look(c, key) {
        Lookup::Hit(b) => Some(b),
        _ => None,
    }
}

#[test]
fn a_filled_read_is_a_hit_with_the_same_bytes() {
    let c = cache();
    miss(&c, "k").fill(&bulk("v1"));
    assert_eq!(hit(&c, "k"), Some(bulk("v1")));
    // Another protocol or database is another entry.
    assert!(matches!(
        c.lookup(
            ReadCache::tag(true, 0),
            b"k",
            &get("k"),
            Instant::now(),
            TOPO
        ),
        Lookup::Miss(_)
    ));
}

#[test]
fn a_change_reported_between_send_and_reply_spoils_the_fill() {
    let c = cache();
    let ticket = miss(&c, "k");
    c.invalidate(&[Bytes::from_static(b"k")]);
    ticket.fill(&bulk("old"));
    assert_eq!(hit(&c, "k"), None);
    // A flush or a lost link spoils it too.
    let ticket = miss(&c, "k");
    c.drop_all(Invalidation::Topology);
    ticket.fill(&bulk("old"));
    assert_eq!(hit(&c, "k"), None);
    // An own write too.
    let ticket = miss(&c, "k");
    c.own_write(&Written::Keys(vec![Bytes::from_static(b"k")]));
    ticket.fill(&bulk("old"));
    assert_eq!(hit(&c, "k"), None);
}

#[test]
fn an_earlier_reads_late_reply_never_overwrites_a_later_read() {
    let c = cache();
    let first = miss(&c, "k");
    let second = miss(&c, "k");
    second.fill(&bulk("new"));
    first.fill(&bulk("old"));
    assert_eq!(hit(&c, "k"), Some(bulk("new")));
    // And the other way round: the earlier read's reply is not stored at all.
    c.invalidate(&[Bytes::from_static(b"k")]);
    let first = miss(&c, "k");
    let second = miss(&c, "k");
    first.fill(&bulk("old"));
    assert_eq!(hit(&c, "k"), None);
    drop(second);
}

#[test]
fn a_report_drops_every_command_and_protocol_of_the_key() {
    let c = cache();
    miss(&c, "k").fill(&bulk("v"));
    let strlen = Bytes::from_static(b"*2\r\n$6\r\nSTRLEN\r\n$1\r\nk\r\n");
    match c.lookup(TAG, b"k", &strlen, Instant::now(), TOPO) {
        Lookup::Miss(t) => t.fill(&Bytes::from_static(b":1\r\n")),
        other => panic!("{other:?}"),
    }
    match c.lookup(
        ReadCache::tag(true, 3),
        b"k",
        &get("k"),
        Instant::now(),
        TOPO,
    ) {
        Lookup::Miss(t) => t.fill(&bulk("v")),
        other => panic!("{other:?}"),
    }
    miss(&c, "other").fill(&bulk("o"));
    c.invalidate(&[Bytes::from_static(b"k")]);
    assert_eq!(hit(&c, "k"), None);
    assert!(matches!(
        c.lookup(TAG, b"k", &strlen, Instant::now(), TOPO),
        Lookup::Miss(_)
    ));
    assert_eq!(hit(&c, "other"), Some(bulk("o")));
}

#[test]
fn a_flush_drops_everything() {
    let c = cache();
    for i in 0..100 {
        miss(&c, &format!("k{i}")).fill(&bulk("v"));
    }
    c.drop_all(Invalidation::Server);
    assert_eq!(c.bytes(), 0);
    assert_eq!(c.key_count(), 0);
    assert_eq!(hit(&c, "k1"), None);
}

#[test]
fn errors_and_large_replies_are_not_stored() {
    let c = cache();
    miss(&c, "e").fill(&Bytes::from_static(b"-WRONGTYPE Operation\r\n"));
    assert_eq!(hit(&c, "e"), None);
    let large = bulk(&"x".repeat(70 * 1024));
    miss(&c, "l").fill(&large);
    assert_eq!(hit(&c, "l"), None);
}

#[test]
fn nothing_is_served_or_filled_unless_every_link_is_up_for_the_current_map() {
    let c = cache();
    miss(&c, "k").fill(&bulk("v"));
    // A newer map than the links follow: bypass.
    assert!(matches!(
        c.lookup(TAG, b"k", &get("k"), Instant::now(), TOPO + 1),
        Lookup::Bypass
    ));
    let ticket = miss(&c, "j");
    c.set_ready(None);
    assert!(matches!(look(&c, "k"), Lookup::Bypass));
    ticket.fill(&bulk("v"));
    c.set_ready(Some(TOPO));
    assert_eq!(hit(&c, "j"), None);
}

#[test]
fn only_keys_matching_the_patterns_are_cached() {
    let c = cache_with(1 << 20, &["user:*", "cfg"]);
    assert!(matches!(look(&c, "other:1"), Lookup::Bypass));
    assert!(matches!(look(&c, "cfg"), Lookup::Miss(_)));
    miss(&c, "user:1").fill(&bulk("v"));
    assert_eq!(hit(&c, "user:1"), Some(bulk("v")));
}

#[test]
fn entries_expire_after_max_ttl() {
    let c = cache();
    miss(&c, "k").fill(&bulk("v"));
    let later = Instant::now() + Duration::from_secs(61);
    assert!(matches!(
        c.lookup(TAG, b"k", &get("k"), later, TOPO),
        Lookup::Miss(_)
    ));
    // The sweep drops the ones nobody reads.
    miss(&c, "j").fill(&bulk("v"));
    assert!(c.bytes() > 0);
    c.sweep(later);
    assert_eq!(c.key_count(), 0);
    assert_eq!(c.bytes(), 0);
}

#[test]
fn memory_stays_bounded_and_read_keys_survive_eviction() {
    let c = cache_with(20_000, &["*"]);
    miss(&c, "hot").fill(&bulk("v"));
    for i in 0..2_000 {
        assert!(hit(&c, "hot").is_some(), "hot key evicted at {i}");
        miss(&c, &format!("key:{i}")).fill(&bulk(&"x".repeat(100)));
        assert!(c.bytes() <= 20_000, "{} bytes", c.bytes());
    }
    assert!(c.key_count() < 200);
}

#[test]
fn a_write_guard_drops_the_keys_again_when_answered() {
    let c = cache();
    let guard = c.guard(Written::Keys(vec![Bytes::from_static(b"k")]));
    // A read that ran before the write, filled while it was in flight …
    miss(&c, "k").fill(&bulk("old"));
    // … and a read in flight when the write is answered.
    let ticket = miss(&c, "j");
    let guard_all = c.guard(Written::All);
    drop(guard);
    assert_eq!(hit(&c, "k"), None);
    drop(guard_all);
    ticket.fill(&bulk("old"));
    assert_eq!(hit(&c, "j"), None);
}

#[test]
fn a_failed_read_leaves_no_pending_fill_behind() {
    let c = cache();
    drop(miss(&c, "k"));
    assert_eq!(c.key_count(), 1);
    c.sweep(Instant::now());
    assert_eq!(c.key_count(), 0);
    assert_eq!(c.bytes(), 0);
}

#[test]
fn the_byte_count_returns_to_zero() {
    let c = cache_with(50_000, &["*"]);
    let strlen = |k: &str| Bytes::from(format!("*2\r\n$6\r\nSTRLEN\r\n${}\r\n{k}\r\n", k.len()));
    for round in 0..3 {
        for i in 0..300 {
            let k = format!("k{}", i % 120);
            if let Lookup::Miss(t) = look(&c, &k) {
                t.fill(&bulk(&"v".repeat(i % 50)));
            }
            if let Lookup::Miss(t) = c.lookup(
                ReadCache::tag(true, 1),
                k.as_bytes(),
                &strlen(&k),
                Instant::now(),
                TOPO,
            ) {
                t.fill(&Bytes::from_static(b":1\r\n"));
            }
            if i % 7 == 0 {
                c.invalidate(&[Bytes::from(format!("k{}", i % 13))]);
            }
        }
        // Some expire on read, the sweep takes others.
        let later = Instant::now() + Duration::from_secs(61 + round);
        let _ = c.lookup(TAG, b"k1", &get("k1"), later, TOPO);
        c.sweep(later);
    }
    let keys: Vec<Bytes> = (0..120).map(|i| Bytes::from(format!("k{i}"))).collect();
    c.invalidate(&keys);
    assert_eq!(c.key_count(), 0);
    assert_eq!(c.bytes(), 0);
}

#[test]
fn a_newer_map_is_noticed_as_lagging() {
    let c = cache();
    assert!(!c.lags(TOPO));
    assert!(c.lags(TOPO + 1));
    c.set_ready(None);
    assert!(!c.lags(TOPO + 1), "links down: nothing to catch up with");
}
