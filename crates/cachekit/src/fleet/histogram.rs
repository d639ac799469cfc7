//! A lock-free latency histogram: a fixed array of atomic buckets in microseconds.
//!
//! Recording is one relaxed atomic add (no lock, no allocation), so it can sit on every store call.
//! Buckets are log-linear: exact below 16 µs, then 8 buckets per power of two, so a quantile read
//! from the buckets is at most 12.5 % above the true value. Values of an hour or more land in the
//! last bucket. Snapshots subtract ([`LatencySnapshot::since`]) to give the latency of a window,
//! and travel in the heartbeat as sparse `(upper bound, count)` pairs that merge across instances
//! ([`quantile_of_buckets`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two (as a bit count): 3 bits = 8 sub-buckets, 12.5 % resolution.
const SUB_BITS: u32 = 3;
/// Values below this many microseconds have a bucket each.
const LINEAR: u64 = 16;
/// The largest power of two with buckets of its own: 2^31 µs is about 36 minutes.
const MAX_EXP: u32 = 31;
/// Number of buckets: the linear ones, then 8 per power of two from 2^4 to 2^MAX_EXP.
pub(crate) const BUCKETS: usize = LINEAR as usize + ((MAX_EXP - 3) as usize) * (1 << SUB_BITS);

/// The bucket a value in microseconds falls in.
fn bucket_of(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // floor(log2(us)), at least 4
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (us >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    LINEAR as usize + ((exp - 4) as usize) * (1 << SUB_BITS) + sub as usize
}

/// The largest value (µs) of a bucket: what a quantile falling in it reports.
fn upper_bound_of(bucket: usize) -> u64 {
    if bucket < LINEAR as usize {
        return bucket as u64;
    }
    let i = bucket - LINEAR as usize;
    let exp = (i >> SUB_BITS) as u32 + 4;
    let sub = (i & ((1 << SUB_BITS) - 1)) as u64;
    (((1 << SUB_BITS) + sub + 1) << (exp - SUB_BITS)) - 1
}

/// A histogram of durations, safe to record into from any number of threads at once.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one duration (rounded down to whole microseconds).
    #[inline]
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far. Not a consistent cut across buckets (recording goes on meanwhile), which
    /// only matters for a record or two at the edges of a window.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Bucket counts of a [`LatencyHistogram`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySnapshot {
    counts: Vec<u64>,
}

impl Default for LatencySnapshot {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
        }
    }
}

impl LatencySnapshot {
    /// What was recorded between `earlier` and this snapshot.
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        LatencySnapshot {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(now, then)| now.saturating_sub(*then))
                .collect(),
        }
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (`0.5` = median, `0.99`), as the upper bound of its bucket; `None` when
    /// empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile_of_buckets(&self.to_buckets(), q).map(Duration::from_micros)
    }

    /// The non-empty buckets as `(upper bound in µs, count)`, lowest first: the heartbeat's compact
    /// form, which merges across instances by adding counts of equal bounds.
    pub fn to_buckets(&self) -> Vec<(u64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (upper_bound_of(i), *n))
            .collect()
    }
}

/// The `q` quantile (µs) of sparse `(upper bound µs, count)` buckets (in any order, bounds may
/// repeat, as after concatenating several instances' buckets); `None` when they are empty.
pub fn quantile_of_buckets(buckets: &[(u64, u64)], q: f64) -> Option<u64> {
    let mut sorted: Vec<(u64, u64)> = buckets.to_vec();
    sorted.sort_unstable();
    let total: u64 = sorted.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    // The rank of the quantile, 1-based: the smallest bucket whose running count reaches it.
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (upper, n) in sorted {
        seen += n;
        if seen >= rank {
            return Some(upper);
        }
    }
    // Unreachable in practice (the last bucket brings `seen` to `total >= rank`); answer the top.
    buckets.iter().map(|(u, _)| *u).max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut previous_upper = None::<u64>;
        for b in 0..BUCKETS {
            let upper = upper_bound_of(b);
            if let Some(p) = previous_upper {
                assert_eq!(
                    bucket_of(p + 1),
                    b,
                    "value after bucket {} starts bucket {b}",
                    b - 1
                );
                assert!(upper > p);
            }
            assert_eq!(bucket_of(upper), b, "upper bound of {b} is in {b}");
            previous_upper = Some(upper);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(15), 15);
        assert_eq!(bucket_of(16), 16);
    }

    #[test]
    fn quantiles_are_within_the_bucket_resolution() {
        let h = LatencyHistogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        let p50 = s.quantile(0.5).unwrap().as_micros() as f64;
        let p99 = s.quantile(0.99).unwrap().as_micros() as f64;
        assert!((500.0..=500.0 * 1.125).contains(&p50), "p50 {p50}");
        assert!((990.0..=990.0 * 1.125).contains(&p99), "p99 {p99}");
        assert_eq!(LatencySnapshot::default().quantile(0.5), None);
    }

    #[test]
    fn windows_subtract_and_sparse_buckets_merge() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_micros(100));
        let first = h.snapshot();
        h.record(Duration::from_micros(5000));
        h.record(Duration::from_micros(5000));
        let window = h.snapshot().since(&first);
        assert_eq!(window.count(), 2);
        assert!(window.quantile(0.5).unwrap() >= Duration::from_micros(5000));

        let mut merged = first.to_buckets();
        merged.extend(window.to_buckets());
        assert_eq!(
            quantile_of_buckets(&merged, 0.0),
            Some(first.to_buckets()[0].0)
        );
        assert!(quantile_of_buckets(&merged, 0.99).unwrap() >= 5000);
        assert_eq!(quantile_of_buckets(&[], 0.5), None);
    }

    #[test]
    fn huge_durations_land_in_the_last_bucket() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_secs(365 * 86_400));
        assert_eq!(h.snapshot().to_buckets()[0].0, upper_bound_of(BUCKETS - 1));
    }
}
