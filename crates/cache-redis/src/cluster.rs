//! Redis Cluster specifics: the topology as `CLUSTER NODES` reports it, per-node health, the scan
//! cursor that walks every primary, and grouping of batch keys by hash slot.
//!
//! The cluster connection of redis-rs routes single-key commands, follows `MOVED`/`ASK` and
//! refreshes its slot map by itself. What it does not do, and this module does:
//!
//! - **scan every primary**: a plain `SCAN` reaches one node. The store lists the primaries, scans
//!   each in turn (by address), and encodes the node list, the position in it and the node's own
//!   cursor in the opaque [`ScanCursor`];
//! - **split batches by slot with an error for every part**: redis-rs 1.8 splits a multi-slot
//!   `MGET`/`UNLINK` itself, but it drops the part of a slot whose node has no connection at that
//!   moment, so an `UNLINK` could answer a smaller count without an error (read in
//!   `cluster_async::execute_on_multiple_nodes`, "we ignore nodes that are missing"), and it cannot
//!   split a pipeline at all (`CROSSSLOT`). The store groups keys by slot itself, sends one command
//!   (or pipeline) per slot concurrently, fails the call when any part fails, and puts the answers
//!   back in the caller's order;
//! - **name the node**: `PING`, `INFO` and the health report go to each node by address, so a
//!   failure says which node.

use std::collections::HashMap;

use cache_core::{Error, Result, ScanCursor};
use redis::cluster_routing::{Route, SlotAddr};
use serde::Serialize;

/// The role of a cluster node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NodeRole {
    /// Serves slots (reads and writes).
    Primary,
    /// Copies a primary; serves reads only when the store reads from replicas.
    Replica,
}

/// One node of the cluster as `CLUSTER NODES` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) role: NodeRole,
    pub(crate) primary_id: Option<String>,
    /// Inclusive slot ranges (primaries).
    pub(crate) slots: Vec<(u16, u16)>,
    /// Flagged `fail` or `fail?` by the cluster.
    pub(crate) failing: bool,
}

impl Node {
    /// `host:port`.
    pub(crate) fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub(crate) fn slot_count(&self) -> u32 {
        self.slots
            .iter()
            .map(|(a, b)| u32::from(b.saturating_sub(*a)) + 1)
            .sum()
    }
}

/// Parses a `CLUSTER NODES` reply. Nodes without an address (`noaddr`, still in `handshake`) and
/// lines that do not parse are left out.
pub(crate) fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags: Vec<&str> = f[2].split(',').collect();
            if flags.iter().any(|f| *f == "noaddr" || *f == "handshake") {
                return None;
            }
            // `ip:port@cport[,hostname]`; IPv6 addresses contain colons, the port is after the last.
            let addr = f[1].split('@').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            if host.is_empty() || port == 0 {
                return None;
            }
            let role = if flags.contains(&"master") {
                NodeRole::Primary
            } else {
                NodeRole::Replica
            };
            let slots = f[8..]
                .iter()
                // `[slot->-id]` / `[slot-<-id]`: a slot being migrated or imported.
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => {
                        let n = s.parse().ok()?;
                        Some((n, n))
                    }
                })
                .collect();
            Some(Node {
                id: f[0].to_owned(),
                host: host.trim_matches(|c| c == '[' || c == ']').to_owned(),
                port,
                role,
                primary_id: (f[3] != "-").then(|| f[3].to_owned()),
                slots,
                failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
            })
        })
        .collect()
}

/// The primaries that serve slots, sorted by address (the scan order).
pub(crate) fn primaries(nodes: &[Node]) -> Vec<&Node> {
    let mut p: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.role == NodeRole::Primary && !n.slots.is_empty())
        .collect();
    p.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    p
}

/// Reachability and role of one cluster node, from [`crate::RedisStore::cluster_health`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct NodeHealth {
    /// `host:port` as the cluster announces it.
    pub address: String,
    /// The node id.
    pub id: String,
    /// Primary or replica.
    pub role: NodeRole,
    /// For a replica: the address of its primary (when known).
    pub primary: Option<String>,
    /// Number of hash slots the node serves (0 for replicas).
    pub slots: u32,
    /// Whether the cluster itself flags the node as failing (`fail` / `fail?`).
    pub flagged_failing: bool,
    /// Whether the node answered our `PING`.
    pub reachable: bool,
    /// Round-trip time of the `PING` in microseconds, when it answered.
    pub rtt_us: Option<u64>,
    /// What went wrong, when it did not answer.
    pub error: Option<String>,
}

/// Where a cluster scan is: the primaries at the start of the scan, the one being scanned, and its
/// `SCAN` cursor. Encoded as `c1|{index}|{cursor}|{addr},{addr},...` in the opaque [`ScanCursor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterScan {
    pub(crate) nodes: Vec<(String, u16)>,
    pub(crate) index: usize,
    pub(crate) cursor: String,
}

impl ClusterScan {
    pub(crate) fn encode(&self) -> ScanCursor {
        let nodes: Vec<String> = self.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        ScanCursor::from_backend(format!(
            "c1|{}|{}|{}",
            self.index,
            self.cursor,
            nodes.join(",")
        ))
    }

    pub(crate) fn decode(cursor: &str) -> Result<ClusterScan> {
        let bad = || {
            Error::invalid_input(format!(
                "{cursor:?} is not a scan cursor of a Redis Cluster store (pass back what \
                 ScanPage::next returned, or ScanCursor::start())"
            ))
        };
        let mut parts = cursor.splitn(4, '|');
        if parts.next() != Some("c1") {
            return Err(bad());
        }
        let index: usize = parts.next().and_then(|i| i.parse().ok()).ok_or_else(bad)?;
        let cursor = parts.next().filter(|c| !c.is_empty()).ok_or_else(bad)?;
        if !cursor.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let nodes = parts
            .next()
            .ok_or_else(bad)?
            .split(',')
            .map(|a| {
                let (h, p) = a.rsplit_once(':')?;
                Some((h.to_owned(), p.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        if index >= nodes.len() {
            return Err(bad());
        }
        Ok(ClusterScan {
            nodes,
            index,
            cursor: cursor.to_owned(),
        })
    }
}

/// Groups `keys` (full keys) by hash slot: one route per slot (to `addr`) and the positions of its
/// keys, in first-seen order.
pub(crate) fn group_by_slot<S: AsRef<str>>(keys: &[S], addr: SlotAddr) -> Vec<(Route, Vec<usize>)> {
    let mut index: HashMap<Route, usize> = HashMap::new();
    let mut groups: Vec<(Route, Vec<usize>)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let route = Route::with_key(k.as_ref().as_bytes(), addr);
        match index.get(&route) {
            Some(&g) => groups[g].1.push(i),
            None => {
                index.insert(route, groups.len());
                groups.push((route, vec![i]));
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a 3+3 redis-server 7.0.15 cluster after a failover (one node down) and during
    /// a slot migration.
    const CAPTURED: &str = "\
a1d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d001 127.0.0.1:41001@51001 myself,master - 0 1700000000000 1 connected 0-5460 [5461->-b2d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d002]
b2d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d002 127.0.0.1:41002@51002 master - 0 1700000000000 2 connected 5461-10922 [5461-<-a1d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d001]
c3d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d003 127.0.0.1:41003@51003 master,fail - 1700000000000 1700000000000 3 disconnected
d4d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d004 127.0.0.1:41004@51004 slave a1d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d001 0 1700000000000 1 connected
e5d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d005 127.0.0.1:41005@51005 slave b2d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d002 0 1700000000000 2 connected
f6d9a3b4c3e4f1aa3b3e6e7f34ab7e0e8ae2d006 127.0.0.1:41006@51006,node6.example master - 0 1700000000000 7 connected 10923-16383
0000000000000000000000000000000000000007 :0@0 master,noaddr - 0 0 0 disconnected
";

    #[test]
    fn parses_roles_slots_failures_and_migrations() {
        let nodes = parse_nodes(CAPTURED);
        assert_eq!(nodes.len(), 6, "the noaddr node is left out");
        let n1 = &nodes[0];
        assert_eq!((n1.host.as_str(), n1.port), ("127.0.0.1", 41001));
        assert_eq!(n1.role, NodeRole::Primary);
        assert_eq!(n1.slots, vec![(0, 5460)]);
        assert_eq!(n1.slot_count(), 5461);
        let failed = &nodes[2];
        assert!(failed.failing);
        assert!(failed.slots.is_empty());
        let replica = &nodes[3];
        assert_eq!(replica.role, NodeRole::Replica);
        assert_eq!(replica.primary_id.as_deref(), Some(n1.id.as_str()));
        assert_eq!(nodes[5].addr(), "127.0.0.1:41006");
        let p: Vec<u16> = primaries(&nodes).iter().map(|n| n.port).collect();
        assert_eq!(
            p,
            vec![41001, 41002, 41006],
            "failed primary without slots is not scanned"
        );
    }

    #[test]
    fn scan_cursor_round_trips_and_rejects_garbage() {
        let s = ClusterScan {
            nodes: vec![("127.0.0.1".into(), 1), ("::1".into(), 2)],
            index: 1,
            cursor: "1234".into(),
        };
        let c = s.encode();
        assert_eq!(ClusterScan::decode(c.as_backend()).unwrap(), s);
        for bad in [
            "",
            "0",
            "c1|5|0|h:1",
            "c1|0|x|h:1",
            "c1|0|0|h",
            "c2|0|0|h:1",
        ] {
            assert!(ClusterScan::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn groups_keep_first_seen_order_and_duplicates() {
        let keys = ["{a}1", "{b}1", "{a}2", "{a}1"];
        let g = group_by_slot(&keys, SlotAddr::Master);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].1, vec![0, 2, 3]);
        assert_eq!(g[1].1, vec![1]);
    }
}
