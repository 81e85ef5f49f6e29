//! Dedicated upstream connections: one client's command (or conversation) owns a node
//! connection for as long as it needs, so a command that blocks in Redis (BLPOP, XREAD
//! BLOCK …) never holds up the multiplexed connections other clients share. Each worker
//! keeps a pool per node: a few idle connections for reuse and a cap on how many exist at
//! once (`upstream.max_dedicated_per_node`).
//!
//! The work runs in a task of its own ([`Task`]); the client's reply-queue entry waits for
//! its result. When the client goes away the entry is dropped, the task sees its result is
//! no longer wanted, and drops the connection — Redis then unblocks and forgets that client.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::{NodeAddr, Redirect, RedirectKind};
use slotgate_resp::{ErrorClass, Reply, ReplyKind, ReplyScanner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::UpstreamConfig;
use crate::metrics::Metrics;
use crate::node_client::{self, NodeStream};
use crate::protocol::Protocol;
use crate::replies;
use crate::topology::Topology;

/// `ASKING` as sent before a command redirected by `-ASK`.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
/// Idle connections kept per node for reuse.
const MAX_IDLE: usize = 16;
/// An idle connection older than this is closed rather than reused.
const IDLE_TTL: Duration = Duration::from_secs(60);

/// One connection owned by one client command at a time.
pub(crate) struct DedicatedConn {
    node: NodeAddr,
    stream: NodeStream,
    buf: BytesMut,
    scanner: ReplyScanner,
    metrics: Arc<Metrics>,
    idle_since: Instant,
    /// The protocol the connection speaks (`HELLO` switches it).
    proto: Protocol,
}

impl DedicatedConn {
    /// Make the connection speak `proto` (a `HELLO` round trip when it does not yet).
    ///
    /// # Errors
    /// The connection failed, or the node refused the protocol.
    async fn use_protocol(&mut self, proto: Protocol) -> Result<(), String> {
        if self.proto == proto {
            return Ok(());
        }
        self.send(proto.hello()).await?;
        let reply = self.read_reply().await?;
        if reply.is_error() {
            return Err(format!(
                "HELLO {} refused: {}",
                proto.version(),
                String::from_utf8_lossy(&reply.raw).trim_end()
            ));
        }
        self.proto = proto;
        Ok(())
    }

    /// Send `wire` (after `ASKING` when `asking`) and read its one reply.
    ///
    /// # Errors
    /// The connection failed or the node sent something that is not RESP; the command may
    /// have run.
    pub async fn request(&mut self, wire: &[u8], asking: bool) -> Result<Reply, String> {
        if asking {
            self.send(ASKING).await?;
        }
        self.send(wire).await?;
        if asking {
            let ok = self.read_reply().await?;
            if matches!(ok.kind, ReplyKind::Error(_)) {
                return Ok(ok);
            }
        }
        self.read_reply().await
    }

    /// Write `wire` whole.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn send(&mut self, wire: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(wire)
            .await
            .map_err(|e| format!("write: {e}"))?;
        self.stream.flush().await.map_err(|e| format!("write: {e}"))
    }

    /// Read the next reply (RESP3 pushes skipped).
    ///
    /// # Errors
    /// The connection failed or the node sent something that is not RESP.
    pub async fn read_reply(&mut self) -> Result<Reply, String> {
        loop {
            match self.scanner.scan(&mut self.buf) {
                Ok(Some(reply)) if reply.kind == ReplyKind::Push => continue,
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => return Err(format!("invalid reply: {e}")),
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err("closed by the node".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }
}

impl Drop for DedicatedConn {
    fn drop(&mut self) {
        self.metrics.dedicated_connection(&self.node, -1);
    }
}

/// A worker's dedicated connections, per node.
pub(crate) struct DedicatedPool {
    cfg: Arc<UpstreamConfig>,
    topology: Arc<Topology>,
    metrics: Arc<Metrics>,
    idle: RefCell<HashMap<NodeAddr, Vec<DedicatedConn>>>,
    open: RefCell<HashMap<NodeAddr, usize>>,
}

/// A connection taken from the pool; gives its slot back when dropped.
pub(crate) struct Lease {
    pool: Rc<DedicatedPool>,
    conn: Option<DedicatedConn>,
    node: NodeAddr,
}

impl Lease {
    pub fn conn(&mut self) -> &mut DedicatedConn {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// Return a connection in a clean state (its last reply fully read) for reuse.
    pub fn give_back(mut self) {
        if let Some(mut conn) = self.conn.take() {
            if conn.buf.is_empty() {
                conn.idle_since = Instant::now();
                let mut idle = self.pool.idle.borrow_mut();
                let list = idle.entry(self.node.clone()).or_default();
                if list.len() < MAX_IDLE {
                    list.push(conn);
                    return; // still open: the slot stays counted
                }
            }
            drop(conn);
            self.pool.closed(&self.node);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.closed(&self.node);
        }
    }
}

impl DedicatedPool {
    pub fn new(
        cfg: Arc<UpstreamConfig>,
        topology: Arc<Topology>,
        metrics: Arc<Metrics>,
    ) -> DedicatedPool {
        DedicatedPool {
            cfg,
            topology,
            metrics,
            idle: RefCell::new(HashMap::new()),
            open: RefCell::new(HashMap::new()),
        }
    }

    fn closed(&self, node: &NodeAddr) {
        if let Some(n) = self.open.borrow_mut().get_mut(node) {
            *n = n.saturating_sub(1);
        }
    }

    /// A connection to `node` speaking `proto`: an idle one, or a new one within the cap.
    ///
    /// # Errors
    /// The reply to give the client: the cap is reached or the node cannot be reached.
    pub async fn take(self: &Rc<Self>, node: &NodeAddr, proto: Protocol) -> Result<Lease, Bytes> {
        let mut lease = self.take_any(node).await?;
        match lease.conn().use_protocol(proto).await {
            Ok(()) => Ok(lease),
            Err(e) => {
                tracing::debug!(node = %node, error = %e, "dedicated connection failed");
                Err(replies::upstream_unreachable(node.as_str()))
            }
        }
    }

    /// A connection to `node` in whatever protocol it was left in.
    async fn take_any(self: &Rc<Self>, node: &NodeAddr) -> Result<Lease, Bytes> {
        loop {
            let conn = self
                .idle
                .borrow_mut()
                .get_mut(node)
                .and_then(|list| list.pop());
            let Some(conn) = conn else { break };
            if conn.idle_since.elapsed() < IDLE_TTL {
                return Ok(Lease {
                    pool: Rc::clone(self),
                    conn: Some(conn),
                    node: node.clone(),
                });
            }
            drop(conn);
            self.closed(node);
        }
        {
            let mut open = self.open.borrow_mut();
            let n = open.entry(node.clone()).or_insert(0);
            if *n >= self.cfg.max_dedicated_per_node {
                return Err(replies::dedicated_limit(
                    node.as_str(),
                    self.cfg.max_dedicated_per_node,
                ));
            }
            *n += 1;
        }
        match node_client::connect(node.as_str(), &self.cfg, self.topology.upstream_tls()).await {
            Ok(stream) => {
                self.metrics.dedicated_connection(node, 1);
                Ok(Lease {
                    pool: Rc::clone(self),
                    conn: Some(DedicatedConn {
                        node: node.clone(),
                        stream,
                        buf: BytesMut::with_capacity(4096),
                        scanner: ReplyScanner::new(),
                        metrics: Arc::clone(&self.metrics),
                        idle_since: Instant::now(),
                        proto: Protocol::Resp2,
                    }),
                    node: node.clone(),
                })
            }
            Err(e) => {
                self.closed(node);
                tracing::debug!(node = %node, error = %e, "dedicated connection failed");
                self.topology
                    .request_refresh(crate::metrics::RefreshTrigger::Error);
                Err(replies::upstream_unreachable(node.as_str()))
            }
        }
    }

    /// Drop the idle connections of nodes that left the slot map.
    pub fn retain_known(&self, known: &[NodeAddr]) {
        let mut idle = self.idle.borrow_mut();
        let gone: Vec<NodeAddr> = idle
            .keys()
            .filter(|n| !known.contains(n))
            .cloned()
            .collect();
        for node in gone {
            if let Some(list) = idle.remove(&node) {
                for _ in list {
                    self.closed(&node);
                }
            }
        }
    }
}

/// A reply computed by a task of its own; the entry waits for it without a deadline.
pub(crate) struct Task {
    rx: oneshot::Receiver<Bytes>,
    /// The work may wait without bound (a blocking command): a client that half-closes
    /// gets no reply, and dropping the task releases the connection.
    may_block: bool,
    /// Work not started yet ([`Task::deferred`]).
    deferred: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl Task {
    /// Run `work` on the worker; it gets the sender for the final reply and should stop
    /// (dropping what it holds) once `tx.closed()` resolves: the client is gone.
    pub fn spawn<F, Fut>(work: F) -> Task
    where
        F: FnOnce(oneshot::Sender<Bytes>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        tokio::task::spawn_local(work(tx));
        Task {
            rx,
            may_block: true,
            deferred: None,
        }
    }

    /// Like [`Task::spawn`], but `work` starts only when the reply is first asked for
    /// ([`Task::try_take`], [`Task::wait`]). The session asks only the entry at the front of
    /// its reply queue, so the work starts after every earlier request of the client was
    /// answered (WAIT must count replicas only once the client's earlier writes ran).
    pub fn deferred<F, Fut>(work: F) -> Task
    where
        F: FnOnce(oneshot::Sender<Bytes>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        Task {
            rx,
            may_block: true,
            deferred: Some(Box::pin(work(tx))),
        }
    }

    /// Start deferred work, once.
    fn start(&mut self) {
        if let Some(work) = self.deferred.take() {
            tokio::task::spawn_local(work);
        }
    }

    /// [`Task::spawn`] for work that ends within deadlines of its own (a transaction
    /// step): its reply is still written after the client half-closes.
    pub fn spawn_bounded<F, Fut>(work: F) -> Task
    where
        F: FnOnce(oneshot::Sender<Bytes>) -> Fut,
        Fut: Future<Output = ()> + 'static,
    {
        Task {
            may_block: false,
            ..Task::spawn(work)
        }
    }

    /// Whether the work may wait without bound (see [`Task::spawn_bounded`]).
    pub fn may_block(&self) -> bool {
        self.may_block
    }

    /// The reply if it is there.
    pub fn try_take(&mut self) -> Option<Bytes> {
        self.start();
        match self.rx.try_recv() {
            Ok(b) => Some(b),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Bytes::from_static(
                b"-ERR slotgate: internal error: the command's task ended without a reply\r\n",
            )),
        }
    }

    /// Wait for the reply. Cancel-safe.
    pub async fn wait(&mut self) -> Bytes {
        self.start();
        (&mut self.rx).await.unwrap_or_else(|_| {
            Bytes::from_static(
                b"-ERR slotgate: internal error: the command's task ended without a reply\r\n",
            )
        })
    }
}

/// Run one blocking command on a dedicated connection (speaking the client's `proto`) to
/// the primary of `slot` (any primary when `None`), following MOVED/ASK. The command's own
/// timeout applies, not `op_timeout`. Sends the reply on `tx`; if the client leaves first,
/// drops the connection so Redis stops blocking for it.
pub(crate) async fn run_blocking(
    pool: Rc<DedicatedPool>,
    slot: Option<u16>,
    wire: Bytes,
    proto: Protocol,
    mut tx: oneshot::Sender<Bytes>,
) {
    let map = pool.topology.map();
    let first = match slot {
        Some(s) => map.primary_for_slot(s).cloned(),
        None => map.serving_shards().first().map(|s| s.primary.clone()),
    };
    drop(map);
    let Some(mut node) = first else {
        let _ = tx.send(Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED));
        return;
    };
    let mut asking = false;
    let mut redirects = 0;
    loop {
        let mut lease = tokio::select! {
            lease = pool.take(&node, proto) => match lease {
                Ok(l) => l,
                Err(reply) => { let _ = tx.send(reply); return; }
            },
            _ = tx.closed() => return,
        };
        let reply = tokio::select! {
            r = lease.conn().request(&wire, asking) => r,
            _ = tx.closed() => return, // the lease drops the connection: Redis unblocks
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(node = %node, error = %e, "dedicated connection lost");
                // A blocking command may have run (popped an element): never resend.
                let _ = tx.send(replies::upstream_lost(node.as_str()));
                return;
            }
        };
        if let ReplyKind::Error(ErrorClass::Moved | ErrorClass::Ask) = reply.kind {
            if let Some(r) = Redirect::parse(&reply.raw) {
                if redirects < pool.cfg.max_redirects {
                    redirects += 1;
                    let target = NodeAddr::new(&r.target(node.as_str()));
                    asking = r.kind == RedirectKind::Ask;
                    pool.metrics.redirect(asking);
                    if !asking {
                        pool.topology.apply_moved(r.slot, target.as_str());
                    }
                    lease.give_back();
                    node = target;
                    continue;
                }
            }
        }
        lease.give_back();
        let _ = tx.send(reply.raw);
        return;
    }
}
