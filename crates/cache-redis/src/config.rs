//! [`RedisConfig`]: every setting of the Redis backend in one place, with the profile defaults, the
//! environment variables that override them, `with_*` builder methods and [`RedisConfig::validate`].
//!
//! Precedence, lowest first: the profile's defaults ([`RedisConfig::new`]), then the environment
//! ([`RedisConfig::from_lookup`] / [`RedisConfig::from_env`]), then `with_*` calls. Every error names
//! the setting to fix (the environment variable). `docs/operations.md` lists every setting.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::Profile;
//! use cache_redis::{RedisConfig, RedisEndpoint};
//!
//! let config = RedisConfig::new(Profile::Production, RedisEndpoint::server("redis://127.0.0.1:6379/0"))
//!     .with_key_prefix("shop")
//!     .with_response_timeout(Duration::from_millis(250));
//! config.validate().unwrap();
//! assert_eq!(config.pool.max_open, 20);
//!
//! let env = |name: &str| (name == "REDIS_CLUSTER_NODES").then(|| "10.0.0.1:7000,10.0.0.2:7000".to_owned());
//! let cluster = RedisConfig::from_lookup(Profile::Production, env).unwrap();
//! assert_eq!(cluster.endpoint, RedisEndpoint::cluster(["10.0.0.1:7000", "10.0.0.2:7000"]));
//!
//! let env = |name: &str| match name {
//!     "REDIS_SENTINEL_NODES" => Some("10.0.0.1:26379,10.0.0.2:26379".to_owned()),
//!     "REDIS_SENTINEL_SERVICE" => Some("cache".to_owned()),
//!     _ => None,
//! };
//! let sentinel = RedisConfig::from_lookup(Profile::Production, env).unwrap();
//! assert!(sentinel.endpoint.is_sentinel());
//! ```
//!
//! `Debug` never prints a password: URLs are shown through
//! [`cache_core::config::redact_url`] (user-info passwords and `?pass=` of socket URLs).
//!
//! (One file even when it grows past 600 lines, on purpose: each setting's type, default, environment
//! variable, builder method and check are kept here, so that adding a setting touches one place.)

use std::fmt;
use std::time::Duration;

use cache_core::config::{parse_bool, parse_duration, parse_number as parse_num, redact_url};
use cache_core::keys::validate_prefix;
use cache_core::{Error, Profile, Result};

/// How many shared multiplexed connections a store keeps by default
/// ([`RedisConfig::shared_connections`], `REDIS_SHARED_CONNECTIONS`).
///
/// One, because the server's CPU per command is what a deployment runs out of (Redis executes
/// commands on one thread): measured with `cargo xtask bench` (80/20 GET/SET of 1 KiB), one
/// connection cost the server 1.00-1.11x raw redis-rs's CPU per operation at C=1/16/64, two cost
/// 1.03-1.44x (the same commands arrive in smaller batches per socket read), with throughput within
/// the run-to-run noise either way. Raise it only when one connection is measured to saturate.
pub const DEFAULT_SHARED_CONNECTIONS: usize = 1;

/// Where the Redis data lives: one server, a primary and its replicas under Redis Sentinel, or a
/// Redis Cluster by its seed nodes.
///
/// `Debug` redacts passwords.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisEndpoint {
    /// One Redis server (standalone, or a primary behind a proxy), by URL (`REDIS_URL`):
    /// `redis://[user:password@]host:port[/db]`, `rediss://` for TLS, `redis+unix:///path` or
    /// `unix:///path` for a socket.
    Server {
        /// The connection URL.
        url: String,
    },
    /// A Redis Cluster, by seed node URLs (`REDIS_CLUSTER_NODES`):
    /// `redis://[user:password@]host:port`, or `rediss://` for TLS; every seed the same scheme,
    /// user and password.
    Cluster {
        /// Seed node URLs.
        nodes: Vec<String>,
    },
    /// A primary and its replicas monitored by Redis Sentinel (`REDIS_SENTINEL_NODES`,
    /// `REDIS_SENTINEL_SERVICE`, ...): the store asks the sentinels where the primary is and
    /// follows failovers. See [`SentinelEndpoint`].
    Sentinel(SentinelEndpoint),
}

impl RedisEndpoint {
    /// One server at `url`.
    pub fn server(url: impl Into<String>) -> Self {
        RedisEndpoint::Server { url: url.into() }
    }

    /// A cluster with these seed nodes, each `host:port` (taken as `redis://host:port`) or a URL.
    /// Empty entries are left out; [`RedisConfig::validate`] refuses an empty list.
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RedisEndpoint::Cluster {
            nodes: nodes
                .into_iter()
                .map(|n| n.as_ref().trim().to_owned())
                .filter(|n| !n.is_empty())
                .map(|n| {
                    if n.contains("://") {
                        n
                    } else {
                        format!("redis://{n}")
                    }
                })
                .collect(),
        }
    }

    /// The primary of `service` as the sentinels at `nodes` name it (see [`SentinelEndpoint::new`];
    /// credentials and TLS with its `with_*` methods and [`RedisEndpoint::Sentinel`]).
    pub fn sentinel<I, S>(nodes: I, service: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RedisEndpoint::Sentinel(SentinelEndpoint::new(nodes, service))
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisEndpoint::Cluster { .. })
    }

    /// Whether the primary is found through Redis Sentinel.
    pub fn is_sentinel(&self) -> bool {
        matches!(self, RedisEndpoint::Sentinel(_))
    }
}

/// A primary and its replicas under Redis Sentinel: where the sentinels are, the service they
/// monitor, and how to authenticate to the sentinels and (separately) to the data nodes.
///
/// The data nodes' database is [`RedisConfig::database`] (`REDIS_DB`). `Debug` redacts passwords.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SentinelEndpoint {
    /// The sentinels (`REDIS_SENTINEL_NODES`, comma-separated): `host:port`, or
    /// `redis://[user:password@]host:port` (`rediss://` for TLS to that sentinel). Bare `host:port`
    /// entries use TLS when [`SentinelEndpoint::tls`] is on.
    pub nodes: Vec<String>,
    /// The name the sentinels monitor the primary under (`REDIS_SENTINEL_SERVICE`; the
    /// `<master-name>` of `sentinel monitor`).
    pub service: String,
    /// The sentinels' own ACL user (`REDIS_SENTINEL_USERNAME`), for entries that carry no
    /// credentials.
    pub sentinel_username: Option<String>,
    /// The sentinels' own password (`REDIS_SENTINEL_PASSWORD`: the sentinels' `requirepass`, not
    /// the data nodes'), for entries that carry no credentials.
    pub sentinel_password: Option<String>,
    /// The data nodes' ACL user (`REDIS_USERNAME`).
    pub username: Option<String>,
    /// The data nodes' password (`REDIS_PASSWORD`).
    pub password: Option<String>,
    /// TLS to the data nodes, and to sentinels given as bare `host:port` (`REDIS_TLS`, default
    /// false). Certificates are checked against the system roots (or `SSL_CERT_FILE`) and must be
    /// valid for the address the sentinels name (an IP unless the servers announce host names).
    pub tls: bool,
}

impl SentinelEndpoint {
    /// The sentinels at `nodes` (`host:port` or URLs; empty entries are left out) monitoring
    /// `service`; no credentials, no TLS.
    pub fn new<I, S>(nodes: I, service: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        SentinelEndpoint {
            nodes: nodes
                .into_iter()
                .map(|n| n.as_ref().trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            service: service.into().trim().to_owned(),
            sentinel_username: None,
            sentinel_password: None,
            username: None,
            password: None,
            tls: false,
        }
    }

    /// The sentinels' own credentials (their `requirepass`, or an ACL user on the sentinels).
    pub fn with_sentinel_credentials(
        mut self,
        username: Option<&str>,
        password: impl Into<String>,
    ) -> Self {
        self.sentinel_username = username.map(str::to_owned);
        self.sentinel_password = Some(password.into());
        self
    }

    /// The data nodes' credentials (their `requirepass`, or an ACL user).
    pub fn with_credentials(mut self, username: Option<&str>, password: impl Into<String>) -> Self {
        self.username = username.map(str::to_owned);
        self.password = Some(password.into());
        self
    }

    /// TLS to the data nodes (and to sentinels given as bare `host:port`).
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }
}

impl fmt::Debug for SentinelEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("SentinelEndpoint")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>(),
            )
            .field("service", &self.service)
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &secret(&self.sentinel_password))
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisEndpoint::Server { url } => f
                .debug_struct("Server")
                .field("url", &redact_url(url))
                .finish(),
            RedisEndpoint::Cluster { nodes } => f
                .debug_struct("Cluster")
                .field(
                    "nodes",
                    &nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>(),
                )
                .finish(),
            RedisEndpoint::Sentinel(sentinel) => f.debug_tuple("Sentinel").field(sentinel).finish(),
        }
    }
}

/// Connection pool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Maximum open connections (`REDIS_POOL_MAX_OPEN`, default 20; 5 in development). The shared
    /// connections count against it.
    pub max_open: u64,
    /// Maximum idle connections kept (`REDIS_POOL_MAX_IDLE`, default = `max_open`).
    pub max_idle: u64,
    /// How long replacing a connection may wait for a free place in the pool
    /// (`REDIS_POOL_WAIT_TIMEOUT`, default 1 s; 2 s in development).
    pub wait_timeout: Duration,
    /// How often the shared connections are checked with `PING` in the background
    /// (`REDIS_HEALTH_CHECK_INTERVAL`, default 15 s).
    pub health_check_interval: Duration,
    /// Maximum lifetime of a connection before it is replaced (`REDIS_CONN_MAX_LIFETIME`, default
    /// 30 min).
    pub max_lifetime: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_open: 20,
            max_idle: 20,
            wait_timeout: Duration::from_secs(1),
            health_check_interval: Duration::from_secs(15),
            max_lifetime: Duration::from_secs(30 * 60),
        }
    }
}

impl PoolConfig {
    /// Sets the maximum open connections (and caps max idle to it).
    pub fn with_max_open(mut self, n: u64) -> Self {
        self.max_open = n;
        self.max_idle = self.max_idle.min(n);
        self
    }

    /// Sets the maximum idle connections.
    pub fn with_max_idle(mut self, n: u64) -> Self {
        self.max_idle = n;
        self
    }

    /// Sets the pool wait timeout.
    pub fn with_wait_timeout(mut self, d: Duration) -> Self {
        self.wait_timeout = d;
        self
    }

    /// Sets the health-check interval.
    pub fn with_health_check_interval(mut self, d: Duration) -> Self {
        self.health_check_interval = d;
        self
    }

    /// Sets the maximum connection lifetime.
    pub fn with_max_lifetime(mut self, d: Duration) -> Self {
        self.max_lifetime = d;
        self
    }
}

/// Retry policy (exponential backoff with full jitter within a budget; see
/// [the crate documentation](crate#retries) for what may be repeated).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in all, including the first (`REDIS_RETRY_ATTEMPTS`, default 3; 1 disables retries).
    pub max_attempts: u32,
    /// First backoff ceiling (`REDIS_RETRY_BASE_DELAY`, default 20 ms), doubled per attempt; also
    /// the first reconnect backoff.
    pub base_delay: Duration,
    /// Largest backoff ceiling (`REDIS_RETRY_MAX_DELAY`, default 200 ms).
    pub max_delay: Duration,
    /// Total time budget of one call including retries (`REDIS_RETRY_BUDGET`, default 1 s; 3 s in
    /// development).
    pub budget: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            budget: Duration::from_secs(1),
        }
    }
}

impl RetryConfig {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the number of attempts.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets the first backoff ceiling.
    pub fn with_base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// Sets the largest backoff ceiling.
    pub fn with_max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Sets the total budget.
    pub fn with_budget(mut self, d: Duration) -> Self {
        self.budget = d;
        self
    }
}

/// Every setting of a [`RedisStore`](crate::RedisStore). Start from [`RedisConfig::new`] (a
/// profile's defaults), [`RedisConfig::from_env`] or [`RedisConfig::from_lookup`].
///
/// `Debug` redacts passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The profile the defaults came from.
    pub profile: Profile,
    /// One server, Sentinel, or a cluster (`REDIS_URL`, `REDIS_SENTINEL_NODES` and the other
    /// `REDIS_SENTINEL_*`, `REDIS_CLUSTER_NODES`, `CACHE_BACKEND`).
    pub endpoint: RedisEndpoint,
    /// Global key prefix (`CACHE_KEY_PREFIX`; `dev` in development, `staging` in staging, none in
    /// production); one name without `:` (see [`cache_core::keys::validate_prefix`]); empty means
    /// none.
    pub key_prefix: String,
    /// Database number (`REDIS_DB`; overrides the URL's `/db`). Not allowed with a cluster.
    pub database: Option<i64>,
    /// Connect timeout: TCP, TLS, `AUTH` and `SELECT` together (`REDIS_CONNECT_TIMEOUT`, default
    /// 1 s; 2 s in development).
    pub connect_timeout: Duration,
    /// Response timeout of one command (`REDIS_RESPONSE_TIMEOUT`, default 500 ms; 2 s in
    /// development).
    pub response_timeout: Duration,
    /// Pool settings.
    pub pool: PoolConfig,
    /// Retry settings.
    pub retry: RetryConfig,
    /// How many long-lived multiplexed connections carry the commands (`REDIS_SHARED_CONNECTIONS`,
    /// default [`DEFAULT_SHARED_CONNECTIONS`]; at least 1, more than `REDIS_POOL_MAX_OPEN` is capped
    /// to it). One connection pipelines any number of concurrent commands; a second one spreads the
    /// client-side work over two I/O tasks and keeps a spare while one is being replaced.
    pub shared_connections: usize,
    /// Let the view [`RedisStore::replica_reads`](crate::RedisStore::replica_reads) read from
    /// replicas in a cluster or under Sentinel (`REDIS_READ_FROM_REPLICAS`, default false).
    pub read_from_replicas: bool,
    /// `COUNT` hint of the `SCAN` behind `flush_prefix` (`REDIS_SCAN_COUNT`, default 500).
    pub scan_count: u32,
    /// Largest value the store accepts, in bytes (`CACHE_MAX_VALUE_BYTES`, default 8 MiB).
    pub max_value_bytes: usize,
}

impl RedisConfig {
    /// The defaults of `profile` for `endpoint`.
    pub fn new(profile: Profile, endpoint: RedisEndpoint) -> Self {
        let production = RedisConfig {
            profile,
            endpoint,
            key_prefix: profile.default_key_prefix().to_owned(),
            database: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            pool: PoolConfig::default(),
            retry: RetryConfig::default(),
            shared_connections: DEFAULT_SHARED_CONNECTIONS,
            read_from_replicas: false,
            scan_count: 500,
            max_value_bytes: 8 * 1024 * 1024,
        };
        match profile {
            Profile::Development => RedisConfig {
                connect_timeout: Duration::from_secs(2),
                response_timeout: Duration::from_secs(2),
                pool: PoolConfig {
                    max_open: 5,
                    max_idle: 5,
                    wait_timeout: Duration::from_secs(2),
                    ..PoolConfig::default()
                },
                retry: RetryConfig {
                    budget: Duration::from_secs(3),
                    ..RetryConfig::default()
                },
                ..production
            },
            // Staging and production, and the production values for any profile added later.
            _ => production,
        }
    }

    /// [`RedisConfig::from_lookup`] over the process environment.
    pub fn from_env(profile: Profile) -> Result<RedisConfig> {
        Self::from_lookup(profile, |name| std::env::var(name).ok())
    }

    /// The defaults of `profile`, overridden by the environment variables `lookup` finds (empty
    /// values count as unset), validated.
    ///
    /// The endpoint: `CACHE_BACKEND=cluster` takes `REDIS_CLUSTER_NODES`; `CACHE_BACKEND=redis`
    /// takes `REDIS_SENTINEL_NODES` when it is set (Sentinel, see [`SentinelEndpoint`]), else
    /// `REDIS_URL`; without `CACHE_BACKEND`, `REDIS_CLUSTER_NODES` wins over
    /// `REDIS_SENTINEL_NODES`, which wins over `REDIS_URL`. One of them must be set (there is no
    /// default server: a store never guesses where production data lives).
    pub fn from_lookup(
        profile: Profile,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<RedisConfig> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut c = RedisConfig::new(profile, endpoint_from(&get)?);
        if let Some(p) = get("CACHE_KEY_PREFIX") {
            c.key_prefix = p.trim().to_owned();
        }
        if let Some(v) = get("REDIS_DB") {
            c.database = Some(parse_num("REDIS_DB", &v)?);
        }
        let durations = [
            ("REDIS_CONNECT_TIMEOUT", &mut c.connect_timeout),
            ("REDIS_RESPONSE_TIMEOUT", &mut c.response_timeout),
            ("REDIS_POOL_WAIT_TIMEOUT", &mut c.pool.wait_timeout),
            (
                "REDIS_HEALTH_CHECK_INTERVAL",
                &mut c.pool.health_check_interval,
            ),
            ("REDIS_CONN_MAX_LIFETIME", &mut c.pool.max_lifetime),
            ("REDIS_RETRY_BASE_DELAY", &mut c.retry.base_delay),
            ("REDIS_RETRY_MAX_DELAY", &mut c.retry.max_delay),
            ("REDIS_RETRY_BUDGET", &mut c.retry.budget),
        ];
        for (name, slot) in durations {
            if let Some(v) = get(name) {
                *slot = parse_duration(name, &v)?;
            }
        }
        if let Some(v) = get("REDIS_POOL_MAX_OPEN") {
            // Caps max idle too, unless REDIS_POOL_MAX_IDLE sets it below.
            c.pool = c.pool.with_max_open(parse_num("REDIS_POOL_MAX_OPEN", &v)?);
        }
        if let Some(v) = get("REDIS_POOL_MAX_IDLE") {
            c.pool.max_idle = parse_num("REDIS_POOL_MAX_IDLE", &v)?;
        }
        if let Some(v) = get("REDIS_RETRY_ATTEMPTS") {
            c.retry.max_attempts = parse_num("REDIS_RETRY_ATTEMPTS", &v)?;
        }
        if let Some(v) = get("REDIS_SHARED_CONNECTIONS") {
            c.shared_connections = parse_num("REDIS_SHARED_CONNECTIONS", &v)?;
        }
        if let Some(v) = get("REDIS_READ_FROM_REPLICAS") {
            c.read_from_replicas = parse_bool("REDIS_READ_FROM_REPLICAS", &v)?;
        }
        if let Some(v) = get("REDIS_SCAN_COUNT") {
            c.scan_count = parse_num("REDIS_SCAN_COUNT", &v)?;
        }
        if let Some(v) = get("CACHE_MAX_VALUE_BYTES") {
            c.max_value_bytes = parse_num("CACHE_MAX_VALUE_BYTES", &v)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Uses one server at `url`.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint = RedisEndpoint::server(url);
        self
    }

    /// Uses a cluster with these seed nodes (see [`RedisEndpoint::cluster`]).
    pub fn with_cluster_nodes<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.endpoint = RedisEndpoint::cluster(nodes);
        self
    }

    /// Finds the primary through Redis Sentinel (see [`SentinelEndpoint`]).
    pub fn with_sentinel(mut self, sentinel: SentinelEndpoint) -> Self {
        self.endpoint = RedisEndpoint::Sentinel(sentinel);
        self
    }

    /// Sets the global key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the database number.
    pub fn with_database(mut self, db: i64) -> Self {
        self.database = Some(db);
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Sets the response timeout of one command.
    pub fn with_response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// Replaces the pool settings.
    pub fn with_pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Replaces the retry settings.
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how many shared multiplexed connections carry the commands.
    pub fn with_shared_connections(mut self, n: usize) -> Self {
        self.shared_connections = n;
        self
    }

    /// Lets the replica-reads view read from replicas (cluster only).
    pub fn with_read_from_replicas(mut self, yes: bool) -> Self {
        self.read_from_replicas = yes;
        self
    }

    /// Sets the `SCAN` `COUNT` hint of `flush_prefix`.
    pub fn with_scan_count(mut self, n: u32) -> Self {
        self.scan_count = n;
        self
    }

    /// Sets the largest accepted value size.
    pub fn with_max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        validate_prefix(&self.key_prefix)?;
        match &self.endpoint {
            RedisEndpoint::Server { url } => {
                let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
                if !schemes.iter().any(|s| url.starts_with(s)) {
                    return Err(Error::config(
                        "REDIS_URL",
                        format!(
                            "{:?} is not a Redis URL; expected redis://[user:password@]host:port[/db] \
                             or rediss:// for TLS",
                            redact_url(url)
                        ),
                    ));
                }
            }
            RedisEndpoint::Sentinel(sentinel) => {
                if sentinel.nodes.is_empty() {
                    return Err(Error::config(
                        "REDIS_SENTINEL_NODES",
                        "at least one sentinel is needed (host:port[,host:port...])",
                    ));
                }
                if sentinel.service.is_empty() || sentinel.service.contains(char::is_whitespace) {
                    return Err(Error::config(
                        "REDIS_SENTINEL_SERVICE",
                        format!(
                            "{:?} is not a service name: give the name the sentinels monitor the \
                             primary under (`sentinel monitor <name> ...`)",
                            sentinel.service
                        ),
                    ));
                }
            }
            RedisEndpoint::Cluster { nodes } => {
                if nodes.is_empty() {
                    return Err(Error::config(
                        "REDIS_CLUSTER_NODES",
                        "at least one node is needed",
                    ));
                }
                if self.database.is_some_and(|db| db != 0) {
                    return Err(Error::config(
                        "REDIS_DB",
                        "Redis Cluster has only database 0",
                    ));
                }
            }
        }
        if self.database.is_some_and(|db| db < 0) {
            return Err(Error::config("REDIS_DB", "must be 0 or more"));
        }
        let positive = [
            ("REDIS_CONNECT_TIMEOUT", self.connect_timeout),
            ("REDIS_RESPONSE_TIMEOUT", self.response_timeout),
            ("REDIS_POOL_WAIT_TIMEOUT", self.pool.wait_timeout),
            (
                "REDIS_HEALTH_CHECK_INTERVAL",
                self.pool.health_check_interval,
            ),
            ("REDIS_CONN_MAX_LIFETIME", self.pool.max_lifetime),
            ("REDIS_RETRY_BUDGET", self.retry.budget),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(Error::config(*name, "must be greater than zero"));
        }
        let at_least_one = [
            ("REDIS_POOL_MAX_OPEN", self.pool.max_open == 0, ""),
            (
                "REDIS_RETRY_ATTEMPTS",
                self.retry.max_attempts == 0,
                " (1 disables retries)",
            ),
            ("REDIS_SHARED_CONNECTIONS", self.shared_connections == 0, ""),
            ("REDIS_SCAN_COUNT", self.scan_count == 0, ""),
            ("CACHE_MAX_VALUE_BYTES", self.max_value_bytes == 0, ""),
        ];
        if let Some((name, _, note)) = at_least_one.iter().find(|(_, zero, _)| *zero) {
            return Err(Error::config(*name, format!("must be at least 1{note}")));
        }
        if self.pool.max_idle > self.pool.max_open {
            return Err(Error::config(
                "REDIS_POOL_MAX_IDLE",
                format!(
                    "{} is more than REDIS_POOL_MAX_OPEN ({})",
                    self.pool.max_idle, self.pool.max_open
                ),
            ));
        }
        if self.retry.base_delay > self.retry.max_delay {
            return Err(Error::config(
                "REDIS_RETRY_BASE_DELAY",
                "must not exceed REDIS_RETRY_MAX_DELAY",
            ));
        }
        Ok(())
    }
}

/// The endpoint the environment names (see [`RedisConfig::from_lookup`]).
fn endpoint_from(get: &dyn Fn(&str) -> Option<String>) -> Result<RedisEndpoint> {
    let cluster = |nodes: String| {
        let endpoint = RedisEndpoint::cluster(nodes.split(','));
        match &endpoint {
            RedisEndpoint::Cluster { nodes } if nodes.is_empty() => Err(Error::config(
                "REDIS_CLUSTER_NODES",
                "expected host:port[,host:port...]",
            )),
            _ => Ok(endpoint),
        }
    };
    let (url, nodes) = (get("REDIS_URL"), get("REDIS_CLUSTER_NODES"));
    let sentinels = get("REDIS_SENTINEL_NODES");
    match get("CACHE_BACKEND").as_deref().map(str::trim) {
        None => match (nodes, sentinels, url) {
            (Some(nodes), _, _) => cluster(nodes),
            (None, Some(sentinels), _) => sentinel_from(&sentinels, get),
            (None, None, Some(url)) => Ok(RedisEndpoint::Server { url }),
            (None, None, None) => Err(Error::config(
                "REDIS_URL",
                "the Redis backend needs REDIS_URL (one server), REDIS_SENTINEL_NODES (Sentinel) \
                 or REDIS_CLUSTER_NODES (a cluster)",
            )),
        },
        Some("redis") => match (sentinels, url) {
            (Some(sentinels), _) => sentinel_from(&sentinels, get),
            (None, Some(url)) => Ok(RedisEndpoint::server(url)),
            (None, None) => Err(Error::config(
                "REDIS_URL",
                "CACHE_BACKEND=redis needs REDIS_URL (or REDIS_SENTINEL_NODES)",
            )),
        },
        Some("cluster") => cluster(nodes.ok_or_else(|| {
            Error::config(
                "REDIS_CLUSTER_NODES",
                "CACHE_BACKEND=cluster needs REDIS_CLUSTER_NODES",
            )
        })?),
        Some(other) => Err(Error::config(
            "CACHE_BACKEND",
            format!("{other:?} does not select Redis; use redis or cluster"),
        )),
    }
}

/// The Sentinel endpoint of `REDIS_SENTINEL_NODES` and the other `REDIS_SENTINEL_*`,
/// `REDIS_USERNAME`, `REDIS_PASSWORD` and `REDIS_TLS` variables.
fn sentinel_from(nodes: &str, get: &dyn Fn(&str) -> Option<String>) -> Result<RedisEndpoint> {
    let service = get("REDIS_SENTINEL_SERVICE").ok_or_else(|| {
        Error::config(
            "REDIS_SENTINEL_SERVICE",
            "REDIS_SENTINEL_NODES needs REDIS_SENTINEL_SERVICE: the name the sentinels monitor \
             the primary under",
        )
    })?;
    let mut endpoint = SentinelEndpoint::new(nodes.split(','), service);
    if endpoint.nodes.is_empty() {
        return Err(Error::config(
            "REDIS_SENTINEL_NODES",
            "expected host:port[,host:port...]",
        ));
    }
    endpoint.sentinel_username = get("REDIS_SENTINEL_USERNAME");
    endpoint.sentinel_password = get("REDIS_SENTINEL_PASSWORD");
    endpoint.username = get("REDIS_USERNAME");
    endpoint.password = get("REDIS_PASSWORD");
    if let Some(v) = get("REDIS_TLS") {
        endpoint.tls = parse_bool("REDIS_TLS", &v)?;
    }
    Ok(RedisEndpoint::Sentinel(endpoint))
}
