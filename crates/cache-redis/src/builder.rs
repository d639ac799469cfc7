//! Building a [`RedisStore`] from a [`RedisConfig`]: [`RedisStoreBuilder`], parsing the server URL,
//! the cluster seeds or the sentinels (never echoing a password), the cluster client's settings,
//! the Sentinel discovery, and the TLS crypto provider.

use std::sync::Arc;
use std::time::Duration;

use cache_core::config::redact_url;
use cache_core::{Error, Result};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_read_routing::RandomReplicaStrategy;
use redis::{ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::call::Limits;
use crate::config::{RedisConfig, RedisEndpoint, SentinelEndpoint};
use crate::manager::{Client, Manager};
use crate::sentinel::{Discovery, SentinelSpec, Want};
use crate::slots::Connections;
use crate::store::RedisStore;

/// How many times the cluster connection itself may re-send one command (to follow `MOVED` / `ASK`
/// redirections, and to a new primary after a failover) within one response timeout.
const CLUSTER_REDIRECTS: u32 = 5;

/// Options of building a [`RedisStore`] beyond its [`RedisConfig`]. Start with
/// [`RedisStore::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .connect().await to build the store"]
pub struct RedisStoreBuilder {
    config: RedisConfig,
    lazy: bool,
}

impl RedisStoreBuilder {
    pub(crate) fn new(config: &RedisConfig) -> Self {
        RedisStoreBuilder {
            config: config.clone(),
            lazy: false,
        }
    }

    /// Do not open a connection in [`RedisStoreBuilder::connect`]: the first command (or the
    /// background health check) does. The URL is still parsed and validated.
    pub fn with_lazy_connect(mut self) -> Self {
        self.lazy = true;
        self
    }

    /// Builds the store. Unless lazy, opens the first connection, so that a wrong URL, password,
    /// database or TLS setting (under Sentinel: a wrong sentinel list, service name or either
    /// password) is reported here. Must run inside a tokio runtime (the store keeps a background
    /// task for health checks, and under Sentinel one that follows failovers).
    pub async fn connect(self) -> Result<RedisStore> {
        let config = self.config;
        config.validate()?;
        let (client, target, db) = match &config.endpoint {
            RedisEndpoint::Sentinel(sentinel) => {
                let spec = sentinel_spec(sentinel, config.database)?;
                let discovery = Arc::new(Discovery::new(
                    spec,
                    config.connect_timeout,
                    config.response_timeout,
                )?);
                let target = discovery.describe();
                let client = Client::Sentinel {
                    discovery,
                    want: Want::Primary,
                };
                (client, target, config.database.unwrap_or(0))
            }
            RedisEndpoint::Server { url } => {
                let client = open_client(url, config.database)?;
                let info = client.get_connection_info();
                let db = info.redis_settings().db();
                let target = describe_addr(info.addr());
                (Client::Single(client), target, db)
            }
            RedisEndpoint::Cluster { nodes } => {
                let (client, target) = open_cluster_client(nodes, &config)?;
                (Client::Cluster(client), target, 0)
            }
        };
        let max_open = config.pool.max_open.max(1);
        let slots = config
            .shared_connections
            .clamp(1, usize::try_from(max_open).unwrap_or(usize::MAX));
        // Under Sentinel with reads from replicas: a second set of connections, to replicas, for
        // the replica-reads view (the primary's when no replica can be had).
        let replica_manager = match (&client, config.read_from_replicas) {
            (Client::Sentinel { discovery, .. }, true) => Some(Manager::new(
                Client::Sentinel {
                    discovery: Arc::clone(discovery),
                    want: Want::Replica,
                },
                config.connect_timeout,
                config.response_timeout,
                format!("replicas of {target}"),
            )),
            _ => None,
        };
        let manager = Manager::new(
            client,
            config.connect_timeout,
            config.response_timeout,
            target,
        );
        let limits = Limits::new(&config);
        let connections = |manager| {
            Connections::new(
                manager,
                slots,
                max_open,
                config.pool.max_idle,
                limits.clone(),
            )
        };
        let conns = connections(manager);
        let replicas = replica_manager.map(connections);
        if !self.lazy {
            conns.warm_up().await?;
        }
        conns.start_maintenance();
        conns.follow_switches(replicas.as_ref());
        if let Some(r) = &replicas {
            // Filled by its first read or by the background task: a missing replica must not fail
            // the store's construction.
            r.start_maintenance();
        }
        Ok(RedisStore::new(conns, replicas, &config, db))
    }
}

/// Builds the cluster client from the seed nodes: credentials and TLS come from the node URLs (all
/// nodes must agree), timeouts from the config, and a replica read strategy when
/// `read_from_replicas` is on. Returns the client and a redacted description of the seeds.
fn open_cluster_client(nodes: &[String], config: &RedisConfig) -> Result<(ClusterClient, String)> {
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

/// The discovery settings of a Sentinel endpoint: each sentinel's connection info (its own
/// credentials unless its URL carries some; TLS by its scheme, or `tls` for bare `host:port`), and
/// the data nodes' template (credentials, database, TLS; the address comes from the sentinels).
fn sentinel_spec(s: &SentinelEndpoint, database: Option<i64>) -> Result<SentinelSpec> {
    let scheme = if s.tls { "rediss" } else { "redis" };
    let mut sentinels = Vec::with_capacity(s.nodes.len());
    for node in &s.nodes {
        let url = if node.contains("://") {
            node.clone()
        } else {
            format!("{scheme}://{node}")
        };
        let bad = |detail: &str| {
            Error::config(
                "REDIS_SENTINEL_NODES",
                format!(
                    "{:?} is not a valid sentinel ({detail}); expected host:port, or \
                     redis://[user:password@]host:port (rediss:// for TLS)",
                    redact_url(node)
                ),
            )
        };
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(|e| bad(e.detail().unwrap_or(e.category())))?;
        match info.addr() {
            redis::ConnectionAddr::Unix(_) => return Err(bad("a unix socket")),
            redis::ConnectionAddr::TcpTls { .. } => install_crypto_provider(),
            _ => {}
        }
        let given = info.redis_settings();
        let mut settings = RedisConnectionInfo::default();
        match (given.username(), given.password()) {
            (None, None) => {
                if let Some(user) = &s.sentinel_username {
                    settings = settings.set_username(user);
                }
                if let Some(pw) = &s.sentinel_password {
                    settings = settings.set_password(pw);
                }
            }
            (user, pw) => {
                if let Some(user) = user {
                    settings = settings.set_username(user);
                }
                if let Some(pw) = pw {
                    settings = settings.set_password(pw);
                }
            }
        }
        // A sentinel has no databases: a `/db` in its URL is not sent.
        sentinels.push(info.set_redis_settings(settings));
    }
    let mut settings = RedisConnectionInfo::default().set_db(database.unwrap_or(0));
    if let Some(user) = &s.username {
        settings = settings.set_username(user);
    }
    if let Some(pw) = &s.password {
        settings = settings.set_password(pw);
    }
    // The host is a placeholder: discovery puts the address the sentinels name in its place.
    let node: ConnectionInfo = format!("{scheme}://sentinel-named-node:6379")
        .as_str()
        .into_connection_info()
        .map_err(|e| Error::config("REDIS_TLS", e.to_string()))?
        .set_redis_settings(settings);
    if s.tls {
        install_crypto_provider();
    }
    Ok(SentinelSpec {
        sentinels,
        service: s.service.clone(),
        node,
    })
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

/// `host:port` (with ` (TLS)`), or the socket path: never credentials.
fn describe_addr(addr: &redis::ConnectionAddr) -> String {
    match addr {
        redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
        redis::ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        other => format!("{other:?}"),
    }
}
