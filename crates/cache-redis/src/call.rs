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
    pub(crate) async fn run<T, F, Fut>(
        self: &Arc<Self>,
        op: &'static str,
        key: Option<&str>,
        idempotency: Idempotency,
        mut f: F,
    ) -> Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = std::result::Result<T, RedisError>>,
    {
        let start = Instant::now();
        // The end of this call: the store's own cap, or the deadline of the library call it is
        // part of (`cache_core::deadline`), whichever comes first. Both count from the start.
        let cap_end = start + self.limits().call_cap();
        let (end, end_setting, by_deadline) = match cache_core::deadline::current() {
            Some(d) if d.instant() < cap_end => {
                // `start` is now, near enough: one clock read on the fast path.
                if start >= d.instant() {
                    return Err(d.timeout_error(format!("{op} on {}", self.target()), start));
                }
                (d.instant(), d.setting(), true)
            }
            _ => (cap_end, "REDIS_RETRY_BUDGET", false),
        };
        // An attempt whose response timeout the deadline shortened, and that timed out at the
        // deadline, was ended by the deadline: the error names the deadline's setting.
        let name_the_end = |err: Error| match err {
            Error::Timeout {
                operation, elapsed, ..
            } if by_deadline && Instant::now() >= end => Error::Timeout {
                operation,
                elapsed,
                setting: end_setting,
            },
            other => other,
        };
        // Retries only while the next attempt still starts before the end.
        let limited;
        let retry = if end < start + self.limits().retry.budget {
            limited = self
                .limits()
                .retry
                .clone()
                .with_budget(end.saturating_duration_since(start));
            &limited
        } else {
            &self.limits().retry
        };
        // A failed attempt allowed to be repeated, and the backoff before the next one.
        let mut pending: Option<(Error, Duration)> = None;
        // The slot of the first attempt; if it is not ready, the slow path below refills this same
        // slot (picking another one would leave it empty for as long as traffic alternates).
        let mut first_slot = Some(self.pick());
        if let (false, Some(idx)) = (self.is_cluster(), first_slot) {
            if let Some((mut conn, generation)) = self.ready(idx) {
                first_slot = None;
                // Without a deadline shorter than the response timeout this does nothing: the
                // response timeout bounds the first attempt. Counted from `start` (a clock read
                // fewer; the attempt starts within microseconds of it).
                let left = end.saturating_duration_since(start);
                if left < self.limits().response_timeout {
                    conn.set_response_timeout(left.max(Duration::from_millis(1)));
                }
                match f(conn).await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        let sent = !refused_unapplied(&e);
                        let err = self.failed(idx, generation, e, op, key, start);
                        let failed = self.describe(&err, 1, sent, idempotency, start);
                        match retry::retry_delay(retry, failed) {
                            Some(delay) => pending = Some((err, delay)),
                            None => return Err(name_the_end(err)),
                        }
                    }
                }
            }
        }
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
                match retry::retry_delay(retry, failed) {
                    Some(delay) => pending = Some((err, delay)),
                    None => return Err(name_the_end(err)),
                }
            }
        };
        // One timer for the whole call, counted from its start (the first attempt included). A
        // relative timeout, not `timeout_at(from_std(end))`: on a paused tokio clock that was
        // advanced, a std instant maps into tokio's past and would fire at once.
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                operation: format!("{op} on {}", self.target()),
                elapsed: start.elapsed(),
                setting: end_setting,
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
