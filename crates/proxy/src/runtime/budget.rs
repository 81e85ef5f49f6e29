//! Byte budgets for what slotgate holds on behalf of clients, so a client that reads slowly
//! or not at all costs a bounded amount of memory and never stalls anyone else.
//!
//! - [`OutputBudget`], one per client: the bytes of its replies that arrived from the nodes
//!   and wait in its reply queue, plus the bytes of its output buffer not yet written. The
//!   session forwards a request only while those bytes plus the replies still expected (its
//!   requests in flight times the largest reply it got lately) stay under the soft mark
//!   (`limits.client_output_soft`), and, like TCP's slow start, a new client may have one
//!   request in flight, then twice as many after each reply; past the hard limit
//!   (`limits.max_client_output`) the session closes the client. Replies are charged by the
//!   connection that reads them, so a reply queued behind a slow one counts the moment it
//!   arrives.
//! - [`WorkerBudget`], one per worker: the sum over its clients (and their read buffers),
//!   published to the process-wide [`ProcessBudget`] in steps of [`PUBLISH_STEP`], so the
//!   shared counter is touched once per 64 KiB of change, not once per reply.
//! - [`ProcessBudget`]: `limits.max_buffered` across the process; past it new commands get
//!   `-OOM` until clients read what they are owed.
//!
//! Everything but the process counter is thread-local (`Cell`s): a worker's sessions and
//! connection tasks share one thread.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::runtime::wakers::keep_waker;

/// A worker publishes its total to the process counter when it moved this far.
pub(crate) const PUBLISH_STEP: usize = 64 * 1024;

/// The reply-size estimate never drops below this (bytes): a pipeline of tiny replies gets
/// a window of `soft / MIN_ESTIMATE` requests, capped by `limits.max_pipeline`.
const MIN_ESTIMATE: usize = 64;

/// Request bytes in a read buffer below this are not counted (see
/// [`OutputBudget::set_requests`]).
const SMALL_READ: usize = 64 * 1024;

/// The slow-start window stops doubling here (`limits.max_pipeline` caps it anyway).
const MAX_WINDOW: usize = 1 << 20;

/// The bytes held for clients across the process (`limits.max_buffered`).
pub(crate) struct ProcessBudget {
    used: AtomicUsize,
    max: usize,
}

impl ProcessBudget {
    /// A budget of `max` bytes, none used.
    pub fn new(max: usize) -> ProcessBudget {
        ProcessBudget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Bytes held now, as the workers last published them (within [`PUBLISH_STEP`] per
    /// worker).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether the limit is reached: new commands are refused.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.used.load(Ordering::Relaxed) >= self.max
    }
}

/// One worker's share of the process budget.
pub(crate) struct WorkerBudget {
    held: Cell<usize>,
    published: Cell<usize>,
    process: Arc<ProcessBudget>,
}

impl WorkerBudget {
    /// A worker's budget, counting into `process`.
    pub fn new(process: Arc<ProcessBudget>) -> Rc<WorkerBudget> {
        Rc::new(WorkerBudget {
            held: Cell::new(0),
            published: Cell::new(0),
            process,
        })
    }

    /// Whether the process budget is used up.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.process.is_full()
    }

    /// Bytes this worker holds now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.get()
    }

    #[inline]
    fn add(&self, n: usize) {
        self.held.set(self.held.get() + n);
        self.publish();
    }

    #[inline]
    fn sub(&self, n: usize) {
        self.held.set(self.held.get().saturating_sub(n));
        self.publish();
    }

    #[inline]
    fn publish(&self) {
        let (held, published) = (self.held.get(), self.published.get());
        if held.abs_diff(published) >= PUBLISH_STEP || (held == 0 && published != 0) {
            self.publish_now(held, published);
        }
    }

    #[cold]
    fn publish_now(&self, held: usize, published: usize) {
        if held > published {
            self.process
                .used
                .fetch_add(held - published, Ordering::Relaxed);
        } else {
            self.process
                .used
                .fetch_sub(published - held, Ordering::Relaxed);
        }
        self.published.set(held);
    }
}

/// What a client's budget allows next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Under the soft mark.
    Within,
    /// At or past the soft mark: forward nothing more until the client reads.
    Soft,
    /// Past the hard limit: close the client.
    Over,
}

/// One client's output budget (see the module docs).
pub(crate) struct OutputBudget {
    /// Replies that arrived for the client and wait in its reply queue.
    waiting: Cell<usize>,
    /// Bytes of its output buffer not written yet.
    unwritten: Cell<usize>,
    /// Bytes of its read buffer (requests read, not yet forwarded).
    requests: Cell<usize>,
    /// What the worker was last told this client holds (see [`OutputBudget::report`]).
    reported: Cell<usize>,
    /// The largest reply lately (decays by 1/64 per reply): what each request in flight is
    /// assumed to bring.
    peak: Cell<usize>,
    /// Requests allowed in flight by the slow start: 1, doubled per reply written.
    window: Cell<usize>,
    soft: usize,
    hard: usize,
    over: Cell<bool>,
    waker: Cell<Option<Waker>>,
    worker: Rc<WorkerBudget>,
}

impl OutputBudget {
    /// A new client's budget: `soft` and `hard` bytes, counting into `worker`.
    pub fn new(worker: &Rc<WorkerBudget>, soft: usize, hard: usize) -> Rc<OutputBudget> {
        Rc::new(OutputBudget {
            waiting: Cell::new(0),
            unwritten: Cell::new(0),
            requests: Cell::new(0),
            reported: Cell::new(0),
            peak: Cell::new(MIN_ESTIMATE),
            window: Cell::new(1),
            soft,
            hard,
            over: Cell::new(false),
            waker: Cell::new(None),
            worker: Rc::clone(worker),
        })
    }

    /// Bytes held for the client's replies: arrived and waiting, or in its output buffer.
    #[inline]
    pub fn held(&self) -> usize {
        self.waiting.get() + self.unwritten.get()
    }

    /// A reply of `len` bytes arrived for the client (called by the connection that read it).
    #[inline]
    pub fn charge(&self, len: usize) {
        self.waiting.set(self.waiting.get() + len);
        if self.held() > self.hard && !self.over.get() {
            self.over.set(true);
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
        // Growth reaches the worker's sum within a step even while the session is not
        // running (a client that does not read); the rest waits for its next report.
        if self.waiting.get() > self.reported.get() + PUBLISH_STEP {
            self.report();
        }
    }

    /// The session took a reply of `len` bytes out of its queue (into its output buffer or
    /// a merge, both counted elsewhere), or dropped it.
    #[inline]
    pub fn release(&self, len: usize) {
        self.waiting.set(self.waiting.get().saturating_sub(len));
    }

    /// Tell the worker what this client holds now (the session does after every write).
    #[inline]
    pub fn report(&self) {
        let total = self.waiting.get() + self.unwritten.get() + self.requests.get();
        let reported = self.reported.replace(total);
        if total > reported {
            self.worker.add(total - reported);
        } else if total < reported {
            self.worker.sub(reported - total);
        }
    }

    /// A reply of `len` bytes went into the output buffer: it teaches the estimate (up at
    /// once to a larger reply, down slowly) and opens the slow-start window.
    #[inline]
    pub fn learn(&self, len: usize) {
        let peak = self.peak.get();
        self.peak.set(len.max(peak - peak / 64).max(MIN_ESTIMATE));
        let window = self.window.get();
        if window < MAX_WINDOW {
            self.window.set(window * 2);
        }
    }

    /// The output buffer holds `n` bytes not written yet; reports to the worker.
    #[inline]
    pub fn set_unwritten(&self, n: usize) {
        self.unwritten.set(n);
        if self.held() > self.hard && !self.over.get() {
            self.over.set(true);
        }
        self.report();
    }

    /// The read buffer holds `n` bytes of requests. Less than [`SMALL_READ`] counts as
    /// nothing: every connection has that much, and counting it would cost a worker update
    /// per read.
    #[inline]
    pub fn set_requests(&self, n: usize) {
        self.requests.set(if n < SMALL_READ { 0 } else { n });
    }

    /// Whether another request may be forwarded with `in_flight` requests unanswered: within
    /// the slow-start window, and the bytes held plus the replies expected stay under the
    /// soft mark. Always true with nothing in flight and nothing held, so a reply larger
    /// than the mark still works.
    #[inline]
    pub fn admits(&self, in_flight: usize) -> bool {
        let held = self.held();
        if in_flight == 0 {
            return held < self.soft || held == 0;
        }
        in_flight < self.window.get()
            && held.saturating_add(in_flight.saturating_mul(self.peak.get())) < self.soft
    }

    /// Where the client stands against its limits.
    pub fn standing(&self) -> Standing {
        if self.over.get() {
            Standing::Over
        } else if self.held() >= self.soft {
            Standing::Soft
        } else {
            Standing::Within
        }
    }

    /// Resolves once the hard limit is passed (a reply charged past it wakes the session,
    /// wherever it waits).
    pub async fn over_hard(&self) {
        std::future::poll_fn(|cx: &mut Context<'_>| {
            if self.over.get() {
                return Poll::Ready(());
            }
            let mut waker = self.waker.take();
            keep_waker(&mut waker, cx.waker());
            self.waker.set(waker);
            Poll::Pending
        })
        .await
    }
}

impl Drop for OutputBudget {
    fn drop(&mut self) {
        self.worker.sub(self.reported.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(soft: usize, hard: usize) -> (Arc<ProcessBudget>, Rc<OutputBudget>) {
        let process = Arc::new(ProcessBudget::new(1 << 30));
        let worker = WorkerBudget::new(Arc::clone(&process));
        (process, OutputBudget::new(&worker, soft, hard))
    }

    fn window(b: &OutputBudget) -> usize {
        (0..10_000_000).take_while(|&n| b.admits(n)).count()
    }

    #[test]
    fn the_window_starts_at_one_and_doubles_while_replies_are_small() {
        let (_, b) = budget(16 * 1024, 64 * 1024);
        assert_eq!(window(&b), 1);
        b.learn(10);
        assert_eq!(window(&b), 2);
        for _ in 0..20 {
            b.learn(10);
        }
        assert_eq!(window(&b), 16 * 1024 / MIN_ESTIMATE);
        // One large reply narrows it at once; it widens again slowly.
        b.learn(8 * 1024);
        assert_eq!(window(&b), 2);
        for _ in 0..64 {
            b.learn(10);
        }
        assert!((3..8).contains(&window(&b)), "{}", window(&b));
    }

    #[test]
    fn held_bytes_gate_forwarding_and_the_hard_limit_is_reported() {
        let (_, b) = budget(1000, 4000);
        for _ in 0..10 {
            b.learn(1);
        }
        assert!(b.admits(0));
        b.charge(999);
        assert_eq!(b.standing(), Standing::Within);
        assert!(!b.admits(1));
        b.charge(1);
        assert_eq!(b.standing(), Standing::Soft);
        assert!(!b.admits(0), "nothing more while the soft mark is reached");
        b.set_unwritten(3001);
        assert_eq!(b.standing(), Standing::Over);
        // A single reply larger than the soft mark is allowed when nothing else is held.
        let (_, b) = budget(1000, 4000);
        b.charge(3000);
        b.release(3000);
        b.learn(3000);
        assert!(b.admits(0));
        assert!(!b.admits(1));
    }
    #[tokio::test]
    async fn a_charge_past_the_hard_limit_wakes_the_waiting_session() {
        let (_, b) = budget(100, 200);
        let waiter = {
            let b = Rc::clone(&b);
            async move { b.over_hard().await }
        };
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let handle = tokio::task::spawn_local(waiter);
                tokio::task::yield_now().await;
                assert!(!handle.is_finished());
                b.charge(201);
                handle.await.unwrap();
            })
            .await;
    }

    #[test]
    fn the_process_counter_follows_in_steps_and_returns_to_zero() {
        let process = Arc::new(ProcessBudget::new(3 * PUBLISH_STEP));
        let worker = WorkerBudget::new(Arc::clone(&process));
        let a = OutputBudget::new(&worker, 1 << 20, 1 << 30);
        let b = OutputBudget::new(&worker, 1 << 20, 1 << 30);
        a.charge(PUBLISH_STEP - 1);
        a.report();
        assert_eq!(process.used(), 0, "small changes stay in the worker");
        b.charge(PUBLISH_STEP + 1); // past a step: reported by the charge itself
        assert_eq!(process.used(), 2 * PUBLISH_STEP);
        a.set_requests(PUBLISH_STEP + 1);
        a.set_unwritten(0);
        assert!(process.is_full());
        drop(a);
        drop(b);
        assert_eq!(worker.held(), 0);
        assert_eq!(process.used(), 0, "an idle worker publishes zero");
    }
}
