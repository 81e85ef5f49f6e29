//! One client connection: read bytes, decode requests, route each into the ordered reply
//! queue, and write finished replies back strictly in request order, as many per write as
//! are ready. Reading pauses while `max_pipeline` commands are in flight (backpressure); a
//! protocol error or QUIT stops reading, flushes what is owed, and closes.

pub(crate) mod client;
pub(crate) mod dispatch;
pub(crate) mod entry;
pub(crate) mod gate;
pub(crate) mod merge;
pub(crate) mod op;
pub(crate) mod request;
pub(crate) mod task;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use slotgate_resp::{Limits, RequestDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::auth::users::ClientAuth;
use crate::session::client::ClientState;

use crate::family::pubsub::{LinkFrame, PubSub};
use crate::replies;
use crate::runtime::context::WorkerCtx;
use crate::session::dispatch::route_command;
use crate::session::entry::Entry;
use crate::session::op::Event;
use crate::telemetry::logs;
use crate::telemetry::panics;

/// Read buffer size kept free before each read.
const READ_RESERVE: usize = 16 * 1024;
/// Buffers that grew past this (a huge request or reply) are released after use.
const BUFFER_SHRINK: usize = 1024 * 1024;
/// Replies are held only while at most this many entries are unfinished.
const COALESCE_MAX_ENTRIES: usize = 64;

/// One request's place in the reply queue, with what its metrics need.
struct Pending {
    entry: Entry,
    /// Command table index, or `UNKNOWN_COMMAND`.
    cmd: u16,
    /// When the request was decoded ([`crate::telemetry::metrics::mono_ns`]).
    start: u64,
}

/// Serve one client until it leaves, breaks the protocol, or the proxy shuts down. `rd` and
/// `wr` are the two halves of its connection (plain TCP or TLS), `local` the proxy's address
/// on it.
pub(crate) async fn run_session<R, W>(
    ctx: Rc<WorkerCtx>,
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut client = ClientState::new(
        id,
        peer,
        local,
        ClientAuth::for_new_connection(&ctx.shared.users),
    );
    let limits = Limits {
        max_bulk: ctx.cfg.limits.max_request_bytes,
        ..Limits::default()
    };
    let mut decoder = RequestDecoder::new(limits);
    let mut rbuf = BytesMut::with_capacity(READ_RESERVE);
    let mut wbuf = BytesMut::with_capacity(READ_RESERVE);
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let shutdown = ctx.local_shutdown.waiter();
    let max_pipeline = ctx.cfg.limits.max_pipeline;
    let idle_timeout = ctx.cfg.limits.client_idle_timeout;
    let mut reading = !ctx.local_shutdown.is_fired();
    // The shutdown signal is waited for only while nothing is owed (a busy session looks at
    // the flag instead); reading stops when it fires. The timer for the front entry's
    // deadline is kept across loop turns, so a wake-up does not register and drop it again.
    // Deadlines grow along the queue, so a timer armed for an earlier entry fires early at
    // worst and is re-armed then: once per op_timeout, not per command.
    let mut deadline_timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
    let mut timer_at: Option<Instant> = None;
    // Holding finished replies for the rest of their batch: holding, and ran out.
    let holder = ctx.hold_clock.holder();
    let (mut coalescing, mut coalesce_expired) = (false, false);
    let mut last_read = Instant::now();
    // Wakes on a users reload, to close a removed user's connection while it is idle.
    let mut users_changed = ctx.shared.users.subscribe();

    loop {
        // True when decoding stopped because the pipeline was full: complete requests may
        // still sit in `rbuf`, and the client may send nothing more until they are answered.
        let mut backlog = false;
        if reading {
            let now = Instant::now();
            let start = crate::telemetry::metrics::mono_ns(now.into_std());
            // One deadline for the batch: adding to an `Instant` normalises nanoseconds.
            let deadline = now + ctx.cfg.upstream.op_timeout;
            while queue.len() < max_pipeline {
                match decoder.decode(&mut rbuf) {
                    Ok(Some(req)) => {
                        let mut cmd = crate::telemetry::metrics::UNKNOWN_COMMAND;
                        let routed = panics::guard(|| {
                            route_command(&ctx, &mut client, req, deadline, &mut cmd)
                        });
                        let entry = routed.unwrap_or_else(|caught| {
                            caught.log(crate::telemetry::metrics::command_label(cmd));
                            Entry::Close(Bytes::from_static(replies::INTERNAL_ERROR))
                        });
                        let closes = matches!(entry, Entry::Close(_));
                        queue.push_back(Pending { entry, cmd, start });
                        if closes {
                            reading = false;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        logs::limited(
                            logs::Class::ProtocolError,
                            |suppressed| tracing::warn!(client = %peer, error = %e, suppressed, "client protocol error; closing"),
                        );
                        queue.push_back(Pending {
                            entry: Entry::Close(Bytes::from_static(e.to_reply())),
                            cmd: crate::telemetry::metrics::UNKNOWN_COMMAND,
                            start,
                        });
                        reading = false;
                        break;
                    }
                }
            }
            backlog = reading && queue.len() >= max_pipeline;
        }

        let mut close = drain_ready(&ctx, &mut queue, &mut wbuf);
        if !close && !wbuf.is_empty() && !queue.is_empty() {
            // Only part of what is owed is ready: the rest is often from another shard whose
            // reply is already readable. Let this tick's other tasks run first, so one write
            // carries both (fewer, larger writes to the client).
            tokio::task::yield_now().await;
            close = drain_ready(&ctx, &mut queue, &mut wbuf);
        }
        let hold = !close && !wbuf.is_empty() && !coalesce_expired && worth_holding(&queue);
        if hold && !coalescing {
            holder.start();
            coalescing = true;
        }
        if !hold && !wbuf.is_empty() {
            // flush: a TLS stream may hold records back until asked (a no-op for TCP).
            let write = async { wr.write_all(&wbuf).await.and(wr.flush().await) };
            let written = match &client.pubsub {
                // A subscriber may stop reading: give up on it when its link does.
                Some(pubsub) => tokio::select! {
                    r = write => r.is_ok(),
                    _ = pubsub.gave_up() => false,
                },
                None => write.await.is_ok(),
            };
            if !written {
                return;
            }
            if wbuf.capacity() > BUFFER_SHRINK {
                wbuf = BytesMut::with_capacity(READ_RESERVE);
            } else {
                wbuf.clear();
            }
            if coalescing {
                holder.stop();
            }
            (coalescing, coalesce_expired) = (false, false);
        }
        if close || (!reading && queue.is_empty()) {
            let _ = wr.shutdown().await;
            return;
        }

        if rbuf.capacity() - rbuf.len() < READ_RESERVE / 4 {
            if rbuf.is_empty() && rbuf.capacity() > BUFFER_SHRINK {
                rbuf = BytesMut::with_capacity(READ_RESERVE);
            } else {
                rbuf.reserve(READ_RESERVE);
            }
        }
        if backlog && queue.len() < max_pipeline {
            continue; // room again: decode what is already buffered before waiting for more
        }
        let can_read = reading && queue.len() < max_pipeline;
        let idle_deadline = idle_timeout.map(|t| last_read + t);
        if reading && !queue.is_empty() && ctx.local_shutdown.is_fired() {
            reading = false;
        }
        let front_deadline = queue.front().and_then(|p| p.entry.deadline());
        if let Some(due) = front_deadline {
            if timer_at.is_none_or(|at| at > due) {
                deadline_timer.as_mut().reset(due);
                timer_at = Some(due);
            }
        }
        tokio::select! {
            biased;
            (index, event) = front_event(&mut queue) => {
                if let Some(front) = queue.front_mut() {
                    front.entry.on_event(&ctx, index, event);
                }
            }
            () = holder.expired(), if coalescing => {
                (coalescing, coalesce_expired) = (false, true);
            }
            () = &mut deadline_timer, if timer_at.is_some() && front_deadline.is_some() => {
                timer_at = None;
                if let Some(front) = queue.front_mut() {
                    front.entry.on_timeout(&ctx, Instant::now());
                }
            }
            read = rd.read_buf(&mut rbuf), if can_read => match read {
                Ok(0) => {
                    // The client half-closed: answer what it sent, then close. Except for a
                    // command blocked in Redis: its reply may never come, and dropping it
                    // releases the dedicated connection (Redis stops blocking for it), as
                    // Redis itself frees a client at EOF. (Transaction steps end within
                    // op_timeout: their replies are still written.)
                    if queue
                        .iter()
                        .any(|p| matches!(&p.entry, Entry::Task(t, _) if t.may_block()))
                    {
                        return;
                    }
                    reading = false;
                }
                // The clock is read only for the idle timeout that needs it.
                Ok(_) if idle_timeout.is_some() => last_read = Instant::now(),
                Ok(_) => {}
                Err(_) => return,
            },
            () = shutdown.fired(), if reading && queue.is_empty() => reading = false,
            frame = link_frame(&mut client.pubsub), if queue.is_empty() && client.pubsub.is_some() => {
                // Messages and confirmations from the Pub/Sub link, written only when no
                // reply is owed, so they never overtake one.
                let Some(frame) = frame else {
                    return; // the link gave up on this client (it does not read)
                };
                if let Some(pubsub) = client.pubsub.as_mut() {
                    let mut next = Some(frame);
                    while let Some(f) = next {
                        pubsub.note(&f);
                        wbuf.extend_from_slice(&client.proto.pubsub_frame(f.frame));
                        next = if wbuf.len() < READ_RESERVE { pubsub.try_next() } else { None };
                    }
                }
            }
            _ = gate::users_changed(&mut users_changed), if reading && client.auth.is_some() => {
                reading = gate::still_allowed(&ctx, &mut client);
            }
            _ = sleep_until_opt(idle_deadline), if reading && queue.is_empty() && idle_deadline.is_some() && client.pubsub.is_none() => {
                tracing::debug!(client = %peer, "closing idle client");
                return;
            }
        }
    }
}

/// Move every finished entry at the front of `queue` into `wbuf`, in order. Returns true when
/// one of them closes the connection (everything after it is dropped).
fn drain_ready(ctx: &WorkerCtx, queue: &mut VecDeque<Pending>, wbuf: &mut BytesMut) -> bool {
    let now = Instant::now();
    let now_ns = crate::telemetry::metrics::mono_ns(now.into_std());
    while let Some(front) = queue.front_mut() {
        if !front.entry.poll_sync(ctx, now) {
            return false;
        }
        if let Some(p) = queue.pop_front() {
            let (result, close) = p.entry.write_reply(wbuf);
            ctx.metrics
                .command(p.cmd, result, now_ns.saturating_sub(p.start));
            if close {
                return true;
            }
        }
    }
    false
}

/// Whether finished replies should wait (at most [`COALESCE`](crate::runtime::hold::COALESCE)) for the rest of the queue:
/// only when every unfinished entry is an upstream op (bounded by `op_timeout`, usually
/// answered within microseconds), never for a blocking command, a transaction step or a
/// delayed reply, and not for a long queue (a deep pipeline writes large batches anyway).
fn worth_holding(queue: &VecDeque<Pending>) -> bool {
    !queue.is_empty()
        && queue.len() <= COALESCE_MAX_ENTRIES
        && queue.iter().all(|p| {
            matches!(
                p.entry,
                Entry::Single(_) | Entry::Fanout(_) | Entry::Scan(_)
            )
        })
}

/// The next frame of the client's Pub/Sub link (`None`: the link gave up); never resolves
/// without a link.
async fn link_frame(pubsub: &mut Option<PubSub>) -> Option<LinkFrame> {
    match pubsub {
        Some(p) => p.next().await,
        None => std::future::pending().await,
    }
}

/// The next event of the front entry; never resolves when the queue is empty.
async fn front_event(queue: &mut VecDeque<Pending>) -> (usize, Event) {
    match queue.front_mut() {
        Some(front) => front.entry.next_event().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    /// Requests are moved into and out of the session's queue by value: up to 128 bytes the
    /// compiler moves them inline; past that, every move was a `memcpy` call (about 190
    /// instructions per GET at `-P 16` when `Pending` was 216 bytes).
    #[test]
    fn a_queued_request_fits_in_128_bytes() {
        assert!(std::mem::size_of::<super::Pending>() <= 128);
        assert!(std::mem::size_of::<crate::session::op::Op>() <= 112);
    }
}
