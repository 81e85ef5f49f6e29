//! The session's reply queue holds one [`Entry`] per client request, in request order. An
//! entry is a ready reply, one upstream [`Op`], or a fan-out of several ops whose replies are
//! merged ([`Merge`]) once all are in. The session writes entries' replies strictly in order.

use bytes::{Bytes, BytesMut};
use slotgate_resp::{aggregate_children, encode, parse_integer};
use tokio::time::Instant;

use crate::dedicated::Task;
use crate::metrics::CmdResult;
use crate::op::{Event, Op};
use crate::protocol::Protocol;
use crate::worker::WorkerCtx;

/// How a fan-out's replies become one reply.
pub(crate) enum Merge {
    /// MGET split by slot: `positions[i]` are the original key positions op `i` fetched.
    Mget {
        total: usize,
        positions: Vec<Vec<u32>>,
    },
    /// Every op must say `+OK`; the first error wins otherwise.
    AllOk,
    /// Sum of integer replies (DEL, EXISTS, DBSIZE…).
    SumInteger,
    /// Concatenate array replies (KEYS).
    ConcatArrays,
    /// The first op's reply, after all succeeded (SCRIPT LOAD).
    First,
    /// The first reply that is not nil (RANDOMKEY).
    AnyNonNil,
    /// Element-wise AND of integer arrays (SCRIPT EXISTS).
    AndArrays,
    /// Flat `[name, count, …]` replies with the counts summed per name (PUBSUB NUMSUB).
    SumPairs,
    /// INFO: slotgate's own sections, then `# Keyspace` summed over the primaries'
    /// `INFO keyspace` ([`crate::keyspace`]).
    InfoKeyspace(String, Protocol),
}

/// Several ops merged into one reply.
pub(crate) struct Fanout {
    /// The parts, in the order `merge` expects.
    pub ops: Vec<Op>,
    /// How to combine them.
    pub merge: Merge,
}

/// One client request's place in the reply queue.
pub(crate) enum Entry {
    /// The reply is known.
    Ready(Bytes),
    /// The reply comes from one upstream op.
    Single(Op),
    /// The reply is merged from several ops.
    Fanout(Box<Fanout>),
    /// One SCAN step on one primary ([`crate::scan`]).
    Scan(Box<crate::scan::ScanOp>),
    /// Write this reply, then close the connection (QUIT, protocol errors).
    Close(Bytes),
    /// The reply is known but must not leave before this instant (an AUTH reply after
    /// repeated failures). Waiting is a timer in the session's select; the worker never
    /// blocks.
    Delayed(Bytes, Instant),
    /// The reply comes from a task of its own (a blocking command on a dedicated
    /// connection); no deadline applies.
    Task(Task, Option<Bytes>),
    /// Sent down the client's Pub/Sub link: the node's answer reaches the client through
    /// the link, so this entry writes nothing.
    Relayed,
}

impl Entry {
    /// `reply` now, or not before `hold` when given.
    pub fn after(reply: Bytes, hold: Option<Instant>) -> Entry {
        match hold {
            Some(at) => Entry::Delayed(reply, at),
            None => Entry::Ready(reply),
        }
    }

    /// Advance with what has already arrived; true when the reply can be written.
    pub fn poll_sync(&mut self, ctx: &WorkerCtx, now: Instant) -> bool {
        match self {
            Entry::Ready(_) | Entry::Close(_) | Entry::Relayed => true,
            Entry::Delayed(_, at) => now >= *at,
            Entry::Task(task, reply) => {
                if reply.is_none() {
                    *reply = task.try_take();
                }
                reply.is_some()
            }
            Entry::Single(op) => op.poll_sync(ctx, now),
            Entry::Scan(scan) => scan.poll_sync(ctx, now),
            Entry::Fanout(f) => {
                let mut done = true;
                for op in &mut f.ops {
                    done &= op.poll_sync(ctx, now);
                }
                done
            }
        }
    }

    /// The earliest deadline of the ops it waits for (see [`Op::deadline`]); `None` when it
    /// waits for none (a ready reply, a task, a delay).
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Entry::Single(op) => op.deadline(),
            Entry::Fanout(f) => f.ops.iter().filter_map(Op::deadline).min(),
            Entry::Scan(scan) => scan.deadline(),
            _ => None,
        }
    }

    /// Time out the ops whose deadline passed by `now`.
    pub fn on_timeout(&mut self, ctx: &WorkerCtx, now: Instant) {
        let due = |op: &Op| op.deadline().is_some_and(|d| d <= now);
        match self {
            Entry::Single(op) if due(op) => op.on_event(ctx, Event::Timeout),
            Entry::Fanout(f) => {
                for op in f.ops.iter_mut().filter(|op| due(op)) {
                    op.on_event(ctx, Event::Timeout);
                }
            }
            Entry::Scan(scan) => scan.on_timeout(ctx, now),
            _ => {}
        }
    }

    /// Wait for the next event of the first unfinished op (deadlines aside: see
    /// [`Entry::deadline`]). Cancel-safe.
    pub async fn next_event(&mut self) -> (usize, Event) {
        match self {
            Entry::Single(op) => (0, op.next_event().await),
            Entry::Scan(scan) => scan.next_event().await,
            Entry::Fanout(f) => match f.ops.iter_mut().enumerate().find(|(_, op)| !op.is_done()) {
                Some((i, op)) => (i, op.next_event().await),
                None => std::future::pending().await,
            },
            Entry::Delayed(_, at) => {
                tokio::time::sleep_until(*at).await;
                (0, Event::Wake)
            }
            Entry::Task(task, None) => (0, Event::Finished(task.wait().await)),
            Entry::Task(_, Some(_)) => std::future::pending().await,
            Entry::Ready(_) | Entry::Close(_) | Entry::Relayed => std::future::pending().await,
        }
    }

    /// Apply an event from [`Entry::next_event`].
    pub fn on_event(&mut self, ctx: &WorkerCtx, index: usize, event: Event) {
        match self {
            Entry::Single(op) => op.on_event(ctx, event),
            Entry::Scan(scan) => scan.on_event(ctx, index, event),
            Entry::Fanout(f) => {
                if let Some(op) = f.ops.get_mut(index) {
                    op.on_event(ctx, event)
                }
            }
            Entry::Task(_, reply) => {
                if let Event::Finished(b) = event {
                    *reply = Some(b);
                }
            }
            Entry::Ready(_) | Entry::Close(_) | Entry::Delayed(..) | Entry::Relayed => {}
        }
    }

    /// Append the finished reply to `out`. Returns how the command ended and whether the
    /// connection must close after this reply.
    pub fn write_reply(self, out: &mut BytesMut) -> (CmdResult, bool) {
        let start = out.len();
        let (outcome, close) = match self {
            Entry::Ready(b) | Entry::Delayed(b, _) | Entry::Task(_, Some(b)) => {
                out.extend_from_slice(&b);
                (None, false)
            }
            Entry::Task(_, None) | Entry::Relayed => (None, false),
            Entry::Close(b) => {
                out.extend_from_slice(&b);
                (None, true)
            }
            Entry::Single(mut op) => {
                let outcome = op.outcome();
                out.extend_from_slice(&op.take_reply());
                (Some(outcome), false)
            }
            Entry::Scan(scan) => (Some(scan.write_reply(out)), false),
            Entry::Fanout(f) => {
                let outcome = f.ops.iter().map(Op::outcome).max_by_key(|o| match o {
                    CmdResult::Ok => 0,
                    CmdResult::Redirected => 1,
                    CmdResult::Error => 2,
                    CmdResult::Timeout => 3,
                });
                merge(*f, out);
                (outcome, false)
            }
        };
        let result = match outcome {
            Some(CmdResult::Timeout) => CmdResult::Timeout,
            _ if is_error(&out[start..]) => CmdResult::Error,
            Some(o) => o,
            None => CmdResult::Ok,
        };
        (result, close)
    }
}

fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-') | Some(b'!'))
}

fn is_nil(reply: &[u8]) -> bool {
    reply == b"$-1\r\n" || reply == b"*-1\r\n" || reply == b"_\r\n"
}

/// Combine a finished fan-out's replies into `out`. Any error reply (or an unexpected reply
/// shape) becomes the whole reply, as a single Redis command would fail.
fn merge(mut f: Fanout, out: &mut BytesMut) {
    let replies: Vec<Bytes> = f.ops.iter_mut().map(Op::take_reply).collect();
    // INFO answers even when a primary does not: its keyspace is then left out.
    if let Merge::InfoKeyspace(local, proto) = &f.merge {
        return crate::keyspace::write_info(local, &replies, out, *proto);
    }
    if let Some(err) = replies.iter().find(|r| is_error(r)) {
        out.extend_from_slice(err);
        return;
    }
    let bad_shape =
        || Bytes::from_static(b"-ERR slotgate: unexpected reply shape from upstream\r\n");
    match f.merge {
        Merge::Mget { total, positions } => {
            let mut slots: Vec<Bytes> = vec![Bytes::new(); total];
            for (reply, pos) in replies.iter().zip(&positions) {
                match aggregate_children(reply) {
                    Some(children) if children.len() == pos.len() => {
                        for (child, &p) in children.into_iter().zip(pos) {
                            slots[p as usize] = child;
                        }
                    }
                    _ => return out.extend_from_slice(&bad_shape()),
                }
            }
            encode::array_header(out, total);
            for s in slots {
                out.extend_from_slice(&s);
            }
        }
        Merge::AllOk => out.extend_from_slice(crate::replies::OK),
        Merge::SumInteger => {
            let mut sum: i64 = 0;
            for r in &replies {
                match parse_integer(r) {
                    Some(n) => sum = sum.saturating_add(n),
                    None => return out.extend_from_slice(&bad_shape()),
                }
            }
            encode::integer(out, sum);
        }
        Merge::ConcatArrays => {
            let mut all = Vec::new();
            for r in &replies {
                match aggregate_children(r) {
                    Some(children) => all.extend(children),
                    None => return out.extend_from_slice(&bad_shape()),
                }
            }
            encode::array_header(out, all.len());
            for c in all {
                out.extend_from_slice(&c);
            }
        }
        Merge::First => {
            out.extend_from_slice(replies.first().map(|b| &b[..]).unwrap_or(b"$-1\r\n"))
        }
        Merge::AnyNonNil => {
            // RANDOMKEY: a random primary's random key, not always the first primary's.
            let found: Vec<&Bytes> = replies.iter().filter(|r| !is_nil(r)).collect();
            let pick = match found.len() {
                0 => replies.first(),
                n => Some(found[random_below(n)]),
            };
            out.extend_from_slice(pick.map(|b| &b[..]).unwrap_or(b"$-1\r\n"));
        }
        Merge::AndArrays => {
            let mut acc: Option<Vec<i64>> = None;
            for r in &replies {
                let Some(children) = aggregate_children(r) else {
                    return out.extend_from_slice(&bad_shape());
                };
                let vals: Option<Vec<i64>> = children.iter().map(|c| parse_integer(c)).collect();
                let Some(vals) = vals else {
                    return out.extend_from_slice(&bad_shape());
                };
                acc = Some(match acc {
                    None => vals,
                    Some(a) if a.len() == vals.len() => {
                        a.iter().zip(&vals).map(|(x, y)| (*x).min(*y)).collect()
                    }
                    Some(_) => return out.extend_from_slice(&bad_shape()),
                });
            }
            let acc = acc.unwrap_or_default();
            encode::array_header(out, acc.len());
            for v in acc {
                encode::integer(out, v);
            }
        }
        Merge::SumPairs => match sum_pairs(&replies) {
            Some((names, counts)) => {
                // Keep the node's aggregate type (a RESP3 map stays a map).
                if replies.first().is_some_and(|r| r.starts_with(b"%")) {
                    encode::map_header(out, names.len());
                } else {
                    encode::array_header(out, names.len() * 2);
                }
                for (name, count) in names.iter().zip(counts) {
                    out.extend_from_slice(name);
                    encode::integer(out, count);
                }
            }
            None => out.extend_from_slice(&bad_shape()),
        },
        // Merged before the error check above; kept total so no input can panic here.
        Merge::InfoKeyspace(local, proto) => {
            crate::keyspace::write_info(&local, &replies, out, proto)
        }
    }
}

/// `[name, count, …]` replies summed per name, in the first reply's order (the client's
/// arguments); `None` when the replies disagree on the names or are not such pairs.
fn sum_pairs(replies: &[Bytes]) -> Option<(Vec<Bytes>, Vec<i64>)> {
    let mut names: Vec<Bytes> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        let children = aggregate_children(reply)?;
        if children.len() % 2 != 0 || (i > 0 && children.len() != names.len() * 2) {
            return None;
        }
        for (j, pair) in children.chunks(2).enumerate() {
            if i == 0 {
                names.push(pair[0].clone());
                counts.push(0);
            } else if pair[0] != names[j] {
                return None;
            }
            counts[j] = counts[j].saturating_add(parse_integer(&pair[1])?);
        }
    }
    Some((names, counts))
}

/// A random index below `n` (`n > 0`), from std's randomly keyed hasher.
fn random_below(n: usize) -> usize {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(n);
    (random % n as u64) as usize
}
