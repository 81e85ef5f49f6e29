//! From a decoded request to a reply-queue [`Entry`]: look the command up in the command
//! table, check arity, pass the auth gate (when users are configured), find its keys and
//! slot, and hand it to its routing family — answered locally, sent to one slot's primary,
//! split by slot, or fanned out to every primary.

use bytes::Bytes;
use slotgate_commands::{self as commands, Command, Family, MergeKind};
use slotgate_resp::Request;
use tokio::time::Instant;

use crate::family::cache;
use crate::family::pubsub::PubSub;
use crate::family::shardsub::ShardCmd;
use crate::family::split;
use crate::family::tracking;
use crate::family::transaction;
use crate::family::{admin, blocking, command, local};
use crate::protocol::Protocol;
use crate::replies;
use crate::runtime::cache::Lookup;
use crate::runtime::context::WorkerCtx;
use crate::session::client::ClientState;
use crate::session::entry::{Entry, Fanout, Fill};
use crate::session::gate;
use crate::session::merge::Merge;
use crate::session::op::{Op, Route};
use crate::session::request::{is_readonly, single_slot, ReqArgs};
use crate::telemetry::metrics::UNKNOWN_COMMAND;

/// Turn one client request into its reply-queue entry, sending whatever must go upstream;
/// `deadline` is when its upstream ops time out (`op_timeout` after the request was read).
/// Also sets `index` to the command's table index (or leaves [`UNKNOWN_COMMAND`]) for its
/// metrics, first thing, so that it names the command even if routing panics.
pub(crate) fn route_command(
    ctx: &WorkerCtx,
    client: &mut ClientState,
    req: Request,
    deadline: Instant,
    index: &mut u16,
) -> Entry {
    *index = UNKNOWN_COMMAND;
    let args = ReqArgs(&req);
    let found = client
        .lookup
        .lookup(&args)
        .filter(|cmd| servers_have(ctx, cmd));
    // Only a name the built-in table lacks looks further: the servers' newer commands.
    let Some(cmd) = found.or_else(|| learned(ctx, req.arg(0), None)) else {
        client.transaction.flag_error(); // in MULTI, EXEC then answers -EXECABORT
        return Entry::Ready(replies::unknown_command(req.arg(0), req.args().skip(1)));
    };
    *index = cmd.index;
    route_known(ctx, client, cmd, req, deadline)
}

fn route_known(
    ctx: &WorkerCtx,
    client: &mut ClientState,
    cmd: &'static Command,
    owned: Request,
    deadline: Instant,
) -> Entry {
    let req = &owned;
    // A container command whose argv[1] named no subcommand; bare COMMAND (arity -1) is a
    // command of its own: the whole table, which cluster clients (redis-py's RedisCluster)
    // ask for when they start.
    if cmd.is_container() && !runs_bare(cmd, req) {
        // A subcommand the servers added (CLIENT CAPA, …).
        if req.argc() >= 2 {
            if let Some(sub) = learned(ctx, cmd.name.as_bytes(), Some(req.arg(1))) {
                return route_known(ctx, client, sub, owned, deadline);
            }
        }
        client.transaction.flag_error();
        return Entry::Ready(if req.argc() < 2 {
            replies::wrong_arity(cmd.name)
        } else {
            replies::unknown_subcommand(cmd.name, req.arg(1))
        });
    }
    if !cmd.arity_ok(req.argc()) {
        let refusal = Entry::Ready(replies::wrong_arity(cmd.name));
        return transaction::refused(ctx, &mut client.transaction, cmd, refusal);
    }
    // Like Redis: unknown commands and bad arity are answered before the auth check.
    if client.auth.is_some() {
        if let Some(refusal) = gate::gate(ctx, client, cmd, &ReqArgs(req)) {
            return transaction::refused(ctx, &mut client.transaction, cmd, refusal);
        }
    }
    // In subscribe mode (RESP2) only the Pub/Sub family, PING, QUIT and RESET run. A RESP3
    // client may run anything: messages arrive as pushes, told apart from replies.
    if client.proto == Protocol::Resp2 && client.pubsub.as_ref().is_some_and(|p| p.active) {
        match cmd.name {
            "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" | "ping" => {
                return relay_pubsub(ctx, client, cmd, req)
            }
            "quit" => {}
            "reset" => client.pubsub = None,
            "ssubscribe" | "sunsubscribe" => return relay_shard(ctx, client, cmd, req),
            _ => return Entry::Ready(replies::subscribe_mode_only(cmd.name)),
        }
    }
    // WAIT counts replicas for the slots this connection wrote to (queued writes too). A
    // single-slot command outside MULTI is noted by `route_single`, which finds its slot.
    if cmd.family != Family::Single || client.transaction.is_queuing() {
        client.writes.note(cmd, req);
    }
    // CLIENT TRACKING: a read's keys are remembered before it reaches a node.
    if client.tracking.is_some() {
        tracking::note(ctx, &mut client.tracking, client.id, cmd, req);
    }
    // In MULTI: queued (or refused) instead of run.
    let dialect = client.dialect();
    if client.transaction.is_queuing() {
        if let Some(entry) = transaction::queue(
            ctx,
            &mut client.transaction,
            dialect,
            cmd,
            req,
            &client.budget,
        ) {
            return entry;
        }
    }
    // MSET a 1 b: Redis's command answers the arity error (inside MULTI, at EXEC, where the
    // node answers it); checked before the keys are grouped by slot.
    if !cmd.key_groups_complete(req.argc()) {
        return Entry::Ready(replies::wrong_arity(cmd.name));
    }
    // Past limits.max_buffered nothing new goes to the nodes until clients read what they
    // are owed; what slotgate answers itself, Pub/Sub and transactions still run.
    if ctx.buffered.is_full()
        && matches!(
            cmd.family,
            Family::Single
                | Family::Keyless
                | Family::Split(_)
                | Family::AllShards(_)
                | Family::Blocking
        )
    {
        ctx.metrics.shared().buffers_full();
        return Entry::Ready(Bytes::from_static(replies::BUFFERS_FULL));
    }
    // The read cache drops what a write changes before it is sent.
    let written = match &ctx.cache {
        Some(cache) => cache::before_write(cache, cmd, req),
        None => None,
    };
    let entry = route_family(ctx, client, cmd, owned, deadline);
    match (written, &ctx.cache) {
        (Some(written), Some(cache)) => cache::after_write(cache, written, entry),
        _ => entry,
    }
}

/// Hand a command that passed every check to its routing family.
fn route_family(
    ctx: &WorkerCtx,
    client: &mut ClientState,
    cmd: &'static Command,
    owned: Request,
    deadline: Instant,
) -> Entry {
    let req = &owned;
    let dialect = client.dialect();
    match cmd.family {
        Family::Unsupported if !command::serves(ctx, cmd) => {
            Entry::Ready(replies::unsupported(cmd.name))
        }
        Family::Local => local::run(ctx, client, cmd, req, deadline),
        Family::Single => route_single(ctx, cmd, owned, deadline, client),
        // CONFIG SET, SAVE, LASTSAVE …: every node, under `upstream.admin_commands: acl`.
        Family::Unsupported | Family::Keyless if admin::fans_out(ctx, cmd) => {
            admin::route(ctx, cmd, req, deadline, &client.budget)
        }
        // PUBLISH goes to the Pub/Sub home, where every link subscribes (order and counts:
        // see family::pubsub); other keyless commands to a rotating primary.
        Family::Keyless => Entry::Single(Op::start(
            ctx,
            if cmd.name == "publish" {
                Route::Slot(crate::family::pubsub::HOME_SLOT)
            } else {
                Route::Any
            },
            owned.into_wire(),
            is_readonly(cmd),
            deadline,
            client.dialect(),
            &client.budget,
        )),
        Family::Split(kind) => split::route(
            ctx,
            cmd,
            kind,
            req,
            deadline,
            client.dialect(),
            &client.budget,
        ),
        Family::AllShards(kind) => route_all_shards(ctx, cmd, kind, req, deadline, client),
        // WAIT and WAITAOF are emulated: the client's writes went over shared connections.
        Family::Blocking if cmd.name == "wait" => {
            crate::family::wait::route(ctx, &client.writes, req, &client.budget)
        }
        Family::Blocking if cmd.name == "waitaof" => {
            crate::family::wait::aof::route(ctx, &client.writes, req, &client.budget)
        }
        Family::Blocking => blocking::route(ctx, cmd, req, client.dialect(), &client.budget),
        Family::Transaction => transaction::route(
            ctx,
            &mut client.transaction,
            dialect,
            cmd,
            req,
            &client.budget,
        ),
        Family::PubSub if matches!(cmd.name, "ssubscribe" | "sunsubscribe") => {
            relay_shard(ctx, client, cmd, req)
        }
        Family::PubSub => relay_pubsub(ctx, client, cmd, req),
        // The other unsupported command served: SWAPDB with one primary (command::serves).
        Family::Unsupported => Entry::Single(Op::start(
            ctx,
            Route::Any,
            owned.into_wire(),
            false,
            deadline,
            dialect,
            &client.budget,
        )),
    }
}

/// The command `name` (with subcommand `sub`) the servers reported and the built-in table
/// lacks (see `upstream::command_table`).
fn learned(ctx: &WorkerCtx, name: &[u8], sub: Option<&[u8]>) -> Option<&'static Command> {
    let table = ctx.topology.learned();
    if table.is_empty() {
        return None;
    }
    let mut key = String::from_utf8_lossy(name).to_ascii_lowercase();
    if let Some(sub) = sub {
        key.push('|');
        key.push_str(&String::from_utf8_lossy(sub).to_ascii_lowercase());
    }
    table.get(&key)
}

/// Whether the servers have `cmd`: WAITAOF (in the built-in table, emulated) is Redis
/// 7.2's, and older servers' unknown-command error is kept.
fn servers_have(ctx: &WorkerCtx, cmd: &Command) -> bool {
    cmd.name != "waitaof" || ctx.topology.version_at_least(7, 2)
}

/// Whether a container command without a subcommand runs as it is (only COMMAND, whose
/// arity is -1). Asked only for containers, off the path of ordinary commands.
fn runs_bare(cmd: &Command, req: &Request) -> bool {
    req.argc() == 1 && cmd.arity_ok(1)
}

/// SUBSCRIBE and friends (and PING in subscribe mode): sent down the client's Pub/Sub link,
/// started on first use; the node's answers reach the client through the link, so the entry
/// itself writes nothing.
fn route_pubsub_link<'c>(ctx: &WorkerCtx, client: &'c mut ClientState) -> &'c mut PubSub {
    client.pubsub.get_or_insert_with(|| {
        PubSub::start(
            std::rc::Rc::clone(&ctx.dedicated),
            std::sync::Arc::clone(&ctx.topology),
            ctx.cfg.limits.max_pubsub_backlog,
        )
    })
}

/// SSUBSCRIBE / SUNSUBSCRIBE: to the client's shard-channel coordinator; the channels of one
/// call must share a slot, as in Redis Cluster.
fn relay_shard(ctx: &WorkerCtx, client: &mut ClientState, cmd: &Command, req: &Request) -> Entry {
    let slot = match single_slot(cmd, req, ctx.one_primary()) {
        Ok(slot) => slot,
        Err(reply) => return Entry::Ready(reply),
    };
    let channels: Vec<Bytes> = (1..req.argc())
        .map(|i| Bytes::copy_from_slice(req.arg(i)))
        .collect();
    let shard_cmd = match (cmd.name, slot) {
        ("ssubscribe", Some(slot)) => ShardCmd::Subscribe { slot, channels },
        _ => ShardCmd::Unsubscribe { channels },
    };
    route_pubsub_link(ctx, client).forward_shard(shard_cmd);
    Entry::Relayed
}

fn relay_pubsub(ctx: &WorkerCtx, client: &mut ClientState, cmd: &Command, req: &Request) -> Entry {
    let subscribes = matches!(cmd.name, "subscribe" | "psubscribe");
    if cmd.name == "subscribe" {
        tracking::subscribes_to_invalidations(ctx, &mut client.tracking, client.id, req);
    }
    route_pubsub_link(ctx, client).forward(req.wire(), subscribes);
    Entry::Relayed
}

/// A single-slot command, noted for WAIT with the slot found here.
fn route_single(
    ctx: &WorkerCtx,
    cmd: &Command,
    req: Request,
    deadline: Instant,
    client: &mut ClientState,
) -> Entry {
    if commands::is_blocking_call(cmd, &ReqArgs(&req)) {
        client.writes.note(cmd, &req);
        return blocking::route(ctx, cmd, &req, client.dialect(), &client.budget);
    }
    // A cached read: answered here on a hit (the auth gate has passed).
    let ticket = match &ctx.cache {
        Some(c) if cache::is_cached_read(cmd) => {
            match cache::lookup(ctx, c, client.dialect(), &req, deadline) {
                Lookup::Hit(reply) => return Entry::Ready(reply),
                Lookup::Miss(ticket) => Some(ticket),
                Lookup::Bypass => None,
            }
        }
        _ => None,
    };
    let route = match single_slot(cmd, &req, ctx.one_primary()) {
        Ok(Some(slot)) => {
            client.writes.note_slot(cmd, slot);
            Route::Slot(slot)
        }
        Ok(None) => {
            client.writes.note(cmd, &req);
            Route::Any
        }
        Err(reply) => {
            client.writes.note(cmd, &req);
            return Entry::Ready(reply);
        }
    };
    let repair = match cmd.name {
        "eval" | "eval_ro" => {
            ctx.shared.scripts.remember(req.arg(1));
            None
        }
        "evalsha" | "evalsha_ro" => ctx.shared.scripts.load_command(req.arg(1)),
        _ => None,
    };
    // A restricted user's script runs on the node as an ACL user with its rules.
    if client.auth.is_some() {
        if let Some(identity) = crate::family::restricted_scripts::identity_for(ctx, client, cmd) {
            let slot = match route {
                Route::Slot(slot) => Some(slot),
                _ => None,
            };
            let wire = req.into_wire();
            return crate::family::restricted_scripts::run_as(
                ctx,
                &client.budget,
                identity,
                slot,
                wire,
                client.dialect(),
                repair,
            );
        }
    }
    // The request's bytes move into the op (no reference count taken and dropped).
    let mut op = Op::start(
        ctx,
        route,
        req.into_wire(),
        is_readonly(cmd),
        deadline,
        client.dialect(),
        &client.budget,
    );
    if let Some(load) = repair {
        op.repair_noscript(load);
    }
    match ticket {
        Some(ticket) => Entry::Fill(Box::new(Fill { op, ticket })),
        None => Entry::Single(op),
    }
}

/// Send `req` to every primary that serves slots and merge the replies.
fn route_all_shards(
    ctx: &WorkerCtx,
    cmd: &Command,
    kind: MergeKind,
    req: &Request,
    deadline: Instant,
    client: &ClientState,
) -> Entry {
    let (dialect, budget) = (client.dialect(), &client.budget);
    if cmd.name == "script|load" {
        ctx.shared.scripts.remember(req.arg(2));
    }
    let merge = match kind {
        MergeKind::SumInteger => Merge::SumInteger,
        MergeKind::ConcatArrays => Merge::ConcatArrays,
        MergeKind::AllOk => Merge::AllOk,
        MergeKind::First => Merge::First,
        MergeKind::AnyNonNil => Merge::AnyNonNil,
        MergeKind::AndArrays => Merge::AndArrays,
        MergeKind::SumPairs => Merge::SumPairs,
        // SLOWLOG GET, LATENCY LATEST …: each merged by its own rule.
        MergeKind::Diagnostic => {
            let name = cmd.name;
            return crate::family::diagnostics::route(ctx, name, req, deadline, dialect, budget);
        }
        // One server (standalone, sentinel): its own cursor, as it is.
        MergeKind::Scan if ctx.one_primary() => {
            let wire = req.wire();
            return Entry::Single(Op::start(
                ctx,
                Route::Any,
                wire,
                true,
                deadline,
                dialect,
                budget,
            ));
        }
        MergeKind::Scan => {
            return crate::family::scan::route(ctx, req, deadline, budget)
                .map_or_else(Entry::Ready, Entry::Scan)
        }
    };
    let primaries = ctx.routes.serving_primaries();
    if primaries.is_empty() {
        ctx.topology
            .request_refresh(crate::telemetry::metrics::RefreshTrigger::Error);
        return Entry::Ready(Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED));
    }
    let wire = req.wire();
    let readonly = is_readonly(cmd);
    let ops = Op::to_each(ctx, primaries, &wire, readonly, deadline, dialect, budget);
    Entry::Fanout(Box::new(Fanout { ops, merge }))
}
