//! The one timer a worker's sessions share for holding finished replies back (see
//! `session::worth_holding`). A session whose batch is only partly answered holds what is
//! ready until the rest arrives or the clock's next tick, whichever comes first.
//!
//! One timer for the worker, not one per session: arming a tokio timer that is due before the
//! runtime's next wake-up makes tokio wake its I/O driver through an `eventfd` write. With a
//! timer per session that happened on most held batches (about one `write` syscall per five
//! batches at `-P 16`); with one clock it happens at most once per tick.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

/// One worker's hold clock: ticks while some session holds replies.
pub(crate) struct HoldClock {
    /// How long after it is armed a tick fires.
    period: Duration,
    /// Ticks fired so far.
    fired: Cell<u64>,
    /// When the armed tick fires; `None` while nobody holds.
    next: Cell<Option<Instant>>,
    /// The waker of [`HoldClock::run`], waiting to be armed.
    runner: RefCell<Option<Waker>>,
    waiters: RefCell<Waiters>,
}

/// Registered wakers by slot; freed slots are reused.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl HoldClock {
    /// An unarmed clock whose ticks fire `period` after they are armed.
    pub fn new(period: Duration) -> Rc<HoldClock> {
        Rc::new(HoldClock {
            period,
            fired: Cell::new(0),
            next: Cell::new(None),
            runner: RefCell::new(None),
            waiters: RefCell::new(Waiters::default()),
        })
    }

    /// Fire ticks as they are armed; runs for the worker's life.
    pub async fn run(self: Rc<Self>) {
        loop {
            let at = poll_fn(|cx| match self.next.get() {
                Some(at) => Poll::Ready(at),
                None => {
                    let mut runner = self.runner.borrow_mut();
                    if !runner.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *runner = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            })
            .await;
            tokio::time::sleep_until(at).await;
            self.tick();
        }
    }

    /// End every hold begun so far.
    fn tick(&self) {
        self.next.set(None);
        self.fired.set(self.fired.get() + 1);
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// A registration for one session (released when dropped).
    pub fn holder(self: &Rc<Self>) -> Holder {
        let mut waiters = self.waiters.borrow_mut();
        let index = match waiters.free.pop() {
            Some(i) => i,
            None => {
                waiters.slots.push(None);
                waiters.slots.len() - 1
            }
        };
        Holder {
            clock: Rc::clone(self),
            index,
            until: Cell::new(None),
        }
    }
}

/// One session's registration with its worker's [`HoldClock`].
pub(crate) struct Holder {
    clock: Rc<HoldClock>,
    index: usize,
    /// While holding: the tick count that ends the hold.
    until: Cell<Option<u64>>,
}

impl Holder {
    /// Begin a hold. It ends at the clock's next tick, at most one period from now (sooner
    /// when another session armed the tick earlier).
    pub fn start(&self) {
        let clock = &self.clock;
        if clock.next.get().is_none() {
            clock.next.set(Some(Instant::now() + clock.period));
            if let Some(w) = clock.runner.borrow_mut().take() {
                w.wake();
            }
        }
        self.until.set(Some(clock.fired.get() + 1));
    }

    /// End the hold early (the rest of the batch arrived): the tick will not wake this session.
    pub fn stop(&self) {
        self.until.set(None);
        let mut waiters = self.clock.waiters.borrow_mut();
        if let Some(slot) = waiters.slots.get_mut(self.index) {
            *slot = None;
        }
    }

    fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(until) = self.until.get() else {
            return Poll::Pending; // not holding: nothing to end
        };
        if self.clock.fired.get() >= until {
            self.until.set(None);
            return Poll::Ready(());
        }
        let mut waiters = self.clock.waiters.borrow_mut();
        if let Some(slot) = waiters.slots.get_mut(self.index) {
            match slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }

    /// Wait until the hold ends by the clock. Cancel-safe: the hold outlives the future.
    pub async fn expired(&self) {
        poll_fn(|cx| self.poll_expired(cx)).await
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let mut waiters = self.clock.waiters.borrow_mut();
        if let Some(slot) = waiters.slots.get_mut(self.index) {
            *slot = None;
            waiters.free.push(self.index);
        }
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
    fn holds_end_together_at_the_next_tick_and_a_stopped_one_is_not_woken() {
        local(async {
            let period = Duration::from_millis(40);
            let clock = HoldClock::new(period);
            tokio::task::spawn_local(Rc::clone(&clock).run());
            let (a, b) = (clock.holder(), clock.holder());
            let start = Instant::now();
            a.start();
            tokio::time::sleep(Duration::from_millis(10)).await;
            b.start();
            let b_task = tokio::task::spawn_local(async move { b.expired().await });
            a.expired().await;
            assert!(Instant::now() - start >= period);
            b_task.await.expect("b");
            // Both ended at the one tick, armed by the first hold.
            assert_eq!(clock.fired.get(), 1);
            // The clock is idle now. A stopped hold stays pending across the next tick.
            a.start();
            a.stop();
            let c = clock.holder();
            c.start();
            c.expired().await;
            assert_eq!(clock.fired.get(), 2);
            let waited = tokio::time::timeout(period * 2, a.expired()).await;
            assert!(waited.is_err(), "a stopped hold never ends by the clock");
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
