//! An unbounded single-thread queue from the sessions of a worker to one of its upstream
//! connection tasks: what `tokio::sync::mpsc::unbounded_channel` does for them, without
//! atomics or linked blocks (everything here is `!Send`, on the worker's thread).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::slots::keep_waker;

struct Inner<T> {
    items: VecDeque<T>,
    /// The receiver, waiting for an item.
    waker: Option<Waker>,
    /// The sender was dropped.
    closed: bool,
}

/// The sending half (one per queue).
pub(crate) struct QueueTx<T>(Rc<RefCell<Inner<T>>>);

/// The receiving half.
pub(crate) struct QueueRx<T>(Rc<RefCell<Inner<T>>>);

/// A connected pair.
pub(crate) fn local_queue<T>() -> (QueueTx<T>, QueueRx<T>) {
    let inner = Rc::new(RefCell::new(Inner {
        items: VecDeque::new(),
        waker: None,
        closed: false,
    }));
    (QueueTx(Rc::clone(&inner)), QueueRx(inner))
}

// === impl QueueTx ===

impl<T> QueueTx<T> {
    /// Queue `item`; `Err(item)` when the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        if Rc::strong_count(&self.0) == 1 {
            return Err(item);
        }
        let waker = {
            let mut inner = self.0.borrow_mut();
            inner.items.push_back(item);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Drop for QueueTx<T> {
    fn drop(&mut self) {
        let waker = {
            let mut inner = self.0.borrow_mut();
            inner.closed = true;
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

// === impl QueueRx ===

impl<T> QueueRx<T> {
    /// Move up to `limit` queued items into `out`, waiting for at least one. Returns how
    /// many were moved: 0 only when the sender is gone and nothing is left.
    pub async fn recv_many(&mut self, out: &mut Vec<T>, limit: usize) -> usize {
        poll_fn(|cx| {
            let mut inner = self.0.borrow_mut();
            if inner.items.is_empty() {
                if inner.closed {
                    return Poll::Ready(0);
                }
                keep_waker(&mut inner.waker, cx.waker());
                return Poll::Pending;
            }
            let n = inner.items.len().min(limit);
            out.extend(inner.items.drain(..n));
            Poll::Ready(n)
        })
        .await
    }

    /// Move up to `limit` queued items into `out` without waiting. Returns how many.
    pub fn try_recv_many(&mut self, out: &mut Vec<T>, limit: usize) -> usize {
        let mut inner = self.0.borrow_mut();
        let n = inner.items.len().min(limit);
        out.extend(inner.items.drain(..n));
        n
    }

    /// The next item, waiting for it; `None` when the sender is gone and nothing is left.
    pub async fn recv(&mut self) -> Option<T> {
        let mut one = Vec::with_capacity(1);
        match self.recv_many(&mut one, 1).await {
            0 => None,
            _ => one.pop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_wakes_and_closes() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (tx, mut rx) = local_queue::<u32>();
                let reader = tokio::task::spawn_local(async move {
                    let mut got = Vec::new();
                    while rx.recv_many(&mut got, 2).await > 0 {}
                    got
                });
                tokio::task::yield_now().await;
                for i in 0..5 {
                    tx.send(i).unwrap();
                }
                tokio::task::yield_now().await;
                tx.send(5).unwrap();
                drop(tx);
                assert_eq!(reader.await.unwrap(), vec![0, 1, 2, 3, 4, 5]);

                let (tx, rx) = local_queue::<u32>();
                drop(rx);
                assert_eq!(tx.send(7), Err(7));
            })
            .await;
    }
}
