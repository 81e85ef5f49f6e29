//! The one timer a worker's sessions share for holding finished replies back (see
//! `session::worth_holding`). A session whose batch is only partly answered holds what is
//! ready until the rest arrives or the hold's period ends, whichever comes first.
//!
//! One timer for the worker, not one per session: arming a tokio timer that is due before the
//! runtime's next wake-up makes tokio wake its I/O driver through an `eventfd` write. With a
//! timer per session that happened on most held batches (about one `write` syscall per five
//! batches at `-P 16`); with one clock it happens at most once per tick. Every hold lasts the
//! same period, so holds end in the order they began: a queue is the whole timer.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::runtime::wakers::{keep_waker, Slab};

/// Longest that finished replies wait for the rest of their batch (see `session::worth_holding`),
/// so a batch spread over shards goes back in one write instead of one per shard.
pub(crate) const COALESCE: Duration = Duration::from_micros(200);

/// One worker's hold clock.
pub(crate) struct HoldClock {
    /// How long a hold lasts unless stopped.
    period: Duration,
    /// When the clock's timer fires next; `None` while no hold is queued.
    next: Cell<Option<Instant>>,
    /// The waker of [`HoldClock::run`], waiting to be armed.
    runner: RefCell<Option<Waker>>,
    /// Holds in the order they began (so by end time): `(end, holder, hold number)`. A
    /// stopped hold stays queued until its end, then is skipped.
    queue: RefCell<VecDeque<(Instant, usize, u64)>>,
    /// Per registered session, its current hold.
    holders: RefCell<Slab<HolderEntry>>,
}

#[derive(Default)]
struct HolderEntry {
    /// Numbers this holder's holds, so a queued hold that was stopped is recognised.
    hold: u64,
    /// The current hold reached its end.
    expired: bool,
    waker: Option<Waker>,
}

impl HoldClock {
    /// A clock whose holds last `period`.
    pub fn new(period: Duration) -> Rc<HoldClock> {
        Rc::new(HoldClock {
            period,
            next: Cell::new(None),
            runner: RefCell::new(None),
            queue: RefCell::new(VecDeque::new()),
            holders: RefCell::new(Slab::default()),
        })
    }

    /// Fire as holds reach their end; runs for the worker's life.
    pub async fn run(self: Rc<Self>) {
        loop {
            let at = poll_fn(|cx| match self.next.get() {
                Some(at) => Poll::Ready(at),
                None => {
                    keep_waker(&mut self.runner.borrow_mut(), cx.waker());
                    Poll::Pending
                }
            })
            .await;
            tokio::time::sleep_until(at).await;
            self.fire(Instant::now());
        }
    }

    /// End the holds due by `now` and arm for the next one.
    fn fire(&self, now: Instant) {
        let mut wakers = Vec::new();
        let mut queue = self.queue.borrow_mut();
        let mut holders = self.holders.borrow_mut();
        while let Some(&(end, index, hold)) = queue.front() {
            if end > now {
                break;
            }
            queue.pop_front();
            let slot = holders.get_mut(index);
            if slot.hold == hold && !slot.expired {
                slot.expired = true;
                wakers.extend(slot.waker.take());
            }
        }
        self.next.set(queue.front().map(|&(end, ..)| end));
        drop((queue, holders));
        for w in wakers {
            w.wake();
        }
    }

    /// A registration for one session (released when dropped).
    pub fn holder(self: &Rc<Self>) -> Holder {
        let index = self.holders.borrow_mut().acquire();
        Holder {
            clock: Rc::clone(self),
            index,
        }
    }
}

/// One session's registration with its worker's [`HoldClock`]: at most one hold at a time.
pub(crate) struct Holder {
    clock: Rc<HoldClock>,
    index: usize,
}

impl Holder {
    /// Begin a hold that ends one period from now unless stopped first.
    pub fn start(&self) {
        let clock = &self.clock;
        let hold = {
            let mut holders = clock.holders.borrow_mut();
            let slot = holders.get_mut(self.index);
            slot.hold += 1;
            slot.expired = false;
            slot.hold
        };
        let end = Instant::now() + clock.period;
        clock.queue.borrow_mut().push_back((end, self.index, hold));
        if clock.next.get().is_none() {
            clock.next.set(Some(end));
            if let Some(w) = clock.runner.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// End the hold early (the rest of the batch arrived): its end will not wake this session.
    pub fn stop(&self) {
        let mut holders = self.clock.holders.borrow_mut();
        let slot = holders.get_mut(self.index);
        slot.hold += 1;
        slot.expired = false;
        slot.waker = None;
    }

    fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut holders = self.clock.holders.borrow_mut();
        let slot = holders.get_mut(self.index);
        if slot.expired {
            slot.expired = false;
            return Poll::Ready(());
        }
        keep_waker(&mut slot.waker, cx.waker());
        Poll::Pending
    }

    /// Wait until the current hold reaches its end; never resolves without a hold.
    /// Cancel-safe: the hold outlives the future.
    pub async fn expired(&self) {
        poll_fn(|cx| self.poll_expired(cx)).await
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Stopped, a queued hold of this registration is stale for its next owner too (the
        // hold number is kept across owners).
        self.stop();
        self.clock.holders.borrow_mut().release(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local<F: std::future::Future<Output = ()>>(f: F) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        tokio::task::LocalSet::new().block_on(&rt, f);
    }

    #[test]
    fn each_hold_lasts_the_period_and_a_stopped_one_is_not_woken() {
        local(async {
            let period = Duration::from_millis(40);
            let clock = HoldClock::new(period);
            tokio::task::spawn_local(Rc::clone(&clock).run());
            let (a, b) = (clock.holder(), clock.holder());
            let start = Instant::now();
            a.start();
            tokio::time::sleep(Duration::from_millis(20)).await;
            b.start();
            let b_task = tokio::task::spawn_local(async move {
                b.expired().await;
                b
            });
            a.expired().await;
            let a_end = Instant::now();
            assert!(a_end - start >= period);
            let b = b_task.await.expect("b");
            // b began 20 ms later and held its full period too.
            assert!(Instant::now() - start >= period + Duration::from_millis(20));
            // A stopped hold stays pending past its end, and a hold begun again after a stop
            // runs its own full period (the stopped one's queue entry is stale).
            a.start();
            a.stop();
            b.start();
            b.expired().await;
            let waited = tokio::time::timeout(period, a.expired()).await;
            assert!(waited.is_err(), "a stopped hold never ends by the clock");
            let again = Instant::now();
            a.start();
            a.expired().await;
            assert!(Instant::now() - again >= period);
        });
    }

    #[test]
    fn released_registrations_are_reused() {
        let clock = HoldClock::new(Duration::from_millis(1));
        let first = clock.holder();
        let second = clock.holder();
        assert_eq!((first.index, second.index), (0, 1));
        drop(first);
        assert_eq!(clock.holder().index, 0);
    }
}
