//! WAITAOF through the proxy: "block until this connection's earlier writes are fsynced to
//! the AOF of the primary (`numlocal` 0 or 1) and of `numreplicas` replicas, or `timeout` ms
//! pass; answer `[local, replicas]`".
//!
//! As for WAIT (see the parent module), forwarding it cannot mean that: the client's writes
//! went over connections shared with other clients. Unlike WAIT it cannot be emulated by
//! polling either: no node tells its fsynced AOF offset. So slotgate makes a connection of
//! its own stand for the client on each primary, and lets the primary count:
//!
//! 1. The work starts when the entry reaches the front of the client's reply queue
//!    ([`Task::deferred`]): every earlier write of the client has been answered, so it is in
//!    its primary's replication stream.
//! 2. The primaries are those WAIT would look at ([`anchors`]: the shards serving the slots
//!    the client wrote to, or every serving shard when it wrote everywhere or nothing).
//! 3. On each, on a dedicated connection from the worker's pool (RESP2, database 0, the
//!    upstream user), slotgate runs [`MARK`]: a script that sets and deletes the key
//!    `slotgate:waitaof:{N}`, N the smallest integer whose slot that primary serves. It
//!    leaves no data but propagates, so the connection's write offset is now at least the
//!    client's writes there. Then it sends `WAITAOF numlocal numreplicas timeout` on that
//!    connection (the timeout less the time already spent; 0 stays 0, for ever).
//! 4. The answer is the element-wise minimum of the primaries' answers. An error reply
//!    (`-ERR WAITAOF cannot be used when numlocal is set but appendonly is disabled.`) is
//!    the answer at once, as the node words it. A primary that cannot be reached (or
//!    answers MOVED, READONLY, LOADING …) is asked again, the current slot map saying who
//!    serves its slot; one that has not answered [`LATE_REPLY`] after the timeout counts
//!    `[0, 0]`.
//!
//! Arguments are checked the way Redis parses them only to know the timeout: when they do
//! not parse, `WAITAOF` goes as it is to one primary, without the script, so that the node
//! answers its own error text. On servers older than Redis 7.2 (which lack WAITAOF) the
//! dispatcher answers Redis's unknown-command error before this module is reached.
//! `op_timeout` does not apply; a client that leaves drops the task, its queries and their
//! connections. `WAITAOF` inside MULTI is queued like WAIT and runs in the transaction on
//! the node, which answers at once.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use slotgate_cluster::{NodeAddr, SlotMap};
use slotgate_resp::{encode, parse_ll, parse_value, ErrorClass, ReplyKind, Request, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{anchors, sleep_until_opt, WrittenSlots, RETRY_DELAY};
use crate::protocol::Dialect;
use crate::replies;
use crate::runtime::context::WorkerCtx;
use crate::session::entry::Entry;
use crate::session::task::{Task, TaskTx};
use crate::telemetry::metrics::RefreshTrigger;
use crate::upstream::dedicated::DedicatedPool;
use crate::upstream::topology::Topology;

/// The script run before `WAITAOF` on each primary: it writes and deletes its key, which
/// propagates (as `MULTI SET DEL EXEC`) and leaves nothing behind.
const MARK: &str = "redis.call('SET',KEYS[1],'1') redis.call('DEL',KEYS[1])";
/// The key [`MARK`] writes, before its hash tag.
const MARK_PREFIX: &str = "slotgate:waitaof:";
/// How long past the timeout a primary's own answer is still awaited.
const LATE_REPLY: Duration = Duration::from_millis(100);

/// `WAITAOF numlocal numreplicas timeout` outside MULTI (arity already checked).
pub(crate) fn route(
    ctx: &WorkerCtx,
    written: &WrittenSlots,
    req: &Request,
    budget: &Rc<crate::runtime::budget::OutputBudget>,
) -> Entry {
    let job = Job {
        pool: Rc::clone(&ctx.dedicated),
        topology: Arc::clone(&ctx.topology),
        written: written.clone(),
        numlocal: Bytes::copy_from_slice(req.arg(1)),
        numreplicas: Bytes::copy_from_slice(req.arg(2)),
        timeout: parse_timeout(req),
        wire: req.wire(),
    };
    Entry::Task(Task::deferred(budget, move |tx| job.run(tx)), None)
}

/// The timeout when all three arguments parse as Redis would take them: `Some(None)` for
/// 0 (for ever); `None` when the node should answer an argument error.
fn parse_timeout(req: &Request) -> Option<Option<Duration>> {
    let numlocal = parse_ll(req.arg(1))?;
    let numreplicas = parse_ll(req.arg(2))?;
    let timeout = parse_ll(req.arg(3))?;
    if !(0..=1).contains(&numlocal) || numreplicas < 0 || timeout < 0 {
        return None;
    }
    // Redis refuses a timeout that overflows its clock ("timeout is out of range").
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if timeout > i64::MAX - now_ms {
        return None;
    }
    Some((timeout > 0).then(|| Duration::from_millis(timeout.unsigned_abs())))
}

/// One WAITAOF, from the moment its entry reaches the front of the reply queue.
struct Job {
    pool: Rc<DedicatedPool>,
    topology: Arc<Topology>,
    written: WrittenSlots,
    numlocal: Bytes,
    numreplicas: Bytes,
    /// `None`: the arguments do not parse; `Some(None)`: wait for ever.
    timeout: Option<Option<Duration>>,
    /// The client's request, for a node to check its arguments.
    wire: Bytes,
}

// === impl Job ===

impl Job {
    /// Ask, and send the answer unless the client leaves first; then everything the job
    /// started is dropped, connections in use included.
    async fn run(self, tx: TaskTx) {
        tx.answer(self.answer()).await
    }

    async fn answer(&self) -> Bytes {
        let start = Instant::now();
        let anchors = anchors(&self.topology.map(), &self.written);
        let Some(&first) = anchors.first() else {
            self.topology.request_refresh(RefreshTrigger::Error);
            return Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED);
        };
        let Some(timeout) = self.timeout else {
            // Arguments the node refuses: its own words, from one primary.
            return self.check_arguments(first).await;
        };
        let deadline = timeout.and_then(|t| start.checked_add(t));
        let cutoff = deadline.and_then(|d| d.checked_add(LATE_REPLY));
        // Dropping the set (at return, or when the client leaves) aborts every query.
        let mut asks = JoinSet::new();
        for slot in anchors {
            let ask = Ask {
                pool: Rc::clone(&self.pool),
                topology: Arc::clone(&self.topology),
                slot,
                numlocal: self.numlocal.clone(),
                numreplicas: self.numreplicas.clone(),
                deadline,
            };
            asks.spawn_local(ask.run());
        }
        let shards = asks.len();
        let mut least: Option<(i64, i64)> = None;
        let mut answered = 0;
        while answered < shards {
            let reply = tokio::select! {
                r = asks.join_next() => r,
                _ = sleep_until_opt(cutoff) => break,
            };
            let Some(Ok(reply)) = reply else { break };
            let Some(counts) = counts(&reply) else {
                return reply; // an error (or a reply that is no count): as the node said it
            };
            answered += 1;
            least = Some(least.map_or(counts, |(l, r)| (l.min(counts.0), r.min(counts.1))));
        }
        let (local, replicas) = match least {
            Some(least) if answered == shards => least,
            _ => (0, 0), // a primary never answered: nothing is known to be fsynced there
        };
        tracing::debug!(shards, answered, local, replicas, took = ?start.elapsed(), "WAITAOF answered");
        let mut out = BytesMut::with_capacity(16);
        encode::array_header(&mut out, 2);
        encode::integer(&mut out, local);
        encode::integer(&mut out, replicas);
        out.freeze()
    }

    /// The client's `WAITAOF` as it is, to the primary serving `slot`: an argument error.
    async fn check_arguments(&self, slot: u16) -> Bytes {
        loop {
            let primary = self.topology.map().primary_for_slot(slot).cloned();
            if let Some(primary) = primary {
                if let Ok(mut lease) = self.pool.take(&primary, Dialect::RESP2).await {
                    if let Ok(reply) = lease.conn().request(&self.wire, false).await {
                        lease.give_back();
                        return reply.raw;
                    }
                }
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }
}

/// `[local, replicas]` from a primary's WAITAOF reply; `None` for anything else.
fn counts(reply: &[u8]) -> Option<(i64, i64)> {
    match parse_value(reply) {
        Ok(Some((Value::Array(items), _))) => match items.as_slice() {
            [Value::Integer(local), Value::Integer(replicas)] => Some((*local, *replicas)),
            _ => None,
        },
        _ => None,
    }
}

/// WAITAOF on the primary serving one slot, asked again until it answers.
struct Ask {
    pool: Rc<DedicatedPool>,
    topology: Arc<Topology>,
    /// A slot of the shard (see [`anchors`]); its primary now is the one asked.
    slot: u16,
    numlocal: Bytes,
    numreplicas: Bytes,
    /// When the client's timeout passes (`None`: never).
    deadline: Option<Instant>,
}

impl Ask {
    /// The primary's answer: its `[local, replicas]` reply or an error to give the client.
    async fn run(self) -> Bytes {
        // Candidate hash tags start here; past a tag whose slot is being migrated.
        let mut from = 0;
        loop {
            let target = {
                let map = self.topology.map();
                let primary = map.primary_for_slot(self.slot).cloned();
                primary.map(|p| (p, mark_key(&map, self.slot, from)))
            };
            match target {
                Some((primary, (tag, key))) => match self.ask(&primary, &key).await {
                    Ok(reply) => return reply,
                    Err(Some(ErrorClass::Ask | ErrorClass::TryAgain)) => from = tag + 1,
                    Err(Some(ErrorClass::Moved | ErrorClass::ReadOnly)) => {
                        self.topology.request_refresh(RefreshTrigger::Moved)
                    }
                    Err(_) => {}
                },
                None => self.topology.request_refresh(RefreshTrigger::Error),
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }

    /// [`MARK`] on `key`, then WAITAOF, on one dedicated connection to `primary`. `Err`: ask
    /// again (with the class of the error that said so, if any).
    async fn ask(&self, primary: &NodeAddr, key: &[u8]) -> Result<Bytes, Option<ErrorClass>> {
        let mut lease = self.pool.take(primary, Dialect::RESP2).await.map_err(|reply| {
            tracing::debug!(%primary, reply = %String::from_utf8_lossy(&reply).trim_end(), "WAITAOF: no connection");
            None
        })?;
        let mut wire = BytesMut::new();
        encode::command(&mut wire, &[b"EVAL", MARK.as_bytes(), b"1", key]);
        let marked = lease.conn().request(&wire, false).await.map_err(|e| {
            tracing::debug!(%primary, error = %e, "WAITAOF: the script failed");
            None // the lease drops the broken connection
        })?;
        if let ReplyKind::Error(class) = marked.kind {
            lease.give_back();
            let transient = class != ErrorClass::Other
                || marked.raw.starts_with(b"-BUSY")
                || marked.raw.starts_with(b"-MASTERDOWN");
            if transient {
                tracing::debug!(%primary, reply = %String::from_utf8_lossy(&marked.raw).trim_end(), "WAITAOF: the script must run again");
                return Err(Some(class));
            }
            return Ok(replies::waitaof_mark_refused(primary.as_str(), &marked.raw));
        }
        let timeout = match self.deadline {
            None => 0,
            // At least 1: 0 would be for ever.
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .max(1),
        };
        let timeout = timeout.to_string();
        wire.clear();
        encode::command(
            &mut wire,
            &[
                &b"WAITAOF"[..],
                &self.numlocal[..],
                &self.numreplicas[..],
                timeout.as_bytes(),
            ],
        );
        let reply = lease.conn().request(&wire, false).await.map_err(|e| {
            tracing::debug!(%primary, error = %e, "WAITAOF failed");
            None
        })?;
        lease.give_back();
        Ok(reply.raw)
    }
}

/// The key [`MARK`] writes on the primary serving `slot`: `slotgate:waitaof:{N}`, N the
/// smallest integer from `from` whose slot that primary serves (in the same shard of
/// `map`; a slot nobody serves: another unserved slot). A few CRC16s for a shard with a
/// fair share of the slots; every slot is the slot of some N below 110 000.
fn mark_key(map: &SlotMap, slot: u16, from: u32) -> (u32, Vec<u8>) {
    let shard = map.shard_index(slot);
    let key = |n: u32| format!("{MARK_PREFIX}{{{n}}}").into_bytes();
    let tag_slot = |n: u32| slotgate_cluster::slot(n.to_string().as_bytes());
    let candidates = from..from.saturating_add(1 << 20);
    let n = candidates
        .into_iter()
        .find(|&n| map.shard_index(tag_slot(n)) == shard)
        .unwrap_or(from);
    (n, key(n))
}

#[cfg(test)]
mod tests;
