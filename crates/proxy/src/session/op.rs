//! One request to the cluster and everything that can happen to it before the client sees a
//! reply: MOVED (patch the map, resend), ASK (`ASKING` + resend to the target), TRYAGAIN /
//! CLUSTERDOWN / LOADING and unreachable nodes (retry with backoff inside `op_timeout`), a
//! connection lost mid-flight (read-only commands are resent once, others get an error),
//! and the `op_timeout` deadline itself.
//!
//! An [`Op`] is a state machine driven by its session: [`Op::poll_sync`] consumes a reply
//! that is already there, [`Op::next_event`] waits for the next one (cancel-safe), and
//! [`Op::on_event`] applies it.

use std::rc::Rc;

use bytes::Bytes;
use slotgate_cluster::NodeAddr;
use slotgate_resp::ReplyKind;
use tokio::time::Instant;

use crate::config::ReadFrom;
use crate::protocol::{Dialect, Protocol};
use crate::replies;
use crate::runtime::budget::OutputBudget;
use crate::runtime::context::WorkerCtx;
use crate::telemetry::metrics::{CmdResult, RefreshTrigger, Retry, UpstreamError};
use crate::upstream::conn::Upstream;
use crate::upstream::redirect::{may_resend_after_loss, Attempts, Verdict};
use crate::upstream::reply_channel::{reply_channel, Empty, ReplyRx};
use crate::upstream::reply_channel::{Failure, UpReply};

/// Where an op goes.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// The primary owning this slot in the current map.
    Slot(u16),
    /// Any primary (keyless commands).
    Any,
    /// This node (fan-out to every primary). Boxed: routes by slot keep an op small.
    Node(Box<NodeAddr>),
}

/// What an op does to the data, and so where it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// It may write: the primary only.
    Write,
    /// It only reads: a replica may serve it (`upstream.read_from`).
    Read,
    /// It only reads, but a replica failed it: the primary from now on.
    ReadPrimary,
}

/// What woke a waiting op.
#[derive(Debug)]
pub(crate) enum Event {
    /// The node answered (or the connection failed).
    Reply(UpReply),
    /// `op_timeout` passed.
    Timeout,
    /// A retry backoff ended.
    Wake,
    /// A task-computed reply ([`crate::upstream::dedicated::Task`]) arrived.
    Finished(Bytes),
}

enum State {
    /// Sent over `upstream`'s connections (kept as the worker's `Rc`, so waiting costs no
    /// atomic reference count on the node's address).
    Waiting {
        rx: ReplyRx,
        upstream: Rc<Upstream>,
    },
    Backoff(Instant),
    /// Finished: the final reply is in [`Op::wire`].
    Done,
}

/// An EVALSHA's `SCRIPT LOAD`, for a node that answers NOSCRIPT.
struct Repair {
    load: Bytes,
    /// NOSCRIPT came: the next send carries `load` first (then the repair is spent).
    next_send: bool,
}

/// One upstream request and its retry state.
pub(crate) struct Op {
    /// The command as sent; once [`State::Done`], the final reply instead (an op is moved
    /// about in its session's queue, so it is kept small).
    wire: Bytes,
    route: Route,
    access: Access,
    /// The protocol of the connections it goes over (the client's).
    proto: Protocol,
    /// The database it runs in (the client's; kept apart from `proto`, which keeps an op
    /// small).
    db: u16,
    /// Redirects and retries so far (the policy is `upstream::redirect`'s).
    attempts: Attempts,
    io_retried: bool,
    timed_out: bool,
    /// `SCRIPT LOAD <body>` for a node that answers this EVALSHA with NOSCRIPT (rare, so
    /// boxed).
    repair: Option<Box<Repair>>,
    deadline: Instant,
    state: State,
    /// The client's output budget, which its replies are charged to while they wait.
    budget: Rc<OutputBudget>,
}

impl Op {
    /// Send `wire` along `route` now, over connections speaking the client's `dialect`, for
    /// the client whose output budget is `budget`.
    pub fn start(
        ctx: &WorkerCtx,
        route: Route,
        wire: Bytes,
        readonly: bool,
        deadline: Instant,
        dialect: Dialect,
        budget: &Rc<OutputBudget>,
    ) -> Op {
        let mut op = Op {
            wire,
            route,
            access: match (readonly, dialect.primary_reads) {
                (false, _) => Access::Write,
                (true, false) => Access::Read,
                (true, true) => Access::ReadPrimary,
            },
            proto: dialect.proto,
            db: dialect.db,
            attempts: Attempts::default(),
            io_retried: false,
            timed_out: false,
            repair: None,
            deadline,
            state: State::Done,
            budget: Rc::clone(budget),
        };
        op.send(ctx, None, false);
        op
    }

    /// The same request to each of `nodes` (a fan-out's parts, in order).
    pub fn to_each(
        ctx: &WorkerCtx,
        nodes: impl IntoIterator<Item = NodeAddr>,
        wire: &Bytes,
        readonly: bool,
        deadline: Instant,
        dialect: Dialect,
        budget: &Rc<OutputBudget>,
    ) -> Vec<Op> {
        nodes
            .into_iter()
            .map(|node| {
                let route = Route::Node(Box::new(node));
                Op::start(
                    ctx,
                    route,
                    wire.clone(),
                    readonly,
                    deadline,
                    dialect,
                    budget,
                )
            })
            .collect()
    }

    /// True once the final reply is known.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// On `-NOSCRIPT`, send `load` (`SCRIPT LOAD <body>`) to the same node and this
    /// EVALSHA again, once.
    pub fn repair_noscript(&mut self, load: Bytes) {
        self.repair = Some(Box::new(Repair {
            load,
            next_send: false,
        }));
    }

    /// How the op ended, for `slotgate_commands_total{result}`; call before
    /// [`Op::take_reply`].
    pub fn outcome(&self) -> CmdResult {
        match &self.state {
            _ if self.timed_out => CmdResult::Timeout,
            State::Done if matches!(self.wire.first(), Some(b'-' | b'!')) => CmdResult::Error,
            _ if self.attempts.redirects() > 0 => CmdResult::Redirected,
            _ => CmdResult::Ok,
        }
    }

    /// The final reply; empty before [`Op::is_done`].
    pub fn take_reply(&mut self) -> Bytes {
        match self.state {
            State::Done => std::mem::take(&mut self.wire),
            _ => Bytes::new(),
        }
    }

    fn send(&mut self, ctx: &WorkerCtx, target: Option<NodeAddr>, asking: bool) {
        let routes = &ctx.routes;
        let proto = self.proto;
        let upstream = match (target, &self.route) {
            (Some(node), _) => Some(routes.for_node(proto, &node)),
            (None, Route::Node(node)) => Some(routes.for_node(proto, node)),
            (None, Route::Slot(slot)) if self.access == Access::Read => {
                match routes.for_slot_read(proto, *slot) {
                    Ok(upstream) => Some(upstream),
                    Err(reply) => {
                        ctx.topology.request_refresh(RefreshTrigger::Error);
                        self.retry_later(reply);
                        return;
                    }
                }
            }
            (None, Route::Slot(slot)) => routes.for_slot(proto, *slot),
            (None, Route::Any) => routes.any(proto),
        };
        let Some(upstream) = upstream else {
            ctx.topology.request_refresh(RefreshTrigger::Error);
            self.retry_later(Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED));
            return;
        };
        let (tx, rx) = reply_channel(&self.budget);
        let prelude = self.take_prelude();
        upstream.send(&self.wire, asking, prelude.as_deref(), self.db, tx);
        self.state = State::Waiting { rx, upstream };
    }

    /// Consume a reply that has already arrived, without waiting. Returns [`Op::is_done`].
    pub fn poll_sync(&mut self, ctx: &WorkerCtx, now: Instant) -> bool {
        loop {
            match &mut self.state {
                State::Done => return true,
                State::Backoff(until) => {
                    if now < *until {
                        return false;
                    }
                    self.on_event(ctx, Event::Wake);
                }
                State::Waiting { rx, .. } => match rx.try_recv() {
                    Ok(reply) => self.on_event(ctx, Event::Reply(reply)),
                    Err(Empty::Pending) => return false,
                    Err(Empty::Closed) => {
                        self.on_event(ctx, Event::Reply(UpReply::Failed(Failure::Lost)))
                    }
                },
            }
        }
    }

    /// When the reply it waits for is due (`op_timeout` after the request), or `None` when it
    /// waits for nothing. The deadline is the session's to watch ([`Op::next_event`] has no
    /// timer, so waiting costs no timer registration per wake-up); past it, the session
    /// applies [`Event::Timeout`].
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { .. } => Some(self.deadline),
            State::Backoff(_) | State::Done => None,
        }
    }

    /// Wait for the next thing that can move this op on, except its deadline (see
    /// [`Op::deadline`]). Cancel-safe. Never resolves for a finished op.
    pub async fn next_event(&mut self) -> Event {
        match &mut self.state {
            State::Waiting { rx, .. } => {
                Event::Reply(rx.await.unwrap_or(UpReply::Failed(Failure::Lost)))
            }
            State::Backoff(until) => {
                tokio::time::sleep_until(*until).await;
                Event::Wake
            }
            State::Done => std::future::pending().await,
        }
    }

    /// Apply `event`.
    pub fn on_event(&mut self, ctx: &WorkerCtx, event: Event) {
        // The common case first: a reply that is not an error is the final reply.
        let event = match event {
            Event::Reply(UpReply::Frame(reply))
                if !matches!(reply.kind, ReplyKind::Error(_))
                    && matches!(self.state, State::Waiting { .. }) =>
            {
                self.finish(reply.raw);
                if ctx.cache.is_some() {
                    self.after_resent_write(ctx);
                }
                return;
            }
            event => event,
        };
        let upstream = match &self.state {
            State::Waiting { upstream, .. } => Rc::clone(upstream),
            State::Backoff(_) => {
                if let Event::Wake = event {
                    self.send(ctx, None, false);
                }
                return;
            }
            State::Done => return,
        };
        let node = &upstream.addr;
        match event {
            Event::Wake | Event::Finished(_) => {}
            Event::Timeout => {
                ctx.metrics
                    .shared()
                    .upstream_error(node, UpstreamError::Timeout);
                self.timed_out = true;
                // A write on its way may still run when the node wakes up: only a read is
                // safe to retry, so only a read gets -TRYAGAIN.
                self.finish(if self.access != Access::Write {
                    replies::upstream_timeout(node.as_str())
                } else {
                    replies::upstream_timeout_write(node.as_str())
                })
            }
            Event::Reply(UpReply::Frame(reply)) => match self.attempts.judge(
                &reply,
                node,
                ctx.cfg.upstream.max_redirects,
                &ctx.topology,
                ctx.metrics.shared(),
            ) {
                Verdict::Redirect { target, asking } => self.send(ctx, Some(target), asking),
                Verdict::Retry(reason) => {
                    if self.retry_later(reply.raw) {
                        ctx.metrics.shared().retry(reason);
                    }
                }
                Verdict::Final
                    if reply.raw.starts_with(b"-NOSCRIPT")
                        && self.repair.as_ref().is_some_and(|r| !r.next_send) =>
                {
                    // The node never loaded this script (a promoted replica, a new node):
                    // load the body slotgate saw, then run the EVALSHA again, on that node.
                    if let Some(repair) = self.repair.as_mut() {
                        repair.next_send = true;
                    }
                    self.send(ctx, Some(node.clone()), false);
                }
                _ => self.finish(reply.raw),
            },
            Event::Reply(UpReply::Failed(Failure::Unreachable)) => {
                // The node may have been replaced (failover): look again, debounced by the
                // refresher, while this command waits to retry.
                ctx.topology.request_refresh(RefreshTrigger::Error);
                self.avoid_replica(ctx, node);
                if self.retry_later(replies::upstream_unreachable(node.as_str())) {
                    ctx.metrics.shared().retry(Retry::Unreachable);
                }
            }
            Event::Reply(UpReply::Failed(Failure::Lost)) => {
                self.avoid_replica(ctx, node);
                if may_resend_after_loss(self.access != Access::Write, self.io_retried) {
                    self.io_retried = true;
                    ctx.metrics.shared().retry(Retry::ReadonlyIo);
                    self.send(ctx, None, false);
                } else {
                    self.finish(replies::upstream_lost(node.as_str()));
                }
            }
            Event::Reply(UpReply::Failed(Failure::Protocol)) => {
                self.finish(replies::upstream_protocol(node.as_str()))
            }
        }
        self.after_resent_write(ctx);
    }

    /// A read that a replica (`node`) failed goes to the primary from now on, when
    /// `read_from: prefer-replica` allows it.
    fn avoid_replica(&mut self, ctx: &WorkerCtx, node: &NodeAddr) {
        if self.access == Access::Read
            && ctx.cfg.upstream.read_from == ReadFrom::PreferReplica
            && !ctx.routes.is_primary(node)
        {
            self.access = Access::ReadPrimary;
        }
    }

    /// A write that ended after it was sent again (a redirect, a retry, a resend after a
    /// lost connection) may have run after reads of its keys that were sent after it: the
    /// read cache drops everything rather than keep what they read (rare: resharding,
    /// failover).
    fn after_resent_write(&self, ctx: &WorkerCtx) {
        if let Some(cache) = &ctx.cache {
            if self.is_done()
                && self.access == Access::Write
                && (self.attempts.any() || self.io_retried || self.timed_out)
            {
                cache.drop_all(crate::telemetry::metrics::Invalidation::OwnWrite);
            }
        }
    }

    /// Whether the final reply came from the first send (no redirect, retry or resend): a
    /// read the cache may keep.
    pub fn first_try(&self) -> bool {
        !self.attempts.any() && !self.io_retried && !self.timed_out
    }

    /// End with `reply`.
    fn finish(&mut self, reply: Bytes) {
        self.wire = reply;
        self.state = State::Done;
    }

    /// The repair's `SCRIPT LOAD`, if the next send must carry it (once).
    fn take_prelude(&mut self) -> Option<Bytes> {
        match &self.repair {
            Some(r) if r.next_send => self.repair.take().map(|r| r.load),
            _ => None,
        }
    }

    /// Try again after a backoff if that still fits before the deadline (returns true);
    /// else finish with `final_reply`.
    fn retry_later(&mut self, final_reply: Bytes) -> bool {
        match self.attempts.retry_at(Instant::now(), self.deadline) {
            Some(at) => {
                self.state = State::Backoff(at);
                true
            }
            None => {
                self.finish(final_reply);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
