//! Redis Cluster specifics: the topology as `CLUSTER NODES` reports it, and the calls that go to
//! every node by address so that a failure names the node: `PING` of every primary
//! ([`Store::ping`](cache_core::Store::ping)), `INFO` of every primary (`stats`), and the per-node
//! health report ([`RedisStore::cluster_health`]).
//!
//! The cluster connection of redis-rs routes single-key commands, follows `MOVED`/`ASK` and
//! refreshes its slot map by itself. What it does not do is spread over the crate by topic: scans
//! across primaries in [`crate::scan`], batches split per slot in [`crate::batch`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cache_core::{BackendStats, Error, Result};
use redis::{Cmd, FromRedisValue};
use serde::Serialize;

use crate::retry::Idempotency;
use crate::route::Target;
use crate::store::RedisStore;

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

impl RedisStore {
    /// The cluster topology (`CLUSTER NODES` from any node); empty on one server.
    pub(crate) async fn topology(&self) -> Result<Vec<Node>> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let text: String = self
            .query_at(
                "CLUSTER NODES",
                None,
                Target::AnyNode,
                Idempotency::Repeatable,
                &cmd,
            )
            .await?;
        let nodes = parse_nodes(&text);
        if primaries(&nodes).is_empty() {
            return Err(Error::backend(format!(
                "CLUSTER NODES on {} lists no primary serving slots: is the cluster created?",
                self.target()
            )));
        }
        Ok(nodes)
    }

    /// Runs `cmd` (a `PING` or `INFO`: repeatable) on `node`; errors name the node.
    async fn on_node<T: FromRedisValue>(
        &self,
        op: &'static str,
        node: &Node,
        cmd: &Cmd,
    ) -> Result<T> {
        let target = Target::Node {
            host: &node.host,
            port: node.port,
        };
        self.query_at(op, None, target, Idempotency::Repeatable, cmd)
            .await
    }

    /// `PING` to every primary, concurrently; the error names the first node that did not answer.
    pub(crate) async fn ping_cluster(&self) -> Result<Duration> {
        let nodes = self.topology().await?;
        let cmd = redis::cmd("PING");
        let cmd = &cmd;
        let started = Instant::now();
        let results = futures::future::join_all(
            primaries(&nodes)
                .into_iter()
                .map(|n| async move { self.on_node::<String>("PING", n, cmd).await }),
        )
        .await;
        for r in results {
            r?;
        }
        Ok(started.elapsed())
    }

    /// `INFO` of every primary: sums (memory, clients, ops, hits, misses, keys...), the lowest
    /// uptime and the first version in the total, each primary's own figures in
    /// [`BackendStats::nodes`] (whose `backend` field holds the node's `host:port`).
    pub(crate) async fn stats_cluster(&self) -> Result<BackendStats> {
        let nodes = self.topology().await?;
        let cmd = redis::cmd("INFO");
        let cmd = &cmd;
        let primaries = primaries(&nodes);
        let texts = futures::future::try_join_all(
            primaries
                .iter()
                .map(|n| async move { self.on_node::<String>("INFO", n, cmd).await }),
        )
        .await?;
        let per: Vec<BackendStats> = primaries
            .iter()
            .zip(texts)
            .map(|(n, text)| {
                let mut s = crate::info::parse("redis", &text);
                s.backend = n.addr();
                s
            })
            .collect();
        let mut total = BackendStats::new("redis-cluster");
        total.version = per.iter().find_map(|s| s.version.clone());
        total.uptime_secs = per.iter().filter_map(|s| s.uptime_secs).min();
        total.used_memory_bytes = sum(per.iter().map(|s| s.used_memory_bytes));
        total.peak_memory_bytes = sum(per.iter().map(|s| s.peak_memory_bytes));
        total.connected_clients = sum(per.iter().map(|s| s.connected_clients));
        total.ops_per_sec = sum(per.iter().map(|s| s.ops_per_sec));
        total.keyspace_hits = sum(per.iter().map(|s| s.keyspace_hits));
        total.keyspace_misses = sum(per.iter().map(|s| s.keyspace_misses));
        total.expired_keys = sum(per.iter().map(|s| s.expired_keys));
        total.evicted_keys = sum(per.iter().map(|s| s.evicted_keys));
        for s in &per {
            for (db, n) in &s.keys_per_db {
                *total.keys_per_db.entry(db.clone()).or_insert(0) += n;
            }
        }
        total.pool = Some(self.conns.pool_stats().await);
        total.nodes = per;
        Ok(total)
    }

    /// Every node of the cluster (primaries and replicas) with its role, the slots it serves, the
    /// cluster's own failure flag, and whether it answers our `PING` (sent to each node directly,
    /// concurrently). Empty on one server. Fails only when no node can tell the topology.
    pub async fn cluster_health(&self) -> Result<Vec<NodeHealth>> {
        let nodes = self.topology().await?;
        let addr_of: HashMap<&str, String> =
            nodes.iter().map(|n| (n.id.as_str(), n.addr())).collect();
        let cmd = redis::cmd("PING");
        let cmd = &cmd;
        let mut out = futures::future::join_all(nodes.iter().map(|n| {
            let addr_of = &addr_of;
            async move {
                let started = Instant::now();
                let r = self.on_node::<String>("PING", n, cmd).await;
                NodeHealth {
                    address: n.addr(),
                    id: n.id.clone(),
                    role: n.role,
                    primary: n
                        .primary_id
                        .as_deref()
                        .and_then(|id| addr_of.get(id).cloned()),
                    slots: if n.role == NodeRole::Primary {
                        n.slot_count()
                    } else {
                        0
                    },
                    flagged_failing: n.failing,
                    reachable: r.is_ok(),
                    rtt_us: r
                        .as_ref()
                        .ok()
                        .map(|_| u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    error: r.err().map(|e| e.to_string()),
                }
            }
        }))
        .await;
        out.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(out)
    }
}

/// Sums the fields known on at least one node.
fn sum(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.fold(None, |acc, v| match (acc, v) {
        (None, v) => v,
        (a, None) => a,
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
    })
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
}
