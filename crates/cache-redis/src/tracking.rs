//! Server-assisted invalidation for near caches: one dedicated RESP3 connection per server with
//! `CLIENT TRACKING ON BCAST PREFIX <store prefix><key prefix> ...`, whose invalidation pushes are
//! routed to the registered `InvalidationListener`s (the near caches), behind
//! `Store::track_changes` of a [`RedisStore`](crate::RedisStore) on one server; and
//! `Store::get_with_ttl`, the near caches' read (`GET` and `PTTL` in one pipeline).
//!
//! # Why broadcast mode on a connection of its own
//!
//! - **No coupling to the data connections.** In the default mode the server remembers which keys
//!   each connection *read* and the reads would have to go through the tracked connection (or every
//!   data connection would need `REDIRECT`, re-issued after each reconnect, with the reply and the
//!   invalidation racing over two sockets anyway). In broadcast mode the server reports every change
//!   of a key under the registered prefixes, whoever read it, so the store's data connections stay
//!   as they are and the near cache reads through them.
//! - **No server-side key table.** Broadcast mode keeps no per-key record of readers, so
//!   `tracking-table-max-keys` (which makes the default mode invalidate keys early when the table is
//!   full) does not apply, and the server's memory does not grow with what clients cache.
//! - **The cost** is that a write to any key under a registered prefix is pushed to every tracking
//!   client, cached there or not: register prefixes of families that are read much more than they
//!   are written (the near cache's use case).
//!
//! redis-rs 1.8's own client-side cache (`cache-aio`) was not used: it caches raw replies on the data
//! connection, so every hit still pays the decode (measured: 1.1-2.2x raw, with p99 2-4x worse),
//! while the near cache keeps decoded values (see `cache-near`).
//!
//! # When tracking is lost
//!
//! The listeners are told [`InvalidationListener::tracking_lost`] (and empty themselves) **from the
//! connection's own task**, as soon as redis-rs reports the disconnection: a closed or killed
//! connection (`CLIENT KILL`), a server restart or crash, a failover that drops clients. A
//! connection that silently stops answering (a partition, a frozen server) is caught by a `PING`
//! every [`TrackingOptions::health_interval`] bounded by [`TrackingOptions::response_timeout`];
//! that sum bounds how long a partition can go unnoticed. The background task then reconnects with
//! backoff, re-issues `CLIENT TRACKING` and only then tells the listeners
//! [`InvalidationListener::tracking_ready`]. `FLUSHDB`/`FLUSHALL` arrive as an invalidation without keys
//! and become [`InvalidationListener::flush`].

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use std::collections::HashMap;

use cache_core::tracking::InvalidationListener;
use cache_core::{Bytes, Error, KeyTtl, Result};
use parking_lot::{Mutex, RwLock};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, FromRedisValue, ProtocolVersion, PushInfo, PushKind, RedisResult, Value,
};
use tokio::sync::Notify;

use crate::retry::Idempotency;
use crate::store::RedisStore;

/// Timing of a [`Tracker`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrackingOptions {
    /// How often the tracking connection is checked with `PING`.
    pub(crate) health_interval: Duration,
    /// Connect timeout of the tracking connection.
    pub(crate) connect_timeout: Duration,
    /// Response timeout of its commands (`CLIENT TRACKING`, `PING`).
    pub(crate) response_timeout: Duration,
    /// First delay before reconnecting after a failure (doubled up to `max_backoff`).
    pub(crate) min_backoff: Duration,
    /// Longest delay between reconnection attempts.
    pub(crate) max_backoff: Duration,
}

impl Default for TrackingOptions {
    fn default() -> Self {
        Self {
            health_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// What the near-cache tracking of a store has seen ([`RedisStore::tracking_stats`]).
///
/// [`RedisStore::tracking_stats`]: crate::RedisStore::tracking_stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackingStats {
    /// Invalidation messages received.
    pub messages: u64,
    /// Keys they named (a broadcast message may name several).
    pub keys: u64,
    /// Flushes (`FLUSHDB`/`FLUSHALL`) seen.
    pub flushes: u64,
    /// Times tracking was lost.
    pub losses: u64,
    /// Times tracking was (re-)established.
    pub connects: u64,
    /// Whether tracking is up now.
    pub up: bool,
}

struct Registration {
    /// The key prefix relative to the store's prefix.
    prefix: String,
    listener: Weak<dyn InvalidationListener>,
}

/// The live tracking connection and the prefixes it tracks.
#[derive(Default)]
struct Conn {
    conn: Option<MultiplexedConnection>,
    /// Full prefixes (store prefix included) sent with `CLIENT TRACKING ... BCAST`.
    tracked: Vec<String>,
}

#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    keys: AtomicU64,
    flushes: AtomicU64,
    losses: AtomicU64,
    connects: AtomicU64,
}

struct Shared {
    client: redis::Client,
    /// `"{store prefix}:"`, or empty.
    key_base: String,
    options: TrackingOptions,
    registrations: RwLock<Vec<Registration>>,
    /// Serialises connecting and registering, across the awaits of their commands.
    conn: tokio::sync::Mutex<Conn>,
    /// Identifies the current connection: pushes of an older one do not mark the current lost.
    generation: AtomicU64,
    up: AtomicBool,
    /// Wakes the task: tracking was lost, or the first listener registered.
    wake: Notify,
    counters: Counters,
}

/// Tracks the keys of one Redis server for the near caches of one store. Dropping it stops the
/// background task and closes the connection.
pub(crate) struct Tracker {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("key_base", &self.shared.key_base)
            .field("up", &self.shared.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tracker {
    /// A tracker of the server `client` points at, for keys under `store_prefix` (empty: none).
    /// The connection is RESP3 whatever `client` says. Must be called inside a tokio runtime: it
    /// spawns the task that connects (once a listener registers), checks and reconnects.
    pub(crate) fn start(
        client: &redis::Client,
        store_prefix: &str,
        options: TrackingOptions,
    ) -> Self {
        let info = client.get_connection_info().clone();
        let redis_settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(redis_settings);
        // Opening a client from a parsed ConnectionInfo only stores it; it cannot fail here.
        let client = redis::Client::open(info).unwrap_or_else(|_| client.clone());
        let key_base = if store_prefix.is_empty() {
            String::new()
        } else {
            format!("{store_prefix}:")
        };
        let shared = Arc::new(Shared {
            client,
            key_base,
            options,
            registrations: RwLock::new(Vec::new()),
            conn: tokio::sync::Mutex::new(Conn::default()),
            generation: AtomicU64::new(0),
            up: AtomicBool::new(false),
            wake: Notify::new(),
            counters: Counters::default(),
        });
        let task = tokio::spawn(run(Arc::clone(&shared))).abort_handle();
        Self { shared, task }
    }

    /// Registers `listener` for the keys starting with `prefix` (relative to the store's prefix).
    /// The listener is told [`InvalidationListener::tracking_ready`] once the server tracks the prefix:
    /// before this returns when tracking is up and the prefix could be added, otherwise when the
    /// background task (re)connects. The tracker holds the listener weakly.
    pub(crate) async fn register(&self, prefix: &str, listener: Weak<dyn InvalidationListener>) {
        let shared = &self.shared;
        let full = format!("{}{prefix}", shared.key_base);
        let mut conn = shared.conn.lock().await;
        {
            let mut regs = shared.registrations.write();
            regs.retain(|r| r.listener.strong_count() > 0);
            regs.push(Registration {
                prefix: prefix.to_owned(),
                listener: listener.clone(),
            });
        }
        let Some(live) = conn
            .conn
            .clone()
            .filter(|_| shared.up.load(Ordering::Acquire))
        else {
            // Not connected: the task connects (now, if this is the first listener) with every
            // registered prefix and then tells every listener it is ready.
            shared.wake.notify_one();
            return;
        };
        if conn.tracked.iter().any(|t| full.starts_with(t.as_str())) {
            if let Some(l) = listener.upgrade() {
                l.tracking_ready();
            }
            return;
        }
        if conn.tracked.iter().any(|t| t.starts_with(full.as_str())) {
            // The new prefix covers tracked ones, and a client's broadcast prefixes must not
            // overlap: start over with the new set.
            drop(conn);
            shared.lose("a registered prefix covers tracked ones");
            return;
        }
        let mut c = live;
        let added = tokio::time::timeout(
            shared.options.response_timeout,
            tracking_cmd(std::slice::from_ref(&full)).query_async::<()>(&mut c),
        )
        .await;
        match added {
            Ok(Ok(())) => {
                conn.tracked.push(full);
                if let Some(l) = listener.upgrade() {
                    l.tracking_ready();
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, prefix, "CLIENT TRACKING refused a prefix; reconnecting");
                drop(conn);
                shared.lose("adding a prefix failed");
            }
            Err(_) => {
                drop(conn);
                shared.lose("adding a prefix timed out");
            }
        }
    }

    /// Whether the server tracks the registered prefixes now.
    pub(crate) fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }

    /// What the tracker has seen.
    pub(crate) fn stats(&self) -> TrackingStats {
        let c = &self.shared.counters;
        TrackingStats {
            messages: c.messages.load(Ordering::Relaxed),
            keys: c.keys.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            losses: c.losses.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            up: self.is_up(),
        }
    }
}

/// `CLIENT TRACKING ON BCAST PREFIX p1 PREFIX p2 ...` (no `PREFIX` at all for an empty prefix:
/// every key).
fn tracking_cmd(prefixes: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("TRACKING").arg("ON").arg("BCAST");
    for p in prefixes.iter().filter(|p| !p.is_empty()) {
        cmd.arg("PREFIX").arg(p);
    }
    cmd
}

/// The smallest set of prefixes covering `prefixes` (broadcast prefixes must not overlap).
fn minimal_prefixes(mut prefixes: Vec<String>) -> Vec<String> {
    prefixes.sort();
    prefixes.dedup();
    let mut out: Vec<String> = Vec::new();
    for p in prefixes {
        // Sorted, so a covering prefix comes before what it covers.
        if !out.iter().any(|o| p.starts_with(o.as_str())) {
            out.push(p);
        }
    }
    out
}

impl Shared {
    fn listeners(&self) -> Vec<(String, Arc<dyn InvalidationListener>)> {
        self.registrations
            .read()
            .iter()
            .filter_map(|r| Some((r.prefix.clone(), r.listener.upgrade()?)))
            .collect()
    }

    /// Marks tracking lost (once per connection) and tells every listener, then wakes the task.
    fn lose(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.counters.losses.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                reason = why,
                "near-cache tracking lost; near caches emptied"
            );
            for (_, l) in self.listeners() {
                l.tracking_lost();
            }
        }
        self.wake.notify_one();
    }

    /// Handles a push of connection `generation`; runs on redis-rs's connection task.
    fn on_push(&self, generation: u64, info: PushInfo) {
        match info.kind {
            PushKind::Invalidate => {
                self.counters.messages.fetch_add(1, Ordering::Relaxed);
                match info.data.first() {
                    Some(Value::Array(keys)) => {
                        let regs = self.registrations.read();
                        for key in keys {
                            let key = match key {
                                Value::BulkString(b) => std::str::from_utf8(b).ok(),
                                Value::SimpleString(s) => Some(s.as_str()),
                                _ => None,
                            };
                            let Some(rel) = key.and_then(|k| k.strip_prefix(&self.key_base)) else {
                                continue;
                            };
                            self.counters.keys.fetch_add(1, Ordering::Relaxed);
                            for r in regs.iter().filter(|r| rel.starts_with(r.prefix.as_str())) {
                                if let Some(l) = r.listener.upgrade() {
                                    l.invalidate(rel);
                                }
                            }
                        }
                    }
                    // An invalidation without keys: the database was flushed.
                    _ => {
                        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
                        for (_, l) in self.listeners() {
                            l.flush();
                        }
                    }
                }
            }
            PushKind::Disconnection if self.generation.load(Ordering::Acquire) == generation => {
                self.lose("the tracking connection closed");
            }
            _ => {}
        }
    }

    /// Connects, enables tracking of every registered prefix and tells the listeners. Holds the
    /// connection lock throughout, so registrations wait and then see the result.
    async fn connect(self: &Arc<Self>) -> RedisResult<MultiplexedConnection> {
        let mut conn = self.conn.lock().await;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let weak = Arc::downgrade(self);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.response_timeout))
            .set_push_sender(move |info: PushInfo| {
                if let Some(shared) = weak.upgrade() {
                    shared.on_push(generation, info);
                }
                Ok::<(), Infallible>(())
            });
        let mut c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let listeners = self.listeners();
        let prefixes = minimal_prefixes(
            listeners
                .iter()
                .map(|(p, _)| format!("{}{p}", self.key_base))
                .collect(),
        );
        tracking_cmd(&prefixes).query_async::<()>(&mut c).await?;
        conn.conn = Some(c.clone());
        conn.tracked = prefixes;
        self.up.store(true, Ordering::Release);
        self.counters.connects.fetch_add(1, Ordering::Relaxed);
        tracing::info!(prefixes = ?conn.tracked, "near-cache tracking up");
        for (_, l) in listeners {
            l.tracking_ready();
        }
        Ok(c)
    }
}

/// The tracker's task: wait for a listener, connect, check, reconnect. It holds the shared state
/// until the [`Tracker`] aborts it on drop.
async fn run(shared: Arc<Shared>) {
    let options = shared.options;
    let mut backoff = Duration::ZERO;
    loop {
        if shared.registrations.read().is_empty() {
            shared.wake.notified().await;
            continue;
        }
        let mut conn = match shared.connect().await {
            Ok(c) => {
                backoff = Duration::ZERO;
                c
            }
            Err(e) => {
                backoff = (backoff * 2)
                    .max(options.min_backoff)
                    .min(options.max_backoff);
                tracing::warn!(error = %e, retry_in = ?backoff, "near-cache tracking: connect failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        // Health loop: until the connection is lost or stops answering.
        while shared.up.load(Ordering::Acquire) {
            tokio::select! {
                () = shared.wake.notified() => continue,
                () = tokio::time::sleep(options.health_interval) => {}
            }
            let ping = tokio::time::timeout(
                options.response_timeout,
                redis::cmd("PING").query_async::<String>(&mut conn),
            )
            .await;
            if !matches!(ping, Ok(Ok(_))) {
                shared.lose("the tracking connection failed its health check");
            }
        }
    }
}

/// The trackers of a store's connections, one per key prefix (clones and scoped views of a store
/// share them), started on the first registration.
pub(crate) struct Trackers {
    /// The client of a standalone server; on a cluster or under Sentinel (not supported), why not.
    client: Result<redis::Client, &'static str>,
    options: TrackingOptions,
    by_prefix: Mutex<HashMap<String, Arc<Tracker>>>,
}

impl Trackers {
    /// The trackers of the connections `manager` opens, with its timeouts (none started yet).
    pub(crate) fn new(manager: &crate::manager::Manager) -> Self {
        let (connect_timeout, response_timeout) = manager.timeouts();
        Self {
            client: manager.tracking_client(),
            options: TrackingOptions {
                connect_timeout,
                response_timeout,
                ..TrackingOptions::default()
            },
            by_prefix: Mutex::new(HashMap::new()),
        }
    }

    /// The tracker of `store_prefix`, started if needed; on a cluster or under Sentinel, why
    /// there is none.
    pub(crate) fn get_or_start(&self, store_prefix: &str) -> Result<Arc<Tracker>, &'static str> {
        let client = self.client.as_ref().map_err(|why| *why)?;
        let mut map = self.by_prefix.lock();
        let tracker = map
            .entry(store_prefix.to_owned())
            .or_insert_with(|| Arc::new(Tracker::start(client, store_prefix, self.options)));
        Ok(Arc::clone(tracker))
    }

    /// Ends every tracker (for `close`): its task stops, its listeners hear
    /// [`InvalidationListener::tracking_lost`] (so near caches empty and serve nothing more), and its
    /// connection is sent `QUIT`, so that it is gone from the server when this returns.
    pub(crate) async fn close(&self, timeout: Duration) {
        let trackers: Vec<Arc<Tracker>> = self.by_prefix.lock().drain().map(|(_, t)| t).collect();
        for tracker in trackers {
            tracker.task.abort();
            tracker.shared.lose("the store was closed");
            let conn = tracker.shared.conn.lock().await.conn.take();
            if let Some(mut c) = conn {
                let _ = tokio::time::timeout(timeout, redis::cmd("QUIT").query_async::<()>(&mut c))
                    .await;
            }
        }
    }

    /// The statistics of `store_prefix`'s tracker, if one was started.
    pub(crate) fn stats(&self, store_prefix: &str) -> Option<TrackingStats> {
        self.by_prefix.lock().get(store_prefix).map(|t| t.stats())
    }
}

impl RedisStore {
    /// `Store::get_with_ttl`: `GET` and `PTTL` of the key in one pipeline (one round trip, two
    /// replies). Not atomic, as the trait allows: a write between the two is also reported to the
    /// near cache, which drops what it read (and a key gone by the `PTTL` answers `None`). A Lua
    /// script running both cost the server more, on the read that follows every invalidation of a
    /// near cache (the near-cache bench client's server CPU per op fell ~10% without it).
    pub(crate) async fn read_with_ttl(&self, key: &str) -> Result<Option<(Bytes, KeyTtl)>> {
        let full = self.full_key(key)?;
        let mut pipe = redis::pipe();
        // Each reply on its own, so that a server error (`WRONGTYPE` from `GET`) surfaces as that
        // command's error, which the error mapping knows, not as a "pipeline failure".
        pipe.cmd("GET")
            .arg(&full)
            .cmd("PTTL")
            .arg(&full)
            .ignore_errors();
        let pipe = &pipe;
        let (value, ms) = self
            .conns
            .run(
                "GET+PTTL",
                Some(key),
                Idempotency::Repeatable,
                |mut c| async move {
                    let replies: Vec<Value> = pipe.query_async(&mut c).await?;
                    let mut replies = replies.into_iter().map(Value::extract_error);
                    match (replies.next(), replies.next()) {
                        (Some(value), Some(ms)) => Ok((
                            Option::<Bytes>::from_redis_value(value?)?,
                            i64::from_redis_value(ms?)?,
                        )),
                        _ => Err(redis::RedisError::from((
                            redis::ErrorKind::UnexpectedReturnType,
                            "GET+PTTL answered fewer than two replies",
                        ))),
                    }
                },
            )
            .await?;
        crate::reply::value_with_ttl(value, ms)
    }

    /// `Store::track_changes`: registers `listener` with the tracker of this store's prefix
    /// (started on first use); on a cluster or under Sentinel, `Error::Unsupported` saying why.
    pub(crate) async fn register_listener(
        &self,
        prefix: &str,
        listener: Weak<dyn InvalidationListener>,
    ) -> Result<()> {
        let tracker = self
            .conns
            .trackers
            .get_or_start(&self.prefix)
            .map_err(|why| Error::Unsupported(why.to_owned()))?;
        tracker.register(prefix, listener).await;
        Ok(())
    }
}

#[cfg(test)]
mod unit {
    use super::minimal_prefixes;

    #[test]
    fn overlapping_prefixes_collapse() {
        let v = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            minimal_prefixes(v(&[
                "app:user:",
                "app:session:",
                "app:user:",
                "app:sessions:"
            ])),
            v(&["app:session:", "app:sessions:", "app:user:"])
        );
        assert_eq!(minimal_prefixes(v(&["app:user:", "app:"])), v(&["app:"]));
        assert_eq!(minimal_prefixes(v(&["a", ""])), v(&[""]));
    }
}
