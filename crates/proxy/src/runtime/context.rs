//! The context every session of a worker is handed: the process-wide parts all workers share
//! ([`Shared`]: metrics registry, users, script cache, client count) and the worker's own
//! ([`WorkerCtx`]: its connections to the nodes, dedicated pool, hold clock, shutdown flag
//! and thread-local metrics). It sits low in the module graph: the session, the routing
//! families and the reply entries import it; it imports only what it holds.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::auth::users::Users;
use crate::config::Config;
use crate::family::scripts::ScriptCache;
use crate::runtime::budget::{OutputBudget, ProcessBudget, WorkerBudget};
use crate::runtime::buffers::BufferPool;
use crate::runtime::cache::ReadCache;
use crate::runtime::hold::HoldClock;
use crate::runtime::shutdown::LocalShutdown;
use crate::runtime::tracking::{Inboxes, TrackingTable};
use crate::telemetry::local::WorkerMetrics;
use crate::telemetry::metrics::Metrics;
use crate::tls::ServerTls;
use crate::upstream::dedicated::DedicatedPool;
use crate::upstream::invalidation::InvalidationLinks;
use crate::upstream::routes::Routes;
use crate::upstream::topology::Topology;

/// What all workers share: read-mostly, behind `Arc`.
pub(crate) struct Shared {
    /// Process start.
    pub started: std::time::Instant,
    /// The process-wide metrics registry.
    pub metrics: Arc<Metrics>,
    /// Client TLS on the main listener (`None`: plaintext).
    pub tls: Option<Arc<ServerTls>>,
    /// Script bodies seen, to repair EVALSHA after NOSCRIPT.
    pub scripts: ScriptCache,
    /// Downstream users (`users:`), replaced whole on reload.
    pub users: Users,
    /// Bytes buffered for clients across the process (`limits.max_buffered`).
    pub buffered: Arc<ProcessBudget>,
    /// Every client's invalidation inbox (`CLIENT TRACKING`), by client id.
    pub inboxes: Arc<Inboxes>,
    clients: AtomicUsize,
    next_client_id: AtomicU64,
}

// === impl Shared ===

impl Shared {
    /// The shared state at start: no clients, no users (see [`Users::install`]), nothing
    /// buffered out of `max_buffered` bytes.
    pub fn new(metrics: Arc<Metrics>, tls: Option<Arc<ServerTls>>, max_buffered: usize) -> Shared {
        Shared {
            started: std::time::Instant::now(),
            metrics,
            tls,
            scripts: ScriptCache::default(),
            users: Users::new(),
            buffered: Arc::new(ProcessBudget::new(max_buffered)),
            inboxes: Arc::new(Inboxes::default()),
            clients: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
        }
    }

    /// Connected clients across all workers.
    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Count a new client unless `max` are connected already; `false`: refuse it.
    pub fn admit_client(&self, max: usize) -> bool {
        if self.clients.fetch_add(1, Ordering::Relaxed) + 1 > max {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// A client admitted by [`Shared::admit_client`] left.
    pub fn release_client(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }

    /// The next `CLIENT ID` (unique in the process, from 1).
    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Everything a session needs from its worker.
pub(crate) struct WorkerCtx {
    /// The validated configuration.
    pub cfg: Arc<Config>,
    /// The slot map and its refresh.
    pub topology: Arc<Topology>,
    /// The worker's multiplexed node connections and the slot → connection lookup.
    pub routes: Routes,
    /// What all workers share.
    pub shared: Arc<Shared>,
    /// The process's shutdown signal on the worker's thread, for sessions to wait on.
    pub local_shutdown: Rc<LocalShutdown>,
    /// The timer sessions share for holding finished replies back.
    pub hold_clock: Rc<HoldClock>,
    /// This worker's thread-local instruments.
    pub metrics: Rc<WorkerMetrics>,
    /// Dedicated connections (blocking commands, transactions, Pub/Sub).
    pub dedicated: Rc<DedicatedPool>,
    /// The bytes this worker's clients hold (their share of [`Shared::buffered`]).
    pub buffered: Rc<WorkerBudget>,
    /// Which of this worker's tracking clients read which key (`CLIENT TRACKING`).
    pub tracking: Rc<TrackingTable>,
    /// The read cache (`cache.enabled`; `None` costs the hot path one branch).
    pub cache: Option<Rc<ReadCache>>,
    /// The primaries' reports of changed keys, while a client of this worker tracks.
    pub invalidation_links: Rc<InvalidationLinks>,
    /// The sessions' read and output buffers while they are idle.
    pub buffers: BufferPool,
    sessions: Cell<usize>,
}

// === impl WorkerCtx ===

impl WorkerCtx {
    /// A worker's context: no connection is open yet.
    pub fn new(cfg: Arc<Config>, topology: Arc<Topology>, shared: Arc<Shared>) -> WorkerCtx {
        let metrics = Rc::new(WorkerMetrics::new(Arc::clone(&shared.metrics)));
        let cache = cfg.cache.enabled.then(|| {
            let share = cfg.cache.max_memory / cfg.worker_count().max(1);
            Rc::new(ReadCache::new(
                &cfg.cache,
                share,
                Arc::clone(&shared.metrics),
            ))
        });
        let tracking = Rc::new(TrackingTable::new(
            cfg.limits.max_tracked_keys,
            Arc::clone(&shared.metrics),
            cache.clone(),
        ));
        WorkerCtx {
            invalidation_links: Rc::new(InvalidationLinks::new(
                Rc::clone(&tracking),
                Arc::clone(&topology),
                Arc::new(cfg.upstream.clone()),
            )),
            tracking,
            cache,
            routes: Routes::new(&cfg.upstream, Arc::clone(&topology), &metrics),
            dedicated: Rc::new(DedicatedPool::new(
                Arc::new(cfg.upstream.clone()),
                Arc::clone(&topology),
                Arc::clone(&shared.metrics),
            )),
            buffered: WorkerBudget::new(Arc::clone(&shared.buffered)),
            buffers: BufferPool::default(),
            cfg,
            topology,
            shared,
            local_shutdown: LocalShutdown::new(),
            hold_clock: HoldClock::new(crate::runtime::hold::COALESCE),
            metrics,
            sessions: Cell::new(0),
        }
    }

    /// A new client's output budget, with the configured limits.
    pub fn client_budget(&self) -> Rc<OutputBudget> {
        let limits = &self.cfg.limits;
        OutputBudget::new(
            &self.buffered,
            limits.client_output_soft,
            limits.max_client_output,
        )
    }

    /// A session started on this worker.
    pub fn session_started(&self) {
        self.sessions.set(self.sessions.get() + 1);
    }

    /// A session of this worker ended.
    pub fn session_ended(&self) {
        self.sessions.set(self.sessions.get() - 1);
    }

    /// Sessions running on this worker.
    pub fn session_count(&self) -> usize {
        self.sessions.get()
    }

    /// Every key lives on one primary (standalone and sentinel modes): the keys of one
    /// command need not share a slot, and CLUSTER commands do not exist.
    #[inline]
    pub fn one_primary(&self) -> bool {
        self.cfg.upstream.mode.one_primary()
    }
}
