//! Reading the fleet: every live heartbeat under the store's prefix, and their totals.
//!
//! The reader `SCAN`s the fleet prefix only (`fleet:*`, never `KEYS`), then reads the keys in one
//! `MGET` per page. A key that expired between the two is simply not there; a value that does not
//! decode (another version, or not ours) is counted in [`FleetView::unreadable`] and skipped.

use std::collections::BTreeMap;

use cache_core::{ScanCursor, Store};
use serde::Serialize;

use super::histogram::quantile_of_buckets;
use super::report::{ratio, FamilyReport, InstanceReport, PoolReport};
use super::FLEET_PATTERN;

/// Every live instance and the fleet's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FleetView {
    /// The live instances, by id.
    pub instances: Vec<InstanceReport>,
    /// Sums over the instances.
    pub totals: FleetTotals,
    /// Keys under the fleet prefix whose value did not decode.
    pub unreadable: u64,
}

/// Sums over the live instances (percentiles from their merged latency histograms).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct FleetTotals {
    /// Number of live instances.
    pub instances: usize,
    /// Cache counters per family, summed.
    pub families: BTreeMap<String, FamilyReport>,
    /// All families together.
    pub cache: FamilyReport,
    /// Store calls since each instance started, summed.
    pub store_calls: u64,
    /// Failed store calls, summed.
    pub store_errors: u64,
    /// Timed-out store calls, summed.
    pub store_timeouts: u64,
    /// Store calls in the instances' latest windows.
    pub recent_calls: u64,
    /// Store calls per second over the latest windows (each instance's calls over its window).
    pub calls_per_sec: f64,
    /// Failed store calls in the latest windows.
    pub recent_errors: u64,
    /// Timed-out store calls in the latest windows.
    pub recent_timeouts: u64,
    /// Median store-call latency over all instances' latest windows, µs.
    pub p50_us: Option<u64>,
    /// 99th percentile store-call latency over all instances' latest windows, µs.
    pub p99_us: Option<u64>,
    /// Pool figures, summed over the instances that report a pool.
    pub pool: Option<PoolReport>,
}

impl FleetTotals {
    fn of(instances: &[InstanceReport]) -> Self {
        let mut t = FleetTotals {
            instances: instances.len(),
            ..Default::default()
        };
        let mut buckets = Vec::new();
        for i in instances {
            for (family, f) in &i.families {
                t.families.entry(family.clone()).or_default().add(f);
                t.cache.add(f);
            }
            if let Some(s) = &i.store {
                t.store_calls += s.calls;
                t.store_errors += s.errors;
                t.store_timeouts += s.timeouts;
                t.recent_calls += s.recent_calls;
                t.recent_errors += s.recent_errors;
                t.recent_timeouts += s.recent_timeouts;
                if s.window_ms > 0 {
                    t.calls_per_sec += s.recent_calls as f64 * 1000.0 / s.window_ms as f64;
                }
                buckets.extend_from_slice(&s.latency_buckets);
            }
            if let Some(p) = &i.pool {
                t.pool.get_or_insert_with(PoolReport::default).add(p);
            }
        }
        t.cache.hit_ratio = ratio(t.cache.hits, t.cache.misses);
        t.p50_us = quantile_of_buckets(&buckets, 0.5);
        t.p99_us = quantile_of_buckets(&buckets, 0.99);
        t
    }
}

/// Reads every live heartbeat under `store`'s prefix. `scan_count` is the `SCAN COUNT` hint.
pub async fn read_fleet(store: &dyn Store, scan_count: u32) -> cache_core::Result<FleetView> {
    let mut view = FleetView::default();
    let mut cursor = ScanCursor::start();
    loop {
        let page = store.scan(FLEET_PATTERN, cursor, scan_count).await?;
        if !page.keys.is_empty() {
            let keys: Vec<&str> = page.keys.iter().map(String::as_str).collect();
            for value in store.get_many(&keys).await?.into_iter().flatten() {
                match cache_core::codec::decode::<InstanceReport>(&value) {
                    Ok(report) => view.instances.push(report),
                    Err(_) => view.unreadable += 1,
                }
            }
        }
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    // A scan may return a key twice; keep one report per id (the newest).
    view.instances
        .sort_by(|a, b| a.id.cmp(&b.id).then(b.at_ms.cmp(&a.at_ms)));
    view.instances.dedup_by(|later, first| later.id == first.id);
    view.totals = FleetTotals::of(&view.instances);
    Ok(view)
}
