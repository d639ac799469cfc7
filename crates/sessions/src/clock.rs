//! Where session timestamps come from.
//!
//! Every timestamp the manager writes (`created_at`, `last_accessed`, the absolute deadline) and every
//! expiry decision it takes comes from one [`Clock`]. The default, [`TokioClock`], reads the wall
//! clock once and then advances with tokio's monotonic [`Instant`](tokio::time::Instant): it follows
//! `tokio::time::pause()` / `advance()` in tests (so sliding and absolute expiry are tested without
//! sleeping, on the same clock as `cache_memory::MemoryStore`), and in production it is immune to wall
//! clock steps after start. [`SystemClock`] reads the wall clock on every call instead.
//!
//! Instances that share sessions compare each other's timestamps, so their clocks must agree (NTP);
//! the per-user index tolerates a configurable skew (see
//! `SessionManagerBuilder::with_clock_skew_tolerance`).

use std::fmt::Debug;

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;

    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// Wall time read once, then advanced by tokio's monotonic clock: follows `tokio::time::pause()`
/// in tests, immune to wall clock steps after start. See [`Clock`].
///
/// Managers that must agree on time in a test with a paused clock should share one `TokioClock`
/// (clones of a manager do).
#[derive(Debug, Clone)]
pub struct TokioClock {
    anchor_wall: DateTime<Utc>,
    anchor: tokio::time::Instant,
}

impl TokioClock {
    /// Anchors a new clock at the current wall time.
    pub fn new() -> Self {
        Self {
            anchor_wall: Utc::now(),
            anchor: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.anchor);
        // `TimeDelta::from_std` fails only beyond ~292 million years of uptime.
        let delta = chrono::TimeDelta::from_std(elapsed).unwrap_or(chrono::TimeDelta::MAX);
        self.anchor_wall
            .checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// The system wall clock, read on every call (`Utc::now()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let t0 = clock.now_ms();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_ms() - t0, 3_600_000);
    }

    #[test]
    fn system_clock_is_close_to_utc_now() {
        let d = (SystemClock.now() - Utc::now()).num_seconds().abs();
        assert!(d < 5);
    }
}
