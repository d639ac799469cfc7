//! Closing a store: the gate every call passes ([`Connections::enter`]) and
//! [`Connections::close`], the orderly shutdown behind [`Store::close`](cache_core::Store::close).
//!
//! `close` works in three steps:
//!
//! 1. **refuse**: the closed flag is set, so every call that starts from now on (through this store,
//!    a clone, or a [`scoped`](crate::RedisStore::scoped) / replica-reads view: they share the
//!    connections) fails with [`Error::Closed`], and the pool's manager opens and reuses nothing;
//! 2. **drain**: calls already in flight may finish, for up to the longest one call can take
//!    (`max(REDIS_RETRY_BUDGET, REDIS_CONNECT_TIMEOUT + REDIS_RESPONSE_TIMEOUT)`); a call that takes
//!    several commands (`flush_prefix`) may be cut by the next step;
//! 3. **end**: the background task is stopped (under Sentinel also the watcher, whose
//!    subscriptions to the sentinels end with it, and the connection kept for asking a sentinel),
//!    the near-cache trackers end (their listeners hear that tracking is lost, their connections
//!    are sent `QUIT`),
//!    every shared connection and every idle pooled connection is taken out; on one server each is sent `QUIT` (so it is gone from the server's
//!    `CLIENT LIST` when `close` returns) and dropped. A cluster connection is dropped, which ends
//!    its per-node connections as soon as redis-rs's drivers see their last handle go.
//!
//! A second `close` (also a concurrent one) waits until the first has finished and returns `Ok`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use cache_core::{Error, Result};

use crate::manager::{self, Manager};
use crate::slots::Connections;

/// One store call in flight: counted from [`Connections::enter`] until dropped, so that `close` can
/// wait for it. The count is a [`cache_core::striped::Striped`] gauge (every call would otherwise
/// write one cache line shared by the runtime's threads, twice); the guard leaves the cell it
/// entered, wherever the task has moved since.
#[must_use = "the call counts as in flight only while the guard lives"]
pub(crate) struct CallGuard<'a>(&'a Connections, usize);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.leave(self.1);
        // A cell reaching zero says nothing of the others: a closing store's waiter is woken
        // for every call that ends, and adds the cells up again.
        if self.0.is_closed() {
            self.0.drained.notify_waiters();
        }
    }
}

impl Connections {
    /// Whether the store was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The error of a call on a closed store.
    pub(crate) fn closed_error(&self) -> Error {
        Error::closed(format_args!("the Redis store for {}", self.target()))
    }

    /// Admits one store call, or refuses it with [`Error::Closed`] once the store is closed.
    pub(crate) fn enter(&self) -> Result<CallGuard<'_>> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        let guard = CallGuard(self, self.in_flight.enter());
        // Checked again after counting: a `close` that saw no call in flight must not have this one
        // start behind its back.
        if self.is_closed() {
            return Err(self.closed_error());
        }
        Ok(guard)
    }

    /// Takes the pool's idle connections out (at most `max_open` of them), for `close` to end them.
    /// The manager refuses to open or check connections once closed, so a checkout here either
    /// yields an idle connection or fails.
    pub(crate) async fn take_idle(&self) -> Vec<mobc::Connection<Manager>> {
        let mut leases = Vec::new();
        for _ in 0..self.max_open {
            if self.pool.state().await.idle == 0 {
                break;
            }
            match tokio::time::timeout(self.limits().refill_cap(), self.pool.get()).await {
                Ok(Ok(lease)) => leases.push(lease),
                _ => break,
            }
        }
        leases
    }

    /// Stops the background tasks: the maintenance task and, under Sentinel, the watcher (whose
    /// subscriptions to the sentinels end with it); the connection kept for questions to a
    /// sentinel is let go too.
    pub(crate) fn stop_background(&self) {
        if let Some(handle) = self.maintenance.lock().take() {
            handle.abort();
        }
        if let Some(handle) = self.watcher.lock().take() {
            handle.abort();
        }
        if let Some(discovery) = self.discovery() {
            discovery.forget_sentinels();
        }
    }

    /// See the [module documentation](self).
    pub(crate) async fn close(self: &Arc<Self>) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        let mut done = self.closing.lock().await;
        if *done {
            return Ok(());
        }
        let started = Instant::now();
        let grace_end = tokio::time::Instant::now() + self.limits().call_cap();
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before the count is read, so a call ending in between still wakes us.
            drained.as_mut().enable();
            let left = self.in_flight.sum();
            if left == 0 {
                break;
            }
            if tokio::time::timeout_at(grace_end, drained).await.is_err() {
                tracing::warn!(target: "cache_redis", server = %self.target(), calls = left, "closing with calls still in flight after the grace period");
                break;
            }
        }
        self.stop_background();
        self.trackers.close(self.limits().response_timeout).await;
        let mut leases = self.take_all().await;
        leases.extend(self.take_idle().await);
        let ended = leases.len();
        for mut lease in leases {
            manager::quit(&mut lease.conn, self.limits().response_timeout).await;
            lease.broken = true;
        }
        *done = true;
        tracing::debug!(target: "cache_redis", server = %self.target(), connections = ended, elapsed = ?started.elapsed(), "closed the store");
        Ok(())
    }
}
