//! The servers' diagnostics as one server's: `SLOWLOG GET`, `LATENCY LATEST|HISTORY|
//! HISTOGRAM|DOCTOR|GRAPH`, Valkey's `COMMANDLOG GET` and `CLUSTER SLOT-STATS` go to every
//! primary serving slots, with the client's own bytes and in the client's protocol, and the
//! replies become one (docs/compatibility.md, "Diagnostic commands"):
//!
//! - log entries (`SLOWLOG GET [n]`, `COMMANDLOG GET n type`): every primary's, newest first
//!   by timestamp (seconds; a primary's own order within a second), the first `n` (SLOWLOG's
//!   default 10, `-1` all). Entries stay as the node wrote them: the id is the node's own and
//!   the client address is slotgate's connection to that node;
//! - `LATENCY LATEST`: one row per event: the latest sample of whichever primary saw the event
//!   last, the largest all-time maximum, and any further counters (Valkey's sum and count)
//!   summed;
//! - `LATENCY HISTORY event`: the primaries' samples by timestamp, oldest first, one per
//!   second (the largest), at most the 160 newest, as one server keeps;
//! - `LATENCY HISTOGRAM [cmd …]`: per command, calls summed and the cumulative bucket counts
//!   added, so each bucket counts the calls of every primary at or below it;
//! - `LATENCY DOCTOR`, `LATENCY GRAPH event`: human text, each primary's under a `# <node>`
//!   header (a primary's error as its text; GRAPH with no samples anywhere gets the error);
//! - `CLUSTER SLOT-STATS SLOTSRANGE a b`: each primary reports the slots it serves; merged in
//!   slot order. `ORDERBY metric [LIMIT n] [ASC|DESC]`: every primary's best `n`, sorted again
//!   by the metric (ties by slot) and cut to `n`. Cluster mode only.
//!
//! An error from any primary (a bad argument, an unreachable node) is the reply, as for a
//! single server; DOCTOR and GRAPH show it under that primary instead. SLOWLOG LEN|RESET,
//! LATENCY RESET and COMMANDLOG LEN|RESET need no rule of their own: integers summed, `+OK`
//! when every primary says so (`session::merge`).

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::NodeAddr;
use slotgate_resp::{aggregate_children, encode, parse_value, Request, Value};
use tokio::time::Instant;

use crate::protocol::{Dialect, Protocol};
use crate::replies;
use crate::runtime::budget::OutputBudget;
use crate::runtime::context::WorkerCtx;
use crate::session::entry::{Entry, Fanout};
use crate::session::merge::{Merge, WholeMerge};
use crate::session::op::Op;
use crate::telemetry::metrics::RefreshTrigger;

/// The samples one server keeps per latency event (Redis's `LATENCY_TS_LEN`).
const HISTORY_LEN: usize = 160;
/// Entries `SLOWLOG GET` returns without a count, as Redis.
const DEFAULT_LOG_COUNT: usize = 10;

/// How the replies of one diagnostic command become one reply.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    /// Log entries newest first; the first `limit` of them (`None`: all).
    Log { limit: Option<usize> },
    /// One row per latency event.
    Latest,
    /// One event's samples by timestamp.
    History,
    /// Per-command cumulative histograms, added.
    Histogram,
    /// Each primary's text under its address.
    Text,
    /// Per-slot statistics.
    SlotStats(SlotOrder),
}

/// The order `CLUSTER SLOT-STATS` asked for.
#[derive(Debug, Clone, PartialEq)]
enum SlotOrder {
    /// `SLOTSRANGE a b`: by slot.
    BySlot,
    /// `ORDERBY metric [LIMIT n] [ASC|DESC]`.
    ByMetric {
        metric: Vec<u8>,
        limit: usize,
        ascending: bool,
    },
}

impl Shape {
    /// The merge of command `name` (table name) called as `req`; `None` for a command this
    /// module does not merge.
    fn of(name: &str, req: &Request) -> Option<Shape> {
        let arg = |i: usize| (i < req.argc()).then(|| req.arg(i));
        Some(match name {
            "slowlog|get" => Shape::Log {
                limit: match arg(2) {
                    None => Some(DEFAULT_LOG_COUNT),
                    Some(n) => count(n),
                },
            },
            "commandlog|get" => Shape::Log {
                limit: arg(2).and_then(count),
            },
            "latency|latest" => Shape::Latest,
            "latency|history" => Shape::History,
            "latency|histogram" => Shape::Histogram,
            "latency|doctor" | "latency|graph" => Shape::Text,
            "cluster|slot-stats" => Shape::SlotStats(slot_order(req)),
            _ => return None,
        })
    }
}

/// A log count: `Some(n)` for `n ≥ 0`, `None` (all) for `-1` or anything the nodes refuse
/// (their error is the reply then).
fn count(arg: &[u8]) -> Option<usize> {
    std::str::from_utf8(arg).ok()?.parse::<usize>().ok()
}

/// The order of `CLUSTER SLOT-STATS …`: by metric after `ORDERBY`, by slot otherwise.
fn slot_order(req: &Request) -> SlotOrder {
    if req.argc() < 4 || !req.arg(2).eq_ignore_ascii_case(b"ORDERBY") {
        return SlotOrder::BySlot;
    }
    let (mut limit, mut ascending) = (usize::MAX, false);
    let mut i = 4;
    while i < req.argc() {
        let word = req.arg(i);
        if word.eq_ignore_ascii_case(b"LIMIT") && i + 1 < req.argc() {
            limit = count(req.arg(i + 1)).unwrap_or(usize::MAX);
            i += 1;
        } else if word.eq_ignore_ascii_case(b"ASC") {
            ascending = true;
        } else if word.eq_ignore_ascii_case(b"DESC") {
            ascending = false;
        }
        i += 1;
    }
    SlotOrder::ByMetric {
        metric: req.arg(3).to_ascii_lowercase(),
        limit,
        ascending,
    }
}

/// A diagnostic fan-out: how to merge, the primaries in the order of the replies, and the
/// client's protocol (the replies arrive in it too).
pub(crate) struct Diagnostics {
    shape: Shape,
    nodes: Vec<NodeAddr>,
    proto: Protocol,
}

impl WholeMerge for Diagnostics {
    fn write(&self, replies: &[Bytes], out: &mut BytesMut) {
        write_merged(self, replies, out)
    }
}

/// Send a diagnostic command (table family `all_shards:diagnostic`) to every primary serving
/// slots, as the client sent it, in the client's dialect; merged by [`write_merged`].
pub(crate) fn route(
    ctx: &WorkerCtx,
    name: &str,
    req: &Request,
    deadline: Instant,
    dialect: Dialect,
    budget: &Rc<OutputBudget>,
) -> Entry {
    // Slot statistics exist only in a cluster, like every CLUSTER command.
    if name == "cluster|slot-stats" && ctx.one_primary() {
        return Entry::Ready(Bytes::from_static(replies::CLUSTER_DISABLED));
    }
    let Some(shape) = Shape::of(name, req) else {
        return Entry::Ready(replies::unsupported(name));
    };
    let nodes = ctx.routes.serving_primaries();
    if nodes.is_empty() {
        ctx.topology.request_refresh(RefreshTrigger::Error);
        return Entry::Ready(Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED));
    }
    // Every one of them only reads: safe to send again after a lost connection.
    let wire = req.wire();
    let ops = Op::to_each(ctx, nodes.clone(), &wire, true, deadline, dialect, budget);
    let merge = Merge::Whole(Box::new(Diagnostics {
        shape,
        nodes,
        proto: dialect.proto,
    }));
    Entry::Fanout(Box::new(Fanout { ops, merge }))
}

fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-') | Some(b'!'))
}

/// The merged reply of `d`'s fan-out (`replies[i]` from `d.nodes[i]`), see the module's
/// rules; a reply of a shape the rule cannot read gives [`replies::UNEXPECTED_REPLY`].
pub(crate) fn write_merged(d: &Diagnostics, replies: &[Bytes], out: &mut BytesMut) {
    let first_error = replies.iter().find(|r| is_error(r));
    if d.shape != Shape::Text || replies.iter().all(|r| is_error(r)) {
        if let Some(error) = first_error {
            return out.extend_from_slice(error);
        }
    }
    let mut merged = BytesMut::new();
    let done = match &d.shape {
        Shape::Log { limit } => merge_log(replies, *limit, &mut merged),
        Shape::Latest => merge_latest(replies, &mut merged),
        Shape::History => merge_history(replies, &mut merged),
        Shape::Histogram => merge_histogram(replies, d.proto, &mut merged),
        Shape::Text => merge_text(&d.nodes, replies, d.proto, &mut merged),
        Shape::SlotStats(order) => merge_slot_stats(replies, order, &mut merged),
    };
    match done {
        Some(()) => out.extend_from_slice(&merged),
        None => out.extend_from_slice(replies::UNEXPECTED_REPLY),
    }
}

/// One complete reply parsed.
fn value(reply: &[u8]) -> Option<Value> {
    match parse_value(reply) {
        Ok(Some((v, _))) => Some(v),
        _ => None,
    }
}

/// A map (RESP3) or a flat `[key, value, …]` array (RESP2) as pairs.
fn pairs(v: &Value) -> Option<Vec<(&Value, &Value)>> {
    match v {
        Value::Map(entries) => Some(entries.iter().map(|(k, v)| (k, v)).collect()),
        Value::Array(items) if items.len() % 2 == 0 => {
            Some(items.chunks(2).map(|c| (&c[0], &c[1])).collect())
        }
        _ => None,
    }
}

/// `SLOWLOG GET`, `COMMANDLOG GET`: entries `[id, timestamp, …]` newest first.
fn merge_log(replies: &[Bytes], limit: Option<usize>, out: &mut BytesMut) -> Option<()> {
    let mut entries: Vec<(i64, Bytes)> = Vec::new();
    for reply in replies {
        for entry in aggregate_children(reply)? {
            let at = value(&entry)?.as_array()?.get(1)?.as_integer()?;
            entries.push((at, entry));
        }
    }
    // Stable: a primary's own order (newest first) within one second.
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let n = limit.map_or(entries.len(), |l| l.min(entries.len()));
    encode::array_header(out, n);
    for (_, entry) in entries.into_iter().take(n) {
        out.extend_from_slice(&entry);
    }
    Some(())
}

/// `LATENCY LATEST`: rows `[event, timestamp, latest, max, …counters]`.
fn merge_latest(replies: &[Bytes], out: &mut BytesMut) -> Option<()> {
    let mut rows: Vec<(Vec<u8>, Vec<i64>)> = Vec::new();
    for reply in replies {
        for row in value(reply)?.as_array()? {
            let row = row.as_array()?;
            let event = row.first()?.as_bytes()?.to_vec();
            let fields: Vec<i64> = row[1..]
                .iter()
                .map(Value::as_integer)
                .collect::<Option<_>>()?;
            if fields.len() < 3 {
                return None;
            }
            match rows.iter_mut().find(|(e, _)| *e == event) {
                Some((_, seen)) => combine_latest(seen, &fields),
                None => rows.push((event, fields)),
            }
        }
    }
    encode::array_header(out, rows.len());
    for (event, fields) in rows {
        encode::array_header(out, fields.len() + 1);
        encode::bulk(out, &event);
        for f in fields {
            encode::integer(out, f);
        }
    }
    Some(())
}

/// One event's row from another primary folded into `seen`: `[timestamp, latest, max, …]`.
fn combine_latest(seen: &mut Vec<i64>, other: &[i64]) {
    if other[0] > seen[0] {
        seen[0] = other[0];
        seen[1] = other[1];
    } else if other[0] == seen[0] {
        seen[1] = seen[1].max(other[1]);
    }
    seen[2] = seen[2].max(other[2]);
    for (i, &n) in other.iter().enumerate().skip(3) {
        match seen.get_mut(i) {
            Some(total) => *total = total.saturating_add(n),
            None => seen.push(n),
        }
    }
}

/// `LATENCY HISTORY`: samples `[timestamp, latency]`, oldest first.
fn merge_history(replies: &[Bytes], out: &mut BytesMut) -> Option<()> {
    let mut samples: BTreeMap<i64, i64> = BTreeMap::new();
    for reply in replies {
        for sample in value(reply)?.as_array()? {
            match sample.as_array()? {
                [at, latency] => {
                    let (at, latency) = (at.as_integer()?, latency.as_integer()?);
                    let slot = samples.entry(at).or_insert(latency);
                    *slot = (*slot).max(latency);
                }
                _ => return None,
            }
        }
    }
    let skip = samples.len().saturating_sub(HISTORY_LEN);
    encode::array_header(out, samples.len() - skip);
    for (at, latency) in samples.into_iter().skip(skip) {
        encode::array_header(out, 2);
        encode::integer(out, at);
        encode::integer(out, latency);
    }
    Some(())
}

/// One command's histogram from one primary: calls and cumulative `(bucket, count)`s.
struct CommandHistogram {
    calls: i64,
    cumulative: Vec<(i64, i64)>,
}

/// `LATENCY HISTOGRAM`: `{command: {calls: n, histogram_usec: {bucket: cumulative}}}`.
fn merge_histogram(replies: &[Bytes], proto: Protocol, out: &mut BytesMut) -> Option<()> {
    let mut commands: Vec<(Vec<u8>, Vec<CommandHistogram>)> = Vec::new();
    for reply in replies {
        for (name, body) in pairs(&value(reply)?)? {
            let name = name.as_bytes()?.to_vec();
            let one = command_histogram(body)?;
            match commands.iter_mut().find(|(n, _)| *n == name) {
                Some((_, per_node)) => per_node.push(one),
                None => commands.push((name, vec![one])),
            }
        }
    }
    proto.map_header(out, commands.len());
    for (name, per_node) in commands {
        let calls = per_node.iter().fold(0i64, |t, h| t.saturating_add(h.calls));
        let cdfs: Vec<&[(i64, i64)]> = per_node.iter().map(|h| &h.cumulative[..]).collect();
        let buckets = sum_cumulative(&cdfs);
        encode::bulk(out, &name);
        proto.map_header(out, 2);
        encode::bulk(out, b"calls");
        encode::integer(out, calls);
        encode::bulk(out, b"histogram_usec");
        proto.map_header(out, buckets.len());
        for (bucket, count) in buckets {
            encode::integer(out, bucket);
            encode::integer(out, count);
        }
    }
    Some(())
}

fn command_histogram(body: &Value) -> Option<CommandHistogram> {
    let mut one = CommandHistogram {
        calls: 0,
        cumulative: Vec::new(),
    };
    for (key, v) in pairs(body)? {
        match key.as_bytes()? {
            b"calls" => one.calls = v.as_integer()?,
            b"histogram_usec" => {
                for (bucket, count) in pairs(v)? {
                    one.cumulative
                        .push((bucket.as_integer()?, count.as_integer()?));
                }
            }
            _ => {}
        }
    }
    one.cumulative.sort_unstable();
    Some(one)
}

/// Cumulative histograms (each sorted by bucket, holding only the buckets where its count
/// grows, as Redis sends them) added: at every bucket any of them has, the sum of each one's
/// count at or below that bucket.
fn sum_cumulative(cdfs: &[&[(i64, i64)]]) -> Vec<(i64, i64)> {
    let mut buckets: Vec<i64> = cdfs
        .iter()
        .flat_map(|c| c.iter().map(|&(b, _)| b))
        .collect();
    buckets.sort_unstable();
    buckets.dedup();
    let at_or_below = |cdf: &[(i64, i64)], bucket: i64| {
        cdf.iter()
            .take_while(|&&(b, _)| b <= bucket)
            .last()
            .map_or(0, |&(_, c)| c)
    };
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let total = cdfs
            .iter()
            .fold(0i64, |t, cdf| t.saturating_add(at_or_below(cdf, bucket)));
        if out.last().is_none_or(|&(_, previous)| total > previous) {
            out.push((bucket, total));
        }
    }
    out
}

/// `LATENCY DOCTOR`, `LATENCY GRAPH`: `# <node>` then that primary's text (or its error),
/// primaries separated by a blank line; a verbatim string for RESP3 clients, as Redis's.
fn merge_text(
    nodes: &[NodeAddr],
    replies: &[Bytes],
    proto: Protocol,
    out: &mut BytesMut,
) -> Option<()> {
    let mut text: Vec<u8> = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        let node = nodes.get(i).map_or("?", NodeAddr::as_str);
        if i > 0 {
            text.push(b'\n');
        }
        text.extend_from_slice(format!("# {node}\n").as_bytes());
        let body = match value(reply)? {
            Value::Verbatim(b) => b.get(4..).unwrap_or_default().to_vec(),
            Value::Bulk(b) | Value::Simple(b) | Value::Error(b) => b,
            _ => return None,
        };
        text.extend_from_slice(&body);
        if !body.ends_with(b"\n") {
            text.push(b'\n');
        }
    }
    proto.verbatim(out, &text);
    Some(())
}

/// `CLUSTER SLOT-STATS`: entries `[slot, {metric: n, …}]`, each primary's own slots.
fn merge_slot_stats(replies: &[Bytes], order: &SlotOrder, out: &mut BytesMut) -> Option<()> {
    let mut entries: Vec<(i64, i64, Bytes)> = Vec::new();
    for reply in replies {
        for entry in aggregate_children(reply)? {
            let parsed = value(&entry)?;
            let [slot, stats] = parsed.as_array()? else {
                return None;
            };
            let metric = match order {
                SlotOrder::BySlot => 0,
                SlotOrder::ByMetric { metric, .. } => pairs(stats)?
                    .into_iter()
                    .find(|(k, _)| k.as_bytes() == Some(metric))
                    .and_then(|(_, v)| v.as_integer())
                    .unwrap_or(0),
            };
            entries.push((slot.as_integer()?, metric, entry));
        }
    }
    let limit = match order {
        SlotOrder::BySlot => {
            entries.sort_by_key(|e| e.0);
            entries.len()
        }
        SlotOrder::ByMetric {
            limit, ascending, ..
        } => {
            entries.sort_by(|a, b| {
                let by_metric = if *ascending {
                    a.1.cmp(&b.1)
                } else {
                    b.1.cmp(&a.1)
                };
                by_metric.then(a.0.cmp(&b.0))
            });
            (*limit).min(entries.len())
        }
    };
    encode::array_header(out, limit);
    for (_, _, entry) in entries.into_iter().take(limit) {
        out.extend_from_slice(&entry);
    }
    Some(())
}

#[cfg(test)]
mod tests;
