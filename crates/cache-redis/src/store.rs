//! [`RedisStore`]: the [`Store`] implementation on one Redis server.

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
use redis::{Cmd, FromRedisValue, Value};

use crate::conn::{self, Connections, Idempotency, Limits, Manager};
use crate::scripts;

/// How many shared multiplexed connections a store keeps by default (see
/// [`RedisStoreBuilder::with_shared_connections`]).
pub const DEFAULT_SHARED_CONNECTIONS: usize = 2;

/// A [`Store`] on one Redis server (standalone, or a primary behind a proxy).
///
/// Cheap to clone: clones share the connections. See the [crate documentation](crate) for the
/// connection design, timeouts, retries and error mapping.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) conns: Arc<Connections>,
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
        let BackendConfig::Redis { url } = &config.backend else {
            return Err(Error::config(
                "CACHE_BACKEND",
                format!(
                    "RedisStore needs the redis backend (REDIS_URL), the configuration selects {}",
                    config.backend.name()
                ),
            ));
        };
        let client = open_client(url, config.database)?;
        let info = client.get_connection_info();
        let db = info.redis_settings().db();
        let target = describe_addr(info.addr());
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
    /// Connects with `config` (backend must be [`BackendConfig::Redis`]) and the default options:
    /// see [`RedisStoreBuilder::connect`].
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
            key_prefix: format!("{prefix}:"),
            prefix,
            scan_count: self.scan_count,
            max_value_bytes: self.max_value_bytes,
            db: self.db,
        })
    }

    /// The server address (`host:port`, never with credentials).
    pub fn target(&self) -> &str {
        self.conns.target()
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

    /// `SCAN` on the server with a full (prefixed, escaped) pattern; returns full keys.
    async fn scan_raw(
        &self,
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
        let (next, keys): (String, Vec<Vec<u8>>) = self
            .query("SCAN", None, Idempotency::Repeatable, cmd)
            .await?;
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

#[async_trait]
impl Store for RedisStore {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.full_key(key)?);
        self.query("GET", Some(key), Idempotency::Repeatable, cmd)
            .await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
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
        if keys.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("UNLINK");
        for k in keys {
            cmd.arg(self.full_key(k)?);
        }
        // The count would be lower on a repeat: not repeated once sent.
        self.query("UNLINK", keys.first().copied(), Idempotency::Once, cmd)
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.full_key(key)?);
        let n: u64 = self
            .query("EXISTS", Some(key), Idempotency::Repeatable, cmd)
            .await?;
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
        let mut cmd = redis::cmd("PTTL");
        cmd.arg(self.full_key(key)?);
        let ms: i64 = self
            .query("PTTL", Some(key), Idempotency::Repeatable, cmd)
            .await?;
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
                                .key(full)
                                .arg(delta)
                                .arg(ms)
                                .invoke_async::<i64>(&mut c)
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
                        .key(full)
                        .arg(if expected.is_some() { "1" } else { "0" })
                        .arg(expected.unwrap_or_default())
                        .arg(if new.is_some() { "1" } else { "0" })
                        .arg(new.unwrap_or_default())
                        .arg(mode)
                        .arg(ms)
                        .invoke_async(&mut c)
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
        let (next, keys) = self
            .scan_raw(cursor.as_backend(), &self.full_pattern(pattern), count)
            .await?;
        let keys = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.key_prefix).map(str::to_owned))
            .filter(|k| !k.is_empty())
            .collect();
        Ok(ScanPage {
            keys,
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
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(self.full_key(key)?)
            .arg(score_arg(min, "min")?)
            .arg(score_arg(max, "max")?)
            .arg("WITHSCORES");
        if let Some(n) = limit {
            cmd.arg("LIMIT").arg(0).arg(n.min(i64::MAX as usize));
        }
        self.query("ZRANGEBYSCORE", Some(key), Idempotency::Repeatable, cmd)
            .await
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
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(self.full_key(key)?);
        self.query("ZCARD", Some(key), Idempotency::Repeatable, cmd)
            .await
    }

    async fn ping(&self) -> Result<Duration> {
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
        let mut cursor = String::from("0");
        let mut deleted = 0u64;
        loop {
            let (next, keys) = self.scan_raw(&cursor, &pattern, self.scan_count).await?;
            if !keys.is_empty() {
                let mut cmd = redis::cmd("UNLINK");
                cmd.arg(&keys);
                let n: u64 = self.query("UNLINK", None, Idempotency::Once, cmd).await?;
                deleted += n;
            }
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    async fn stats(&self) -> Result<Option<BackendStats>> {
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
