//! A small log-linear latency histogram (the idea of HdrHistogram, without the dependency).
//!
//! Values are nanoseconds. Values below 128 have their own bucket; above, each power of two is split
//! into 64 equal buckets, so a recorded value is known to within 1/64 (< 1.6 %) of itself. Recording
//! is an index computation and an increment (no allocation on the hot path), histograms of several
//! tasks merge by adding counts, and the whole table is 4,224 counters (33 KiB), whatever the number
//! of samples. That precision is far finer than the run-to-run noise of a benchmark on a shared
//! machine, which is why a full HdrHistogram (configurable significant figures, serialization) is
//! not worth a dependency here.

/// Values below this are counted exactly.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above [`LINEAR`].
const SUB: u64 = 64;
/// log2 of [`SUB`].
const SUB_BITS: u32 = 6;
/// Number of buckets: the linear part plus 64 sub-buckets for each of the 64 - 7 higher powers of
/// two (rounded up to a round figure).
const BUCKETS: usize = (LINEAR + SUB * 64) as usize;

/// A latency histogram in nanoseconds. See the [module documentation](self).
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
    sum: u128,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    // v >= 128, so its highest set bit e is at least 7 and shift at least 1.
    let e = 63 - v.leading_zeros();
    let shift = e - SUB_BITS;
    // (v >> shift) is in [64, 128): the sub-bucket within this power of two, offset by 64.
    (u64::from(shift) * SUB + (v >> shift)) as usize
}

/// The middle of the values that land in bucket `i`.
fn value_of(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = i / SUB - 1;
    let sub = i - shift * SUB;
    let low = sub << shift;
    low + ((1u64 << shift) >> 1)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    /// Records one value (nanoseconds).
    pub fn record(&mut self, nanos: u64) {
        // Values too large for the table (more than ~2^69 ns cannot happen with u64) saturate into
        // the last bucket; `index` of u64::MAX is the last one.
        let i = index(nanos).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
        self.sum += u128::from(nanos);
    }

    /// Records a duration.
    pub fn record_duration(&mut self, d: std::time::Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every count of `other` to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += *b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded value (exact), 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the recorded values (exact), 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1): the smallest bucket value such that at least `q` of the
    /// samples are at or below its bucket. 0 when empty; never above [`Histogram::max`].
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_precise() {
        let mut last = 0;
        for v in (0..1_000_000u64).chain([u32::MAX as u64, 1 << 40, u64::MAX / 2]) {
            let i = index(v);
            assert!(i >= last, "index must not decrease ({v})");
            assert!(i <= last + 1 || v > 1_000_000, "no gaps below 1e6 ({v})");
            last = i;
            let mid = value_of(i);
            let err = mid.abs_diff(v) as f64 / (v.max(1)) as f64;
            assert!(err <= 1.0 / 64.0, "{v} -> bucket {i} value {mid}");
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1_000);
        }
        assert_eq!(h.count(), 10_000);
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.02, "p50 {p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.02, "p99 {p99}");
        assert_eq!(h.max(), 10_000_000);
        assert_eq!(h.quantile(1.0), 10_000_000);
        assert!((h.mean() - 5_000_500.0).abs() < 1.0);
    }

    #[test]
    fn merge_adds_counts() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        a.record(100);
        b.record(1_000_000);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max(), 1_000_000);
        assert_eq!(a.quantile(0.34), a.quantile(1.0));
        assert_eq!(a.quantile(0.33), 100);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
