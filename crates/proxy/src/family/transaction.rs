//! Transactions through the proxy: MULTI, EXEC, DISCARD, WATCH and UNWATCH, under Redis
//! Cluster's rule that one transaction touches one slot.
//!
//! In the path of a command this sits after the auth gate. MULTI is answered here and puts
//! the client in queued mode; from then on `dispatch` hands every command to [`queue`],
//! which checks it the way Redis would (unknown commands, arity and NOPERM are checked
//! before, and flag the transaction through [`TxState::flag_error`]), answers `+QUEUED` and
//! keeps its bytes. The transaction's slot is the slot of the first keyed command (or of the
//! WATCHed keys); a key in another slot gets `-CROSSSLOT` and EXEC then answers
//! `-EXECABORT`, as it would for any refused command.
//!
//! EXEC sends `MULTI`, the queued commands and `EXEC` in one write on a dedicated connection
//! to the slot's primary (any primary for a keyless transaction) and answers with the EXEC
//! reply. When the slot moved meanwhile, the node answers the queued commands with `-MOVED`
//! or `-ASK` and discards the transaction: nothing ran, so it is sent again to the new
//! owner (after `ASKING` for an ASK). TRYAGAIN, CLUSTERDOWN and LOADING likewise discard it
//! and it is retried after a backoff, all within `upstream.op_timeout`.
//!
//! WATCH takes a dedicated connection to the primary of its keys' slot, sends WATCH there,
//! and keeps the connection pinned to the client until EXEC, DISCARD, UNWATCH or RESET;
//! EXEC then runs on it, so a concurrent change of a watched key makes EXEC answer nil,
//! exactly as Redis does. If the slot moved between WATCH and EXEC, the WATCH no longer
//! holds (migrating a key away from its node is a change of it there): EXEC answers nil
//! and nothing ran, so optimistic-locking loops simply retry, now on the new owner.
//! Connections go back to the pool only in a clean state (after EXEC, or after UNWATCH
//! succeeded); otherwise they are closed.
//!
//! # Ordering
//! The steps that use upstream connections (WATCH, EXEC, releasing a WATCH) run as tasks
//! chained per client: each waits for the previous step and receives from it the client's
//! [`Watched`] state. So a pipelined `WATCH k` `MULTI` … `EXEC` runs in order, and two
//! pipelined transactions of one client never overtake each other. A client that leaves
//! drops the chain, and with it any pinned connection.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slotgate_cluster::NodeAddr;
use slotgate_commands::{flag, Command, Family};
use slotgate_resp::{ErrorClass, Reply, ReplyKind, Request};
use tokio::sync::oneshot;
use tokio::time::{timeout_at, Instant};

use crate::protocol::Dialect;
use crate::replies;
use crate::runtime::budget::OutputBudget;
use crate::runtime::cache::Written;
use crate::runtime::context::WorkerCtx;
use crate::session::entry::{Entry, Wrote};
use crate::session::request::single_slot;
use crate::session::task::Task;
use crate::telemetry::metrics::{Metrics, RefreshTrigger};
use crate::upstream::dedicated::{DedicatedConn, DedicatedPool, Lease};
use crate::upstream::redirect::{self, Attempts, Verdict, ASKING};
use crate::upstream::topology::Topology;

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";

/// One client's transaction state, kept in its `ClientState`.
#[derive(Default)]
pub(crate) struct TxState {
    /// The open MULTI, if any.
    multi: Option<Box<Queue>>,
    /// The slot of the WATCHed keys while a WATCH is in effect (as far as the commands
    /// routed so far are concerned; the steps may still be running).
    watch_slot: Option<u16>,
    /// What the last step of this client's chain leaves behind: the next step waits for it.
    baton: Option<oneshot::Receiver<Watched>>,
}

/// The commands queued since MULTI.
struct Queue {
    /// Each command's wire bytes, in order.
    wires: Vec<Bytes>,
    /// Their total size.
    bytes: usize,
    /// The transaction's slot: of the WATCHed keys, else of the first keyed command.
    slot: Option<u16>,
    /// A command was refused while queueing: EXEC answers `-EXECABORT`.
    failed: bool,
    /// The keys the queued writes change, for the read cache (kept only when it is on).
    written: Option<Written>,
}

/// The client's WATCH, as one chained step hands it to the next.
enum Watched {
    /// No WATCH in effect.
    None,
    /// WATCH is in effect on this connection.
    Pinned(Box<Pinned>),
    /// The client was told WATCH succeeded, but it no longer holds (its connection broke,
    /// or the slot moved): EXEC must not run, and answers nil.
    Lost,
}

/// A dedicated connection holding the client's WATCH.
struct Pinned {
    lease: Lease,
    node: NodeAddr,
    /// The WATCH was sent after `ASKING` (the slot is being imported there): so is EXEC.
    asking: bool,
}

// === impl TxState ===

impl TxState {
    /// Whether the client is in MULTI: its commands are queued, not run.
    #[inline]
    pub fn is_queuing(&self) -> bool {
        self.multi.is_some()
    }

    /// A command was refused while the client is in MULTI: EXEC will answer `-EXECABORT`.
    /// Does nothing outside MULTI.
    #[inline]
    pub fn flag_error(&mut self) {
        if let Some(q) = &mut self.multi {
            q.failed = true;
        }
    }

    /// `CLIENT INFO`'s `multi=` field: the number of queued commands, or -1 outside MULTI.
    pub fn queued_count(&self) -> i64 {
        self.multi.as_ref().map_or(-1, |q| q.wires.len() as i64)
    }

    /// RESET: leave MULTI and drop the WATCH.
    pub fn reset(&mut self, ctx: &WorkerCtx) {
        self.multi = None;
        self.unwatch(ctx);
    }

    /// Forget the WATCH: a chained step sends UNWATCH on its connection and returns it to
    /// the pool (or closes it).
    fn unwatch(&mut self, ctx: &WorkerCtx) {
        if self.watch_slot.take().is_some() {
            let (prev, next) = self.link();
            tokio::task::spawn_local(release_step(Env::new(ctx, Dialect::RESP2), prev, next));
        }
    }

    /// Append a step to the chain: what the previous step leaves, and where to leave this
    /// step's result.
    fn link(&mut self) -> (Option<oneshot::Receiver<Watched>>, oneshot::Sender<Watched>) {
        let (tx, rx) = oneshot::channel();
        (self.baton.replace(rx), tx)
    }
}

impl Queue {
    fn new(slot: Option<u16>) -> Queue {
        Queue {
            wires: Vec::new(),
            bytes: 0,
            slot,
            failed: false,
            written: None,
        }
    }

    /// `MULTI`, the queued commands and `EXEC`, ready for one write.
    fn body(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.bytes + MULTI.len() + EXEC.len());
        b.extend_from_slice(MULTI);
        for w in &self.wires {
            b.extend_from_slice(w);
        }
        b.extend_from_slice(EXEC);
        b.freeze()
    }
}

fn ready(reply: &'static [u8]) -> Entry {
    Entry::Ready(Bytes::from_static(reply))
}

/// A transaction-family command outside MULTI.
pub(crate) fn route(
    ctx: &WorkerCtx,
    tx: &mut TxState,
    dialect: Dialect,
    cmd: &Command,
    req: &Request,
    budget: &Rc<OutputBudget>,
) -> Entry {
    match cmd.name {
        "multi" => {
            tx.multi = Some(Box::new(Queue::new(tx.watch_slot)));
            ready(replies::OK)
        }
        "exec" => ready(replies::EXEC_WITHOUT_MULTI),
        "discard" => ready(replies::DISCARD_WITHOUT_MULTI),
        "watch" => watch(ctx, tx, cmd, req, dialect, budget),
        "unwatch" => {
            tx.unwatch(ctx);
            ready(replies::OK)
        }
        name => Entry::Ready(replies::not_yet(name)),
    }
}

/// A command sent while the client is in MULTI (after the arity and auth checks): run now
/// (EXEC, DISCARD, the MULTI/WATCH errors), queued (`+QUEUED`), or refused (which flags the
/// transaction). `None`: not for the queue, route it as usual (QUIT, RESET).
pub(crate) fn queue(
    ctx: &WorkerCtx,
    tx: &mut TxState,
    dialect: Dialect,
    cmd: &Command,
    req: &Request,
    budget: &Rc<OutputBudget>,
) -> Option<Entry> {
    if cmd.has_flag(flag::NO_MULTI) {
        return Some(refuse(tx, Bytes::from_static(replies::NOT_IN_MULTI)));
    }
    let entry = match cmd.family {
        Family::Transaction => match cmd.name {
            "multi" => ready(replies::MULTI_NESTED),
            "watch" => ready(replies::WATCH_INSIDE_MULTI),
            "exec" => exec(ctx, tx, dialect, budget),
            "discard" => {
                tx.multi = None;
                tx.unwatch(ctx);
                ready(replies::OK)
            }
            _ => add(ctx, tx, cmd, req), // UNWATCH is queued, as Redis does
        },
        Family::Local => match cmd.name {
            "quit" | "reset" => return None,
            // The node answers these exactly as slotgate would.
            "ping" | "echo" => add(ctx, tx, cmd, req),
            name if name == "command" || name.starts_with("command|") => add(ctx, tx, cmd, req),
            name => refuse(tx, replies::not_in_transaction(name)),
        },
        Family::Single | Family::Keyless | Family::Split(_) | Family::Blocking => {
            // Blocking commands do not block inside MULTI: Redis runs them as if timed out.
            add(ctx, tx, cmd, req)
        }
        // They need every shard, or would turn the connection into a subscriber.
        Family::AllShards(_) | Family::PubSub => refuse(tx, replies::not_in_transaction(cmd.name)),
        // CONFIG SET, SAVE … under `upstream.admin_commands: acl` need every node.
        Family::Unsupported if crate::family::admin::fans_out(ctx, cmd) => {
            refuse(tx, replies::not_in_transaction(cmd.name))
        }
        Family::Unsupported => refuse(tx, replies::unsupported(cmd.name)),
    };
    Some(entry)
}

/// `refusal` answers `cmd` (wrong arity, NOPERM …): in MULTI, Redis flags the transaction
/// (EXEC then answers `-EXECABORT`), or, when the refused command is EXEC itself, discards
/// it at once with `-EXECABORT Transaction discarded because of: <refusal>`.
pub(crate) fn refused(ctx: &WorkerCtx, tx: &mut TxState, cmd: &Command, refusal: Entry) -> Entry {
    if !tx.is_queuing() {
        return refusal;
    }
    if let (Entry::Ready(reply), "exec") = (&refusal, cmd.name) {
        let answer = replies::exec_abort_because(reply);
        tx.multi = None;
        tx.unwatch(ctx);
        return Entry::Ready(answer);
    }
    tx.flag_error();
    refusal
}

fn refuse(tx: &mut TxState, reply: Bytes) -> Entry {
    tx.flag_error();
    Entry::Ready(reply)
}

/// Queue `req` if its keys are in the transaction's slot.
fn add(ctx: &WorkerCtx, tx: &mut TxState, cmd: &Command, req: &Request) -> Entry {
    let Some(q) = tx.multi.as_mut() else {
        return Entry::Ready(replies::not_yet(cmd.name));
    };
    let slot = match single_slot(cmd, req, ctx.one_primary()) {
        Ok(slot) => slot,
        Err(reply) => return refuse(tx, reply),
    };
    if let Some(s) = slot {
        match q.slot {
            Some(t) if t != s && !ctx.one_primary() => {
                return refuse(tx, Bytes::from_static(replies::CROSSSLOT))
            }
            _ => q.slot = Some(s),
        }
    }
    let wire = req.wire();
    if q.bytes + wire.len() > ctx.cfg.limits.max_request_bytes {
        return refuse(tx, Bytes::from_static(replies::TRANSACTION_TOO_LARGE));
    }
    q.bytes += wire.len();
    q.wires.push(wire);
    if ctx.cache.is_some() {
        note_written(q, cmd, req);
    }
    ready(replies::QUEUED)
}

/// EXEC inside MULTI.
fn exec(ctx: &WorkerCtx, tx: &mut TxState, dialect: Dialect, budget: &Rc<OutputBudget>) -> Entry {
    let Some(q) = tx.multi.take() else {
        return ready(replies::EXEC_WITHOUT_MULTI);
    };
    if q.failed {
        tx.unwatch(ctx); // Redis discards the transaction and forgets the WATCH
        return ready(replies::EXECABORT);
    }
    let watching = tx.watch_slot.take().is_some();
    if q.wires.is_empty() && !watching {
        return ready(replies::EMPTY_ARRAY);
    }
    let (prev, next) = tx.link();
    let env = Env::new(ctx, dialect);
    let (slot, body, count) = (q.slot, q.body(), q.wires.len());
    // The read cache drops the queued writes' keys now, and again once EXEC is answered.
    let guard = match (&ctx.cache, q.written) {
        (Some(cache), Some(written)) => {
            cache.own_write(&written);
            Some(cache.guard(written))
        }
        _ => None,
    };
    let entry = Entry::Task(
        Task::spawn_bounded(budget, move |reply| {
            answer_unless_gone(reply, async move {
                let watched = receive(prev).await;
                let answer = exec_step(&env, watched, slot, &body, count).await;
                let _ = next.send(Watched::None); // EXEC always leaves the connection unwatched
                answer
            })
        }),
        None,
    );
    match guard {
        Some(guard) => Entry::Wrote(Box::new(Wrote {
            inner: entry,
            guard,
        })),
        None => entry,
    }
}

/// Add a queued command's keys to what the transaction writes (read cache on).
fn note_written(q: &mut Queue, cmd: &Command, req: &Request) {
    if !crate::family::cache::writes(cmd) {
        return;
    }
    let more = crate::family::cache::written_keys(cmd, req);
    q.written = Some(match (q.written.take(), more) {
        (None, more) => more,
        (Some(Written::All), _) | (_, Written::All) => Written::All,
        (Some(Written::Keys(mut keys)), Written::Keys(more)) => {
            keys.extend(more);
            Written::Keys(keys)
        }
    });
}

/// WATCH outside MULTI: its keys must share a slot, the same as an earlier WATCH's.
fn watch(
    ctx: &WorkerCtx,
    tx: &mut TxState,
    cmd: &Command,
    req: &Request,
    dialect: Dialect,
    budget: &Rc<OutputBudget>,
) -> Entry {
    let slot = match single_slot(cmd, req, ctx.one_primary()) {
        Ok(Some(slot)) => slot,
        Ok(None) => return Entry::Ready(replies::wrong_arity(cmd.name)),
        Err(reply) => return Entry::Ready(reply),
    };
    if tx.watch_slot.is_some_and(|w| w != slot) && !ctx.one_primary() {
        return ready(replies::CROSSSLOT);
    }
    tx.watch_slot = Some(slot);
    let (prev, next) = tx.link();
    let env = Env::new(ctx, dialect);
    let wire = req.wire();
    Entry::Task(
        Task::spawn_bounded(budget, move |reply| {
            answer_unless_gone(reply, async move {
                let watched = receive(prev).await;
                let (answer, watched) = watch_step(&env, watched, slot, &wire).await;
                let _ = next.send(watched);
                answer
            })
        }),
        None,
    )
}

/// What a chained step needs from its worker.
struct Env {
    pool: Rc<DedicatedPool>,
    topology: Arc<Topology>,
    metrics: Arc<Metrics>,
    max_redirects: u8,
    op_timeout: Duration,
    /// The client's protocol, spoken by the connections it takes.
    dialect: Dialect,
}

impl Env {
    fn new(ctx: &WorkerCtx, dialect: Dialect) -> Env {
        Env {
            dialect,
            pool: Rc::clone(&ctx.dedicated),
            topology: Arc::clone(&ctx.topology),
            metrics: Arc::clone(&ctx.shared.metrics),
            max_redirects: ctx.cfg.upstream.max_redirects,
            op_timeout: ctx.cfg.upstream.op_timeout,
        }
    }

    /// The primary serving `slot` now; for a keyless transaction, the first serving one.
    fn owner(&self, slot: Option<u16>) -> Option<NodeAddr> {
        let map = self.topology.map();
        let node = match slot {
            Some(s) => map.primary_for_slot(s).cloned(),
            None => map.serving_shards().first().map(|s| s.primary.clone()),
        };
        if node.is_none() {
            self.topology.request_refresh(RefreshTrigger::Error);
        }
        node
    }

    /// Where to send a step again after `reply`, an error from `node`: the redirect's
    /// target (and whether with `ASKING`), or the slot's owner after a retry's backoff;
    /// `None` when `reply` is the answer (see `upstream::redirect`).
    async fn next_target(
        &self,
        attempts: &mut Attempts,
        reply: &Reply,
        node: &NodeAddr,
        slot: Option<u16>,
        deadline: Instant,
    ) -> Option<(NodeAddr, bool)> {
        match attempts.judge(
            reply,
            node,
            self.max_redirects,
            &self.topology,
            &self.metrics,
        ) {
            Verdict::Redirect { target, asking } => Some((target, asking)),
            Verdict::Retry(reason) => {
                let at = attempts.retry_at(Instant::now(), deadline)?;
                self.metrics.retry(reason);
                tokio::time::sleep_until(at).await;
                Some((self.owner(slot)?, false))
            }
            Verdict::Final => None,
        }
    }

    /// A dedicated connection to `node` before `deadline`.
    async fn take(&self, node: &NodeAddr, deadline: Instant) -> Result<Lease, Bytes> {
        match timeout_at(deadline, self.pool.take(node, self.dialect)).await {
            Ok(lease) => lease,
            Err(_) => Err(replies::upstream_timeout(node.as_str())),
        }
    }
}

/// Run `work` and send its answer, unless the client leaves first: then drop it and all it
/// holds (connections included).
async fn answer_unless_gone(
    mut reply: crate::session::task::TaskTx,
    work: impl Future<Output = Bytes>,
) {
    let answer = tokio::select! {
        a = work => Some(a),
        _ = reply.closed() => None,
    };
    if let Some(a) = answer {
        let _ = reply.send(a);
    }
}

/// What the previous step left; `Lost` if it was dropped before finishing.
async fn receive(prev: Option<oneshot::Receiver<Watched>>) -> Watched {
    match prev {
        None => Watched::None,
        Some(rx) => rx.await.unwrap_or(Watched::Lost),
    }
}

/// UNWATCH, DISCARD, RESET, or an EXEC that answered `-EXECABORT` locally: forget the
/// WATCH; its connection goes back to the pool after a successful UNWATCH, else closes.
async fn release_step(
    env: Env,
    prev: Option<oneshot::Receiver<Watched>>,
    next: oneshot::Sender<Watched>,
) {
    let watched = receive(prev).await;
    let _ = next.send(Watched::None);
    if let Watched::Pinned(mut p) = watched {
        let deadline = Instant::now() + env.op_timeout;
        let clean = matches!(
            timeout_at(deadline, p.lease.conn().request(UNWATCH, false)).await,
            Ok(Ok(r)) if r.kind == ReplyKind::Simple
        );
        if clean {
            p.lease.give_back();
        }
    }
}

/// Send WATCH and say what the client's WATCH is now. A second WATCH goes to the pinned
/// connection; the first one to the slot's primary, following MOVED/ASK.
async fn watch_step(env: &Env, watched: Watched, slot: u16, wire: &[u8]) -> (Bytes, Watched) {
    let deadline = Instant::now() + env.op_timeout;
    let mut p = match watched {
        // An earlier WATCH no longer holds: EXEC answers nil whatever this one does.
        Watched::Lost => return (Bytes::from_static(replies::OK), Watched::Lost),
        Watched::None => return first_watch(env, slot, wire, deadline).await,
        Watched::Pinned(p) => p,
    };
    let asking = p.asking;
    match timeout_at(deadline, p.lease.conn().request(wire, asking)).await {
        // The slot moved since the first WATCH: the two cannot be held on one node.
        Ok(Ok(r))
            if matches!(
                r.kind,
                ReplyKind::Error(ErrorClass::Moved | ErrorClass::Ask)
            ) =>
        {
            (Bytes::from_static(replies::OK), Watched::Lost)
        }
        Ok(Ok(r)) => (r.raw, Watched::Pinned(p)),
        Ok(Err(e)) => {
            tracing::debug!(node = %p.node, error = %e, "WATCH connection lost");
            (replies::upstream_lost(p.node.as_str()), Watched::Lost)
        }
        Err(_) => (replies::upstream_timeout(p.node.as_str()), Watched::Lost),
    }
}

async fn first_watch(env: &Env, slot: u16, wire: &[u8], deadline: Instant) -> (Bytes, Watched) {
    let Some(mut node) = env.owner(Some(slot)) else {
        return (
            Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED),
            Watched::None,
        );
    };
    let (mut asking, mut attempts) = (false, Attempts::default());
    loop {
        let mut lease = match env.take(&node, deadline).await {
            Ok(lease) => lease,
            Err(reply) => return (reply, Watched::None),
        };
        let reply = match timeout_at(deadline, lease.conn().request(wire, asking)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::debug!(node = %node, error = %e, "WATCH connection lost");
                return (replies::upstream_lost(node.as_str()), Watched::None);
            }
            Err(_) => return (replies::upstream_timeout(node.as_str()), Watched::None),
        };
        if reply.is_error() {
            lease.give_back(); // a refused WATCH watched nothing
            match env
                .next_target(&mut attempts, &reply, &node, Some(slot), deadline)
                .await
            {
                Some(to) => (node, asking) = to,
                None => return (reply.raw, Watched::None),
            }
            continue;
        }
        return (
            reply.raw,
            Watched::Pinned(Box::new(Pinned {
                lease,
                node,
                asking,
            })),
        );
    }
}

/// How one attempt at a transaction ended.
enum Outcome {
    /// It ran (the EXEC array), a WATCH aborted it (nil), or it failed for good: answer this.
    Done(Bytes),
    /// Nothing ran: the node redirected it or asked for a retry (this error, see
    /// `upstream::redirect`). `answer` is for the client if that cannot be followed.
    NotRun { reply: Reply, answer: Bytes },
}

/// Run the transaction (`body`: MULTI, `count` commands, EXEC) for a client whose WATCH is
/// `watched`, and return the client's EXEC reply.
async fn exec_step(
    env: &Env,
    watched: Watched,
    slot: Option<u16>,
    body: &[u8],
    count: usize,
) -> Bytes {
    let deadline = Instant::now() + env.op_timeout;
    let mut p = match watched {
        Watched::Lost => return Bytes::from_static(env.dialect.proto.null_array()),
        Watched::None => return exec_anywhere(env, slot, body, count, deadline).await,
        Watched::Pinned(p) => p,
    };
    let asking = p.asking;
    match timeout_at(deadline, attempt(p.lease.conn(), body, count, asking)).await {
        Ok(Ok(outcome)) => {
            p.lease.give_back(); // after EXEC the connection is out of MULTI and unwatched
            match outcome {
                Outcome::Done(answer) => answer,
                // Nothing ran, and the WATCH cannot move with the slot: as if a watched key
                // changed (on its old node, it was: migrated away).
                Outcome::NotRun { .. } => Bytes::from_static(env.dialect.proto.null_array()),
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(node = %p.node, error = %e, "EXEC connection lost");
            replies::upstream_lost(p.node.as_str())
        }
        Err(_) => replies::upstream_timeout(p.node.as_str()),
    }
}

/// Run the transaction without a WATCH: on the slot's primary, following MOVED/ASK and
/// retrying after TRYAGAIN/CLUSTERDOWN/LOADING until `deadline`.
async fn exec_anywhere(
    env: &Env,
    slot: Option<u16>,
    body: &[u8],
    count: usize,
    deadline: Instant,
) -> Bytes {
    let Some(mut node) = env.owner(slot) else {
        return Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED);
    };
    let (mut asking, mut attempts) = (false, Attempts::default());
    loop {
        let mut lease = match env.take(&node, deadline).await {
            Ok(lease) => lease,
            Err(reply) => return reply,
        };
        let outcome = match timeout_at(deadline, attempt(lease.conn(), body, count, asking)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                tracing::debug!(node = %node, error = %e, "EXEC connection lost");
                return replies::upstream_lost(node.as_str());
            }
            Err(_) => return replies::upstream_timeout(node.as_str()),
        };
        lease.give_back();
        let (reply, answer) = match outcome {
            Outcome::Done(answer) => return answer,
            Outcome::NotRun { reply, answer } => (reply, answer),
        };
        match env
            .next_target(&mut attempts, &reply, &node, slot, deadline)
            .await
        {
            Some(to) => (node, asking) = to,
            None => return answer,
        }
    }
}

/// One attempt: write `[ASKING] MULTI … EXEC` and read every reply.
///
/// # Errors
/// The connection broke or the node sent something that is not RESP; the transaction may
/// have run.
async fn attempt(
    conn: &mut DedicatedConn,
    body: &[u8],
    count: usize,
    asking: bool,
) -> Result<Outcome, String> {
    if asking {
        // The ASKING flag outlives MULTI until EXEC, so it covers every queued command.
        conn.send(ASKING).await?;
    }
    conn.send(body).await?;
    if asking {
        // Always `+OK` in cluster mode; were it refused, the queued commands would say so.
        conn.read_reply().await?;
    }
    let multi = conn.read_reply().await?;
    let mut refused: Option<Reply> = None;
    for _ in 0..count {
        let reply = conn.read_reply().await?;
        if refused.is_none() && reply.is_error() {
            refused = Some(reply);
        }
    }
    let exec = conn.read_reply().await?;
    if multi.is_error() {
        // Only a proxy user without `+multi` upstream gets here: nothing else refuses MULTI
        // (no keys, allowed while loading, busy or stale). Sending MULTI alone first would
        // cost every transaction a round trip.
        return Ok(Outcome::Done(replies::multi_refused(&multi.raw)));
    }
    // A refused queued command made the node discard the transaction (`-EXECABORT`).
    Ok(match refused {
        Some(r) => {
            let answer = replies::exec_abort_because(&r.raw);
            classify(r, answer)
        }
        None => {
            let answer = exec.raw.clone();
            classify(exec, answer)
        }
    })
}

/// Sort a reply that ended an attempt: a redirect or a retryable error means nothing ran.
fn classify(reply: Reply, answer: Bytes) -> Outcome {
    if redirect::not_run(&reply) {
        Outcome::NotRun { reply, answer }
    } else {
        Outcome::Done(answer)
    }
}

#[cfg(test)]
mod tests;
