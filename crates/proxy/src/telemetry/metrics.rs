//! The metrics registry (the names are a public API; `docs/metrics.md` documents each).
//!
//! Two kinds of instruments:
//! - rare events (accepts, redirects, retries, upstream errors, refreshes) go straight to the
//!   shared prometheus counters — an atomic add each;
//! - per-command and per-upstream-request instruments live in each worker's
//!   [`WorkerMetrics`] (plain thread-local counters and [`LocalLatency`] histograms), resolved once
//!   per command index and node, and flushed into the shared registry once a second and
//!   before every scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use slotgate_cluster::NodeAddr;
use slotgate_commands::COMMAND_COUNT;
use tokio::sync::watch;

use crate::telemetry::latency::LatencyVec;
use crate::telemetry::process::ProcessMetrics;
use crate::telemetry::registry::{counter_vec, gauge_vec, int_counter, int_gauge, latency_vec};

/// The command index used for names the command table does not know.
pub(crate) const UNKNOWN_COMMAND: u16 = COMMAND_COUNT as u16;

/// How long a scrape waits for workers to flush their thread-local instruments.
const FLUSH_WAIT: Duration = Duration::from_millis(250);

/// How one client command ended, as `slotgate_commands_total{result}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmdResult {
    /// A non-error reply.
    Ok = 0,
    /// An error reply (from Redis or from the proxy).
    Error = 1,
    /// A non-error reply after following at least one MOVED/ASK redirect.
    Redirected = 2,
    /// `op_timeout` passed before the cluster answered.
    Timeout = 3,
}

pub(crate) const RESULT_LABELS: [&str; 4] = ["ok", "error", "redirected", "timeout"];

/// Why clients were told keys changed (`slotgate_invalidations_total{source}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalidation {
    /// A primary reported the change (a write, an expiry, an eviction, a flush).
    Server,
    /// slotgate forwarded a write to the key itself.
    OwnWrite,
    /// The servers' reports may have been missed (a lost or new link to a primary).
    Topology,
    /// A cached entry reached its time to live.
    Ttl,
    /// Room was made in a bounded table.
    Memory,
}

impl Invalidation {
    const ALL: [Invalidation; 5] = [
        Invalidation::Server,
        Invalidation::OwnWrite,
        Invalidation::Topology,
        Invalidation::Ttl,
        Invalidation::Memory,
    ];

    fn label(self) -> &'static str {
        match self {
            Invalidation::Server => "server",
            Invalidation::OwnWrite => "own_write",
            Invalidation::Topology => "topology",
            Invalidation::Ttl => "ttl",
            Invalidation::Memory => "memory",
        }
    }
}

/// How the read cache took a cacheable read (`slotgate_cache_requests_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheResult {
    /// Answered from the cache.
    Hit = 0,
    /// Sent to the node; its reply may fill the cache.
    Miss = 1,
    /// Sent to the node and not stored (the cache cannot vouch for it now, or the key is not
    /// cacheable).
    Bypass = 2,
}

pub(crate) const CACHE_RESULT_LABELS: [&str; 3] = ["hit", "miss", "bypass"];

/// Kinds of `slotgate_upstream_errors_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UpstreamError {
    /// A TCP connect (or the AUTH after it) failed.
    Connect,
    /// An established connection broke.
    Io,
    /// A command to this node hit `op_timeout`.
    Timeout,
    /// The node sent something that is not RESP.
    Protocol,
}

impl UpstreamError {
    fn label(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Io => "io",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Protocol => "protocol",
        }
    }
}

/// Reasons of `slotgate_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// `-TRYAGAIN` (multi-key command during a migration).
    TryAgain = 0,
    /// `-CLUSTERDOWN`.
    ClusterDown = 1,
    /// `-LOADING`.
    Loading = 2,
    /// A read-only command resent after its connection broke.
    ReadonlyIo = 3,
    /// The node could not be reached; retried after a refresh.
    Unreachable = 4,
    /// A write answered `-READONLY` by a demoted primary; retried after a refresh.
    ReadOnly = 5,
}

const RETRY_LABELS: [&str; 6] = [
    "tryagain",
    "clusterdown",
    "loading",
    "readonly_io",
    "unreachable",
    "readonly",
];

/// Why the slot map was reloaded (`slotgate_topology_refreshes_total{trigger}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshTrigger {
    /// `refresh_interval` passed.
    Periodic = 0,
    /// A node answered `-MOVED`.
    Moved = 1,
    /// An upstream failure (unreachable node, broken connection, `-CLUSTERDOWN`).
    Error = 2,
    /// An operator asked (SIGHUP).
    Manual = 3,
}

const TRIGGER_LABELS: [&str; 4] = ["periodic", "moved", "error", "manual"];

/// Outcome of one refresh (`slotgate_topology_refreshes_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshResult {
    /// A map was loaded and swapped in.
    Ok = 0,
    /// No node gave a usable map.
    Error = 1,
    /// A map was loaded but not swapped in (it would uncover slots whose owners answer).
    Rejected = 2,
}

const REFRESH_RESULT_LABELS: [&str; 3] = ["ok", "error", "rejected"];

/// The process-wide registry and the shared instruments.
pub struct Metrics {
    /// Per-request instruments are counted (`admin.metrics`).
    pub(crate) enabled: bool,
    registry: Registry,
    pub(crate) client_connections: IntGauge,
    pub(crate) client_connections_limit: IntGauge,
    pub(crate) connections_accepted: IntCounter,
    pub(crate) connections_rejected_limit: IntCounter,
    connections_tls_error: IntCounter,
    client_closes: IntCounterVec,
    pub(crate) buffered_bytes: IntGauge,
    pub(crate) buffered_bytes_limit: IntGauge,
    buffers_full: IntCounter,
    auth_failures: IntCounterVec,
    pub(crate) commands: IntCounterVec,
    pub(crate) command_duration: LatencyVec,
    pub(crate) upstream_requests: IntCounterVec,
    upstream_errors: IntCounterVec,
    upstream_connections: IntGaugeVec,
    pub(crate) upstream_duration: LatencyVec,
    redirects_moved: IntCounter,
    redirects_ask: IntCounter,
    retries: Vec<IntCounter>,
    refreshes: IntCounterVec,
    pub(crate) slots_covered: IntGauge,
    pub(crate) topology_nodes: IntGaugeVec,
    pub(crate) last_refresh: Gauge,
    pub(crate) ready: IntGauge,
    failovers: IntCounterVec,
    sentinel_primary: IntGaugeVec,
    pub(crate) sentinels_reachable: IntGauge,
    commands_table: IntGaugeVec,
    tracking_keys: IntGauge,
    invalidations: IntCounterVec,
    pub(crate) cache_requests: IntCounterVec,
    cache_bytes: IntGauge,
    process: ProcessMetrics,
    /// Per upstream connection: when its oldest unanswered request was written
    /// ([`mono_ms`](crate::telemetry::clock::mono_ms); 0: none), for readiness.
    pending: Mutex<Vec<(NodeAddr, std::sync::Weak<AtomicU64>)>>,
    flush: watch::Sender<u64>,
    acks: Mutex<Vec<Arc<AtomicU64>>>,
}

impl Metrics {
    /// A registry with every slotgate instrument. With `enabled` false the per-command and
    /// per-request instruments are not updated (the benchmark's "metrics off" baseline);
    /// connection, topology and process figures still are.
    pub fn new(enabled: bool) -> Metrics {
        let r = Registry::new();
        let connections_total = counter_vec(
            &r,
            "slotgate_client_connections_total",
            "Client connections by outcome of the accept.",
            &["result"],
        );
        let redirects = counter_vec(
            &r,
            "slotgate_redirects_total",
            "MOVED and ASK redirects followed.",
            &["kind"],
        );
        let retries = counter_vec(
            &r,
            "slotgate_retries_total",
            "Commands sent again after a retryable failure.",
            &["reason"],
        );
        let build_info = gauge_vec(
            &r,
            "slotgate_build_info",
            "Always 1; the version label says which slotgate runs.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let last_refresh = Gauge::new(
            "slotgate_topology_last_refresh_timestamp_seconds",
            "Unix time of the last successful slot map refresh (0: never).",
        )
        .expect("valid metric");
        r.register(Box::new(last_refresh.clone()))
            .expect("unique metric");
        r.register(Box::new(crate::telemetry::panics::PANICS.clone()))
            .expect("unique metric");
        let (flush, _) = watch::channel(0);
        Metrics {
            enabled,
            client_connections: int_gauge(
                &r,
                "slotgate_client_connections",
                "Client connections open now.",
            ),
            client_connections_limit: int_gauge(
                &r,
                "slotgate_client_connections_limit",
                "limits.max_clients: connections beyond it are refused.",
            ),
            connections_accepted: connections_total.with_label_values(&["accepted"]),
            connections_rejected_limit: connections_total.with_label_values(&["rejected_limit"]),
            connections_tls_error: connections_total.with_label_values(&["tls_error"]),
            client_closes: {
                let v = counter_vec(
                    &r,
                    "slotgate_client_closes_total",
                    "Clients slotgate disconnected because they did not read their replies.",
                    &["reason"],
                );
                for reason in ["output_limit", "output_soft_limit", "pubsub_backlog"] {
                    v.with_label_values(&[reason]);
                }
                v
            },
            buffered_bytes: int_gauge(
                &r,
                "slotgate_buffered_bytes",
                "Bytes of replies and requests slotgate holds for clients now.",
            ),
            buffered_bytes_limit: int_gauge(
                &r,
                "slotgate_buffered_bytes_limit",
                "limits.max_buffered: past it new commands get -OOM.",
            ),
            buffers_full: int_counter(
                &r,
                "slotgate_buffers_full_refusals_total",
                "Commands refused with -OOM because limits.max_buffered was reached.",
            ),
            auth_failures: {
                let v = counter_vec(
                    &r,
                    "slotgate_auth_failures_total",
                    "Failed client authentications and permission refusals.",
                    &["reason"],
                );
                for reason in ["wrongpass", "noauth", "noperm"] {
                    v.with_label_values(&[reason]);
                }
                v
            },
            commands: counter_vec(
                &r,
                "slotgate_commands_total",
                "Client commands answered, by command and result.",
                &["command", "result"],
            ),
            command_duration: latency_vec(
                &r,
                "slotgate_command_duration_seconds",
                "Time from reading a command to having its reply ready, in the proxy.",
                "command",
            ),
            upstream_requests: counter_vec(
                &r,
                "slotgate_upstream_requests_total",
                "Requests written to each cluster node.",
                &["node"],
            ),
            upstream_errors: counter_vec(
                &r,
                "slotgate_upstream_errors_total",
                "Failures talking to each cluster node.",
                &["node", "kind"],
            ),
            upstream_connections: gauge_vec(
                &r,
                "slotgate_upstream_connections",
                "Established connections to each cluster node.",
                &["node", "kind"],
            ),
            upstream_duration: latency_vec(
                &r,
                "slotgate_upstream_duration_seconds",
                "Time from writing a request to a node to reading its reply.",
                "node",
            ),
            redirects_moved: redirects.with_label_values(&["moved"]),
            redirects_ask: redirects.with_label_values(&["ask"]),
            retries: RETRY_LABELS
                .iter()
                .map(|l| retries.with_label_values(&[l]))
                .collect(),
            refreshes: {
                let v = counter_vec(
                    &r,
                    "slotgate_topology_refreshes_total",
                    "Slot map refreshes by trigger and result.",
                    &["trigger", "result"],
                );
                for trigger in TRIGGER_LABELS {
                    for result in REFRESH_RESULT_LABELS {
                        v.with_label_values(&[trigger, result]);
                    }
                }
                v
            },
            slots_covered: int_gauge(
                &r,
                "slotgate_topology_slots_covered",
                "Slots with a primary in the current map (16384 when healthy).",
            ),
            topology_nodes: gauge_vec(
                &r,
                "slotgate_topology_nodes",
                "Nodes in the current slot map by role.",
                &["role"],
            ),
            last_refresh,
            ready: int_gauge(
                &r,
                "slotgate_ready",
                "1 when /readyz answers 200: all slots covered, every primary connected.",
            ),
            failovers: {
                let v = counter_vec(
                    &r,
                    "slotgate_failovers_total",
                    "New primaries taken into use (a replica promoted), by upstream mode.",
                    &["mode"],
                );
                for mode in ["cluster", "standalone", "sentinel"] {
                    v.with_label_values(&[mode]);
                }
                v
            },
            sentinel_primary: gauge_vec(
                &r,
                "slotgate_sentinel_primary",
                "1 for the primary the sentinels named and its ROLE confirmed (sentinel mode).",
                &["address"],
            ),
            sentinels_reachable: int_gauge(
                &r,
                "slotgate_sentinels_reachable",
                "Sentinels whose event subscription is connected now (sentinel mode).",
            ),
            commands_table: {
                let v = gauge_vec(
                    &r,
                    "slotgate_commands_table_size",
                    "Commands and subcommands slotgate routes: its built-in table (static) and \
                     those learned from the servers (learned).",
                    &["source"],
                );
                v.with_label_values(&["static"]).set(COMMAND_COUNT as i64);
                v.with_label_values(&["learned"]).set(0);
                v
            },
            tracking_keys: int_gauge(
                &r,
                "slotgate_tracking_keys",
                "Keys clients with CLIENT TRACKING read and will be told about when they change.",
            ),
            invalidations: {
                let v = counter_vec(
                    &r,
                    "slotgate_invalidations_total",
                    "Invalidations sent to tracking clients (a message listing keys, or a flush) \
                     and keys dropped from the read cache, by what caused them.",
                    &["source"],
                );
                for source in Invalidation::ALL {
                    v.with_label_values(&[source.label()]);
                }
                v
            },
            cache_requests: {
                let v = counter_vec(
                    &r,
                    "slotgate_cache_requests_total",
                    "Cacheable reads by how the read cache took them: answered from it (hit), \
                     sent to the node to fill it (miss), sent without filling (bypass).",
                    &["result"],
                );
                for result in CACHE_RESULT_LABELS {
                    v.with_label_values(&[result]);
                }
                v
            },
            cache_bytes: int_gauge(
                &r,
                "slotgate_cache_bytes",
                "Bytes the read cache holds, all workers together (keys, requests, replies and \
                 bookkeeping).",
            ),
            process: ProcessMetrics::register(&r),
            pending: Mutex::new(Vec::new()),
            registry: r,
            flush,
            acks: Mutex::new(Vec::new()),
        }
    }

    /// Whether per-command instruments are updated.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Count a client whose TLS handshake failed.
    pub fn tls_error(&self) {
        self.connections_tls_error.inc();
    }

    /// Count a client closed for not reading (`reason`: `output_limit`,
    /// `output_soft_limit` or `pubsub_backlog`).
    pub fn client_closed(&self, reason: &'static str) {
        self.client_closes.with_label_values(&[reason]).inc();
    }

    /// Count a command refused because the process's buffers are full.
    pub fn buffers_full(&self) {
        self.buffers_full.inc();
    }

    /// Count a failed authentication or a permission refusal (`reason`: a short fixed word).
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    pub(crate) fn redirect(&self, ask: bool) {
        if ask {
            self.redirects_ask.inc()
        } else {
            self.redirects_moved.inc()
        }
    }

    pub(crate) fn retry(&self, reason: Retry) {
        self.retries[reason as usize].inc();
    }

    /// `slotgate_upstream_errors_total` of `node`, every kind at zero.
    pub(crate) fn init_node_errors(&self, node: &NodeAddr) {
        for kind in [
            UpstreamError::Connect,
            UpstreamError::Io,
            UpstreamError::Timeout,
            UpstreamError::Protocol,
        ] {
            self.upstream_errors
                .with_label_values(&[node.as_str(), kind.label()]);
        }
    }

    pub(crate) fn upstream_error(&self, node: &NodeAddr, kind: UpstreamError) {
        self.upstream_errors
            .with_label_values(&[node.as_str(), kind.label()])
            .inc();
    }

    /// One more (`delta` 1) or one fewer (`delta` -1) live connection to `node`.
    pub(crate) fn upstream_connection(&self, node: &NodeAddr, delta: i64) {
        self.upstream_connections
            .with_label_values(&[node.as_str(), "multiplexed"])
            .add(delta);
    }

    /// One more (`delta` 1) or one fewer (`delta` -1) dedicated connection to `node`.
    pub(crate) fn dedicated_connection(&self, node: &NodeAddr, delta: i64) {
        self.upstream_connections
            .with_label_values(&[node.as_str(), "dedicated"])
            .add(delta);
    }

    /// A new upstream connection's "oldest unanswered request" slot (see [`mono_ms`](crate::telemetry::clock::mono_ms)).
    pub(crate) fn pending_slot(&self, node: &NodeAddr) -> Arc<AtomicU64> {
        let slot = Arc::new(AtomicU64::new(0));
        if let Ok(mut all) = self.pending.lock() {
            all.retain(|(_, w)| w.strong_count() > 0);
            all.push((node.clone(), Arc::downgrade(&slot)));
        }
        slot
    }

    /// Whether some connection to `node` has had a request unanswered for `longer` (the
    /// node is stalled or cut off without its connections closing).
    pub(crate) fn node_stalled(&self, node: &NodeAddr, longer: Duration) -> bool {
        let now = crate::telemetry::clock::mono_ms(std::time::Instant::now());
        let limit = longer.as_millis() as u64;
        self.pending.lock().is_ok_and(|all| {
            all.iter().filter(|(n, _)| n == node).any(|(_, w)| {
                w.upgrade().is_some_and(|slot| {
                    let since = slot.load(Ordering::Relaxed);
                    since != 0 && now.saturating_sub(since) > limit
                })
            })
        })
    }

    /// Live multiplexed connections to `node`, across workers.
    pub(crate) fn live_connections(&self, node: &NodeAddr) -> i64 {
        self.upstream_connections
            .get_metric_with_label_values(&[node.as_str(), "multiplexed"])
            .map(|g| g.get())
            .unwrap_or(0)
    }

    /// Count a new primary taken into use in `mode` (`cluster`, `standalone`, `sentinel`).
    pub(crate) fn failover(&self, mode: &'static str) {
        self.failovers.with_label_values(&[mode]).inc();
    }

    /// The verified primary of sentinel mode (`None`: none at the moment).
    pub(crate) fn sentinel_primary(&self, address: Option<&NodeAddr>) {
        self.sentinel_primary.reset();
        if let Some(a) = address {
            self.sentinel_primary
                .with_label_values(&[a.as_str()])
                .set(1);
        }
    }

    /// Keys tracked for clients grew (or shrank) by `delta`.
    pub(crate) fn tracking_keys(&self, delta: i64) {
        self.tracking_keys.add(delta);
    }

    /// The read cache grew (or shrank) by `delta` bytes.
    pub(crate) fn cache_bytes(&self, delta: i64) {
        self.cache_bytes.add(delta);
    }

    /// `n` invalidations of the read cache's keys.
    pub(crate) fn invalidations(&self, source: Invalidation, n: u64) {
        if n > 0 {
            self.invalidations
                .with_label_values(&[source.label()])
                .inc_by(n);
        }
    }

    /// One invalidation sent to a client.
    pub(crate) fn invalidation(&self, source: Invalidation) {
        self.invalidations
            .with_label_values(&[source.label()])
            .inc();
    }

    /// How many commands were learned from the servers.
    pub(crate) fn commands_learned(&self, n: usize) {
        self.commands_table
            .with_label_values(&["learned"])
            .set(n as i64);
    }

    /// Count one refresh.
    pub fn refresh(&self, trigger: RefreshTrigger, result: RefreshResult) {
        self.refreshes
            .with_label_values(&[
                TRIGGER_LABELS[trigger as usize],
                REFRESH_RESULT_LABELS[result as usize],
            ])
            .inc();
    }

    /// A new worker's flush channel: the worker flushes whenever the value changes and
    /// stores the value it flushed for into the returned counter.
    pub(crate) fn register_worker(&self) -> (watch::Receiver<u64>, Arc<AtomicU64>) {
        let ack = Arc::new(AtomicU64::new(0));
        if let Ok(mut acks) = self.acks.lock() {
            acks.push(Arc::clone(&ack));
        }
        (self.flush.subscribe(), ack)
    }

    /// Ask every worker to flush and wait (at most [`FLUSH_WAIT`]) until they did.
    pub(crate) async fn flush_workers(&self) {
        let mut target = 0;
        self.flush.send_modify(|epoch| {
            *epoch += 1;
            target = *epoch;
        });
        let acks: Vec<Arc<AtomicU64>> = self.acks.lock().map(|a| a.clone()).unwrap_or_default();
        let give_up = tokio::time::Instant::now() + FLUSH_WAIT;
        while acks.iter().any(|a| a.load(Ordering::Acquire) < target)
            && tokio::time::Instant::now() < give_up
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The registry in Prometheus text format (call [`Metrics::flush_workers`] first).
    pub(crate) fn encode(&self) -> String {
        self.process.update();
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}
