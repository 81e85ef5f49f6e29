//! What the admin port shows: the metrics text, readiness and the topology report. The
//! binary's HTTP server calls these; they only read shared state and never touch a worker's
//! data path (a scrape asks workers to flush and waits at most a quarter second).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use slotgate_cluster::SLOT_COUNT;
use tokio::sync::watch;

use crate::runtime::context::Shared;
use crate::telemetry::metrics::Metrics;
use crate::upstream::topology::Topology;

/// The admin view of a running proxy. Cheap to share (`Arc`) across threads.
pub struct Status {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) topology: Arc<Topology>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) max_clients: usize,
    /// A primary with a request unanswered for longer than this is not ready.
    pub(crate) op_timeout: std::time::Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// `/topology`: the slot map as slotgate routes by it.
#[derive(Debug, Serialize)]
pub struct TopologyReport {
    /// `upstream.mode`: `cluster`, `standalone` or `sentinel`.
    pub mode: &'static str,
    /// Sentinels whose event subscription is up (sentinel mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinels_reachable: Option<usize>,
    /// Slots with a primary (16384 when healthy).
    pub slots_covered: usize,
    /// Seconds since the map was last loaded from the cluster (`null`: never).
    pub map_age_seconds: Option<f64>,
    /// Successful refreshes since start.
    pub refreshes: u64,
    /// One entry per primary in the map.
    pub shards: Vec<ShardReport>,
}

/// One shard of [`TopologyReport`].
#[derive(Debug, Serialize)]
pub struct ShardReport {
    /// Inclusive slot ranges `[first, last]` this shard serves.
    pub slots: Vec<[u16; 2]>,
    /// The primary.
    pub primary: NodeReport,
    /// Its replicas (slotgate does not connect to them while `read_from` is `primary`).
    pub replicas: Vec<NodeReport>,
    /// The replicas reads go to now (`read_from` other than `primary`): up and in step.
    pub readable: Vec<String>,
}

/// One node of [`ShardReport`].
#[derive(Debug, Serialize)]
pub struct NodeReport {
    /// `host:port`.
    pub addr: String,
    /// `primary` or `replica`.
    pub role: &'static str,
    /// Live multiplexed connections from all workers.
    pub connections: i64,
    /// `connected` when at least one connection is up, else `disconnected`; a replica
    /// slotgate does not read from (`read_from: primary`) is `unused`.
    pub state: &'static str,
}

impl Status {
    /// Whether a graceful shutdown has begun.
    pub fn draining(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// `Ok` when the proxy can serve every slot; otherwise a one-line reason. Ready means:
    /// not shutting down, all 16384 slots covered, and a live connection to every primary.
    pub fn readiness(&self) -> Result<(), String> {
        if self.draining() {
            return Err("shutting down".into());
        }
        let map = self.topology.map();
        let covered = map.covered();
        if covered < SLOT_COUNT && self.topology.mode().one_primary() {
            return Err("no verified primary".into());
        }
        if covered < SLOT_COUNT {
            return Err(format!("{covered} of {SLOT_COUNT} slots covered"));
        }
        for shard in map.serving_shards() {
            if self.metrics.live_connections(&shard.primary) <= 0 {
                return Err(format!("no live connection to primary {}", shard.primary));
            }
            if self.metrics.node_stalled(&shard.primary, self.op_timeout) {
                return Err(format!(
                    "primary {} has not answered for longer than op_timeout",
                    shard.primary
                ));
            }
        }
        Ok(())
    }

    /// Every metric in Prometheus text format, after the workers flushed theirs.
    pub async fn metrics_text(&self) -> String {
        self.metrics.flush_workers().await;
        let m = &self.metrics;
        m.client_connections.set(self.shared.client_count() as i64);
        m.client_connections_limit.set(self.max_clients as i64);
        m.buffered_bytes.set(self.shared.buffered.used() as i64);
        m.buffered_bytes_limit
            .set(self.shared.buffered.max() as i64);
        let map = self.topology.map();
        m.slots_covered.set(map.covered() as i64);
        let shards = map.serving_shards();
        m.topology_nodes
            .with_label_values(&["primary"])
            .set(shards.len() as i64);
        m.topology_nodes
            .with_label_values(&["replica"])
            .set(shards.iter().map(|s| s.replicas.len()).sum::<usize>() as i64);
        m.last_refresh
            .set(self.topology.last_refresh_unix_ms() as f64 / 1000.0);
        m.ready.set(i64::from(self.readiness().is_ok()));
        m.encode()
    }

    /// The current slot map with connection states.
    pub fn topology(&self) -> TopologyReport {
        let map = self.topology.map();
        let ranges = map.ranges();
        let reads_replicas = self.topology.read_from() != crate::config::ReadFrom::Primary;
        let node = |addr: &slotgate_cluster::NodeAddr, role| {
            let connections = self.metrics.live_connections(addr);
            NodeReport {
                addr: addr.to_string(),
                role,
                connections,
                state: match connections {
                    0 if role == "replica" && !reads_replicas => "unused",
                    0 => "disconnected",
                    _ => "connected",
                },
            }
        };
        let shards = map
            .shards()
            .iter()
            .enumerate()
            .map(|(i, s)| ShardReport {
                slots: ranges
                    .iter()
                    .filter(|r| r.2 == i)
                    .map(|r| [r.0, r.1])
                    .collect(),
                primary: node(&s.primary, "primary"),
                replicas: s.replicas.iter().map(|r| node(r, "replica")).collect(),
                readable: s.readable.iter().map(|r| r.to_string()).collect(),
            })
            .filter(|s| !s.slots.is_empty())
            .collect();
        let last_ms = self.topology.last_refresh_unix_ms();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mode = self.topology.mode();
        TopologyReport {
            mode: mode.name(),
            sentinels_reachable: matches!(mode, crate::config::UpstreamMode::Sentinel(_))
                .then(|| self.topology.sentinels_reachable()),
            slots_covered: map.covered(),
            map_age_seconds: (last_ms > 0).then(|| now_ms.saturating_sub(last_ms) as f64 / 1000.0),
            refreshes: self.topology.refresh_count(),
            shards,
        }
    }
}
