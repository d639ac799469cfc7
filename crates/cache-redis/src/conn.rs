//! Connections: the mobc manager, the shared multiplexed slots of the hot path, the background
//! maintenance task, and the call runner (timeouts and retries).
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
//! - every call is bounded: a first attempt on a ready standalone connection by redis-rs's response
//!   timeout, everything else (reconnects, retries, cluster calls) by [`Limits::call_cap`] through one
//!   outer `tokio::time::timeout`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cache_core::config::RetryConfig;
use cache_core::{Error, PoolStats, Result};
use parking_lot::RwLock;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Value};

use crate::error::{self, Ctx, Disposition};

/// One connection of the hot path: a multiplexed connection to one server, or a cluster connection
/// (redis-rs keeps a multiplexed connection per node inside it, follows `MOVED`/`ASK` and refreshes
/// the slot map). Every command of the store is written against `ConnectionLike`, which both
/// implement; the cluster-only parts (routing to a node, to a slot's primary or replica) are the
/// methods below.
#[derive(Clone)]
pub(crate) enum Conn {
    /// A multiplexed connection to one server.
    Single(MultiplexedConnection),
    /// A Redis Cluster connection.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Shortens the response timeout of this clone (for the last attempt within a retry budget).
    /// A cluster connection has one overall timeout per request, set when it is opened.
    fn set_response_timeout(&mut self, timeout: Duration) {
        match self {
            Conn::Single(c) => c.set_response_timeout(timeout),
            Conn::Cluster(_) => {}
        }
    }

    /// Sends `cmd` to the node that serves `route` (cluster), or to the one server.
    pub(crate) async fn query_routed<T: FromRedisValue>(
        &mut self,
        cmd: &Cmd,
        route: Route,
    ) -> std::result::Result<T, RedisError> {
        let value = match self {
            Conn::Single(c) => c.req_packed_command(cmd).await?,
            Conn::Cluster(c) => {
                c.route_command(
                    cmd.clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await?
            }
        };
        Ok(redis::from_redis_value(value.extract_error()?)?)
    }

    /// Sends `cmd` to the cluster node at `host:port` (or to the one server).
    pub(crate) async fn query_node<T: FromRedisValue>(
        &mut self,
        cmd: &Cmd,
        host: &str,
        port: u16,
    ) -> std::result::Result<T, RedisError> {
        let value = match self {
            Conn::Single(c) => c.req_packed_command(cmd).await?,
            Conn::Cluster(c) => {
                c.route_command(
                    cmd.clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.to_owned(),
                        port,
                    }),
                )
                .await?
            }
        };
        Ok(redis::from_redis_value(value.extract_error()?)?)
    }

    /// Sends `cmd` to any one node (cluster), or to the one server.
    pub(crate) async fn query_any<T: FromRedisValue>(
        &mut self,
        cmd: &Cmd,
    ) -> std::result::Result<T, RedisError> {
        let value = match self {
            Conn::Single(c) => c.req_packed_command(cmd).await?,
            Conn::Cluster(c) => {
                c.route_command(
                    cmd.clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                )
                .await?
            }
        };
        Ok(redis::from_redis_value(value.extract_error()?)?)
    }
}

/// What the mobc pool holds: a connection and whether it was found broken (then `validate` refuses
/// it on check-in and the pool closes it).
pub(crate) struct Pooled {
    conn: Conn,
    broken: bool,
}

/// What a [`Manager`] connects with.
#[allow(clippy::large_enum_variant)] // One per store, built once and never moved on a hot path.
pub(crate) enum Client {
    /// One server.
    Single(redis::Client),
    /// A cluster (timeouts, retries, TLS, credentials and read routing are set on the client).
    Cluster(ClusterClient),
}

/// The project's own `mobc::Manager` for redis 1.x (mobc-redis pins redis 0.28: see the crate docs).
pub(crate) struct Manager {
    client: Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    response_timeout: Duration,
    target: String,
    /// `host:port` of a TLS server, for [`Manager::speaks_plain_redis`].
    tls_addr: Option<(String, u16)>,
}

impl Manager {
    pub(crate) fn new(
        client: Client,
        connect_timeout: Duration,
        response_timeout: Duration,
        target: String,
    ) -> Self {
        let tls_addr = match &client {
            Client::Single(c) => match c.get_connection_info().addr() {
                redis::ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
                _ => None,
            },
            Client::Cluster(_) => None,
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Self {
            client,
            config,
            connect_timeout,
            response_timeout,
            target,
            tls_addr,
        }
    }

    /// `host:port` when the connection uses TLS.
    pub(crate) fn tls_addr(&self) -> Option<(String, u16)> {
        self.tls_addr.clone()
    }

    /// Opens a connection, bounded by the connect timeout (TCP, TLS, AUTH and SELECT included).
    /// A cluster connection also reads the slot map (`CLUSTER SLOTS`) and connects to every node,
    /// so it gets the response timeout on top.
    pub(crate) async fn open(&self) -> std::result::Result<Conn, RedisError> {
        let timed_out = || RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        match &self.client {
            Client::Single(client) => {
                let fut = client.get_multiplexed_async_connection_with_config(&self.config);
                // redis-rs applies the connect timeout itself; the outer one is a backstop.
                match tokio::time::timeout(self.connect_timeout + BACKSTOP, fut).await {
                    Ok(r) => r.map(Conn::Single),
                    Err(_) => Err(timed_out()),
                }
            }
            Client::Cluster(client) => {
                let limit = self.connect_timeout + self.response_timeout + BACKSTOP;
                match tokio::time::timeout(limit, client.get_async_connection()).await {
                    Ok(r) => r.map(Conn::Cluster),
                    Err(_) => Err(timed_out()),
                }
            }
        }
    }

    /// The redacted address of the server.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }
}

/// After a failed TLS connect: whether the server answers a plain-text `PING` (then `rediss://`
/// points at a server without TLS, which otherwise just looks like a timeout: a plain Redis waits
/// for the end of a line that a TLS ClientHello never sends).
async fn speaks_plain_redis(host: &str, port: u16, limit: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut first = [0u8; 1];
        s.read_exact(&mut first).await.ok()?;
        Some(matches!(first[0], b'+' | b'-'))
    };
    matches!(tokio::time::timeout(limit, probe).await, Ok(Some(true)))
}

/// Margin of the outer timeouts over the inner redis-rs ones, so the inner ones (with the better
/// message) normally fire first.
const BACKSTOP: Duration = Duration::from_millis(50);

#[async_trait::async_trait]
impl mobc::Manager for Manager {
    type Connection = Pooled;
    type Error = RedisError;

    fn spawn_task<T>(&self, task: T)
    where
        T: Future + Send + 'static,
        T::Output: Send + 'static,
    {
        // mobc returns connections to the pool from a spawned task. Outside a runtime (a store
        // dropped after its runtime) there is nothing to return them to: dropping the task closes
        // the connection, instead of the panic `tokio::spawn` would raise.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(task);
        }
    }

    async fn connect(&self) -> std::result::Result<Pooled, RedisError> {
        let conn = self.open().await?;
        tracing::debug!(target: "cache_redis", server = %self.target, "opened a Redis connection");
        Ok(Pooled {
            conn,
            broken: false,
        })
    }

    async fn check(&self, mut conn: Pooled) -> std::result::Result<Pooled, RedisError> {
        probe(&mut conn.conn, self.response_timeout).await?;
        Ok(conn)
    }

    fn validate(&self, conn: &mut Pooled) -> bool {
        !conn.broken
    }
}

/// `PING`, bounded by `timeout`; returns the round-trip time.
pub(crate) async fn ping(
    conn: &mut Conn,
    timeout: Duration,
) -> std::result::Result<Duration, RedisError> {
    let start = Instant::now();
    let cmd = redis::cmd("PING");
    let fut = cmd.query_async::<String>(conn);
    match tokio::time::timeout(timeout + BACKSTOP, fut).await {
        Ok(r) => r.map(|_| start.elapsed()),
        Err(_) => Err(RedisError::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        ))),
    }
}

/// Whether a connection object still works: `PING` on a single connection; on a cluster
/// connection a `PING` to any one node (the cluster connection reconnects to nodes by itself, so
/// one node being down does not make the connection object bad; `ping` of the store checks every
/// primary instead).
pub(crate) async fn probe(
    conn: &mut Conn,
    timeout: Duration,
) -> std::result::Result<Duration, RedisError> {
    match conn {
        Conn::Single(_) => ping(conn, timeout).await,
        Conn::Cluster(_) => {
            let start = Instant::now();
            let cmd = redis::cmd("PING");
            match tokio::time::timeout(timeout + BACKSTOP, conn.query_any::<String>(&cmd)).await {
                Ok(r) => r.map(|_| start.elapsed()),
                Err(_) => Err(RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                ))),
            }
        }
    }
}

/// Time limits derived from the configuration.
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
    /// The hard upper bound of one call, retries included:
    /// `max(retry budget, connect timeout + response timeout)`.
    pub(crate) fn call_cap(&self) -> Duration {
        self.retry
            .budget
            .max(self.connect_timeout + self.response_timeout)
    }

    /// How long a refill may take: waiting for the pool, then connecting.
    fn refill_cap(&self) -> Duration {
        self.pool_wait_timeout + self.connect_timeout + BACKSTOP
    }
}

/// Whether a call may be repeated after its command may have reached the server.
///
/// The rule: repeat only when both the effect and the returned value are the same the second time.
/// Any call may be retried when it failed before its command was sent (no connection could be had).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Reads, unconditional writes with a fixed value, TTL settings whose answer does not change.
    Repeatable,
    /// Counters, compare-and-swap, conditional writes, and commands whose answer would change
    /// (`UNLINK` counts, `ZADD` "new member"): retried only if the command was never sent.
    Once,
}

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
    pool: mobc::Pool<Manager>,
    slots: Vec<Slot>,
    next: AtomicUsize,
    generation: AtomicU64,
    limits: Limits,
    max_open: u64,
    waits: AtomicU64,
    timeouts: AtomicU64,
    reconnects: AtomicU64,
    /// Consecutive failed reconnects, for the log level.
    down_streak: AtomicU32,
    maintenance: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
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
        let cluster = matches!(manager.client, Client::Cluster(_));
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
        })
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
    async fn acquire(self: &Arc<Self>, idx: usize) -> Result<(Conn, u64)> {
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
            Ok(Err(mobc::Error::Inner(e))) => {
                let elapsed = start.elapsed();
                let plain = match &self.tls_addr {
                    Some((host, port)) if e.is_timeout() => {
                        let limit = self.limits.response_timeout.min(Duration::from_millis(300));
                        speaks_plain_redis(host, *port, limit).await
                    }
                    _ => false,
                };
                if plain {
                    return Err(Error::Tls(format!(
                        "{} answers plain-text Redis but not TLS: use redis:// instead of \
                         rediss:// in REDIS_URL, or enable TLS on the server",
                        self.manager_target
                    )));
                }
                Err(error::map(
                    e,
                    Ctx {
                        op: "connect",
                        key: None,
                        target: &self.manager_target,
                        elapsed,
                        connecting: true,
                    },
                ))
            }
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

    fn pick(&self) -> usize {
        if self.slots.len() == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()
        }
    }

    /// Runs one command with the store's timeouts and retry policy.
    ///
    /// `f` gets a connection clone and returns the command's future; it may be called again for a
    /// retry. Errors are mapped with `op` and `key` for the message.
    ///
    /// Fast path (one server): the first attempt on a ready connection runs without the outer call
    /// cap, because redis-rs's per-request response timeout already bounds it; a second timer per
    /// call was a measurable part of the client's CPU (benchmark profile). Reconnects and retries
    /// run under the outer cap as before. A cluster connection re-sends internally, so cluster calls
    /// always run under the cap.
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
        let retry = &self.limits.retry;
        let mut first_failure: Option<Error> = None;
        // The slot of the first attempt; if it is not ready, the slow path below refills this same
        // slot (picking another one would leave it empty for as long as traffic alternates).
        let mut first_slot = Some(self.pick());
        if let (false, Some(idx)) = (self.cluster, first_slot) {
            if let Some((conn, generation)) = self.ready(idx) {
                first_slot = None;
                match f(conn).await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        let err = self.failed(idx, generation, e, op, key, start);
                        let may_repeat = idempotency == Idempotency::Repeatable;
                        if !(err.is_transient() && may_repeat && retry.max_attempts > 1) {
                            return Err(err);
                        }
                        first_failure = Some(err);
                    }
                }
            }
        }
        let cap = self.limits.call_cap();
        let work = async {
            let mut attempt: u32 = 1;
            if let Some(err) = first_failure {
                let delay = full_jitter(retry, attempt);
                if start.elapsed() + delay >= retry.budget {
                    return Err(err);
                }
                tracing::debug!(target: "cache_redis", op, attempt, error = %err, ?delay, "retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            loop {
                let idx = first_slot.take().unwrap_or_else(|| self.pick());
                let (err, sent) = match self.acquire(idx).await {
                    Err(e) => (e, false),
                    Ok((mut conn, generation)) => {
                        if attempt > 1 {
                            // Keep the last attempts inside the budget.
                            let left = retry.budget.saturating_sub(start.elapsed());
                            if left < self.limits.response_timeout {
                                conn.set_response_timeout(left.max(Duration::from_millis(1)));
                            }
                        }
                        match f(conn).await {
                            Ok(v) => return Ok(v),
                            Err(e) => (self.failed(idx, generation, e, op, key, start), true),
                        }
                    }
                };
                let may_repeat = !sent || idempotency == Idempotency::Repeatable;
                if !(err.is_transient() && may_repeat && attempt < retry.max_attempts) {
                    return Err(err);
                }
                let mut delay = full_jitter(retry, attempt);
                if !sent {
                    // No connection could be had: every slot may be in its reconnect backoff
                    // (failing fast with the last error). Retrying before the earliest slot may
                    // reconnect would only replay that error, so wait until then when it fits in
                    // the budget (a server that just came back is then reached at once).
                    if let Some(at) = self.earliest_reconnect() {
                        delay = delay.max(at.saturating_duration_since(Instant::now()));
                    }
                }
                if start.elapsed() + delay >= retry.budget {
                    return Err(err);
                }
                tracing::debug!(target: "cache_redis", op, attempt, error = %err, ?delay, "retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        };
        match tokio::time::timeout(cap, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                operation: format!("{op} on {}", self.manager_target),
                elapsed: start.elapsed(),
                setting: "REDIS_RETRY_BUDGET",
            }),
        }
    }

    /// The slot's connection if it is ready, without waiting (the fast path of [`Self::acquire`]).
    fn ready(&self, idx: usize) -> Option<(Conn, u64)> {
        match &*self.slots[idx].state.read() {
            SlotState::Ready {
                conn, generation, ..
            } => Some((conn.clone(), *generation)),
            SlotState::Empty { .. } => None,
        }
    }

    /// Records what a failed command says about its connection (retire it, suspect it, or
    /// nothing) and maps the error.
    fn failed(
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
        } else {
            error::disposition(&e)
        };
        match disposition {
            Disposition::Healthy => {}
            Disposition::Suspect => self.suspect(idx, generation),
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
    fn earliest_reconnect(&self) -> Option<Instant> {
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

/// The backoff ceiling of attempt `n` (1-based): `base * 2^(n-1)`, at most `max_delay`.
pub(crate) fn backoff_ceiling(retry: &RetryConfig, n: u32) -> Duration {
    let factor = 1u32
        .checked_shl(n.saturating_sub(1).min(16))
        .unwrap_or(u32::MAX);
    retry.base_delay.saturating_mul(factor).min(retry.max_delay)
}

/// Exponential backoff with full jitter: uniform in `[0, ceiling]`.
pub(crate) fn full_jitter(retry: &RetryConfig, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(retry, attempt);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max_and_jitter_stays_below() {
        let retry = RetryConfig::default();
        assert_eq!(backoff_ceiling(&retry, 1), Duration::from_millis(20));
        assert_eq!(backoff_ceiling(&retry, 2), Duration::from_millis(40));
        assert_eq!(backoff_ceiling(&retry, 3), Duration::from_millis(80));
        assert_eq!(backoff_ceiling(&retry, 10), Duration::from_millis(200));
        assert_eq!(
            backoff_ceiling(&retry, u32::MAX),
            Duration::from_millis(200)
        );
        for attempt in 1..6 {
            assert!(full_jitter(&retry, attempt) <= backoff_ceiling(&retry, attempt));
        }
    }
}
