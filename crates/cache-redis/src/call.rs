//! The call runner: one store call from the first attempt to its answer, with the outer timer and
//! the retries ([`Connections::run`]), and the time limits it and the slots work with ([`Limits`]).
//!
//! Every call is bounded: a first attempt on a ready standalone connection by redis-rs's response
//! timeout, everything else (reconnects, retries, cluster calls) by [`Limits::call_cap`] through one
//! outer `tokio::time::timeout` counted from the start of the call (the first attempt's time
//! included). When the call runs inside a library call's deadline (`cache_core::deadline::current`)
//! that ends earlier, the deadline is the end instead: the response timeout of each attempt and
//! the retry budget are cut to what is left, and the error names the deadline's setting. Whether a
//! failed attempt is repeated is decided by [`retry::retry_delay`] alone.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Error, Result};
use redis::RedisError;

use crate::config::{RedisConfig, RetryConfig};
use crate::conn::Conn;
use crate::manager::{sentinel_open_cap, BACKSTOP};
use crate::retry::{self, Failed, Idempotency};
use crate::slots::Connections;

impl Connections {
    /// Runs one command with the store's timeouts and retry policy.
    ///
    /// `f` gets a connection clone and returns the command's future; it may be called again for a
    /// retry. Errors are mapped with `op` and `key` for the message.
    ///
    /// Fast path (one server): the first attempt on a ready connection runs without the outer call
    /// cap, because redis-rs's per-request response timeout already bounds it (cut to the time
    /// left when a deadline is nearer); a second timer per call was a measurable part of the
    /// client's CPU (benchmark profile). Reconnects and retries run under the outer cap, whose end
    /// counts from the start of the call. A cluster connection re-sends internally, so cluster
    /// calls always run under the cap.
    #[allow(clippy::manual_async_fn)] // on purpose: see the first comment of the body
    pub(crate) fn run<'a, T, F, Fut>(
        self: &'a Arc<Self>,
        op: &'static str,
        key: Option<&'a str>,
        idempotency: Idempotency,
        mut f: F,
    ) -> impl Future<Output = Result<T>> + 'a
    where
        T: 'a,
        F: FnMut(Conn) -> Fut + 'a,
        Fut: Future<Output = std::result::Result<T, RedisError>> + 'a,
    {
        // What this future holds while the command is out is kept small on purpose: every call
        // allocates it (boxed by the `Store` trait), and a store `get` had grown to 2.6 KiB of
        // mostly slow-path state, past glibc's per-thread cache of small blocks. Hence a plain
        // `fn` returning an `async` block (an `async fn` stores its arguments twice), the slow
        // path in a box of its own, and the connection's locals in a block that ends before the
        // command is awaited.
        async move {
            let call = Call::begin(self, op)?;
            // The slot of the first attempt; if it is not ready, the slow path refills this same
            // slot (picking another one would leave it empty for as long as traffic alternates).
            let idx = self.pick();
            let (attempt, generation) = {
                let (mut conn, generation) = match (self.is_cluster(), self.ready(idx)) {
                    (false, Some(ready)) => ready,
                    _ => {
                        let slow = self.run_slow(op, key, idempotency, call, f, Some(idx), None);
                        return Box::pin(slow).await;
                    }
                };
                // Without a deadline shorter than the response timeout this does nothing: the
                // response timeout bounds the first attempt. Counted from the start (a clock
                // read fewer; the attempt starts within microseconds of it).
                let left = call.end.saturating_duration_since(call.start);
                if left < self.limits().response_timeout {
                    conn.set_response_timeout(left.max(Duration::from_millis(1)));
                }
                (f(conn), generation)
            };
            let e = match attempt.await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let sent = !refused_unapplied(&e);
            let err = self.failed(idx, generation, e, op, key, call.start);
            let failed = self.describe(&err, 1, sent, idempotency, call.start);
            let Some(delay) = retry::retry_delay(&call.retry(self.limits()), failed) else {
                return Err(call.name_the_end(err));
            };
            let slow = self.run_slow(op, key, idempotency, call, f, None, Some((err, delay)));
            Box::pin(slow).await
        }
    }

    /// The rest of [`Connections::run`] after the fast path: acquiring (refilling) a slot, the
    /// retries with their backoff, all under one timer counted from the start of the call.
    #[allow(clippy::too_many_arguments)] // the fast path's state, handed over as it is
    async fn run_slow<T, F, Fut>(
        self: &Arc<Self>,
        op: &'static str,
        key: Option<&str>,
        idempotency: Idempotency,
        call: Call,
        mut f: F,
        mut first_slot: Option<usize>,
        mut pending: Option<(Error, Duration)>,
    ) -> Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = std::result::Result<T, RedisError>>,
    {
        let start = call.start;
        let retry = call.retry(self.limits());
        let work = async {
            let mut attempt: u32 = 1;
            loop {
                if let Some((err, delay)) = pending.take() {
                    tracing::debug!(target: "cache_redis", op, attempt, error = %err, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                let idx = first_slot.take().unwrap_or_else(|| self.pick());
                let (err, sent) = match self.acquire(idx).await {
                    Err(e) => (e, false),
                    Ok((mut conn, generation)) => {
                        if attempt > 1 {
                            // Keep the last attempts inside the budget.
                            let left = retry.budget.saturating_sub(start.elapsed());
                            if left < self.limits().response_timeout {
                                conn.set_response_timeout(left.max(Duration::from_millis(1)));
                            }
                        }
                        match f(conn).await {
                            Ok(v) => return Ok(v),
                            Err(e) => {
                                let sent = !refused_unapplied(&e);
                                (self.failed(idx, generation, e, op, key, start), sent)
                            }
                        }
                    }
                };
                let failed = self.describe(&err, attempt, sent, idempotency, start);
                match retry::retry_delay(&retry, failed) {
                    Some(delay) => pending = Some((err, delay)),
                    None => return Err(call.name_the_end(err)),
                }
            }
        };
        // One timer for the whole call, counted from its start (the first attempt included). A
        // relative timeout, not `timeout_at(from_std(end))`: on a paused tokio clock that was
        // advanced, a std instant maps into tokio's past and would fire at once.
        let left = call.end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                operation: format!("{op} on {}", self.target()),
                elapsed: start.elapsed(),
                setting: call.end_setting,
            }),
        }
    }

    /// What the retry decision needs to know about a failed attempt.
    fn describe<'a>(
        &self,
        error: &'a Error,
        attempt: u32,
        sent: bool,
        idempotency: Idempotency,
        start: Instant,
    ) -> Failed<'a> {
        Failed {
            error,
            attempt,
            sent,
            idempotency,
            elapsed: start.elapsed(),
            // Only an attempt that was never sent waits for a reconnect (the slot locks are read
            // on failures only).
            reconnect_in: (!sent)
                .then(|| self.earliest_reconnect())
                .flatten()
                .map(|at| at.saturating_duration_since(Instant::now())),
        }
    }
}

/// Whether the server refused the command without applying it, so that repeating it cannot apply
/// it twice: `READONLY` (a write sent to a node that was turned into a replica, as after a Sentinel
/// failover). Such an attempt counts as not sent.
fn refused_unapplied(e: &RedisError) -> bool {
    e.code() == Some("READONLY")
}

/// When one call started and when it must end, shared by its attempts.
#[derive(Clone, Copy)]
struct Call {
    start: Instant,
    /// The store's call cap, or the deadline of the library call when that ends earlier.
    end: Instant,
    /// The setting named by a timeout at `end`.
    end_setting: &'static str,
    /// Whether `end` is a library call's deadline.
    by_deadline: bool,
}

impl Call {
    /// A call starting now, on `conns`: it ends at the store's own cap or at the deadline of the
    /// library call it is part of (`cache_core::deadline`), whichever comes first; both count from
    /// the start. Fails at once when that deadline has passed.
    fn begin(conns: &Connections, op: &str) -> Result<Call> {
        let start = Instant::now();
        let cap_end = start + conns.limits().call_cap();
        // The same clock read starts the library call's deadline if nothing has yet
        // (`deadline::scope_after`).
        match cache_core::deadline::current_at(start) {
            Some(d) if d.instant() < cap_end => {
                // `start` is now, near enough: one clock read on the fast path.
                if start >= d.instant() {
                    return Err(d.timeout_error(format!("{op} on {}", conns.target()), start));
                }
                Ok(Call {
                    start,
                    end: d.instant(),
                    end_setting: d.setting(),
                    by_deadline: true,
                })
            }
            _ => Ok(Call {
                start,
                end: cap_end,
                end_setting: "REDIS_RETRY_BUDGET",
                by_deadline: false,
            }),
        }
    }

    /// The retry policy of this call: the store's, with the budget cut so that no attempt starts
    /// after `end`.
    fn retry(&self, limits: &Limits) -> RetryConfig {
        if self.end < self.start + limits.retry.budget {
            limits
                .retry
                .clone()
                .with_budget(self.end.saturating_duration_since(self.start))
        } else {
            limits.retry.clone()
        }
    }

    /// An attempt whose response timeout the deadline shortened, and that timed out at the
    /// deadline, was ended by the deadline: the error names the deadline's setting.
    fn name_the_end(&self, err: Error) -> Error {
        match err {
            Error::Timeout {
                operation, elapsed, ..
            } if self.by_deadline && Instant::now() >= self.end => Error::Timeout {
                operation,
                elapsed,
                setting: self.end_setting,
            },
            other => other,
        }
    }
}

/// The time limits the connection code reads, taken from a [`RedisConfig`] once.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) pool_wait_timeout: Duration,
    pub(crate) health_check_interval: Duration,
    pub(crate) max_lifetime: Duration,
    pub(crate) retry: RetryConfig,
    /// How long opening one connection may take: the connect timeout, or under Sentinel a
    /// discovery and a connect ([`sentinel_open_cap`]).
    pub(crate) open_cap: Duration,
}

impl Limits {
    pub(crate) fn new(config: &RedisConfig) -> Self {
        let open_cap = if config.endpoint.is_sentinel() {
            sentinel_open_cap(config.connect_timeout, config.response_timeout)
        } else {
            config.connect_timeout
        };
        Limits {
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            pool_wait_timeout: config.pool.wait_timeout,
            health_check_interval: config.pool.health_check_interval,
            max_lifetime: config.pool.max_lifetime,
            retry: config.retry.clone(),
            open_cap,
        }
    }

    /// The hard upper bound of one call, retries included:
    /// `max(retry budget, connect timeout + response timeout)`.
    pub(crate) fn call_cap(&self) -> Duration {
        self.retry
            .budget
            .max(self.connect_timeout + self.response_timeout)
    }

    /// How long a refill may take: waiting for the pool, then connecting.
    pub(crate) fn refill_cap(&self) -> Duration {
        self.pool_wait_timeout + self.open_cap + BACKSTOP
    }
}
