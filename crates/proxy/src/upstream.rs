//! Multiplexed, pipelined connections to one node. Each worker owns one [`Upstream`] per node
//! it talks to, with `connections_per_node` connection tasks behind it. A task's writer takes
//! every queued request and sends them in one write; its reader scans replies and completes
//! the waiting requests in FIFO order. A broken connection fails what it had in flight and is
//! re-established with exponential backoff and jitter.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::NodeAddr;
use slotgate_resp::{Reply, ReplyKind, ReplyScanner};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::UpstreamConfig;
use crate::local_queue::{local_queue, QueueRx, QueueTx};
use crate::logs;
use crate::metrics::RefreshTrigger;
use crate::metrics::{Metrics, NodeMetrics, UpstreamError, WorkerMetrics};
use crate::node_client::{self, NodeStream};
use crate::protocol::Protocol;
use crate::reply_slot::ReplyTx;
use crate::topology::Topology;

/// `ASKING` as sent before a command redirected by `-ASK`.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
/// Most requests taken from the queue for one write.
const BATCH: usize = 256;
/// First reconnect delay; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Shortest gap between two connection attempts of one connection task: a node that accepts
/// and then drops every connection gets at most ten attempts a second from it, while a
/// healthy connection that was killed once is replaced at once.
const MIN_ATTEMPT_GAP: Duration = Duration::from_millis(100);

/// One request for a node.
pub(crate) struct UpRequest {
    /// The command's bytes, exactly as they go on the wire.
    pub data: Bytes,
    /// Send `ASKING` first (the command follows an `-ASK` redirect).
    pub asking: bool,
    /// Send this command first and ignore its reply (`SCRIPT LOAD` before an EVALSHA that
    /// met NOSCRIPT).
    pub prelude: Option<Bytes>,
    /// Where the reply goes.
    pub reply: ReplyTx,
}

/// What came back for an [`UpRequest`].
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

/// The worker's handle to one node.
pub(crate) struct Upstream {
    /// The node.
    pub addr: NodeAddr,
    conns: Vec<QueueTx<UpRequest>>,
    next: Cell<usize>,
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
                let (tx, rx) = local_queue();
                tokio::task::spawn_local(run_connection(
                    addr.clone(),
                    rx,
                    Arc::clone(&cfg),
                    Arc::clone(&topology),
                    Link {
                        shared: Arc::clone(metrics.shared_arc()),
                        node: metrics.node(&addr),
                        pending: metrics.shared().pending_slot(&addr),
                    },
                    proto,
                ));
                tx
            })
            .collect();
        Upstream {
            addr,
            conns,
            next: Cell::new(0),
        }
    }

    /// Queue `req` on one of the node's connections (round robin).
    pub fn send(&self, req: UpRequest) {
        let i = self.next.get();
        // A compare, not `%`: an integer division on every request costs tens of cycles.
        self.next
            .set(if i + 1 < self.conns.len() { i + 1 } else { 0 });
        if let Err(req) = self.conns[i].send(req) {
            req.reply.send(UpReply::Failed(Failure::Unreachable));
        }
    }
}

/// What waits for a reply on a connection, in the order requests were written.
enum Waiter {
    /// A client request written at this time ([`crate::metrics::mono_ns`]).
    Client(ReplyTx, u64),
    /// The reply to a command sent only for its effect: the `+OK` of an `ASKING` before a
    /// redirected command, or of a `SCRIPT LOAD` before a repaired EVALSHA.
    Asking,
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
    mut rx: QueueRx<UpRequest>,
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
                        serve(rd, wr, &mut rx, metrics, pending).await
                    }
                    NodeStream::Tls(tls) => {
                        let (rd, wr) = tokio::io::split(tls);
                        serve(rd, wr, &mut rx, metrics, pending).await
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
                fail_until(&mut rx, attempt + MIN_ATTEMPT_GAP).await?;
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
        fail_until(&mut rx, until).await?;
    }
}

/// Until `until`, fail requests at once (they are retried elsewhere or later) rather than
/// queue them. `None` when the worker dropped the queue.
async fn fail_until(rx: &mut QueueRx<UpRequest>, until: Instant) -> Option<()> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return Some(()),
            req = rx.recv() => match req {
                Some(req) => req.reply.send(UpReply::Failed(Failure::Unreachable)),
                None => return None,
            },
        }
    }
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
    /// The worker dropped the queue: stop for good.
    Closed,
    /// The connection failed; reconnect.
    Broken(String, UpstreamError),
}

/// Pump requests out and replies back on one established connection (its two halves).
async fn serve<R, W>(
    mut rd: R,
    mut wr: W,
    rx: &mut QueueRx<UpRequest>,
    metrics: Option<&NodeMetrics>,
    pending: &std::sync::atomic::AtomicU64,
) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let waiters: RefCell<VecDeque<Waiter>> = RefCell::new(VecDeque::new());

    let writer = async {
        let mut batch: Vec<UpRequest> = Vec::with_capacity(BATCH);
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            if batch.is_empty() && rx.recv_many(&mut batch, BATCH).await == 0 {
                return Ended::Closed;
            }
            // Let the event loop look for more input once (a non-blocking poll) before
            // writing: the sessions it wakes add their requests to this write, so one
            // write (and one wake-up of the node) carries more requests.
            tokio::task::yield_now().await;
            let room = BATCH.saturating_sub(batch.len());
            rx.try_recv_many(&mut batch, room);
            {
                let sent = crate::metrics::mono_ns(Instant::now().into_std());
                let mut w = waiters.borrow_mut();
                let queued = w.len();
                for req in batch.drain(..) {
                    if req.reply.is_closed() {
                        continue; // the client gave up (timeout, disconnect) before we sent it
                    }
                    if let Some(prelude) = &req.prelude {
                        out.extend_from_slice(prelude);
                        w.push_back(Waiter::Asking);
                    }
                    if req.asking {
                        out.extend_from_slice(ASKING);
                        w.push_back(Waiter::Asking);
                    }
                    out.extend_from_slice(&req.data);
                    w.push_back(Waiter::Client(req.reply, sent));
                }
                if let Some(m) = metrics {
                    m.requests((w.len() - queued) as u64);
                }
                if queued == 0 && !w.is_empty() {
                    // The oldest unanswered request is now this batch (readiness).
                    pending.store(
                        crate::metrics::ns_to_ms(sent),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
            }
            if out.is_empty() {
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
            if out.capacity() > 1024 * 1024 {
                out = BytesMut::with_capacity(16 * 1024);
            } else {
                out.clear();
            }
        }
    };

    let reader = async {
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
            let now = crate::metrics::mono_ns(Instant::now().into_std());
            loop {
                let reply = match scanner.scan(&mut buf) {
                    Ok(Some(reply)) => reply,
                    Ok(None) => break,
                    Err(e) => {
                        fail_all(&waiters, Failure::Protocol);
                        return Ended::Broken(
                            format!("invalid reply: {e}"),
                            UpstreamError::Protocol,
                        );
                    }
                };
                if reply.kind == ReplyKind::Push {
                    continue; // out-of-band (RESP3 push); nothing waits for it
                }
                match waiters.borrow_mut().pop_front() {
                    Some(Waiter::Client(tx, sent)) => {
                        if let Some(m) = metrics {
                            m.observe_ns(now.saturating_sub(sent));
                        }
                        tx.send(UpReply::Frame(reply));
                    }
                    Some(Waiter::Asking) => {}
                    None => {
                        return Ended::Broken(
                            "reply without a request".into(),
                            UpstreamError::Protocol,
                        )
                    }
                }
            }
            // Once per read: when the oldest request still unanswered was written.
            let oldest = waiters.borrow().iter().find_map(|w| match w {
                Waiter::Client(_, sent) => Some(crate::metrics::ns_to_ms(*sent)),
                Waiter::Asking => None,
            });
            pending.store(oldest.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        }
    };

    let ended = tokio::select! {
        e = writer => e,
        e = reader => e,
    };
    fail_all(&waiters, Failure::Lost);
    ended
}

fn fail_all(waiters: &RefCell<VecDeque<Waiter>>, failure: Failure) {
    for w in waiters.borrow_mut().drain(..) {
        if let Waiter::Client(tx, _) = w {
            tx.send(UpReply::Failed(failure));
        }
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
