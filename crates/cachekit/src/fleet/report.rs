//! The heartbeat's wire format: what one instance publishes under `fleet:{instance id}`.
//!
//! The value is JSON in the codec's version envelope (`{"v":1,"d":{...}}`), so `cachectl get
//! fleet:ID` shows it. Readers ignore fields they do not know and default the ones that are missing,
//! so fields can be added without a version bump; a renamed or re-typed field needs one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One instance's heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct InstanceReport {
    /// The instance id (the key's id part, unescaped): by default `{host}-{pid}`.
    pub id: String,
    /// Host name of the machine (or container) the instance runs on.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// cachekit's version in the instance.
    pub version: String,
    /// The store backend (`redis`, `redis-cluster`, `memory`).
    pub backend: String,
    /// When the instance started publishing, Unix milliseconds.
    pub started_at_ms: u64,
    /// When this heartbeat was written, Unix milliseconds (by the instance's clock).
    pub at_ms: u64,
    /// The publishing interval, ms.
    pub interval_ms: u64,
    /// The key's time to live, ms: a heartbeat older than this is gone.
    pub ttl_ms: u64,
    /// Cache counters per family (families with no traffic yet are left out); empty when the
    /// heartbeat has no cache manager.
    pub families: BTreeMap<String, FamilyReport>,
    /// Store-call latency and failures; `None` when the store is not instrumented.
    pub store: Option<StoreCallReport>,
    /// Connection pool state; `None` for backends without a pool.
    pub pool: Option<PoolReport>,
    /// Hit ratio of the in-process near cache; always `None` until the near cache exists.
    pub near_cache_hit_ratio: Option<f64>,
}

/// One cache family's counters in a heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FamilyReport {
    /// Reads answered from the cache, since the instance started.
    pub hits: u64,
    /// Reads the cache could not answer, since the instance started.
    pub misses: u64,
    /// `hits / (hits + misses)`, `None` before the first read.
    pub hit_ratio: Option<f64>,
    /// Hits since the previous heartbeat.
    pub recent_hits: u64,
    /// Misses since the previous heartbeat.
    pub recent_misses: u64,
    /// The hit ratio since the previous heartbeat, `None` when there was no read.
    pub recent_hit_ratio: Option<f64>,
    /// Store calls that failed for this family, since the instance started.
    pub store_errors: u64,
}

impl FamilyReport {
    /// Adds another report's counts (ratios are recomputed from the sums).
    pub fn add(&mut self, other: &FamilyReport) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.recent_hits += other.recent_hits;
        self.recent_misses += other.recent_misses;
        self.store_errors += other.store_errors;
        self.hit_ratio = ratio(self.hits, self.misses);
        self.recent_hit_ratio = ratio(self.recent_hits, self.recent_misses);
    }
}

/// `hits / (hits + misses)`, `None` when both are zero.
pub(crate) fn ratio(hits: u64, misses: u64) -> Option<f64> {
    let total = hits + misses;
    (total > 0).then(|| hits as f64 / total as f64)
}

/// Store-call statistics in a heartbeat: totals since start, and the window since the previous
/// heartbeat with its latency.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StoreCallReport {
    /// Calls since the instance started.
    pub calls: u64,
    /// Calls that failed (any error, timeouts included), since start.
    pub errors: u64,
    /// Calls that timed out, since start.
    pub timeouts: u64,
    /// Length of the window, ms (the time since the previous heartbeat).
    pub window_ms: u64,
    /// Calls in the window.
    pub recent_calls: u64,
    /// Failed calls in the window.
    pub recent_errors: u64,
    /// Timed-out calls in the window.
    pub recent_timeouts: u64,
    /// Median call latency in the window, µs (`None`: no call).
    pub p50_us: Option<u64>,
    /// 99th percentile call latency in the window, µs (`None`: no call).
    pub p99_us: Option<u64>,
    /// The window's latency histogram, non-empty buckets as `[upper bound µs, count]`: readers
    /// merge these to compute fleet-wide percentiles.
    pub latency_buckets: Vec<(u64, u64)>,
}

/// Connection pool state in a heartbeat (see `cache_core::PoolStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PoolReport {
    /// Maximum open connections.
    pub max_open: u64,
    /// Connections open.
    pub open: u64,
    /// Open connections not in use.
    pub idle: u64,
    /// Connections checked out.
    pub in_use: u64,
    /// Checkouts that had to wait, since start.
    pub waits: u64,
    /// Checkouts that gave up waiting, since start.
    pub timeouts: u64,
}

impl PoolReport {
    /// Adds another pool's figures (for fleet totals).
    pub fn add(&mut self, other: &PoolReport) {
        self.max_open += other.max_open;
        self.open += other.open;
        self.idle += other.idle;
        self.in_use += other.in_use;
        self.waits += other.waits;
        self.timeouts += other.timeouts;
    }
}

impl From<&cache_core::PoolStats> for PoolReport {
    fn from(p: &cache_core::PoolStats) -> Self {
        Self {
            max_open: p.max_open,
            open: p.open,
            idle: p.idle,
            in_use: p.in_use,
            waits: p.waits,
            timeouts: p.timeouts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_and_tolerates_unknown_and_missing_fields() {
        let mut r = InstanceReport {
            id: "web-1".into(),
            pid: 7,
            ..Default::default()
        };
        r.families.insert(
            "user".into(),
            FamilyReport {
                hits: 3,
                misses: 1,
                hit_ratio: Some(0.75),
                ..Default::default()
            },
        );
        let bytes = cache_core::codec::encode(&r).unwrap();
        let back: InstanceReport = cache_core::codec::decode(&bytes).unwrap();
        assert_eq!(back, r);

        let newer = br#"{"v":1,"d":{"id":"x","pid":1,"some_future_field":[1,2]}}"#;
        let parsed: InstanceReport = cache_core::codec::decode(newer).unwrap();
        assert_eq!(parsed.id, "x");
        assert!(parsed.families.is_empty());
        assert_eq!(parsed.near_cache_hit_ratio, None);
    }

    #[test]
    fn family_totals_recompute_ratios() {
        let mut t = FamilyReport::default();
        t.add(&FamilyReport {
            hits: 1,
            misses: 1,
            recent_hits: 1,
            ..Default::default()
        });
        t.add(&FamilyReport {
            hits: 2,
            ..Default::default()
        });
        assert_eq!(t.hit_ratio, Some(0.75));
        assert_eq!(t.recent_hit_ratio, Some(1.0));
    }
}
