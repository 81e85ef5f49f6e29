//! The slot map: which shard (primary + replicas) owns each of the 16384 slots. A map is an
//! immutable snapshot; a change (refresh, MOVED) builds a new one that is swapped in whole.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use slotgate_resp::value::Value;

use crate::{ClusterError, SLOT_COUNT};

/// Shard index stored for a slot no shard owns.
pub const UNCOVERED: u16 = u16::MAX;
/// Slots per entry of the block index.
const BLOCK_SLOTS: usize = 64;
/// Block index entry for a block whose slots do not all have the same owner.
const MIXED: u16 = u16::MAX - 1;

/// A node's address as `host:port` (`[v6]:port` for IPv6), cheap to clone and compare.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr(Arc<str>);

impl NodeAddr {
    /// Wrap an address string.
    pub fn new(addr: &str) -> NodeAddr {
        NodeAddr(Arc::from(addr))
    }

    /// Build `host:port`, bracketing IPv6 literals.
    pub fn from_host_port(host: &str, port: u16) -> NodeAddr {
        if host.contains(':') && !host.starts_with('[') {
            NodeAddr::new(&format!("[{host}]:{port}"))
        } else {
            NodeAddr::new(&format!("{host}:{port}"))
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host part (without brackets for IPv6).
    pub fn host(&self) -> &str {
        let host = self.0.rsplit_once(':').map(|(h, _)| h).unwrap_or(&self.0);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl fmt::Debug for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One primary and its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The primary that serves reads and writes.
    pub primary: NodeAddr,
    /// The primary's node id, when the reply carried one.
    pub primary_id: Option<String>,
    /// Replicas in the order Redis listed them.
    pub replicas: Vec<NodeAddr>,
    /// The replicas reads may go to (up and not too far behind); empty unless the proxy
    /// reads from replicas ([`SlotMap::set_readable`]).
    pub readable: Vec<NodeAddr>,
}

/// An immutable slot → shard table.
///
/// Invariant: every entry of `slots` is either [`UNCOVERED`] or a valid index into `shards`,
/// and shards are unique by primary address. Every map built or patched gets a new
/// [`SlotMap::id`], so caches keyed by it (per-shard connection tables) never go stale.
///
/// Lookups go through `blocks`, one entry per 64 slots: the owner shared by the whole block,
/// or [`MIXED`] to read `slots`. It is 512 bytes and stays in the L1 cache; the 32 KiB table
/// does not under load (a random key's slot was a cache miss on most requests). Ranges
/// rarely split a block, so lookups almost never touch `slots`.
#[derive(Clone)]
pub struct SlotMap {
    id: u64,
    slots: Box<[u16]>,
    blocks: Box<[u16]>,
    shards: Vec<Shard>,
}

impl PartialEq for SlotMap {
    fn eq(&self, other: &SlotMap) -> bool {
        self.slots == other.slots && self.shards == other.shards
    }
}

impl Eq for SlotMap {}

fn next_map_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotMap")
            .field("covered", &self.covered())
            .field("shards", &self.shards)
            .finish()
    }
}

impl Default for SlotMap {
    fn default() -> Self {
        SlotMap::empty()
    }
}

impl SlotMap {
    /// A map that covers no slot.
    pub fn empty() -> SlotMap {
        SlotMap {
            id: next_map_id(),
            slots: vec![UNCOVERED; SLOT_COUNT].into_boxed_slice(),
            blocks: vec![UNCOVERED; SLOT_COUNT / BLOCK_SLOTS].into_boxed_slice(),
            shards: Vec::new(),
        }
    }

    /// Recompute the block index entry of `block` from `slots`.
    fn index_block(&mut self, block: usize) {
        let slots = &self.slots[block * BLOCK_SLOTS..(block + 1) * BLOCK_SLOTS];
        let first = slots[0];
        self.blocks[block] = if slots.iter().all(|&s| s == first) {
            first
        } else {
            MIXED
        };
    }

    /// Unique per map value in this process: two maps with the same id are the same snapshot.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Build a map from a `CLUSTER SLOTS` reply. `asked` is the address of the node that
    /// answered; an empty endpoint in the reply means that node's host.
    ///
    /// # Errors
    /// [`ClusterError`] when the reply is an error or does not have the documented shape.
    pub fn from_cluster_slots(reply: &Value, asked: &str) -> Result<SlotMap, ClusterError> {
        let entries = match reply {
            Value::Array(items) => items,
            Value::Error(e) => {
                return Err(ClusterError::NodeError(
                    String::from_utf8_lossy(e).into_owned(),
                ))
            }
            _ => return Err(ClusterError::MalformedSlots("reply is not an array")),
        };
        let asked_host = NodeAddr::new(asked).host().to_string();
        let mut map = SlotMap::empty();
        for entry in entries {
            let Value::Array(fields) = entry else {
                return Err(ClusterError::MalformedSlots("slot range is not an array"));
            };
            if fields.len() < 3 {
                return Err(ClusterError::MalformedSlots(
                    "slot range has fewer than 3 fields",
                ));
            }
            let start = slot_number(&fields[0])?;
            let end = slot_number(&fields[1])?;
            if start > end {
                return Err(ClusterError::MalformedSlots("slot range start after end"));
            }
            // A primary with an unknown endpoint ('?') leaves its slots uncovered.
            let Some((primary, primary_id)) = parse_node(&fields[2], &asked_host)? else {
                continue;
            };
            let mut replicas = Vec::new();
            for node in &fields[3..] {
                if let Some((addr, _)) = parse_node(node, &asked_host)? {
                    replicas.push(addr);
                }
            }
            let index = map.shard_index_for(primary, primary_id, replicas);
            map.slots[start as usize..=end as usize].fill(index);
        }
        for block in 0..map.blocks.len() {
            map.index_block(block);
        }
        Ok(map)
    }

    /// A map where one primary (with `replicas`) owns every slot: a standalone server or a
    /// Sentinel-managed primary, seen through the same routing as a cluster.
    pub fn single(primary: NodeAddr, replicas: Vec<NodeAddr>) -> SlotMap {
        let mut map = SlotMap::empty();
        let index = map.shard_index_for(primary, None, replicas);
        map.slots.fill(index);
        map.blocks.fill(index);
        map
    }

    /// Say which replicas of each shard reads may go to: `readable(shard)` picks them (a
    /// subset of the shard's replicas).
    pub fn set_readable(&mut self, mut readable: impl FnMut(&Shard) -> Vec<NodeAddr>) {
        for shard in &mut self.shards {
            shard.readable = readable(shard);
        }
    }

    /// Index of the shard whose primary is `primary`, adding it when new.
    fn shard_index_for(
        &mut self,
        primary: NodeAddr,
        primary_id: Option<String>,
        replicas: Vec<NodeAddr>,
    ) -> u16 {
        // Below both markers: a map has at most one shard per slot-owning primary, plus the
        // primaries MOVED replies named.
        debug_assert!(self.shards.len() < usize::from(MIXED));
        if let Some(i) = self.shards.iter().position(|s| s.primary == primary) {
            let shard = &mut self.shards[i];
            for r in replicas {
                if !shard.replicas.contains(&r) {
                    shard.replicas.push(r);
                }
            }
            return i as u16;
        }
        self.shards.push(Shard {
            primary,
            primary_id,
            replicas,
            readable: Vec::new(),
        });
        (self.shards.len() - 1) as u16
    }

    /// The shard index owning `slot`, or `None` if the slot is uncovered.
    #[inline]
    pub fn shard_index(&self, slot: u16) -> Option<usize> {
        let block = *self.blocks.get(slot as usize / BLOCK_SLOTS)?;
        let index = if block == MIXED {
            self.slots[slot as usize]
        } else {
            block
        };
        (index != UNCOVERED).then_some(index as usize)
    }

    /// The shard owning `slot`.
    #[inline]
    pub fn shard_for_slot(&self, slot: u16) -> Option<&Shard> {
        self.shard_index(slot).map(|i| &self.shards[i])
    }

    /// The primary serving `slot`.
    #[inline]
    pub fn primary_for_slot(&self, slot: u16) -> Option<&NodeAddr> {
        self.shard_for_slot(slot).map(|s| &s.primary)
    }

    /// All shards, including ones that currently own no slot.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Shards that own at least one slot.
    pub fn serving_shards(&self) -> Vec<&Shard> {
        let mut used = vec![false; self.shards.len()];
        for &s in self.slots.iter() {
            if s != UNCOVERED {
                used[s as usize] = true;
            }
        }
        self.shards
            .iter()
            .zip(used)
            .filter(|(_, u)| *u)
            .map(|(s, _)| s)
            .collect()
    }

    /// How many slots have an owner (16384 when healthy).
    pub fn covered(&self) -> usize {
        self.slots.iter().filter(|&&s| s != UNCOVERED).count()
    }

    /// Contiguous slot ranges per shard index: `(start, end, shard_index)`.
    pub fn ranges(&self) -> Vec<(u16, u16, usize)> {
        let mut out: Vec<(u16, u16, usize)> = Vec::new();
        for (slot, &s) in self.slots.iter().enumerate() {
            if s == UNCOVERED {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.2 == s as usize && last.1 as usize + 1 == slot => {
                    last.1 = slot as u16
                }
                _ => out.push((slot as u16, slot as u16, s as usize)),
            }
        }
        out
    }

    /// A new map equal to this one except that `slot` is owned by the primary at `addr`
    /// (what a `-MOVED` says). Returns `None` when the map already says so.
    pub fn with_moved(&self, slot: u16, addr: &str) -> Option<SlotMap> {
        if self
            .primary_for_slot(slot)
            .is_some_and(|p| p.as_str() == addr)
        {
            return None;
        }
        let mut next = self.clone();
        next.id = next_map_id();
        let index = next.shard_index_for(NodeAddr::new(addr), None, Vec::new());
        next.slots[slot as usize] = index;
        next.index_block(slot as usize / BLOCK_SLOTS);
        Some(next)
    }

    /// True when both maps give every slot the same primary.
    pub fn same_assignment(&self, other: &SlotMap) -> bool {
        self.slots
            .iter()
            .zip(other.slots.iter())
            .all(|(&a, &b)| match (a, b) {
                (UNCOVERED, UNCOVERED) => true,
                (UNCOVERED, _) | (_, UNCOVERED) => false,
                (a, b) => self.shards[a as usize].primary == other.shards[b as usize].primary,
            })
    }

    /// Every node address the map knows (primaries first, then replicas), without duplicates.
    pub fn all_nodes(&self) -> Vec<NodeAddr> {
        let mut out: Vec<NodeAddr> = self.shards.iter().map(|s| s.primary.clone()).collect();
        for s in &self.shards {
            for r in &s.replicas {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
        out
    }
}

fn slot_number(v: &Value) -> Result<u16, ClusterError> {
    match v {
        Value::Integer(n) if (0..SLOT_COUNT as i64).contains(n) => Ok(*n as u16),
        _ => Err(ClusterError::MalformedSlots(
            "slot number is not an integer in 0..16384",
        )),
    }
}

/// Parse `[endpoint, port, id?, metadata?]`; `Ok(None)` for an unknown (`?`) endpoint.
fn parse_node(
    v: &Value,
    asked_host: &str,
) -> Result<Option<(NodeAddr, Option<String>)>, ClusterError> {
    let Value::Array(f) = v else {
        return Err(ClusterError::MalformedSlots("node entry is not an array"));
    };
    if f.len() < 2 {
        return Err(ClusterError::MalformedSlots(
            "node entry has fewer than 2 fields",
        ));
    }
    let host = match &f[0] {
        Value::Bulk(b) | Value::Simple(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Null => String::new(),
        _ => {
            return Err(ClusterError::MalformedSlots(
                "node endpoint is not a string",
            ))
        }
    };
    let port = match &f[1] {
        Value::Integer(p) if (1..=65535).contains(p) => *p as u16,
        _ => {
            return Err(ClusterError::MalformedSlots(
                "node port is not an integer in 1..65536",
            ))
        }
    };
    if host == "?" {
        return Ok(None);
    }
    let host = if host.is_empty() {
        asked_host
    } else {
        host.as_str()
    };
    let id = match f.get(2) {
        Some(Value::Bulk(b)) | Some(Value::Simple(b)) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    };
    Ok(Some((NodeAddr::from_host_port(host, port), id)))
}

#[cfg(test)]
mod tests;
