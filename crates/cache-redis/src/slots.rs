//! The shared connections of the hot path ([`Connections`]): the mobc pool and a few *slots*, each
//! holding one long-lived checked-out connection that commands clone, and the slot lifecycle:
//! refill from the pool, retire on a connection error, suspect after a timeout (a background `PING`
//! decides), rotate past the max lifetime, and the background task that checks, rotates and
//! refills.
//!
//! See the [crate documentation](crate#connections-pool-lifecycle-multiplexed-hot-path) for the
//! design; the invariants kept here are:
//!
//! - a command never waits for a pool checkout when its slot holds a connection (the fast path is a
//!   read lock and a clone of a `MultiplexedConnection`);
//! - at most one task refills a slot at a time; others wait for it or fail fast while the slot is in
//!   its reconnect backoff;
//! - a connection is retired only by the generation that produced the error, so a late error from
//!   an old connection never retires its replacement;
//! - once the store is closed no slot is refilled and no connection is opened (`crate::close`).
//!
//! (A little over 600 lines on purpose: the slot state machine (refill, retire, suspect, rotate,
//! take out on close) is one set of invariants over one lock per slot, and reads best in one file;
//! the close sequence itself is in `close.rs`, the Sentinel watcher in `sentinel/`.)

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cache_core::{Error, PoolStats, Result};
use parking_lot::RwLock;
use redis::RedisError;

use crate::call::Limits;
use crate::conn::Conn;
use crate::error::{self, Ctx, Disposition};
use crate::manager::{self, probe, Manager, OpenError};
use crate::retry::backoff_ceiling;
use crate::sentinel::{self, Discovery};

enum SlotState {
    Ready {
        // Boxed: a lease is large and only touched when a connection is swapped.
        lease: Box<mobc::Connection<Manager>>,
        conn: Conn,
        generation: u64,
        since: Instant,
    },
    Empty {
        /// No reconnect before this instant (fail fast with `last_error` until then).
        retry_at: Instant,
        last_error: Option<Error>,
        failures: u32,
    },
}

struct Slot {
    state: RwLock<SlotState>,
    refill: tokio::sync::Mutex<()>,
    checking: AtomicBool,
}

/// The connections of a store: the pool and the shared slots.
pub(crate) struct Connections {
    manager_target: String,
    /// Whether the connections are cluster connections.
    cluster: bool,
    tls_addr: Option<(String, u16)>,
    pub(crate) pool: mobc::Pool<Manager>,
    slots: Vec<Slot>,
    next: AtomicUsize,
    generation: AtomicU64,
    limits: Limits,
    pub(crate) max_open: u64,
    waits: AtomicU64,
    timeouts: AtomicU64,
    reconnects: AtomicU64,
    /// Consecutive failed reconnects, for the log level.
    down_streak: AtomicU32,
    pub(crate) maintenance: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
    /// Under Sentinel: where the connections are found, and the task that follows switches.
    discovery: Option<Arc<Discovery>>,
    pub(crate) watcher: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
    /// Set by `close` (shared with the pool's manager): calls are refused, nothing is opened.
    pub(crate) closed: Arc<AtomicBool>,
    /// Store calls in flight (see `crate::close::CallGuard`).
    pub(crate) in_flight: cache_core::striped::Striped,
    /// Woken when the last call in flight of a closing store ends.
    pub(crate) drained: tokio::sync::Notify,
    /// Held while `close` tears down; `true` once it has.
    pub(crate) closing: tokio::sync::Mutex<bool>,
    /// The near-cache trackers (`Store::track_changes`), per store prefix.
    pub(crate) trackers: crate::tracking::Trackers,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("target", &self.manager_target)
            .field("slots", &self.slots.len())
            .field("max_open", &self.max_open)
            .finish_non_exhaustive()
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        if let Some(handle) = self.maintenance.lock().take() {
            handle.abort();
        }
        if let Some(handle) = self.watcher.lock().take() {
            handle.abort();
        }
    }
}

impl Connections {
    pub(crate) fn new(
        manager: Manager,
        slots: usize,
        max_open: u64,
        max_idle: u64,
        limits: Limits,
    ) -> Arc<Self> {
        let target = manager.target().to_owned();
        let tls_addr = manager.tls_addr();
        let cluster = manager.is_cluster();
        let discovery = manager.discovery().cloned();
        let closed = manager.closed_flag();
        let trackers = crate::tracking::Trackers::new(&manager);
        let pool = mobc::Pool::builder()
            .max_open(max_open)
            // mobc treats 0 as "unlimited"; keep at least one idle connection allowed.
            .max_idle(max_idle.max(1))
            .max_lifetime(Some(limits.max_lifetime))
            .test_on_check_out(true)
            .health_check_interval(Some(limits.health_check_interval))
            // Our own timeout wraps the checkout (see `refill`), so mobc's is off.
            .get_timeout(None)
            .build(manager);
        let now = Instant::now();
        let slots = (0..slots.max(1))
            .map(|_| Slot {
                state: RwLock::new(SlotState::Empty {
                    retry_at: now,
                    last_error: None,
                    failures: 0,
                }),
                refill: tokio::sync::Mutex::new(()),
                checking: AtomicBool::new(false),
            })
            .collect();
        Arc::new(Self {
            manager_target: target,
            cluster,
            tls_addr,
            pool,
            slots,
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            limits,
            max_open,
            waits: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            down_streak: AtomicU32::new(0),
            maintenance: parking_lot::Mutex::new(None),
            discovery,
            watcher: parking_lot::Mutex::new(None),
            closed,
            in_flight: cache_core::striped::Striped::new(),
            drained: tokio::sync::Notify::new(),
            closing: tokio::sync::Mutex::new(false),
            trackers,
        })
    }

    /// The Sentinel discovery, when the connections are found through Sentinel.
    pub(crate) fn discovery(&self) -> Option<&Arc<Discovery>> {
        self.discovery.as_ref()
    }

    /// Under Sentinel: starts the task that watches the sentinels (see
    /// [`Discovery::watch`]); when they switch the primary, every shared connection of these
    /// connections and of `others` (the replica connections) is retired, so the next commands
    /// reconnect through a new discovery. Nothing otherwise. The task ends with the store.
    pub(crate) fn follow_switches(self: &Arc<Self>, others: Option<&Arc<Connections>>) {
        let Some(discovery) = &self.discovery else {
            return;
        };
        let mine = Arc::downgrade(self);
        let others = others.map(Arc::downgrade);
        // Asking a sentinel once a second costs it nothing; a switch is normally announced at
        // once (`+switch-master`), the poll covers a lost subscription.
        let every = self
            .limits
            .health_check_interval
            .min(Duration::from_secs(1));
        let handle = discovery.watch(every, move |new| {
            let reason = format!("the sentinels switched the primary to {new}");
            for conns in [mine.upgrade(), others.as_ref().and_then(Weak::upgrade)]
                .into_iter()
                .flatten()
            {
                conns.retire_all(&reason);
            }
        });
        *self.watcher.lock() = Some(handle.abort_handle());
    }

    /// Retires every slot's connection (the next command on each reconnects).
    pub(crate) fn retire_all(&self, reason: &str) {
        for idx in 0..self.slots.len() {
            let generation = match &*self.slots[idx].state.read() {
                SlotState::Ready { generation, .. } => *generation,
                SlotState::Empty { .. } => continue,
            };
            self.retire(idx, generation, reason);
        }
    }

    /// The redacted server address.
    pub(crate) fn target(&self) -> &str {
        &self.manager_target
    }

    /// Whether these are cluster connections.
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Starts the background task: health checks, lifetime rotation and refills every
    /// `health_check_interval`. It holds a weak reference and ends with the store.
    pub(crate) fn start_maintenance(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.limits.health_check_interval;
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.maintain().await;
            }
        });
        *self.maintenance.lock() = Some(task.abort_handle());
    }

    async fn maintain(self: &Arc<Self>) {
        for idx in 0..self.slots.len() {
            let snapshot = {
                let state = self.slots[idx].state.read();
                match &*state {
                    SlotState::Ready {
                        conn,
                        generation,
                        since,
                        ..
                    } => Some((conn.clone(), *generation, *since)),
                    SlotState::Empty { .. } => None,
                }
            };
            match snapshot {
                Some((_, generation, since)) if since.elapsed() >= self.limits.max_lifetime => {
                    self.rotate(idx, generation).await;
                }
                Some((mut conn, generation, _)) => {
                    if let Err(e) = probe(&mut conn, self.limits.response_timeout).await {
                        tracing::warn!(target: "cache_redis", server = %self.manager_target, slot = idx, error = %e, "health check failed; replacing the connection");
                        if self.cluster {
                            // Open the replacement first: the old cluster connection may still
                            // serve every node but the one that is down.
                            self.rotate(idx, generation).await;
                        } else {
                            self.retire(idx, generation, "health check failed");
                            let _ = self.refill(idx).await;
                        }
                    }
                }
                None => {
                    let _ = self.refill(idx).await;
                }
            }
        }
    }

    /// Opens the first connection (used by `connect` to fail fast on a wrong URL or password).
    pub(crate) async fn warm_up(self: &Arc<Self>) -> Result<()> {
        self.refill(0).await.map(|_| ())
    }

    /// A connection for one command: the fast path clones the slot's connection.
    pub(crate) async fn acquire(self: &Arc<Self>, idx: usize) -> Result<(Conn, u64)> {
        if let Some(ready) = self.ready(idx) {
            return Ok(ready);
        }
        // Boxed: the cold path's state (pool checkout, connect) stays out of every call's future.
        Box::pin(self.refill(idx)).await
    }

    /// Fills an empty slot from the pool (one refiller per slot; others wait, or fail fast with the
    /// last error during the reconnect backoff).
    async fn refill(self: &Arc<Self>, idx: usize) -> Result<(Conn, u64)> {
        let slot = &self.slots[idx];
        let started = Instant::now();
        let _guard = match tokio::time::timeout(self.limits.refill_cap(), slot.refill.lock()).await
        {
            Ok(g) => g,
            Err(_) => {
                return Err(Error::Timeout {
                    operation: format!("waiting for a connection to {}", self.manager_target),
                    elapsed: started.elapsed(),
                    setting: "REDIS_CONNECT_TIMEOUT",
                })
            }
        };
        if self.is_closed() {
            return Err(self.closed_error());
        }
        let failures = {
            let state = slot.state.read();
            match &*state {
                SlotState::Ready {
                    conn, generation, ..
                } => return Ok((conn.clone(), *generation)),
                SlotState::Empty {
                    retry_at,
                    last_error,
                    failures,
                } => {
                    if Instant::now() < *retry_at {
                        if let Some(e) = last_error {
                            return Err(error::replay(e));
                        }
                    }
                    *failures
                }
            }
        };
        match self.checkout().await {
            Ok(mut lease) if self.is_closed() => {
                // Closed while connecting: this connection must not outlive the store.
                lease.broken = true;
                Err(self.closed_error())
            }
            Ok(lease) => {
                let conn = lease.conn.clone();
                let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                *slot.state.write() = SlotState::Ready {
                    lease: Box::new(lease),
                    conn: conn.clone(),
                    generation,
                    since: Instant::now(),
                };
                if self.down_streak.swap(0, Ordering::Relaxed) > 0 {
                    tracing::info!(target: "cache_redis", server = %self.manager_target, "Redis is reachable again");
                }
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                Ok((conn, generation))
            }
            Err(e) => {
                let failures = failures.saturating_add(1);
                let backoff = backoff_ceiling(&self.limits.retry, failures);
                if self.down_streak.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(target: "cache_redis", server = %self.manager_target, error = %e, "cannot open a Redis connection");
                } else {
                    tracing::debug!(target: "cache_redis", server = %self.manager_target, error = %e, "still cannot open a Redis connection");
                }
                *slot.state.write() = SlotState::Empty {
                    retry_at: Instant::now() + backoff,
                    last_error: Some(error::replay(&e)),
                    failures,
                };
                Err(e)
            }
        }
    }

    /// Takes a connection from the pool, bounded by the pool wait and connect timeouts.
    async fn checkout(&self) -> Result<mobc::Connection<Manager>> {
        let state = self.pool.state().await;
        if state.max_open > 0 && state.idle == 0 && state.connections >= state.max_open {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        let start = Instant::now();
        match tokio::time::timeout(self.limits.refill_cap(), self.pool.get()).await {
            Ok(Ok(lease)) => Ok(lease),
            Ok(Err(mobc::Error::Inner(OpenError::Mapped(e)))) => Err(e),
            Ok(Err(mobc::Error::Inner(OpenError::Redis(e)))) => Err(manager::connect_error(
                e,
                self.tls_addr.as_ref(),
                &self.manager_target,
                start.elapsed(),
                self.limits.response_timeout,
            )
            .await),
            Ok(Err(mobc::Error::Timeout)) | Err(_) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(Error::Timeout {
                    operation: format!("pool checkout for {}", self.manager_target),
                    elapsed: start.elapsed(),
                    setting: "REDIS_POOL_WAIT_TIMEOUT",
                })
            }
            Ok(Err(e)) => Err(Error::Backend {
                message: format!("connection pool for {}: {e}", self.manager_target),
                transient: true,
                source: None,
            }),
        }
    }

    /// Takes a slot's connection out of service if it is still the one of `generation`; the lease
    /// goes back to the pool marked broken, so the pool closes it.
    fn retire(&self, idx: usize, generation: u64, reason: &str) {
        let old = {
            let mut state = self.slots[idx].state.write();
            match &*state {
                SlotState::Ready { generation: g, .. } if *g == generation => std::mem::replace(
                    &mut *state,
                    SlotState::Empty {
                        retry_at: Instant::now(),
                        last_error: None,
                        failures: 0,
                    },
                ),
                _ => return,
            }
        };
        if let SlotState::Ready { mut lease, .. } = old {
            tracing::debug!(target: "cache_redis", server = %self.manager_target, slot = idx, reason, "retiring a connection");
            lease.broken = true;
            drop(lease);
        }
    }

    /// Replaces a slot's connection that reached its max lifetime: the new connection is opened
    /// first, so commands keep flowing on the old one meanwhile (commands in flight on the old one
    /// finish: it closes when its last clone is dropped).
    async fn rotate(self: &Arc<Self>, idx: usize, generation: u64) {
        let state = self.pool.state().await;
        if state.max_open > 0 && state.connections >= state.max_open {
            // No room to open the new connection first (the shared connections fill the pool):
            // retire, then reopen.
            self.retire(idx, generation, "max lifetime reached");
            let _ = self.refill(idx).await;
            return;
        }
        let lease = match self.checkout().await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::debug!(target: "cache_redis", server = %self.manager_target, slot = idx, error = %e, "cannot rotate a connection yet");
                return;
            }
        };
        // Under the slot's refill lock, so that `close` (which takes it) and the swap do not
        // interleave: a store closed meanwhile gets no new connection.
        let _refill = self.slots[idx].refill.lock().await;
        if self.is_closed() {
            let mut lease = lease;
            lease.broken = true;
            return;
        }
        let conn = lease.conn.clone();
        let new_generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let new_state = SlotState::Ready {
            lease: Box::new(lease),
            conn,
            generation: new_generation,
            since: Instant::now(),
        };
        let old = {
            let mut state = self.slots[idx].state.write();
            match &*state {
                SlotState::Ready { generation: g, .. } if *g == generation => {
                    std::mem::replace(&mut *state, new_state)
                }
                // The slot changed meanwhile: give the new connection back to the pool.
                _ => new_state,
            }
        };
        if let SlotState::Ready { mut lease, .. } = old {
            tracing::debug!(target: "cache_redis", slot = idx, "rotated a connection at its max lifetime");
            lease.broken = true;
        }
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Checks a slot whose connection timed out, in the background (at most one check per slot).
    fn suspect(self: &Arc<Self>, idx: usize, generation: u64) {
        let slot = &self.slots[idx];
        if slot.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        let conn = {
            let state = slot.state.read();
            match &*state {
                SlotState::Ready {
                    conn,
                    generation: g,
                    ..
                } if *g == generation => Some(conn.clone()),
                _ => None,
            }
        };
        let Some(mut conn) = conn else {
            slot.checking.store(false, Ordering::Release);
            return;
        };
        let this = Arc::clone(self);
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            slot.checking.store(false, Ordering::Release);
            return;
        };
        handle.spawn(async move {
            if probe(&mut conn, this.limits.response_timeout)
                .await
                .is_err()
            {
                this.retire(idx, generation, "did not answer a PING after a timeout");
            }
            this.slots[idx].checking.store(false, Ordering::Release);
        });
    }

    /// After one connection was found dropped, check the others (a restart drops them all).
    fn suspect_all(self: &Arc<Self>, except: usize) {
        for idx in 0..self.slots.len() {
            if idx == except {
                continue;
            }
            let generation = match &*self.slots[idx].state.read() {
                SlotState::Ready { generation, .. } => *generation,
                SlotState::Empty { .. } => continue,
            };
            self.suspect(idx, generation);
        }
    }

    /// Takes every slot's connection out (waiting for a refill in progress, which then finds the
    /// store closed) and returns their leases, for `close` to end them.
    pub(crate) async fn take_all(&self) -> Vec<mobc::Connection<Manager>> {
        let mut leases = Vec::new();
        for slot in &self.slots {
            let _refill = slot.refill.lock().await;
            let old = std::mem::replace(
                &mut *slot.state.write(),
                SlotState::Empty {
                    retry_at: Instant::now(),
                    last_error: None,
                    failures: 0,
                },
            );
            if let SlotState::Ready { lease, .. } = old {
                leases.push(*lease);
            }
        }
        leases
    }

    pub(crate) fn pick(&self) -> usize {
        if self.slots.len() == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()
        }
    }

    /// The slot's connection if it is ready, without waiting (the fast path of [`Self::acquire`]).
    pub(crate) fn ready(&self, idx: usize) -> Option<(Conn, u64)> {
        match &*self.slots[idx].state.read() {
            SlotState::Ready {
                conn, generation, ..
            } => Some((conn.clone(), *generation)),
            SlotState::Empty { .. } => None,
        }
    }

    /// Records what a failed command says about its connection (retire it, suspect it, or
    /// nothing) and maps the error.
    pub(crate) fn failed(
        self: &Arc<Self>,
        idx: usize,
        generation: u64,
        e: RedisError,
        op: &'static str,
        key: Option<&str>,
        start: Instant,
    ) -> Error {
        let disposition = if self.cluster {
            error::cluster_disposition(&e)
        } else if self.discovery.is_some() {
            sentinel::disposition(&e)
        } else {
            error::disposition(&e)
        };
        match disposition {
            Disposition::Healthy => {}
            Disposition::Suspect => self.suspect(idx, generation),
            Disposition::Broken if self.discovery.is_some() && e.code() == Some("READONLY") => {
                // The node was turned into a replica: every slot points at it.
                self.retire_all("the node answers READONLY (it is a replica now)");
            }
            Disposition::Broken => {
                self.retire(idx, generation, "connection error");
                self.suspect_all(idx);
            }
        }
        error::map(
            e,
            Ctx {
                op,
                key,
                target: &self.manager_target,
                elapsed: start.elapsed(),
                connecting: false,
            },
        )
    }

    /// The earliest instant at which an empty slot may try to reconnect, if any slot is empty.
    pub(crate) fn earliest_reconnect(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|slot| match &*slot.state.read() {
                SlotState::Empty { retry_at, .. } => Some(*retry_at),
                SlotState::Ready { .. } => None,
            })
            .min()
    }

    /// Pool state plus our own wait and timeout counters.
    pub(crate) async fn pool_stats(&self) -> PoolStats {
        let state = self.pool.state().await;
        let mut stats = PoolStats::new(self.max_open);
        stats.open = state.connections;
        stats.idle = state.idle;
        stats.in_use = state.in_use;
        stats.waits = self.waits.load(Ordering::Relaxed);
        stats.timeouts = self.timeouts.load(Ordering::Relaxed);
        stats
    }

    /// Number of shared slots.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Connections (re)opened into slots since start.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}
