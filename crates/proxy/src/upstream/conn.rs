//! Multiplexed, pipelined connections to one node. Each worker owns one [`Upstream`] per node
//! it talks to, with `connections_per_node` connection tasks behind it. A task's writer takes
//! every queued request and sends them in one write; its reader scans replies and completes
//! the waiting requests in FIFO order. A broken connection fails what it had in flight and is
//! re-established with exponential backoff and jitter.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use slotgate_cluster::NodeAddr;
use slotgate_resp::{encode, ReplyKind, ReplyScanner};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::{ReadFrom, UpstreamConfig, UpstreamMode};
use crate::protocol::Protocol;
use crate::runtime::wakers::keep_waker;
use crate::telemetry::local::{NodeMetrics, WorkerMetrics};
use crate::telemetry::logs;
use crate::telemetry::metrics::RefreshTrigger;
use crate::telemetry::metrics::{Metrics, UpstreamError};
use crate::upstream::node_client::{self, NodeStream};
use crate::upstream::redirect::ASKING;
use crate::upstream::reply_channel::{Failure, ReplyTx, UpReply};
use crate::upstream::topology::Topology;

/// A write buffer grown past this (a large request) is released once written.
const BUFFER_SHRINK: usize = 1024 * 1024;
/// First reconnect delay; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Shortest gap between two connection attempts of one connection task: a node that accepts
/// and then drops every connection gets at most ten attempts a second from it, while a
/// healthy connection that was killed once is replaced at once.
const MIN_ATTEMPT_GAP: Duration = Duration::from_millis(100);

/// The worker's handle to one node.
pub(crate) struct Upstream {
    /// The node.
    pub addr: NodeAddr,
    conns: Vec<Rc<RefCell<Outbox>>>,
    next: Cell<usize>,
}

/// One connection's queue, shared by the worker's sessions (which append requests) and the
/// connection task (which writes them and matches replies). Requests are copied straight
/// into the next write's buffer: no per-request message, reference count or move between
/// them.
struct Outbox {
    /// The bytes of the requests not yet written, for the next write.
    out: BytesMut,
    /// Who waits for a reply, oldest first: the requests written (and unanswered), then the
    /// last [`Outbox::unsent`] ones, whose bytes are in [`Outbox::out`].
    waiters: VecDeque<Waiter>,
    unsent: usize,
    /// The connection task, waiting for requests (or for the worker to let go).
    task: Option<Waker>,
    /// Requests are taken: the connection is up or being set up. While it backs off after a
    /// failure they fail at once instead (they are retried elsewhere or later).
    accepting: bool,
    /// The worker dropped its [`Upstream`]: the task ends once what was queued is written.
    closed: bool,
    /// The database the connection is in once everything queued has run: a request for
    /// another one goes after a `SELECT` (standalone and sentinel modes). A new connection
    /// starts in 0.
    db: u16,
}

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            out: BytesMut::new(),
            waiters: VecDeque::new(),
            unsent: 0,
            task: None,
            accepting: true,
            closed: false,
            db: 0,
        }
    }

    /// Take every unsent request out of the queue, oldest first (their bytes are dropped,
    /// and a buffer grown past 1 MiB by a large request is released).
    fn take_unsent(&mut self) -> Vec<Waiter> {
        let first = self.waiters.len() - self.unsent;
        self.unsent = 0;
        if self.out.capacity() > BUFFER_SHRINK {
            self.out = BytesMut::new();
        } else {
            self.out.clear();
        }
        self.waiters.drain(first..).collect()
    }

    /// Drop the unsent requests whose op gave up (client timeout or disconnect) before they
    /// were written, with their bytes. Rare: usually nothing is dropped and nothing copied.
    fn drop_abandoned(&mut self) {
        let first = self.waiters.len() - self.unsent;
        if !self.waiters.range(first..).any(|w| w.reply.is_closed()) {
            return;
        }
        let old = std::mem::take(&mut self.out);
        let mut out = BytesMut::with_capacity(old.len());
        let mut at = 0;
        for w in self.take_unsent() {
            let bytes = &old[at..at + w.len];
            at += w.len;
            // A request that switches the database stays: those after it rely on it.
            if !w.reply.is_closed() || w.selects {
                out.extend_from_slice(bytes);
                self.waiters.push_back(w);
            }
        }
        self.unsent = self.waiters.len() - first;
        self.out = out;
    }
}

impl Upstream {
    /// Start `connections_per_node` connection tasks for `addr` on the current `LocalSet`,
    /// speaking `proto`. They connect at once and stay connected (reconnecting with backoff)
    /// until the worker drops this handle.
    pub fn spawn(
        addr: NodeAddr,
        cfg: Arc<UpstreamConfig>,
        topology: Arc<Topology>,
        metrics: &WorkerMetrics,
        proto: Protocol,
    ) -> Upstream {
        let conns = (0..cfg.connections_per_node)
            .map(|_| {
                let outbox = Rc::new(RefCell::new(Outbox::new()));
                tokio::task::spawn_local(run_connection(
                    addr.clone(),
                    Rc::clone(&outbox),
                    Arc::clone(&cfg),
                    Arc::clone(&topology),
                    Link {
                        shared: Arc::clone(metrics.shared_arc()),
                        node: metrics.node(&addr),
                        pending: metrics.shared().pending_slot(&addr),
                    },
                    proto,
                ));
                outbox
            })
            .collect();
        Upstream {
            addr,
            conns,
            next: Cell::new(0),
        }
    }

    /// Queue `data` (a command's bytes exactly as they go on the wire) on one of the node's
    /// connections (round robin), to run in database `db`; its reply goes to `reply`.
    /// `prelude` is a command sent first whose reply is ignored (`SCRIPT LOAD` before an
    /// EVALSHA that met NOSCRIPT); `asking` sends `ASKING` first (the command follows an
    /// `-ASK` redirect); a `SELECT` goes first when the connection is in another database.
    pub fn send(&self, data: &[u8], asking: bool, prelude: Option<&[u8]>, db: u16, reply: ReplyTx) {
        let i = self.next.get();
        // A compare, not `%`: an integer division on every request costs tens of cycles.
        self.next
            .set(if i + 1 < self.conns.len() { i + 1 } else { 0 });
        let task = {
            let mut o = self.conns[i].borrow_mut();
            if !o.accepting {
                drop(o);
                reply.send(UpReply::Failed(Failure::Unreachable));
                return;
            }
            let start = o.out.len();
            let mut skip = 0;
            let selects = o.db != db;
            if selects {
                let number = db.to_string();
                encode::command(&mut o.out, &[b"SELECT", number.as_bytes()]);
                o.db = db;
                skip += 1;
            }
            if let Some(prelude) = prelude {
                o.out.extend_from_slice(prelude);
                skip += 1;
            }
            if asking {
                o.out.extend_from_slice(ASKING);
                skip += 1;
            }
            o.out.extend_from_slice(data);
            let len = o.out.len() - start;
            o.waiters.push_back(Waiter {
                reply,
                sent: 0,
                len,
                skip,
                selects,
            });
            o.unsent += 1;
            o.task.take()
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for conn in &self.conns {
            let task = {
                let mut o = conn.borrow_mut();
                o.closed = true;
                o.task.take()
            };
            if let Some(task) = task {
                task.wake();
            }
        }
    }
}

/// A request waiting for its reply on a connection.
struct Waiter {
    reply: ReplyTx,
    /// When it was written ([`crate::telemetry::clock::mono_ns`]); 0 while unsent.
    sent: u64,
    /// Its bytes in [`Outbox::out`] while unsent, with any `ASKING` or prelude before it.
    len: usize,
    /// Replies to ignore before its own: the `+OK` of an `ASKING`, the reply of a prelude
    /// or of a `SELECT`.
    skip: u8,
    /// Its bytes begin with a `SELECT`.
    selects: bool,
}

/// A connection task's instruments.
struct Link {
    shared: Arc<Metrics>,
    node: Option<Rc<NodeMetrics>>,
    /// When this connection's oldest unanswered request was written (readiness).
    pending: Arc<std::sync::atomic::AtomicU64>,
}

/// One connection's life: connect, serve until it breaks, back off, repeat. Ends (`None`)
/// when the worker drops the [`Upstream`].
async fn run_connection(
    addr: NodeAddr,
    outbox: Rc<RefCell<Outbox>>,
    cfg: Arc<UpstreamConfig>,
    topology: Arc<Topology>,
    link: Link,
    proto: Protocol,
) -> Option<()> {
    let mut backoff = BACKOFF_MIN;
    loop {
        let attempt = Instant::now();
        let connected = async {
            let mut stream =
                node_client::connect(addr.as_str(), &cfg, topology.upstream_tls()).await?;
            if proto != Protocol::Resp2 {
                node_client::switch_protocol(&mut stream, proto, cfg.op_timeout).await?;
            }
            // A cluster replica serves reads only on a connection that said READONLY (said
            // to every node: a primary ignores it).
            if cfg.read_from != ReadFrom::Primary && cfg.mode == UpstreamMode::Cluster {
                node_client::expect_ok(&mut stream, &[b"READONLY"], cfg.op_timeout).await?;
            }
            Ok::<_, crate::error::ProxyError>(stream)
        };
        match connected.await {
            Ok(stream) => {
                backoff = BACKOFF_MIN;
                link.shared.upstream_connection(&addr, 1);
                let metrics = link.node.as_deref();
                let pending = &*link.pending;
                let ended = match stream {
                    NodeStream::Plain(mut tcp) => {
                        let (rd, wr) = tcp.split();
                        serve(rd, wr, &outbox, metrics, pending).await
                    }
                    NodeStream::Tls(tls) => {
                        let (rd, wr) = tokio::io::split(tls);
                        serve(rd, wr, &outbox, metrics, pending).await
                    }
                };
                pending.store(0, std::sync::atomic::Ordering::Relaxed);
                link.shared.upstream_connection(&addr, -1);
                let (reason, kind) = match ended {
                    Ended::Closed => return None,
                    Ended::Broken(reason, kind) => (reason, kind),
                };
                link.shared.upstream_error(&addr, kind);
                logs::limited(
                    logs::Class::UpstreamLost,
                    |suppressed| tracing::warn!(node = %addr, %reason, suppressed, "upstream connection lost"),
                );
                topology.request_refresh(RefreshTrigger::Error);
                // Reconnect at once, but never sooner than MIN_ATTEMPT_GAP after the last try.
                fail_until(&outbox, attempt + MIN_ATTEMPT_GAP).await?;
                continue;
            }
            Err(e) => {
                link.shared.upstream_error(&addr, UpstreamError::Connect);
                logs::limited(
                    logs::Class::UpstreamConnect,
                    |suppressed| tracing::warn!(node = %addr, error = %e, suppressed, "cannot connect upstream"),
                );
                topology.request_refresh(RefreshTrigger::Error);
            }
        }
        let until = Instant::now() + jitter(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
        fail_until(&outbox, until).await?;
    }
}

/// Until `until`, fail requests at once (they are retried elsewhere or later) rather than
/// queue them: those queued now, and (`Upstream::send`) those that come meanwhile. `None`
/// when the worker dropped the [`Upstream`].
async fn fail_until(outbox: &RefCell<Outbox>, until: Instant) -> Option<()> {
    let queued = {
        let mut o = outbox.borrow_mut();
        o.accepting = false;
        o.take_unsent()
    };
    for w in queued {
        w.reply.send(UpReply::Failed(Failure::Unreachable));
    }
    let closed = poll_fn(|cx| {
        let mut o = outbox.borrow_mut();
        if o.closed {
            return Poll::Ready(());
        }
        keep_waker(&mut o.task, cx.waker());
        Poll::Pending
    });
    tokio::select! {
        _ = tokio::time::sleep_until(until) => {}
        () = closed => return None,
    }
    let mut o = outbox.borrow_mut();
    o.accepting = true;
    o.db = 0; // the next connection starts in database 0
    Some(())
}

/// `d` scaled by a pseudo-random factor in [0.5, 1.0).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos() as u64)
        .unwrap_or(0);
    let seed = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
    d / 2 + d * (seed as u32) / 2048
}

enum Ended {
    /// The worker dropped the [`Upstream`] and everything queued was written: stop for good.
    Closed,
    /// The connection failed; reconnect.
    Broken(String, UpstreamError),
}

/// Pump requests out and replies back on one established connection (its two halves),
/// until the worker lets go or the connection fails; then fail what was written.
async fn serve<R, W>(
    rd: R,
    wr: W,
    outbox: &RefCell<Outbox>,
    metrics: Option<&NodeMetrics>,
    pending: &std::sync::atomic::AtomicU64,
) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ended = tokio::select! {
        e = write_requests(wr, outbox, metrics, pending) => e,
        e = read_replies(rd, outbox, metrics, pending) => e,
    };
    fail_written(outbox, &ended);
    ended
}

/// The writer: wait for queued requests, then send everything queued in one write.
async fn write_requests<W: AsyncWrite + Unpin>(
    mut wr: W,
    outbox: &RefCell<Outbox>,
    metrics: Option<&NodeMetrics>,
    pending: &std::sync::atomic::AtomicU64,
) -> Ended {
    // Swapped with the outbox's buffer for each write, so sessions append to one while the
    // other is written.
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        if !requests_queued(outbox).await {
            return Ended::Closed;
        }
        // Let the event loop look for more input once (a non-blocking poll) before writing:
        // the sessions it wakes add their requests to this write, so one write (and one
        // wake-up of the node) carries more requests.
        tokio::task::yield_now().await;
        if !take_batch(outbox, &mut out, metrics, pending) {
            continue;
        }
        if let Err(e) = async {
            wr.write_all(&out).await?;
            wr.flush().await
        }
        .await
        {
            return Ended::Broken(format!("write: {e}"), UpstreamError::Io);
        }
        if out.capacity() > BUFFER_SHRINK {
            out = BytesMut::with_capacity(16 * 1024);
        } else {
            out.clear();
        }
    }
}

/// Resolves with true once requests are queued, false once the worker let go of the
/// connection and nothing is left to send.
async fn requests_queued(outbox: &RefCell<Outbox>) -> bool {
    poll_fn(|cx| {
        let mut o = outbox.borrow_mut();
        if o.unsent > 0 {
            Poll::Ready(true)
        } else if o.closed {
            Poll::Ready(false)
        } else {
            keep_waker(&mut o.task, cx.waker());
            Poll::Pending
        }
    })
    .await
}

/// Swap the outbox's unsent requests into `out` and stamp them as sent now (for the
/// upstream latency and readiness); false when every queued request was abandoned.
fn take_batch(
    outbox: &RefCell<Outbox>,
    out: &mut BytesMut,
    metrics: Option<&NodeMetrics>,
    pending: &std::sync::atomic::AtomicU64,
) -> bool {
    let mut o = outbox.borrow_mut();
    o.drop_abandoned();
    if o.unsent == 0 {
        return false;
    }
    std::mem::swap(&mut o.out, out);
    let sent = crate::telemetry::clock::mono_ns(Instant::now().into_std());
    let first = o.waiters.len() - o.unsent;
    let mut commands = 0;
    for w in o.waiters.range_mut(first..) {
        w.sent = sent;
        commands += 1 + u64::from(w.skip);
    }
    o.unsent = 0;
    if let Some(m) = metrics {
        m.requests(commands);
    }
    if first == 0 {
        // The oldest unanswered request is now this batch (readiness).
        pending.store(
            crate::telemetry::clock::ns_to_ms(sent),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    true
}

/// The reader: scan reply frames and complete the waiters in FIFO order.
async fn read_replies<R: AsyncRead + Unpin>(
    mut rd: R,
    outbox: &RefCell<Outbox>,
    metrics: Option<&NodeMetrics>,
    pending: &std::sync::atomic::AtomicU64,
) -> Ended {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut scanner = ReplyScanner::new();
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => return Ended::Broken("closed by the node".into(), UpstreamError::Io),
            Ok(_) => {}
            Err(e) => return Ended::Broken(format!("read: {e}"), UpstreamError::Io),
        }
        if let Err(ended) = complete_waiters(&mut scanner, &mut buf, outbox, metrics) {
            return ended;
        }
        // Once per read: when the oldest request still unanswered was written.
        let o = outbox.borrow();
        let oldest = match o.waiters.front() {
            Some(w) if o.waiters.len() > o.unsent => crate::telemetry::clock::ns_to_ms(w.sent),
            _ => 0,
        };
        pending.store(oldest, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Hand every whole reply frame in `buf` to its waiter, in order (the reply to an `ASKING`
/// or a prelude is skipped for the request it came before).
///
/// # Errors
/// The node sent bytes that are not RESP, or a reply nothing asked for.
fn complete_waiters(
    scanner: &mut ReplyScanner,
    buf: &mut BytesMut,
    outbox: &RefCell<Outbox>,
    metrics: Option<&NodeMetrics>,
) -> Result<(), Ended> {
    let now = crate::telemetry::clock::mono_ns(Instant::now().into_std());
    let mut o = outbox.borrow_mut();
    loop {
        let reply = match scanner.scan(buf) {
            Ok(Some(reply)) => reply,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(Ended::Broken(
                    format!("invalid reply: {e}"),
                    UpstreamError::Protocol,
                ));
            }
        };
        if reply.kind == ReplyKind::Push {
            continue; // out-of-band (RESP3 push); nothing waits for it
        }
        if o.waiters.len() == o.unsent {
            return Err(Ended::Broken(
                "reply without a request".into(),
                UpstreamError::Protocol,
            ));
        }
        if let Some(front) = o.waiters.front_mut().filter(|w| w.skip > 0) {
            front.skip -= 1; // the reply to its ASKING or prelude
            continue;
        }
        if let Some(w) = o.waiters.pop_front() {
            if let Some(m) = metrics {
                m.observe_ns(now.saturating_sub(w.sent));
            }
            w.reply.send(UpReply::Frame(reply));
        }
    }
}

/// What was written gets no reply now; what was not may go over the next connection
/// (`fail_until` fails it as unreachable, so its op retries).
fn fail_written(outbox: &RefCell<Outbox>, ended: &Ended) {
    let failure = match ended {
        Ended::Broken(_, UpstreamError::Protocol) => Failure::Protocol,
        _ => Failure::Lost,
    };
    let written: Vec<Waiter> = {
        let mut o = outbox.borrow_mut();
        let n = o.waiters.len() - o.unsent;
        o.waiters.drain(..n).collect()
    };
    for w in written {
        w.reply.send(UpReply::Failed(failure));
    }
}

/// Per-worker map of node → [`Upstream`], all speaking one protocol.
pub(crate) struct UpstreamSet {
    cfg: Arc<UpstreamConfig>,
    topology: Arc<Topology>,
    metrics: Rc<WorkerMetrics>,
    proto: Protocol,
    nodes: RefCell<std::collections::HashMap<NodeAddr, Rc<Upstream>>>,
}

impl UpstreamSet {
    /// An empty set.
    pub fn new(
        cfg: Arc<UpstreamConfig>,
        topology: Arc<Topology>,
        metrics: Rc<WorkerMetrics>,
        proto: Protocol,
    ) -> UpstreamSet {
        UpstreamSet {
            cfg,
            topology,
            metrics,
            proto,
            nodes: RefCell::new(Default::default()),
        }
    }

    /// The worker's upstream for `addr`, started on first use.
    pub fn get(&self, addr: &NodeAddr) -> Rc<Upstream> {
        if let Some(u) = self.nodes.borrow().get(addr) {
            return Rc::clone(u);
        }
        let up = Rc::new(Upstream::spawn(
            addr.clone(),
            Arc::clone(&self.cfg),
            Arc::clone(&self.topology),
            &self.metrics,
            self.proto,
        ));
        self.nodes.borrow_mut().insert(addr.clone(), Rc::clone(&up));
        up
    }

    /// Drop upstreams for nodes the slot map no longer names (their tasks then end).
    pub fn retain_known(&self, known: &[NodeAddr]) {
        self.nodes
            .borrow_mut()
            .retain(|addr, _| known.contains(addr));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::upstream::reply_channel::{reply_channel, ReplyRx};

    /// A handle with one connection, and that connection's outbox.
    fn handle() -> (Rc<RefCell<Outbox>>, Upstream) {
        let outbox = Rc::new(RefCell::new(Outbox::new()));
        let up = Upstream {
            addr: NodeAddr::new("127.0.0.1:1"),
            conns: vec![Rc::clone(&outbox)],
            next: Cell::new(0),
        };
        (outbox, up)
    }

    fn request(up: &Upstream, data: &[u8], asking: bool, prelude: Option<&[u8]>) -> ReplyRx {
        let (tx, rx) = reply_channel(&crate::testing::budget());
        up.send(data, asking, prelude, 0, tx);
        rx
    }

    fn frame(rx: &mut ReplyRx) -> Vec<u8> {
        match rx.try_recv() {
            Ok(UpReply::Frame(r)) => r.raw.to_vec(),
            other => panic!("expected a reply frame, got {other:?}"),
        }
    }

    fn failure(rx: &mut ReplyRx) -> Failure {
        match rx.try_recv() {
            Ok(UpReply::Failed(f)) => f,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    /// Reads from the node's side until `want` bytes came.
    async fn node_reads(node: &mut tokio::io::DuplexStream, want: usize) -> Vec<u8> {
        let mut got = vec![0; want];
        node.read_exact(&mut got).await.unwrap();
        got
    }

    #[test]
    fn abandoned_requests_are_cut_out_with_their_asking() {
        let (outbox, up) = handle();
        let a = request(&up, b"A\r\n", false, None);
        let b = request(&up, b"B\r\n", true, None);
        let c = request(&up, b"C\r\n", true, Some(b"L\r\n"));
        drop(b);
        outbox.borrow_mut().drop_abandoned();
        let o = outbox.borrow();
        assert_eq!(&o.out[..], &b"A\r\nL\r\n*1\r\n$6\r\nASKING\r\nC\r\n"[..]);
        assert_eq!((o.unsent, o.waiters.len()), (2, 2));
        assert_eq!(o.waiters[1].skip, 2);
        drop(o);
        drop((a, c));
    }

    #[test]
    fn a_request_for_another_database_goes_after_a_select_that_stays() {
        let (outbox, up) = handle();
        let send = |data: &[u8], db| {
            let (tx, rx) = reply_channel(&crate::testing::budget());
            up.send(data, false, None, db, tx);
            rx
        };
        let a = send(b"A\r\n", 0);
        let b = send(b"B\r\n", 3);
        let c = send(b"C\r\n", 3);
        let d = send(b"D\r\n", 0);
        // B switches to 3 (its SELECT's reply is skipped); C needs nothing; D switches back.
        let o = outbox.borrow();
        assert_eq!(
            &o.out[..],
            &b"A\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\nB\r\nC\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\nD\r\n"[..]
        );
        let skips: Vec<u8> = o.waiters.iter().map(|w| w.skip).collect();
        assert_eq!(skips, [0, 1, 0, 1]);
        drop(o);
        // B's client left before it was written: its SELECT stays, C relies on it.
        drop(b);
        outbox.borrow_mut().drop_abandoned();
        assert_eq!(outbox.borrow().waiters.len(), 4);
        drop((a, c, d));
    }

    #[test]
    fn a_large_request_failed_unsent_releases_its_buffer() {
        let (outbox, up) = handle();
        let _big = request(&up, &vec![b'x'; 2 * BUFFER_SHRINK], false, None);
        assert_eq!(outbox.borrow_mut().take_unsent().len(), 1);
        let o = outbox.borrow();
        assert!(o.out.capacity() <= BUFFER_SHRINK);
        assert_eq!((o.unsent, o.waiters.len()), (0, 0));
    }

    #[tokio::test]
    async fn replies_complete_in_order_and_skip_asking_and_preludes() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (outbox, up) = handle();
                let (proxy_end, mut node) = tokio::io::duplex(4096);
                let pending = Rc::new(AtomicU64::new(0));
                let task = {
                    let (outbox, pending) = (Rc::clone(&outbox), Rc::clone(&pending));
                    tokio::task::spawn_local(async move {
                        let (rd, wr) = tokio::io::split(proxy_end);
                        matches!(serve(rd, wr, &outbox, None, &pending).await, Ended::Closed)
                    })
                };
                let mut a = request(&up, b"*1\r\n$1\r\nA\r\n", false, None);
                let mut b = request(&up, b"*1\r\n$1\r\nB\r\n", true, Some(b"*1\r\n$1\r\nL\r\n"));
                let written =
                    b"*1\r\n$1\r\nA\r\n*1\r\n$1\r\nL\r\n*1\r\n$6\r\nASKING\r\n*1\r\n$1\r\nB\r\n";
                assert_eq!(node_reads(&mut node, written.len()).await, written.to_vec());
                assert_ne!(pending.load(std::sync::atomic::Ordering::Relaxed), 0);
                // A's reply, the prelude's, ASKING's +OK, then B's: split mid-frame.
                node.write_all(b"+a\r\n$3\r\nsha\r\n+OK\r\n:")
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert_eq!(frame(&mut a), b"+a\r\n");
                assert!(matches!(
                    b.try_recv(),
                    Err(crate::upstream::reply_channel::Empty::Pending)
                ));
                node.write_all(b"7\r\n").await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                assert_eq!(frame(&mut b), b":7\r\n");
                assert_eq!(pending.load(std::sync::atomic::Ordering::Relaxed), 0);
                drop(up);
                assert!(task.await.unwrap(), "the task ends when the worker lets go");
            })
            .await;
    }

    #[tokio::test]
    async fn a_broken_connection_fails_written_requests_as_lost_and_others_as_unreachable() {
        let (outbox, up) = handle();
        let (proxy_end, mut node) = tokio::io::duplex(4096);
        let pending = AtomicU64::new(0);
        let mut written = request(&up, b"W\r\n", false, None);
        let (rd, wr) = tokio::io::split(proxy_end);
        let serving = serve(rd, wr, &outbox, None, &pending);
        let node_side = async {
            assert_eq!(node_reads(&mut node, 3).await, b"W\r\n");
            drop(node);
        };
        let (ended, ()) = tokio::join!(serving, node_side);
        assert!(matches!(ended, Ended::Broken(..)));
        assert_eq!(failure(&mut written), Failure::Lost);
        // Queued after the connection broke: failed at once by fail_until, and the
        // requests that come before it ends are refused.
        let mut queued = request(&up, b"Q\r\n", false, None);
        let until = Instant::now() + Duration::from_millis(30);
        let retry = fail_until(&outbox, until);
        tokio::pin!(retry);
        assert!(futures_poll_once(retry.as_mut()).await.is_none());
        assert_eq!(failure(&mut queued), Failure::Unreachable);
        let mut refused = request(&up, b"R\r\n", false, None);
        assert_eq!(failure(&mut refused), Failure::Unreachable);
        assert_eq!(retry.await, Some(()));
        let _accepted = request(&up, b"S\r\n", false, None);
        assert_eq!(outbox.borrow().unsent, 1);
    }

    /// Polls `f` once: `Some` when it finished.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
        poll_fn(|cx| {
            Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            })
        })
        .await
    }
}
