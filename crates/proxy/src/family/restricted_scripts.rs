//! Scripts of restricted users under `scripting.restricted_users: mirror`: their EVAL,
//! EVALSHA and FCALL (and the `_RO` forms) run on a dedicated connection authenticated as the
//! user's script identity (`auth::identity`), so the node checks every command the script
//! calls against the user's own rules; and the identities a reload no longer needs are
//! removed from the nodes.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use slotgate_commands::Command;
use tokio::time::Instant;

use crate::auth::identity::ScriptIdentity;
use crate::protocol::Dialect;
use crate::replies;
use crate::runtime::context::WorkerCtx;
use crate::session::client::ClientState;
use crate::session::entry::Entry;
use crate::session::task::Task;
use crate::upstream::dedicated::DedicatedPool;
use crate::upstream::redirect::{Attempts, Verdict};

/// Whether `cmd` runs a script or function body (what a node checks inside, command by
/// command, against the user its connection authenticated as).
pub(crate) fn is_script_call(cmd: &Command) -> bool {
    matches!(
        cmd.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}

/// The identity `cmd` must run as for this client: `Some` for a script call of a user whose
/// scripts are mirrored.
pub(crate) fn identity_for(
    ctx: &WorkerCtx,
    client: &ClientState,
    cmd: &Command,
) -> Option<ScriptIdentity> {
    let user = client.auth.as_ref()?.user()?;
    if !user.scripts_mirrored() || !is_script_call(cmd) {
        return None;
    }
    let secret = ctx.cfg.upstream.password.as_deref().unwrap_or("");
    Some(ScriptIdentity::of(user, secret))
}

/// Run a script call as `identity` on the primary of `slot` (any primary when `None`), on a
/// dedicated connection speaking `dialect`, within `op_timeout`; `repair` is the `SCRIPT LOAD`
/// for an EVALSHA whose node answers `-NOSCRIPT`.
pub(crate) fn run_as(
    ctx: &WorkerCtx,
    budget: &Rc<crate::runtime::budget::OutputBudget>,
    identity: ScriptIdentity,
    slot: Option<u16>,
    wire: Bytes,
    dialect: Dialect,
    repair: Option<Bytes>,
) -> Entry {
    let pool = Rc::clone(&ctx.dedicated);
    let deadline = Instant::now() + ctx.cfg.upstream.op_timeout;
    let call = Call {
        identity,
        slot,
        wire,
        dialect,
        repair,
        deadline,
    };
    Entry::Task(
        Task::spawn_bounded(
            budget,
            move |tx| async move { tx.answer(call.run(&pool)).await },
        ),
        None,
    )
}

/// One script call run as a script identity.
struct Call {
    identity: ScriptIdentity,
    slot: Option<u16>,
    wire: Bytes,
    dialect: Dialect,
    repair: Option<Bytes>,
    deadline: Instant,
}

impl Call {
    /// The node's reply, following MOVED/ASK, retrying TRYAGAIN/CLUSTERDOWN/LOADING with
    /// backoff, and loading the script once on `-NOSCRIPT`, all within the deadline.
    async fn run(mut self, pool: &Rc<DedicatedPool>) -> Bytes {
        let map = pool.topology.map();
        let first = match self.slot {
            Some(s) => map.primary_for_slot(s).cloned(),
            None => map.serving_shards().first().map(|s| s.primary.clone()),
        };
        drop(map);
        let Some(mut node) = first else {
            return Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED);
        };
        let (mut asking, mut attempts) = (false, Attempts::default());
        loop {
            let mut lease = match pool.take_as(&node, self.dialect, &self.identity).await {
                Ok(lease) => lease,
                Err(reply) => return reply,
            };
            let reply = match tokio::time::timeout_at(
                self.deadline,
                lease.conn().request(&self.wire, asking),
            )
            .await
            {
                Ok(Ok(reply)) => reply,
                Ok(Err(e)) => {
                    tracing::debug!(node = %node, error = %e, "dedicated connection lost");
                    return replies::upstream_lost(node.as_str());
                }
                // The script may still run: it may write, so the write wording.
                Err(_) => return replies::upstream_timeout_write(node.as_str()),
            };
            lease.give_back();
            if !reply.is_error() {
                return reply.raw;
            }
            let refusal = self.in_users_name(&reply.raw);
            if reply.raw.starts_with(b"-NOSCRIPT") {
                if let Some(load) = self.repair.take() {
                    // Loaded as slotgate's upstream user: SCRIPT LOAD runs nothing, and the
                    // client's rules allowed the EVALSHA that needs it.
                    if let Ok(mut plain) = pool.take(&node, self.dialect).await {
                        if let Ok(loaded) = plain.conn().request(&load, false).await {
                            if !loaded.is_error() {
                                plain.give_back();
                                continue;
                            }
                        }
                    }
                }
                return refusal;
            }
            let max = pool.cfg.max_redirects;
            match attempts.judge(&reply, &node, max, &pool.topology, &pool.metrics) {
                Verdict::Redirect {
                    target,
                    asking: ask,
                } => (node, asking) = (target, ask),
                Verdict::Retry(_) => match attempts.retry_at(Instant::now(), self.deadline) {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => return refusal,
                },
                _ => return refusal,
            }
        }
    }

    /// An error reply as the client should read it: Redis 8 names the user an ACL check
    /// refused (`User slotgate-script-… has no permissions …`); that is the client's user.
    fn in_users_name(&self, raw: &Bytes) -> Bytes {
        let name = self.identity.name.as_bytes();
        match raw.windows(name.len()).position(|w| w == name) {
            None => raw.clone(),
            Some(at) => {
                let mut out = BytesMut::with_capacity(raw.len());
                out.extend_from_slice(&raw[..at]);
                out.extend_from_slice(self.identity.user.as_bytes());
                out.extend_from_slice(&raw[at + name.len()..]);
                out.freeze()
            }
        }
    }
}

/// The names of the script identities `users` need under `policy` (restricted users under
/// `mirror`), for a slotgate whose upstream password is `secret`.
pub(crate) fn identity_names(
    users: &[crate::auth::users::UserSpec],
    policy: crate::auth::users::RestrictedScripts,
    secret: &str,
) -> Vec<String> {
    if policy != crate::auth::users::RestrictedScripts::Mirror {
        return Vec::new();
    }
    users
        .iter()
        .filter(|u| u.is_restricted())
        .map(|u| ScriptIdentity::of(u, secret).name)
        .collect()
}

/// Remove the script identities (`slotgate-script-…` ACL users) named `gone` from every node
/// of the map: those of users whose rules changed or who were removed. Best effort: a node
/// that cannot be reached or refuses is skipped. Returns how many were removed.
pub(crate) async fn remove_identities(
    topology: &crate::upstream::topology::Topology,
    cfg: &crate::config::UpstreamConfig,
    gone: &[String],
) -> usize {
    use crate::upstream::node_client;
    use slotgate_resp::value::Value;
    let mut removed = 0;
    for node in topology.map_arc().all_nodes() {
        let Ok(mut stream) =
            node_client::connect(node.as_str(), cfg, topology.upstream_tls()).await
        else {
            continue;
        };
        let mut buf = BytesMut::new();
        let mut args: Vec<&[u8]> = vec![b"ACL", b"DELUSER"];
        args.extend(gone.iter().map(|n| n.as_bytes()));
        match node_client::query(&mut stream, &mut buf, &args, cfg.op_timeout).await {
            Ok(Value::Integer(n)) => removed += usize::try_from(n).unwrap_or(0),
            other => {
                tracing::debug!(node = %node, reply = ?other, "ACL DELUSER of old script identities failed")
            }
        }
    }
    removed
}
