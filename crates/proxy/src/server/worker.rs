//! Shared-nothing workers: each is one thread running a single-threaded tokio runtime that
//! owns its listener socket (SO_REUSEPORT: the kernel spreads connections), its client
//! sessions and its upstream connections. Workers share only the read-only config, the
//! topology snapshot and a few counters.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::replies;
use crate::runtime::context::{Shared, WorkerCtx};
use crate::runtime::shutdown::LocalShutdown;
use crate::session::run_session;
use crate::telemetry::local::WorkerMetrics;
use crate::telemetry::logs;
use crate::tls::ServerTls;
use crate::upstream::topology::Topology;

/// Counts a session out when it ends, however it ends (the client count and the worker's
/// session count).
struct SessionGuard<'a> {
    ctx: &'a WorkerCtx,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.ctx.shared.release_client();
        self.ctx.session_ended();
    }
}

/// Run one worker on the current thread until shutdown; returns when its sessions are done
/// or `shutdown_grace` has passed.
pub(crate) fn run_worker(
    cfg: Arc<Config>,
    topology: Arc<Topology>,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    plaintext: Option<std::net::TcpListener>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::from_std(listener)?;
        let ctx = Rc::new(WorkerCtx::new(cfg, topology, shared));
        tokio::task::spawn_local(maintain_upstreams(Rc::clone(&ctx)));
        tokio::task::spawn_local(relay_shutdown(
            shutdown.clone(),
            Rc::clone(&ctx.local_shutdown),
        ));
        tokio::task::spawn_local(flush_metrics(Rc::clone(&ctx.metrics)));
        tokio::task::spawn_local(Rc::clone(&ctx.hold_clock).run());
        let plaintext = match plaintext {
            Some(l) => {
                let l = TcpListener::from_std(l)?;
                let (ctx, shutdown) = (Rc::clone(&ctx), shutdown.clone());
                Some(tokio::task::spawn_local(async move {
                    accept_loop(&ctx, &l, None, shutdown).await
                }))
            }
            None => None,
        };
        let tls = ctx.shared.tls.clone();
        accept_loop(&ctx, &listener, tls, shutdown).await;
        drop(listener);
        if let Some(task) = plaintext {
            let _ = task.await;
        }
        let grace_end = Instant::now() + ctx.cfg.shutdown_grace;
        while ctx.session_count() > 0 && Instant::now() < grace_end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })
}

/// Pass the process's shutdown signal on to the worker's sessions.
async fn relay_shutdown(mut shutdown: watch::Receiver<bool>, local: Rc<LocalShutdown>) {
    if !*shutdown.borrow_and_update() {
        let _ = shutdown.changed().await; // an error: the sender is gone, shut down too
    }
    local.fire();
}

/// Accept clients on `listener` until shutdown; with `tls`, each does a TLS handshake first.
async fn accept_loop(
    ctx: &Rc<WorkerCtx>,
    listener: &TcpListener,
    tls: Option<Arc<ServerTls>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                logs::limited(
                    logs::Class::AcceptFailed,
                    |suppressed| tracing::warn!(error = %e, suppressed, "accept failed"),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !ctx.shared.admit_client(ctx.cfg.limits.max_clients) {
            ctx.shared.metrics.connections_rejected_limit.inc();
            logs::limited(logs::Class::MaxClients, |suppressed| {
                tracing::warn!(
                    client = %peer,
                    max_clients = ctx.cfg.limits.max_clients,
                    suppressed,
                    "client refused: max_clients reached"
                )
            });
            tokio::task::spawn_local(async move {
                let _ = stream.write_all(replies::MAX_CLIENTS).await;
            });
            continue;
        }
        ctx.session_started();
        let id = ctx.shared.next_client_id();
        let ctx = Rc::clone(ctx);
        match &tls {
            Some(tls) => {
                tokio::task::spawn_local(serve_tls(ctx, stream, peer, id, Arc::clone(tls)))
            }
            None => tokio::task::spawn_local(serve_plaintext(ctx, stream, peer, id)),
        };
    }
}

/// Serve one admitted plaintext client until it leaves.
async fn serve_plaintext(ctx: Rc<WorkerCtx>, stream: TcpStream, peer: SocketAddr, id: u64) {
    let _counted = SessionGuard { ctx: &ctx };
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    ctx.shared.metrics.connections_accepted.inc();
    let (rd, wr) = stream.into_split();
    run_session(Rc::clone(&ctx), rd, wr, peer, local, id).await;
}

/// Serve one admitted TLS client until it leaves: the handshake (within its deadline), then
/// the session. A task of its own type, not a branch of [`serve_plaintext`]'s: the compiler
/// lays out the two sessions' states side by side in one future.
async fn serve_tls(
    ctx: Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    tls: Arc<ServerTls>,
) {
    let _counted = SessionGuard { ctx: &ctx };
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    // The handshake's state (a whole TLS connection) is boxed and freed when it ends, and the
    // stream is moved into the split in the same statement: neither stays part of the task
    // while the client is connected.
    let (rd, wr) = match Box::pin(handshake(&ctx, &tls, stream, peer)).await {
        Some(stream) => tokio::io::split(stream),
        None => return,
    };
    run_session(Rc::clone(&ctx), rd, wr, peer, local, id).await;
}

/// A client's TLS handshake, within `tls.handshake_timeout`; a failure is counted and
/// logged.
async fn handshake(
    ctx: &WorkerCtx,
    tls: &ServerTls,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let failure =
        match tokio::time::timeout(tls.handshake_timeout, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => {
                ctx.shared.metrics.connections_accepted.inc();
                return Some(stream);
            }
            // rustls calls plaintext (a RESP command) "corrupt message of type
            // InvalidContentType": say what that usually means.
            Ok(Err(e)) if e.to_string().contains("InvalidContentType") => format!(
                "{e} (hint: the client spoke plaintext to this TLS port; use rediss:// \
                 or redis-cli --tls)"
            ),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no handshake within {:?}", tls.handshake_timeout),
        };
    ctx.shared.metrics.tls_error();
    logs::limited(
        logs::Class::TlsHandshake,
        |suppressed| tracing::warn!(client = %peer, error = %failure, suppressed, "TLS handshake failed"),
    );
    None
}

/// Keep the worker's upstreams in line with the slot map: connect to every primary as soon
/// as the map names it, and close connections to nodes that left the map.
async fn maintain_upstreams(ctx: Rc<WorkerCtx>) {
    let mut seen = None;
    loop {
        let now = ctx.topology.refresh_count();
        if seen != Some(now) {
            seen = Some(now);
            ctx.routes.follow_map();
            ctx.dedicated.retain_known(&ctx.topology.map().all_nodes());
        }
        // Links to the primaries while a client tracks (started at once by CLIENT TRACKING,
        // stopped here when nobody does, moved here when the primaries change).
        ctx.invalidation_links.follow();
        if let Some(cache) = &ctx.cache {
            cache.sweep(tokio::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Flush the worker's thread-local metrics once a second and whenever a scrape asks.
async fn flush_metrics(metrics: Rc<WorkerMetrics>) {
    let (mut asked, ack) = metrics.shared().register_worker();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            changed = asked.changed() => if changed.is_err() { return },
        }
        let epoch = *asked.borrow_and_update();
        metrics.flush();
        ack.store(epoch, Ordering::Release);
    }
}

/// Bind `count` listeners on `addr` with SO_REUSEPORT (all on the same port, even when
/// `addr` asks for port 0).
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let domain = if addr.is_ipv6() {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        };
        let sock =
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        sock.listen(1024)?;
        let listener: std::net::TcpListener = sock.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected client's task holds its session and little more: not the finished
    /// handshake (a whole TLS connection, 1.2 KiB), nor the other kind of client's session
    /// (both were in every task when one async block served either kind).
    #[test]
    fn a_clients_task_is_its_session_and_little_more() {
        type Tls = tokio_rustls::server::TlsStream<TcpStream>;
        type TlsRead = tokio::io::ReadHalf<Tls>;
        type TlsWrite = tokio::io::WriteHalf<Tls>;
        type Addr = SocketAddr;
        fn size4<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        fn size5<A, B, C, D, E, F>(_: fn(A, B, C, D, E) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        fn size6<A, B, C, D, E, G, F>(_: fn(A, B, C, D, E, G) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let tls_session =
            size6(run_session::<TlsRead, TlsWrite> as fn(_, _, _, Addr, Addr, u64) -> _);
        let tcp_session = size6(
            run_session::<tokio::net::tcp::OwnedReadHalf, tokio::net::tcp::OwnedWriteHalf>
                as fn(_, _, _, Addr, Addr, u64) -> _,
        );
        let tls_task = size5(serve_tls as fn(_, _, _, _, _) -> _);
        let tcp_task = size4(serve_plaintext as fn(_, _, _, _) -> _);
        assert!(
            tls_task <= tls_session + 512,
            "{tls_task} bytes for a {tls_session}-byte session"
        );
        assert!(
            tcp_task <= tcp_session + 512,
            "{tcp_task} bytes for a {tcp_session}-byte session"
        );
    }
}
