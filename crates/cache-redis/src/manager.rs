//! The project's own `mobc::Manager` for redis 1.x: how a connection is opened (with the connect
//! timeout; under Sentinel, through a discovery of the primary or a replica) and checked (`PING`
//! with a timeout), and what a failed connect means (a `rediss://` URL pointing at a plain server is
//! diagnosed here).
//!
//! mobc-redis pins redis 0.28 (see the [crate documentation](crate#why-not-mobc-redis)); this manager
//! is what it would be on redis 1.x, plus timeouts and `validate` refusing connections found broken.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::Error;
use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, RedisError};

use crate::conn::Conn;
use crate::error::{self, Ctx};
use crate::route::Target;
use crate::sentinel::{Discovery, Want};

/// Margin of the outer timeouts over the inner redis-rs ones, so the inner ones (with the better
/// message) normally fire first.
pub(crate) const BACKSTOP: Duration = Duration::from_millis(50);

/// The name every connection to one server gives itself (`CLIENT SETNAME`), so that an operator's
/// `CLIENT LIST` shows which connections are ours.
pub const CLIENT_NAME: &str = "cachekit";

/// What the mobc pool holds: a connection and whether it was found broken (then `validate` refuses
/// it on check-in and the pool closes it).
pub(crate) struct Pooled {
    pub(crate) conn: Conn,
    pub(crate) broken: bool,
}

/// What a [`Manager`] connects with.
#[allow(clippy::large_enum_variant)] // One per store, built once and never moved on a hot path.
pub(crate) enum Client {
    /// One server.
    Single(redis::Client),
    /// A cluster (timeouts, retries, TLS, credentials and read routing are set on the client).
    Cluster(ClusterClient),
    /// The primary (or a replica) of a Sentinel service, found anew for every connection.
    Sentinel {
        /// The sentinels, the service, the data nodes' settings.
        discovery: Arc<Discovery>,
        /// Which node the connections are for. Replica connections fall back to the primary when
        /// no replica can be had.
        want: Want,
    },
}

/// Why a connection could not be opened (or checked).
pub(crate) enum OpenError {
    /// A redis-rs error, mapped by the caller with the target's name.
    Redis(RedisError),
    /// An error that names what failed already (a Sentinel discovery: which sentinel, which node).
    Mapped(Error),
}

impl From<RedisError> for OpenError {
    fn from(e: RedisError) -> Self {
        OpenError::Redis(e)
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Redis(e) => e.fmt(f),
            OpenError::Mapped(e) => e.fmt(f),
        }
    }
}

/// How long finding a node through the sentinels and connecting to it may take: one sentinel's
/// answer and one node's connection and `ROLE` (each a connect and a response timeout) when a
/// sentinel is down too.
pub(crate) fn sentinel_open_cap(connect_timeout: Duration, response_timeout: Duration) -> Duration {
    (connect_timeout + response_timeout) * 2 + BACKSTOP
}

/// The project's own `mobc::Manager` for redis 1.x.
pub(crate) struct Manager {
    client: Client,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    response_timeout: Duration,
    target: String,
    /// Set when the store is closed: no connection is opened, checked in or reused after that.
    closed: Arc<AtomicBool>,
}

impl Manager {
    pub(crate) fn new(
        client: Client,
        connect_timeout: Duration,
        response_timeout: Duration,
        target: String,
    ) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Self {
            client,
            config,
            connect_timeout,
            response_timeout,
            target,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag that closes this manager (shared with the store's connections).
    pub(crate) fn closed_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.closed)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// `host:port` of one server reached over TLS, for [`connect_error`]'s diagnosis.
    pub(crate) fn tls_addr(&self) -> Option<(String, u16)> {
        match &self.client {
            Client::Single(c) => match c.get_connection_info().addr() {
                redis::ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
                _ => None,
            },
            Client::Cluster(_) | Client::Sentinel { .. } => None,
        }
    }

    /// The client of one server, for the near-cache tracker's own connection; on a cluster or
    /// under Sentinel, why there is none (the `Error::Unsupported` message of `track_changes`).
    pub(crate) fn tracking_client(&self) -> Result<redis::Client, &'static str> {
        match &self.client {
            Client::Single(c) => Ok(c.clone()),
            Client::Cluster(_) => Err(
                "near caches need server-assisted invalidation, which cachekit implements for one \
                 Redis server, not for Redis Cluster (per-node tracking): turn the near cache off \
                 on a cluster",
            ),
            // The tracking connection would have to be opened through the discovery and moved
            // to the new primary on every failover, with the caches emptied in between; until
            // that exists, a near cache under Sentinel is refused rather than left tracking a
            // demoted or dead primary.
            Client::Sentinel { .. } => Err(
                "near caches need server-assisted invalidation, which cachekit implements for one \
                 Redis server addressed by REDIS_URL, not under Redis Sentinel (the tracking \
                 connection does not follow failovers): turn the near cache off under Sentinel",
            ),
        }
    }

    /// The connect and response timeouts.
    pub(crate) fn timeouts(&self) -> (Duration, Duration) {
        (self.connect_timeout, self.response_timeout)
    }

    /// Whether this manager opens cluster connections.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.client, Client::Cluster(_))
    }

    /// The Sentinel discovery of this manager's connections, if they are found through Sentinel.
    pub(crate) fn discovery(&self) -> Option<&Arc<Discovery>> {
        match &self.client {
            Client::Sentinel { discovery, .. } => Some(discovery),
            _ => None,
        }
    }

    /// Opens a connection, bounded by the connect timeout (TCP, TLS, AUTH and SELECT included).
    /// A cluster connection also reads the slot map (`CLUSTER SLOTS`) and connects to every node,
    /// so it gets the response timeout on top.
    async fn open(&self) -> Result<Conn, OpenError> {
        match &self.client {
            Client::Single(client) => {
                let fut = client.get_multiplexed_async_connection_with_config(&self.config);
                // redis-rs applies the connect timeout itself; the outer one is a backstop.
                let mut conn =
                    match tokio::time::timeout(self.connect_timeout + BACKSTOP, fut).await {
                        Ok(r) => r?,
                        Err(_) => return Err(timed_out().into()),
                    };
                set_name(&mut conn, &self.target).await;
                Ok(Conn::Single(conn))
            }
            Client::Cluster(client) => {
                let limit = self.connect_timeout + self.response_timeout + BACKSTOP;
                match tokio::time::timeout(limit, client.get_async_connection()).await {
                    Ok(r) => Ok(r.map(Conn::Cluster)?),
                    Err(_) => Err(timed_out().into()),
                }
            }
            Client::Sentinel { discovery, want } => {
                let limit = sentinel_open_cap(self.connect_timeout, self.response_timeout);
                let start = Instant::now();
                let find = async {
                    match want {
                        Want::Primary => discovery.connect(Want::Primary).await,
                        // Reads from replicas: the primary serves them when no replica can.
                        Want::Replica => match discovery.connect(Want::Replica).await {
                            Ok(found) => Ok(found),
                            Err(e) => {
                                tracing::debug!(target: "cache_redis", service = discovery.service(), error = %e, "no replica to read from; reading from the primary");
                                discovery.connect(Want::Primary).await
                            }
                        },
                    }
                };
                match tokio::time::timeout(limit, find).await {
                    Ok(Ok(mut found)) => {
                        tracing::debug!(target: "cache_redis", service = discovery.service(), node = %found.addr, "connected through Sentinel");
                        set_name(&mut found.conn, &self.target).await;
                        Ok(Conn::Single(found.conn))
                    }
                    Ok(Err(e)) => Err(OpenError::Mapped(e)),
                    Err(_) => Err(OpenError::Mapped(Error::Timeout {
                        operation: format!(
                            "finding a node of {} through the sentinels",
                            discovery.service()
                        ),
                        elapsed: start.elapsed(),
                        setting: "REDIS_CONNECT_TIMEOUT",
                    })),
                }
            }
        }
    }

    /// The redacted address of the server.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }
}

#[async_trait::async_trait]
impl mobc::Manager for Manager {
    type Connection = Pooled;
    type Error = OpenError;

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

    async fn connect(&self) -> Result<Pooled, OpenError> {
        if self.is_closed() {
            return Err(closed().into());
        }
        let conn = self.open().await?;
        tracing::debug!(target: "cache_redis", server = %self.target, "opened a Redis connection");
        Ok(Pooled {
            conn,
            broken: false,
        })
    }

    async fn check(&self, mut conn: Pooled) -> Result<Pooled, OpenError> {
        if self.is_closed() {
            return Err(closed().into());
        }
        probe(&mut conn.conn, self.response_timeout).await?;
        Ok(conn)
    }

    fn validate(&self, conn: &mut Pooled) -> bool {
        !conn.broken && !self.is_closed()
    }
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

fn closed() -> RedisError {
    RedisError::from(std::io::Error::other("the store is closed"))
}

/// Names a new connection [`CLIENT_NAME`]. A server or ACL user that refuses `CLIENT SETNAME` does
/// not make the connection unusable: the failure is logged and the connection kept.
pub(crate) async fn set_name(conn: &mut redis::aio::MultiplexedConnection, target: &str) {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("SETNAME").arg(CLIENT_NAME);
    if let Err(e) = cmd.query_async::<()>(conn).await {
        tracing::debug!(target: "cache_redis", server = %target, error = %e, "CLIENT SETNAME refused; the connection stays unnamed");
    }
}

/// Asks the server to close this connection (`QUIT`), bounded by `timeout`, so that it is gone from
/// the server's `CLIENT LIST` when this returns. Only for a connection to one server (on a cluster
/// connection a `QUIT` would reach one node, and the connection would reconnect to it); failures are
/// ignored: the connection is dropped right after anyway.
pub(crate) async fn quit(conn: &mut Conn, timeout: Duration) {
    if let Conn::Single(c) = conn {
        let cmd = redis::cmd("QUIT");
        let _ = tokio::time::timeout(timeout, cmd.query_async::<()>(c)).await;
    }
}

/// `PING` sent to `target`, bounded by `timeout`; returns the round-trip time.
async fn ping_at(
    conn: &mut Conn,
    target: Target<'_>,
    timeout: Duration,
) -> Result<Duration, RedisError> {
    let start = Instant::now();
    let cmd = redis::cmd("PING");
    match tokio::time::timeout(timeout + BACKSTOP, conn.query::<String>(&cmd, target)).await {
        Ok(r) => r.map(|_| start.elapsed()),
        Err(_) => Err(timed_out()),
    }
}

/// `PING` on one server, bounded by `timeout`; returns the round-trip time.
pub(crate) async fn ping(conn: &mut Conn, timeout: Duration) -> Result<Duration, RedisError> {
    ping_at(conn, Target::Auto, timeout).await
}

/// Whether a connection object still works: `PING` on a single connection; on a cluster
/// connection a `PING` to any one node (the cluster connection reconnects to nodes by itself, so
/// one node being down does not make the connection object bad; `ping` of the store checks every
/// primary instead).
pub(crate) async fn probe(conn: &mut Conn, timeout: Duration) -> Result<Duration, RedisError> {
    let target = match conn {
        Conn::Single(_) => Target::Auto,
        Conn::Cluster(_) => Target::AnyNode,
    };
    ping_at(conn, target, timeout).await
}

/// Maps an error of opening a connection to `target`. A TLS connect that timed out is first
/// checked against a plain-text `PING` (`tls_addr`): a plain Redis waits for the end of a line that
/// a TLS ClientHello never sends, so `rediss://` against a server without TLS otherwise looks like a
/// timeout.
pub(crate) async fn connect_error(
    e: RedisError,
    tls_addr: Option<&(String, u16)>,
    target: &str,
    elapsed: Duration,
    response_timeout: Duration,
) -> Error {
    if let (Some((host, port)), true) = (tls_addr, e.is_timeout()) {
        let limit = response_timeout.min(Duration::from_millis(300));
        if speaks_plain_redis(host, *port, limit).await {
            return Error::Tls(format!(
                "{target} answers plain-text Redis but not TLS: use redis:// instead of \
                 rediss:// in REDIS_URL, or enable TLS on the server"
            ));
        }
    }
    error::map(
        e,
        Ctx {
            op: "connect",
            key: None,
            target,
            elapsed,
            connecting: true,
        },
    )
}

/// Whether the server at `host:port` answers a plain-text `PING` within `limit`.
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
