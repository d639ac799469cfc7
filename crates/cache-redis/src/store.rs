//! [`RedisStore`]: the [`Store`] implementation on one Redis server or a Redis Cluster.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::config::redact_url;
use cache_core::keys::{glob_escape, validate_prefix};
use cache_core::store::{check_key, ttl_millis};
use cache_core::{
    async_trait, BackendConfig, BackendStats, CasOutcome, Config, Error, Expiry, KeyTtl, Result,
    ScanCursor, ScanPage, SetCondition, SetOptions, Store,
};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_read_routing::RandomReplicaStrategy;
use redis::cluster_routing::{Route, SlotAddr};
use redis::{Cmd, FromRedisValue, IntoConnectionInfo, RedisError, Value};

use crate::cluster::{self, ClusterScan, NodeHealth, NodeRole};
use crate::conn::{self, Client, Conn, Connections, Idempotency, Limits, Manager};
use crate::scripts;

/// How many times the cluster connection itself may re-send one command (to follow `MOVED` / `ASK`
/// redirections, and to a new primary after a failover) within one response timeout.
const CLUSTER_REDIRECTS: u32 = 5;

/// How many shared multiplexed connections a store keeps by default (see
/// [`RedisStoreBuilder::with_shared_connections`]).
pub const DEFAULT_SHARED_CONNECTIONS: usize = 2;

/// A [`Store`] on one Redis server (standalone, or a primary behind a proxy) or on a Redis Cluster
/// ([`BackendConfig::Cluster`]; see the [crate documentation](crate#redis-cluster)).
///
/// Cheap to clone: clones share the connections. See the [crate documentation](crate) for the
/// connection design, timeouts, retries and error mapping.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) conns: Arc<Connections>,
    /// Cluster mode: reads of this view go to replicas ([`RedisStore::replica_reads`]).
    replica_reads: bool,
    prefix: String,
    /// `prefix:` (or empty), prepended to every key.
    key_prefix: String,
    scan_count: u32,
    max_value_bytes: usize,
    db: i64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.conns.target())
            .field("cluster", &self.conns.is_cluster())
            .field("replica_reads", &self.replica_reads)
            .field("db", &self.db)
            .field("prefix", &self.prefix)
            .field("shared_connections", &self.conns.slot_count())
            .finish_non_exhaustive()
    }
}

/// Options of a [`RedisStore`] beyond [`Config`]. Start with [`RedisStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .connect().await to build the store"]
pub struct RedisStoreBuilder {
    config: Config,
    shared_connections: usize,
    lazy: bool,
}

impl RedisStoreBuilder {
    /// How many long-lived multiplexed connections carry the commands (default
    /// [`DEFAULT_SHARED_CONNECTIONS`], at least 1, at most `REDIS_POOL_MAX_OPEN`). One connection
    /// pipelines any number of concurrent commands; a second one spreads the client-side work over
    /// two I/O tasks and keeps a spare while one is being replaced.
    pub fn with_shared_connections(mut self, n: usize) -> Self {
        self.shared_connections = n;
        self
    }

    /// Do not open a connection in [`RedisStoreBuilder::connect`]: the first command (or the
    /// background health check) does. The URL is still parsed and validated.
    pub fn with_lazy_connect(mut self) -> Self {
        self.lazy = true;
        self
    }

    /// Builds the store. Unless lazy, opens the first connection, so that a wrong URL, password,
    /// database or TLS setting is reported here. Must run inside a tokio runtime (the store keeps a
    /// background task for health checks).
    pub async fn connect(self) -> Result<RedisStore> {
        let config = self.config;
        config.validate()?;
        let (client, target, db) = match &config.backend {
            BackendConfig::Redis { url } => {
                let client = open_client(url, config.database)?;
                let info = client.get_connection_info();
                let db = info.redis_settings().db();
                let target = describe_addr(info.addr());
                (Client::Single(client), target, db)
            }
            BackendConfig::Cluster { nodes } => {
                let (client, target) = open_cluster_client(nodes, &config)?;
                (Client::Cluster(client), target, 0)
            }
            other => {
                return Err(Error::config(
                    "CACHE_BACKEND",
                    format!(
                        "RedisStore needs the redis backend (REDIS_URL) or a cluster \
                         (REDIS_CLUSTER_NODES), the configuration selects {}",
                        other.name()
                    ),
                ))
            }
        };
        let limits = Limits {
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            pool_wait_timeout: config.pool.wait_timeout,
            health_check_interval: config.pool.health_check_interval,
            max_lifetime: config.pool.max_lifetime,
            retry: config.retry.clone(),
        };
        let max_open = config.pool.max_open.max(1);
        let slots = self
            .shared_connections
            .clamp(1, usize::try_from(max_open).unwrap_or(usize::MAX));
        let manager = Manager::new(
            client,
            config.connect_timeout,
            config.response_timeout,
            target,
        );
        let conns = Connections::new(manager, slots, max_open, config.pool.max_idle, limits);
        if !self.lazy {
            conns.warm_up().await?;
        }
        conns.start_maintenance();
        let prefix = config.key_prefix.clone();
        Ok(RedisStore {
            conns,
            replica_reads: false,
            key_prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}:")
            },
            prefix,
            scan_count: config.scan_count,
            max_value_bytes: config.max_value_bytes,
            db,
        })
    }
}

/// Builds the cluster client from the seed nodes: credentials and TLS come from the node URLs (all
/// nodes must agree), timeouts from the config, and a replica read strategy when
/// `read_from_replicas` is on. Returns the client and a redacted description of the seeds.
fn open_cluster_client(
    nodes: &[String],
    config: &Config,
) -> Result<(redis::cluster::ClusterClient, String)> {
    let mut infos = Vec::with_capacity(nodes.len());
    let mut addrs = Vec::with_capacity(nodes.len());
    for node in nodes {
        let info = node.as_str().into_connection_info().map_err(|e| {
            Error::config(
                "REDIS_CLUSTER_NODES",
                format!(
                    "{:?} is not a valid node ({}); expected host:port, or \
                     redis://[user:password@]host:port (rediss:// for TLS)",
                    redact_url(node),
                    e.detail().unwrap_or(e.category())
                ),
            )
        })?;
        if matches!(info.addr(), redis::ConnectionAddr::Unix(_)) {
            return Err(Error::config(
                "REDIS_CLUSTER_NODES",
                "a cluster is reached over TCP (nodes announce IP and port), not a unix socket",
            ));
        }
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            install_crypto_provider();
        }
        addrs.push(describe_addr(info.addr()));
        infos.push(info);
    }
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let retry = &config.retry;
    let mut builder = ClusterClientBuilder::new(infos)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.response_timeout)
        .retries(CLUSTER_REDIRECTS)
        .min_retry_wait(ms(retry.base_delay))
        .max_retry_wait(ms(retry.max_delay).max(ms(retry.base_delay) + 1))
        .retry_wait_formula(ms(retry.base_delay).max(1), 2);
    if config.read_from_replicas {
        builder = builder.read_routing_strategy(RandomReplicaStrategy);
    }
    let client = builder.build().map_err(|e| {
        Error::config(
            "REDIS_CLUSTER_NODES",
            format!(
                "{} (all nodes must use the same scheme, user and password)",
                e.detail().unwrap_or(e.category())
            ),
        )
    })?;
    Ok((client, format!("cluster [{}]", addrs.join(","))))
}

/// Parses the URL (never echoing its password) and applies the database override.
fn open_client(url: &str, database: Option<i64>) -> Result<redis::Client> {
    let bad_url = |e: redis::RedisError| {
        Error::config(
            "REDIS_URL",
            format!(
                "{:?} is not a valid Redis URL ({}); expected \
                 redis://[user:password@]host:port[/db] or rediss:// for TLS",
                redact_url(url),
                e.detail().unwrap_or(e.category())
            ),
        )
    };
    let client = redis::Client::open(url).map_err(bad_url)?;
    let mut info = client.get_connection_info().clone();
    if let Some(db) = database {
        let settings = info.redis_settings().clone().set_db(db);
        info = info.set_redis_settings(settings);
    }
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        install_crypto_provider();
    }
    redis::Client::open(info).map_err(bad_url)
}

/// rustls needs a process-wide crypto provider; redis-rs enables none. We install `ring` (small,
/// no cmake/NASM needed, unlike aws-lc-rs) unless the application installed one already.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one first: that one is used, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn describe_addr(addr: &redis::ConnectionAddr) -> String {
    match addr {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
        redis::ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        other => format!("{other:?}"),
    }
}

fn score_arg(score: f64, what: &str) -> Result<String> {
    if score.is_nan() {
        return Err(Error::invalid_input(format!("{what} must not be NaN")));
    }
    Ok(if score == f64::INFINITY {
        "+inf".to_owned()
    } else if score == f64::NEG_INFINITY {
        "-inf".to_owned()
    } else {
        score.to_string()
    })
}

impl RedisStore {
    /// Connects with `config` (backend [`BackendConfig::Redis`] or [`BackendConfig::Cluster`]) and
    /// the default options: see [`RedisStoreBuilder::connect`].
    pub async fn connect(config: &Config) -> Result<RedisStore> {
        Self::builder(config).connect().await
    }

    /// A builder for options beyond [`Config`].
    pub fn builder(config: &Config) -> RedisStoreBuilder {
        RedisStoreBuilder {
            config: config.clone(),
            shared_connections: DEFAULT_SHARED_CONNECTIONS,
            lazy: false,
        }
    }

    /// A store sharing this one's connections, whose keys live under `{prefix}:{sub}` (for a
    /// component or a test that must not see or touch other keys). `sub` follows the prefix rules
    /// (letters, digits, `-_.`, `:` between segments).
    pub fn scoped(&self, sub: &str) -> Result<RedisStore> {
        if sub.is_empty() {
            return Err(Error::invalid_input("a scope must not be empty"));
        }
        let prefix = if self.prefix.is_empty() {
            sub.to_owned()
        } else {
            format!("{}:{sub}", self.prefix)
        };
        validate_prefix(&prefix).map_err(|e| Error::invalid_input(e.to_string()))?;
        Ok(RedisStore {
            conns: Arc::clone(&self.conns),
            replica_reads: self.replica_reads,
            key_prefix: format!("{prefix}:"),
            prefix,
            scan_count: self.scan_count,
            max_value_bytes: self.max_value_bytes,
            db: self.db,
        })
    }

    /// The server address (`host:port`, never with credentials); for a cluster,
    /// `cluster [host:port,...]` with the seed nodes.
    pub fn target(&self) -> &str {
        self.conns.target()
    }

    /// Whether this store runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conns.is_cluster()
    }

    /// A view of this store (same connections, same prefix) whose reads (`get`, `get_many`,
    /// `exists`, `ttl`, `zrange_by_score`, `zcard`) go to replicas when the cluster has them and
    /// `REDIS_READ_FROM_REPLICAS` is on; writes, atomic operations and scans still go to the
    /// primaries. Replicas lag behind their primary (asynchronous replication), so a read may miss
    /// a write made a moment earlier: use this view for cache data, never for sessions or anything
    /// that must read its own writes. Without `REDIS_READ_FROM_REPLICAS`, or on one server, the
    /// view reads from primaries like the store itself.
    pub fn replica_reads(&self) -> RedisStore {
        RedisStore {
            replica_reads: true,
            ..self.clone()
        }
    }

    /// Whether this view reads from replicas (see [`RedisStore::replica_reads`]).
    pub fn reads_from_replicas(&self) -> bool {
        self.replica_reads
    }

    /// The database number in use.
    pub fn database(&self) -> i64 {
        self.db
    }

    /// How many shared multiplexed connections carry the commands.
    pub fn shared_connections(&self) -> usize {
        self.conns.slot_count()
    }

    /// How many times a shared connection was (re)opened since the store was built (1 per slot
    /// at start; more after failures and lifetime rotations).
    pub fn connections_opened(&self) -> u64 {
        self.conns.reconnects()
    }

    /// The full Redis key of a relative key.
    pub fn full_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        let mut k = String::with_capacity(self.key_prefix.len() + key.len());
        k.push_str(&self.key_prefix);
        k.push_str(key);
        Ok(k)
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_bytes {
            return Err(Error::Capacity(format!(
                "value of {} bytes is larger than CACHE_MAX_VALUE_BYTES ({})",
                value.len(),
                self.max_value_bytes
            )));
        }
        Ok(())
    }

    /// Runs one command through the connection runner.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: Option<&str>,
        idempotency: Idempotency,
        cmd: Cmd,
    ) -> Result<T> {
        let cmd = &cmd;
        self.conns
            .run(op, key, idempotency, |mut c| async move {
                cmd.query_async::<T>(&mut c).await
            })
            .await
    }

    /// Where reads of this view go in a cluster.
    fn read_addr(&self) -> SlotAddr {
        if self.replica_reads {
            SlotAddr::ReplicaOptional
        } else {
            SlotAddr::Master
        }
    }

    /// Runs a read of one key, routed explicitly to the key's primary (or a replica for a
    /// [`RedisStore::replica_reads`] view) in a cluster.
    async fn read<T: FromRedisValue>(
        &self,
        op: &'static str,
        key: &str,
        full: &str,
        cmd: Cmd,
    ) -> Result<T> {
        let cmd = &cmd;
        let route = Route::with_key(full.as_bytes(), self.read_addr());
        self.conns
            .run(op, Some(key), Idempotency::Repeatable, |mut c| async move {
                c.query_routed::<T>(cmd, route).await
            })
            .await
    }

    /// The cluster topology (`CLUSTER NODES` from any node); empty on one server.
    pub(crate) async fn topology(&self) -> Result<Vec<cluster::Node>> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let cmd = &cmd;
        let text: String = self
            .conns
            .run(
                "CLUSTER NODES",
                None,
                Idempotency::Repeatable,
                |mut c| async move { c.query_any::<String>(cmd).await },
            )
            .await?;
        let nodes = cluster::parse_nodes(&text);
        if cluster::primaries(&nodes).is_empty() {
            return Err(Error::backend(format!(
                "CLUSTER NODES on {} lists no primary serving slots: is the cluster created?",
                self.target()
            )));
        }
        Ok(nodes)
    }

    /// Runs `cmd` on the cluster node `host:port` with the store's timeouts and retries; errors
    /// name the node.
    async fn on_node<T: FromRedisValue>(
        &self,
        op: &'static str,
        host: &str,
        port: u16,
        idempotency: Idempotency,
        cmd: &Cmd,
    ) -> Result<T> {
        self.conns
            .run(op, None, idempotency, |mut c| async move {
                c.query_node::<T>(cmd, host, port).await
            })
            .await
            .map_err(|e| name_node(e, host, port))
    }

    /// `SCAN` on the server (or cluster node `node`) with a full (prefixed, escaped) pattern;
    /// returns full keys.
    async fn scan_raw(
        &self,
        node: Option<(&str, u16)>,
        cursor: &str,
        full_pattern: &str,
        count: u32,
    ) -> Result<(String, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(if cursor.is_empty() { "0" } else { cursor })
            .arg("MATCH")
            .arg(full_pattern)
            .arg("COUNT")
            .arg(count.max(1));
        let (next, keys): (String, Vec<Vec<u8>>) = match node {
            None => {
                self.query("SCAN", None, Idempotency::Repeatable, cmd)
                    .await?
            }
            Some((host, port)) => {
                self.on_node("SCAN", host, port, Idempotency::Repeatable, &cmd)
                    .await?
            }
        };
        let keys = keys
            .into_iter()
            .filter_map(|k| match String::from_utf8(k) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::warn!(target: "cache_redis", key = ?String::from_utf8_lossy(e.as_bytes()), "skipping a key that is not UTF-8");
                    None
                }
            })
            .collect();
        Ok((next, keys))
    }

    fn full_pattern(&self, pattern: &str) -> String {
        if self.prefix.is_empty() {
            pattern.to_owned()
        } else {
            format!("{}:{pattern}", glob_escape(&self.prefix))
        }
    }
}

/// Names the cluster node in an error of a command sent to that node.
fn name_node(e: Error, host: &str, port: u16) -> Error {
    let node = format!("{host}:{port}");
    match e {
        Error::Connection {
            message, source, ..
        } => Error::Connection {
            message: format!("cluster node {node}: {message}"),
            target: node,
            source,
        },
        Error::Timeout {
            operation,
            elapsed,
            setting,
        } => Error::Timeout {
            operation: format!("{operation} (cluster node {node})"),
            elapsed,
            setting,
        },
        Error::Backend {
            message,
            transient,
            source,
        } => Error::Backend {
            message: format!("cluster node {node}: {message}"),
            transient,
            source,
        },
        other => other,
    }
}

fn wrong_count(what: &'static str) -> RedisError {
    RedisError::from((redis::ErrorKind::UnexpectedReturnType, what))
}

/// Sums the fields known on at least one node.
fn sum(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.fold(None, |acc, v| match (acc, v) {
        (None, v) => v,
        (a, None) => a,
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
    })
}

impl RedisStore {
    /// Keys of a scan reply relative to the prefix (keys outside it are dropped).
    fn relative_keys(&self, keys: Vec<String>) -> Vec<String> {
        keys.into_iter()
            .filter_map(|k| k.strip_prefix(&self.key_prefix).map(str::to_owned))
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// `UNLINK` of full keys: one command on one server; in a cluster one command per hash slot,
    /// sent concurrently, and the call fails if any part fails (the count is never short without
    /// an error).
    async fn unlink(&self, first: Option<&str>, fulls: &[String]) -> Result<u64> {
        if fulls.is_empty() {
            return Ok(0);
        }
        if !self.is_cluster() {
            let mut cmd = redis::cmd("UNLINK");
            cmd.arg(fulls);
            // The count would be lower on a repeat: not repeated once sent.
            return self.query("UNLINK", first, Idempotency::Once, cmd).await;
        }
        let cmds: Vec<(Route, Cmd)> = cluster::group_by_slot(fulls, SlotAddr::Master)
            .into_iter()
            .map(|(route, idx)| {
                let mut cmd = redis::cmd("UNLINK");
                for i in idx {
                    cmd.arg(&fulls[i]);
                }
                (route, cmd)
            })
            .collect();
        let cmds = &cmds;
        self.conns
            .run("UNLINK", first, Idempotency::Once, |c: Conn| async move {
                let parts = futures::future::try_join_all(cmds.iter().map(|(route, cmd)| {
                    let mut c = c.clone();
                    async move { c.query_routed::<u64>(cmd, *route).await }
                }))
                .await?;
                Ok(parts.into_iter().sum())
            })
            .await
    }

    /// `MGET` in a cluster: one per hash slot, concurrently, answers put back in the caller's order.
    async fn get_many_cluster(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let fulls = keys
            .iter()
            .map(|k| self.full_key(k))
            .collect::<Result<Vec<_>>>()?;
        let cmds: Vec<(Route, Vec<usize>, Cmd)> = cluster::group_by_slot(&fulls, self.read_addr())
            .into_iter()
            .map(|(route, idx)| {
                let mut cmd = redis::cmd("MGET");
                for &i in &idx {
                    cmd.arg(&fulls[i]);
                }
                (route, idx, cmd)
            })
            .collect();
        let (cmds, n) = (&cmds, keys.len());
        self.conns
            .run(
                "MGET",
                keys.first().copied(),
                Idempotency::Repeatable,
                |c: Conn| async move {
                    let parts =
                        futures::future::try_join_all(cmds.iter().map(|(route, idx, cmd)| {
                            let mut c = c.clone();
                            async move {
                                let values: Vec<Option<Vec<u8>>> =
                                    c.query_routed(cmd, *route).await?;
                                Ok::<_, RedisError>((idx, values))
                            }
                        }))
                        .await?;
                    let mut out = vec![None; n];
                    for (idx, values) in parts {
                        if values.len() != idx.len() {
                            return Err(wrong_count("MGET answered a different number of values"));
                        }
                        for (&i, v) in idx.iter().zip(values) {
                            out[i] = v;
                        }
                    }
                    Ok(out)
                },
            )
            .await
    }

    /// `set_many` in a cluster: one pipeline of `SET`s per hash slot, concurrently.
    async fn set_many_cluster(&self, entries: &[(&str, &[u8])], px: Option<u64>) -> Result<()> {
        let mut fulls = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            fulls.push(self.full_key(key)?);
            self.check_value(value)?;
        }
        let pipes: Vec<redis::Pipeline> = cluster::group_by_slot(&fulls, SlotAddr::Master)
            .into_iter()
            .map(|(_, idx)| {
                let mut pipe = redis::pipe();
                for i in idx {
                    let cmd = pipe.cmd("SET").arg(&fulls[i]).arg(entries[i].1);
                    if let Some(ms) = px {
                        cmd.arg("PX").arg(ms);
                    }
                    cmd.ignore();
                }
                pipe
            })
            .collect();
        let pipes = &pipes;
        // Unconditional SETs: repeating writes the same values.
        self.conns
            .run(
                "SET (pipeline)",
                entries.first().map(|e| e.0),
                Idempotency::Repeatable,
                |c: Conn| async move {
                    futures::future::try_join_all(pipes.iter().map(|pipe| {
                        let mut c = c.clone();
                        async move { pipe.query_async::<()>(&mut c).await }
                    }))
                    .await
                    .map(|_| ())
                },
            )
            .await
    }

    /// One page of a cluster scan: the primaries in turn (see [`cluster::ClusterScan`]).
    async fn scan_cluster(
        &self,
        pattern: &str,
        cursor: ScanCursor,
        count: u32,
    ) -> Result<ScanPage> {
        let mut state = if cursor.is_start() {
            let nodes = self.topology().await?;
            ClusterScan {
                nodes: cluster::primaries(&nodes)
                    .into_iter()
                    .map(|n| (n.host.clone(), n.port))
                    .collect(),
                index: 0,
                cursor: "0".to_owned(),
            }
        } else {
            ClusterScan::decode(cursor.as_backend())?
        };
        let (host, port) = state.nodes[state.index].clone();
        let (next, keys) = self
            .scan_raw(
                Some((&host, port)),
                &state.cursor,
                &self.full_pattern(pattern),
                count,
            )
            .await?;
        let next = if next != "0" {
            state.cursor = next;
            Some(state.encode())
        } else if state.index + 1 < state.nodes.len() {
            state.index += 1;
            state.cursor = "0".to_owned();
            Some(state.encode())
        } else {
            None
        };
        Ok(ScanPage {
            keys: self.relative_keys(keys),
            next,
        })
    }

    /// `SCAN` + batched `UNLINK` of every key matching `pattern` on the server or one node.
    async fn flush_node(&self, node: Option<(&str, u16)>, pattern: &str) -> Result<u64> {
        let mut cursor = String::from("0");
        let mut deleted = 0u64;
        loop {
            let (next, keys) = self
                .scan_raw(node, &cursor, pattern, self.scan_count)
                .await?;
            deleted += self.unlink(None, &keys).await?;
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// `PING` to every primary, concurrently; the error names the first node that did not answer.
    async fn ping_cluster(&self) -> Result<Duration> {
        let nodes = self.topology().await?;
        let cmd = redis::cmd("PING");
        let cmd = &cmd;
        let started = Instant::now();
        let results =
            futures::future::join_all(cluster::primaries(&nodes).into_iter().map(|n| async move {
                self.on_node::<String>("PING", &n.host, n.port, Idempotency::Repeatable, cmd)
                    .await
            }))
            .await;
        for r in results {
            r?;
        }
        Ok(started.elapsed())
    }

    /// `INFO` of every primary: sums (memory, clients, ops, hits, misses, keys...), the lowest
    /// uptime and the first version in the total, each primary's own figures in
    /// [`BackendStats::nodes`] (whose `backend` field holds the node's `host:port`).
    async fn stats_cluster(&self) -> Result<BackendStats> {
        let nodes = self.topology().await?;
        let cmd = redis::cmd("INFO");
        let cmd = &cmd;
        let primaries = cluster::primaries(&nodes);
        let texts = futures::future::try_join_all(primaries.iter().map(|n| async move {
            self.on_node::<String>("INFO", &n.host, n.port, Idempotency::Repeatable, cmd)
                .await
        }))
        .await?;
        let per: Vec<BackendStats> = primaries
            .iter()
            .zip(texts)
            .map(|(n, text)| {
                let mut s = crate::info::parse("redis", &text);
                s.backend = n.addr();
                s
            })
            .collect();
        let mut total = BackendStats::new("redis-cluster");
        total.version = per.iter().find_map(|s| s.version.clone());
        total.uptime_secs = per.iter().filter_map(|s| s.uptime_secs).min();
        total.used_memory_bytes = sum(per.iter().map(|s| s.used_memory_bytes));
        total.peak_memory_bytes = sum(per.iter().map(|s| s.peak_memory_bytes));
        total.connected_clients = sum(per.iter().map(|s| s.connected_clients));
        total.ops_per_sec = sum(per.iter().map(|s| s.ops_per_sec));
        total.keyspace_hits = sum(per.iter().map(|s| s.keyspace_hits));
        total.keyspace_misses = sum(per.iter().map(|s| s.keyspace_misses));
        total.expired_keys = sum(per.iter().map(|s| s.expired_keys));
        total.evicted_keys = sum(per.iter().map(|s| s.evicted_keys));
        for s in &per {
            for (db, n) in &s.keys_per_db {
                *total.keys_per_db.entry(db.clone()).or_insert(0) += n;
            }
        }
        total.pool = Some(self.conns.pool_stats().await);
        total.nodes = per;
        Ok(total)
    }

    /// Every node of the cluster (primaries and replicas) with its role, the slots it serves, the
    /// cluster's own failure flag, and whether it answers our `PING` (sent to each node directly,
    /// concurrently). Empty on one server. Fails only when no node can tell the topology.
    pub async fn cluster_health(&self) -> Result<Vec<NodeHealth>> {
        let nodes = self.topology().await?;
        let addr_of: std::collections::HashMap<&str, String> =
            nodes.iter().map(|n| (n.id.as_str(), n.addr())).collect();
        let cmd = redis::cmd("PING");
        let cmd = &cmd;
        let mut out = futures::future::join_all(nodes.iter().map(|n| {
            let addr_of = &addr_of;
            async move {
                let started = Instant::now();
                let r = self
                    .on_node::<String>("PING", &n.host, n.port, Idempotency::Repeatable, cmd)
                    .await;
                NodeHealth {
                    address: n.addr(),
                    id: n.id.clone(),
                    role: n.role,
                    primary: n
                        .primary_id
                        .as_deref()
                        .and_then(|id| addr_of.get(id).cloned()),
                    slots: if n.role == NodeRole::Primary {
                        n.slot_count()
                    } else {
                        0
                    },
                    flagged_failing: n.failing,
                    reachable: r.is_ok(),
                    rtt_us: r
                        .as_ref()
                        .ok()
                        .map(|_| u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    error: r.err().map(|e| e.to_string()),
                }
            }
        }))
        .await;
        out.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(out)
    }
}

#[async_trait]
impl Store for RedisStore {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn backend_name(&self) -> &'static str {
        if self.is_cluster() {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = self.full_key(key)?;
        let mut cmd = redis::cmd("GET");
        cmd.arg(&full);
        self.read("GET", key, &full, cmd).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.is_cluster() {
            return self.get_many_cluster(keys).await;
        }
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(self.full_key(k)?);
        }
        let values: Vec<Option<Vec<u8>>> = self
            .query("MGET", keys.first().copied(), Idempotency::Repeatable, cmd)
            .await?;
        if values.len() != keys.len() {
            return Err(Error::backend(format!(
                "MGET of {} keys answered {} values",
                keys.len(),
                values.len()
            )));
        }
        Ok(values)
    }

    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        let ms = ttl_millis(ttl)?;
        let mut cmd = redis::cmd("GETEX");
        cmd.arg(self.full_key(key)?).arg("PX").arg(ms);
        // Repeating sets the same TTL (from a slightly later instant) and reads the same value.
        self.query("GETEX", Some(key), Idempotency::Repeatable, cmd)
            .await
    }

    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        let full = self.full_key(key)?;
        self.check_value(value)?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(full).arg(value);
        match opts.condition {
            SetCondition::IfAbsent => {
                cmd.arg("NX");
            }
            SetCondition::IfPresent => {
                cmd.arg("XX");
            }
            _ => {}
        }
        match opts.expiry {
            Expiry::In(ttl) => {
                cmd.arg("PX").arg(ttl_millis(ttl)?);
            }
            Expiry::Keep => {
                cmd.arg("KEEPTTL");
            }
            _ => {}
        }
        // An unconditional SET answers OK every time: safe to repeat. NX / XX could answer
        // differently the second time (NX: "not written" although our first attempt wrote it).
        let idempotency = match opts.condition {
            SetCondition::Always => Idempotency::Repeatable,
            _ => Idempotency::Once,
        };
        let reply: Value = self.query("SET", Some(key), idempotency, cmd).await?;
        Ok(!matches!(reply, Value::Nil))
    }

    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
        let px = match expiry {
            Expiry::Keep => {
                return Err(Error::invalid_input(
                    "set_many does not accept Expiry::Keep",
                ))
            }
            Expiry::In(ttl) => Some(ttl_millis(ttl)?),
            _ => None,
        };
        if entries.is_empty() {
            return Ok(());
        }
        if self.is_cluster() {
            return self.set_many_cluster(entries, px).await;
        }
        let mut pipe = redis::pipe();
        for (key, value) in entries {
            let full = self.full_key(key)?;
            self.check_value(value)?;
            let cmd = pipe.cmd("SET").arg(full).arg(*value);
            if let Some(ms) = px {
                cmd.arg("PX").arg(ms);
            }
            cmd.ignore();
        }
        let pipe = &pipe;
        // Unconditional SETs: repeating the whole pipeline writes the same values.
        self.conns
            .run(
                "SET (pipeline)",
                entries.first().map(|e| e.0),
                Idempotency::Repeatable,
                |mut c| async move { pipe.query_async::<()>(&mut c).await },
            )
            .await
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        let fulls = keys
            .iter()
            .map(|k| self.full_key(k))
            .collect::<Result<Vec<_>>>()?;
        self.unlink(keys.first().copied(), &fulls).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let full = self.full_key(key)?;
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&full);
        let n: u64 = self.read("EXISTS", key, &full, cmd).await?;
        Ok(n > 0)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(self.full_key(key)?).arg(ttl_millis(ttl)?);
        self.query("PEXPIRE", Some(key), Idempotency::Repeatable, cmd)
            .await
    }

    async fn persist(&self, key: &str) -> Result<bool> {
        let mut cmd = redis::cmd("PERSIST");
        cmd.arg(self.full_key(key)?);
        // A repeat would answer "had no TTL": not repeated once sent.
        self.query("PERSIST", Some(key), Idempotency::Once, cmd)
            .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let full = self.full_key(key)?;
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(&full);
        let ms: i64 = self.read("PTTL", key, &full, cmd).await?;
        Ok(match ms {
            -2 => KeyTtl::Missing,
            -1 => KeyTtl::Persistent,
            ms if ms >= 0 => KeyTtl::ExpiresIn(Duration::from_millis(ms.unsigned_abs())),
            other => {
                return Err(Error::backend(format!(
                    "PTTL answered {other}, which is not a TTL"
                )))
            }
        })
    }

    async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_if_created: Option<Duration>,
    ) -> Result<i64> {
        let full = self.full_key(key)?;
        let map_invalid = |e: Error| match e {
            Error::Backend { message, .. }
                if message.contains("not an integer") || message.contains("overflow") =>
            {
                Error::invalid_input(format!("cannot add {delta} to key {key}: {message}"))
            }
            other => other,
        };
        match ttl_if_created {
            None => {
                let mut cmd = redis::cmd("INCRBY");
                cmd.arg(full).arg(delta);
                self.query("INCRBY", Some(key), Idempotency::Once, cmd)
                    .await
                    .map_err(map_invalid)
            }
            Some(ttl) => {
                let ms = ttl_millis(ttl)?;
                let full = &full;
                self.conns
                    .run(
                        "INCRBY (script)",
                        Some(key),
                        Idempotency::Once,
                        |mut c| async move {
                            scripts::INCR_BY_WITH_TTL
                                .invoke::<i64>(&mut c, full, |cmd| {
                                    cmd.arg(delta).arg(ms);
                                })
                                .await
                        },
                    )
                    .await
                    .map_err(map_invalid)
            }
        }
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome> {
        let full = self.full_key(key)?;
        if let Some(v) = new {
            self.check_value(v)?;
        }
        let (mode, ms) = match expiry {
            Expiry::In(ttl) => ("px", ttl_millis(ttl)?),
            Expiry::Keep => ("keep", 0),
            _ => ("never", 0),
        };
        let (full, mode) = (&full, mode);
        let reply: Vec<Value> = self
            .conns
            .run(
                "compare-and-swap (script)",
                Some(key),
                Idempotency::Once,
                |mut c| async move {
                    scripts::COMPARE_AND_SWAP
                        .invoke(&mut c, full, |cmd| {
                            cmd.arg(if expected.is_some() { "1" } else { "0" })
                                .arg(expected.unwrap_or_default())
                                .arg(if new.is_some() { "1" } else { "0" })
                                .arg(new.unwrap_or_default())
                                .arg(mode)
                                .arg(ms);
                        })
                        .await
                },
            )
            .await?;
        let mut it = reply.into_iter();
        let swapped: i64 = match it.next() {
            Some(v) => i64::from_redis_value(v)
                .map_err(|e| Error::backend(format!("unexpected compare-and-swap reply: {e}")))?,
            None => return Err(Error::backend("empty compare-and-swap reply")),
        };
        if swapped == 1 {
            return Ok(CasOutcome::Swapped);
        }
        let current =
            match it.next() {
                None | Some(Value::Nil) => None,
                Some(v) => Some(Vec::<u8>::from_redis_value(v).map_err(|e| {
                    Error::backend(format!("unexpected compare-and-swap reply: {e}"))
                })?),
            };
        Ok(CasOutcome::Conflict { current })
    }

    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage> {
        if count == 0 {
            return Err(Error::invalid_input("scan count must be at least 1"));
        }
        if self.is_cluster() {
            return self.scan_cluster(pattern, cursor, count).await;
        }
        let (next, keys) = self
            .scan_raw(
                None,
                cursor.as_backend(),
                &self.full_pattern(pattern),
                count,
            )
            .await?;
        Ok(ScanPage {
            keys: self.relative_keys(keys),
            next: (next != "0").then(|| ScanCursor::from_backend(next)),
        })
    }

    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.full_key(key)?)
            .arg(score_arg(score, "score")?)
            .arg(member);
        let added: u64 = self
            .query("ZADD", Some(key), Idempotency::Once, cmd)
            .await?;
        Ok(added > 0)
    }

    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        let full = self.full_key(key)?;
        if members.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(full).arg(members);
        self.query("ZREM", Some(key), Idempotency::Once, cmd).await
    }

    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        let full = self.full_key(key)?;
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(&full)
            .arg(score_arg(min, "min")?)
            .arg(score_arg(max, "max")?)
            .arg("WITHSCORES");
        if let Some(n) = limit {
            cmd.arg("LIMIT").arg(0).arg(n.min(i64::MAX as usize));
        }
        self.read("ZRANGEBYSCORE", key, &full, cmd).await
    }

    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        let mut cmd = redis::cmd("ZREMRANGEBYSCORE");
        cmd.arg(self.full_key(key)?)
            .arg(score_arg(min, "min")?)
            .arg(score_arg(max, "max")?);
        self.query("ZREMRANGEBYSCORE", Some(key), Idempotency::Once, cmd)
            .await
    }

    async fn zcard(&self, key: &str) -> Result<u64> {
        let full = self.full_key(key)?;
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(&full);
        self.read("ZCARD", key, &full, cmd).await
    }

    async fn ping(&self) -> Result<Duration> {
        if self.is_cluster() {
            return self.ping_cluster().await;
        }
        let timeout = self.conns.limits().response_timeout;
        self.conns
            .run("PING", None, Idempotency::Repeatable, |mut c| async move {
                conn::ping(&mut c, timeout).await
            })
            .await
    }

    async fn flush_prefix(&self) -> Result<u64> {
        if self.prefix.is_empty() {
            return Err(Error::invalid_input(
                "flush_prefix refuses a store without a key prefix: it would delete every key of \
                 a database that may be shared (set CACHE_KEY_PREFIX)",
            ));
        }
        let pattern = format!("{}:*", glob_escape(&self.prefix));
        if !self.is_cluster() {
            return self.flush_node(None, &pattern).await;
        }
        // Every primary in turn: each holds only the keys of its own slots.
        let nodes = self.topology().await?;
        let mut deleted = 0u64;
        for node in cluster::primaries(&nodes) {
            deleted += self
                .flush_node(Some((&node.host, node.port)), &pattern)
                .await?;
        }
        Ok(deleted)
    }

    async fn stats(&self) -> Result<Option<BackendStats>> {
        if self.is_cluster() {
            return self.stats_cluster().await.map(Some);
        }
        let started = Instant::now();
        let text: String = self
            .query("INFO", None, Idempotency::Repeatable, redis::cmd("INFO"))
            .await?;
        let mut stats = crate::info::parse("redis", &text);
        stats.pool = Some(self.conns.pool_stats().await);
        tracing::trace!(target: "cache_redis", elapsed = ?started.elapsed(), "collected INFO");
        Ok(Some(stats))
    }
}
