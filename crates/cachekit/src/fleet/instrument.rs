//! Store-call statistics: [`CallStats`] is a [`StoreHook`] that records every call's latency and
//! outcome and publishes the same through the `metrics` facade; [`InstrumentedStore`] is any store
//! wrapped in it with [`cache_core::layer::Layered`], the one way to put a hook around a store.
//!
//! # Why around the trait
//!
//! Latency is a property of the call as the application sees it (retries, reconnects and the
//! cluster's redirections included), so it is measured around the `Store` trait, the same way for
//! every backend, and costs nothing when the fleet heartbeat is off (the store is then not wrapped).
//! The layer measures wall-clock time from just before the inner call to its answer, which is what
//! this instrumentation wants.
//!
//! # Cost
//!
//! Two `Instant::now()` reads, three relaxed atomic adds and one `metrics` histogram record per
//! call, plus the boxed futures of the extra `async_trait` hops (the layer's method and the hook's
//! no-op `before`). Errors additionally register an error counter by label (rare by nature).
//!
//! # Metrics
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `cache_store_call_duration_seconds` | histogram | `op` | Duration of each store call, retries included |
//! | `cache_store_call_errors_total` | counter | `op`, `kind` | Store calls that returned an error, by error kind |
//!
//! The `op` label is [`Method::as_str`], the `Store` method's name.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::layer::{Layered, Method, Op, StoreHook};
use cache_core::{async_trait, Error, ErrorKind, Result, Store};

use super::histogram::{LatencyHistogram, LatencySnapshot};

/// Latency and outcome counters of store calls, shared between the layer that records (it is the
/// [`StoreHook`] of an [`InstrumentedStore`]) and the heartbeat that reports. All relaxed atomics:
/// recording never blocks.
pub struct CallStats {
    latency: LatencyHistogram,
    calls: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    /// One `metrics` histogram per method, registered once so that recording is a handle call
    /// and no registry lookup (indexed like [`Method::ALL`]).
    durations: Vec<metrics::Histogram>,
}

impl fmt::Debug for CallStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallStats")
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .field("errors", &self.errors.load(Ordering::Relaxed))
            .field("timeouts", &self.timeouts.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for CallStats {
    fn default() -> Self {
        describe_metrics();
        Self {
            latency: LatencyHistogram::new(),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            durations: Method::ALL
                .iter()
                .map(|m| metrics::histogram!("cache_store_call_duration_seconds", "op" => m.as_str()))
                .collect(),
        }
    }
}

/// Describes the metrics once per process (units and help texts for exporters).
fn describe_metrics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_histogram!(
            "cache_store_call_duration_seconds",
            metrics::Unit::Seconds,
            "Duration of each store call as the application sees it, retries included."
        );
        metrics::describe_counter!(
            "cache_store_call_errors_total",
            metrics::Unit::Count,
            "Store calls that returned an error, by operation and error kind."
        );
    });
}

impl CallStats {
    /// Empty statistics. Install the `metrics` recorder before this, as for the cache manager:
    /// handles taken before a recorder exists stay no-ops (the snapshot counters work either way).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one call of `method` that took `elapsed` and ended in `outcome`.
    fn record(&self, method: Method, elapsed: Duration, outcome: Option<ErrorKind>) {
        self.latency.record(elapsed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        // `durations` was built from `Method::ALL`, which `index` is a position in.
        if let Some(h) = self.durations.get(method.index()) {
            h.record(elapsed.as_secs_f64());
        }
        if let Some(kind) = outcome {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if kind == ErrorKind::Timeout {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            metrics::counter!("cache_store_call_errors_total", "op" => method.as_str(), "kind" => kind.as_str())
                .increment(1);
        }
    }

    /// The counters so far.
    pub fn snapshot(&self) -> CallStatsSnapshot {
        CallStatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            latency: self.latency.snapshot(),
        }
    }
}

/// [`CallStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallStatsSnapshot {
    /// Calls completed.
    pub calls: u64,
    /// Calls that returned an error of any kind (timeouts included).
    pub errors: u64,
    /// Calls that returned [`cache_core::Error::Timeout`].
    pub timeouts: u64,
    /// Their latencies.
    pub latency: LatencySnapshot,
}

impl CallStatsSnapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &CallStatsSnapshot) -> CallStatsSnapshot {
        CallStatsSnapshot {
            calls: self.calls.saturating_sub(earlier.calls),
            errors: self.errors.saturating_sub(earlier.errors),
            timeouts: self.timeouts.saturating_sub(earlier.timeouts),
            latency: self.latency.since(&earlier.latency),
        }
    }
}

/// The layer's hook: every call's latency and outcome go into the statistics. `before` is the
/// default no-op; the layer does the timing.
#[async_trait]
impl StoreHook for CallStats {
    fn after(&self, op: &Op<'_>, elapsed: Duration, outcome: Result<(), &Error>) {
        self.record(op.method, elapsed, outcome.err().map(Error::kind));
    }
}

/// A [`Store`] that hands every call to `S` and records its latency and outcome in a shared
/// [`CallStats`]: [`Layered`] with the statistics as its hook. `prefix` and `backend_name` are the
/// inner store's.
///
/// Build one with [`instrument`] (fresh statistics) or `InstrumentedStore::new(inner, stats)`
/// (statistics shared by several stores); [`Layered::hook`] is the statistics, [`Layered::inner`]
/// the wrapped store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cachekit::Error> {
/// use std::sync::Arc;
/// use cachekit::fleet::{instrument, CallStats, InstrumentedStore};
/// use cachekit::Store;
///
/// // Fresh statistics...
/// let store = instrument(cachekit::MemoryStore::default());
/// store.get("k").await?;
/// assert_eq!(store.hook().snapshot().calls, 1);
///
/// // ...or statistics shared by several stores.
/// let stats = Arc::new(CallStats::new());
/// let a = InstrumentedStore::new(cachekit::MemoryStore::default(), Arc::clone(&stats));
/// let b = InstrumentedStore::new(cachekit::MemoryStore::default(), Arc::clone(&stats));
/// a.get("k").await?;
/// b.get("k").await?;
/// assert_eq!(stats.snapshot().calls, 2);
/// # Ok(()) }
/// ```
pub type InstrumentedStore<S> = Layered<S, Arc<CallStats>>;

/// Wraps `inner` with fresh statistics (read them with [`Layered::hook`]).
pub fn instrument<S: Store>(inner: S) -> InstrumentedStore<S> {
    Layered::new(inner, Arc::new(CallStats::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::layer::Target;

    #[test]
    fn errors_and_timeouts_are_counted_and_latency_recorded() {
        let stats = CallStats::new();
        let get = Op::new(Method::Get, Target::Key("k"));
        stats.after(&get, Duration::from_micros(50), Ok(()));
        let timeout = Error::Timeout {
            operation: "GET".into(),
            elapsed: Duration::from_millis(5),
            setting: "REDIS_RESPONSE_TIMEOUT",
        };
        stats.after(&get, Duration::from_millis(5), Err(&timeout));
        let set = Op::new(Method::Set, Target::Key("k"));
        stats.after(
            &set,
            Duration::from_micros(80),
            Err(&Error::backend("boom")),
        );
        let s = stats.snapshot();
        assert_eq!((s.calls, s.errors, s.timeouts), (3, 2, 1));
        assert_eq!(s.latency.count(), 3);
        let later = stats.snapshot();
        assert_eq!(later.since(&s).calls, 0);
    }

    #[test]
    fn every_method_has_a_handle() {
        let stats = CallStats::new();
        assert_eq!(stats.durations.len(), Method::ALL.len());
    }

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn the_layer_records_every_call_of_the_inner_store() {
        let store = instrument(crate::MemoryStore::default());
        store
            .set("k", b"v", cache_core::SetOptions::new())
            .await
            .unwrap();
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        // An empty key is refused by the store: a failed call, counted as an error.
        assert!(store.get("").await.is_err());
        let s = store.hook().snapshot();
        assert_eq!((s.calls, s.errors, s.timeouts), (3, 1, 0));
        assert_eq!(store.backend_name(), store.inner().backend_name());
    }
}
