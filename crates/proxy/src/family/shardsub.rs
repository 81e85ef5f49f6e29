//! Sharded Pub/Sub (SSUBSCRIBE/SUNSUBSCRIBE): a shard channel lives on the primary that owns
//! its slot, so a client's shard subscriptions are spread over one dedicated connection per
//! owner. A coordinator task per client keeps them: it sends each SSUBSCRIBE to its slot's
//! owner (following MOVED), relays `smessage`s, and rewrites the subscription counts in
//! confirmations to the client's total, as one Redis connection would report them.
//!
//! When a slot moves (reshard) or its owner fails over, Redis drops the subscriptions with an
//! unrequested `sunsubscribe` (or the connection breaks); the coordinator swallows that,
//! refreshes the slot map, and subscribes again on the new owner, so the client keeps
//! receiving messages (those published in between are lost: Pub/Sub is at most once).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::NodeAddr;
use slotgate_resp::{aggregate_children, encode, parse_integer, ErrorClass, ReplyKind};
use tokio::sync::mpsc;

use crate::protocol::Dialect;
use crate::telemetry::metrics::RefreshTrigger;
use crate::upstream::dedicated::DedicatedPool;
use crate::upstream::redirect;
use crate::upstream::topology::Topology;

/// One frame for the client from its Pub/Sub link or from the shard-channel coordinator,
/// with the subscription count when it is a (un)subscribe confirmation.
pub(crate) struct LinkFrame {
    pub frame: Bytes,
    pub count: Option<i64>,
    /// From the shard-channel coordinator (its counts are shard subscriptions).
    pub shard: bool,
}

/// How long after a lost subscription the coordinator waits for the map to catch up.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(200);

/// A client's shard subscription request.
pub(crate) enum ShardCmd {
    /// SSUBSCRIBE of channels that all hash to `slot`.
    Subscribe { slot: u16, channels: Vec<Bytes> },
    /// SUNSUBSCRIBE of these channels (none: all of them).
    Unsubscribe { channels: Vec<Bytes> },
}

/// Start the coordinator; its frames go to `frames`.
pub(crate) fn start(
    pool: Rc<DedicatedPool>,
    topology: Arc<Topology>,
    frames: mpsc::UnboundedSender<LinkFrame>,
) -> mpsc::UnboundedSender<ShardCmd> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::task::spawn_local(run(pool, topology, rx, frames));
    tx
}

fn bulk_content(frame: &Bytes) -> Option<Bytes> {
    if frame.first() != Some(&b'$') {
        return None;
    }
    let end = frame.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&frame[1..end]).ok()?.parse().ok()?;
    Some(frame.slice(end + 2..end + 2 + len))
}

/// `(kind, channel)` of a 3-element `ssubscribe`/`sunsubscribe` confirmation.
fn confirmation(frame: &Bytes) -> Option<(Bytes, Bytes)> {
    let children = aggregate_children(frame)?;
    if children.len() != 3 || parse_integer(&children[2]).is_none() {
        return None;
    }
    Some((bulk_content(&children[0])?, bulk_content(&children[1])?))
}

/// A confirmation as Redis writes it, with the client's total count.
fn confirm(kind: &[u8], channel: Option<&[u8]>, count: usize) -> Bytes {
    let mut b = BytesMut::new();
    encode::array_header(&mut b, 3);
    encode::bulk(&mut b, kind);
    match channel {
        Some(c) => encode::bulk(&mut b, c),
        None => encode::null_bulk(&mut b),
    }
    encode::integer(&mut b, count as i64);
    b.freeze()
}

fn command(name: &[u8], channels: &[Bytes]) -> Bytes {
    let mut parts: Vec<&[u8]> = vec![name];
    parts.extend(channels.iter().map(|c| &c[..]));
    let mut b = BytesMut::new();
    encode::command(&mut b, &parts);
    b.freeze()
}

/// One owner's connection: relays commands down and frames up, tagged with the node.
async fn run_node(
    pool: Rc<DedicatedPool>,
    node: NodeAddr,
    mut cmds: mpsc::UnboundedReceiver<Bytes>,
    up: mpsc::UnboundedSender<(NodeAddr, Option<slotgate_resp::Reply>)>,
) {
    let Ok(mut lease) = pool.take(&node, Dialect::RESP2).await else {
        let _ = up.send((node, None));
        return;
    };
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(w) => if lease.conn().send(&w).await.is_err() { break },
                None => return,
            },
            reply = lease.conn().read_reply() => match reply {
                Ok(r) => if up.send((node.clone(), Some(r))).is_err() { return },
                Err(_) => break,
            },
        }
    }
    let _ = up.send((node, None));
}

struct State {
    pool: Rc<DedicatedPool>,
    topology: Arc<Topology>,
    frames: mpsc::UnboundedSender<LinkFrame>,
    up_tx: mpsc::UnboundedSender<(NodeAddr, Option<slotgate_resp::Reply>)>,
    nodes: HashMap<NodeAddr, mpsc::UnboundedSender<Bytes>>,
    /// Confirmed subscriptions and their node.
    channels: HashMap<Bytes, NodeAddr>,
    /// Sent, not yet confirmed.
    pending_sub: HashMap<Bytes, NodeAddr>,
    /// Unsubscriptions the client asked for, not yet confirmed.
    pending_unsub: HashSet<Bytes>,
    /// Lost by a move or failover, to subscribe again (their confirmation is swallowed).
    lost: HashSet<Bytes>,
}

impl State {
    fn emit(&self, frame: Bytes, count: Option<usize>) -> bool {
        self.frames
            .send(LinkFrame {
                frame,
                count: count.map(|c| c as i64),
                shard: true,
            })
            .is_ok()
    }

    fn node(&mut self, node: &NodeAddr) -> mpsc::UnboundedSender<Bytes> {
        if let Some(tx) = self.nodes.get(node) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::task::spawn_local(run_node(
            Rc::clone(&self.pool),
            node.clone(),
            rx,
            self.up_tx.clone(),
        ));
        self.nodes.insert(node.clone(), tx.clone());
        tx
    }

    fn subscribe(&mut self, node: NodeAddr, channels: Vec<Bytes>) {
        for c in &channels {
            self.pending_sub.insert(c.clone(), node.clone());
        }
        let _ = self.node(&node).send(command(b"SSUBSCRIBE", &channels));
    }

    /// Subscribe again, on their slots' current owners, to the lost channels.
    fn resubscribe_lost(&mut self) {
        let map = self.topology.map();
        let mut by_node: HashMap<NodeAddr, Vec<Bytes>> = HashMap::new();
        for c in &self.lost {
            if self.pending_sub.contains_key(c) {
                continue;
            }
            if let Some(owner) = map.primary_for_slot(slotgate_cluster::slot(c)) {
                by_node.entry(owner.clone()).or_default().push(c.clone());
            }
        }
        drop(map);
        for (node, channels) in by_node {
            self.subscribe(node, channels);
        }
    }

    fn lose(&mut self, channel: Bytes) {
        self.channels.remove(&channel);
        self.lost.insert(channel);
    }

    /// A frame from `node`; false when the client is gone.
    fn on_frame(&mut self, node: &NodeAddr, reply: slotgate_resp::Reply) -> bool {
        if let ReplyKind::Error(class) = reply.kind {
            if matches!(class, ErrorClass::Moved | ErrorClass::Ask) {
                let metrics = &self.pool.metrics;
                if let Some(to) = redirect::follow(&reply, node, &self.topology, metrics) {
                    // An SSUBSCRIBE sent to a node that no longer owns the slot.
                    let (target, r_slot) = (to.target, to.slot);
                    let moved: Vec<Bytes> = self
                        .pending_sub
                        .iter()
                        .filter(|(c, n)| *n == node && slotgate_cluster::slot(c) == r_slot)
                        .map(|(c, _)| c.clone())
                        .collect();
                    if !moved.is_empty() {
                        self.subscribe(target, moved);
                        return true;
                    }
                }
            }
            return self.emit(reply.raw, None);
        }
        let Some((kind, channel)) = confirmation(&reply.raw) else {
            return self.emit(reply.raw, None); // smessage
        };
        match &kind[..] {
            b"ssubscribe" => {
                self.pending_sub.remove(&channel);
                self.channels.insert(channel.clone(), node.clone());
                if self.lost.remove(&channel) {
                    return true; // a resubscription the client never asked for
                }
                let n = self.channels.len();
                self.emit(confirm(b"ssubscribe", Some(&channel), n), Some(n))
            }
            b"sunsubscribe" if self.pending_unsub.remove(&channel) => {
                self.channels.remove(&channel);
                let n = self.channels.len();
                self.emit(confirm(b"sunsubscribe", Some(&channel), n), Some(n))
            }
            b"sunsubscribe" => {
                // Not asked for: the slot moved away from this node.
                self.lose(channel);
                self.topology.request_refresh(RefreshTrigger::Moved);
                true
            }
            _ => self.emit(reply.raw, None),
        }
    }
}

async fn run(
    pool: Rc<DedicatedPool>,
    topology: Arc<Topology>,
    mut cmds: mpsc::UnboundedReceiver<ShardCmd>,
    frames: mpsc::UnboundedSender<LinkFrame>,
) {
    let (up_tx, mut up_rx) = mpsc::unbounded_channel();
    let mut s = State {
        pool,
        topology,
        frames,
        up_tx,
        nodes: HashMap::new(),
        channels: HashMap::new(),
        pending_sub: HashMap::new(),
        pending_unsub: HashSet::new(),
        lost: HashSet::new(),
    };
    loop {
        let retry = !s.lost.is_empty();
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(ShardCmd::Subscribe { slot, channels }) => {
                    let owner = s.topology.map().primary_for_slot(slot).cloned();
                    match owner {
                        Some(node) => s.subscribe(node, channels),
                        None => {
                            s.topology.request_refresh(RefreshTrigger::Error);
                            let frame = Bytes::from_static(crate::replies::CLUSTERDOWN_UNCOVERED);
                            if !s.emit(frame, None) { return }
                        }
                    }
                }
                Some(ShardCmd::Unsubscribe { channels }) => {
                    let targets: Vec<Bytes> = if channels.is_empty() {
                        s.channels.keys().cloned().collect()
                    } else {
                        channels
                    };
                    if targets.is_empty() {
                        if !s.emit(confirm(b"sunsubscribe", None, 0), Some(0)) { return }
                        continue;
                    }
                    let mut by_node: HashMap<NodeAddr, Vec<Bytes>> = HashMap::new();
                    for c in targets {
                        s.lost.remove(&c);
                        match s.channels.get(&c) {
                            Some(node) => {
                                s.pending_unsub.insert(c.clone());
                                by_node.entry(node.clone()).or_default().push(c);
                            }
                            None => {
                                // Not subscribed: Redis still confirms it.
                                let n = s.channels.len();
                                if !s.emit(confirm(b"sunsubscribe", Some(&c), n), Some(n)) { return }
                            }
                        }
                    }
                    for (node, chans) in by_node {
                        let _ = s.node(&node).send(command(b"SUNSUBSCRIBE", &chans));
                    }
                }
            },
            up = up_rx.recv() => match up {
                Some((node, Some(reply))) => if !s.on_frame(&node, reply) { return },
                Some((node, None)) => {
                    // The owner's connection broke: its subscriptions are lost.
                    s.nodes.remove(&node);
                    let gone: Vec<Bytes> = s
                        .channels
                        .iter()
                        .chain(s.pending_sub.iter())
                        .filter(|(_, n)| **n == node)
                        .map(|(c, _)| c.clone())
                        .collect();
                    for c in gone {
                        s.pending_sub.remove(&c);
                        s.lose(c);
                    }
                    s.topology.request_refresh(RefreshTrigger::Error);
                }
                None => return,
            },
            _ = tokio::time::sleep(RESUBSCRIBE_DELAY), if retry => s.resubscribe_lost(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_are_parsed_and_rebuilt() {
        let f = Bytes::from_static(b"*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n");
        let (k, c) = confirmation(&f).unwrap();
        assert_eq!((&k[..], &c[..]), (&b"ssubscribe"[..], &b"ch"[..]));
        assert_eq!(confirm(b"ssubscribe", Some(b"ch"), 1), f);
        assert_eq!(
            &confirm(b"sunsubscribe", None, 0)[..],
            b"*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n"
        );
    }
}
