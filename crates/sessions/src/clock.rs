//! Where session timestamps come from.
//!
//! Every timestamp the manager writes (`created_at`, `last_accessed`, the absolute deadline) and every
//! expiry decision it takes comes from one [`Clock`]. Instances that share sessions compare each
//! other's timestamps, so in production every instance reads the **wall clock**: the default,
//! [`SystemClock`], reads it on every call, so a step of the system clock (an NTP correction, a VM
//! resumed after a pause or a suspend) is followed at once, and instances agree as far as NTP keeps
//! their clocks in sync. The per-user index tolerates a configurable skew (see
//! `SessionManagerBuilder::with_clock_skew_tolerance`).
//!
//! [`TokioClock`] is for tests: it reads the wall clock once and then advances with tokio's
//! monotonic [`Instant`](tokio::time::Instant), so it follows `tokio::time::pause()` / `advance()`
//! (on the same clock as `cache_memory::MemoryStore`'s TTLs) and expiry is tested without sleeping.
//! Never use it in production: it does not follow wall clock steps, so its deadlines drift away
//! from other instances' after a VM pause or an NTP step.

use std::fmt::Debug;

use chrono::{DateTime, Utc};

/// A source of the current time.
///
/// Production instances use the wall clock, [`SystemClock`] (the default): instances compare each
/// other's timestamps, and the wall clock is what NTP keeps in agreement across machines, steps
/// included. [`TokioClock`] follows tokio's paused clock, for tests.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;

    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// For tests on a paused tokio clock: wall time read once, then advanced by tokio's monotonic clock,
/// so it follows `tokio::time::pause()` / `advance()`. It never re-reads the wall clock, so it
/// drifts from other instances after a VM pause, a suspend or an NTP step: not for production (the
/// default, [`SystemClock`], is). See [`Clock`].
///
/// Managers that must agree on time in a test with a paused clock should share one `TokioClock`
/// (clones of a manager do): `with_clock(Arc::new(TokioClock::new()))`.
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

/// The system wall clock, read on every call (`Utc::now()`): the default clock of a
/// [`SessionManager`](crate::SessionManager). It follows every step of the system clock.
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

    /// Issue 12, item 5: the clock a manager gets by default is the wall clock. Under a paused
    /// tokio clock the monotonic clock runs two hours ahead here while wall time does not move: the
    /// default clock stays with wall time (a clock derived from the monotonic one would not).
    #[tokio::test(start_paused = true)]
    async fn the_default_clock_is_wall_time() {
        let manager = crate::SessionManager::new(cache_memory::MemoryStore::default());
        tokio::time::advance(Duration::from_secs(2 * 3600)).await;
        let drift = (manager.clock().now() - Utc::now()).num_seconds().abs();
        assert!(
            drift < 60,
            "the default clock is {drift} s away from wall time"
        );
    }

    #[test]
    fn system_clock_is_close_to_utc_now() {
        let d = (SystemClock.now() - Utc::now()).num_seconds().abs();
        assert!(d < 5);
    }
}
