use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::{InboxRx, Inboxes, Invalidated, Subscriber, TrackingTable, INBOX_CAPACITY};
use crate::telemetry::metrics::Metrics;

fn table(max_keys: usize) -> TrackingTable {
    TrackingTable::new(max_keys, Arc::new(Metrics::new(true)), None)
}

fn keys(names: &[&str]) -> Vec<Bytes> {
    names
        .iter()
        .map(|k| Bytes::copy_from_slice(k.as_bytes()))
        .collect()
}

/// Client `id` tracking with its own inbox (`prefixes`: BCAST).
fn subscribe(t: &TrackingTable, reg: &Arc<Inboxes>, id: u64, prefixes: Option<&[&str]>) -> InboxRx {
    let rx = reg.open(id);
    t.subscribe(
        id,
        Subscriber {
            to: Arc::clone(rx.inbox()),
            broken_notice: None,
            broken: Rc::new(Cell::new(false)),
            prefixes: prefixes.map(keys),
            read_unlinked: false,
        },
    );
    rx
}

/// What is waiting in `rx`, without waiting.
fn pending(rx: &mut InboxRx) -> Vec<Invalidated> {
    let mut out = Vec::new();
    while let Ok(Some(msg)) = tokio_test_now(rx) {
        out.push(msg);
    }
    out
}

fn tokio_test_now(rx: &mut InboxRx) -> Result<Option<Invalidated>, ()> {
    let fut = rx.next();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(msg) => Ok(Some(msg)),
        std::task::Poll::Pending => Err(()),
    }
}

use std::future::Future;

#[test]
fn a_reader_is_told_once_of_each_key_it_read() {
    let (t, reg) = (table(100), Arc::new(Inboxes::default()));
    let mut a = subscribe(&t, &reg, 1, None);
    let mut b = subscribe(&t, &reg, 2, None);
    t.remember(1, b"k");
    t.remember(1, b"j");
    t.remember(2, b"k");
    t.invalidate(&keys(&["k", "other"]));
    assert_eq!(pending(&mut a), [Invalidated::Keys(keys(&["k"]))]);
    assert_eq!(pending(&mut b), [Invalidated::Keys(keys(&["k"]))]);
    // Forgotten after one invalidation, as in Redis's default mode.
    t.invalidate(&keys(&["k"]));
    assert!(pending(&mut a).is_empty());
    t.invalidate(&keys(&["j"]));
    assert_eq!(pending(&mut a), [Invalidated::Keys(keys(&["j"]))]);
}

#[test]
fn bcast_clients_hear_of_every_key_under_their_prefixes() {
    let (t, reg) = (table(100), Arc::new(Inboxes::default()));
    let mut p = subscribe(&t, &reg, 1, Some(&["user:", "job:"]));
    let mut all = subscribe(&t, &reg, 2, Some(&[]));
    t.invalidate(&keys(&["user:1", "cart:9", "job:3"]));
    assert_eq!(
        pending(&mut p),
        [Invalidated::Keys(keys(&["user:1", "job:3"]))]
    );
    assert_eq!(
        pending(&mut all),
        [Invalidated::Keys(keys(&["user:1", "cart:9", "job:3"]))]
    );
}

#[test]
fn a_flush_tells_everyone_to_drop_everything() {
    let (t, reg) = (table(100), Arc::new(Inboxes::default()));
    let mut a = subscribe(&t, &reg, 1, None);
    let mut b = subscribe(&t, &reg, 2, Some(&["x"]));
    let mut idle = subscribe(&t, &reg, 3, None);
    t.remember(1, b"k");
    t.flush();
    assert_eq!(pending(&mut a), [Invalidated::All]);
    assert_eq!(pending(&mut b), [Invalidated::All]);
    assert_eq!(
        pending(&mut idle),
        [Invalidated::All],
        "Redis tells every tracking client"
    );
    t.invalidate(&keys(&["k"]));
    assert!(pending(&mut a).is_empty(), "the table was emptied");
}

#[test]
fn a_lost_primary_invalidates_the_keys_it_served_and_bcast_clients_drop_everything() {
    let (t, reg) = (table(100), Arc::new(Inboxes::default()));
    let mut a = subscribe(&t, &reg, 1, None);
    let mut b = subscribe(&t, &reg, 2, Some(&["x"]));
    t.remember(1, b"on-lost");
    t.remember(1, b"elsewhere");
    t.lost(|k| k.starts_with(b"on-"));
    assert_eq!(pending(&mut a), [Invalidated::Keys(keys(&["on-lost"]))]);
    assert_eq!(pending(&mut b), [Invalidated::All]);
    t.invalidate(&keys(&["elsewhere"]));
    assert_eq!(pending(&mut a), [Invalidated::Keys(keys(&["elsewhere"]))]);
}

#[test]
fn the_table_is_bounded_and_a_key_forgotten_for_room_is_invalidated() {
    let (t, reg) = (table(2), Arc::new(Inboxes::default()));
    let mut a = subscribe(&t, &reg, 1, None);
    t.remember(1, b"a");
    t.remember(1, b"b");
    t.remember(1, b"c");
    let msgs = pending(&mut a);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let Invalidated::Keys(evicted) = &msgs[0] else {
        panic!("{msgs:?}")
    };
    assert!(
        evicted == &keys(&["a"]) || evicted == &keys(&["b"]),
        "{evicted:?}"
    );
    assert_eq!(t.inner.borrow().keys.len(), 2);
}

#[test]
fn an_inbox_that_overflows_becomes_one_flush() {
    let (t, reg) = (table(100_000), Arc::new(Inboxes::default()));
    let mut a = subscribe(&t, &reg, 1, None);
    for i in 0..INBOX_CAPACITY + 10 {
        let k = format!("k{i}");
        t.remember(1, k.as_bytes());
        t.invalidate(&keys(&[k.as_str()]));
    }
    // The first read after the overflow is a flush, and what was queued is dropped.
    assert_eq!(pending(&mut a), [Invalidated::All]);
}

#[test]
fn nothing_is_sent_for_a_key_a_noloop_client_wrote_itself_or_after_it_stopped() {
    let (t, reg) = (table(100), Arc::new(Inboxes::default()));
    let mut a = subscribe(&t, &reg, 1, None);
    t.remember(1, b"k");
    t.wrote(1, &keys(&["k"]), true);
    t.invalidate(&keys(&["k"]));
    assert!(pending(&mut a).is_empty());
    t.remember(1, b"j");
    t.unsubscribe(1);
    assert!(t.inner.borrow().keys.is_empty());
    t.invalidate(&keys(&["j"]));
    assert!(pending(&mut a).is_empty());
}

#[test]
fn a_redirect_to_a_client_that_left_is_reported_once() {
    let (t, reg) = (table(100), Arc::new(Inboxes::default()));
    let target = reg.open(7);
    let mut own = reg.open(1);
    let broken = Rc::new(Cell::new(false));
    t.subscribe(
        1,
        Subscriber {
            to: Arc::clone(target.inbox()),
            broken_notice: Some((7, Arc::clone(own.inbox()))),
            broken: Rc::clone(&broken),
            prefixes: None,
            read_unlinked: false,
        },
    );
    assert!(reg.get(7).is_some());
    drop(target);
    assert!(reg.get(7).is_none(), "unregistered with its session");
    t.remember(1, b"k");
    t.invalidate(&keys(&["k"]));
    t.remember(1, b"k");
    t.invalidate(&keys(&["k"]));
    assert!(broken.get());
    assert_eq!(pending(&mut own), [Invalidated::RedirectBroken(7)]);
}

#[test]
fn a_write_through_slotgate_is_told_at_once_and_not_again_by_its_report() {
    let (t, reg) = (table(100), Arc::new(Inboxes::default()));
    let mut writer = subscribe(&t, &reg, 1, None);
    let mut reader = subscribe(&t, &reg, 2, None);
    let mut noloop = subscribe(&t, &reg, 3, None);
    let mut own_bcast = subscribe(&t, &reg, 4, Some(&["k"]));
    let mut other_bcast = subscribe(&t, &reg, 5, Some(&["k"]));
    for id in [1, 2, 3] {
        t.remember(id, b"k");
    }
    t.wrote(1, &keys(&["k", "x"]), false);
    let k = || vec![Invalidated::Keys(keys(&["k"]))];
    assert_eq!(pending(&mut writer), k(), "the writer itself");
    assert_eq!(pending(&mut reader), k(), "another reader");
    assert_eq!(
        pending(&mut noloop),
        k(),
        "a NOLOOP reader, for another's write"
    );
    assert!(pending(&mut other_bcast).is_empty(), "told by the report");
    // The report: the default-mode readers were told already.
    t.invalidate(&keys(&["k", "x"]));
    for rx in [&mut writer, &mut reader, &mut noloop] {
        assert!(pending(rx).is_empty());
    }
    for rx in [&mut own_bcast, &mut other_bcast] {
        assert_eq!(pending(rx), [Invalidated::Keys(keys(&["k"]))]);
    }
    // A BCAST writer hears of its own write at once (and of the report again).
    t.wrote(4, &keys(&["k2", "y"]), false);
    assert_eq!(pending(&mut own_bcast), [Invalidated::Keys(keys(&["k2"]))]);
    assert!(pending(&mut other_bcast).is_empty());
    // NOLOOP: the writer forgets the key without a message; other readers are told.
    t.remember(2, b"j");
    t.remember(3, b"j");
    t.wrote(3, &keys(&["j"]), true);
    assert!(pending(&mut noloop).is_empty());
    assert_eq!(pending(&mut reader), [Invalidated::Keys(keys(&["j"]))]);
    assert!(t.inner.borrow().keys.is_empty());
    // A FLUSHALL through slotgate: everyone drops everything.
    t.remember(2, b"z");
    t.flushed();
    for rx in [
        &mut writer,
        &mut reader,
        &mut noloop,
        &mut own_bcast,
        &mut other_bcast,
    ] {
        assert_eq!(pending(rx), [Invalidated::All]);
    }
}
