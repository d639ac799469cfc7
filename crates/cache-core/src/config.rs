//! Configuration: a builder, the environment, and the development / staging / production profiles.
//!
//! Precedence, lowest first: the profile's defaults, then environment variables, then builder calls.
//! Every setting has a documented default and environment variable (see `docs/operations.md`);
//! [`Config::validate`] names the setting that is wrong.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::config::{Config, Profile};
//! let cfg = Config::builder()
//!     .profile(Profile::Production)
//!     .redis_url("redis://127.0.0.1:6379/0")
//!     .key_prefix("shop")
//!     .response_timeout(Duration::from_millis(250))
//!     .build()
//!     .unwrap();
//! assert_eq!(cfg.pool.max_open, 20);
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::keys::{validate_prefix, Family};

/// A deployment profile: picks defaults suited to the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Profile {
    /// Local development: generous timeouts (a debugger may pause Redis), small pool, `dev` prefix.
    #[default]
    Development,
    /// Staging: production settings with a `staging` prefix.
    Staging,
    /// Production: tight timeouts so an outage fails fast, pool of 20 (as in the seed design).
    Production,
}

impl Profile {
    /// Parses `development`/`dev`, `staging`/`stage`, `production`/`prod`.
    pub fn parse(s: &str) -> Result<Profile> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Profile::Development),
            "staging" | "stage" => Ok(Profile::Staging),
            "production" | "prod" => Ok(Profile::Production),
            other => Err(Error::config(
                "CACHE_PROFILE",
                format!("{other:?} is not a profile; use development, staging or production"),
            )),
        }
    }

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Staging => "staging",
            Profile::Production => "production",
        }
    }
}

/// Which backend to use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackendConfig {
    /// The embedded in-memory store (the default when no Redis is configured).
    #[default]
    Memory,
    /// One Redis server, by URL (`redis://[user:pass@]host:port/db`, `rediss://` for TLS).
    Redis {
        /// The connection URL.
        url: String,
    },
    /// A Redis Cluster, by seed nodes (`redis://[user:password@]host:port`, or `rediss://` for TLS;
    /// `REDIS_CLUSTER_NODES` also accepts bare `host:port`).
    Cluster {
        /// Seed node URLs (`redis://host:port` or `rediss://...`).
        nodes: Vec<String>,
    },
}

impl BackendConfig {
    /// `memory`, `redis` or `cluster`.
    pub fn name(&self) -> &'static str {
        match self {
            BackendConfig::Memory => "memory",
            BackendConfig::Redis { .. } => "redis",
            BackendConfig::Cluster { .. } => "cluster",
        }
    }
}

/// Connection pool settings (Redis backends).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Maximum open connections (`REDIS_POOL_MAX_OPEN`, default 20 as in the seed).
    pub max_open: u64,
    /// Maximum idle connections kept (`REDIS_POOL_MAX_IDLE`, default = `max_open`).
    pub max_idle: u64,
    /// How long a caller waits for a connection from the pool (`REDIS_POOL_WAIT_TIMEOUT`, default 1 s).
    pub wait_timeout: Duration,
    /// How often connections are checked with `PING` in the background (`REDIS_HEALTH_CHECK_INTERVAL`,
    /// default 15 s).
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

/// Retry policy for idempotent operations (exponential backoff with full jitter within a budget).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in all, including the first (`REDIS_RETRY_ATTEMPTS`, default 3; 1 disables retries).
    pub max_attempts: u32,
    /// First backoff (`REDIS_RETRY_BASE_DELAY`, default 20 ms), doubled per attempt.
    pub base_delay: Duration,
    /// Largest single backoff (`REDIS_RETRY_MAX_DELAY`, default 200 ms).
    pub max_delay: Duration,
    /// Total time budget of one call including retries (`REDIS_RETRY_BUDGET`, default 1 s).
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

/// All settings of the library. Build with [`Config::builder`] or [`Config::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The profile the defaults came from (`CACHE_PROFILE`).
    pub profile: Profile,
    /// The backend (`CACHE_BACKEND`, `REDIS_URL`, `REDIS_CLUSTER_NODES`).
    pub backend: BackendConfig,
    /// Global key prefix (`CACHE_KEY_PREFIX`): one name without `:` (see
    /// [`crate::keys::validate_prefix`]); empty means none.
    pub key_prefix: String,
    /// Redis database number (`REDIS_DB`; overrides the URL's `/db`). Not allowed with a cluster.
    pub database: Option<i64>,
    /// Connect timeout (`REDIS_CONNECT_TIMEOUT`, default 1 s).
    pub connect_timeout: Duration,
    /// Response timeout of one command (`REDIS_RESPONSE_TIMEOUT`, default 500 ms).
    pub response_timeout: Duration,
    /// Pool settings.
    pub pool: PoolConfig,
    /// Retry settings.
    pub retry: RetryConfig,
    /// `COUNT` hint of `SCAN` (`REDIS_SCAN_COUNT`, default 500).
    pub scan_count: u32,
    /// Largest value a store accepts, in bytes (`CACHE_MAX_VALUE_BYTES`, default 8 MiB).
    pub max_value_bytes: usize,
    /// Read cache data from replicas in a cluster (`REDIS_READ_FROM_REPLICAS`, default false).
    pub read_from_replicas: bool,
    /// Per-family TTL overrides (`CACHE_TTL_<FAMILY>`, e.g. `CACHE_TTL_USER=2h`).
    pub ttl_overrides: BTreeMap<Family, Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self::for_profile(Profile::Development)
    }
}

impl Config {
    /// The defaults of a profile.
    pub fn for_profile(profile: Profile) -> Self {
        let base = Config {
            profile,
            backend: BackendConfig::Memory,
            key_prefix: String::new(),
            database: None,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_millis(500),
            pool: PoolConfig::default(),
            retry: RetryConfig::default(),
            scan_count: 500,
            max_value_bytes: 8 * 1024 * 1024,
            read_from_replicas: false,
            ttl_overrides: BTreeMap::new(),
        };
        match profile {
            Profile::Development => Config {
                key_prefix: "dev".into(),
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
                ..base
            },
            Profile::Staging => Config {
                key_prefix: "staging".into(),
                ..base
            },
            Profile::Production => base,
        }
    }

    /// A builder starting from the development profile.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
            profile_set: false,
            errors: Vec::new(),
        }
    }

    /// Reads the process environment (see the module docs), validates, and returns the config.
    pub fn from_env() -> Result<Config> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`Config::from_env`], over any lookup function (for tests and for layering).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let profile = match get("CACHE_PROFILE") {
            Some(p) => Profile::parse(&p)?,
            None => Profile::Development,
        };
        let mut c = Config::for_profile(profile);
        c.apply_env(&get)?;
        c.validate()?;
        Ok(c)
    }

    fn apply_env(&mut self, get: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let url = get("REDIS_URL");
        let nodes = get("REDIS_CLUSTER_NODES");
        match get("CACHE_BACKEND").as_deref().map(str::trim) {
            None => {
                if let Some(nodes) = nodes {
                    self.backend = BackendConfig::Cluster {
                        nodes: parse_nodes(&nodes)?,
                    };
                } else if let Some(url) = url {
                    self.backend = BackendConfig::Redis { url };
                }
            }
            Some("memory") => self.backend = BackendConfig::Memory,
            Some("redis") => {
                let url = url.ok_or_else(|| {
                    Error::config("REDIS_URL", "CACHE_BACKEND=redis needs REDIS_URL")
                })?;
                self.backend = BackendConfig::Redis { url };
            }
            Some("cluster") => {
                let nodes = nodes.ok_or_else(|| {
                    Error::config(
                        "REDIS_CLUSTER_NODES",
                        "CACHE_BACKEND=cluster needs REDIS_CLUSTER_NODES",
                    )
                })?;
                self.backend = BackendConfig::Cluster {
                    nodes: parse_nodes(&nodes)?,
                };
            }
            Some(other) => {
                return Err(Error::config(
                    "CACHE_BACKEND",
                    format!("{other:?} is not a backend; use memory, redis or cluster"),
                ))
            }
        }
        if let Some(p) = get("CACHE_KEY_PREFIX") {
            self.key_prefix = p.trim().to_owned();
        }
        if let Some(v) = get("REDIS_DB") {
            self.database = Some(parse_num("REDIS_DB", &v)?);
        }
        let dur = |k: &str, slot: &mut Duration| -> Result<()> {
            if let Some(v) = get(k) {
                *slot = parse_duration(k, &v)?;
            }
            Ok(())
        };
        dur("REDIS_CONNECT_TIMEOUT", &mut self.connect_timeout)?;
        dur("REDIS_RESPONSE_TIMEOUT", &mut self.response_timeout)?;
        dur("REDIS_POOL_WAIT_TIMEOUT", &mut self.pool.wait_timeout)?;
        dur(
            "REDIS_HEALTH_CHECK_INTERVAL",
            &mut self.pool.health_check_interval,
        )?;
        dur("REDIS_CONN_MAX_LIFETIME", &mut self.pool.max_lifetime)?;
        dur("REDIS_RETRY_BASE_DELAY", &mut self.retry.base_delay)?;
        dur("REDIS_RETRY_MAX_DELAY", &mut self.retry.max_delay)?;
        dur("REDIS_RETRY_BUDGET", &mut self.retry.budget)?;
        if let Some(v) = get("REDIS_POOL_MAX_OPEN") {
            self.pool.max_open = parse_num("REDIS_POOL_MAX_OPEN", &v)?;
            // Keep max_idle <= max_open unless it is set explicitly below.
            self.pool.max_idle = self.pool.max_idle.min(self.pool.max_open);
        }
        if let Some(v) = get("REDIS_POOL_MAX_IDLE") {
            self.pool.max_idle = parse_num("REDIS_POOL_MAX_IDLE", &v)?;
        }
        if let Some(v) = get("REDIS_RETRY_ATTEMPTS") {
            self.retry.max_attempts = parse_num("REDIS_RETRY_ATTEMPTS", &v)?;
        }
        if let Some(v) = get("REDIS_SCAN_COUNT") {
            self.scan_count = parse_num("REDIS_SCAN_COUNT", &v)?;
        }
        if let Some(v) = get("CACHE_MAX_VALUE_BYTES") {
            self.max_value_bytes = parse_num("CACHE_MAX_VALUE_BYTES", &v)?;
        }
        if let Some(v) = get("REDIS_READ_FROM_REPLICAS") {
            self.read_from_replicas = parse_bool("REDIS_READ_FROM_REPLICAS", &v)?;
        }
        for family in Family::ALL {
            let var = ttl_env_var(family);
            if let Some(v) = get(&var) {
                self.ttl_overrides.insert(family, parse_duration(&var, &v)?);
            }
        }
        Ok(())
    }

    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        validate_prefix(&self.key_prefix)?;
        match &self.backend {
            BackendConfig::Memory => {}
            BackendConfig::Redis { url } => {
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+unix://")
                    || url.starts_with("unix://"))
                {
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
            BackendConfig::Cluster { nodes } => {
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
        for (name, d) in positive {
            if d.is_zero() {
                return Err(Error::config(name, "must be greater than zero"));
            }
        }
        if self.pool.max_open == 0 {
            return Err(Error::config("REDIS_POOL_MAX_OPEN", "must be at least 1"));
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
        if self.retry.max_attempts == 0 {
            return Err(Error::config(
                "REDIS_RETRY_ATTEMPTS",
                "must be at least 1 (1 disables retries)",
            ));
        }
        if self.retry.base_delay > self.retry.max_delay {
            return Err(Error::config(
                "REDIS_RETRY_BASE_DELAY",
                "must not exceed REDIS_RETRY_MAX_DELAY",
            ));
        }
        if self.scan_count == 0 {
            return Err(Error::config("REDIS_SCAN_COUNT", "must be at least 1"));
        }
        if self.max_value_bytes == 0 {
            return Err(Error::config("CACHE_MAX_VALUE_BYTES", "must be at least 1"));
        }
        for (family, ttl) in &self.ttl_overrides {
            if ttl.is_zero() {
                return Err(Error::config(
                    ttl_env_var(*family),
                    "TTL must be greater than zero",
                ));
            }
        }
        Ok(())
    }
}

/// The environment variable that overrides a family's TTL (`CACHE_TTL_USER`, ...).
pub fn ttl_env_var(family: Family) -> String {
    format!("CACHE_TTL_{}", family.name().to_ascii_uppercase())
}

/// Replaces the password of a URL with `***` for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

fn parse_nodes(s: &str) -> Result<Vec<String>> {
    let nodes: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            if n.contains("://") {
                n.to_owned()
            } else {
                format!("redis://{n}")
            }
        })
        .collect();
    if nodes.is_empty() {
        return Err(Error::config(
            "REDIS_CLUSTER_NODES",
            "expected host:port[,host:port...]",
        ));
    }
    Ok(nodes)
}

fn parse_num<T: std::str::FromStr>(setting: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| Error::config(setting, format!("{v:?} is not a valid number")))
}

fn parse_bool(setting: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(
            setting,
            format!("{v:?} is not true or false"),
        )),
    }
}

/// Parses a duration written as a number and a unit: `250ms`, `30s`, `15m`, `2h`, `1d`. A bare number
/// is seconds. The error names `setting`.
pub fn parse_duration(setting: &str, v: &str) -> Result<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let bad = || {
        Error::config(
            setting,
            format!("{v:?} is not a duration; write e.g. 250ms, 30s, 15m, 2h or 1d"),
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(d)
}

/// Builder of [`Config`]. Errors are collected and reported by [`ConfigBuilder::build`].
#[derive(Debug)]
pub struct ConfigBuilder {
    config: Config,
    profile_set: bool,
    errors: Vec<Error>,
}

impl ConfigBuilder {
    /// Starts from the defaults of `profile` (call first: it resets settings made before it).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.config = Config::for_profile(profile);
        self.profile_set = true;
        self
    }

    /// Applies the process environment on top of what is set so far.
    pub fn env(mut self) -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if !self.profile_set {
            if let Some(p) = get("CACHE_PROFILE") {
                match Profile::parse(&p) {
                    Ok(p) => self.config = Config::for_profile(p),
                    Err(e) => self.errors.push(e),
                }
            }
        }
        if let Err(e) = self.config.apply_env(&get) {
            self.errors.push(e);
        }
        self
    }

    /// Uses the in-memory backend.
    pub fn memory(mut self) -> Self {
        self.config.backend = BackendConfig::Memory;
        self
    }

    /// Uses one Redis server at `url`.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.backend = BackendConfig::Redis { url: url.into() };
        self
    }

    /// Uses a Redis Cluster with these seed nodes (`host:port` or URLs).
    pub fn cluster_nodes<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined: Vec<String> = nodes.into_iter().map(|s| s.as_ref().to_owned()).collect();
        match parse_nodes(&joined.join(",")) {
            Ok(nodes) => self.config.backend = BackendConfig::Cluster { nodes },
            Err(e) => self.errors.push(e),
        }
        self
    }

    /// Sets the global key prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// Sets the Redis database number.
    pub fn database(mut self, db: i64) -> Self {
        self.config.database = Some(db);
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// Sets the response timeout of one command.
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.config.response_timeout = d;
        self
    }

    /// Replaces the pool settings.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.config.pool = pool;
        self
    }

    /// Sets the maximum number of open connections (and caps max idle to it).
    pub fn max_open(mut self, n: u64) -> Self {
        self.config.pool.max_open = n;
        self.config.pool.max_idle = self.config.pool.max_idle.min(n);
        self
    }

    /// Replaces the retry settings.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.config.retry = retry;
        self
    }

    /// Sets the `SCAN` `COUNT` hint.
    pub fn scan_count(mut self, n: u32) -> Self {
        self.config.scan_count = n;
        self
    }

    /// Sets the largest accepted value size.
    pub fn max_value_bytes(mut self, n: usize) -> Self {
        self.config.max_value_bytes = n;
        self
    }

    /// Reads cache data from replicas (cluster only).
    pub fn read_from_replicas(mut self, yes: bool) -> Self {
        self.config.read_from_replicas = yes;
        self
    }

    /// Overrides one family's TTL.
    pub fn ttl(mut self, family: Family, ttl: Duration) -> Self {
        self.config.ttl_overrides.insert(family, ttl);
        self
    }

    /// Validates and returns the config.
    pub fn build(self) -> Result<Config> {
        if let Some(e) = self.errors.into_iter().next() {
            return Err(e);
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

impl PoolConfig {
    /// Sets the maximum open connections.
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
    /// Sets the total budget.
    pub fn with_budget(mut self, d: Duration) -> Self {
        self.budget = d;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn profiles_have_distinct_defaults() {
        let dev = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(dev.profile, Profile::Development);
        assert_eq!(dev.backend, BackendConfig::Memory);
        let prod = Config::from_lookup(env(&[("CACHE_PROFILE", "prod")])).unwrap();
        assert_eq!(prod.pool.max_open, 20);
        assert_eq!(prod.response_timeout, Duration::from_millis(500));
        assert!(dev.response_timeout > prod.response_timeout);
        let staging = Config::from_lookup(env(&[("CACHE_PROFILE", "staging")])).unwrap();
        assert_eq!(staging.key_prefix, "staging");
    }

    #[test]
    fn environment_is_read() {
        let c = Config::from_lookup(env(&[
            ("CACHE_PROFILE", "production"),
            ("REDIS_URL", "redis://:pw@localhost:6380/2"),
            ("CACHE_KEY_PREFIX", "shop"),
            ("REDIS_RESPONSE_TIMEOUT", "250ms"),
            ("REDIS_POOL_MAX_OPEN", "8"),
            ("CACHE_TTL_USER", "2h"),
            ("CACHE_TTL_KEYWORD_POSTS", "90"),
        ]))
        .unwrap();
        assert_eq!(
            c.backend,
            BackendConfig::Redis {
                url: "redis://:pw@localhost:6380/2".into()
            }
        );
        assert_eq!(c.key_prefix, "shop");
        assert_eq!(c.response_timeout, Duration::from_millis(250));
        assert_eq!(c.pool.max_open, 8);
        assert_eq!(c.pool.max_idle, 8);
        assert_eq!(c.ttl_overrides[&Family::User], Duration::from_secs(7200));
        assert_eq!(
            c.ttl_overrides[&Family::KeywordPosts],
            Duration::from_secs(90)
        );
        let cl = Config::from_lookup(env(&[("REDIS_CLUSTER_NODES", "a:1, b:2")])).unwrap();
        assert_eq!(
            cl.backend,
            BackendConfig::Cluster {
                nodes: vec!["redis://a:1".into(), "redis://b:2".into()]
            }
        );
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let cases: [(&[(&str, &str)], &str); 9] = [
            (&[("CACHE_PROFILE", "qa")], "CACHE_PROFILE"),
            (&[("REDIS_URL", "http://x")], "REDIS_URL"),
            (
                &[("REDIS_RESPONSE_TIMEOUT", "fast")],
                "REDIS_RESPONSE_TIMEOUT",
            ),
            (&[("REDIS_RESPONSE_TIMEOUT", "0")], "REDIS_RESPONSE_TIMEOUT"),
            (&[("REDIS_POOL_MAX_OPEN", "0")], "REDIS_POOL_MAX_OPEN"),
            (&[("CACHE_KEY_PREFIX", "a*")], "CACHE_KEY_PREFIX"),
            (&[("CACHE_TTL_USER", "0s")], "CACHE_TTL_USER"),
            (&[("CACHE_BACKEND", "redis")], "REDIS_URL"),
            (&[("CACHE_BACKEND", "etcd")], "CACHE_BACKEND"),
        ];
        for (pairs, setting) in cases {
            let err = Config::from_lookup(env(pairs)).unwrap_err();
            assert!(
                matches!(&err, Error::Config { setting: s, .. } if s == setting),
                "{pairs:?}: {err}"
            );
        }
    }

    #[test]
    fn builder_and_redaction() {
        let c = Config::builder()
            .profile(Profile::Production)
            .redis_url("redis://u:secret@h:1")
            .max_open(4)
            .ttl(Family::Content, Duration::from_secs(5))
            .build()
            .unwrap();
        assert_eq!(c.pool.max_idle, 4);
        assert_eq!(redact_url("redis://u:secret@h:1"), "redis://u:***@h:1");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert!(Config::builder().max_open(0).build().is_err());
        assert_eq!(
            parse_duration("X", "1d").unwrap(),
            Duration::from_secs(86400)
        );
        assert!(parse_duration("X", "1w").is_err());
    }
}
