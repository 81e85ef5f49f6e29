//! A one-shot channel carrying one upstream reply from a connection task to the op waiting for
//! it. Both live on the same worker thread, so this is what `tokio::sync::oneshot` does
//! without its atomics: an `Rc` of `Cell`s (no borrow flag to check), and a waker. Channels are recycled
//! through a per-thread pool, so a request costs no allocation once the pool is warm.
//!
//! A channel carries the output budget of the client it answers: a reply is charged to it
//! the moment the connection delivers it (so replies queued behind a slow one count at
//! once) and released when the op takes it, or when it is dropped unread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::runtime::budget::OutputBudget;
use crate::runtime::wakers::keep_waker;
use slotgate_resp::Reply;

/// What came back for a request given to `Upstream::send`.
#[derive(Debug)]
pub(crate) enum UpReply {
    /// The node's reply frame.
    Frame(Reply),
    /// No reply: see [`Failure`].
    Failed(Failure),
}

/// Why a request got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request was never written: the node could not be reached. Safe to retry.
    Unreachable,
    /// The connection broke after the request may have been written.
    Lost,
    /// The node sent bytes that are not RESP; the connection was dropped.
    Protocol,
}

#[derive(Default)]
struct Inner {
    value: Cell<Option<UpReply>>,
    waker: Cell<Option<Waker>>,
    /// The sending side was dropped (with or without sending).
    sender_gone: Cell<bool>,
    /// The client's budget, and what `value` is charged to it.
    budget: Cell<Option<Rc<OutputBudget>>>,
    charged: Cell<usize>,
}

impl Inner {
    /// Give back what the value in the channel was charged (it is taken or dropped).
    #[inline]
    fn release(&self) {
        let charged = self.charged.replace(0);
        if charged > 0 {
            let budget = self.budget.take();
            if let Some(b) = &budget {
                b.release(charged);
            }
            self.budget.set(budget);
        }
    }
}

/// The sending half, kept by the connection task with the request it wrote.
pub(crate) struct ReplyTx(Rc<Inner>);

/// The receiving half, kept by the op.
pub(crate) struct ReplyRx(Rc<Inner>);

/// Most idle slots kept per thread for reuse.
const POOL_MAX: usize = 4096;

thread_local! {
    /// Idle slots (both halves dropped), reset and ready for reuse.
    static POOL: RefCell<Vec<Rc<Inner>>> = const { RefCell::new(Vec::new()) };
}

/// Why [`ReplyRx::try_recv`] has no reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Empty {
    /// Not yet.
    Pending,
    /// Never: the sender was dropped without sending.
    Closed,
}

/// A connected pair whose reply is charged to `budget`.
pub(crate) fn reply_channel(budget: &Rc<OutputBudget>) -> (ReplyTx, ReplyRx) {
    let slot: Rc<Inner> = POOL
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default();
    slot.budget.set(Some(Rc::clone(budget)));
    (ReplyTx(Rc::clone(&slot)), ReplyRx(slot))
}

// === impl ReplyTx ===

impl ReplyTx {
    /// Deliver the reply (dropped if the receiver is gone) and wake the receiver.
    pub fn send(self, reply: UpReply) {
        if self.is_closed() {
            return; // nobody will take it: drop it now, uncharged
        }
        if let UpReply::Frame(frame) = &reply {
            let budget = self.0.budget.take();
            if let Some(b) = &budget {
                b.charge(frame.raw.len());
                self.0.charged.set(frame.raw.len());
            }
            self.0.budget.set(budget);
        }
        self.0.value.set(Some(reply));
        // Dropping `self` wakes the receiver.
    }

    /// Whether the receiver was dropped (the client gave up on the request).
    pub fn is_closed(&self) -> bool {
        Rc::strong_count(&self.0) == 1
    }
}

impl Drop for ReplyTx {
    fn drop(&mut self) {
        self.0.sender_gone.set(true);
        if let Some(w) = self.0.waker.take() {
            w.wake();
        }
    }
}

// === impl ReplyRx ===

impl ReplyRx {
    /// The reply if it is there.
    pub fn try_recv(&mut self) -> Result<UpReply, Empty> {
        match self.0.value.take() {
            Some(v) => {
                self.0.release();
                Ok(v)
            }
            None if self.0.sender_gone.get() => Err(Empty::Closed),
            None => Err(Empty::Pending),
        }
    }
}

impl Future for ReplyRx {
    /// `None`: the sender was dropped without sending.
    type Output = Option<UpReply>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<UpReply>> {
        let slot = &self.0;
        if let Some(v) = slot.value.take() {
            slot.release();
            return Poll::Ready(Some(v));
        }
        if slot.sender_gone.get() {
            return Poll::Ready(None);
        }
        let mut waker = slot.waker.take();
        keep_waker(&mut waker, cx.waker());
        slot.waker.set(waker);
        Poll::Pending
    }
}

impl Drop for ReplyRx {
    fn drop(&mut self) {
        // A reply nobody took (the client left, the op gave up) is no longer held.
        self.0.release();
        self.0.budget.set(None);
        // Recycle the slot when the sender is gone too (the usual order: the reply arrived,
        // then the op moved on); otherwise the sender's drop frees it.
        if Rc::strong_count(&self.0) == 1 {
            self.0.value.set(None);
            self.0.waker.set(None);
            self.0.sender_gone.set(false);
            POOL.with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < POOL_MAX {
                    pool.push(Rc::clone(&self.0)); // the pool's reference outlives this one
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::reply_channel::Failure;

    #[test]
    fn delivers_once_and_reports_a_dropped_sender() {
        let (tx, mut rx) = reply_channel(&crate::testing::budget());
        assert_eq!(rx.try_recv().err(), Some(Empty::Pending));
        assert!(!tx.is_closed());
        tx.send(UpReply::Failed(Failure::Lost));
        assert!(matches!(rx.try_recv(), Ok(UpReply::Failed(Failure::Lost))));
        assert_eq!(rx.try_recv().err(), Some(Empty::Closed));

        let (tx, rx) = reply_channel(&crate::testing::budget());
        drop(rx);
        assert!(tx.is_closed());
    }

    #[tokio::test]
    async fn wakes_the_waiting_receiver() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (tx, rx) = reply_channel(&crate::testing::budget());
                let waiter = tokio::task::spawn_local(rx);
                tokio::task::yield_now().await;
                tx.send(UpReply::Failed(Failure::Unreachable));
                assert!(matches!(
                    waiter.await,
                    Ok(Some(UpReply::Failed(Failure::Unreachable)))
                ));
                let (tx, rx) = reply_channel(&crate::testing::budget());
                let waiter = tokio::task::spawn_local(rx);
                tokio::task::yield_now().await;
                drop(tx);
                assert!(matches!(waiter.await, Ok(None)));
            })
            .await;
    }

    #[test]
    fn a_reply_is_charged_while_it_waits_and_released_when_taken_or_dropped() {
        let budget = crate::testing::budget();
        let frame = |n: usize| {
            let mut raw = format!("${}\r\n", n).into_bytes();
            raw.resize(raw.len() + n, b'x');
            raw.extend_from_slice(b"\r\n");
            let len = raw.len();
            let text = String::from_utf8(raw).unwrap();
            (UpReply::Frame(crate::testing::reply(&text)), len)
        };
        let (tx, mut rx) = reply_channel(&budget);
        let (reply, len) = frame(1000);
        tx.send(reply);
        assert_eq!(budget.held(), len);
        assert!(rx.try_recv().is_ok());
        assert_eq!(budget.held(), 0);

        let (tx, rx) = reply_channel(&budget);
        tx.send(frame(500).0);
        assert!(budget.held() > 500);
        drop(rx); // the client left with the reply unread
        assert_eq!(budget.held(), 0);

        let (tx, rx) = reply_channel(&budget);
        drop(rx);
        tx.send(frame(500).0); // nobody takes it: never charged
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_recycled_slot_starts_empty() {
        let (tx, rx) = reply_channel(&crate::testing::budget());
        tx.send(UpReply::Failed(Failure::Lost));
        let first = Rc::as_ptr(&rx.0);
        drop(rx); // sender gone too: back to the pool, unread reply and all
        let (tx, mut rx) = reply_channel(&crate::testing::budget());
        assert_eq!(Rc::as_ptr(&rx.0), first, "the slot is reused");
        assert_eq!(rx.try_recv().err(), Some(Empty::Pending));
        assert!(!tx.is_closed());
        tx.send(UpReply::Failed(Failure::Unreachable));
        assert!(matches!(
            rx.try_recv(),
            Ok(UpReply::Failed(Failure::Unreachable))
        ));

        // Dropped while the sender lives: not recycled (the sender still points at it).
        let (tx, rx) = reply_channel(&crate::testing::budget());
        let held = Rc::as_ptr(&rx.0);
        drop(rx);
        assert!(tx.is_closed());
        let (_tx2, rx2) = reply_channel(&crate::testing::budget());
        assert_ne!(Rc::as_ptr(&rx2.0), held);
        drop(tx);
    }
}
