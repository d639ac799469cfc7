//! One deadline per cache manager call (`CACHE_CALL_TIMEOUT`): the [`Budget`] its store calls
//! spend, and what a call answers when its deadline passes first (a miss for reads, the write
//! policy for writes, the timeout error for the rest).

use std::future::Future;
use std::time::Duration;

use cache_core::deadline::{self, Deadline};
use cache_core::{Error, Result, Store};

use crate::config::CALL_TIMEOUT_VAR;
use crate::engine::Inner;
use crate::family::Family;

/// What is left of one call's deadline (`CACHE_CALL_TIMEOUT`), spent by the call's store calls:
/// each runs inside a [`deadline::scope`] of what is left (so that the store ends it there) and is
/// cut by the runtime's timer at the same point for stores that do not. Time spent outside
/// [`Budget::spend`] (a `get_or_load` loader, the wait for another caller's load) is not counted.
#[derive(Debug)]
pub(crate) struct Budget {
    left: Duration,
    started: std::time::Instant,
    /// The store ends its calls at the deadline itself ([`Store::ends_calls_at_deadline`]): no
    /// timer of ours races them (one timer fewer per call).
    store_ends_calls: bool,
}

impl Budget {
    pub(crate) fn new(total: Duration, store_ends_calls: bool) -> Self {
        Self {
            left: total,
            started: std::time::Instant::now(),
            store_ends_calls,
        }
    }

    /// Whether anything is left.
    pub(crate) fn is_spent(&self) -> bool {
        self.left.is_zero()
    }

    /// Runs `fut` within what is left; `None` when the deadline passed first (the future was
    /// dropped).
    pub(crate) async fn spend<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        // tokio's clock, so that a paused test clock spends the budget too.
        let started = tokio::time::Instant::now();
        let d = Deadline::after(self.left, CALL_TIMEOUT_VAR);
        let out = if self.store_ends_calls {
            Some(deadline::scope(d, fut).await)
        } else {
            tokio::time::timeout(self.left, deadline::scope(d, fut))
                .await
                .ok()
        };
        self.left = self.left.saturating_sub(started.elapsed());
        out
    }

    /// The timeout error of `op` ended by this budget.
    pub(crate) fn timeout(&self, op: &str) -> Error {
        timeout_error(op, self.started.elapsed())
    }
}

/// The timeout error of the cache call `op`, `elapsed` after it started.
fn timeout_error(op: &str, elapsed: Duration) -> Error {
    Error::Timeout {
        operation: format!("cache {op}"),
        elapsed,
        setting: CALL_TIMEOUT_VAR,
    }
}

impl<S: Store> Inner<S> {
    /// Runs one public call within the call timeout; when the deadline passes first,
    /// `on_timeout` decides the answer (a miss for reads, the write policy for writes, the
    /// timeout error for the rest).
    ///
    /// A plain function returning [`deadline::bound_after`]'s future: an `async fn` would hold
    /// the call's future twice, and moving a future that size is part of every call's cost.
    ///
    /// No clock read here on the hot path: the deadline starts when the call's first store call
    /// asks for it (`deadline::scope_after`), so a hit on the in-memory store reads no clock for
    /// it and a call on Redis reads it once, in the store.
    pub(crate) fn bounded<'a, T: 'a>(
        &'a self,
        op: &'static str,
        call: impl Future<Output = Result<T>> + 'a,
        on_timeout: impl FnOnce(Error) -> Result<T> + 'a,
    ) -> impl Future<Output = Result<T>> + 'a {
        let total = self.config.call_timeout();
        // A store that ends its calls at the deadline needs no timer of ours. Relative, not
        // `sleep_until`: a std instant would sit in the past of a paused and advanced tokio clock.
        let timer = (!self.store.ends_calls_at_deadline()).then(|| tokio::time::sleep(total));
        deadline::bound_after(total, CALL_TIMEOUT_VAR, timer, call, move |elapsed| {
            on_timeout(timeout_error(op, elapsed))
        })
    }

    /// The answer of a read whose deadline passed: a miss, counted and logged like a failed read.
    pub(crate) fn read_timed_out(&self, family: Family, e: &Error, n: u64) {
        let fs = self.fs(family);
        self.store_failed(fs, "read", e);
        fs.stats.misses.add(n);
    }

    /// The answer of a write whose deadline passed: what the write policy says.
    pub(crate) fn write_timed_out(&self, family: Family, e: Error) -> Result<()> {
        self.write_failed(self.fs(family), e)
    }
}
