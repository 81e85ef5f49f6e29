//! Shared-nothing workers: each is one thread running a single-threaded tokio runtime that
//! owns its listener socket (SO_REUSEPORT: the kernel spreads connections), its client
//! sessions and its upstream connections. Workers share only the read-only config, the
//! topology snapshot and a few counters.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slotgate_cluster::{NodeAddr, SlotMap, SLOT_COUNT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::dedicated::DedicatedPool;
use crate::hold::HoldClock;
use crate::logs;
use crate::metrics::{Metrics, WorkerMetrics};
use crate::protocol::Protocol;
use crate::replies;
use crate::session::run_session;
use crate::shutdown::LocalShutdown;
use crate::tls::ServerTls;
use crate::topology::Topology;
use crate::upstream::{Upstream, UpstreamSet};

/// Counters shared by all workers.
pub(crate) struct Shared {
    /// Process start.
    pub started: std::time::Instant,
    /// The process-wide metrics registry.
    pub metrics: Arc<Metrics>,
    /// Client TLS on the main listener (`None`: plaintext).
    pub tls: Option<Arc<ServerTls>>,
    /// Script bodies seen, to repair EVALSHA after NOSCRIPT.
    pub scripts: crate::scripts::ScriptCache,
    /// Downstream users (`users:`), replaced whole on reload.
    pub users: crate::auth::Users,
    clients: AtomicUsize,
    next_client_id: AtomicU64,
}

impl Shared {
    pub fn new(metrics: Arc<Metrics>, tls: Option<Arc<ServerTls>>) -> Shared {
        Shared {
            started: std::time::Instant::now(),
            metrics,
            tls,
            scripts: Default::default(),
            users: crate::auth::Users::new(),
            clients: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
        }
    }

    /// Connected clients across all workers.
    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

/// Everything a session needs from its worker.
pub(crate) struct WorkerCtx {
    pub cfg: Arc<Config>,
    pub topology: Arc<Topology>,
    pub upstreams: UpstreamSet,
    /// The same for RESP3 clients: connections that said `HELLO 3`, opened on first use.
    pub upstreams_resp3: UpstreamSet,
    pub shared: Arc<Shared>,
    /// The process's shutdown signal on the worker's thread, for sessions to wait on.
    pub local_shutdown: Rc<LocalShutdown>,
    /// The timer sessions share for holding finished replies back.
    pub hold_clock: Rc<HoldClock>,
    /// This worker's thread-local instruments.
    pub metrics: Rc<WorkerMetrics>,
    /// Dedicated connections (blocking commands).
    pub dedicated: Rc<DedicatedPool>,
    any_cursor: Cell<usize>,
    sessions: Cell<usize>,
    by_shard: RefCell<ShardUpstreams>,
}

/// The worker's copy of the current slot map (refreshed when the topology's generation
/// moves) and its upstream for each shard index of that map, so routing a command costs one
/// atomic load and an index instead of an `ArcSwap` load and a hash lookup by address.
struct ShardUpstreams {
    generation: u64,
    map: Arc<SlotMap>,
    upstreams: Vec<Option<Rc<Upstream>>>,
}

impl ShardUpstreams {
    /// Nothing cached yet: the first lookup loads the map.
    fn new() -> ShardUpstreams {
        ShardUpstreams {
            generation: u64::MAX,
            map: Arc::new(SlotMap::empty()),
            upstreams: Vec::new(),
        }
    }

    /// Forget the cached upstreams (the worker dropped some) and reload the map next time.
    fn invalidate(&mut self) {
        self.generation = u64::MAX;
        self.upstreams.clear();
        self.upstreams.resize(self.map.shards().len(), None);
    }
}

impl WorkerCtx {
    /// The worker's multiplexed connections for clients speaking `proto`.
    pub fn upstream_set(&self, proto: Protocol) -> &UpstreamSet {
        match proto {
            Protocol::Resp2 => &self.upstreams,
            Protocol::Resp3 => &self.upstreams_resp3,
        }
    }

    /// The upstream of the primary serving `slot` in the current map, or `None` when the
    /// slot is uncovered.
    pub fn upstream_for_slot(&self, slot: u16) -> Option<Rc<Upstream>> {
        let generation = self.topology.generation();
        let mut cache = self.by_shard.borrow_mut();
        if cache.generation != generation {
            // Generation first, map second: the map is at least that new.
            let map = self.topology.map_arc();
            if map.id() != cache.map.id() {
                cache.upstreams.clear();
                cache.upstreams.resize(map.shards().len(), None);
            }
            cache.map = map;
            cache.generation = generation;
        }
        let cache = &mut *cache;
        let shard = cache.map.shard_index(slot)?;
        Some(Rc::clone(cache.upstreams[shard].get_or_insert_with(|| {
            self.upstreams.get(&cache.map.shards()[shard].primary)
        })))
    }

    /// The primaries that serve slots in the current map (an all-shard fan-out's targets).
    pub fn serving_primaries(&self) -> Vec<NodeAddr> {
        let map = self.topology.map();
        map.serving_shards()
            .iter()
            .map(|s| s.primary.clone())
            .collect()
    }

    /// A primary for a keyless command, rotating over the slot space so keyless load spreads
    /// over shards.
    pub fn any_primary(&self) -> Option<NodeAddr> {
        let map = self.topology.map();
        let start = self.any_cursor.get();
        self.any_cursor.set(start.wrapping_add(1));
        // Probe slots spread over the space; the first covered one decides.
        (0..16)
            .map(|i| ((start.wrapping_mul(5_471) + i * 1_031) % SLOT_COUNT) as u16)
            .find_map(|slot| map.primary_for_slot(slot).cloned())
    }
}

/// Decrements the client count when a session ends, however it ends.
struct ClientSlot<'a> {
    shared: &'a Shared,
    sessions: &'a Cell<usize>,
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.shared.clients.fetch_sub(1, Ordering::Relaxed);
        self.sessions.set(self.sessions.get() - 1);
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
        let metrics = Rc::new(WorkerMetrics::new(Arc::clone(&shared.metrics)));
        let ctx = Rc::new(WorkerCtx {
            upstreams: UpstreamSet::new(
                Arc::new(cfg.upstream.clone()),
                Arc::clone(&topology),
                Rc::clone(&metrics),
                Protocol::Resp2,
            ),
            upstreams_resp3: UpstreamSet::new(
                Arc::new(cfg.upstream.clone()),
                Arc::clone(&topology),
                Rc::clone(&metrics),
                Protocol::Resp3,
            ),
            dedicated: Rc::new(DedicatedPool::new(
                Arc::new(cfg.upstream.clone()),
                Arc::clone(&topology),
                Arc::clone(&shared.metrics),
            )),
            cfg,
            topology,
            shared,
            local_shutdown: LocalShutdown::new(),
            hold_clock: HoldClock::new(crate::session::COALESCE),
            metrics,
            any_cursor: Cell::new(0),
            sessions: Cell::new(0),
            by_shard: RefCell::new(ShardUpstreams::new()),
        });
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
        while ctx.sessions.get() > 0 && Instant::now() < grace_end {
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
        let count = ctx.shared.clients.fetch_add(1, Ordering::Relaxed) + 1;
        if count > ctx.cfg.limits.max_clients {
            ctx.shared.clients.fetch_sub(1, Ordering::Relaxed);
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
        ctx.sessions.set(ctx.sessions.get() + 1);
        let id = ctx.shared.next_client_id.fetch_add(1, Ordering::Relaxed);
        let (ctx, tls) = (Rc::clone(ctx), tls.clone());
        tokio::task::spawn_local(async move {
            let _slot = ClientSlot {
                shared: &ctx.shared,
                sessions: &ctx.sessions,
            };
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(peer);
            let Some(tls) = tls else {
                ctx.shared.metrics.connections_accepted.inc();
                let (rd, wr) = stream.into_split();
                return run_session(Rc::clone(&ctx), rd, wr, peer, local, id).await;
            };
            let failure =
                match tokio::time::timeout(tls.handshake_timeout, tls.acceptor().accept(stream))
                    .await
                {
                    Ok(Ok(stream)) => {
                        ctx.shared.metrics.connections_accepted.inc();
                        let (rd, wr) = tokio::io::split(stream);
                        return run_session(Rc::clone(&ctx), rd, wr, peer, local, id).await;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no handshake within {:?}", tls.handshake_timeout),
                };
            ctx.shared.metrics.tls_error();
            logs::limited(
                logs::Class::TlsHandshake,
                |suppressed| tracing::warn!(client = %peer, error = %failure, suppressed, "TLS handshake failed"),
            );
        });
    }
}

/// Keep the worker's upstreams in line with the slot map: connect to every primary as soon
/// as the map names it (so the first command finds a warm connection and `/readyz` can tell
/// a primary is reachable), and close connections to nodes that left the map.
async fn maintain_upstreams(ctx: Rc<WorkerCtx>) {
    let mut seen = None;
    loop {
        let now = ctx.topology.refresh_count();
        if seen != Some(now) {
            seen = Some(now);
            let map = ctx.topology.map();
            ctx.upstreams.retain_known(&map.all_nodes());
            ctx.upstreams_resp3.retain_known(&map.all_nodes());
            ctx.dedicated.retain_known(&map.all_nodes());
            ctx.by_shard.borrow_mut().invalidate();
            for shard in map.serving_shards() {
                ctx.upstreams.get(&shard.primary);
            }
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
