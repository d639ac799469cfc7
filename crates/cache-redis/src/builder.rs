//! Building a [`RedisStore`] from a [`RedisConfig`]: [`RedisStoreBuilder`], parsing the server URL or
//! the cluster seeds (never echoing a password), the cluster client's settings, and the TLS crypto
//! provider.

use std::time::Duration;

use cache_core::config::redact_url;
use cache_core::{Error, Result};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_read_routing::RandomReplicaStrategy;
use redis::IntoConnectionInfo;

use crate::call::Limits;
use crate::config::{RedisConfig, RedisEndpoint};
use crate::manager::{Client, Manager};
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
    /// database or TLS setting is reported here. Must run inside a tokio runtime (the store keeps a
    /// background task for health checks).
    pub async fn connect(self) -> Result<RedisStore> {
        let config = self.config;
        config.validate()?;
        let (client, target, db) = match &config.endpoint {
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
        let manager = Manager::new(
            client,
            config.connect_timeout,
            config.response_timeout,
            target,
        );
        let conns = Connections::new(
            manager,
            slots,
            max_open,
            config.pool.max_idle,
            Limits::new(&config),
        );
        if !self.lazy {
            conns.warm_up().await?;
        }
        conns.start_maintenance();
        Ok(RedisStore::new(conns, &config, db))
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
