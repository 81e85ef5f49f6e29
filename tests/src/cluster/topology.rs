//! Reading a node's `CLUSTER NODES` view, and deciding whether a cluster has converged.

use std::collections::BTreeMap;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u32 = 16_384;

/// Slot ranges `(first, last, owner port)`, inclusive, sorted by first slot.
pub type SlotOwners = Vec<(u16, u16, u16)>;

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// 40-character node id.
    pub id: String,
    /// Client port (from `ip:port@cport[,hostname]`).
    pub port: u16,
    /// Flags such as `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`.
    pub flags: Vec<String>,
    /// The primary's id for a replica.
    pub master_id: Option<String>,
    /// Slot ranges served (inclusive), without migration markers.
    pub slots: Vec<(u16, u16)>,
    /// Whether the line carries `[slot->-id]` / `[slot-<-id]` migration markers.
    pub migrating: bool,
}

// === impl NodeEntry ===

impl NodeEntry {
    /// Whether the node is flagged as a primary.
    pub fn is_primary(&self) -> bool {
        self.has_flag("master")
    }

    /// Whether the reporting node considers this node failing or failed.
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    /// Whether this node is still being introduced or has no address.
    pub fn is_unsettled(&self) -> bool {
        self.has_flag("handshake") || self.has_flag("noaddr")
    }

    /// Whether the line describes the node that was asked.
    pub fn is_myself(&self) -> bool {
        self.has_flag("myself")
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Parses `CLUSTER NODES` output; lines that do not parse are skipped.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<NodeEntry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return None;
    }
    let address = fields[1].split(['@', ',']).next()?;
    let port = address.rsplit(':').next()?.parse().ok()?;
    let mut slots = Vec::new();
    let mut migrating = false;
    for field in &fields[8..] {
        if field.starts_with('[') {
            migrating = true;
        } else if let Some((start, end)) = field.split_once('-') {
            slots.push((start.parse().ok()?, end.parse().ok()?));
        } else {
            let slot = field.parse().ok()?;
            slots.push((slot, slot));
        }
    }
    Some(NodeEntry {
        id: fields[0].to_string(),
        port,
        flags: fields[2].split(',').map(str::to_string).collect(),
        master_id: (fields[3] != "-").then(|| fields[3].to_string()),
        slots,
        migrating,
    })
}

/// Slot ranges (inclusive, sorted by start) and the port of the primary serving each.
pub fn slot_map(entries: &[NodeEntry]) -> SlotOwners {
    let mut map: SlotOwners = entries
        .iter()
        .filter(|e| e.is_primary() && !e.has_flag("fail"))
        .flat_map(|e| e.slots.iter().map(|&(s, t)| (s, t, e.port)))
        .collect();
    map.sort_unstable();
    map
}

/// Replica port → primary port, as one node sees it.
pub fn replica_map(entries: &[NodeEntry]) -> BTreeMap<u16, u16> {
    let ports: BTreeMap<&str, u16> = entries.iter().map(|e| (e.id.as_str(), e.port)).collect();
    entries
        .iter()
        .filter_map(|e| {
            let master = ports.get(e.master_id.as_deref()?)?;
            Some((e.port, *master))
        })
        .collect()
}

/// Whether the ranges cover every slot exactly once.
pub fn covers_all_slots(map: &[(u16, u16, u16)]) -> bool {
    let mut next: u32 = 0;
    for &(start, end, _) in map {
        if u32::from(start) != next || end < start {
            return false;
        }
        next = u32::from(end) + 1;
    }
    next == SLOT_COUNT
}

/// The port serving `slot` in `map`.
pub fn port_for_slot(map: &[(u16, u16, u16)], slot: u16) -> Option<u16> {
    map.iter()
        .find(|&&(s, e, _)| s <= slot && slot <= e)
        .map(|&(_, _, port)| port)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16382 16383
";

    #[test]
    fn parses_views_and_maps() {
        let entries = parse_cluster_nodes(SAMPLE);
        assert_eq!(entries.len(), 4);
        assert!(entries[2].is_myself() && entries[2].migrating);
        let map = slot_map(&entries);
        assert!(covers_all_slots(&map));
        assert_eq!(port_for_slot(&map, 12182), Some(30003));
        assert_eq!(port_for_slot(&map, 16383), Some(30003));
        assert_eq!(replica_map(&entries).get(&30004), Some(&30001));
        assert!(!covers_all_slots(&map[1..]));
    }
}
