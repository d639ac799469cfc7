//! What the chaos scenarios measure over time: completions and the longest calls per 50 ms
//! bucket ([`Timeline`], read as [`TimelineData`]), and the store wrapper that times every store
//! call into it ([`Instrumented`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::layer::{Layered, Op, StoreHook};
use cache_core::{Error, Store};

use super::STORE_FAILURES;

/// Width of one timeline bucket.
pub const BUCKET: Duration = Duration::from_millis(50);
/// Buckets per recovery window (250 ms).
pub const WINDOW_BUCKETS: usize = 5;
/// Counters over time since the scenario started: ok and failed completions per bucket (by end
/// time), and the longest call started in each bucket.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    ok: Vec<AtomicU64>,
    failed: Vec<AtomicU64>,
    longest_call_us: Vec<AtomicU64>,
    longest_store_us: Vec<AtomicU64>,
}

fn atomics(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Timeline {
    /// A timeline starting now, long enough for `span`.
    pub fn new(span: Duration) -> Timeline {
        let n = (span.as_millis() / BUCKET.as_millis()) as usize + 1;
        Timeline {
            start: Instant::now(),
            ok: atomics(n),
            failed: atomics(n),
            longest_call_us: atomics(n),
            longest_store_us: atomics(n),
        }
    }

    /// The bucket of an instant (the last one for instants past the span).
    pub fn bucket(&self, at: Instant) -> usize {
        let i =
            (at.saturating_duration_since(self.start).as_millis() / BUCKET.as_millis()) as usize;
        i.min(self.ok.len() - 1)
    }

    /// Time since the start.
    pub fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }

    fn micros(d: Duration) -> u64 {
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
    }

    /// Records a finished library call.
    pub fn call(&self, started: Instant, ended: Instant, ok: bool) {
        let counts = if ok { &self.ok } else { &self.failed };
        counts[self.bucket(ended)].fetch_add(1, Ordering::Relaxed);
        self.longest_call_us[self.bucket(started)]
            .fetch_max(Self::micros(ended - started), Ordering::Relaxed);
    }

    /// Records a finished store call.
    pub fn store_call(&self, started: Instant, ended: Instant) {
        self.longest_store_us[self.bucket(started)]
            .fetch_max(Self::micros(ended - started), Ordering::Relaxed);
    }

    fn load(v: &[AtomicU64]) -> Vec<u64> {
        v.iter().map(|a| a.load(Ordering::Relaxed)).collect()
    }

    /// A plain copy of the counters.
    pub fn snapshot(&self) -> TimelineData {
        TimelineData {
            ok: Self::load(&self.ok),
            failed: Self::load(&self.failed),
            longest_call_us: Self::load(&self.longest_call_us),
            longest_store_us: Self::load(&self.longest_store_us),
        }
    }
}

/// The counters of a [`Timeline`], one entry per [`BUCKET`].
#[derive(Debug, Clone, Default)]
pub struct TimelineData {
    /// Ok completions per bucket.
    pub ok: Vec<u64>,
    /// Failed completions per bucket.
    pub failed: Vec<u64>,
    /// Longest library call started in each bucket, µs.
    pub longest_call_us: Vec<u64>,
    /// Longest store call started in each bucket, µs.
    pub longest_store_us: Vec<u64>,
}

pub(super) fn bucket_of(offset: Duration) -> usize {
    (offset.as_millis() / BUCKET.as_millis()) as usize
}

impl TimelineData {
    /// Ok completions per second over buckets `from..to`.
    pub fn ok_rate(&self, from: usize, to: usize) -> f64 {
        let to = to.min(self.ok.len());
        if to <= from {
            return 0.0;
        }
        let n: u64 = self.ok[from..to].iter().sum();
        n as f64 / (BUCKET.as_secs_f64() * (to - from) as f64)
    }

    /// Time from `returned` until the end of the first [`WINDOW_BUCKETS`] window, starting at or
    /// after the bucket of `returned`, whose ok rate reaches `fraction` of `baseline`. `None`: never
    /// within the recorded time.
    pub fn recovery(&self, returned: Duration, baseline: f64, fraction: f64) -> Option<Duration> {
        let first = bucket_of(returned);
        (first..self.ok.len().saturating_sub(WINDOW_BUCKETS - 1))
            .find(|&i| self.ok_rate(i, i + WINDOW_BUCKETS) >= fraction * baseline)
            .map(|i| (BUCKET * (i + WINDOW_BUCKETS) as u32).saturating_sub(returned))
    }

    /// The longest call in flight at some time in `from..=to`, from the per-bucket maxima of
    /// `longest` (a call started in bucket `b` with duration `d` is in flight from the bucket's start
    /// to about `start + d`).
    pub fn longest_in_flight(longest: &[u64], from: Duration, to: Duration) -> Duration {
        let last = bucket_of(to).min(longest.len().saturating_sub(1));
        (0..=last)
            .filter_map(|b| {
                let d = Duration::from_micros(longest[b]);
                let started = BUCKET * b as u32;
                // The call may have started anywhere in its bucket: count it when it could overlap.
                (started + BUCKET + d >= from && longest[b] > 0).then_some(d)
            })
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// A [`Store`] that times every call of the store under it into a [`Timeline`] and counts failed
/// calls in [`STORE_FAILURES`] (when the calling task has one): the store under a [`StoreTimer`].
pub type Instrumented = Layered<Arc<dyn Store>, StoreTimer>;

/// The hook of [`Instrumented`].
#[derive(Debug)]
pub struct StoreTimer {
    timeline: Arc<Timeline>,
}

impl StoreTimer {
    /// Records into `timeline`.
    pub fn new(timeline: Arc<Timeline>) -> StoreTimer {
        StoreTimer { timeline }
    }
}

impl StoreHook for StoreTimer {
    fn after(&self, _op: &Op<'_>, elapsed: Duration, outcome: cache_core::Result<(), &Error>) {
        let ended = Instant::now();
        self.timeline
            .store_call(ended.checked_sub(elapsed).unwrap_or(ended), ended);
        if outcome.is_err() {
            // Outside a load task (preload, verification) there is no counter: nothing to count.
            let _ = STORE_FAILURES.try_with(|c| c.set(c.get() + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(ok: &[u64]) -> TimelineData {
        TimelineData {
            ok: ok.to_vec(),
            failed: vec![0; ok.len()],
            longest_call_us: vec![0; ok.len()],
            longest_store_us: vec![0; ok.len()],
        }
    }

    #[test]
    fn recovery_is_the_end_of_the_first_good_window() {
        // 100 ok per bucket = 2000/s before, nothing for 10 buckets, then ramping back.
        let mut ok = vec![100; 20];
        ok.extend([0; 10]);
        ok.extend([20, 50, 90, 95, 95, 95, 95, 95, 95, 95]);
        let d = data(&ok);
        assert_eq!(d.ok_rate(0, 20), 2000.0);
        let returned = BUCKET * 30;
        // Windows from bucket 30: [20,50,90,95,95] = 350 < 450; [50,90,95,95,95] = 425 < 450;
        // [90,95,95,95,95] = 470 >= 450 -> window 32..37 ends at bucket 37.
        assert_eq!(d.recovery(returned, 2000.0, 0.9), Some(BUCKET * 7));
        assert_eq!(d.recovery(returned, 3000.0, 0.9), None);
    }

    #[test]
    fn longest_in_flight_counts_calls_overlapping_the_window() {
        let mut d = data(&[0; 100]);
        d.longest_call_us[2] = 50_000; // before the window, ended long before
        d.longest_call_us[38] = 1_500_000; // started before the fault, still running in it
        d.longest_call_us[90] = 3_000_000; // after the window
        let from = BUCKET * 40;
        let to = BUCKET * 80;
        let got = TimelineData::longest_in_flight(&d.longest_call_us, from, to);
        assert_eq!(got, Duration::from_millis(1_500));
    }
}
