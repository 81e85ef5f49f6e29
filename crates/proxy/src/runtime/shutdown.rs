//! The shutdown signal as a worker's sessions see it: a flag and the wakers of the sessions
//! waiting for it, all on the worker's thread. A session waits for shutdown while it owes
//! nothing, which at `-P 1` is after every reply, so polling the wait again must be cheap: a
//! `Cell` read and a waker comparison (tokio's `watch` takes a lock on every poll).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::runtime::wakers::{keep_waker, Slab};

/// One worker's shutdown flag and its waiting sessions.
pub(crate) struct LocalShutdown {
    fired: Cell<bool>,
    /// The waiting sessions' wakers, by registration.
    waiters: RefCell<Slab<Option<Waker>>>,
}

impl LocalShutdown {
    /// Not fired, nobody waiting.
    pub fn new() -> Rc<LocalShutdown> {
        Rc::new(LocalShutdown {
            fired: Cell::new(false),
            waiters: RefCell::new(Slab::default()),
        })
    }

    /// Whether shutdown began.
    #[inline]
    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Begin shutdown: wake every waiting session; later waits end at once.
    pub fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// A place to wait, for one session (released when dropped).
    pub fn waiter(self: &Rc<Self>) -> ShutdownWait {
        let index = self.waiters.borrow_mut().acquire();
        ShutdownWait {
            signal: Rc::clone(self),
            index,
        }
    }
}

/// One session's registration with its worker's [`LocalShutdown`].
pub(crate) struct ShutdownWait {
    signal: Rc<LocalShutdown>,
    index: usize,
}

impl ShutdownWait {
    /// Ready once shutdown began; otherwise keeps `cx`'s waker (cloned only when it changed).
    fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_fired() {
            return Poll::Ready(());
        }
        keep_waker(
            self.signal.waiters.borrow_mut().get_mut(self.index),
            cx.waker(),
        );
        Poll::Pending
    }

    /// Wait until shutdown begins. Cancel-safe: the registration outlives the future.
    pub async fn fired(&self) {
        poll_fn(|cx| self.poll_fired(cx)).await
    }
}

impl Drop for ShutdownWait {
    fn drop(&mut self) {
        let mut waiters = self.signal.waiters.borrow_mut();
        *waiters.get_mut(self.index) = None;
        waiters.release(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fire_wakes_every_waiter_and_later_waits_end_at_once() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let signal = LocalShutdown::new();
                let tasks: Vec<_> = (0..3)
                    .map(|_| {
                        let wait = signal.waiter();
                        tokio::task::spawn_local(async move { wait.fired().await })
                    })
                    .collect();
                // A waiter that leaves before shutdown frees its slot for the next one.
                let gone = signal.waiter();
                drop(gone);
                let reused = signal.waiter();
                assert_eq!(reused.index, 3);
                tokio::task::yield_now().await;
                assert!(tasks.iter().all(|t| !t.is_finished()));
                signal.fire();
                for t in tasks {
                    t.await.expect("waiter finished");
                }
                assert!(signal.is_fired());
                reused.fired().await;
                signal.waiter().fired().await;
            })
            .await;
    }
}
