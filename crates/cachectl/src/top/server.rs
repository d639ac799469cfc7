//! The server half of `cachectl top`: `INFO` replies parsed into samples, and rates computed from
//! the deltas between two samples of the same node.
//!
//! Counters (`total_commands_processed`, `keyspace_hits`, `evicted_keys`, `cmdstat_*`) only grow
//! while a server runs, so a rate is the difference over the time between the two samples. A
//! counter that went down (the server restarted, or `CONFIG RESETSTAT`) gives no rate for that
//! refresh rather than a negative one. The first sample has no predecessor: ops/s then falls back
//! to the server's own `instantaneous_ops_per_sec`, and the other rates are absent.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

/// One command's cumulative figures from `INFO commandstats`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct CommandCounters {
    calls: u64,
    usec: u64,
    failed: u64,
    rejected: u64,
}

/// Latency percentiles of one command from `INFO latencystats` (Redis 7), µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
    #[serde(rename = "p99.9")]
    pub(crate) p999: Option<f64>,
}

/// One node's `INFO` at one moment.
#[derive(Debug, Clone)]
pub(crate) struct NodeSample {
    address: String,
    at: Instant,
    fields: BTreeMap<String, String>,
    commands: BTreeMap<String, CommandCounters>,
    latency: BTreeMap<String, Percentiles>,
}

impl NodeSample {
    /// Parses an `INFO` reply (`# Section` headers, `field:value` lines; unknown fields kept,
    /// missing ones absent, so any Redis or Valkey version parses).
    pub(crate) fn parse(address: &str, text: &str, at: Instant) -> Self {
        let mut sample = NodeSample {
            address: address.to_owned(),
            at,
            fields: BTreeMap::new(),
            commands: BTreeMap::new(),
            latency: BTreeMap::new(),
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if let Some(cmd) = name.strip_prefix("cmdstat_") {
                let kv = key_values(value);
                let int = |k: &str| kv.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                sample.commands.insert(
                    cmd.to_owned(),
                    CommandCounters {
                        calls: int("calls"),
                        usec: int("usec"),
                        failed: int("failed_calls"),
                        rejected: int("rejected_calls"),
                    },
                );
            } else if let Some(cmd) = name.strip_prefix("latency_percentiles_usec_") {
                let kv = key_values(value);
                let num = |k: &str| kv.get(k).and_then(|v| v.parse::<f64>().ok());
                sample.latency.insert(
                    cmd.to_owned(),
                    Percentiles {
                        p50: num("p50"),
                        p99: num("p99"),
                        p999: num("p99.9"),
                    },
                );
            } else {
                sample.fields.insert(name.to_owned(), value.to_owned());
            }
        }
        sample
    }

    fn int(&self, name: &str) -> Option<u64> {
        self.fields.get(name)?.trim().parse().ok()
    }

    fn float(&self, name: &str) -> Option<f64> {
        self.fields.get(name)?.trim().parse().ok()
    }

    fn text(&self, name: &str) -> Option<String> {
        self.fields.get(name).map(|v| v.trim().to_owned())
    }

    /// Keys over every database (`db0:keys=3,expires=1,...`).
    fn keys(&self) -> u64 {
        self.fields
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix("db")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter_map(|(_, v)| key_values(v).get("keys")?.parse::<u64>().ok())
            .sum()
    }
}

/// `a=1,b=2` into a map.
fn key_values(v: &str) -> BTreeMap<&str, &str> {
    v.split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .collect()
}

/// `(now - then) / seconds`, absent when a counter is missing or went down.
fn rate(now: Option<u64>, then: Option<u64>, secs: f64) -> Option<f64> {
    let (now, then) = (now?, then?);
    (now >= then && secs > 0.0).then(|| (now - then) as f64 / secs)
}

fn ratio(hits: u64, misses: u64) -> Option<f64> {
    let total = hits + misses;
    (total > 0).then(|| hits as f64 / total as f64)
}

/// One command's figures for the view.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct CommandView {
    /// The command (`get`, `set`, `client|setname`).
    pub(crate) name: String,
    /// Calls since the server started (or `CONFIG RESETSTAT`).
    pub(crate) calls: u64,
    /// Calls per second since the previous refresh.
    pub(crate) calls_per_sec: Option<f64>,
    /// Mean server time per call since the previous refresh (µs), or since start when there was
    /// no call in between.
    pub(crate) usec_per_call: Option<f64>,
    /// Calls that failed (errors inside the command), since start.
    pub(crate) failed_calls: u64,
    /// Calls rejected before running (unknown arguments, OOM, ACL), since start.
    pub(crate) rejected_calls: u64,
    /// Latency percentiles since start (Redis 7 `latencystats`), µs; on a cluster total the worst
    /// node's.
    pub(crate) latency_usec: Percentiles,
}

/// One node's figures for the view.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct NodeView {
    pub(crate) address: String,
    pub(crate) role: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) uptime_secs: Option<u64>,
    /// Commands per second since the previous refresh (first refresh: the server's
    /// `instantaneous_ops_per_sec`).
    pub(crate) ops_per_sec: Option<f64>,
    /// Keyspace hit ratio since the previous refresh (`None`: no lookup in between).
    pub(crate) hit_ratio: Option<f64>,
    /// Keyspace hit ratio since the server started.
    pub(crate) hit_ratio_total: Option<f64>,
    pub(crate) keyspace_hits: Option<u64>,
    pub(crate) keyspace_misses: Option<u64>,
    /// Keyspace hits per second since the previous refresh.
    pub(crate) hits_per_sec: Option<f64>,
    /// Keyspace misses per second since the previous refresh.
    pub(crate) misses_per_sec: Option<f64>,
    pub(crate) used_memory_bytes: Option<u64>,
    pub(crate) used_memory_rss_bytes: Option<u64>,
    pub(crate) maxmemory_bytes: Option<u64>,
    pub(crate) mem_fragmentation_ratio: Option<f64>,
    pub(crate) evicted_keys: Option<u64>,
    pub(crate) evictions_per_sec: Option<f64>,
    pub(crate) expired_per_sec: Option<f64>,
    pub(crate) connected_clients: Option<u64>,
    pub(crate) blocked_clients: Option<u64>,
    pub(crate) keys: u64,
    /// Every command the server ran, busiest first.
    pub(crate) commands: Vec<CommandView>,
}

/// The server part of a snapshot: each node, and the sum over nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct ServerView {
    pub(crate) nodes: Vec<NodeView>,
    pub(crate) total: NodeView,
}

impl ServerView {
    /// The view of `now`, with rates against `previous` (matched by node address).
    pub(crate) fn compute(previous: &[NodeSample], now: &[NodeSample]) -> Self {
        let nodes: Vec<NodeView> = now
            .iter()
            .map(|n| node_view(previous.iter().find(|p| p.address == n.address), n))
            .collect();
        let total = total_of(&nodes, now.len() > 1);
        ServerView { nodes, total }
    }
}

fn node_view(prev: Option<&NodeSample>, now: &NodeSample) -> NodeView {
    let secs = prev.map_or(0.0, |p| now.at.duration_since(p.at).as_secs_f64());
    let prev_int = |name: &str| prev.and_then(|p| p.int(name));
    let delta = |name: &str| {
        let (a, b) = (now.int(name)?, prev_int(name)?);
        a.checked_sub(b)
    };
    let (hits, misses) = (now.int("keyspace_hits"), now.int("keyspace_misses"));
    let ops_per_sec = match prev {
        Some(_) => rate(
            now.int("total_commands_processed"),
            prev_int("total_commands_processed"),
            secs,
        ),
        None => now.int("instantaneous_ops_per_sec").map(|v| v as f64),
    };
    let hit_ratio = match (delta("keyspace_hits"), delta("keyspace_misses")) {
        (Some(h), Some(m)) => ratio(h, m),
        _ => None,
    };
    let mut commands: Vec<CommandView> = now
        .commands
        .iter()
        .map(|(name, c)| {
            let before = prev.and_then(|p| p.commands.get(name)).copied();
            let calls_per_sec = match before {
                Some(b) => rate(Some(c.calls), Some(b.calls), secs),
                // A command first seen now ran `calls` times since the previous refresh.
                None if prev.is_some() && secs > 0.0 => Some(c.calls as f64 / secs),
                None => None,
            };
            let recent = before
                .filter(|b| c.calls > b.calls && c.usec >= b.usec)
                .map(|b| (c.usec - b.usec) as f64 / (c.calls - b.calls) as f64);
            let since_start = (c.calls > 0).then(|| c.usec as f64 / c.calls as f64);
            CommandView {
                name: name.clone(),
                calls: c.calls,
                calls_per_sec,
                usec_per_call: recent.or(since_start),
                failed_calls: c.failed,
                rejected_calls: c.rejected,
                latency_usec: now.latency.get(name).copied().unwrap_or_default(),
            }
        })
        .collect();
    sort_commands(&mut commands);
    NodeView {
        address: now.address.clone(),
        role: now.text("role"),
        version: now.text("redis_version"),
        uptime_secs: now.int("uptime_in_seconds"),
        ops_per_sec,
        hit_ratio,
        hit_ratio_total: ratio(hits.unwrap_or(0), misses.unwrap_or(0)),
        keyspace_hits: hits,
        keyspace_misses: misses,
        hits_per_sec: rate(hits, prev_int("keyspace_hits"), secs),
        misses_per_sec: rate(misses, prev_int("keyspace_misses"), secs),
        used_memory_bytes: now.int("used_memory"),
        used_memory_rss_bytes: now.int("used_memory_rss"),
        maxmemory_bytes: now.int("maxmemory"),
        mem_fragmentation_ratio: now.float("mem_fragmentation_ratio"),
        evicted_keys: now.int("evicted_keys"),
        evictions_per_sec: rate(now.int("evicted_keys"), prev_int("evicted_keys"), secs),
        expired_per_sec: rate(now.int("expired_keys"), prev_int("expired_keys"), secs),
        connected_clients: now.int("connected_clients"),
        blocked_clients: now.int("blocked_clients"),
        keys: now.keys(),
        commands,
    }
}

/// Busiest first: by calls per second, then by calls.
fn sort_commands(commands: &mut [CommandView]) {
    commands.sort_by(|a, b| {
        b.calls_per_sec
            .unwrap_or(0.0)
            .total_cmp(&a.calls_per_sec.unwrap_or(0.0))
            .then(b.calls.cmp(&a.calls))
            .then(a.name.cmp(&b.name))
    });
}

fn sum_u64(it: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    it.fold(None, |acc, v| match (acc, v) {
        (None, v) => v,
        (a, None) => a,
        (Some(a), Some(b)) => Some(a + b),
    })
}

fn sum_f64(it: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    it.fold(None, |acc, v| match (acc, v) {
        (None, v) => v,
        (a, None) => a,
        (Some(a), Some(b)) => Some(a + b),
    })
}

fn max_f64(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The sum over nodes (a cluster), or the one node itself.
fn total_of(nodes: &[NodeView], cluster: bool) -> NodeView {
    if !cluster {
        return nodes.first().cloned().unwrap_or_default();
    }
    let hits = sum_u64(nodes.iter().map(|n| n.keyspace_hits));
    let misses = sum_u64(nodes.iter().map(|n| n.keyspace_misses));
    let hits_per_sec = sum_f64(nodes.iter().map(|n| n.hits_per_sec));
    let misses_per_sec = sum_f64(nodes.iter().map(|n| n.misses_per_sec));
    let hit_ratio = match (hits_per_sec, misses_per_sec) {
        (Some(h), Some(m)) if h + m > 0.0 => Some(h / (h + m)),
        _ => None,
    };
    let mut commands: BTreeMap<String, CommandView> = BTreeMap::new();
    for n in nodes {
        for c in &n.commands {
            let t = commands
                .entry(c.name.clone())
                .or_insert_with(|| CommandView {
                    name: c.name.clone(),
                    ..Default::default()
                });
            // Mean time per call, weighted by calls (recomputed below from the running sums).
            let weighted = c.usec_per_call.map(|u| u * c.calls as f64);
            t.usec_per_call = sum_f64([t.usec_per_call, weighted].into_iter());
            t.calls += c.calls;
            t.calls_per_sec = sum_f64([t.calls_per_sec, c.calls_per_sec].into_iter());
            t.failed_calls += c.failed_calls;
            t.rejected_calls += c.rejected_calls;
            t.latency_usec = Percentiles {
                p50: max_f64(t.latency_usec.p50, c.latency_usec.p50),
                p99: max_f64(t.latency_usec.p99, c.latency_usec.p99),
                p999: max_f64(t.latency_usec.p999, c.latency_usec.p999),
            };
        }
    }
    let mut commands: Vec<CommandView> = commands
        .into_values()
        .map(|mut c| {
            c.usec_per_call = c
                .usec_per_call
                .filter(|_| c.calls > 0)
                .map(|u| u / c.calls as f64);
            c
        })
        .collect();
    sort_commands(&mut commands);
    NodeView {
        address: format!("cluster ({} primaries)", nodes.len()),
        role: None,
        version: nodes.iter().find_map(|n| n.version.clone()),
        uptime_secs: nodes.iter().filter_map(|n| n.uptime_secs).min(),
        ops_per_sec: sum_f64(nodes.iter().map(|n| n.ops_per_sec)),
        hit_ratio,
        hit_ratio_total: ratio(hits.unwrap_or(0), misses.unwrap_or(0)),
        keyspace_hits: hits,
        keyspace_misses: misses,
        hits_per_sec,
        misses_per_sec,
        used_memory_bytes: sum_u64(nodes.iter().map(|n| n.used_memory_bytes)),
        used_memory_rss_bytes: sum_u64(nodes.iter().map(|n| n.used_memory_rss_bytes)),
        maxmemory_bytes: sum_u64(nodes.iter().map(|n| n.maxmemory_bytes)),
        mem_fragmentation_ratio: None,
        evicted_keys: sum_u64(nodes.iter().map(|n| n.evicted_keys)),
        evictions_per_sec: sum_f64(nodes.iter().map(|n| n.evictions_per_sec)),
        expired_per_sec: sum_f64(nodes.iter().map(|n| n.expired_per_sec)),
        connected_clients: sum_u64(nodes.iter().map(|n| n.connected_clients)),
        blocked_clients: sum_u64(nodes.iter().map(|n| n.blocked_clients)),
        keys: nodes.iter().map(|n| n.keys).sum(),
        commands,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Shapes captured from `redis-server` 7.0.15 (`INFO all`, trimmed).
    fn info(processed: u64, hits: u64, misses: u64, get_calls: u64, get_usec: u64) -> String {
        format!(
            "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:100\r\n\r\n\
             # Clients\r\nconnected_clients:3\r\nblocked_clients:0\r\n\r\n\
             # Memory\r\nused_memory:1000000\r\nused_memory_rss:2000000\r\nmaxmemory:0\r\n\
             mem_fragmentation_ratio:2.00\r\n\r\n\
             # Stats\r\ntotal_commands_processed:{processed}\r\ninstantaneous_ops_per_sec:7\r\n\
             expired_keys:0\r\nevicted_keys:4\r\nkeyspace_hits:{hits}\r\nkeyspace_misses:{misses}\r\n\r\n\
             # Replication\r\nrole:master\r\n\r\n\
             # Commandstats\r\n\
             cmdstat_get:calls={get_calls},usec={get_usec},usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_client|setname:calls=2,usec=4,usec_per_call=2.00,rejected_calls=1,failed_calls=0\r\n\r\n\
             # Latencystats\r\n\
             latency_percentiles_usec_get:p50=1.003,p99=3.007,p99.9=10.047\r\n\r\n\
             # Keyspace\r\ndb0:keys=42,expires=3,avg_ttl=11913\r\ndb2:keys=8,expires=0,avg_ttl=0\r\n"
        )
    }

    #[test]
    fn the_first_refresh_uses_the_servers_own_rate() {
        let at = Instant::now();
        let s = NodeSample::parse("h:1", &info(100, 30, 10, 20, 40), at);
        let v = ServerView::compute(&[], &[s]);
        let n = &v.total;
        assert_eq!(n.address, "h:1");
        assert_eq!(n.ops_per_sec, Some(7.0));
        assert_eq!(n.hit_ratio, None);
        assert_eq!(n.hit_ratio_total, Some(0.75));
        assert_eq!(n.keys, 50);
        assert_eq!(n.mem_fragmentation_ratio, Some(2.0));
        assert_eq!(n.role.as_deref(), Some("master"));
        assert_eq!(n.evicted_keys, Some(4));
        assert_eq!(n.evictions_per_sec, None);
        let get = &n.commands[0];
        assert_eq!((get.name.as_str(), get.calls), ("get", 20));
        assert_eq!(get.usec_per_call, Some(2.0));
        assert_eq!(get.latency_usec.p99, Some(3.007));
        assert_eq!(get.latency_usec.p999, Some(10.047));
        let setname = &n.commands[1];
        assert_eq!(setname.name, "client|setname");
        assert_eq!(setname.rejected_calls, 1);
    }

    #[test]
    fn rates_come_from_deltas_between_refreshes() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let a = NodeSample::parse("h:1", &info(100, 30, 10, 20, 40), t0);
        let b = NodeSample::parse("h:1", &info(300, 39, 11, 120, 540), t1);
        let v = ServerView::compute(&[a], &[b]);
        let n = &v.total;
        assert_eq!(n.ops_per_sec, Some(100.0));
        assert_eq!(n.hit_ratio, Some(0.9));
        assert_eq!(n.evictions_per_sec, Some(0.0));
        let get = &n.commands[0];
        assert_eq!(get.calls_per_sec, Some(50.0));
        assert_eq!(
            get.usec_per_call,
            Some(5.0),
            "500 µs over 100 calls in the interval"
        );
    }

    #[test]
    fn a_counter_that_went_down_gives_no_rate() {
        let t0 = Instant::now();
        let a = NodeSample::parse("h:1", &info(1000, 30, 10, 20, 40), t0);
        let b = NodeSample::parse("h:1", &info(5, 0, 0, 1, 1), t0 + Duration::from_secs(1));
        let n = ServerView::compute(&[a], &[b]).total;
        assert_eq!(n.ops_per_sec, None);
        assert_eq!(n.hit_ratio, None);
        let get = n.commands.iter().find(|c| c.name == "get").unwrap();
        assert_eq!(get.calls_per_sec, None);
    }

    #[test]
    fn a_cluster_total_sums_its_primaries() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let prev = [
            NodeSample::parse("a:1", &info(100, 10, 0, 10, 10), t0),
            NodeSample::parse("b:2", &info(100, 0, 10, 10, 10), t0),
        ];
        let now = [
            NodeSample::parse("a:1", &info(150, 20, 0, 30, 50), t1),
            NodeSample::parse("b:2", &info(110, 0, 20, 20, 20), t1),
        ];
        let v = ServerView::compute(&prev, &now);
        assert_eq!(v.nodes.len(), 2);
        let t = &v.total;
        assert_eq!(t.ops_per_sec, Some(60.0));
        assert_eq!(t.keys, 100);
        assert_eq!(t.connected_clients, Some(6));
        assert_eq!(t.hit_ratio_total, Some(0.5));
        assert_eq!(
            t.hit_ratio,
            Some(0.5),
            "node a all hits, node b all misses, equal lookups"
        );
        let get = t.commands.iter().find(|c| c.name == "get").unwrap();
        assert_eq!(get.calls, 50);
        assert_eq!(get.calls_per_sec, Some(30.0));
        assert!(t.address.starts_with("cluster"));
    }
}
