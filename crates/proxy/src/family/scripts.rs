//! Scripts and functions:
//! - The Lua script bodies slotgate has seen (EVAL, EVAL_RO, SCRIPT LOAD), by SHA1, so an
//!   EVALSHA that meets `-NOSCRIPT` on a node that never loaded the script — a replica
//!   promoted by a failover, a node added by a reshard, a restarted node — is repaired:
//!   slotgate sends `SCRIPT LOAD <body>` to that node and the EVALSHA again, once.
//! - Under `scripting.restricted_users: mirror`, a restricted user's EVAL, EVALSHA and FCALL
//!   (and their `_RO` forms) run on a dedicated connection authenticated as the user's
//!   script identity (`auth::identity`), so the node checks every command the script calls
//!   against the user's own rules.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use sha1::{Digest, Sha1};
use slotgate_commands::Command;
use tokio::time::Instant;

use crate::auth::identity::ScriptIdentity;
use crate::protocol::Protocol;
use crate::replies;
use crate::runtime::context::WorkerCtx;
use crate::session::client::ClientState;
use crate::session::entry::Entry;
use crate::session::task::Task;
use crate::upstream::dedicated::DedicatedPool;
use crate::upstream::redirect::{Attempts, Verdict};

/// Most bytes of script bodies kept; beyond that new scripts are not remembered (their
/// EVALSHA still works wherever Redis has them).
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// SHA1 (lowercase hex, as Redis prints it) → `SCRIPT LOAD <body>` ready to send.
#[derive(Default)]
pub(crate) struct ScriptCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    loads: HashMap<[u8; 40], Bytes>,
    bytes: usize,
}

fn sha1_hex(body: &[u8]) -> [u8; 40] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha1::digest(body);
    let mut out = [0u8; 40];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

impl ScriptCache {
    /// Remember `body` (from EVAL or SCRIPT LOAD).
    pub fn remember(&self, body: &[u8]) {
        let sha = sha1_hex(body);
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.loads.contains_key(&sha) || inner.bytes + body.len() > MAX_BYTES {
            return;
        }
        let mut wire = BytesMut::new();
        slotgate_resp::encode::command(&mut wire, &[&b"SCRIPT"[..], b"LOAD", body]);
        inner.bytes += body.len();
        inner.loads.insert(sha, wire.freeze());
    }

    /// `SCRIPT LOAD <body>` for the script whose SHA1 is `sha` (any case), if it was seen.
    pub fn load_command(&self, sha: &[u8]) -> Option<Bytes> {
        let key: [u8; 40] = sha.to_ascii_lowercase().try_into().ok()?;
        self.inner.lock().ok()?.loads.get(&key).cloned()
    }
}

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
/// dedicated connection speaking `proto`, within `op_timeout`; `repair` is the `SCRIPT LOAD`
/// for an EVALSHA whose node answers `-NOSCRIPT`.
pub(crate) fn run_as(
    ctx: &WorkerCtx,
    identity: ScriptIdentity,
    slot: Option<u16>,
    wire: Bytes,
    proto: Protocol,
    repair: Option<Bytes>,
) -> Entry {
    let pool = Rc::clone(&ctx.dedicated);
    let deadline = Instant::now() + ctx.cfg.upstream.op_timeout;
    let call = Call {
        identity,
        slot,
        wire,
        proto,
        repair,
        deadline,
    };
    Entry::Task(
        Task::spawn_bounded(move |mut tx| async move {
            let reply = tokio::select! {
                reply = call.run(&pool) => reply,
                _ = tx.closed() => return,
            };
            let _ = tx.send(reply);
        }),
        None,
    )
}

/// One script call run as a script identity.
struct Call {
    identity: ScriptIdentity,
    slot: Option<u16>,
    wire: Bytes,
    proto: Protocol,
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
            let mut lease = match pool.take_as(&node, self.proto, &self.identity).await {
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
            if reply.raw.starts_with(b"-NOSCRIPT") {
                if let Some(load) = self.repair.take() {
                    // Loaded as slotgate's upstream user: SCRIPT LOAD runs nothing, and the
                    // client's rules allowed the EVALSHA that needs it.
                    if let Ok(mut plain) = pool.take(&node, self.proto).await {
                        if let Ok(loaded) = plain.conn().request(&load, false).await {
                            if !loaded.is_error() {
                                plain.give_back();
                                continue;
                            }
                        }
                    }
                }
                return reply.raw;
            }
            let max = pool.cfg.max_redirects;
            match attempts.judge(&reply, &node, max, &pool.topology, &pool.metrics) {
                Verdict::Redirect {
                    target,
                    asking: ask,
                } => (node, asking) = (target, ask),
                Verdict::Retry(_) => match attempts.retry_at(Instant::now(), self.deadline) {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => return reply.raw,
                },
                _ => return reply.raw,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_redis() {
        // redis-cli SCRIPT LOAD "return 1" → e0e1f9fabfc9d4800c877a703b823ac0578ff8db
        assert_eq!(
            &sha1_hex(b"return 1"),
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        let cache = ScriptCache::default();
        cache.remember(b"return 1");
        let load = cache
            .load_command(b"E0E1F9FABFC9D4800C877A703B823AC0578FF8DB")
            .unwrap();
        assert_eq!(
            &load[..],
            b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n$8\r\nreturn 1\r\n"
        );
        assert!(cache.load_command(b"00").is_none());
    }
}
