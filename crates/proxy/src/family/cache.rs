//! The read cache in a command's path (`docs/cache.md`): which reads it answers, and which
//! writes drop what it holds. Both run after the auth gate, so a cached reply is only given
//! to a client the same read would have been forwarded for; the cache itself is
//! `runtime::cache`.

use std::rc::Rc;

use bytes::Bytes;
use slotgate_commands::{flag, Command, KeyIndices};
use slotgate_resp::Request;
use tokio::time::Instant;

use crate::protocol::{Dialect, Protocol};
use crate::runtime::cache::{Lookup, ReadCache, Written};
use crate::runtime::context::WorkerCtx;
use crate::session::entry::{Entry, Wrote};
use crate::session::request::ReqArgs;
use crate::telemetry::metrics::CacheResult;

/// Whether `cmd` is one of the cached reads: read-only, deterministic, one key at argument
/// 1, a reply that depends only on that key's value (`docs/cache.md` lists them).
#[inline]
pub(crate) fn is_cached_read(cmd: &Command) -> bool {
    matches!(
        cmd.name,
        "get"
            | "getrange"
            | "strlen"
            | "hget"
            | "hmget"
            | "hgetall"
            | "hexists"
            | "hlen"
            | "hstrlen"
            | "lindex"
            | "llen"
            | "lrange"
            | "scard"
            | "sismember"
            | "zcard"
            | "zscore"
    )
}

/// A cached read outside MULTI, after the auth gate: the hit, or how to send it.
#[inline]
pub(crate) fn lookup(
    ctx: &WorkerCtx,
    cache: &Rc<ReadCache>,
    dialect: Dialect,
    req: &Request,
    deadline: Instant,
) -> Lookup {
    // The batch's read time (the deadline is `op_timeout` after it): no clock read per hit.
    let now = deadline - ctx.cfg.upstream.op_timeout;
    let tag = ReadCache::tag(dialect.proto == Protocol::Resp3, dialect.db);
    let generation = ctx.topology.generation();
    if cache.lags(generation) {
        // A new slot map (a periodic refresh, a MOVED): the links follow it now, and the
        // cache compares it with the one its entries were read under.
        ctx.invalidation_links.follow();
    }
    let found = cache.lookup(tag, req.arg(1), req.wire_ref(), now, generation);
    ctx.metrics.cache_request(match &found {
        Lookup::Hit(_) => CacheResult::Hit,
        Lookup::Miss(_) => CacheResult::Miss,
        Lookup::Bypass => CacheResult::Bypass,
    });
    found
}

/// Whether `cmd` may change keys: the `write` flag, or a script or function that may write.
pub(crate) fn writes(cmd: &Command) -> bool {
    cmd.has_flag(flag::WRITE) || matches!(cmd.name, "eval" | "evalsha" | "fcall")
}

/// Before a write is routed: drop its keys (everything for a write without keys, such as
/// FLUSHALL, or a script that declares none). Returns them, for [`after_write`].
pub(crate) fn before_write(cache: &ReadCache, cmd: &Command, req: &Request) -> Option<Written> {
    if !writes(cmd) {
        return None;
    }
    let written = written_keys(cmd, req);
    cache.own_write(&written);
    Some(written)
}

/// The keys `req` writes.
pub(crate) fn written_keys(cmd: &Command, req: &Request) -> Written {
    let mut keys = KeyIndices::new();
    if cmd.key_indices(&ReqArgs(req), &mut keys).is_err() || keys.is_empty() {
        return Written::All;
    }
    Written::Keys(
        keys.iter()
            .map(|i| Bytes::copy_from_slice(req.arg(i as usize)))
            .collect(),
    )
}

/// After a write was routed: one that runs on a connection of its own (a blocking command,
/// a restricted user's script) drops its keys again once answered.
pub(crate) fn after_write(cache: &Rc<ReadCache>, written: Written, entry: Entry) -> Entry {
    match entry {
        Entry::Task(..) => Entry::Wrote(Box::new(Wrote {
            inner: entry,
            guard: cache.guard(written),
        })),
        entry => entry,
    }
}
