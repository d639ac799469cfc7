//! Statistics per family: relaxed atomics on the hot path, a [`CacheStats`] snapshot on demand, and
//! the same numbers through the [`metrics`] facade.
//!
//! # Metrics
//!
//! Every counter is also published as a `metrics` counter with a `family` label (the family's
//! [name](crate::Family::name)), so any exporter (Prometheus, StatsD, ...) can publish them:
//!
//! | metric | counts |
//! |---|---|
//! | `cache_hits_total` | reads answered from the cache |
//! | `cache_misses_total` | reads the cache could not answer (absent, expired, undecodable, unknown format version, store down) |
//! | `cache_loads_total` | loader runs of `get_or_load` |
//! | `cache_load_errors_total` | loader runs that returned an error |
//! | `cache_coalesced_total` | `get_or_load` calls that waited for another caller's load instead of loading |
//! | `cache_writes_total` | values written |
//! | `cache_store_errors_total` | store calls that failed (reads and writes) |
//! | `cache_decode_failures_total` | stored values that did not decode (deleted, counted as misses) |
//! | `cache_unknown_format_versions_total` | stored values in a format version this build does not read (left alone, counted as misses) |
//!
//! The metric handles are registered once, when the manager is built, so incrementing one costs an
//! atomic add and no registry lookup. **Install your metrics recorder before building the
//! [`CacheManager`](crate::CacheManager)**: handles taken before a recorder exists stay no-ops (the
//! snapshot counters work either way).

use cache_core::striped::Striped;
use std::collections::BTreeMap;

use crate::family::Family;

/// One counter: a striped count for snapshots (every read of a family counts a hit or a miss, on
/// every thread: one shared atomic would be a cache line all cores write in turn), and the
/// `metrics` handle for exporters.
#[derive(Debug)]
pub(crate) struct Counter {
    value: Striped,
    handle: metrics::Counter,
}

impl Counter {
    fn new(name: &'static str, family: Family) -> Self {
        Self {
            value: Striped::new(),
            handle: metrics::counter!(name, "family" => family.name()),
        }
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.value.add(n);
        self.handle.increment(n);
    }

    #[inline]
    pub(crate) fn inc(&self) {
        self.add(1);
    }

    fn get(&self) -> u64 {
        self.value.sum()
    }
}

/// The live counters of one family.
#[derive(Debug)]
pub(crate) struct FamilyCounters {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) loads: Counter,
    pub(crate) load_errors: Counter,
    pub(crate) coalesced: Counter,
    pub(crate) writes: Counter,
    pub(crate) store_errors: Counter,
    pub(crate) decode_failures: Counter,
    pub(crate) unknown_format_versions: Counter,
}

impl FamilyCounters {
    pub(crate) fn new(family: Family) -> Self {
        Self {
            hits: Counter::new("cache_hits_total", family),
            misses: Counter::new("cache_misses_total", family),
            loads: Counter::new("cache_loads_total", family),
            load_errors: Counter::new("cache_load_errors_total", family),
            coalesced: Counter::new("cache_coalesced_total", family),
            writes: Counter::new("cache_writes_total", family),
            store_errors: Counter::new("cache_store_errors_total", family),
            decode_failures: Counter::new("cache_decode_failures_total", family),
            unknown_format_versions: Counter::new("cache_unknown_format_versions_total", family),
        }
    }

    pub(crate) fn snapshot(&self) -> FamilyStats {
        FamilyStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            loads: self.loads.get(),
            load_errors: self.load_errors.get(),
            coalesced: self.coalesced.get(),
            writes: self.writes.get(),
            store_errors: self.store_errors.get(),
            decode_failures: self.decode_failures.get(),
            unknown_format_versions: self.unknown_format_versions.get(),
        }
    }
}

/// Describes the metrics once per process (units and help texts for exporters).
pub(crate) fn describe_metrics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let d = [
            ("cache_hits_total", "Cache reads answered from the cache."),
            (
                "cache_misses_total",
                "Cache reads the cache could not answer.",
            ),
            ("cache_loads_total", "Loader runs of get_or_load."),
            ("cache_load_errors_total", "Loader runs that failed."),
            (
                "cache_coalesced_total",
                "get_or_load calls served by another caller's load.",
            ),
            ("cache_writes_total", "Values written to the cache."),
            ("cache_store_errors_total", "Store calls that failed."),
            (
                "cache_decode_failures_total",
                "Stored values that did not decode (deleted).",
            ),
            (
                "cache_unknown_format_versions_total",
                "Stored values in a format version this build does not read (left alone).",
            ),
        ];
        for (name, help) in d {
            metrics::describe_counter!(name, metrics::Unit::Count, help);
        }
    });
}

/// A snapshot of one family's counters since the manager was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct FamilyStats {
    /// Reads answered from the cache (including a cached "not found" of negative caching, for
    /// `get_or_load_optional`).
    pub hits: u64,
    /// Reads the cache could not answer: absent, expired, undecodable, in a format version this
    /// build does not read, or the store failed.
    pub misses: u64,
    /// Loader runs.
    pub loads: u64,
    /// Loader runs that returned an error.
    pub load_errors: u64,
    /// `get_or_load` calls that waited for another caller's load (single-flight) instead of
    /// running the loader.
    pub coalesced: u64,
    /// Values written to the store.
    pub writes: u64,
    /// Store calls that failed, reads and writes.
    pub store_errors: u64,
    /// Stored values that did not decode; each was deleted and counted as a miss.
    pub decode_failures: u64,
    /// Stored values in a format version this build does not read (most likely written by a newer
    /// build during a rolling upgrade); each was counted as a miss and left in place.
    pub unknown_format_versions: u64,
}

impl FamilyStats {
    /// `hits / (hits + misses)`, `None` before the first read.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }

    fn add(&mut self, o: &FamilyStats) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.loads += o.loads;
        self.load_errors += o.load_errors;
        self.coalesced += o.coalesced;
        self.writes += o.writes;
        self.store_errors += o.store_errors;
        self.decode_failures += o.decode_failures;
        self.unknown_format_versions += o.unknown_format_versions;
    }
}

/// A snapshot of every family's counters; see [`CacheManager::stats`](crate::CacheManager::stats).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Counters per cache family (every family of [`Family::ALL`] is present).
    pub families: BTreeMap<Family, FamilyStats>,
}

impl CacheStats {
    pub(crate) fn from_counters<'a>(counters: impl Iterator<Item = &'a FamilyCounters>) -> Self {
        Self {
            families: Family::ALL
                .into_iter()
                .zip(counters.map(FamilyCounters::snapshot))
                .collect(),
        }
    }

    /// One family's counters.
    pub fn family(&self, family: Family) -> FamilyStats {
        self.families.get(&family).copied().unwrap_or_default()
    }

    /// The sum over all families.
    pub fn total(&self) -> FamilyStats {
        let mut t = FamilyStats::default();
        for s in self.families.values() {
            t.add(s);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_ratio_and_totals() {
        assert_eq!(FamilyStats::default().hit_ratio(), None);
        let c = FamilyCounters::new(Family::User);
        c.hits.add(3);
        c.misses.inc();
        let s = c.snapshot();
        assert_eq!(s.hit_ratio(), Some(0.75));
        let all = CacheStats::from_counters(std::iter::once(&c));
        assert_eq!(all.family(Family::User).hits, 3);
        assert_eq!(all.total().misses, 1);
        assert_eq!(all.family(Family::Content), FamilyStats::default());
    }
}
