//! The live view of the cluster: the current [`SlotMap`] snapshot, shared read-only by every
//! worker, and the refresher that replaces it (every `refresh_interval`, and on demand after
//! a MOVED or an upstream failure). A snapshot is never modified; it is replaced whole.
//!
//! In standalone and sentinel modes the map has one primary owning every slot
//! ([`crate::upstream::sentinel`] finds it), so routing is the same in every mode.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, Guard};
use bytes::BytesMut;
use slotgate_cluster::{NodeAddr, SlotMap, SLOT_COUNT};
use slotgate_resp::value::Value;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::{ReadFrom, UpstreamConfig, UpstreamMode};
use crate::error::ProxyError;
use crate::telemetry::metrics::{Metrics, RefreshResult, RefreshTrigger};
use crate::tls::UpstreamTls;
use crate::upstream::command_table::Learned;
use crate::upstream::node_client;
use crate::upstream::sentinel::{self, Primary};

/// Shortest gap between two on-demand refreshes (a burst of MOVED costs one refresh).
const REFRESH_DEBOUNCE: Duration = Duration::from_millis(100);
/// How many nodes a refresh asks before choosing the majority view.
const REFRESH_QUORUM: usize = 3;
/// Longest that commands wait for a Sentinel failover that began to name a new primary;
/// after that the primary the sentinels name is used again (a stuck or silent failover).
const FAILOVER_HOLD_MAX: Duration = Duration::from_secs(5);
/// Pause before subscribing again to a sentinel that could not be reached.
const SENTINEL_RETRY: Duration = Duration::from_secs(1);

/// A Sentinel failover in progress: nothing is routed until a primary other than `old` is
/// verified, the failover is aborted, or [`FAILOVER_HOLD_MAX`] passes.
#[derive(Debug)]
struct Hold {
    old: NodeAddr,
    since: Instant,
}

/// The shared topology: slot map snapshot plus refresh bookkeeping.
///
/// # Concurrency
/// Readers call [`Topology::map`] on every command (a wait-free `ArcSwap` load); writers are
/// the refresher and [`Topology::apply_moved`].
pub struct Topology {
    map: ArcSwap<SlotMap>,
    /// Bumped after every swap of `map`, so a worker can keep its own `Arc` of the map and
    /// check one atomic per command instead of loading the `ArcSwap`.
    generation: AtomicU64,
    cfg: UpstreamConfig,
    wake: Notify,
    redis_version: Mutex<String>,
    refreshes: AtomicU64,
    last_refresh_unix_ms: AtomicU64,
    /// Bits (1 << [`RefreshTrigger`]) of the on-demand triggers since the last refresh.
    pending: AtomicU8,
    metrics: Arc<Metrics>,
    tls: Option<Arc<UpstreamTls>>,
    /// TLS towards the sentinels (sentinel mode).
    sentinel_tls: Option<Arc<UpstreamTls>>,
    /// The primary last verified (standalone and sentinel modes).
    primary: Mutex<Option<NodeAddr>>,
    hold: Mutex<Option<Hold>>,
    /// Sentinels whose event subscription is up.
    sentinels_up: AtomicUsize,
    /// The primary's number of databases (standalone and sentinel modes).
    databases: AtomicU32,
    /// Commands the servers have and the static table lacks.
    learned: ArcSwap<Learned>,
    /// The primaries `learned` was taken from.
    learned_from: Mutex<Vec<NodeAddr>>,
}

impl Topology {
    /// An empty topology; call [`Topology::refresh`] to load it.
    pub(crate) fn new(
        cfg: UpstreamConfig,
        metrics: Arc<Metrics>,
        tls: Option<Arc<UpstreamTls>>,
        sentinel_tls: Option<Arc<UpstreamTls>>,
    ) -> Topology {
        Topology {
            map: ArcSwap::from_pointee(SlotMap::empty()),
            generation: AtomicU64::new(0),
            cfg,
            wake: Notify::new(),
            redis_version: Mutex::new(String::new()),
            refreshes: AtomicU64::new(0),
            last_refresh_unix_ms: AtomicU64::new(0),
            pending: AtomicU8::new(0),
            metrics,
            tls,
            sentinel_tls,
            primary: Mutex::new(None),
            hold: Mutex::new(None),
            sentinels_up: AtomicUsize::new(0),
            databases: AtomicU32::new(16),
            learned: ArcSwap::from_pointee(Learned::default()),
            learned_from: Mutex::new(Vec::new()),
        }
    }

    /// The commands learned from the servers (see [`crate::upstream::command_table`]).
    pub fn learned(&self) -> Guard<Arc<Learned>> {
        self.learned.load()
    }

    /// Learn the servers' commands when the primaries changed since the last time: every
    /// primary's `COMMAND`, kept where they all agree. A primary that does not answer (or
    /// an upstream user without `+command`) leaves the table as it was until they change
    /// again.
    async fn learn_commands(&self) {
        let primaries: Vec<NodeAddr> = self
            .map()
            .serving_shards()
            .iter()
            .map(|s| s.primary.clone())
            .collect();
        match self.learned_from.lock() {
            Ok(mut from) if *from != primaries && !primaries.is_empty() => {
                *from = primaries.clone()
            }
            _ => return,
        }
        let mut replies = Vec::with_capacity(primaries.len());
        for primary in &primaries {
            let tls = self.tls.as_deref();
            let Ok(mut stream) = node_client::connect(primary.as_str(), &self.cfg, tls).await
            else {
                return;
            };
            let mut buf = BytesMut::new();
            match node_client::query(&mut stream, &mut buf, &[b"COMMAND"], self.cfg.op_timeout)
                .await
            {
                Ok(reply @ Value::Array(_)) => replies.push(reply),
                other => {
                    tracing::warn!(node = %primary, reply = ?other.map(|_| ()), "COMMAND refused: the servers' newer commands are not learned");
                    return;
                }
            }
        }
        let learned = Learned::from_servers(&replies, self.mode().one_primary());
        tracing::info!(
            commands = learned.len(),
            "learned the servers' commands the built-in table lacks"
        );
        self.metrics.commands_learned(learned.len());
        self.learned.store(Arc::new(learned));
    }

    /// How many databases the primary has (`SELECT` takes 0 to this minus one; 1 in a
    /// cluster).
    pub fn databases(&self) -> u32 {
        match self.cfg.mode {
            UpstreamMode::Cluster => 1,
            _ => self.databases.load(Ordering::Relaxed),
        }
    }

    /// Cluster, standalone or sentinel.
    pub fn mode(&self) -> &UpstreamMode {
        &self.cfg.mode
    }

    /// Where read-only commands go.
    pub fn read_from(&self) -> ReadFrom {
        self.cfg.read_from
    }

    /// Sentinels whose event subscription is up now (sentinel mode).
    pub fn sentinels_reachable(&self) -> usize {
        self.sentinels_up.load(Ordering::Relaxed)
    }

    /// The current snapshot.
    #[inline]
    pub fn map(&self) -> Guard<Arc<SlotMap>> {
        self.map.load()
    }

    /// How many times the map was swapped. A reader that saw generation `g` and then loaded
    /// the map has a map at least as new as the one published as `g`.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot, to keep.
    pub fn map_arc(&self) -> Arc<SlotMap> {
        self.map.load_full()
    }

    /// TLS towards the nodes, when configured.
    pub(crate) fn upstream_tls(&self) -> Option<&UpstreamTls> {
        self.tls.as_deref()
    }

    /// The `redis_version` the cluster reported at the last refresh.
    pub fn redis_version(&self) -> String {
        self.redis_version
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// Whether the servers report `redis_version` `major.minor` or newer (Valkey reports
    /// the Redis version it is compatible with: 7.2.4 for Valkey 8). False before the first
    /// refresh.
    pub fn version_at_least(&self, major: u32, minor: u32) -> bool {
        let version = self.redis_version();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(a), Some(b)) => (a, b) >= (major, minor),
            _ => false,
        }
    }

    /// Completed refreshes since start.
    pub fn refresh_count(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Unix time in milliseconds of the last successful refresh (0: never).
    pub fn last_refresh_unix_ms(&self) -> u64 {
        self.last_refresh_unix_ms.load(Ordering::Relaxed)
    }

    /// Ask the refresher to reload the map soon (debounced); `trigger` says why, for
    /// `slotgate_topology_refreshes_total`.
    pub fn request_refresh(&self, trigger: RefreshTrigger) {
        self.pending.fetch_or(1 << trigger as u8, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Count a refresh in `slotgate_topology_refreshes_total`.
    pub(crate) fn count_refresh(&self, trigger: RefreshTrigger, ok: bool) {
        let result = if ok {
            RefreshResult::Ok
        } else {
            RefreshResult::Error
        };
        self.metrics.refresh(trigger, result);
    }

    /// The trigger to report for an on-demand refresh: MOVED before errors before manual.
    fn take_trigger(&self) -> RefreshTrigger {
        let bits = self.pending.swap(0, Ordering::Relaxed);
        [
            RefreshTrigger::Moved,
            RefreshTrigger::Error,
            RefreshTrigger::Manual,
        ]
        .into_iter()
        .find(|t| bits & (1 << *t as u8) != 0)
        .unwrap_or(RefreshTrigger::Periodic)
    }

    /// Replace the map as a refresh would (tests and the fuzzing world need a given map).
    pub(crate) fn install_map(&self, map: SlotMap) {
        self.map.store(Arc::new(map));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Record what a `-MOVED slot addr` said: swap in a map with that slot patched, and
    /// schedule a full refresh.
    pub fn apply_moved(&self, slot: u16, addr: &str) {
        self.map.rcu(|cur| match cur.with_moved(slot, addr) {
            Some(next) => Arc::new(next),
            None => Arc::clone(cur),
        });
        self.generation.fetch_add(1, Ordering::Release);
        self.request_refresh(RefreshTrigger::Moved);
    }

    /// Reload the slot map: ask up to three nodes (known primaries first, then seeds) for
    /// `CLUSTER SLOTS` and keep the view most of them agree on.
    ///
    /// # Errors
    /// The last node error when no node answered with a usable map.
    pub async fn refresh(&self) -> Result<(), ProxyError> {
        self.refresh_and_learn().await.map(|_| ())
    }

    /// [`Topology::refresh_outcome`], then learn the servers' commands if the primaries
    /// changed.
    async fn refresh_and_learn(&self) -> Result<RefreshResult, ProxyError> {
        let result = self.refresh_outcome().await;
        if result.is_ok() {
            self.learn_commands().await;
        }
        result
    }

    /// [`Topology::refresh`], saying whether the new map was swapped in (`Ok`) or refused
    /// as stale (`Rejected`: it would uncover slots whose owner still answers for them).
    async fn refresh_outcome(&self) -> Result<RefreshResult, ProxyError> {
        let tls = self.tls.as_deref();
        match &self.cfg.mode {
            UpstreamMode::Cluster => self.refresh_cluster().await,
            UpstreamMode::Standalone => {
                let primary = sentinel::standalone(&self.cfg.seeds[0], &self.cfg, tls).await?;
                let map = SlotMap::single(primary.addr.clone(), primary.replicas.clone());
                let map = self.with_readable_replicas(map).await;
                self.use_primary(primary, map)
            }
            UpstreamMode::Sentinel(s) => {
                let sentinel_tls = self.sentinel_tls.as_deref();
                let primary = sentinel::resolve(s, &self.cfg, sentinel_tls, tls).await;
                if primary.is_err() {
                    self.metrics.sentinel_primary(None);
                }
                let primary = primary?;
                let map = SlotMap::single(primary.addr.clone(), primary.replicas.clone());
                let map = self.with_readable_replicas(map).await;
                self.use_primary(primary, map)
            }
        }
    }

    /// Route everything to `found`, the primary a standalone or sentinel refresh verified
    /// (`map` names it as the owner of every slot), unless a failover away from it is in
    /// progress.
    fn use_primary(&self, found: Primary, map: SlotMap) -> Result<RefreshResult, ProxyError> {
        if let Ok(mut hold) = self.hold.lock() {
            if let Some(h) = hold.as_ref() {
                if h.old == found.addr && h.since.elapsed() < FAILOVER_HOLD_MAX {
                    return Err(ProxyError::Upstream {
                        addr: found.addr.to_string(),
                        reason: "a failover is in progress: waiting for the sentinels to name \
                                 the new primary"
                            .into(),
                    });
                }
                *hold = None;
            }
        }
        self.databases.store(found.databases, Ordering::Relaxed);
        let mode = self.cfg.mode.name();
        let previous = self
            .primary
            .lock()
            .ok()
            .and_then(|mut p| p.replace(found.addr.clone()));
        if previous.as_ref().is_some_and(|p| *p != found.addr) {
            self.metrics.failover(mode);
            tracing::warn!(
                mode,
                old = ?previous,
                new = %found.addr,
                "new primary in use"
            );
        }
        if matches!(self.cfg.mode, UpstreamMode::Sentinel(_)) {
            self.metrics.sentinel_primary(Some(&found.addr));
        }
        self.publish(map);
        Ok(RefreshResult::Ok)
    }

    /// A Sentinel failover of the primary began: stop routing to it (commands wait and
    /// retry) until a new primary is verified. Writes sent to the old primary once its
    /// replica is promoted would be lost when it is demoted.
    fn begin_failover(&self) {
        let Some(old) = self.primary.lock().ok().and_then(|p| p.clone()) else {
            return;
        };
        if let Ok(mut hold) = self.hold.lock() {
            if hold.is_some() {
                return;
            }
            *hold = Some(Hold {
                old: old.clone(),
                since: Instant::now(),
            });
        }
        tracing::warn!(primary = %old, "sentinel failover began: commands wait for the new primary");
        self.metrics.sentinel_primary(None);
        self.publish(SlotMap::empty());
        self.request_refresh(RefreshTrigger::Error);
    }

    /// React to one sentinel event (see [`sentinel::watch`]).
    fn on_sentinel_event(&self, event: sentinel::Event) {
        match event {
            sentinel::Event::FailoverBegins => self.begin_failover(),
            sentinel::Event::FailoverAborted => {
                if let Ok(mut hold) = self.hold.lock() {
                    *hold = None;
                }
                self.request_refresh(RefreshTrigger::Error);
            }
            sentinel::Event::FailoverEnds | sentinel::Event::Changed => {
                self.request_refresh(RefreshTrigger::Error)
            }
            sentinel::Event::Subscribed(up) => {
                let n = if up {
                    self.sentinels_up.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    // A lost subscription may have missed an event: look again.
                    self.request_refresh(RefreshTrigger::Error);
                    self.sentinels_up.fetch_sub(1, Ordering::Relaxed) - 1
                };
                self.metrics.sentinels_reachable.set(n as i64);
            }
        }
    }

    /// Subscribe to every sentinel's events for as long as the process runs, reconnecting
    /// after a loss.
    fn spawn_sentinel_watchers(self: &Arc<Self>, shutdown: &watch::Receiver<bool>) {
        let UpstreamMode::Sentinel(s) = &self.cfg.mode else {
            return;
        };
        for addr in s.sentinels.clone() {
            let topology = Arc::clone(self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let UpstreamMode::Sentinel(s) = &topology.cfg.mode else {
                    return;
                };
                let on_event = |e| topology.on_sentinel_event(e);
                loop {
                    let tls = topology.sentinel_tls.as_deref();
                    tokio::select! {
                        result = sentinel::watch(&addr, s, &topology.cfg, tls, &on_event) => {
                            if let Err(e) = result {
                                crate::telemetry::logs::limited(
                                    crate::telemetry::logs::Class::RefreshFailed,
                                    |suppressed| tracing::warn!(sentinel = %addr, error = %e, suppressed, "sentinel subscription lost"),
                                );
                            }
                        }
                        _ = shutdown.changed() => return,
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(SENTINEL_RETRY) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            });
        }
    }

    /// `map` with the replicas reads may go to marked (`upstream.read_from` other than
    /// `primary`): those each primary's `INFO replication` lists as online and at most
    /// `max_replica_lag` behind. A primary that does not answer gets none.
    async fn with_readable_replicas(&self, mut map: SlotMap) -> SlotMap {
        if self.cfg.read_from == ReadFrom::Primary {
            return map;
        }
        let mut fit: Vec<(NodeAddr, Vec<NodeAddr>)> = Vec::new();
        for shard in map.serving_shards() {
            let replicas = self.replicas_in_step(&shard.primary).await;
            fit.push((shard.primary.clone(), replicas));
        }
        map.set_readable(|shard| {
            let in_step = fit
                .iter()
                .find(|(p, _)| *p == shard.primary)
                .map(|(_, r)| &r[..])
                .unwrap_or(&[]);
            shard
                .replicas
                .iter()
                .filter(|r| in_step.contains(r))
                .cloned()
                .collect()
        });
        map
    }

    /// The replicas `primary` reports online and at most `max_replica_lag` behind.
    async fn replicas_in_step(&self, primary: &NodeAddr) -> Vec<NodeAddr> {
        let tls = self.tls.as_deref();
        let Ok(mut stream) = node_client::connect(primary.as_str(), &self.cfg, tls).await else {
            return Vec::new();
        };
        let mut buf = BytesMut::new();
        let args: &[&[u8]] = &[b"INFO", b"replication"];
        match node_client::query(&mut stream, &mut buf, args, self.cfg.op_timeout).await {
            Ok(Value::Bulk(info)) | Ok(Value::Verbatim(info)) => {
                replicas_within(&info, self.cfg.max_replica_lag)
            }
            _ => Vec::new(),
        }
    }

    /// Swap in `map` as the result of a successful refresh.
    fn publish(&self, map: SlotMap) {
        self.map.store(Arc::new(map));
        self.generation.fetch_add(1, Ordering::Release);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.last_refresh_unix_ms.store(now_ms, Ordering::Relaxed);
    }

    /// A cluster refresh: `CLUSTER SLOTS` from up to three nodes.
    async fn refresh_cluster(&self) -> Result<RefreshResult, ProxyError> {
        let current = self.map.load_full();
        let mut candidates: Vec<String> =
            current.all_nodes().iter().map(|n| n.to_string()).collect();
        for seed in &self.cfg.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut views: Vec<SlotMap> = Vec::new();
        let mut last_err = None;
        for addr in &candidates {
            if views.len() >= REFRESH_QUORUM {
                break;
            }
            match self.fetch_view(addr, views.is_empty()).await {
                Ok(map) if map.covered() > 0 => views.push(map),
                Ok(_) => {
                    last_err = Some(ProxyError::Upstream {
                        addr: addr.clone(),
                        reason: "node serves no slot".into(),
                    })
                }
                Err(e) => last_err = Some(e),
            }
        }
        let views_len = views.len();
        let Some(chosen) = choose_view(views) else {
            return Err(last_err.unwrap_or(ProxyError::Upstream {
                addr: "(none)".into(),
                reason: "no seed or known node".into(),
            }));
        };
        tracing::debug!(
            views = views_len,
            covered = chosen.covered(),
            changed = !chosen.same_assignment(&current),
            "topology refreshed"
        );
        // A view that uncovers slots is believed only if their owners no longer claim them:
        // a node that just restarted or lost its config can answer with a partial map.
        for (owner, slots) in uncovered_by(&current, &chosen) {
            if let Ok(view) = self.fetch_view(owner.as_str(), false).await {
                if slots
                    .iter()
                    .any(|&s| view.primary_for_slot(s) == Some(&owner))
                {
                    crate::telemetry::logs::limited(
                        crate::telemetry::logs::Class::RefreshFailed,
                        |suppressed| {
                            tracing::warn!(
                                owner = %owner,
                                slots = slots.len(),
                                suppressed,
                                "slot map refresh rejected: it uncovers slots their owner still serves"
                            )
                        },
                    );
                    return Ok(RefreshResult::Rejected);
                }
            }
        }
        if !chosen.same_assignment(&current) {
            tracing::info!(
                covered = chosen.covered(),
                shards = chosen.serving_shards().len(),
                "slot map updated"
            );
        }
        for _ in promoted_replicas(&current, &chosen) {
            self.metrics.failover("cluster");
        }
        let chosen = self.with_readable_replicas(chosen).await;
        self.publish(chosen);
        Ok(RefreshResult::Ok)
    }

    /// One node's view; also records the server version from the first node asked.
    async fn fetch_view(&self, addr: &str, want_version: bool) -> Result<SlotMap, ProxyError> {
        let mut stream = node_client::connect(addr, &self.cfg, self.tls.as_deref()).await?;
        let mut buf = BytesMut::new();
        let reply = node_client::query(
            &mut stream,
            &mut buf,
            &[b"CLUSTER", b"SLOTS"],
            self.cfg.op_timeout,
        )
        .await?;
        let map = SlotMap::from_cluster_slots(&reply, addr).map_err(|e| ProxyError::Upstream {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
        if want_version {
            if let Ok(Value::Bulk(info)) = node_client::query(
                &mut stream,
                &mut buf,
                &[b"INFO", b"server"],
                self.cfg.op_timeout,
            )
            .await
            {
                if let Some(v) = info_field(&info, "redis_version") {
                    if let Ok(mut slot) = self.redis_version.lock() {
                        *slot = v;
                    }
                }
            }
        }
        Ok(map)
    }

    /// The refresher loop: periodic, plus on demand; ends when `shutdown` turns true.
    pub async fn run_refresher(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.spawn_sentinel_watchers(&shutdown);
        let mut last = Instant::now();
        let mut failing = self.map.load().covered() == 0;
        loop {
            // While refreshes fail, retry every second rather than every refresh_interval.
            let every = if failing {
                self.cfg.refresh_interval.min(Duration::from_secs(1))
            } else {
                self.cfg.refresh_interval
            };
            let periodic = tokio::time::sleep_until(last + every);
            let mut trigger = RefreshTrigger::Periodic;
            tokio::select! {
                _ = periodic => {}
                _ = self.wake.notified() => {
                    trigger = RefreshTrigger::Error;
                    let earliest = last + REFRESH_DEBOUNCE;
                    if Instant::now() < earliest {
                        tokio::time::sleep_until(earliest).await;
                    }
                }
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            if trigger != RefreshTrigger::Periodic {
                trigger = self.take_trigger();
            }
            let result = self.refresh_and_learn().await;
            self.metrics.refresh(
                trigger,
                match &result {
                    Ok(r) => *r,
                    Err(_) => RefreshResult::Error,
                },
            );
            failing = match result {
                Ok(_) => false,
                Err(e) => {
                    crate::telemetry::logs::limited(
                        crate::telemetry::logs::Class::RefreshFailed,
                        |suppressed| tracing::warn!(error = %e, suppressed, "topology refresh failed"),
                    );
                    true
                }
            };
            last = Instant::now();
        }
    }
}

/// The slots `current` serves that `next` leaves uncovered, grouped by their current owner.
fn uncovered_by(current: &SlotMap, next: &SlotMap) -> Vec<(NodeAddr, Vec<u16>)> {
    let mut out: Vec<(NodeAddr, Vec<u16>)> = Vec::new();
    for slot in 0..SLOT_COUNT as u16 {
        if next.primary_for_slot(slot).is_some() {
            continue;
        }
        let Some(owner) = current.primary_for_slot(slot) else {
            continue;
        };
        match out.iter_mut().find(|(o, _)| o == owner) {
            Some((_, slots)) => slots.push(slot),
            None => out.push((owner.clone(), vec![slot])),
        }
    }
    out
}

/// The replicas an `INFO replication` text lists as `state=online` with a `lag` (seconds
/// since their last acknowledgement) of at most `max_lag`.
fn replicas_within(info: &[u8], max_lag: Duration) -> Vec<NodeAddr> {
    let text = String::from_utf8_lossy(info);
    text.lines()
        .filter(|l| l.starts_with("slave") && l.contains(":ip="))
        .filter_map(|l| {
            let fields = l.split_once(':')?.1;
            let get = |k: &str| {
                fields
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            };
            let lag: u64 = get("lag")?.parse().ok()?;
            let fit = get("state")? == "online" && Duration::from_secs(lag) <= max_lag;
            let addr = NodeAddr::from_host_port(get("ip")?, get("port")?.parse().ok()?);
            fit.then_some(addr)
        })
        .collect()
}

/// The primaries of `next` that were replicas in `current` (promoted by a failover).
fn promoted_replicas<'a>(current: &SlotMap, next: &'a SlotMap) -> Vec<&'a NodeAddr> {
    let was_replica = |n: &NodeAddr| current.shards().iter().any(|s| s.replicas.contains(n));
    next.serving_shards()
        .into_iter()
        .map(|s| &s.primary)
        .filter(|p| was_replica(p))
        .collect()
}

/// The view most answers agree with; ties go to the view covering more slots.
fn choose_view(views: Vec<SlotMap>) -> Option<SlotMap> {
    let scores: Vec<(usize, usize)> = views
        .iter()
        .map(|v| {
            (
                views.iter().filter(|o| o.same_assignment(v)).count(),
                v.covered(),
            )
        })
        .collect();
    let best = (0..views.len()).max_by_key(|&i| scores[i])?;
    views.into_iter().nth(best)
}

/// `field:value` from an INFO text.
pub(crate) fn info_field(info: &[u8], field: &str) -> Option<String> {
    let text = std::str::from_utf8(info).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: i64) -> Value {
        Value::Array(vec![
            Value::Bulk(b"127.0.0.1".to_vec()),
            Value::Integer(port),
        ])
    }

    fn map(ranges: &[(i64, i64, i64)]) -> SlotMap {
        let reply = Value::Array(
            ranges
                .iter()
                .map(|&(a, b, port)| {
                    Value::Array(vec![Value::Integer(a), Value::Integer(b), node(port)])
                })
                .collect(),
        );
        SlotMap::from_cluster_slots(&reply, "127.0.0.1:1").unwrap()
    }

    #[test]
    fn replicas_behind_or_not_online_are_not_read_from() {
        let info = b"# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
            slave0:ip=127.0.0.1,port=7001,state=online,offset=100,lag=0\r\n\
            slave1:ip=127.0.0.1,port=7002,state=online,offset=90,lag=3\r\n\
            slave2:ip=127.0.0.1,port=7003,state=wait_bgsave,offset=0,lag=0\r\n\
            master_repl_offset:100\r\n";
        let fit = replicas_within(info, Duration::from_secs(1));
        assert_eq!(fit, vec![NodeAddr::new("127.0.0.1:7001")]);
        let fit = replicas_within(info, Duration::from_secs(5));
        assert_eq!(fit.len(), 2);
    }

    #[test]
    fn uncovered_slots_are_grouped_by_their_current_owner() {
        let current = map(&[(0, 99, 7001), (100, 199, 7002), (200, 16383, 7003)]);
        // The same assignment, and a move to another owner, uncover nothing.
        assert!(uncovered_by(&current, &current).is_empty());
        let moved = map(&[(0, 199, 7002), (200, 16383, 7003)]);
        assert!(uncovered_by(&current, &moved).is_empty());
        // A partial view uncovers 7001's slots 50-99 and all of 7003's.
        let partial = map(&[(0, 49, 7001), (100, 199, 7002)]);
        let lost = uncovered_by(&current, &partial);
        assert_eq!(lost.len(), 2);
        assert_eq!(lost[0].0.as_str(), "127.0.0.1:7001");
        assert_eq!(lost[0].1, (50..100).collect::<Vec<u16>>());
        assert_eq!(lost[1].0.as_str(), "127.0.0.1:7003");
        assert_eq!(lost[1].1.len(), 16384 - 200);
    }
}
