//! Dedicated upstream connections: one client's command (or conversation) owns a node
//! connection for as long as it needs, so a command that blocks in Redis (BLPOP, XREAD
//! BLOCK …) never holds up the multiplexed connections other clients share. Each worker
//! keeps a pool per node: a few idle connections for reuse and a cap on how many exist at
//! once (`upstream.max_dedicated_per_node`).
//!
//! The work runs in a task of its own (`session::task::Task`); the client's reply-queue entry
//! waits for its result. When the client goes away the entry is dropped, the task sees its
//! result is no longer wanted, and drops the connection — Redis then unblocks and forgets
//! that client.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::NodeAddr;
use slotgate_resp::{encode, Reply, ReplyKind, ReplyScanner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::auth::identity::ScriptIdentity;
use crate::config::UpstreamConfig;
use crate::protocol::{Dialect, Protocol};
use crate::replies;
use crate::telemetry::metrics::Metrics;
use crate::upstream::node_client::{self, NodeStream};
use crate::upstream::redirect::ASKING;
use crate::upstream::topology::Topology;

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
    /// The database it is in (`SELECT` switches it).
    db: u16,
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

    /// Make the connection speak `dialect`: its protocol, then its database (a `SELECT`
    /// round trip when it is in another one).
    ///
    /// # Errors
    /// The connection failed, or the node refused the protocol or the database.
    async fn use_dialect(&mut self, dialect: Dialect) -> Result<(), String> {
        self.use_protocol(dialect.proto).await?;
        if self.db == dialect.db {
            return Ok(());
        }
        let mut select = BytesMut::new();
        encode::command(&mut select, &[b"SELECT", dialect.db.to_string().as_bytes()]);
        self.send(&select).await?;
        let reply = self.read_reply().await?;
        if reply.is_error() {
            return Err(format!(
                "SELECT {} refused: {}",
                dialect.db,
                String::from_utf8_lossy(&reply.raw).trim_end()
            ));
        }
        self.db = dialect.db;
        Ok(())
    }

    /// Send `wire` (after `ASKING` when `asking`) and read its one reply; a refused
    /// ASKING's error instead, with both replies read so the connection stays in step.
    ///
    /// # Errors
    /// The connection failed or the node sent something that is not RESP; the command may
    /// have run.
    pub async fn request(&mut self, wire: &[u8], asking: bool) -> Result<Reply, String> {
        if !asking {
            self.send(wire).await?;
            return self.read_reply().await;
        }
        self.send(ASKING).await?;
        self.send(wire).await?;
        let asked = self.read_reply().await?;
        let reply = self.read_reply().await?;
        Ok(if asked.is_error() { asked } else { reply })
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
    /// The upstream settings (credentials, timeouts, `max_redirects`).
    pub cfg: Arc<UpstreamConfig>,
    /// The slot map, for the commands that follow redirects on these connections.
    pub topology: Arc<Topology>,
    /// The process-wide metrics.
    pub metrics: Arc<Metrics>,
    idle: RefCell<HashMap<NodeAddr, Vec<DedicatedConn>>>,
    /// Idle connections authenticated as a script identity, by node, identity name and
    /// protocol (never handed out for anything else).
    idle_as: RefCell<HashMap<IdentityKey, Vec<DedicatedConn>>>,
    open: RefCell<HashMap<NodeAddr, usize>>,
}

/// Which idle list a connection authenticated as a script identity goes back to.
type IdentityKey = (NodeAddr, String, Protocol);

/// A connection taken from the pool; gives its place under the cap back when dropped.
pub(crate) struct Lease {
    pool: Rc<DedicatedPool>,
    conn: Option<DedicatedConn>,
    node: NodeAddr,
    /// Set when the connection is authenticated as a script identity.
    identity: Option<IdentityKey>,
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
            let unkept = if conn.buf.is_empty() {
                conn.idle_since = Instant::now();
                match self.identity.take() {
                    Some(key) => push_idle(&mut self.pool.idle_as.borrow_mut(), key, conn),
                    None => push_idle(&mut self.pool.idle.borrow_mut(), self.node.clone(), conn),
                }
            } else {
                Some(conn)
            };
            // Kept: still open, it stays counted under the cap.
            if let Some(conn) = unkept {
                drop(conn);
                self.pool.closed(&self.node);
            }
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
            idle_as: RefCell::new(HashMap::new()),
            open: RefCell::new(HashMap::new()),
        }
    }

    fn closed(&self, node: &NodeAddr) {
        if let Some(n) = self.open.borrow_mut().get_mut(node) {
            *n = n.saturating_sub(1);
        }
    }

    /// A connection to `node` speaking `dialect` (its protocol, in its database): an idle
    /// one, or a new one within the cap.
    ///
    /// # Errors
    /// The reply to give the client: the cap is reached or the node cannot be reached.
    pub async fn take(self: &Rc<Self>, node: &NodeAddr, dialect: Dialect) -> Result<Lease, Bytes> {
        let mut lease = self.take_any(node).await?;
        match lease.conn().use_dialect(dialect).await {
            Ok(()) => Ok(lease),
            Err(e) => {
                tracing::debug!(node = %node, error = %e, "dedicated connection failed");
                Err(replies::upstream_unreachable(node.as_str()))
            }
        }
    }

    /// A connection to `node` speaking `proto`, authenticated as `identity`: an idle one, or
    /// one taken like [`DedicatedPool::take`] and authenticated (after creating the user with
    /// `ACL SETUSER` when the node does not know it).
    ///
    /// # Errors
    /// The reply to give the client: the cap is reached, the node cannot be reached, or it
    /// refused to create or authenticate the identity.
    pub async fn take_as(
        self: &Rc<Self>,
        node: &NodeAddr,
        dialect: Dialect,
        identity: &ScriptIdentity,
    ) -> Result<Lease, Bytes> {
        let key = (node.clone(), identity.name.clone(), dialect.proto);
        if let Some(conn) = self.pop_idle(&self.idle_as, &key, node) {
            let mut lease = Lease {
                pool: Rc::clone(self),
                conn: Some(conn),
                node: node.clone(),
                identity: Some(key),
            };
            return match lease.conn().use_dialect(dialect).await {
                Ok(()) => Ok(lease),
                Err(e) => {
                    tracing::debug!(node = %node, error = %e, "dedicated connection failed");
                    Err(replies::upstream_unreachable(node.as_str()))
                }
            };
        }
        let mut lease = self.take(node, dialect).await?;
        let conn = lease.conn();
        let lost = |e: String| {
            tracing::debug!(node = %node, error = %e, "dedicated connection failed");
            replies::upstream_unreachable(node.as_str())
        };
        let mut auth = conn.request(&identity.auth, false).await.map_err(lost)?;
        if auth.raw.starts_with(b"-WRONGPASS") {
            // Not on this node yet (a new or restarted node, a promoted replica, new rules).
            let created = conn.request(&identity.setuser, false).await.map_err(lost)?;
            if created.is_error() {
                crate::telemetry::logs::limited(
                    crate::telemetry::logs::Class::ScriptIdentity,
                    |suppressed| tracing::warn!(node = %node, user = %identity.name, error = %String::from_utf8_lossy(&created.raw).trim_end(), suppressed, "cannot create the ACL user for a restricted user's scripts; refusing them"),
                );
                return Err(replies::script_identity_refused(
                    node.as_str(),
                    &created.raw,
                ));
            }
            auth = conn.request(&identity.auth, false).await.map_err(lost)?;
        }
        if auth.is_error() {
            return Err(replies::script_identity_refused(node.as_str(), &auth.raw));
        }
        lease.identity = Some(key);
        Ok(lease)
    }

    /// The newest idle connection of `idle[key]` (a connection to `node`) still inside its
    /// idle time; older ones are closed on the way.
    fn pop_idle<K: std::hash::Hash + Eq>(
        &self,
        idle: &RefCell<HashMap<K, Vec<DedicatedConn>>>,
        key: &K,
        node: &NodeAddr,
    ) -> Option<DedicatedConn> {
        loop {
            let conn = idle.borrow_mut().get_mut(key).and_then(|list| list.pop())?;
            if conn.idle_since.elapsed() < IDLE_TTL {
                return Some(conn);
            }
            drop(conn);
            self.closed(node);
        }
    }

    /// A connection to `node` in whatever protocol it was left in.
    async fn take_any(self: &Rc<Self>, node: &NodeAddr) -> Result<Lease, Bytes> {
        if let Some(conn) = self.pop_idle(&self.idle, node, node) {
            return Ok(Lease {
                pool: Rc::clone(self),
                conn: Some(conn),
                node: node.clone(),
                identity: None,
            });
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
                        db: 0,
                    }),
                    node: node.clone(),
                    identity: None,
                })
            }
            Err(e) => {
                self.closed(node);
                tracing::debug!(node = %node, error = %e, "dedicated connection failed");
                self.topology
                    .request_refresh(crate::telemetry::metrics::RefreshTrigger::Error);
                Err(replies::upstream_unreachable(node.as_str()))
            }
        }
    }

    /// Drop the idle connections of nodes that left the slot map.
    pub fn retain_known(&self, known: &[NodeAddr]) {
        let mut idle_as = self.idle_as.borrow_mut();
        let gone: Vec<IdentityKey> = idle_as
            .keys()
            .filter(|(n, _, _)| !known.contains(n))
            .cloned()
            .collect();
        for key in gone {
            if let Some(list) = idle_as.remove(&key) {
                for _ in list {
                    self.closed(&key.0);
                }
            }
        }
        drop(idle_as);
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

/// Keep `conn` in `map[key]` unless that list is full (then it comes back).
fn push_idle<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Vec<DedicatedConn>>,
    key: K,
    conn: DedicatedConn,
) -> Option<DedicatedConn> {
    let list = map.entry(key).or_default();
    if list.len() < MAX_IDLE {
        list.push(conn);
        None
    } else {
        Some(conn)
    }
}

#[cfg(test)]
mod tests;
