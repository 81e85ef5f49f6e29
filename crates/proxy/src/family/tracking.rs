//! `CLIENT TRACKING`, `CLIENT CACHING`, `CLIENT TRACKINGINFO` and `CLIENT GETREDIR`, for the
//! client's own connection, as Redis defines them (docs/compatibility.md, Client tracking):
//! default mode, BCAST with PREFIX, OPTIN/OPTOUT with `CLIENT CACHING yes|no`, NOLOOP, and
//! REDIRECT to another client's connection. Redis's argument checks and error texts.
//!
//! The client's reads are remembered in the worker's `TrackingTable` as they are routed
//! ([`note`], before they reach a node), and the servers' reports of changes come back as
//! invalidations in the client's inbox — or in the inbox of the client it redirects to —
//! which its session writes behind the replies already queued ([`format`]): a read's reply
//! always reaches the client before the invalidation of a change that followed it.
//!
//! A tracking client's write through slotgate is told at once to the worker's readers of its
//! keys, the writer included, behind the replies each is owed: the writer's invalidation
//! follows the write's reply, where Redis writes it, and cannot come after its next reply.
//! NOLOOP: a default-mode client's own writes forget the key for it without a message, as
//! Redis does. In BCAST mode slotgate cannot tell whose write a report is, so a NOLOOP
//! client may still hear of its own writes (one more invalidation, never one less).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use slotgate_commands::{flag, Command, KeyIndices};
use slotgate_resp::{encode, parse_ll, Request};
use tokio::time::Instant;

use crate::family::cache;
use crate::protocol::Protocol;
use crate::replies;
use crate::runtime::budget::OutputBudget;
use crate::runtime::cache::Written;
use crate::runtime::context::WorkerCtx;
use crate::runtime::tracking::{InboxRx, Invalidated, Subscriber, TrackingTable};
use crate::session::entry::Entry;
use crate::session::request::ReqArgs;
use crate::session::task::Task;

/// The channel RESP2 clients subscribe to for redirected invalidations.
pub(crate) const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";

/// A client's tracking state: its inbox (tracking clients and redirect targets have one),
/// and how it tracks when it does.
#[derive(Default)]
pub(crate) struct TrackingState {
    /// Where invalidations for this connection arrive.
    pub inbox: Option<InboxRx>,
    /// `None` while tracking is off.
    on: Option<Tracking>,
}

/// How one client tracks.
struct Tracking {
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    /// The client invalidations go to (0: this one).
    redirect: u64,
    /// `CLIENT CACHING yes|no` applies to the next command.
    caching: bool,
    broken: Rc<Cell<bool>>,
    prefixes: Vec<Bytes>,
    /// Unsubscribed from when tracking stops or the client leaves.
    table: Rc<TrackingTable>,
    id: u64,
}

impl TrackingState {
    /// Tracking off (the inbox stays: others may redirect here).
    fn stop(&mut self) {
        if let Some(t) = self.on.take() {
            t.table.unsubscribe(t.id);
        }
    }
}

impl Drop for TrackingState {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The client a tracking command is for: its tracking state and what the replies need.
pub(crate) struct ForClient<'c> {
    pub state: &'c mut Option<Box<TrackingState>>,
    /// Set while tracking is on: the client's reads then go to primaries only.
    pub primary_reads: &'c mut bool,
    pub id: u64,
    pub proto: Protocol,
    pub budget: &'c Rc<OutputBudget>,
}

/// `CLIENT TRACKING|CACHING|TRACKINGINFO|GETREDIR` (arity checked).
pub(crate) fn run(ctx: &WorkerCtx, client: ForClient<'_>, cmd: &Command, req: &Request) -> Entry {
    let reply = match cmd.name {
        "client|tracking" => return tracking(ctx, client, req),
        "client|caching" => caching(client.state, req.arg(2)),
        "client|getredir" => integer(match on(client.state) {
            Some(t) => t.redirect as i64,
            None => -1,
        }),
        _ => tracking_info(on(client.state), client.proto),
    };
    Entry::Ready(reply)
}

fn on(state: &Option<Box<TrackingState>>) -> Option<&Tracking> {
    state.as_ref()?.on.as_ref()
}

fn error(text: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(text.len() + 8);
    encode::error(&mut b, text.as_bytes());
    b.freeze()
}

fn integer(n: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(24);
    encode::integer(&mut b, n);
    b.freeze()
}

/// The options of one `CLIENT TRACKING` call.
#[derive(Default)]
struct Options {
    redirect: u64,
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    prefixes: Vec<Bytes>,
}

/// `CLIENT TRACKING ON|OFF [options]`, checked in Redis's order with its texts.
fn tracking(ctx: &WorkerCtx, client: ForClient<'_>, req: &Request) -> Entry {
    let mut o = Options::default();
    let mut redirect_to = None;
    let mut j = 3;
    while j < req.argc() {
        let more = j + 1 < req.argc();
        match req.arg(j).to_ascii_lowercase().as_slice() {
            b"redirect" if more => {
                j += 1;
                if o.redirect != 0 {
                    return ready(error(
                        "ERR A client can only redirect to a single other client",
                    ));
                }
                let id = match parse_ll(req.arg(j)) {
                    Some(id) => id,
                    None => return ready(Bytes::from_static(replies::NOT_AN_INTEGER)),
                };
                let target = u64::try_from(id)
                    .ok()
                    .and_then(|id| ctx.shared.inboxes.get(id).map(|inbox| (id, inbox)));
                let Some((id, inbox)) = target else {
                    return ready(error(
                        "ERR The client ID you want redirect to does not exist",
                    ));
                };
                o.redirect = id;
                redirect_to = Some(inbox);
            }
            b"bcast" => o.bcast = true,
            b"optin" => o.optin = true,
            b"optout" => o.optout = true,
            b"noloop" => o.noloop = true,
            b"prefix" if more => {
                j += 1;
                o.prefixes.push(Bytes::copy_from_slice(req.arg(j)));
            }
            _ => return ready(Bytes::from_static(replies::SYNTAX)),
        }
        j += 1;
    }
    match req.arg(2).to_ascii_lowercase().as_slice() {
        b"on" => {}
        b"off" => {
            if let Some(state) = client.state.as_mut() {
                state.stop();
            }
            *client.primary_reads = false;
            return ready(Bytes::from_static(replies::OK));
        }
        _ => return ready(Bytes::from_static(replies::SYNTAX)),
    }
    if let Some(refusal) = check(on(client.state), &o) {
        return ready(refusal);
    }
    // Re-enabling BCAST adds prefixes to those it had; every other option is replaced.
    let mut prefixes = match on(client.state) {
        Some(t) if o.bcast => t.prefixes.clone(),
        _ => Vec::new(),
    };
    if o.bcast && o.prefixes.is_empty() {
        prefixes.push(Bytes::new());
    }
    prefixes.extend(o.prefixes.iter().cloned());
    let state = client.state.get_or_insert_with(Default::default);
    let own = state
        .inbox
        .get_or_insert_with(|| ctx.shared.inboxes.open(client.id))
        .inbox()
        .clone();
    let broken = Rc::new(Cell::new(false));
    ctx.tracking.subscribe(
        client.id,
        Subscriber {
            to: redirect_to.unwrap_or_else(|| Arc::clone(&own)),
            broken_notice: (o.redirect != 0).then_some((o.redirect, own)),
            broken: Rc::clone(&broken),
            // BCAST without a prefix: every key (the empty prefix, an empty list here).
            prefixes: o.bcast.then(|| {
                if prefixes.iter().any(|p| p.is_empty()) {
                    Vec::new()
                } else {
                    prefixes.clone()
                }
            }),
            read_unlinked: false,
        },
    );
    // The subscription above replaced any earlier one.
    state.on = Some(Tracking {
        bcast: o.bcast,
        optin: o.optin,
        optout: o.optout,
        noloop: o.noloop,
        redirect: o.redirect,
        caching: false,
        broken,
        prefixes,
        table: Rc::clone(&ctx.tracking),
        id: client.id,
    });
    *client.primary_reads = true;
    // The primaries' reports must flow before a read is tracked: +OK once the links are up
    // (at most op_timeout; a link that comes up later invalidates what was read meanwhile).
    ctx.invalidation_links.follow();
    if ctx.invalidation_links.all_up() {
        return ready(Bytes::from_static(replies::OK));
    }
    let links = Rc::clone(&ctx.invalidation_links);
    let deadline = Instant::now() + ctx.cfg.upstream.op_timeout;
    Entry::Task(
        Task::spawn(client.budget, move |tx| async move {
            links.wait_up(deadline).await;
            let _ = tx.send(Bytes::from_static(replies::OK));
        }),
        None,
    )
}

fn ready(reply: Bytes) -> Entry {
    Entry::Ready(reply)
}

/// Redis's checks of `CLIENT TRACKING ON` against the options and the current state.
fn check(current: Option<&Tracking>, o: &Options) -> Option<Bytes> {
    if !o.bcast && !o.prefixes.is_empty() {
        return Some(error("ERR PREFIX option requires BCAST mode to be enabled"));
    }
    if current.is_some_and(|t| t.bcast != o.bcast) {
        return Some(error(
            "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.",
        ));
    }
    if o.bcast && (o.optin || o.optout) {
        return Some(error("ERR OPTIN and OPTOUT are not compatible with BCAST"));
    }
    if o.optin && o.optout {
        return Some(error(
            "ERR You can't specify both OPTIN mode and OPTOUT mode",
        ));
    }
    if current.is_some_and(|t| (o.optin && t.optout) || (o.optout && t.optin)) {
        return Some(error(
            "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.",
        ));
    }
    if o.bcast {
        return prefix_collision(current.map_or(&[][..], |t| &t.prefixes), &o.prefixes);
    }
    None
}

/// Whether one of `a`, `b` starts with the other.
fn overlap(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn prefix_collision(existing: &[Bytes], new: &[Bytes]) -> Option<Bytes> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for (i, p) in new.iter().enumerate() {
        if let Some(e) = existing.iter().find(|e| overlap(e, p)) {
            return Some(error(&format!(
                "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                text(p),
                text(e)
            )));
        }
        if let Some(q) = new[i + 1..].iter().find(|q| overlap(p, q)) {
            return Some(error(&format!(
                "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                text(p),
                text(q)
            )));
        }
    }
    None
}

/// `CLIENT CACHING yes|no`.
fn caching(state: &mut Option<Box<TrackingState>>, opt: &[u8]) -> Bytes {
    let Some(t) = state.as_mut().and_then(|s| s.on.as_mut()) else {
        return error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled");
    };
    match opt.to_ascii_lowercase().as_slice() {
        b"yes" if t.optin => t.caching = true,
        b"yes" => {
            return error(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            )
        }
        b"no" if t.optout => t.caching = true,
        b"no" => {
            return error(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            )
        }
        _ => return Bytes::from_static(replies::SYNTAX),
    }
    Bytes::from_static(replies::OK)
}

/// `CLIENT TRACKINGINFO`: flags, redirect and prefixes, a map for RESP3 clients.
fn tracking_info(t: Option<&Tracking>, proto: Protocol) -> Bytes {
    let mut flags: Vec<&[u8]> = Vec::new();
    match t {
        None => flags.push(b"off"),
        Some(t) => {
            flags.push(b"on");
            let caching = |f: bool| f && t.caching;
            for (set, name) in [
                (t.bcast, &b"bcast"[..]),
                (t.optin, b"optin"),
                (caching(t.optin), b"caching-yes"),
                (t.optout, b"optout"),
                (caching(t.optout), b"caching-no"),
                (t.noloop, b"noloop"),
                (t.broken.get(), b"broken_redirect"),
            ] {
                if set {
                    flags.push(name);
                }
            }
        }
    }
    let resp3 = proto == Protocol::Resp3;
    let mut b = BytesMut::with_capacity(128);
    if resp3 {
        encode::map_header(&mut b, 3);
    } else {
        encode::array_header(&mut b, 6);
    }
    encode::bulk(&mut b, b"flags");
    if resp3 {
        encode::set_header(&mut b, flags.len());
    } else {
        encode::array_header(&mut b, flags.len());
    }
    flags.iter().for_each(|f| encode::bulk(&mut b, f));
    encode::bulk(&mut b, b"redirect");
    encode::integer(&mut b, t.map_or(-1, |t| t.redirect as i64));
    encode::bulk(&mut b, b"prefixes");
    // Sorted, as Redis lists them from its prefix tree.
    let mut prefixes: Vec<&Bytes> = t.map_or(Vec::new(), |t| t.prefixes.iter().collect());
    prefixes.sort();
    encode::array_header(&mut b, prefixes.len());
    prefixes.iter().for_each(|p| encode::bulk(&mut b, p));
    b.freeze()
}

/// Before a tracking client's command is routed: remember the keys of a read (as its mode
/// and `CLIENT CACHING` say), tell this worker's readers of a write's keys (the writer too,
/// unless NOLOOP: `TrackingTable::wrote`), and end a `CLIENT CACHING` that applied to this
/// command.
pub(crate) fn note(
    ctx: &WorkerCtx,
    state: &mut Option<Box<TrackingState>>,
    id: u64,
    cmd: &Command,
    req: &Request,
) {
    let Some(t) = state.as_mut().and_then(|s| s.on.as_mut()) else {
        return;
    };
    if cmd.name.starts_with("client|") {
        return; // as Redis: CLIENT subcommands keep CLIENT CACHING for the next command
    }
    let caching = std::mem::take(&mut t.caching);
    let read = cmd.has_flag(flag::READONLY);
    if !read && cache::writes(cmd) {
        match cache::written_keys(cmd, req) {
            Written::Keys(keys) => ctx.tracking.wrote(id, &keys, t.noloop),
            Written::All if matches!(cmd.name, "flushall" | "flushdb") => ctx.tracking.flushed(),
            // A script without declared keys: only the primaries' reports can tell.
            Written::All => {}
        }
        return;
    }
    if !read {
        return;
    }
    if t.bcast {
        if !ctx.invalidation_links.all_up() {
            ctx.tracking.read_unlinked(id);
        }
        return;
    }
    if (t.optin && !caching) || (t.optout && caching) {
        return;
    }
    let mut keys = KeyIndices::new();
    if cmd.key_indices(&ReqArgs(req), &mut keys).is_err() {
        return;
    }
    for i in keys.iter() {
        ctx.tracking.remember(id, req.arg(i as usize));
    }
}

/// Whether `req` (a SUBSCRIBE) names the invalidation channel: the client then gets an
/// inbox, for the clients that redirect to it.
pub(crate) fn subscribes_to_invalidations(
    ctx: &WorkerCtx,
    state: &mut Option<Box<TrackingState>>,
    id: u64,
    req: &Request,
) {
    if req.args().skip(1).any(|c| c == INVALIDATE_CHANNEL) {
        let state = state.get_or_insert_with(Default::default);
        if state.inbox.is_none() {
            state.inbox = Some(ctx.shared.inboxes.open(id));
        }
    }
}

/// How an invalidation reaches this client: a RESP3 push, or (RESP2, subscribed) a message
/// on `__redis__:invalidate`; `None` when it cannot be told (RESP2 and not subscribed).
pub(crate) fn format(proto: Protocol, subscribed: bool, msg: &Invalidated) -> Option<Bytes> {
    let mut b = BytesMut::with_capacity(64);
    match (proto, msg) {
        (Protocol::Resp3, Invalidated::RedirectBroken(id)) => {
            encode::push_header(&mut b, 2);
            encode::bulk(&mut b, b"tracking-redir-broken");
            encode::integer(&mut b, *id as i64);
            return Some(b.freeze());
        }
        (_, Invalidated::RedirectBroken(_)) => return None,
        (Protocol::Resp3, _) => {
            encode::push_header(&mut b, 2);
            encode::bulk(&mut b, b"invalidate");
        }
        (Protocol::Resp2, _) if subscribed => {
            encode::array_header(&mut b, 3);
            encode::bulk(&mut b, b"message");
            encode::bulk(&mut b, INVALIDATE_CHANNEL);
        }
        (Protocol::Resp2, _) => return None,
    }
    match msg {
        Invalidated::Keys(keys) => {
            encode::array_header(&mut b, keys.len());
            keys.iter().for_each(|k| encode::bulk(&mut b, k));
        }
        // A flush: null keys (`_` in RESP3; RESP2 messages carry a null bulk).
        _ if proto == Protocol::Resp3 => encode::resp3_null(&mut b),
        _ => encode::null_bulk(&mut b),
    }
    Some(b.freeze())
}

#[cfg(test)]
mod tests;
