//! Commands that may block in Redis (BLPOP, BRPOP, BLMOVE, BZPOPMIN, XREAD/XREADGROUP with
//! BLOCK …): each runs on a dedicated connection of its own for as long as it blocks, so it
//! never holds up the multiplexed connections other clients share, and without
//! `op_timeout` (its own timeout applies). MOVED/ASK while it waits are followed.

use std::rc::Rc;

use bytes::Bytes;
use slotgate_commands::Command;
use slotgate_resp::Request;

use crate::protocol::Dialect;
use crate::replies;
use crate::runtime::context::WorkerCtx;
use crate::session::entry::Entry;
use crate::session::request::single_slot;
use crate::session::task::Task;
use crate::upstream::dedicated::DedicatedPool;
use crate::upstream::redirect::{Attempts, Verdict};

/// A command that may block in Redis (BLPOP, XREAD BLOCK …): on a dedicated connection of
/// its own, without `op_timeout` (its own timeout applies).
pub(crate) fn route(
    ctx: &WorkerCtx,
    cmd: &Command,
    req: &Request,
    dialect: Dialect,
    budget: &Rc<crate::runtime::budget::OutputBudget>,
) -> Entry {
    let slot = match single_slot(cmd, req, ctx.one_primary()) {
        Ok(slot) => slot,
        Err(reply) => return Entry::Ready(reply),
    };
    let (pool, wire) = (std::rc::Rc::clone(&ctx.dedicated), req.wire());
    Entry::Task(
        Task::spawn(budget, move |tx| run(pool, slot, wire, dialect, tx)),
        None,
    )
}

/// Run one blocking command on a dedicated connection (speaking the client's `dialect`) to
/// the primary of `slot` (any primary when `None`), following MOVED/ASK. The command's own
/// timeout applies, not `op_timeout`. Sends the reply on `tx`; if the client leaves first,
/// drops the connection so Redis stops blocking for it.
pub(crate) async fn run(
    pool: Rc<DedicatedPool>,
    slot: Option<u16>,
    wire: Bytes,
    dialect: Dialect,
    mut tx: crate::session::task::TaskTx,
) {
    let map = pool.topology.map();
    let first = match slot {
        Some(s) => map.primary_for_slot(s).cloned(),
        None => map.serving_shards().first().map(|s| s.primary.clone()),
    };
    drop(map);
    let Some(mut node) = first else {
        let _ = tx.send(Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED));
        return;
    };
    let (mut asking, mut attempts) = (false, Attempts::default());
    loop {
        let mut lease = tokio::select! {
            lease = pool.take(&node, dialect) => match lease {
                Ok(l) => l,
                Err(reply) => { let _ = tx.send(reply); return; }
            },
            _ = tx.closed() => return,
        };
        let reply = tokio::select! {
            r = lease.conn().request(&wire, asking) => r,
            _ = tx.closed() => return, // the lease drops the connection: Redis unblocks
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(node = %node, error = %e, "dedicated connection lost");
                // A blocking command may have run (popped an element): never resend.
                let _ = tx.send(replies::upstream_lost(node.as_str()));
                return;
            }
        };
        // Only redirects are followed: a blocking command answered TRYAGAIN, CLUSTERDOWN or
        // LOADING gets that answer, since its own timeout, not op_timeout, bounds it.
        if reply.is_error() {
            let max = pool.cfg.max_redirects;
            if let Verdict::Redirect {
                target,
                asking: ask,
            } = attempts.judge(&reply, &node, max, &pool.topology, &pool.metrics)
            {
                lease.give_back();
                (node, asking) = (target, ask);
                continue;
            }
        }
        lease.give_back();
        let _ = tx.send(reply.raw);
        return;
    }
}
