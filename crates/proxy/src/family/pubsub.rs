//! Pub/Sub (RESP2): a client's SUBSCRIBE/PSUBSCRIBE/UNSUBSCRIBE/PUNSUBSCRIBE go to one
//! dedicated connection (a *link*) to a primary; everything the node sends on it —
//! confirmations, messages, PING replies — is relayed to the client in order. In Redis
//! Cluster a PUBLISH reaches every node over the cluster bus, so one node sees every message.
//!
//! **One home node.** Every link of every worker goes to the Pub/Sub *home*, the primary
//! that serves [`HOME_SLOT`], and every PUBLISH is routed to that same slot's primary. So:
//! - a publisher's messages reach subscribers in the order it sent them: they all enter the
//!   cluster at one node, which delivers them to its own subscribers in order and forwards
//!   them to the other nodes over one ordered bus link each (sent to rotating primaries, a
//!   later message could overtake an earlier one still on the bus);
//! - PUBLISH's reply counts every subscriber connected through slotgate (and clients
//!   subscribed directly on the home node), as one server would.
//!
//! The link remembers what the client is subscribed to. If its connection breaks (the node
//! failed, was removed, or killed the connection), or the home moves to another node (a
//! failover, a reshard of slot 0), it connects to the current home and subscribes again,
//! swallowing the confirmations, so the client keeps receiving messages; messages published
//! during the gap are lost (Pub/Sub is at most once), and order still holds.
//!
//! A client that does not read its messages is disconnected once
//! `limits.max_pubsub_backlog` bytes wait for it, as Redis does with its pubsub
//! `client-output-buffer-limit`.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use slotgate_resp::{aggregate_children, parse_integer};
use tokio::sync::mpsc;

use crate::family::shardsub::{LinkFrame, ShardCmd};
use crate::protocol::Dialect;
use crate::upstream::dedicated::DedicatedPool;
use crate::upstream::topology::Topology;

/// Wait between reconnect attempts of a broken link.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// How often a link checks that it is still on the home node.
const HOME_CHECK: Duration = Duration::from_millis(100);

/// The slot whose primary is the Pub/Sub home: every link subscribes there and every
/// PUBLISH is sent there.
pub(crate) const HOME_SLOT: u16 = 0;

/// The current Pub/Sub home, if slot [`HOME_SLOT`] is served.
fn home(topology: &Topology) -> Option<slotgate_cluster::NodeAddr> {
    topology.map().primary_for_slot(HOME_SLOT).cloned()
}

/// The session's side of its Pub/Sub link.
pub(crate) struct PubSub {
    commands: mpsc::UnboundedSender<Bytes>,
    frames: mpsc::UnboundedReceiver<LinkFrame>,
    backlog: Rc<Cell<usize>>,
    gave_up: Rc<tokio::sync::Notify>,
    shard_cmds: mpsc::UnboundedSender<ShardCmd>,
    /// Channels + patterns, and shard channels, the last confirmations reported.
    counts: (i64, i64),
    /// In subscribe mode: the client has subscriptions (set as soon as a subscribe is sent,
    /// so the mode's command restrictions apply at once).
    pub active: bool,
}

impl PubSub {
    /// Start a link for this client (it connects to the home on the first subscribe).
    pub fn start(
        pool: Rc<DedicatedPool>,
        topology: std::sync::Arc<Topology>,
        max_backlog: usize,
    ) -> PubSub {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (frame_tx, frame_rx) = mpsc::unbounded_channel();
        let backlog = Rc::new(Cell::new(0));
        let gave_up = Rc::new(tokio::sync::Notify::new());
        let shard_cmds = crate::family::shardsub::start(
            Rc::clone(&pool),
            std::sync::Arc::clone(&topology),
            frame_tx.clone(),
        );
        tokio::task::spawn_local(run_link(Link {
            gave_up: Rc::clone(&gave_up),
            pool,
            topology,
            commands: cmd_rx,
            frames: frame_tx,
            backlog: Rc::clone(&backlog),
            max_backlog,
        }));
        PubSub {
            commands: cmd_tx,
            frames: frame_rx,
            backlog,
            gave_up,
            shard_cmds,
            counts: (0, 0),
            active: false,
        }
    }

    /// Send a shard-channel request to the coordinator.
    pub fn forward_shard(&mut self, cmd: ShardCmd) {
        if matches!(cmd, ShardCmd::Subscribe { .. }) {
            self.active = true;
        }
        let _ = self.shard_cmds.send(cmd);
    }

    /// Account for a frame about to be written: confirmations update the counts and
    /// subscribe mode.
    pub fn note(&mut self, frame: &LinkFrame) {
        if let Some(count) = frame.count {
            if frame.shard {
                self.counts.1 = count;
            } else {
                self.counts.0 = count;
            }
            self.active = self.counts.0 > 0 || self.counts.1 > 0;
        }
    }

    /// Send a client command (its wire bytes) down the link.
    pub fn forward(&mut self, wire: Bytes, subscribes: bool) {
        if subscribes {
            self.active = true;
        }
        let _ = self.commands.send(wire);
    }

    /// The next frame for the client; `None` when the link gave up (the client must be
    /// disconnected). Cancel-safe.
    pub async fn next(&mut self) -> Option<LinkFrame> {
        let f = tokio::select! {
            f = self.frames.recv() => f?,
            _ = self.gave_up.notified() => return None,
        };
        self.backlog
            .set(self.backlog.get().saturating_sub(f.frame.len()));
        Some(f)
    }

    /// Resolves once the link gave up on the client (it fell `max_pubsub_backlog` behind),
    /// so a session stuck writing to a client that does not read can close it.
    pub async fn gave_up(&self) {
        self.gave_up.notified().await
    }

    /// A frame already waiting, without blocking.
    pub fn try_next(&mut self) -> Option<LinkFrame> {
        let f = self.frames.try_recv().ok()?;
        self.backlog
            .set(self.backlog.get().saturating_sub(f.frame.len()));
        Some(f)
    }
}

/// Everything a link task owns.
struct Link {
    gave_up: Rc<tokio::sync::Notify>,
    pool: Rc<DedicatedPool>,
    topology: std::sync::Arc<Topology>,
    commands: mpsc::UnboundedReceiver<Bytes>,
    frames: mpsc::UnboundedSender<LinkFrame>,
    backlog: Rc<Cell<usize>>,
    max_backlog: usize,
}

/// What a frame from the node is.
enum Kind {
    /// `subscribe`/`psubscribe` confirmation for a name, with the count.
    Subscribed {
        pattern: bool,
        name: Bytes,
        count: i64,
    },
    /// `unsubscribe`/`punsubscribe` confirmation (`name` empty for a nil channel).
    Unsubscribed {
        pattern: bool,
        name: Bytes,
        count: i64,
    },
    /// A message or anything else: relayed as is.
    Other,
}

fn bulk_content(frame: &Bytes) -> Option<Bytes> {
    if frame.first() != Some(&b'$') {
        return None;
    }
    let header_end = frame.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(&frame[1..header_end])
        .ok()?
        .parse()
        .ok()?;
    Some(frame.slice(header_end + 2..header_end + 2 + len))
}

fn classify(frame: &Bytes) -> Kind {
    let Some(children) = aggregate_children(frame) else {
        return Kind::Other;
    };
    if children.len() != 3 {
        return Kind::Other;
    }
    let (Some(kind), Some(count)) = (bulk_content(&children[0]), parse_integer(&children[2]))
    else {
        return Kind::Other;
    };
    let name = bulk_content(&children[1]).unwrap_or_default();
    match &kind[..] {
        b"subscribe" => Kind::Subscribed {
            pattern: false,
            name,
            count,
        },
        b"psubscribe" => Kind::Subscribed {
            pattern: true,
            name,
            count,
        },
        b"unsubscribe" => Kind::Unsubscribed {
            pattern: false,
            name,
            count,
        },
        b"punsubscribe" => Kind::Unsubscribed {
            pattern: true,
            name,
            count,
        },
        _ => Kind::Other,
    }
}

fn command(name: &[u8], args: &BTreeSet<Bytes>) -> Bytes {
    let mut parts: Vec<&[u8]> = vec![name];
    parts.extend(args.iter().map(|a| &a[..]));
    let mut buf = bytes::BytesMut::new();
    slotgate_resp::encode::command(&mut buf, &parts);
    buf.freeze()
}

/// The link's life: connect to a primary, (re)subscribe, relay both ways; on a broken
/// connection, do it again. Ends when the client side is dropped or falls too far behind.
async fn run_link(link: Link) {
    let Link {
        gave_up,
        pool,
        topology,
        mut commands,
        frames,
        backlog,
        max_backlog,
    } = link;
    let mut channels: BTreeSet<Bytes> = BTreeSet::new();
    let mut patterns: BTreeSet<Bytes> = BTreeSet::new();
    // No connection until the client sends its first (un)subscribe on this link (a client
    // using only shard channels never needs one).
    let mut first = match commands.recv().await {
        Some(wire) => Some(wire),
        None => return,
    };
    loop {
        let node = home(&topology);
        let Some(node) = node else {
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT_DELAY) => continue,
                _ = frames.closed() => return,
            }
        };
        let mut lease = tokio::select! {
            lease = pool.take(&node, Dialect::RESP2) => match lease {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    continue;
                }
            },
            _ = frames.closed() => return,
        };
        // Subscribe again to what the client had, swallowing the confirmations.
        let mut swallow = channels.len() + patterns.len();
        if !channels.is_empty()
            && lease
                .conn()
                .send(&command(b"SUBSCRIBE", &channels))
                .await
                .is_err()
        {
            continue;
        }
        if !patterns.is_empty()
            && lease
                .conn()
                .send(&command(b"PSUBSCRIBE", &patterns))
                .await
                .is_err()
        {
            continue;
        }
        if let Some(wire) = first.take() {
            if lease.conn().send(&wire).await.is_err() {
                first = Some(wire);
                continue;
            }
        }
        let mut home_check = tokio::time::interval(HOME_CHECK);
        home_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = home_check.tick() => {
                    if home(&topology).is_some_and(|h| h != node) {
                        tracing::debug!(node = %node, "the Pub/Sub home moved; subscribing again there");
                        break;
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(wire) => if lease.conn().send(&wire).await.is_err() { break },
                    None => return, // the client is gone: the lease closes the connection
                },
                reply = lease.conn().read_reply() => {
                    let Ok(reply) = reply else { break };
                    let frame = reply.raw;
                    let count = match classify(&frame) {
                        Kind::Subscribed { pattern, name, count } => {
                            let set = if pattern { &mut patterns } else { &mut channels };
                            let fresh = set.insert(name);
                            if swallow > 0 && !fresh {
                                swallow -= 1;
                                continue;
                            }
                            Some(count)
                        }
                        Kind::Unsubscribed { pattern, name, count } => {
                            let set = if pattern { &mut patterns } else { &mut channels };
                            set.remove(&name);
                            Some(count)
                        }
                        Kind::Other => None,
                    };
                    backlog.set(backlog.get() + frame.len());
                    if backlog.get() > max_backlog {
                        tracing::warn!(
                            backlog = backlog.get(),
                            max_backlog,
                            "pub/sub client does not read its messages; disconnecting it"
                        );
                        gave_up.notify_one();
                        return;
                    }
                    let shard = false;
                    if frames.send(LinkFrame { frame, count, shard }).is_err() {
                        return;
                    }
                }
                _ = frames.closed() => return,
            }
        }
        tracing::debug!(node = %node, "pub/sub link lost or moved; subscribing again on the home");
        drop(lease);
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_are_recognised() {
        let f = Bytes::from_static(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
        assert!(
            matches!(classify(&f), Kind::Subscribed { pattern: false, ref name, count: 1 } if &name[..] == b"news")
        );
        let f = Bytes::from_static(b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n");
        assert!(
            matches!(classify(&f), Kind::Unsubscribed { pattern: true, ref name, count: 0 } if name.is_empty())
        );
        let f = Bytes::from_static(b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n");
        assert!(matches!(classify(&f), Kind::Other));
    }
}
