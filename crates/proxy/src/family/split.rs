//! Multi-key commands whose keys may span slots (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH):
//! group the keys by slot, send one sub-command per slot, and merge the replies in the
//! client's key order (MGET) or as a sum (DEL…) or an all-OK (MSET). Keys that all share one
//! slot skip the split and forward the client's own bytes.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use slotgate_commands::{Command, KeyIndices, SplitKind};
use slotgate_resp::{encode, Request};
use tokio::time::Instant;

use crate::protocol::Dialect;
use crate::runtime::budget::OutputBudget;
use crate::runtime::context::WorkerCtx;
use crate::session::entry::{Entry, Fanout};
use crate::session::merge::Merge;
use crate::session::op::{Op, Route};
use crate::session::request::{is_readonly, ReqArgs};

/// Route a splittable command.
pub(crate) fn route(
    ctx: &WorkerCtx,
    cmd: &Command,
    kind: SplitKind,
    req: &Request,
    deadline: Instant,
    dialect: Dialect,
    budget: &Rc<OutputBudget>,
) -> Entry {
    let mut keys = KeyIndices::new();
    let readonly = is_readonly(cmd);
    if cmd.key_indices(&ReqArgs(req), &mut keys).is_err() || keys.is_empty() {
        // Cannot happen with the table's split commands; let a node give Redis's answer.
        let wire = req.wire();
        return Entry::Single(Op::start(
            ctx,
            Route::Any,
            wire,
            readonly,
            deadline,
            dialect,
            budget,
        ));
    }
    let groups = group_by_slot(req, keys.as_slice());
    // One server has every key (standalone, sentinel): nothing to split.
    if groups.len() == 1 || ctx.one_primary() {
        let slot = groups[0].0;
        return Entry::Single(Op::start(
            ctx,
            Route::Slot(slot),
            req.wire(),
            readonly,
            deadline,
            dialect,
            budget,
        ));
    }
    let mut ops = Vec::with_capacity(groups.len());
    let mut positions = Vec::with_capacity(groups.len());
    for (slot, members) in groups {
        let Some(wire) = sub_command(req, kind, &members) else {
            // A key without its value; the dispatcher's group check answers this first.
            return Entry::Ready(crate::replies::wrong_arity(cmd.name));
        };
        let route = Route::Slot(slot);
        ops.push(Op::start(
            ctx, route, wire, readonly, deadline, dialect, budget,
        ));
        positions.push(members.iter().map(|&(pos, _)| pos).collect());
    }
    let merge = match kind {
        SplitKind::Mget => Merge::Mget {
            total: keys.len(),
            positions,
        },
        SplitKind::Mset => Merge::AllOk,
        SplitKind::SumInteger => Merge::SumInteger,
    };
    Entry::Fanout(Box::new(Fanout { ops, merge }))
}

/// Keys grouped by slot, in order of first appearance: `(slot, [(key position, arg index)])`.
fn group_by_slot(req: &Request, keys: &[u32]) -> Vec<(u16, Vec<(u32, u32)>)> {
    let mut groups: Vec<(u16, Vec<(u32, u32)>)> = Vec::new();
    let mut index: HashMap<u16, usize> = HashMap::new();
    for (pos, &arg) in keys.iter().enumerate() {
        let slot = slotgate_cluster::slot(req.arg(arg as usize));
        let g = *index.entry(slot).or_insert_with(|| {
            groups.push((slot, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push((pos as u32, arg));
    }
    groups
}

/// The command for one slot's share of the keys, named as the client named it; `None` when
/// a key's value is missing.
fn sub_command(req: &Request, kind: SplitKind, members: &[(u32, u32)]) -> Option<Bytes> {
    let per_key = if matches!(kind, SplitKind::Mset) {
        2
    } else {
        1
    };
    let mut args: Vec<&[u8]> = Vec::with_capacity(1 + members.len() * per_key);
    args.push(req.arg(0));
    for &(_, arg) in members {
        args.push(req.get(arg as usize)?);
        if per_key == 2 {
            args.push(req.get(arg as usize + 1)?);
        }
    }
    let mut buf = BytesMut::new();
    encode::command(&mut buf, &args);
    Some(buf.freeze())
}
