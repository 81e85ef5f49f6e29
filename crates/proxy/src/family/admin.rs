//! Node administration through slotgate, under `upstream.admin_commands: acl`
//! (docs/configuration.md, "Admin commands"): CONFIG SET, CONFIG RESETSTAT and CONFIG REWRITE
//! go to every node serving slots (primaries and their replicas), SAVE, BGSAVE, BGREWRITEAOF
//! and LASTSAVE to every primary, CONFIG GET to every primary. The replies become one reply
//! all-or-error ([`write_merged`]): the agreed answer when every node succeeded, else an error
//! that names the nodes that failed (with each one's own error) and those that succeeded.
//!
//! Who may run them is the auth gate's business, as for any command; this module is reached
//! only when the policy says `acl` ([`fans_out`]). Under `deny` the command table's family
//! stands: refused, LASTSAVE to one primary, CONFIG GET answered by `family::local`.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::NodeAddr;
use slotgate_commands::Command;
use slotgate_resp::{encode, parse_integer, Request};
use tokio::time::Instant;

use crate::config::AdminCommands;
use crate::protocol::Dialect;
use crate::replies;
use crate::runtime::budget::OutputBudget;
use crate::runtime::context::WorkerCtx;
use crate::session::entry::{Entry, Fanout};
use crate::session::merge::{Merge, WholeMerge};
use crate::session::op::Op;
use crate::telemetry::metrics::RefreshTrigger;

/// Which nodes an admin command reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Every primary serving slots, in order of the lowest slot each serves.
    Primaries,
    /// Those primaries, then their replicas: settings and statistics are per node, and a
    /// replica promoted by a failover should carry the settings its primary had.
    EveryNode,
}

/// What a node's success looks like, and how the successes become one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Agreement {
    /// `+OK` from each node: `+OK` (CONFIG SET, CONFIG RESETSTAT, CONFIG REWRITE, SAVE).
    Ok,
    /// A status from each node (BGSAVE, BGREWRITEAOF): `… scheduled` when any node only
    /// scheduled the work (`BGSAVE SCHEDULE` while a child runs), else the first node's
    /// `… started`.
    Started,
    /// An integer from each node (LASTSAVE): the smallest, the oldest save.
    Oldest,
    /// Any reply from each node (CONFIG GET): the first node's, as it is.
    First,
}

impl WholeMerge for AllNodes {
    fn write(&self, replies: &[Bytes], out: &mut BytesMut) {
        write_merged(self, replies, out)
    }
}

/// A fan-out of an admin command: its table name, the nodes in the order of the replies,
/// and how successes agree.
pub(crate) struct AllNodes {
    name: &'static str,
    nodes: Vec<NodeAddr>,
    agreement: Agreement,
}

/// Where a command of this module goes and how its replies merge; `None` for other commands.
fn shape(name: &str) -> Option<(Reach, Agreement)> {
    Some(match name {
        "config|set" | "config|resetstat" | "config|rewrite" => (Reach::EveryNode, Agreement::Ok),
        "save" => (Reach::Primaries, Agreement::Ok),
        "bgsave" | "bgrewriteaof" => (Reach::Primaries, Agreement::Started),
        "lastsave" => (Reach::Primaries, Agreement::Oldest),
        _ => return None,
    })
}

/// Whether `cmd` is an admin command and `upstream.admin_commands` lets it reach the nodes.
pub(crate) fn fans_out(ctx: &WorkerCtx, cmd: &Command) -> bool {
    ctx.cfg.admin_commands() == AdminCommands::Acl && is_admin(cmd.name)
}

/// Whether `name` is one of the admin commands this family sends to the nodes.
pub(crate) fn is_admin(name: &str) -> bool {
    shape(name).is_some()
}

/// Send an admin command ([`fans_out`] said yes) to the nodes it concerns; the reply is
/// merged by [`write_merged`].
pub(crate) fn route(
    ctx: &WorkerCtx,
    cmd: &Command,
    req: &Request,
    deadline: Instant,
    budget: &Rc<OutputBudget>,
) -> Entry {
    let Some((reach, agreement)) = shape(cmd.name) else {
        return Entry::Ready(replies::unsupported(cmd.name));
    };
    // Only LASTSAVE just reads: the others are never sent twice after a lost connection.
    let readonly = agreement == Agreement::Oldest;
    // The replies are merged here, never passed on: RESP2 connections suffice.
    fan_out(
        ctx,
        cmd.name,
        reach,
        agreement,
        req,
        readonly,
        deadline,
        Dialect::RESP2,
        budget,
    )
}

/// `CONFIG GET` under `acl`: asked of every primary; the answer of the first (the primary of
/// the lowest slot), passed on in the client's protocol (a RESP3 map stays a map).
pub(crate) fn config_get(
    ctx: &WorkerCtx,
    cmd: &Command,
    req: &Request,
    deadline: Instant,
    dialect: Dialect,
    budget: &Rc<OutputBudget>,
) -> Entry {
    let (reach, agreement) = (Reach::Primaries, Agreement::First);
    fan_out(
        ctx, cmd.name, reach, agreement, req, true, deadline, dialect, budget,
    )
}

#[allow(clippy::too_many_arguments)]
fn fan_out(
    ctx: &WorkerCtx,
    name: &'static str,
    reach: Reach,
    agreement: Agreement,
    req: &Request,
    readonly: bool,
    deadline: Instant,
    dialect: Dialect,
    budget: &Rc<OutputBudget>,
) -> Entry {
    let nodes = targets(ctx, reach);
    if nodes.is_empty() {
        ctx.topology.request_refresh(RefreshTrigger::Error);
        return Entry::Ready(Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED));
    }
    let wire = req.wire();
    let ops = Op::to_each(
        ctx,
        nodes.iter().cloned(),
        &wire,
        readonly,
        deadline,
        dialect,
        budget,
    );
    let merge = Merge::Whole(Box::new(AllNodes {
        name,
        nodes,
        agreement,
    }));
    Entry::Fanout(Box::new(Fanout { ops, merge }))
}

/// The nodes `reach` names in the current map: the primaries serving slots in order of the
/// lowest slot each serves, then (for [`Reach::EveryNode`]) their replicas in the same order.
fn targets(ctx: &WorkerCtx, reach: Reach) -> Vec<NodeAddr> {
    let map = ctx.topology.map();
    let mut order: Vec<usize> = Vec::new();
    for (_, _, shard) in map.ranges() {
        if !order.contains(&shard) {
            order.push(shard);
        }
    }
    let shards = map.shards();
    let mut nodes: Vec<NodeAddr> = order.iter().map(|&i| shards[i].primary.clone()).collect();
    if reach == Reach::EveryNode {
        for &i in &order {
            for replica in &shards[i].replicas {
                if !nodes.contains(replica) {
                    nodes.push(replica.clone());
                }
            }
        }
    }
    nodes
}

/// The all-or-error merge of an admin fan-out (`replies[i]` from `m.nodes[i]`): when every
/// node succeeded as [`Agreement`] expects, the agreed reply; otherwise
/// [`replies::admin_failed`], naming each node that failed with its own error (nodes with
/// the same error together) and the nodes that succeeded.
pub(crate) fn write_merged(m: &AllNodes, replies: &[Bytes], out: &mut BytesMut) {
    let mut failed: Vec<(Vec<&str>, String)> = Vec::new();
    let mut succeeded: Vec<&str> = Vec::new();
    for (i, node) in m.nodes.iter().enumerate() {
        let reply = replies.get(i).map(|r| &r[..]).unwrap_or_default();
        match judge(m.agreement, reply) {
            Ok(()) => succeeded.push(node.as_str()),
            Err(error) => match failed.iter_mut().find(|(_, e)| *e == error) {
                Some((nodes, _)) => nodes.push(node.as_str()),
                None => failed.push((vec![node.as_str()], error)),
            },
        }
    }
    if !failed.is_empty() || succeeded.is_empty() {
        let command = m.name.replace('|', " ").to_ascii_uppercase();
        return out.extend_from_slice(&replies::admin_failed(&command, &failed, &succeeded));
    }
    match m.agreement {
        Agreement::Ok => out.extend_from_slice(replies::OK),
        Agreement::Started => {
            let scheduled = replies.iter().find(|r| r.ends_with(b"scheduled\r\n"));
            out.extend_from_slice(scheduled.unwrap_or(&replies[0]));
        }
        Agreement::Oldest => {
            let oldest = replies.iter().filter_map(|r| parse_integer(r)).min();
            encode::integer(out, oldest.unwrap_or_default());
        }
        Agreement::First => out.extend_from_slice(&replies[0]),
    }
}

/// `Ok` when `reply` is a success of the kind `agreement` expects, else what went wrong: the
/// node's error text (without `-` and CRLF), or that the reply had another shape.
fn judge(agreement: Agreement, reply: &[u8]) -> Result<(), String> {
    if let Some(text) = error_text(reply) {
        return Err(text);
    }
    let fits = match agreement {
        Agreement::Ok => reply == replies::OK,
        Agreement::Started => reply.first() == Some(&b'+'),
        Agreement::Oldest => parse_integer(reply).is_some(),
        Agreement::First => !reply.is_empty(),
    };
    if fits {
        Ok(())
    } else {
        Err("unexpected reply shape".into())
    }
}

/// The text of an error reply (`-ERR x` or a RESP3 blob error `!5\r\nERR x`), `None` for
/// any other reply.
fn error_text(reply: &[u8]) -> Option<String> {
    let text = match reply.first()? {
        b'-' => &reply[1..],
        b'!' => {
            let start = reply
                .iter()
                .position(|&b| b == b'\n')
                .map_or(reply.len(), |i| i + 1);
            &reply[start..]
        }
        _ => return None,
    };
    let text = text.strip_suffix(b"\r\n").unwrap_or(text);
    Some(String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
mod tests;
