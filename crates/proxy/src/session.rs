//! One client connection: read bytes, decode requests, route each into the ordered reply
//! queue, and write finished replies back strictly in request order, as many per write as
//! are ready. Reading pauses while `max_pipeline` commands are in flight, or while the
//! client's output budget holds no room for another reply (backpressure, see
//! `runtime::budget`); a client past its output limit is closed. A protocol error or QUIT
//! stops reading, flushes what is owed, and closes. The read and output buffers come from
//! the worker's pool while the client is busy and go back to it when it is idle (see
//! `runtime::buffers`).

pub(crate) mod client;
pub(crate) mod dispatch;
pub(crate) mod entry;
pub(crate) mod gate;
pub(crate) mod merge;
pub(crate) mod op;
pub(crate) mod request;
pub(crate) mod task;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use slotgate_resp::{Limits, RequestDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::auth::users::ClientAuth;
use crate::session::client::ClientState;

use crate::family::pubsub::PubSub;
use crate::family::shardsub::LinkFrame;
use crate::family::tracking::{self, TrackingState};
use crate::replies;
use crate::runtime::budget::{OutputBudget, Standing};
use crate::runtime::buffers::{BufferPool, BUFFER_SIZE};
use crate::runtime::context::WorkerCtx;
use crate::runtime::tracking::Invalidated;
use crate::session::dispatch::route_command;
use crate::session::entry::Entry;
use crate::session::op::Event;
use crate::telemetry::logs;
use crate::telemetry::panics;

/// Read buffer size kept free before each read.
const READ_RESERVE: usize = BUFFER_SIZE;
/// A buffer that grew past this (a huge request or reply) is released after use, even while
/// the client stays busy (an idle one gives back any buffer).
const BUFFER_SHRINK: usize = 1024 * 1024;
/// Replies are held only while at most this many entries are unfinished.
const COALESCE_MAX_ENTRIES: usize = 64;

/// One request's place in the reply queue, with what its metrics need.
struct Pending {
    entry: Entry,
    /// Command table index, `UNKNOWN_COMMAND`, or [`NOT_A_COMMAND`].
    cmd: u16,
    /// When the request was decoded ([`crate::telemetry::clock::mono_ns`]).
    start: u64,
}

/// [`Pending::cmd`] of what the session queues itself, with no request (an invalidation):
/// not counted as a command.
const NOT_A_COMMAND: u16 = u16::MAX;

/// Serve one client until it leaves, breaks the protocol, or the proxy shuts down. `rd` and
/// `wr` are the two halves of its connection (plain TCP or TLS), `local` the proxy's address
/// on it.
pub(crate) async fn run_session<R, W>(
    ctx: Rc<WorkerCtx>,
    rd: R,
    wr: W,
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut session = Session::new(ctx, rd, wr, peer, local, id);
    loop {
        let backlog = session.read_requests();
        if session.write_replies().await == Flow::Stop {
            return;
        }
        session.make_room_to_read();
        if backlog && session.has_room() {
            continue; // room again: decode what is already buffered before waiting for more
        }
        if session.wait_for_progress().await == Flow::Stop {
            return;
        }
    }
}

/// Whether the session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

/// One client connection's state between the steps of [`run_session`].
struct Session<R, W> {
    ctx: Rc<WorkerCtx>,
    client: ClientState,
    rd: R,
    wr: W,
    decoder: RequestDecoder,
    /// Bytes read and not yet decoded; unallocated while the client is idle.
    rbuf: BytesMut,
    /// Replies not yet written; unallocated while the client is idle.
    wbuf: BytesMut,
    /// One entry per request, in request order; replies leave from the front.
    queue: VecDeque<Pending>,
    max_pipeline: usize,
    idle_timeout: Option<std::time::Duration>,
    /// Requests are still read (false after QUIT, a protocol error, EOF or shutdown).
    reading: bool,
    last_read: Instant,
    shutdown: crate::runtime::shutdown::ShutdownWait,
    /// The timer for the front entry's deadline, kept across loop turns so a wake-up does
    /// not register and drop it again. Deadlines grow along the queue, so a timer armed for
    /// an earlier entry fires early at worst and is re-armed then: once per op_timeout, not
    /// per command.
    deadline_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    timer_at: Option<Instant>,
    /// Holding finished replies for the rest of their batch (see [`worth_holding`]).
    holder: crate::runtime::hold::Holder,
    coalescing: bool,
    coalesce_expired: bool,
    /// Wakes on a users reload, to close a removed user's connection while it is idle.
    users_changed: Option<tokio::sync::watch::Receiver<u64>>,
    /// Since when the client has been seen at or past its soft output mark, while slotgate
    /// waited to write to it.
    soft_since: Option<Instant>,
}

/// Why slotgate closes a client that does not read.
#[derive(Debug, Clone, Copy)]
enum Unread {
    /// Replies held for it passed `limits.max_client_output`.
    OutputLimit,
    /// It stayed at or past `limits.client_output_soft` for `client_output_soft_timeout`.
    OutputSoftLimit,
    /// Its Pub/Sub link gave up on it (`limits.max_pubsub_backlog`).
    PubsubBacklog,
}

impl Unread {
    fn label(self) -> &'static str {
        match self {
            Unread::OutputLimit => "output_limit",
            Unread::OutputSoftLimit => "output_soft_limit",
            Unread::PubsubBacklog => "pubsub_backlog",
        }
    }
}

impl<R, W> Session<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    fn new(ctx: Rc<WorkerCtx>, rd: R, wr: W, peer: SocketAddr, local: SocketAddr, id: u64) -> Self {
        let auth = ClientAuth::for_new_connection(&ctx.shared.users);
        let limits = Limits {
            max_bulk: ctx.cfg.limits.max_request_bytes,
            ..Limits::default()
        };
        Session {
            client: ClientState::new(id, peer, local, auth, ctx.client_budget()),
            rd,
            wr,
            decoder: RequestDecoder::new(limits),
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            // Room for one request: an idle client holds no more; a pipelining one grows it.
            queue: VecDeque::with_capacity(1),
            max_pipeline: ctx.cfg.limits.max_pipeline,
            idle_timeout: ctx.cfg.limits.client_idle_timeout,
            reading: !ctx.local_shutdown.is_fired(),
            last_read: Instant::now(),
            shutdown: ctx.local_shutdown.waiter(),
            deadline_timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            timer_at: None,
            holder: ctx.hold_clock.holder(),
            coalescing: false,
            coalesce_expired: false,
            users_changed: ctx.shared.users.subscribe(),
            soft_since: None,
            ctx,
        }
    }

    /// Whether another request may be routed: fewer than `max_pipeline` in flight, and room
    /// in the client's output budget for its reply.
    #[inline]
    fn has_room(&self) -> bool {
        self.queue.len() < self.max_pipeline
            && self.client.budget.admits(self.queue.len())
            && !self.queue.back().is_some_and(|p| p.entry.is_barrier())
    }

    /// Decode every complete request in the read buffer (while [`Session::has_room`]) and
    /// route each into the queue. Returns true when it stopped for lack of room: complete
    /// requests may still sit in the buffer, and the client may send nothing more until
    /// they are answered.
    fn read_requests(&mut self) -> bool {
        if !self.reading {
            return false;
        }
        let now = Instant::now();
        let start = crate::telemetry::clock::mono_ns(now.into_std());
        // One deadline for the batch: adding to an `Instant` normalises nanoseconds.
        let deadline = now + self.ctx.cfg.upstream.op_timeout;
        while self.has_room() {
            // A tracking client's invalidations come before the reply of any command read
            // after they were sent, and right after the command that sent them (its own
            // write: `tracking::note`), not behind the rest of its batch.
            if self.client.tracking.is_some() {
                self.take_invalidations();
            }
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(req)) => {
                    let (ctx, client) = (&self.ctx, &mut self.client);
                    let mut cmd = crate::telemetry::metrics::UNKNOWN_COMMAND;
                    let routed =
                        panics::guard(|| route_command(ctx, client, req, deadline, &mut cmd));
                    let entry = routed.unwrap_or_else(|caught| {
                        caught.log(crate::telemetry::local::command_label(cmd));
                        Entry::Close(Bytes::from_static(replies::INTERNAL_ERROR))
                    });
                    let entry = if client.replies.mute_this() {
                        Entry::Muted(Box::new(entry))
                    } else {
                        entry
                    };
                    let closes = matches!(&entry, Entry::Close(_))
                        || matches!(&entry, Entry::Muted(inner) if matches!(**inner, Entry::Close(_)));
                    self.queue.push_back(Pending { entry, cmd, start });
                    if closes {
                        self.reading = false;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let peer = self.client.peer;
                    logs::limited(
                        logs::Class::ProtocolError,
                        |suppressed| tracing::warn!(client = %peer, error = %e, suppressed, "client protocol error; closing"),
                    );
                    self.queue.push_back(Pending {
                        entry: Entry::Close(Bytes::from_static(e.to_reply())),
                        cmd: crate::telemetry::metrics::UNKNOWN_COMMAND,
                        start,
                    });
                    self.reading = false;
                    break;
                }
            }
        }
        self.client.budget.set_requests(self.rbuf.len());
        self.reading && !self.has_room()
    }

    /// Move the finished replies at the front of the queue into one write, unless they are
    /// worth holding for the rest of their batch; [`Flow::Stop`] when the connection is done
    /// (closed by a reply, nothing more to read and nothing owed, or the client is gone).
    async fn write_replies(&mut self) -> Flow {
        let ctx = &*self.ctx;
        let mut close = drain_ready(ctx, &mut self.queue, &mut self.wbuf, &self.client.budget);
        if !close && !self.wbuf.is_empty() && !self.queue.is_empty() {
            // Only part of what is owed is ready: the rest is often from another shard whose
            // reply is already readable. Let this tick's other tasks run first, so one write
            // carries both (fewer, larger writes to the client).
            tokio::task::yield_now().await;
            close = drain_ready(ctx, &mut self.queue, &mut self.wbuf, &self.client.budget);
        }
        let hold =
            !close && !self.wbuf.is_empty() && !self.coalesce_expired && worth_holding(&self.queue);
        if hold && !self.coalescing {
            self.holder.start();
            self.coalescing = true;
        }
        if !hold && !self.wbuf.is_empty() {
            if self.flush().await == Flow::Stop {
                return Flow::Stop;
            }
            if self.coalescing {
                self.holder.stop();
            }
            (self.coalescing, self.coalesce_expired) = (false, false);
        }
        // Replies held back for their batch count against the budget until written.
        self.client.budget.set_unwritten(self.wbuf.len());
        if self.wbuf.is_empty() && self.queue.is_empty() {
            // Nothing owed: the client is idle until it sends more.
            self.ctx.buffers.give(std::mem::take(&mut self.wbuf));
        }
        if close || (!self.reading && self.queue.is_empty()) {
            let _ = self.wr.shutdown().await;
            return Flow::Stop;
        }
        Flow::Go
    }

    /// Write the output buffer whole; [`Flow::Stop`] when the client is gone, or when it
    /// stops reading past its limits (see [`Session::write_blocked`]).
    async fn flush(&mut self) -> Flow {
        let budget = &*self.client.budget;
        // The usual case: the socket takes everything at once, no timer or select needed.
        let written = match write_now(&mut self.wr, &mut self.wbuf).await {
            Some(Ok(())) => true,
            Some(Err(_)) => false,
            None => {
                budget.set_unwritten(self.wbuf.len());
                let written = self.write_blocked().await;
                self.client.budget.set_unwritten(0);
                written
            }
        };
        if !written {
            return Flow::Stop;
        }
        if self.wbuf.capacity() > BUFFER_SHRINK {
            self.ctx.buffers.give(std::mem::take(&mut self.wbuf));
        } else {
            self.wbuf.clear();
        }
        Flow::Go
    }

    /// Write the output buffer to a client that is not taking it at once, counting what is
    /// still unwritten in its budget. Gives up (false) when the client is gone, when the
    /// replies held for it pass `limits.max_client_output`, when it stays at or past
    /// `limits.client_output_soft` for `client_output_soft_timeout`, or, for a subscriber,
    /// when its Pub/Sub link gave up on it.
    async fn write_blocked(&mut self) -> bool {
        let budget = &*self.client.budget;
        let soft_timeout = self.ctx.cfg.limits.client_output_soft_timeout;
        let (wr, wbuf) = (&mut self.wr, &self.wbuf);
        let write = async {
            let mut done = 0;
            while done < wbuf.len() {
                match wr.write(&wbuf[done..]).await {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => done += n,
                }
                budget.set_unwritten(wbuf.len() - done);
            }
            // A TLS stream may hold records back until asked (a no-op for TCP).
            wr.flush().await.is_ok()
        };
        let pubsub_gave_up = async {
            match &self.client.pubsub {
                Some(pubsub) => pubsub.gave_up().await,
                None => std::future::pending().await,
            }
        };
        let unread = tokio::select! {
            written = write => return written,
            () = budget.over_hard() => Unread::OutputLimit,
            () = soft_limit_held(budget, soft_timeout, &mut self.soft_since) => Unread::OutputSoftLimit,
            () = pubsub_gave_up => Unread::PubsubBacklog,
        };
        self.close_unread(unread);
        false
    }

    /// Log and count closing a client that does not read.
    fn close_unread(&self, why: Unread) {
        let (peer, held) = (self.client.peer, self.client.budget.held());
        self.ctx.metrics.shared().client_closed(why.label());
        logs::limited(
            logs::Class::ClientNotReading,
            |suppressed| tracing::warn!(client = %peer, reason = why.label(), held_bytes = held, suppressed, "closing a client that does not read its replies"),
        );
    }

    /// Keep room in a read buffer the session holds (one it gave back is taken again only
    /// when it reads); release one that grew past [`BUFFER_SHRINK`].
    fn make_room_to_read(&mut self) {
        let rbuf = &mut self.rbuf;
        if rbuf.capacity() != 0 && rbuf.capacity() - rbuf.len() < READ_RESERVE / 4 {
            if rbuf.is_empty() && rbuf.capacity() > BUFFER_SHRINK {
                self.ctx.buffers.give(std::mem::take(rbuf));
            } else {
                rbuf.reserve(READ_RESERVE);
            }
        }
    }

    /// Wait for whatever moves the session on: the front entry's next event or deadline,
    /// the end of a hold, bytes from the client, shutdown, a Pub/Sub frame, a users reload
    /// or the idle timeout. [`Flow::Stop`] when the session must end now.
    async fn wait_for_progress(&mut self) -> Flow {
        let ctx = &*self.ctx;
        // Without room, a little is still read (not decoded), so a client that leaves while
        // its commands wait is noticed (EOF) and its blocked commands are released.
        let can_read = self.reading && (self.has_room() || self.rbuf.len() < READ_RESERVE);
        let owes = !self.queue.is_empty();
        let idle_deadline = self.idle_timeout.map(|t| self.last_read + t);
        if self.reading && !self.queue.is_empty() && ctx.local_shutdown.is_fired() {
            self.reading = false;
        }
        let front_deadline = self.queue.front().and_then(|p| p.entry.deadline());
        if let Some(due) = front_deadline {
            if self.timer_at.is_none_or(|at| at > due) {
                self.deadline_timer.as_mut().reset(due);
                self.timer_at = Some(due);
            }
        }
        let has_inbox = self
            .client
            .tracking
            .as_ref()
            .is_some_and(|t| t.inbox.is_some());
        let idle = self.reading
            && self.queue.is_empty()
            && idle_deadline.is_some()
            && self.client.pubsub.is_none();
        tokio::select! {
            biased;
            (index, event) = front_event(&mut self.queue) => {
                if let Some(front) = self.queue.front_mut() {
                    front.entry.on_event(ctx, index, event);
                }
            }
            () = self.holder.expired(), if self.coalescing => {
                (self.coalescing, self.coalesce_expired) = (false, true);
            }
            () = &mut self.deadline_timer, if self.timer_at.is_some() && front_deadline.is_some() => {
                self.timer_at = None;
                if let Some(front) = self.queue.front_mut() {
                    front.entry.on_timeout(ctx, Instant::now());
                }
            }
            read = read_pooled(&mut self.rd, &mut self.rbuf, &ctx.buffers, owes), if can_read => {
                return self.on_read(read);
            }
            () = self.client.budget.over_hard() => {
                self.close_unread(Unread::OutputLimit);
                return Flow::Stop;
            }
            () = self.shutdown.fired(), if self.reading && self.queue.is_empty() => self.reading = false,
            frame = link_frame(&mut self.client.pubsub), if self.queue.is_empty() && self.client.pubsub.is_some() => {
                return self.on_link_frame(frame);
            }
            msg = invalidation(&mut self.client.tracking), if has_inbox && self.has_room() => {
                self.on_invalidation(msg);
            }
            _ = gate::users_changed(&mut self.users_changed), if self.reading && self.client.auth.is_some() => {
                self.reading = gate::still_allowed(ctx, &mut self.client);
            }
            _ = sleep_until_opt(idle_deadline), if idle => {
                tracing::debug!(client = %self.client.peer, "closing idle client");
                return Flow::Stop;
            }
        }
        Flow::Go
    }

    /// Bytes (or EOF, or an error) from the client.
    fn on_read(&mut self, read: std::io::Result<usize>) -> Flow {
        match read {
            Ok(0) => {
                // The client half-closed: answer what it sent, then close. Except for a
                // command blocked in Redis: its reply may never come, and dropping it
                // releases the dedicated connection (Redis stops blocking for it), as
                // Redis itself frees a client at EOF. (Transaction steps end within
                // op_timeout: their replies are still written.)
                if self
                    .queue
                    .iter()
                    .any(|p| matches!(&p.entry, Entry::Task(t, _) if t.may_block()))
                {
                    return Flow::Stop;
                }
                self.reading = false;
            }
            // The clock is read only for the idle timeout that needs it.
            Ok(_) if self.idle_timeout.is_some() => {
                self.last_read = Instant::now();
                self.client.budget.set_requests(self.rbuf.len());
            }
            Ok(_) => self.client.budget.set_requests(self.rbuf.len()),
            Err(_) => return Flow::Stop,
        }
        Flow::Go
    }

    /// The invalidations already in this client's inbox, queued now.
    fn take_invalidations(&mut self) {
        while let Some(msg) = self
            .client
            .tracking
            .as_mut()
            .and_then(|t| t.inbox.as_mut())
            .and_then(|inbox| inbox.try_next())
        {
            self.on_invalidation(msg);
        }
    }

    /// An invalidation for this client (`CLIENT TRACKING`), queued behind the replies it
    /// owes: the reply of a read sent before the change always arrives first.
    fn on_invalidation(&mut self, msg: Invalidated) {
        let subscribed = self.client.pubsub.as_ref().is_some_and(|p| p.active);
        if let Some(bytes) = tracking::format(self.client.proto, subscribed, &msg) {
            self.queue.push_back(Pending {
                entry: Entry::Ready(bytes),
                cmd: NOT_A_COMMAND,
                start: 0,
            });
        }
    }

    /// Messages and confirmations from the Pub/Sub link, written only when no reply is owed,
    /// so they never overtake one. `None`: the link gave up on this client (it does not read).
    fn on_link_frame(&mut self, frame: Option<LinkFrame>) -> Flow {
        let Some(frame) = frame else {
            self.close_unread(Unread::PubsubBacklog);
            return Flow::Stop;
        };
        if let Some(pubsub) = self.client.pubsub.as_mut() {
            if self.wbuf.capacity() == 0 {
                self.wbuf = self.ctx.buffers.take();
            }
            let mut next = Some(frame);
            while let Some(f) = next {
                pubsub.note(&f);
                self.wbuf
                    .extend_from_slice(&self.client.proto.pubsub_frame(f.frame));
                next = if self.wbuf.len() < READ_RESERVE {
                    pubsub.try_next()
                } else {
                    None
                };
            }
        }
        Flow::Go
    }
}

/// Read from the client into `rbuf`, which is first given a buffer from `pool` when it has
/// none. A read that has to wait with nothing buffered while no reply is owed (`owes`
/// false) gives the buffer back: an idle client holds none, and one that grew for a large
/// request is freed; a client waiting for replies keeps its buffer. Cancel-safe.
async fn read_pooled<R: AsyncRead + Unpin>(
    rd: &mut R,
    rbuf: &mut BytesMut,
    pool: &BufferPool,
    owes: bool,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        if rbuf.capacity() == 0 {
            *rbuf = pool.take();
        }
        let polled = std::future::Future::poll(std::pin::pin!(rd.read_buf(&mut *rbuf)), cx);
        if polled.is_pending() && rbuf.is_empty() && !owes {
            pool.give(std::mem::take(rbuf));
        }
        polled
    })
    .await
}

/// Write `buf` whole and flush if the socket takes it without waiting. `None` when it
/// would wait: what was written is cut from the front of `buf`, the rest is the caller's
/// to write (see [`Session::write_blocked`]).
async fn write_now<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &mut BytesMut,
) -> Option<std::io::Result<()>> {
    std::future::poll_fn(|cx| loop {
        if buf.is_empty() {
            // A TLS stream may hold records back until asked (a no-op for TCP).
            return match Pin::new(&mut *wr).poll_flush(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => Poll::Ready(None),
            };
        }
        match Pin::new(&mut *wr).poll_write(cx, buf) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Some(Err(std::io::ErrorKind::WriteZero.into())))
            }
            Poll::Ready(Ok(n)) => buf.advance(n),
            Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
            Poll::Pending => return Poll::Ready(None),
        }
    })
    .await
}

/// Resolves once the client's held bytes stayed at or past its soft mark for `timeout`
/// (sampled every eighth of it, from 10 ms to 1 s); `since` keeps the start across calls and
/// is cleared by a sample under the mark.
async fn soft_limit_held(budget: &OutputBudget, timeout: Duration, since: &mut Option<Instant>) {
    let period = (timeout / 8).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let now = Instant::now();
        match budget.standing() {
            Standing::Within => *since = None,
            Standing::Soft | Standing::Over => {
                if now.duration_since(*since.get_or_insert(now)) >= timeout {
                    return;
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Move every finished entry at the front of `queue` into `wbuf`, in order. Returns true when
/// one of them closes the connection (everything after it is dropped).
fn drain_ready(
    ctx: &WorkerCtx,
    queue: &mut VecDeque<Pending>,
    wbuf: &mut BytesMut,
    budget: &OutputBudget,
) -> bool {
    let now = Instant::now();
    let now_ns = crate::telemetry::clock::mono_ns(now.into_std());
    while let Some(front) = queue.front_mut() {
        if !front.entry.poll_sync(ctx, now) {
            return false;
        }
        if let Some(p) = queue.pop_front() {
            if wbuf.capacity() == 0 {
                *wbuf = ctx.buffers.take();
            }
            let before = wbuf.len();
            let (result, close) = p.entry.write_reply(wbuf);
            budget.learn(wbuf.len() - before);
            if p.cmd != NOT_A_COMMAND {
                ctx.metrics
                    .command(p.cmd, result, now_ns.saturating_sub(p.start));
            }
            if close {
                return true;
            }
        }
    }
    false
}

/// Whether finished replies should wait (at most [`COALESCE`](crate::runtime::hold::COALESCE)) for the rest of the queue:
/// only when every unfinished entry is an upstream op (bounded by `op_timeout`, usually
/// answered within microseconds), never for a blocking command, a transaction step or a
/// delayed reply, and not for a long queue (a deep pipeline writes large batches anyway).
fn worth_holding(queue: &VecDeque<Pending>) -> bool {
    !queue.is_empty()
        && queue.len() <= COALESCE_MAX_ENTRIES
        && queue.iter().all(|p| {
            matches!(
                p.entry,
                Entry::Single(_) | Entry::Fill(_) | Entry::Fanout(_) | Entry::Scan(_)
            )
        })
}

/// The next frame of the client's Pub/Sub link (`None`: the link gave up); never resolves
/// without a link.
async fn link_frame(pubsub: &mut Option<PubSub>) -> Option<LinkFrame> {
    match pubsub {
        Some(p) => p.next().await,
        None => std::future::pending().await,
    }
}

/// The next invalidation in the client's inbox; never resolves without one.
async fn invalidation(tracking: &mut Option<Box<TrackingState>>) -> Invalidated {
    match tracking.as_mut().and_then(|t| t.inbox.as_mut()) {
        Some(inbox) => inbox.next().await,
        None => std::future::pending().await,
    }
}

/// The next event of the front entry; never resolves when the queue is empty.
async fn front_event(queue: &mut VecDeque<Pending>) -> (usize, Event) {
    match queue.front_mut() {
        Some(front) => front.entry.next_event().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests are moved into and out of the session's queue by value: up to 128 bytes the
    /// compiler moves them inline; past that, every move was a `memcpy` call (about 190
    /// instructions per GET at `-P 16` when `Pending` was 216 bytes).
    #[test]
    fn a_queued_request_fits_in_128_bytes() {
        assert!(std::mem::size_of::<super::Pending>() <= 128);
        assert!(std::mem::size_of::<crate::session::op::Op>() <= 112);
    }

    /// Poll `fut` once: its output, or `None` when it would wait.
    async fn poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// A large request and its large reply grow the session's buffers; once the client is
    /// idle again it holds neither, and the grown ones were freed, not kept in the pool.
    #[test]
    fn buffers_grow_for_a_large_request_and_are_released_when_idle() {
        crate::testing::local(|| async {
            let ctx = Rc::new(crate::testing::worker_ctx(
                &[(0, 16383, "127.0.0.1:1")],
                Duration::from_secs(1),
            ));
            let (mut client, server) = tokio::io::duplex(1 << 20);
            let (rd, wr) = tokio::io::split(server);
            let addr = "127.0.0.1:1".parse().unwrap();
            let mut session = Session::new(Rc::clone(&ctx), rd, wr, addr, addr, 1);
            assert_eq!(
                session.rbuf.capacity(),
                0,
                "a new client holds no read buffer"
            );
            assert_eq!(session.wbuf.capacity(), 0, "nor an output buffer");

            let arg = vec![b'x'; 100_000];
            let mut request = format!("*2\r\n$4\r\nPING\r\n${}\r\n", arg.len()).into_bytes();
            request.extend_from_slice(&arg);
            request.extend_from_slice(b"\r\n");
            client.write_all(&request).await.unwrap();
            let mut largest = 0;
            while session.queue.is_empty() {
                assert_eq!(poll_once(session.wait_for_progress()).await, Some(Flow::Go));
                largest = largest.max(session.rbuf.capacity());
                session.read_requests();
            }
            assert!(
                largest >= 100_000,
                "the read buffer grew to {largest} bytes"
            );

            drain_ready(
                &ctx,
                &mut session.queue,
                &mut session.wbuf,
                &session.client.budget,
            );
            let grown = session.wbuf.capacity();
            assert!(grown >= 100_000, "the output buffer grew to {grown} bytes");
            assert_eq!(session.write_replies().await, Flow::Go);
            let mut reply = vec![0; session_reply_len(arg.len())];
            client.read_exact(&mut reply).await.unwrap();
            assert!(reply.starts_with(b"$100000\r\nxxx") && reply.ends_with(b"x\r\n"));

            // Idle: the output buffer went back once written, and the read buffer goes back
            // when the next read waits.
            assert_eq!(session.wbuf.capacity(), 0, "nothing owed, no output buffer");
            assert_eq!(poll_once(session.wait_for_progress()).await, None);
            assert_eq!(
                session.rbuf.capacity(),
                0,
                "an idle client holds no read buffer"
            );
            assert_eq!(session.wbuf.capacity(), 0, "nor an output buffer");
            assert_eq!(
                ctx.buffers.len(),
                0,
                "the grown buffers were freed, not kept"
            );

            // The next request gets a standard one.
            client.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
            assert_eq!(poll_once(session.wait_for_progress()).await, Some(Flow::Go));
            assert_eq!(session.rbuf.capacity(), BUFFER_SIZE);
        });
    }

    /// A bulk string reply to `PING <arg>`: `$<len>\r\n<arg>\r\n`.
    fn session_reply_len(arg: usize) -> usize {
        1 + arg.to_string().len() + 2 + arg + 2
    }
}
