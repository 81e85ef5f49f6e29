//! The servers' side of `CLIENT TRACKING`: per worker, one connection to each primary, in
//! RESP3, with `CLIENT TRACKING ON BCAST` and no prefix. The primary then reports every key
//! that changes — written, expired, evicted, deleted by a reshard's MIGRATE; a null for
//! FLUSHALL and FLUSHDB — as an `invalidate` push, batched per turn of its event loop. Each
//! report goes to the worker's [`TrackingTable`], which tells the clients that asked.
//!
//! Links exist while a client of the worker tracks ([`TrackingTable::is_active`]), to every
//! primary of the current slot map. A link that comes up (the first time, after a break, to
//! a new primary after a failover) cannot know what changed before: the table is told that
//! primary's keys were lost ([`TrackingTable::lost`]), and again when a link breaks. A link
//! pings its primary every second and is given up when a ping goes unanswered for
//! `upstream.op_timeout` (a node that vanished without closing the connection).
//!
//! The read cache (`runtime::cache`) is told whether every link of the current map is up
//! ([`ReadCache::set_ready`](crate::runtime::cache::ReadCache::set_ready)): it serves and
//! fills only then.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::NodeAddr;
use slotgate_resp::{parse_value, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::UpstreamConfig;
use crate::protocol::Protocol;
use crate::runtime::tracking::TrackingTable;
use crate::upstream::node_client;
use crate::upstream::topology::Topology;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PING_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A worker's links to its primaries.
pub(crate) struct InvalidationLinks {
    state: Rc<State>,
}

/// What the links of a worker share with their tasks.
struct State {
    table: Rc<TrackingTable>,
    topology: Arc<Topology>,
    cfg: Arc<UpstreamConfig>,
    links: RefCell<HashMap<NodeAddr, Link>>,
    /// Woken when a link comes up.
    changed: Notify,
    /// The topology generation whose primaries the links were last made to follow.
    followed: Cell<Option<u64>>,
}

struct Link {
    up: Rc<Cell<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl InvalidationLinks {
    /// No link yet; they start when [`InvalidationLinks::follow`] finds the table active.
    pub fn new(
        table: Rc<TrackingTable>,
        topology: Arc<Topology>,
        cfg: Arc<UpstreamConfig>,
    ) -> InvalidationLinks {
        InvalidationLinks {
            state: Rc::new(State {
                table,
                topology,
                cfg,
                links: RefCell::new(HashMap::new()),
                changed: Notify::new(),
                followed: Cell::new(None),
            }),
        }
    }

    /// Links to exactly the primaries of the current slot map while a client tracks, to
    /// none otherwise. Must run on the worker's thread (a `LocalSet`).
    pub fn follow(&self) {
        let state = &self.state;
        let generation = state.topology.generation();
        let map = state.topology.map_arc();
        let wanted: Vec<NodeAddr> = if state.table.is_active() {
            map.serving_shards()
                .iter()
                .map(|s| s.primary.clone())
                .collect()
        } else {
            Vec::new()
        };
        if let Some(cache) = state.table.cache() {
            cache.follow_map(&map);
        }
        state.followed.set(Some(generation));
        let mut links = state.links.borrow_mut();
        links.retain(|node, _| wanted.contains(node));
        for node in wanted {
            if links.contains_key(&node) {
                continue;
            }
            let up = Rc::new(Cell::new(false));
            let task =
                tokio::task::spawn_local(run_link(node.clone(), Rc::clone(state), Rc::clone(&up)));
            links.insert(node, Link { up, task });
        }
        drop(links);
        state.publish();
    }

    /// Whether every link is up (none is wanted, or each reports changes now).
    pub fn all_up(&self) -> bool {
        self.state.all_up()
    }

    /// Wait until every link is up, or `deadline`.
    pub async fn wait_up(&self, deadline: Instant) {
        while !self.all_up() {
            let changed = self.state.changed.notified();
            if self.all_up() {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }
}

impl State {
    fn all_up(&self) -> bool {
        self.links.borrow().values().all(|l| l.up.get())
    }

    /// Tell the read cache whether every primary of the followed map reports its changes.
    fn publish(&self) {
        let Some(cache) = self.table.cache() else {
            return;
        };
        let links = self.links.borrow();
        let ready = !links.is_empty() && links.values().all(|l| l.up.get());
        cache.set_ready(if ready { self.followed.get() } else { None });
    }
}

/// One link's life: connect, report, and on a break tell the table and retry.
async fn run_link(node: NodeAddr, state: Rc<State>, up: Rc<Cell<bool>>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let failure = serve(&node, &state, &up).await;
        if up.replace(false) {
            backoff = BACKOFF_MIN;
        }
        state.table.lost(|key| serves(&state.topology, &node, key));
        state.publish();
        tracing::debug!(node = %node.as_str(), error = %failure, "invalidation link lost");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Whether `node` is the primary of `key` now.
fn serves(topology: &Topology, node: &NodeAddr, key: &[u8]) -> bool {
    let map = topology.map();
    map.primary_for_slot(slotgate_cluster::slot(key)) == Some(node)
}

/// Connect and pass on the primary's reports until the connection fails; the error.
async fn serve(node: &NodeAddr, state: &State, up: &Cell<bool>) -> String {
    let (table, topology, cfg) = (&*state.table, &*state.topology, &*state.cfg);
    let mut stream = match node_client::connect(node.as_str(), cfg, topology.upstream_tls()).await {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    if let Err(e) = node_client::switch_protocol(&mut stream, Protocol::Resp3, cfg.op_timeout).await
    {
        return e.to_string();
    }
    let on: [&[u8]; 4] = [b"CLIENT", b"TRACKING", b"ON", b"BCAST"];
    if let Err(e) = node_client::expect_ok(&mut stream, &on, cfg.op_timeout).await {
        return e.to_string();
    }
    // Reports reach the table from now on; what changed before is unknown.
    up.set(true);
    table.linked(|key| serves(topology, node, key), state.all_up());
    state.publish();
    state.changed.notify_waiters();
    let mut buf = BytesMut::with_capacity(4096);
    let mut ping_due = Instant::now() + PING_EVERY;
    let mut unanswered: Option<Instant> = None;
    loop {
        let wake = unanswered.map_or(ping_due, |since| since + cfg.op_timeout);
        tokio::select! {
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) => return "closed by the node".into(),
                Ok(_) => {}
                Err(e) => return format!("read: {e}"),
            },
            () = tokio::time::sleep_until(wake) => {
                if unanswered.is_some() {
                    return "no answer to PING".into();
                }
                if let Err(e) = stream.write_all(PING).await {
                    return format!("write: {e}");
                }
                unanswered = Some(Instant::now());
                ping_due = Instant::now() + PING_EVERY;
                continue;
            }
        }
        loop {
            let (value, used) = match parse_value(&buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return format!("invalid reply: {e}"),
            };
            let _ = buf.split_to(used);
            match value {
                Value::Push(items) => report(table, items),
                _ => unanswered = None, // PING's answer
            }
        }
        if buf.is_empty() && buf.capacity() > 64 * 1024 {
            buf = BytesMut::with_capacity(4096);
        }
    }
}

/// One push: `invalidate` with the keys that changed, or a null for a flush.
fn report(table: &TrackingTable, items: Vec<Value>) {
    let mut items = items.into_iter();
    let is_invalidate = matches!(items.next(), Some(Value::Bulk(kind) | Value::Simple(kind)) if kind == b"invalidate");
    if !is_invalidate {
        return;
    }
    match items.next() {
        Some(Value::Array(keys)) | Some(Value::Set(keys)) => {
            let keys: Vec<Bytes> = keys
                .into_iter()
                .filter_map(|k| match k {
                    Value::Bulk(k) | Value::Simple(k) => Some(Bytes::from(k)),
                    _ => None,
                })
                .collect();
            table.invalidate(&keys);
        }
        _ => table.flush(),
    }
}
