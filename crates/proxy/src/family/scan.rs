//! SCAN across the cluster with one client cursor, as a single Redis would give it.
//!
//! Each primary has its own keyspace and its own SCAN cursor, so slotgate walks the primaries
//! one after the other: every client call sends `SCAN <node cursor> [options…]` (MATCH,
//! COUNT, TYPE passed through unchanged) to exactly one primary and answers
//! `[client cursor, keys]`. When that primary's cursor comes back 0 the next call starts the
//! next primary at 0; after the last primary the client cursor is 0. Replicas are never asked.
//!
//! # The client cursor
//! A `u64` below 2^63 (so clients that parse cursors as signed 64-bit integers work too):
//!
//! ```text
//!  bit 63 | 62 ………………………… 26 | 25 ……… 10 | 9 …… 0
//!    0    |  node cursor (37)   | check (16) | position (10)
//! ```
//!
//! - **position**: the primary being scanned, as an index into the serving primaries ordered
//!   by the lowest slot each serves. A failover keeps every primary's slots, so positions do
//!   not move when a replica with another address takes over (an order by address would).
//! - **check**: 16 bits of an FNV-1a hash over the slot layout (every slot range and the
//!   position of the primary serving it), the position and, midway through a primary (node
//!   cursor not 0), that primary's address.
//! - **node cursor**: that primary's own cursor. Redis 7.0's cursor is below the size of the
//!   node's (larger, while rehashing) hash table, a power of two near its key count; 2^37
//!   buckets would be 1 TiB of bucket pointers, and Redis documents 2^32 keys per instance as
//!   its limit. A node cursor that does not fit gets an error rather than a wrong cursor.
//!
//! # What a full iteration guarantees
//! As Redis: every key present from the start to the end of a full iteration is returned at
//! least once, with MATCH/TYPE filtering applied by the nodes. With no change of topology each
//! key is returned exactly as often as its node returns it (once, unless the node's table
//! shrinks mid-scan). A change of topology between calls can invalidate a cursor:
//!
//! - a **failover of the primary being scanned**: the new primary is another process with
//!   another hash seed, where the old node cursor means nothing;
//! - a **reshard** (or any change of which slots go together) may move keys from a primary
//!   not yet scanned to one already scanned.
//!
//! slotgate guards against both three ways:
//!
//! 1. **The check.** When slotgate's slot map changed since the cursor was made, the check
//!    differs and the call is served as `SCAN 0`: the iteration restarts from the first
//!    primary.
//! 2. **The primary's own view when its scan starts.** The first call on a primary sends
//!    `CLUSTER SLOTS` to it just before `SCAN 0`, pipelined. If the slots the node says it
//!    serves differ from what the layout gave it, slotgate's map is stale: a refresh is
//!    asked for and the client gets no keys and a cursor that starts that primary again.
//!    The next calls go on once slotgate's map agrees with the node (a failover of a primary
//!    not scanned yet: nothing is repeated) or restart through the check (a reshard).
//! 3. **The primary's own view when its scan ends.** When its cursor comes back 0, slotgate
//!    asks it for `CLUSTER SLOTS` again before moving on; a difference restarts the
//!    iteration: the call's keys come with the cursor [`RESTART`].
//!
//! So every primary is seen, by the node itself, to serve exactly the layout's slots both
//! when its scan starts and when it ends, even while slotgate's own map lags behind the
//! cluster; one extra round trip per primary per iteration. A failover of a primary already
//! scanned or not scanned yet leaves an iteration valid. Keys may be returned again after a
//! restart, as SCAN allows. Limits: a layout change has a 2^-16 chance of leaving the check
//! equal; a slot that leaves a primary and comes back while that primary is being scanned,
//! or a primary restarted at the same address mid-scan (new hash seed), is not noticed; an
//! iteration only ends once the layout stays put long enough to finish it. SCAN is refused
//! (`-CLUSTERDOWN`) while slotgate knows no owner for some slot. Any well-formed `u64` is a
//! valid cursor, as in Redis; one slotgate did not make restarts the iteration. Cursors
//! depend only on the cluster's layout, so a client may continue through another slotgate
//! instance that sees the same cluster.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::{NodeAddr, SlotMap, SLOT_COUNT};
use slotgate_resp::{aggregate_children, encode, parse_value, Request};
use tokio::time::Instant;

use crate::protocol::Dialect;
use crate::replies;
use crate::runtime::budget::OutputBudget;
use crate::runtime::context::WorkerCtx;
use crate::session::op::{Event, Op, Route};
use crate::telemetry::metrics::{CmdResult, RefreshTrigger};

/// Low bits of the client cursor holding the primary's position.
const POSITION_BITS: u32 = 10;
/// Bits of the layout check, above the position.
const CHECK_BITS: u32 = 16;
/// Where the node cursor starts in the client cursor.
const NODE_CURSOR_SHIFT: u32 = POSITION_BITS + CHECK_BITS;
/// Node cursors must be below this (2^37): the client cursor then stays below 2^63.
pub(crate) const NODE_CURSOR_LIMIT: u64 = 1 << (63 - NODE_CURSOR_SHIFT);
/// Most primaries a cursor can name.
pub(crate) const MAX_PRIMARIES: usize = 1 << POSITION_BITS;
/// The cursor answered when the iteration must start again: position 0 with node cursor 0
/// is the start whatever the check says, and the check bit keeps it from reading as 0 (done).
pub(crate) const RESTART: u64 = 1 << POSITION_BITS;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Route `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`: one step on one primary, or the
/// error reply when there is none to take.
pub(crate) fn route(
    ctx: &WorkerCtx,
    req: &Request,
    deadline: Instant,
    budget: &Rc<OutputBudget>,
) -> Result<Box<ScanOp>, Bytes> {
    let Some(cursor) = parse_cursor(req.arg(1)) else {
        return Err(Bytes::from_static(replies::INVALID_CURSOR));
    };
    let map = ctx.topology.map();
    let layout = layout(&map);
    if !layout.complete || layout.primaries.is_empty() {
        ctx.topology.request_refresh(RefreshTrigger::Error);
        return Err(Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED));
    }
    if layout.primaries.len() > MAX_PRIMARIES {
        return Err(replies::scan_too_many_primaries(MAX_PRIMARIES));
    }
    let (position, node_cursor) = layout.resume(cursor);
    let step = layout.step(position);
    let route = Route::Node(Box::new(step.node.clone()));
    let mut ops = Vec::with_capacity(2);
    if node_cursor == 0 {
        // The primary's slots as its scan starts, on the same connection, just before.
        ops.push(Op::start(
            ctx,
            route.clone(),
            cluster_slots(),
            true,
            deadline,
            Dialect::RESP2,
            budget,
        ));
    }
    ops.push(Op::start(
        ctx,
        route,
        node_command(req, node_cursor),
        true,
        deadline,
        // Parsed and re-encoded here (the same shape in RESP3): RESP2 connections suffice.
        Dialect::RESP2,
        budget,
    ));
    Ok(Box::new(ScanOp {
        step,
        deadline,
        ops,
        keys: None,
        outcome: CmdResult::Ok,
        done: None,
        budget: Rc::clone(budget),
    }))
}

/// One SCAN call's place in the iteration.
pub(crate) struct Step {
    /// The primary asked.
    node: NodeAddr,
    /// Its position in the layout.
    position: u16,
    /// The layout check for `position`.
    check: u16,
    /// Hash of the slot ranges the layout gives this primary.
    own: u64,
    /// The client cursor that starts this primary again (its node cursor 0).
    start: u64,
    /// The client cursor once this node's cursor is 0: the next primary at 0, or 0.
    after: u64,
}

/// One client SCAN call in flight: `[CLUSTER SLOTS, SCAN 0]` when a primary's scan starts
/// (else `[SCAN c]`), then `CLUSTER SLOTS` again when the primary says it is done, before
/// the client hears that.
pub(crate) struct ScanOp {
    step: Step,
    deadline: Instant,
    /// The ops of the current stage.
    ops: Vec<Op>,
    /// The node's keys, kept while its slots are checked at the end of its scan.
    keys: Option<Bytes>,
    /// The worst outcome of the ops so far.
    outcome: CmdResult,
    /// The client's reply, once known.
    done: Option<Bytes>,
    /// The client's output budget, for the ops of later stages.
    budget: Rc<OutputBudget>,
}

// === impl ScanOp ===

impl ScanOp {
    /// Advance with what has already arrived; true when the reply can be written.
    pub fn poll_sync(&mut self, ctx: &WorkerCtx, now: Instant) -> bool {
        while self.done.is_none() {
            let mut all = true;
            for op in &mut self.ops {
                all &= op.poll_sync(ctx, now);
            }
            if !all {
                return false;
            }
            self.advance(ctx);
        }
        true
    }

    /// Wait for the next event of the first unfinished op. Cancel-safe.
    pub async fn next_event(&mut self) -> (usize, Event) {
        match self
            .ops
            .iter_mut()
            .enumerate()
            .find(|(_, op)| !op.is_done())
        {
            Some((i, op)) => (i, op.next_event().await),
            None => std::future::pending().await,
        }
    }

    /// The earliest deadline of the ops it waits for.
    pub fn deadline(&self) -> Option<Instant> {
        self.ops.iter().filter_map(Op::deadline).min()
    }

    /// Time out the ops whose deadline passed.
    pub fn on_timeout(&mut self, ctx: &WorkerCtx, now: Instant) {
        for i in 0..self.ops.len() {
            if self.ops[i].deadline().is_some_and(|d| d <= now) {
                self.on_event(ctx, i, Event::Timeout);
            }
        }
    }

    /// Apply an event from [`ScanOp::next_event`].
    pub fn on_event(&mut self, ctx: &WorkerCtx, index: usize, event: Event) {
        if let Some(op) = self.ops.get_mut(index) {
            op.on_event(ctx, event);
        }
        if self.done.is_none() && self.ops.iter().all(Op::is_done) {
            self.advance(ctx);
        }
    }

    /// Append the client's reply; returns how the command ended.
    pub fn write_reply(self, out: &mut BytesMut) -> CmdResult {
        match self.done {
            Some(reply) => {
                out.extend_from_slice(&reply);
                self.outcome
            }
            None => {
                out.extend_from_slice(replies::UNEXPECTED_REPLY);
                CmdResult::Error
            }
        }
    }

    /// Every op of the stage has finished: decide the reply or start the next stage.
    fn advance(&mut self, ctx: &WorkerCtx) {
        for op in &self.ops {
            self.outcome = worse(self.outcome, op.outcome());
        }
        let replies: Vec<Bytes> = self.ops.drain(..).map(|mut op| op.take_reply()).collect();
        if let Some(err) = replies
            .iter()
            .find(|r| matches!(r.first(), Some(b'-' | b'!')))
        {
            self.done = Some(err.clone());
            return;
        }
        let (next, keys) = match self.keys.take() {
            None => match self.first_stage(&replies) {
                Ok(Some(done)) => done,
                Ok(None) => {
                    let route = Route::Node(Box::new(self.step.node.clone()));
                    self.ops = vec![Op::start(
                        ctx,
                        route,
                        cluster_slots(),
                        true,
                        self.deadline,
                        Dialect::RESP2,
                        &self.budget,
                    )];
                    return;
                }
                Err(reply) => {
                    self.done = Some(reply);
                    return;
                }
            },
            Some(keys) => match self.step.owns_what_it_says(&replies[0]) {
                Some(true) => (self.step.after, keys),
                Some(false) => (RESTART, keys),
                None => {
                    self.done = Some(Bytes::from_static(replies::UNEXPECTED_REPLY));
                    return;
                }
            },
        };
        if next == RESTART || next == self.step.start {
            tracing::debug!(node = %self.step.node, restart = next == RESTART, "SCAN: a primary does not serve the slots slotgate's map gives it");
            ctx.topology.request_refresh(RefreshTrigger::Error);
        }
        let mut out = BytesMut::with_capacity(keys.len() + 32);
        encode::array_header(&mut out, 2);
        encode::bulk(&mut out, next.to_string().as_bytes());
        out.extend_from_slice(&keys);
        self.done = Some(out.freeze());
    }

    /// The SCAN reply (after the start check when there was one): `Ok(Some((cursor, keys)))`
    /// for the client, `Ok(None)` when the node is done and must be checked first, `Err` for
    /// an error reply.
    fn first_stage(&mut self, replies: &[Bytes]) -> Result<Option<(u64, Bytes)>, Bytes> {
        let Some((node_cursor, keys)) = replies.last().and_then(split_scan_reply) else {
            return Err(Bytes::from_static(replies::UNEXPECTED_REPLY));
        };
        if replies.len() == 2 {
            match self.step.owns_what_it_says(&replies[0]) {
                Some(true) => {}
                // Nothing of this primary counts yet: no keys, and it starts again.
                Some(false) => return Ok(Some((self.step.start, Bytes::from_static(b"*0\r\n")))),
                None => return Err(Bytes::from_static(replies::UNEXPECTED_REPLY)),
            }
        }
        match node_cursor {
            0 => {
                self.keys = Some(keys);
                Ok(None)
            }
            c if c >= NODE_CURSOR_LIMIT => Err(replies::scan_cursor_too_large(
                self.step.node.as_str(),
                c,
                NODE_CURSOR_LIMIT,
            )),
            c => Ok(Some((
                Cursor {
                    position: self.step.position,
                    check: self.step.check,
                    node_cursor: c,
                }
                .encode(),
                keys,
            ))),
        }
    }
}

/// The more serious of two outcomes, for `slotgate_commands_total{result}`.
fn worse(a: CmdResult, b: CmdResult) -> CmdResult {
    let rank = |r: CmdResult| match r {
        CmdResult::Ok => 0,
        CmdResult::Redirected => 1,
        CmdResult::Error => 2,
        CmdResult::Timeout => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// A node's `[cursor, keys]`: the cursor's value and the keys array as the node sent it.
fn split_scan_reply(reply: &Bytes) -> Option<(u64, Bytes)> {
    let mut parts = aggregate_children(reply).filter(|p| p.len() == 2)?;
    let cursor = match parse_value(&parts[0]) {
        Ok(Some((v, _))) => std::str::from_utf8(v.as_bytes()?).ok()?.parse().ok()?,
        _ => return None,
    };
    if !matches!(parts[1].first(), Some(b'*' | b'~')) {
        return None;
    }
    Some((cursor, parts.pop()?))
}

/// `CLUSTER SLOTS`, as sent to a primary to learn which slots it serves.
fn cluster_slots() -> Bytes {
    Bytes::from_static(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n")
}

/// Parse a cursor argument exactly as Redis 7.0 does (`strtoul` base 10, then reject a
/// leading space, trailing bytes and overflow): `""` is 0, `"-1"` is 2^64-1, `"+5"` is 5.
/// `None` means `-ERR invalid cursor`.
pub(crate) fn parse_cursor(arg: &[u8]) -> Option<u64> {
    // Redis hands strtoul a C string: it ends at the first NUL.
    let arg = arg.split(|&b| b == 0).next().unwrap_or_default();
    if arg
        .first()
        .is_some_and(|&b| b" \t\n\x0b\x0c\r".contains(&b))
    {
        return None;
    }
    if arg.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match arg[0] {
        b'-' => (true, &arg[1..]),
        b'+' => (false, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// `SCAN <node cursor> <the client's options>`, named as the client named it.
fn node_command(req: &Request, node_cursor: u64) -> Bytes {
    let cursor = node_cursor.to_string();
    let mut args: Vec<&[u8]> = Vec::with_capacity(req.argc());
    args.push(req.arg(0));
    args.push(cursor.as_bytes());
    args.extend(req.args().skip(2));
    let mut buf = BytesMut::new();
    encode::command(&mut buf, &args);
    buf.freeze()
}

// === impl Step ===

impl Step {
    /// Whether the node's own `CLUSTER SLOTS` says it serves exactly the slots the layout
    /// gave it; `None` for a reply that is not a slot table.
    fn owns_what_it_says(&self, reply: &Bytes) -> Option<bool> {
        let value = match parse_value(reply) {
            Ok(Some((v, _))) => v,
            _ => return None,
        };
        let view = SlotMap::from_cluster_slots(&value, self.node.as_str()).ok()?;
        Some(own_digest(&view, &self.node) == self.own)
    }
}

/// Hash of the slot ranges `map` gives the primary `node` (in slot order).
fn own_digest(map: &SlotMap, node: &NodeAddr) -> u64 {
    let shards = map.shards();
    map.ranges()
        .into_iter()
        .filter(|&(_, _, shard)| shards[shard].primary == *node)
        .fold(FNV_OFFSET, |h, (start, end, _)| {
            fnv1a(fnv1a(h, &start.to_le_bytes()), &end.to_le_bytes())
        })
}

// === impl Cursor ===

/// A client cursor's fields (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    position: u16,
    check: u16,
    node_cursor: u64,
}

impl Cursor {
    fn encode(self) -> u64 {
        debug_assert!((self.position as usize) < MAX_PRIMARIES);
        debug_assert!(self.node_cursor < NODE_CURSOR_LIMIT);
        (self.node_cursor << NODE_CURSOR_SHIFT)
            | (u64::from(self.check) << POSITION_BITS)
            | u64::from(self.position)
    }

    /// The fields of any `u64`; the node cursor may be out of range (bit 63 set).
    fn decode(cursor: u64) -> Cursor {
        Cursor {
            position: (cursor & (MAX_PRIMARIES as u64 - 1)) as u16,
            check: ((cursor >> POSITION_BITS) & ((1 << CHECK_BITS) - 1)) as u16,
            node_cursor: cursor >> NODE_CURSOR_SHIFT,
        }
    }
}

// === impl Layout ===

/// The serving primaries of one slot map in scan order, and the hash their cursors carry.
struct Layout {
    map_id: u64,
    /// Primaries ordered by the lowest slot each serves.
    primaries: Vec<NodeAddr>,
    /// FNV-1a over every slot range `(start, end, position)`.
    digest: u64,
    /// Per position: FNV-1a over that primary's slot ranges `(start, end)`.
    own: Vec<u64>,
    /// Every slot has an owner.
    complete: bool,
}

thread_local! {
    /// The last layout built on this worker thread (one per slot map, not per call).
    static LAYOUT: RefCell<Option<Rc<Layout>>> = const { RefCell::new(None) };
}

/// The layout of `map`, built once per map on each worker.
fn layout(map: &SlotMap) -> Rc<Layout> {
    LAYOUT.with(|cell| {
        let mut cell = cell.borrow_mut();
        match &*cell {
            Some(l) if l.map_id == map.id() => Rc::clone(l),
            _ => {
                let l = Rc::new(Layout::of(map));
                *cell = Some(Rc::clone(&l));
                l
            }
        }
    })
}

/// 16 bits of a 64-bit hash.
fn fold(h: u64) -> u16 {
    (h ^ (h >> 16) ^ (h >> 32) ^ (h >> 48)) as u16
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

impl Layout {
    fn of(map: &SlotMap) -> Layout {
        let mut position_of = vec![u16::MAX; map.shards().len()];
        let mut primaries = Vec::new();
        let mut digest = FNV_OFFSET;
        let mut own = Vec::new();
        let mut covered = 0;
        for (start, end, shard) in map.ranges() {
            if position_of[shard] == u16::MAX {
                position_of[shard] = primaries.len() as u16;
                primaries.push(map.shards()[shard].primary.clone());
                own.push(FNV_OFFSET);
            }
            covered += usize::from(end - start) + 1;
            let mine = &mut own[position_of[shard] as usize];
            *mine = fnv1a(fnv1a(*mine, &start.to_le_bytes()), &end.to_le_bytes());
            for v in [start, end, position_of[shard]] {
                digest = fnv1a(digest, &v.to_le_bytes());
            }
        }
        Layout {
            map_id: map.id(),
            primaries,
            digest,
            own,
            complete: covered == SLOT_COUNT,
        }
    }

    /// The check a cursor midway through the primary at `position` carries: the layout and
    /// that primary's address (its node cursor is only good on that very node).
    fn check(&self, position: usize) -> u16 {
        let h = fnv1a(self.digest, &(position as u16).to_le_bytes());
        fold(fnv1a(h, self.primaries[position].as_str().as_bytes()))
    }

    /// The check a cursor at the start of the primary at `position` carries: the layout
    /// only, so a failover of a primary not scanned yet does not restart the iteration.
    fn start_check(&self, position: usize) -> u16 {
        fold(fnv1a(self.digest, &(position as u16).to_le_bytes()))
    }

    /// Where a client cursor continues: `(position, node cursor)`; `(0, 0)` for cursor 0 and
    /// for a cursor made under another layout or by someone else (the iteration restarts).
    fn resume(&self, cursor: u64) -> (usize, u64) {
        if cursor == 0 {
            return (0, 0);
        }
        let c = Cursor::decode(cursor);
        let p = c.position as usize;
        if p == 0 && c.node_cursor == 0 {
            return (0, 0); // RESTART, whatever its check
        }
        let valid = p < self.primaries.len()
            && c.node_cursor < NODE_CURSOR_LIMIT
            && c.check
                == match c.node_cursor {
                    0 => self.start_check(p),
                    _ => self.check(p),
                };
        if valid {
            (p, c.node_cursor)
        } else {
            tracing::debug!(
                cursor,
                "SCAN cursor from another cluster layout; restarting the iteration"
            );
            (0, 0)
        }
    }

    /// The step scanning the primary at `position`.
    fn step(&self, position: usize) -> Step {
        let start_of = |p: usize| match p {
            0 => RESTART,
            p => Cursor {
                position: p as u16,
                check: self.start_check(p),
                node_cursor: 0,
            }
            .encode(),
        };
        let after = if position + 1 < self.primaries.len() {
            start_of(position + 1)
        } else {
            0
        };
        Step {
            node: self.primaries[position].clone(),
            position: position as u16,
            check: self.check(position),
            own: self.own[position],
            start: start_of(position),
            after,
        }
    }
}

#[cfg(test)]
mod tests;
