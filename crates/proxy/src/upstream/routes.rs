//! Which multiplexed connection serves a request: a worker's connections to every node, one
//! set per protocol (RESP2, and RESP3 for clients that said `HELLO 3`), and the lookup from a
//! hash slot, a node address or "any primary" to the connection. Both protocols take the
//! same path.
//!
//! Routing by slot costs one atomic load and two array lookups: the worker keeps its copy of
//! the slot map (refreshed when the topology's generation moves) and, per protocol, the
//! upstream of each shard index of that map.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use slotgate_cluster::{NodeAddr, SlotMap, SLOT_COUNT};

use bytes::Bytes;

use crate::config::{ReadFrom, UpstreamConfig};
use crate::protocol::Protocol;
use crate::replies;
use crate::telemetry::local::WorkerMetrics;
use crate::upstream::conn::{Upstream, UpstreamSet};
use crate::upstream::topology::Topology;

/// A worker's multiplexed connections and the slot → connection lookup.
pub(crate) struct Routes {
    topology: Arc<Topology>,
    resp2: UpstreamSet,
    resp3: UpstreamSet,
    by_shard: RefCell<ShardUpstreams>,
    any_cursor: Cell<usize>,
    /// `upstream.read_from`.
    read_from: ReadFrom,
    /// Rotates reads over a shard's readable replicas.
    read_cursor: Cell<usize>,
}

/// The worker's copy of the current slot map and, per protocol, the upstream for each shard
/// index of that map (filled on first use).
struct ShardUpstreams {
    generation: u64,
    map: Arc<SlotMap>,
    resp2: Vec<Option<Rc<Upstream>>>,
    resp3: Vec<Option<Rc<Upstream>>>,
}

// === impl Routes ===

impl Routes {
    /// No connections yet: they open as the slot map names primaries, or on first use.
    pub fn new(
        cfg: &UpstreamConfig,
        topology: Arc<Topology>,
        metrics: &Rc<WorkerMetrics>,
    ) -> Routes {
        let set = |proto| {
            UpstreamSet::new(
                Arc::new(cfg.clone()),
                Arc::clone(&topology),
                Rc::clone(metrics),
                proto,
            )
        };
        Routes {
            resp2: set(Protocol::Resp2),
            resp3: set(Protocol::Resp3),
            topology,
            by_shard: RefCell::new(ShardUpstreams::new()),
            any_cursor: Cell::new(0),
            read_from: cfg.read_from,
            read_cursor: Cell::new(0),
        }
    }

    /// The connections for clients speaking `proto`.
    pub fn set(&self, proto: Protocol) -> &UpstreamSet {
        match proto {
            Protocol::Resp2 => &self.resp2,
            Protocol::Resp3 => &self.resp3,
        }
    }

    /// The connection to `node` for `proto`.
    pub fn for_node(&self, proto: Protocol, node: &NodeAddr) -> Rc<Upstream> {
        self.set(proto).get(node)
    }

    /// The connection to the primary serving `slot` in the current map, or `None` when the
    /// slot is uncovered.
    pub fn for_slot(&self, proto: Protocol, slot: u16) -> Option<Rc<Upstream>> {
        let generation = self.topology.generation();
        let mut cache = self.by_shard.borrow_mut();
        if cache.generation != generation {
            // Generation first, map second: the map is at least that new.
            let map = self.topology.map_arc();
            if map.id() != cache.map.id() {
                cache.reset(map.shards().len());
            }
            cache.map = map;
            cache.generation = generation;
        }
        let cache = &mut *cache;
        let shard = cache.map.shard_index(slot)?;
        let upstreams = match proto {
            Protocol::Resp2 => &mut cache.resp2,
            Protocol::Resp3 => &mut cache.resp3,
        };
        Some(Rc::clone(upstreams[shard].get_or_insert_with(|| {
            self.set(proto).get(&cache.map.shards()[shard].primary)
        })))
    }

    /// The connection a read-only command for `slot` goes to under `upstream.read_from`: the
    /// primary (`primary`); a replica that may be read from, rotating, else the primary
    /// (`prefer-replica`); a replica only (`replica`: the error to retry with when there is
    /// none).
    pub fn for_slot_read(&self, proto: Protocol, slot: u16) -> Result<Rc<Upstream>, Bytes> {
        let read_from = self.read_from;
        if read_from != ReadFrom::Primary {
            let map = self.topology.map();
            let readable = map
                .shard_for_slot(slot)
                .map(|s| &s.readable[..])
                .unwrap_or(&[]);
            if !readable.is_empty() {
                let i = self.read_cursor.get();
                self.read_cursor.set(i.wrapping_add(1));
                return Ok(self.set(proto).get(&readable[i % readable.len()]));
            }
            if read_from == ReadFrom::Replica {
                return Err(replies::no_replica(slot));
            }
        }
        self.for_slot(proto, slot)
            .ok_or_else(|| Bytes::from_static(replies::CLUSTERDOWN_UNCOVERED))
    }

    /// Whether `node` is a primary in the current map.
    pub fn is_primary(&self, node: &NodeAddr) -> bool {
        self.topology
            .map()
            .shards()
            .iter()
            .any(|s| s.primary == *node)
    }

    /// A connection to a primary for a keyless command, rotating over the slot space so
    /// keyless load spreads over shards.
    pub fn any(&self, proto: Protocol) -> Option<Rc<Upstream>> {
        self.any_primary().map(|node| self.set(proto).get(&node))
    }

    /// A primary for a keyless command (see [`Routes::any`]).
    pub fn any_primary(&self) -> Option<NodeAddr> {
        let map = self.topology.map();
        let start = self.any_cursor.get();
        self.any_cursor.set(start.wrapping_add(1));
        // Probe slots spread over the space; the first covered one decides.
        (0..16)
            .map(|i| ((start.wrapping_mul(5_471) + i * 1_031) % SLOT_COUNT) as u16)
            .find_map(|slot| map.primary_for_slot(slot).cloned())
    }

    /// The primaries that serve slots in the current map (an all-shard fan-out's targets).
    pub fn serving_primaries(&self) -> Vec<NodeAddr> {
        let map = self.topology.map();
        map.serving_shards()
            .iter()
            .map(|s| s.primary.clone())
            .collect()
    }

    /// Follow a new slot map: close connections to nodes that left it, forget the cached
    /// lookups, and connect (RESP2) to every primary it names, so the first command finds a
    /// warm connection and `/readyz` can tell a primary is reachable.
    pub fn follow_map(&self) {
        let map = self.topology.map();
        let nodes = map.all_nodes();
        self.resp2.retain_known(&nodes);
        self.resp3.retain_known(&nodes);
        self.by_shard.borrow_mut().invalidate();
        for shard in map.serving_shards() {
            self.resp2.get(&shard.primary);
        }
    }
}

// === impl ShardUpstreams ===

impl ShardUpstreams {
    /// Nothing cached yet: the first lookup loads the map.
    fn new() -> ShardUpstreams {
        ShardUpstreams {
            generation: u64::MAX,
            map: Arc::new(SlotMap::empty()),
            resp2: Vec::new(),
            resp3: Vec::new(),
        }
    }

    /// Empty lookups for a map with `shards` shards.
    fn reset(&mut self, shards: usize) {
        for v in [&mut self.resp2, &mut self.resp3] {
            v.clear();
            v.resize(shards, None);
        }
    }

    /// Forget the cached upstreams (the worker dropped some) and reload the map next time.
    fn invalidate(&mut self) {
        self.generation = u64::MAX;
        let shards = self.map.shards().len();
        self.reset(shards);
    }
}
