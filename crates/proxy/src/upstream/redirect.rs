//! The one redirect and retry policy: what an error reply from a node means for the command
//! that got it, on every path to the nodes (the multiplexed ops, blocking commands,
//! transactions, shard channels).
//!
//! - `-MOVED slot host:port`: the slot lives there now. The slot map is patched at once
//!   (the topology also schedules a full refresh) and the command is sent there.
//! - `-ASK slot host:port`: only this command, only now: `ASKING` and the command go
//!   back-to-back on one connection to the target; the map does not change.
//! - At most `upstream.max_redirects` redirects per command; past that the last redirect
//!   error is the reply.
//! - `-TRYAGAIN`, `-CLUSTERDOWN`, `-LOADING`, `-READONLY` (a primary demoted by a Sentinel
//!   failover: the write did not run) and a node that cannot be reached: retried after a
//!   backoff (10 ms doubling to 200 ms) while the command's deadline allows; CLUSTERDOWN,
//!   READONLY and an unreachable node also ask the topology for a refresh.
//! - A connection lost after the command may have been written: only a read-only command
//!   is sent again, once (see [`may_resend_after_loss`]).

use std::time::Duration;

use slotgate_cluster::{NodeAddr, Redirect, RedirectKind};
use slotgate_resp::{ErrorClass, Reply, ReplyKind};
use tokio::time::Instant;

use crate::telemetry::metrics::{Metrics, RefreshTrigger, Retry};
use crate::upstream::topology::Topology;

/// `ASKING` as sent before a command redirected by `-ASK`.
pub(crate) const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// First retry delay after TRYAGAIN/CLUSTERDOWN/LOADING or an unreachable node.
const RETRY_MIN: Duration = Duration::from_millis(10);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_millis(200);

/// What an error reply means for the command that got it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The reply is the command's answer.
    Final,
    /// Send the command to `target`, after `ASKING` when `asking`.
    Redirect {
        /// Where the slot lives (MOVED) or is being imported (ASK).
        target: NodeAddr,
        /// An ASK: send `ASKING` first, on the same connection.
        asking: bool,
    },
    /// Send it again later (see [`Attempts::retry_at`]), counted under this reason.
    Retry(Retry),
}

/// One command's redirects and retries so far.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Attempts {
    redirects: u8,
    retries: u8,
}

// === impl Attempts ===

impl Attempts {
    /// Redirects followed so far.
    pub fn redirects(&self) -> u8 {
        self.redirects
    }

    /// Whether the command was sent more than once for a redirect or a retry.
    pub fn any(&self) -> bool {
        self.redirects > 0 || self.retries > 0
    }

    /// What `reply`, an error from `node`, means. A redirect within `max_redirects` is
    /// counted (`slotgate_redirects_total`), and a MOVED patches the slot map; a CLUSTERDOWN
    /// asks for a refresh. Anything that is not a well-formed redirect or a retryable
    /// error, and a redirect past the limit, is [`Verdict::Final`].
    pub fn judge(
        &mut self,
        reply: &Reply,
        node: &NodeAddr,
        max_redirects: u8,
        topology: &Topology,
        metrics: &Metrics,
    ) -> Verdict {
        match reply.kind {
            ReplyKind::Error(ErrorClass::Moved | ErrorClass::Ask) => {
                if self.redirects >= max_redirects {
                    return Verdict::Final;
                }
                match follow(reply, node, topology, metrics) {
                    Some(to) => {
                        self.redirects += 1;
                        Verdict::Redirect {
                            target: to.target,
                            asking: to.asking,
                        }
                    }
                    None => Verdict::Final,
                }
            }
            ReplyKind::Error(ErrorClass::TryAgain) => Verdict::Retry(Retry::TryAgain),
            ReplyKind::Error(ErrorClass::Loading) => Verdict::Retry(Retry::Loading),
            ReplyKind::Error(ErrorClass::ClusterDown) => {
                topology.request_refresh(RefreshTrigger::Error);
                Verdict::Retry(Retry::ClusterDown)
            }
            // A demoted primary (Sentinel failover): the write did not run; send it to the
            // primary the topology finds next.
            ReplyKind::Error(ErrorClass::ReadOnly) => {
                topology.request_refresh(RefreshTrigger::Error);
                Verdict::Retry(Retry::ReadOnly)
            }
            _ => Verdict::Final,
        }
    }

    /// When to send again after a retryable answer received `now`: `None` when the backoff
    /// (10 ms doubling per retry, at most 200 ms) would end at or past `deadline` (the
    /// command then ends with the answer it has). Counts the retry.
    pub fn retry_at(&mut self, now: Instant, deadline: Instant) -> Option<Instant> {
        let delay =
            (RETRY_MIN * 2u32.saturating_pow(u32::from(self.retries.min(8)))).min(RETRY_MAX);
        let at = now + delay;
        if at >= deadline {
            return None;
        }
        self.retries = self.retries.saturating_add(1);
        Some(at)
    }
}

/// Where a redirect sends a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Redirected {
    /// The slot the redirect is about.
    pub slot: u16,
    /// Where it lives (MOVED) or is being imported (ASK).
    pub target: NodeAddr,
    /// An ASK: `ASKING` first, on the same connection.
    pub asking: bool,
}

/// Where a `-MOVED`/`-ASK` reply from `node` says to go; `None` for any other reply.
/// Counts the redirect and, for a MOVED, patches the slot map. For callers without a
/// per-command budget (a shard channel's subscription follows its slot).
pub(crate) fn follow(
    reply: &Reply,
    node: &NodeAddr,
    topology: &Topology,
    metrics: &Metrics,
) -> Option<Redirected> {
    if !matches!(
        reply.kind,
        ReplyKind::Error(ErrorClass::Moved | ErrorClass::Ask)
    ) {
        return None;
    }
    let r = Redirect::parse(&reply.raw)?;
    let target = NodeAddr::new(&r.target(node.as_str()));
    let asking = r.kind == RedirectKind::Ask;
    metrics.redirect(asking);
    if !asking {
        topology.apply_moved(r.slot, target.as_str());
    }
    Some(Redirected {
        slot: r.slot,
        target,
        asking,
    })
}

/// Whether `reply` says the command did not run and may be sent again: a redirect or a
/// retryable error ([`Attempts::judge`] decides whether it will be).
pub(crate) fn not_run(reply: &Reply) -> bool {
    matches!(
        reply.kind,
        ReplyKind::Error(
            ErrorClass::Moved
                | ErrorClass::Ask
                | ErrorClass::TryAgain
                | ErrorClass::ClusterDown
                | ErrorClass::Loading
                | ErrorClass::ReadOnly
        )
    )
}

/// Whether a command whose connection broke after it may have been written is sent again:
/// only a read-only one, and only once (`resent`: it was already).
pub(crate) fn may_resend_after_loss(readonly: bool, resent: bool) -> bool {
    readonly && !resent
}

#[cfg(test)]
mod tests;
