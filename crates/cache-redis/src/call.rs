//! The call runner: one store call from the first attempt to its answer, with the outer timer and
//! the retries ([`Connections::run`]), and the time limits it and the slots work with ([`Limits`]).
//!
//! Every call is bounded: a first attempt on a ready standalone connection by redis-rs's response
//! timeout, everything else (reconnects, retries, cluster calls) by [`Limits::call_cap`] through one
//! outer `tokio::time::timeout` counted from the start of the call. Whether a failed attempt is
//! repeated is decided by [`retry::retry_delay`] alone.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Error, Result};
use redis::RedisError;

use crate::config::{RedisConfig, RetryConfig};
use crate::conn::Conn;
use crate::manager::BACKSTOP;
use crate::retry::{self, Failed, Idempotency};
use crate::slots::Connections;

impl Connections {
    /// Runs one command with the store's timeouts and retry policy.
    ///
    /// `f` gets a connection clone and returns the command's future; it may be called again for a
    /// retry. Errors are mapped with `op` and `key` for the message.
    ///
    /// Fast path (one server): the first attempt on a ready connection runs without the outer call
    /// cap, because redis-rs's per-request response timeout already bounds it; a second timer per
    /// call was a measurable part of the client's CPU (benchmark profile). Reconnects and retries
    /// run under the outer cap. A cluster connection re-sends internally, so cluster calls always
    /// run under the cap.
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
        let retry = &self.limits().retry;
        // A failed attempt allowed to be repeated, and the backoff before the next one.
        let mut pending: Option<(Error, Duration)> = None;
        // The slot of the first attempt; if it is not ready, the slow path below refills this same
        // slot (picking another one would leave it empty for as long as traffic alternates).
        let mut first_slot = Some(self.pick());
        if let (false, Some(idx)) = (self.is_cluster(), first_slot) {
            if let Some((conn, generation)) = self.ready(idx) {
                first_slot = None;
                match f(conn).await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        let err = self.failed(idx, generation, e, op, key, start);
                        let failed = self.describe(&err, 1, true, idempotency, start);
                        match retry::retry_delay(retry, failed) {
                            Some(delay) => pending = Some((err, delay)),
                            None => return Err(err),
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
                            Err(e) => (self.failed(idx, generation, e, op, key, start), true),
                        }
                    }
                };
                let failed = self.describe(&err, attempt, sent, idempotency, start);
                match retry::retry_delay(retry, failed) {
                    Some(delay) => pending = Some((err, delay)),
                    None => return Err(err),
                }
            }
        };
        match tokio::time::timeout(self.limits().call_cap(), work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                operation: format!("{op} on {}", self.target()),
                elapsed: start.elapsed(),
                setting: "REDIS_RETRY_BUDGET",
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

/// The time limits the connection code reads, taken from a [`RedisConfig`] once.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) pool_wait_timeout: Duration,
    pub(crate) health_check_interval: Duration,
    pub(crate) max_lifetime: Duration,
    pub(crate) retry: RetryConfig,
}

impl Limits {
    pub(crate) fn new(config: &RedisConfig) -> Self {
        Limits {
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            pool_wait_timeout: config.pool.wait_timeout,
            health_check_interval: config.pool.health_check_interval,
            max_lifetime: config.pool.max_lifetime,
            retry: config.retry.clone(),
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
        self.pool_wait_timeout + self.connect_timeout + BACKSTOP
    }
}
