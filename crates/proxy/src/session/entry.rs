//! The session's reply queue holds one [`Entry`] per client request, in request order. An
//! entry is a ready reply, one upstream [`Op`], or a fan-out of several ops whose replies are
//! merged ([`Merge`]) once all are in. The session writes entries' replies strictly in order.

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::runtime::cache::{FillTicket, WriteGuard};
use crate::runtime::context::WorkerCtx;
use crate::session::merge::{self, Merge};
use crate::session::op::{Event, Op};
use crate::session::task::Task;
use crate::telemetry::metrics::CmdResult;

/// Several ops merged into one reply.
pub(crate) struct Fanout {
    /// The parts, in the order `merge` expects.
    pub ops: Vec<Op>,
    /// How to combine them.
    pub merge: Merge,
}

/// A cacheable read sent on a miss: its reply may fill the read cache.
pub(crate) struct Fill {
    /// The read.
    pub op: Op,
    /// Its pending fill.
    pub ticket: FillTicket,
}

/// A write that runs on a connection of its own: its keys leave the read cache again once
/// it is answered (see [`WriteGuard`]).
pub(crate) struct Wrote {
    /// The write's entry.
    pub inner: Entry,
    /// Dropped when the reply is written, before the client sees it.
    pub guard: WriteGuard,
}

/// One client request's place in the reply queue.
pub(crate) enum Entry {
    /// The reply is known.
    Ready(Bytes),
    /// The reply comes from one upstream op.
    Single(Op),
    /// The reply is merged from several ops.
    Fanout(Box<Fanout>),
    /// One SCAN step on one primary ([`crate::family::scan`]).
    Scan(Box<crate::family::scan::ScanOp>),
    /// Write this reply, then close the connection (QUIT, protocol errors).
    Close(Bytes),
    /// The reply is known but must not leave before this instant (an AUTH reply after
    /// repeated failures). Waiting is a timer in the session's select; the worker never
    /// blocks.
    Delayed(Bytes, Instant),
    /// The reply comes from a task of its own (a blocking command on a dedicated
    /// connection); no deadline applies.
    Task(Task, Option<Bytes>),
    /// Sent down the client's Pub/Sub link: the node's answer reaches the client through
    /// the link, so this entry writes nothing.
    Relayed,
    /// Runs like the entry inside, whose reply is then dropped (`CLIENT REPLY OFF|SKIP`).
    Muted(Box<Entry>),
    /// A read cache miss ([`Fill`]).
    Fill(Box<Fill>),
    /// A write on a connection of its own, with the read cache's guard ([`Wrote`]).
    Wrote(Box<Wrote>),
}

impl Entry {
    /// Whether later requests must wait until this one is answered: a transaction step
    /// (`EXEC`, `WATCH`) or a restricted user's script runs on a connection of its own, so a
    /// command sent meanwhile over a shared connection could run before it (a `GET` pipelined
    /// after `EXEC` reading the value from before the transaction).
    #[inline]
    pub fn is_barrier(&self) -> bool {
        match self {
            Entry::Task(task, None) => !task.may_block(),
            Entry::Muted(inner) => inner.is_barrier(),
            Entry::Wrote(w) => w.inner.is_barrier(),
            _ => false,
        }
    }

    /// `reply` now, or not before `hold` when given.
    pub fn after(reply: Bytes, hold: Option<Instant>) -> Entry {
        match hold {
            Some(at) => Entry::Delayed(reply, at),
            None => Entry::Ready(reply),
        }
    }

    /// Advance with what has already arrived; true when the reply can be written.
    pub fn poll_sync(&mut self, ctx: &WorkerCtx, now: Instant) -> bool {
        match self {
            Entry::Ready(_) | Entry::Close(_) | Entry::Relayed => true,
            Entry::Delayed(_, at) => now >= *at,
            Entry::Task(task, reply) => {
                if reply.is_none() {
                    *reply = task.try_take();
                }
                reply.is_some()
            }
            Entry::Single(op) => op.poll_sync(ctx, now),
            Entry::Fill(f) => f.op.poll_sync(ctx, now),
            Entry::Wrote(w) => w.inner.poll_sync(ctx, now),
            Entry::Scan(scan) => scan.poll_sync(ctx, now),
            Entry::Muted(inner) => inner.poll_sync(ctx, now),
            Entry::Fanout(f) => {
                let mut done = true;
                for op in &mut f.ops {
                    done &= op.poll_sync(ctx, now);
                }
                done
            }
        }
    }

    /// The earliest deadline of the ops it waits for (see [`Op::deadline`]); `None` when it
    /// waits for none (a ready reply, a task, a delay).
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Entry::Single(op) => op.deadline(),
            Entry::Fill(f) => f.op.deadline(),
            Entry::Wrote(w) => w.inner.deadline(),
            Entry::Fanout(f) => f.ops.iter().filter_map(Op::deadline).min(),
            Entry::Scan(scan) => scan.deadline(),
            Entry::Muted(inner) => inner.deadline(),
            _ => None,
        }
    }

    /// Time out the ops whose deadline passed by `now`.
    pub fn on_timeout(&mut self, ctx: &WorkerCtx, now: Instant) {
        let due = |op: &Op| op.deadline().is_some_and(|d| d <= now);
        match self {
            Entry::Single(op) if due(op) => op.on_event(ctx, Event::Timeout),
            Entry::Fill(f) if due(&f.op) => f.op.on_event(ctx, Event::Timeout),
            Entry::Wrote(w) => w.inner.on_timeout(ctx, now),
            Entry::Fanout(f) => {
                for op in f.ops.iter_mut().filter(|op| due(op)) {
                    op.on_event(ctx, Event::Timeout);
                }
            }
            Entry::Scan(scan) => scan.on_timeout(ctx, now),
            Entry::Muted(inner) => inner.on_timeout(ctx, now),
            _ => {}
        }
    }

    /// Wait for the next event of the first unfinished op (deadlines aside: see
    /// [`Entry::deadline`]). Cancel-safe.
    pub async fn next_event(&mut self) -> (usize, Event) {
        match self {
            Entry::Single(op) => (0, op.next_event().await),
            Entry::Fill(f) => (0, f.op.next_event().await),
            Entry::Wrote(w) => Box::pin(w.inner.next_event()).await,
            Entry::Scan(scan) => scan.next_event().await,
            Entry::Fanout(f) => match f.ops.iter_mut().enumerate().find(|(_, op)| !op.is_done()) {
                Some((i, op)) => (i, op.next_event().await),
                None => std::future::pending().await,
            },
            Entry::Delayed(_, at) => {
                tokio::time::sleep_until(*at).await;
                (0, Event::Wake)
            }
            Entry::Task(task, None) => (0, Event::Finished(task.wait().await)),
            Entry::Task(_, Some(_)) => std::future::pending().await,
            Entry::Muted(inner) => Box::pin(inner.next_event()).await,
            Entry::Ready(_) | Entry::Close(_) | Entry::Relayed => std::future::pending().await,
        }
    }

    /// Apply an event from [`Entry::next_event`].
    pub fn on_event(&mut self, ctx: &WorkerCtx, index: usize, event: Event) {
        match self {
            Entry::Single(op) => op.on_event(ctx, event),
            Entry::Fill(f) => f.op.on_event(ctx, event),
            Entry::Wrote(w) => w.inner.on_event(ctx, index, event),
            Entry::Scan(scan) => scan.on_event(ctx, index, event),
            Entry::Fanout(f) => {
                if let Some(op) = f.ops.get_mut(index) {
                    op.on_event(ctx, event)
                }
            }
            Entry::Task(_, reply) => {
                if let Event::Finished(b) = event {
                    *reply = Some(b);
                }
            }
            Entry::Muted(inner) => inner.on_event(ctx, index, event),
            Entry::Ready(_) | Entry::Close(_) | Entry::Delayed(..) | Entry::Relayed => {}
        }
    }

    /// Append the finished reply to `out`. Returns how the command ended and whether the
    /// connection must close after this reply.
    pub fn write_reply(self, out: &mut BytesMut) -> (CmdResult, bool) {
        let start = out.len();
        let (outcome, close) = match self {
            Entry::Ready(b) | Entry::Delayed(b, _) | Entry::Task(_, Some(b)) => {
                out.extend_from_slice(&b);
                (None, false)
            }
            Entry::Task(_, None) | Entry::Relayed => (None, false),
            Entry::Close(b) => {
                out.extend_from_slice(&b);
                (None, true)
            }
            Entry::Single(mut op) => {
                let outcome = op.outcome();
                out.extend_from_slice(&op.take_reply());
                (Some(outcome), false)
            }
            Entry::Fill(f) => {
                let Fill { mut op, ticket } = *f;
                let outcome = op.outcome();
                let reply = op.take_reply();
                if outcome == CmdResult::Ok && op.first_try() {
                    ticket.fill(&reply);
                }
                out.extend_from_slice(&reply);
                (Some(outcome), false)
            }
            Entry::Wrote(w) => {
                let Wrote { inner, guard } = *w;
                drop(guard); // before the client can read again
                return inner.write_reply(out);
            }
            Entry::Scan(scan) => (Some(scan.write_reply(out)), false),
            Entry::Muted(inner) => {
                let mut dropped = BytesMut::new();
                let (result, close) = inner.write_reply(&mut dropped);
                return (result, close);
            }
            Entry::Fanout(f) => {
                let outcome = f.ops.iter().map(Op::outcome).max_by_key(|o| match o {
                    CmdResult::Ok => 0,
                    CmdResult::Redirected => 1,
                    CmdResult::Error => 2,
                    CmdResult::Timeout => 3,
                });
                merge(*f, out);
                (outcome, false)
            }
        };
        let result = match outcome {
            Some(CmdResult::Timeout) => CmdResult::Timeout,
            _ if is_error(&out[start..]) => CmdResult::Error,
            Some(o) => o,
            None => CmdResult::Ok,
        };
        (result, close)
    }
}

fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-') | Some(b'!'))
}

/// Combine a finished fan-out's replies into `out` (see [`merge::write`]).
fn merge(mut f: Fanout, out: &mut BytesMut) {
    let replies: Vec<Bytes> = f.ops.iter_mut().map(Op::take_reply).collect();
    merge::write(f.merge, &replies, out);
}
