//! The auth gate every command passes before it is routed, when users are configured: a
//! connection starts unauthenticated and every command but AUTH, HELLO, QUIT and RESET is
//! answered `-NOAUTH` until AUTH (or HELLO AUTH) succeeds; after that every command line is
//! checked against the user's ACL rules (split commands once, as the whole line), and a
//! restricted user's script and function commands are refused under
//! `scripting.restricted_users: refuse` (a node would run the script with slotgate's rights).
//! With no users configured, a session carries no `ClientAuth` and the gate costs one branch.
//!
//! Sessions notice a users reload through a generation counter read on every command (one
//! atomic load) and a watch channel that closes the connection of a removed or disabled user
//! while it is idle.

use bytes::Bytes;
use slotgate_commands::{flag, ArgSource, Category, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::replies;
use crate::runtime::context::WorkerCtx;
use crate::session::client::ClientState;
use crate::session::entry::Entry;
use crate::telemetry::logs;

/// The auth gate for one command of a connection with users configured: `None` lets it
/// through; otherwise the entry to answer instead (`-NOAUTH`, `-NOPERM`, or a close when the
/// user was removed by a reload). Counts refusals in `slotgate_auth_failures_total`. Never
/// allocates unless it refuses.
pub(crate) fn gate<A: ArgSource + ?Sized>(
    ctx: &WorkerCtx,
    client: &mut ClientState,
    cmd: &Command,
    args: &A,
) -> Option<Entry> {
    let auth = client.auth.as_mut()?;
    if !auth.refresh(&ctx.shared.users) {
        return Some(revoked(client));
    }
    let Some(user) = auth.user() else {
        if cmd.has_flag(flag::NO_AUTH) {
            return None;
        }
        ctx.shared.metrics.auth_failure("noauth");
        return Some(Entry::Ready(Bytes::from_static(replies::NOAUTH)));
    };
    if user.scripts_refused() && cmd.in_category(Category::Scripting) {
        ctx.shared.metrics.auth_failure("noperm");
        return Some(Entry::Ready(replies::script_refused(cmd.name)));
    }
    match user.rules.check(cmd, args) {
        // A transaction runs as slotgate's upstream user: no script of a mirrored user in it.
        Ok(())
            if user.scripts_mirrored()
                && client.transaction.is_queuing()
                && crate::family::restricted_scripts::is_script_call(cmd) =>
        {
            Some(Entry::Ready(Bytes::from_static(replies::SCRIPT_IN_MULTI)))
        }
        Ok(()) => None,
        Err(denied) => {
            ctx.shared.metrics.auth_failure("noperm");
            Some(Entry::Ready(denied.reply()))
        }
    }
}

/// After a reload, while the connection waits: `false` when its user was removed or turned
/// `off` (the session stops reading and closes once its replies are written).
pub(crate) fn still_allowed(ctx: &WorkerCtx, client: &mut ClientState) -> bool {
    let allowed = match client.auth.as_mut() {
        Some(auth) => auth.refresh(&ctx.shared.users),
        None => true,
    };
    if !allowed {
        log_revoked(client);
    }
    allowed
}

fn revoked(client: &ClientState) -> Entry {
    log_revoked(client);
    Entry::Close(Bytes::from_static(replies::USER_REVOKED))
}

fn log_revoked(client: &ClientState) {
    let user = client
        .auth
        .as_ref()
        .and_then(|a| a.user())
        .map(|u| u.name.as_str())
        .unwrap_or("?");
    tracing::info!(client = %client.peer, user, "user removed or disabled by a reload; closing its connection");
}

/// Resolves on the next users reload; never when `rx` is `None` or the table is gone.
pub(crate) async fn users_changed(rx: &mut Option<watch::Receiver<u64>>) {
    let alive = match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => false,
    };
    if !alive {
        std::future::pending::<()>().await;
    }
}

/// One authentication attempt (AUTH, HELLO AUTH) on a connection with users configured.
/// Returns whether it succeeded and, after [`FAILURES_BEFORE_DELAY`](crate::auth::users::FAILURES_BEFORE_DELAY) consecutive failures on
/// this connection, the instant before which its reply must not be sent (successive delayed
/// replies queue up, so a pipeline of guesses gets one answer per delay). A failure keeps
/// the previous authentication, like Redis; it is counted (`wrongpass`) and logged, rate
/// limited, with the client's address and the user name only when it is a configured one.
pub(crate) fn attempt(
    ctx: &WorkerCtx,
    client: &mut ClientState,
    name: &[u8],
    password: &[u8],
) -> (bool, Option<Instant>) {
    let peer = client.peer;
    let Some(auth) = client.auth.as_mut() else {
        return (false, None);
    };
    let users = &ctx.shared.users;
    let login = auth.log_in(users, name, password, ctx.cfg.limits.auth_failure_delay);
    if !login.ok {
        let failures = login.failures;
        ctx.shared.metrics.auth_failure("wrongpass");
        // Only a configured name is logged: a client that swapped user and password must
        // not put its password in the log.
        let known = users.find(name).map(|u| u.name.clone());
        let user = known.as_deref().unwrap_or("<not a configured user>");
        logs::limited(
            logs::Class::AuthFailed,
            |suppressed| tracing::warn!(client = %peer, user, failures, suppressed, "client authentication failed"),
        );
    }
    (login.ok, login.hold)
}
