//! WAIT through the proxy: "block until this connection's earlier writes are acknowledged
//! by `numreplicas` replicas, or `timeout` ms pass; answer how many acknowledged".
//!
//! Forwarding WAIT cannot mean that: a client's writes travel over multiplexed connections
//! shared with other clients, a fresh connection's write offset is 0, and a blocked WAIT
//! would hold up everything queued behind it. So slotgate answers it itself:
//!
//! 1. Every client remembers which slots its writes went to ([`WrittenSlots`], in its
//!    `ClientState`): commands with the `write` flag, the key slots of split writes (MSET,
//!    DEL …), writes queued in a transaction, and scripts (EVAL, EVALSHA, FCALL; a script
//!    without keys counts as a write to every primary). Beyond [`MAX_SLOTS`] distinct slots
//!    it stops counting and remembers "every primary".
//! 2. WAIT's work starts only when its entry reaches the front of the client's reply queue
//!    ([`Task::deferred`]): every earlier request of the client has been answered by its
//!    node, so its writes are in their primaries' replication streams.
//! 3. For each primary that serves a remembered slot now, `ROLE` gives the primary's
//!    replication offset, which is at least the offset of the client's writes there. Then
//!    each replica of that shard (the slot map's list) is asked `ROLE` until its processed
//!    offset reaches that target: every [`POLL_MIN`] at first, backing off to
//!    [`POLL_MAX`]. Every query uses a dedicated connection from the worker's pool (with the
//!    same auth and TLS as every upstream connection), returned after each answer.
//! 4. The reply is the smallest count over those shards, as soon as every shard has
//!    `numreplicas` acknowledgements, else when the timeout passes (0: never). A replica
//!    that cannot be reached does not acknowledge. Without remembered writes every serving
//!    shard is looked at with target offset 0, so each replica that answers counts (Redis
//!    counts every connected replica for a connection that never wrote).
//!
//! `op_timeout` does not apply (WAIT has its own timeout, like the blocking family). A
//! client that leaves drops the entry, the task stops, and with it every query in flight
//! and its connection. `WAIT` inside MULTI is queued like any command and runs inside the
//! transaction on the node, where Redis never blocks: it answers at once.
//!
//! WAITAOF ([`aof`]) looks at the same primaries, and has each count for the client.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::{NodeAddr, SlotMap};
use slotgate_commands::{flag, Command, KeyIndices};
use slotgate_resp::{encode, parse_ll, parse_value, Request, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::protocol::Dialect;
use crate::replies;
use crate::runtime::context::WorkerCtx;
use crate::session::entry::Entry;
use crate::session::request::ReqArgs;
use crate::session::task::Task;
use crate::telemetry::metrics::RefreshTrigger;
use crate::upstream::dedicated::DedicatedPool;
use crate::upstream::topology::Topology;

pub(crate) mod aof;

/// Distinct slots remembered per client; past this, its writes count as everywhere.
pub(crate) const MAX_SLOTS: usize = 64;
/// First pause between two `ROLE` polls of a replica that has not caught up.
const POLL_MIN: Duration = Duration::from_millis(1);
/// Longest pause between two polls.
const POLL_MAX: Duration = Duration::from_millis(20);
/// Pause after a node could not be asked (unreachable, pool cap, not in the expected role).
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// `WAIT 0 …` (or a negative count) answers after one round of polls, at most this late.
const ONE_ROUND: Duration = Duration::from_millis(100);

const ROLE: &[u8] = b"*1\r\n$4\r\nROLE\r\n";

/// The slots a client's writes went to since it connected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct WrittenSlots {
    /// Distinct slots, at most [`MAX_SLOTS`].
    slots: Vec<u16>,
    /// A write whose slots are not remembered (too many slots, a script without keys, a
    /// keyless write such as FLUSHALL): WAIT looks at every primary.
    everywhere: bool,
}

// === impl WrittenSlots ===

impl WrittenSlots {
    /// Remember where `cmd` writes, if it may write. Costs one flag test for other commands.
    #[inline]
    pub fn note(&mut self, cmd: &Command, req: &Request) {
        if self.may_write(cmd) {
            self.note_write(cmd, req);
        }
    }

    /// [`WrittenSlots::note`] for a command whose keys routing already found in `slot`.
    #[inline]
    pub fn note_slot(&mut self, cmd: &Command, slot: u16) {
        if self.may_write(cmd) {
            self.add(slot);
        }
    }

    /// Whether `cmd` may write and its slots still need remembering.
    #[inline]
    fn may_write(&self, cmd: &Command) -> bool {
        // NO_MANDATORY_KEYS: the scripting commands; their _RO forms cannot write.
        cmd.flags & (flag::WRITE | flag::NO_MANDATORY_KEYS) != 0
            && !self.everywhere
            && (cmd.has_flag(flag::WRITE) || !cmd.has_flag(flag::READONLY))
    }

    fn note_write(&mut self, cmd: &Command, req: &Request) {
        let mut keys = KeyIndices::new();
        if cmd.key_indices(&ReqArgs(req), &mut keys).is_err() {
            return; // the node refuses a malformed key count: nothing is written
        }
        if keys.is_empty() {
            self.everywhere = true;
            self.slots = Vec::new();
            return;
        }
        for i in keys.iter() {
            self.add(slotgate_cluster::slot(req.arg(i as usize)));
        }
    }

    fn add(&mut self, slot: u16) {
        if self.everywhere || self.slots.contains(&slot) {
            return;
        }
        if self.slots.len() >= MAX_SLOTS {
            self.everywhere = true;
            self.slots = Vec::new();
        } else {
            self.slots.push(slot);
        }
    }

    /// Whether nothing was written yet.
    fn is_empty(&self) -> bool {
        !self.everywhere && self.slots.is_empty()
    }
}

/// `WAIT numreplicas timeout` outside MULTI (arity already checked). Argument errors are
/// answered at once with Redis 7.0's texts, in Redis's order.
pub(crate) fn route(
    ctx: &WorkerCtx,
    written: &WrittenSlots,
    req: &Request,
    budget: &Rc<crate::runtime::budget::OutputBudget>,
) -> Entry {
    let Some(numreplicas) = parse_ll(req.arg(1)) else {
        return Entry::Ready(Bytes::from_static(replies::NOT_AN_INTEGER));
    };
    let timeout_ms = match parse_ll(req.arg(2)) {
        None => return Entry::Ready(Bytes::from_static(replies::TIMEOUT_NOT_AN_INTEGER)),
        Some(t) if t < 0 => return Entry::Ready(Bytes::from_static(replies::TIMEOUT_NEGATIVE)),
        Some(t) => t.unsigned_abs(),
    };
    let job = Job {
        pool: Rc::clone(&ctx.dedicated),
        topology: Arc::clone(&ctx.topology),
        written: written.clone(),
        numreplicas,
        timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms)),
    };
    Entry::Task(Task::deferred(budget, move |tx| job.run(tx)), None)
}

/// One WAIT, from the moment its entry reaches the front of the reply queue.
struct Job {
    pool: Rc<DedicatedPool>,
    topology: Arc<Topology>,
    written: WrittenSlots,
    numreplicas: i64,
    /// `None`: wait for ever.
    timeout: Option<Duration>,
}

/// One shard WAIT looks at.
#[derive(Debug, PartialEq, Eq)]
struct Shard {
    /// `None`: a remembered slot that no primary serves now; it never acknowledges.
    primary: Option<NodeAddr>,
    replicas: Vec<NodeAddr>,
}

/// What the pollers tell the job.
#[derive(Debug)]
enum Report {
    /// A replica of shard `shard` answered its first poll (`first`), or acknowledged
    /// (`acked`), or both.
    Replica {
        shard: usize,
        first: bool,
        acked: bool,
    },
    /// Shard `shard` has this many replicas to poll (the slot map listed none; its
    /// primary named them).
    Replicas { shard: usize, count: usize },
    /// A node refused `ROLE`: this is WAIT's answer.
    Refused(Bytes),
}

/// Why a node could not say its role.
enum Failed {
    /// Unreachable, connection lost, pool cap reached, or a transient error: ask again.
    Retry,
    /// The node refuses ROLE itself (ACL, renamed command): asking again will not help.
    Refused(Bytes),
}

/// What `ROLE` says about a node, with its replication offset.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    /// A primary: its `master_repl_offset`, and the replicas connected to it.
    Primary(i64, Vec<NodeAddr>),
    /// A replica: the offset it has processed.
    Replica(i64),
    /// Anything else (a sentinel, an unexpected shape).
    Other,
}

// === impl Job ===

impl Job {
    /// Count, and send the answer unless the client leaves first; then everything the job
    /// started is dropped, connections in use included.
    async fn run(self, tx: crate::session::task::TaskTx) {
        tx.answer(self.count()).await
    }

    async fn count(&self) -> Bytes {
        let start = Instant::now();
        let mut deadline = self.timeout.and_then(|t| start.checked_add(t));
        if self.numreplicas <= 0 {
            let round = start + ONE_ROUND;
            deadline = Some(deadline.map_or(round, |d| d.min(round)));
        }
        let shards = plan(&self.topology.map(), &self.written);
        if shards.is_empty() {
            self.topology.request_refresh(RefreshTrigger::Error);
            return Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED);
        }
        let (report_tx, mut reports) = mpsc::unbounded_channel();
        // Dropping the set (at return, or when the client leaves) aborts every poller.
        let mut pollers = JoinSet::new();
        let track = !self.written.is_empty();
        for (i, shard) in shards.iter().enumerate() {
            if let Some(primary) = &shard.primary {
                pollers.spawn_local(watch_shard(
                    Rc::clone(&self.pool),
                    i,
                    primary.clone(),
                    shard.replicas.clone(),
                    track,
                    report_tx.clone(),
                ));
            }
        }
        drop(report_tx);
        let mut tally = Tally::new(&shards);
        while !tally.enough(self.numreplicas) {
            let report = tokio::select! {
                r = reports.recv() => r,
                _ = sleep_until_opt(deadline) => break,
            };
            match report {
                Some(Report::Refused(answer)) => return answer,
                Some(Report::Replicas { shard, count }) => tally.found(shard, count),
                Some(Report::Replica {
                    shard,
                    first,
                    acked,
                }) => tally.record(shard, first, acked),
                None => {
                    // Every poller is done: nothing will change until the timeout.
                    sleep_until_opt(deadline).await;
                    break;
                }
            }
        }
        tracing::debug!(
            numreplicas = self.numreplicas,
            acked = ?tally.acked,
            answered = ?tally.tried,
            replicas = ?tally.replicas,
            took = ?start.elapsed(),
            "WAIT answered"
        );
        let mut out = BytesMut::with_capacity(8);
        encode::integer(&mut out, tally.answer());
        out.freeze()
    }
}

/// The shards to look at: those serving a remembered slot now, or every serving shard
/// when the client wrote everywhere or nothing (see [`anchors`]).
fn plan(map: &SlotMap, written: &WrittenSlots) -> Vec<Shard> {
    anchors(map, written)
        .into_iter()
        .map(|slot| match map.shard_for_slot(slot) {
            Some(s) => Shard {
                primary: Some(s.primary.clone()),
                replicas: s.replicas.clone(),
            },
            None => Shard {
                primary: None,
                replicas: Vec::new(),
            },
        })
        .collect()
}

/// One slot per shard WAIT and WAITAOF look at: for each shard serving a remembered slot
/// now, the first such slot, then the first remembered slot that no primary serves (if
/// any); the lowest slot of every serving shard when the client wrote everywhere or
/// nothing. Empty only when no slot is served.
fn anchors(map: &SlotMap, written: &WrittenSlots) -> Vec<u16> {
    let mut shards: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    if written.everywhere || written.slots.is_empty() {
        for (start, _, shard) in map.ranges() {
            if !shards.contains(&shard) {
                shards.push(shard);
                out.push(start);
            }
        }
        return out;
    }
    let mut uncovered = None;
    for &slot in &written.slots {
        match map.shard_index(slot) {
            Some(i) if !shards.contains(&i) => {
                shards.push(i);
                out.push(slot);
            }
            Some(_) => {}
            None => uncovered = uncovered.or(Some(slot)),
        }
    }
    out.extend(uncovered);
    out
}

/// Acknowledgements so far, per shard.
struct Tally {
    acked: Vec<usize>,
    /// Replicas that answered at least one poll.
    tried: Vec<usize>,
    replicas: Vec<usize>,
}

impl Tally {
    fn new(shards: &[Shard]) -> Tally {
        Tally {
            acked: vec![0; shards.len()],
            tried: vec![0; shards.len()],
            replicas: shards.iter().map(|s| s.replicas.len()).collect(),
        }
    }

    fn found(&mut self, shard: usize, count: usize) {
        if let Some(r) = self.replicas.get_mut(shard) {
            *r = count;
        }
    }

    fn record(&mut self, shard: usize, first: bool, acked: bool) {
        if let (Some(a), Some(t)) = (self.acked.get_mut(shard), self.tried.get_mut(shard)) {
            *t += usize::from(first);
            *a += usize::from(acked);
        }
    }

    /// Whether WAIT can answer now: every shard has `needed` acknowledgements; for a count
    /// of 0 or less, once every replica answered a first poll.
    fn enough(&self, needed: i64) -> bool {
        if needed <= 0 {
            return self.tried == self.replicas;
        }
        self.acked
            .iter()
            .all(|&a| i64::try_from(a).unwrap_or(i64::MAX) >= needed)
    }

    /// The reply: the smallest count over the shards.
    fn answer(&self) -> i64 {
        let least = self.acked.iter().copied().min().unwrap_or(0);
        i64::try_from(least).unwrap_or(i64::MAX)
    }
}

/// One shard: the primary's offset (when the client wrote), then a poller per replica.
///
/// The replicas are those the slot map lists. When it lists none, those the primary names:
/// `CLUSTER SLOTS` leaves out a replica until the cluster bus has carried a non-zero
/// replication offset for it (a new replica, or a primary that never received a write).
/// Never both: one replica under two addresses would be counted twice.
async fn watch_shard(
    pool: Rc<DedicatedPool>,
    shard: usize,
    primary: NodeAddr,
    mut replicas: Vec<NodeAddr>,
    track: bool,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut target = 0;
    if track || replicas.is_empty() {
        let (offset, named) = match primary_role(&pool, &primary).await {
            Ok(role) => role,
            Err(reply) => {
                let _ = reports.send(Report::Refused(reply));
                return;
            }
        };
        tracing::debug!(%primary, offset, replicas = ?named, "WAIT: the primary's role");
        if track {
            target = offset;
        }
        if replicas.is_empty() && !named.is_empty() {
            replicas = named;
            let count = replicas.len();
            let _ = reports.send(Report::Replicas { shard, count });
        }
    }
    // Dropping this future (the job ends) drops the set and aborts these pollers.
    let mut pollers = JoinSet::new();
    for node in replicas {
        pollers.spawn_local(watch_replica(
            Rc::clone(&pool),
            shard,
            node,
            target,
            reports.clone(),
        ));
    }
    while pollers.join_next().await.is_some() {}
}

/// The replication offset of `primary` and the replicas it names, asked until it answers
/// as a primary; `Err`: the reply to give when it refuses ROLE.
async fn primary_role(
    pool: &Rc<DedicatedPool>,
    primary: &NodeAddr,
) -> Result<(i64, Vec<NodeAddr>), Bytes> {
    loop {
        match role(pool, primary).await {
            Ok(Role::Primary(offset, replicas)) => return Ok((offset, replicas)),
            Err(Failed::Refused(error)) => {
                return Err(replies::wait_role_refused(primary.as_str(), &error))
            }
            // Unreachable, or no longer a primary (a failover under way): ask again; the
            // shard does not acknowledge meanwhile.
            Ok(_) | Err(Failed::Retry) => tokio::time::sleep(RETRY_DELAY).await,
        }
    }
}

/// Poll one replica until it has processed `target`.
async fn watch_replica(
    pool: Rc<DedicatedPool>,
    shard: usize,
    node: NodeAddr,
    target: i64,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut delay = POLL_MIN;
    let mut first = true;
    loop {
        let pause = match role(&pool, &node).await {
            Ok(Role::Replica(offset)) if offset >= target => {
                let _ = reports.send(Report::Replica {
                    shard,
                    first,
                    acked: true,
                });
                return;
            }
            Ok(role) => {
                tracing::trace!(%node, ?role, target, "WAIT: not acknowledged yet");
                let pause = delay;
                delay = (delay * 2).min(POLL_MAX);
                pause
            }
            Err(Failed::Refused(error)) => {
                let reply = replies::wait_role_refused(node.as_str(), &error);
                let _ = reports.send(Report::Refused(reply));
                return;
            }
            Err(Failed::Retry) => RETRY_DELAY,
        };
        if std::mem::take(&mut first) {
            let _ = reports.send(Report::Replica {
                shard,
                first: true,
                acked: false,
            });
        }
        tokio::time::sleep(pause).await;
    }
}

/// Ask `node` for its `ROLE` on a pooled dedicated connection.
async fn role(pool: &Rc<DedicatedPool>, node: &NodeAddr) -> Result<Role, Failed> {
    let mut lease = pool.take(node, Dialect::RESP2).await.map_err(|reply| {
        tracing::debug!(%node, reply = %String::from_utf8_lossy(&reply).trim_end(), "WAIT: no connection");
        Failed::Retry
    })?;
    let reply = match lease.conn().request(ROLE, false).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::debug!(node = %node, error = %e, "WAIT: ROLE failed");
            return Err(Failed::Retry); // the lease drops the broken connection
        }
    };
    lease.give_back();
    if reply.is_error() {
        let permanent =
            reply.raw.starts_with(b"-NOPERM") || reply.raw.starts_with(b"-ERR unknown command");
        return Err(if permanent {
            Failed::Refused(reply.raw)
        } else {
            Failed::Retry
        });
    }
    Ok(parse_role(&reply.raw))
}

/// `ROLE`'s reply: `[master, offset, [[host, port, offset] …]]` or
/// `[slave, host, port, state, offset]`.
fn parse_role(raw: &[u8]) -> Role {
    let Ok(Some((Value::Array(items), _))) = parse_value(raw) else {
        return Role::Other;
    };
    match (text(items.first()), items.get(1), items.get(4)) {
        (Some(b"master"), Some(Value::Integer(offset)), _) => {
            let replicas = match items.get(2) {
                Some(Value::Array(list)) => list.iter().filter_map(replica_addr).collect(),
                _ => Vec::new(),
            };
            Role::Primary(*offset, replicas)
        }
        (Some(b"slave"), _, Some(Value::Integer(offset))) => Role::Replica(*offset),
        _ => Role::Other,
    }
}

/// `[host, port, offset]` of a primary's ROLE reply as an address.
fn replica_addr(entry: &Value) -> Option<NodeAddr> {
    let Value::Array(fields) = entry else {
        return None;
    };
    let host = std::str::from_utf8(text(fields.first())?).ok()?;
    let port = match fields.get(1)? {
        Value::Integer(p) => u16::try_from(*p).ok()?,
        v => std::str::from_utf8(text(Some(v))?).ok()?.parse().ok()?,
    };
    Some(NodeAddr::from_host_port(host, port))
}

fn text(v: Option<&Value>) -> Option<&[u8]> {
    match v? {
        Value::Bulk(b) | Value::Simple(b) => Some(b),
        _ => None,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
