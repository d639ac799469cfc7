//! [`RedisStore`]: the type, its constructors and accessors, and its [`Store`] implementation.
//!
//! Each trait method builds its command here and runs it through [`crate::route`]; what takes more
//! than one command lives by topic: batches (split per hash slot on a cluster) in [`crate::batch`],
//! scans and `flush_prefix` in [`crate::scan`], the per-node cluster calls in [`crate::cluster`].
//!
//! (A little over 600 lines on purpose: the `Store` implementation is one `impl` block, one
//! command per method, each method first passing the close gate; splitting it would scatter that
//! one table of commands.)

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::keys::sub_prefix;
use cache_core::store::{check_key, ttl_millis};
use cache_core::{
    async_trait, BackendStats, Bytes, CasOutcome, Error, Expiry, KeyTtl, PoolStats, Result,
    ScanCursor, ScanPage, SetCondition, SetOptions, Store,
};
use redis::{FromRedisValue, Value};

use crate::builder::RedisStoreBuilder;
use crate::config::RedisConfig;
use crate::manager;
use crate::retry::Idempotency;
use crate::scripts;
use crate::slots::Connections;

/// A full key (the store's prefix, then a relative key) as one command argument, written into the
/// command's buffer in two pieces.
struct PrefixedKey<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl redis::ToRedisArgs for PrefixedKey<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // A command's writer extends a `Vec`: writing to it cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.key.as_bytes());
    }
}

/// A [`Store`] on one Redis server (standalone, or a primary behind a proxy), on the primary of a
/// Redis Sentinel service ([`RedisEndpoint::Sentinel`](crate::RedisEndpoint::Sentinel); see the
/// [crate documentation](crate#redis-sentinel)) or on a Redis Cluster
/// ([`RedisEndpoint::Cluster`](crate::RedisEndpoint::Cluster); see the
/// [crate documentation](crate#redis-cluster)).
///
/// Cheap to clone: clones share the connections. See the [crate documentation](crate) for the
/// connection design, timeouts, retries and error mapping.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) conns: Arc<Connections>,
    /// Under Sentinel with `read_from_replicas`: connections to replicas, for the reads of a
    /// [`RedisStore::replica_reads`] view.
    replicas: Option<Arc<Connections>>,
    /// Cluster or Sentinel: reads of this view go to replicas ([`RedisStore::replica_reads`]).
    pub(crate) replica_reads: bool,
    pub(crate) prefix: String,
    /// `prefix:` (or empty), prepended to every key.
    pub(crate) key_prefix: String,
    pub(crate) scan_count: u32,
    max_value_bytes: usize,
    db: i64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.conns.target())
            .field("cluster", &self.conns.is_cluster())
            .field("sentinel", &self.is_sentinel())
            .field("replica_reads", &self.replica_reads)
            .field("db", &self.db)
            .field("prefix", &self.prefix)
            .field("shared_connections", &self.conns.slot_count())
            .field("closed", &self.conns.is_closed())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Runs `fut`, a call made of waits outside `Connections::run` (a fan-out to every node, a
    /// tracking registration), so that it ends by the deadline of the library call it is part of
    /// ([`cache_core::deadline::current`]), as every other call does; without a deadline it runs as
    /// it is (its own timeouts bound it).
    async fn within_deadline<T>(
        &self,
        op: &str,
        fut: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let Some(deadline) = cache_core::deadline::current() else {
            return fut.await;
        };
        let started = Instant::now();
        match tokio::time::timeout(deadline.remaining(), fut).await {
            Ok(result) => result,
            Err(_) => {
                Err(deadline.timeout_error(format!("{op} on {}", self.conns.target()), started))
            }
        }
    }

    /// Connects with `config` and the default options: see [`RedisStoreBuilder::connect`].
    pub async fn connect(config: &RedisConfig) -> Result<RedisStore> {
        Self::builder(config).connect().await
    }

    /// A builder for options beyond the [`RedisConfig`] (lazy connect).
    pub fn builder(config: &RedisConfig) -> RedisStoreBuilder {
        RedisStoreBuilder::new(config)
    }

    /// The store over freshly built connections (see [`RedisStoreBuilder::connect`]).
    pub(crate) fn new(
        conns: Arc<Connections>,
        replicas: Option<Arc<Connections>>,
        config: &RedisConfig,
        db: i64,
    ) -> RedisStore {
        let prefix = config.key_prefix.clone();
        RedisStore {
            conns,
            replicas,
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
        }
    }

    /// A store sharing this one's connections, whose keys live under the prefix `{prefix}.{sub}`
    /// (`sub` alone without a prefix; see [`cache_core::keys::sub_prefix`]), for a component or a
    /// test that must not see or touch other keys. A prefix is one name without `:`, so the scope
    /// and its parent are isolated from each other: no scan, count, pattern deletion or
    /// `flush_prefix` of one reaches a key of the other (the rule is on
    /// [`cache_core::keys::validate_prefix`]). `sub` is a name of letters, digits and `-_.`.
    pub fn scoped(&self, sub: &str) -> Result<RedisStore> {
        let prefix = sub_prefix(&self.prefix, sub)?;
        Ok(RedisStore {
            conns: Arc::clone(&self.conns),
            replicas: self.replicas.clone(),
            replica_reads: self.replica_reads,
            key_prefix: format!("{prefix}:"),
            prefix,
            scan_count: self.scan_count,
            max_value_bytes: self.max_value_bytes,
            db: self.db,
        })
    }

    /// The server address (`host:port`, never with credentials); for a cluster,
    /// `cluster [host:port,...]` with the seed nodes; under Sentinel,
    /// `sentinel service NAME via [host:port, ...]` with the sentinels (the primary of the moment is
    /// [`RedisStore::sentinel_primary`]).
    pub fn target(&self) -> &str {
        self.conns.target()
    }

    /// Whether this store runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conns.is_cluster()
    }

    /// Whether this store finds its primary through Redis Sentinel.
    pub fn is_sentinel(&self) -> bool {
        self.conns.discovery().is_some()
    }

    /// Under Sentinel: the primary (`host:port`) as last discovered or announced by the
    /// sentinels; `None` before the first connection, and on one server or a cluster.
    pub fn sentinel_primary(&self) -> Option<String> {
        self.conns
            .discovery()
            .and_then(|d| d.primary())
            .map(|a| a.to_string())
    }

    /// Under Sentinel: how many times the store saw the sentinels switch the primary since it was
    /// built (each switch retires every connection, so the next commands go to the new primary).
    /// 0 on one server or a cluster.
    pub fn sentinel_switches(&self) -> u64 {
        self.conns.discovery().map_or(0, |d| d.switches())
    }

    /// A view of this store (same connections, same prefix) whose reads (`get`, `get_many`,
    /// `exists`, `ttl`, `zrange_by_score`, `zcard`) go to replicas when `REDIS_READ_FROM_REPLICAS`
    /// is on: in a cluster a replica of the key's shard, under Sentinel one of the service's
    /// replicas (over connections of their own; the primary when no replica is healthy). Writes,
    /// atomic operations and scans still go to the primaries. Replicas lag behind their primary
    /// (asynchronous replication), so a read may miss a write made a moment earlier: use this view
    /// for cache data, never for sessions or anything that must read its own writes. Without
    /// `REDIS_READ_FROM_REPLICAS`, or on one server, the view reads from primaries like the store
    /// itself.
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

    /// What the near-cache tracking of this store's prefix has seen, once a near cache registered
    /// (`None` before, and on a cluster).
    pub fn tracking_stats(&self) -> Option<crate::TrackingStats> {
        self.conns.trackers.stats(&self.prefix)
    }

    /// The command `name` on `key`: the key checked ([`check_key`]) and written with the store's
    /// prefix straight into the command (no `String` is assembled for the full key), the command
    /// sized for `more` bytes of further arguments (no regrowth on the hot path).
    pub(crate) fn key_cmd(&self, name: &str, key: &str, more: usize) -> Result<redis::Cmd> {
        check_key(key)?;
        let mut cmd =
            redis::Cmd::with_capacity(6, name.len() + self.key_prefix.len() + key.len() + more);
        cmd.arg(name).arg(PrefixedKey {
            prefix: &self.key_prefix,
            key,
        });
        Ok(cmd)
    }

    /// The full Redis key of a relative key.
    pub fn full_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        let mut k = String::with_capacity(self.key_prefix.len() + key.len());
        k.push_str(&self.key_prefix);
        k.push_str(key);
        Ok(k)
    }

    /// The connections reads of this view use: the replica connections of a Sentinel store's
    /// [`RedisStore::replica_reads`] view, else the store's.
    pub(crate) fn read_conns(&self) -> &Arc<Connections> {
        match (&self.replicas, self.replica_reads) {
            (Some(replicas), true) => replicas,
            _ => &self.conns,
        }
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_bytes {
            return Err(Error::Capacity(format!(
                "value of {} bytes is larger than CACHE_MAX_VALUE_BYTES ({})",
                value.len(),
                self.max_value_bytes
            )));
        }
        Ok(())
    }

    /// Keys of a scan reply relative to the prefix (keys outside it are dropped).
    pub(crate) fn relative_keys(&self, keys: Vec<String>) -> Vec<String> {
        keys.into_iter()
            .filter_map(|k| k.strip_prefix(&self.key_prefix).map(str::to_owned))
            .filter(|k| !k.is_empty())
            .collect()
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

    /// Every command goes through `Connections::run`, which ends it at the library call's
    /// deadline; the few methods made of other waits (`ping`, `stats`, `track_changes`) are cut at
    /// it by `RedisStore::within_deadline`.
    fn ends_calls_at_deadline(&self) -> bool {
        true
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let _call = self.conns.enter()?;
        let cmd = self.key_cmd("GET", key, 0)?;
        self.read("GET", key, &cmd).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let _call = self.conns.enter()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.get_many_batch(keys).await
    }

    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>> {
        let _call = self.conns.enter()?;
        let ms = ttl_millis(ttl)?;
        let mut cmd = self.key_cmd("GETEX", key, 32)?;
        cmd.arg("PX").arg(ms);
        // Repeating sets the same TTL (from a slightly later instant) and reads the same value.
        self.query("GETEX", Some(key), Idempotency::Repeatable, &cmd)
            .await
    }

    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        let _call = self.conns.enter()?;
        self.check_value(value)?;
        let mut cmd = self.key_cmd("SET", key, value.len() + 40)?;
        cmd.arg(value);
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
        // Never repeated once sent, whatever the condition: an unconditional SET repeated after
        // another client's DEL brings the deleted value back (tests/retries.rs), and NX / XX would
        // also answer differently the second time. See `Idempotency`.
        let reply: Value = self
            .query("SET", Some(key), Idempotency::Once, &cmd)
            .await?;
        Ok(!matches!(reply, Value::Nil))
    }

    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
        let _call = self.conns.enter()?;
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
        self.set_many_batch(entries, px).await
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        let _call = self.conns.enter()?;
        let fulls = keys
            .iter()
            .map(|k| self.full_key(k))
            .collect::<Result<Vec<_>>>()?;
        self.unlink(keys.first().copied(), &fulls).await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let _call = self.conns.enter()?;
        let cmd = self.key_cmd("EXISTS", key, 0)?;
        let n: u64 = self.read("EXISTS", key, &cmd).await?;
        Ok(n > 0)
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, KeyTtl)>> {
        self.read_with_ttl(key).await
    }

    async fn track_changes(
        &self,
        prefix: &str,
        listener: std::sync::Weak<dyn cache_core::tracking::InvalidationListener>,
    ) -> Result<()> {
        self.within_deadline("CLIENT TRACKING", self.register_listener(prefix, listener))
            .await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let _call = self.conns.enter()?;
        let mut cmd = redis::cmd("PEXPIRE");
        cmd.arg(self.full_key(key)?).arg(ttl_millis(ttl)?);
        self.query("PEXPIRE", Some(key), Idempotency::Repeatable, &cmd)
            .await
    }

    async fn persist(&self, key: &str) -> Result<bool> {
        let _call = self.conns.enter()?;
        let mut cmd = redis::cmd("PERSIST");
        cmd.arg(self.full_key(key)?);
        // A repeat would answer "had no TTL": not repeated once sent.
        self.query("PERSIST", Some(key), Idempotency::Once, &cmd)
            .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let _call = self.conns.enter()?;
        let cmd = self.key_cmd("PTTL", key, 0)?;
        let ms: i64 = self.read("PTTL", key, &cmd).await?;
        crate::reply::key_ttl(ms)
    }

    async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_if_created: Option<Duration>,
    ) -> Result<i64> {
        let _call = self.conns.enter()?;
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
                self.query("INCRBY", Some(key), Idempotency::Once, &cmd)
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
        let _call = self.conns.enter()?;
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
                Some(v) => Some(Bytes::from_redis_value(v).map_err(|e| {
                    Error::backend(format!("unexpected compare-and-swap reply: {e}"))
                })?),
            };
        Ok(CasOutcome::Conflict { current })
    }

    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage> {
        let _call = self.conns.enter()?;
        if count == 0 {
            return Err(Error::invalid_input("scan count must be at least 1"));
        }
        self.scan_page(pattern, cursor, count).await
    }

    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        let _call = self.conns.enter()?;
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(self.full_key(key)?)
            .arg(score_arg(score, "score")?)
            .arg(member);
        let added: u64 = self
            .query("ZADD", Some(key), Idempotency::Once, &cmd)
            .await?;
        Ok(added > 0)
    }

    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        let _call = self.conns.enter()?;
        let full = self.full_key(key)?;
        if members.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(full).arg(members);
        self.query("ZREM", Some(key), Idempotency::Once, &cmd).await
    }

    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        let _call = self.conns.enter()?;
        let mut cmd = self.key_cmd("ZRANGEBYSCORE", key, 64)?;
        cmd.arg(score_arg(min, "min")?)
            .arg(score_arg(max, "max")?)
            .arg("WITHSCORES");
        if let Some(n) = limit {
            cmd.arg("LIMIT").arg(0).arg(n.min(i64::MAX as usize));
        }
        self.read("ZRANGEBYSCORE", key, &cmd).await
    }

    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        let _call = self.conns.enter()?;
        let mut cmd = redis::cmd("ZREMRANGEBYSCORE");
        cmd.arg(self.full_key(key)?)
            .arg(score_arg(min, "min")?)
            .arg(score_arg(max, "max")?);
        self.query("ZREMRANGEBYSCORE", Some(key), Idempotency::Once, &cmd)
            .await
    }

    async fn zcard(&self, key: &str) -> Result<u64> {
        let _call = self.conns.enter()?;
        let cmd = self.key_cmd("ZCARD", key, 0)?;
        self.read("ZCARD", key, &cmd).await
    }

    async fn ping(&self) -> Result<Duration> {
        let _call = self.conns.enter()?;
        if self.is_cluster() {
            return self.within_deadline("PING", self.ping_cluster()).await;
        }
        let timeout = self.conns.limits().response_timeout;
        self.conns
            .run("PING", None, Idempotency::Repeatable, |mut c| async move {
                manager::ping(&mut c, timeout).await
            })
            .await
    }

    async fn flush_prefix(&self) -> Result<u64> {
        let _call = self.conns.enter()?;
        if self.prefix.is_empty() {
            return Err(Error::invalid_input(
                "flush_prefix refuses a store without a key prefix: it would delete every key of \
                 a database that may be shared (set CACHE_KEY_PREFIX)",
            ));
        }
        self.flush_keys().await
    }

    async fn stats(&self) -> Result<Option<BackendStats>> {
        let _call = self.conns.enter()?;
        if self.is_cluster() {
            return self
                .within_deadline("INFO", self.stats_cluster())
                .await
                .map(Some);
        }
        let started = Instant::now();
        let text: String = self
            .query("INFO", None, Idempotency::Repeatable, &redis::cmd("INFO"))
            .await?;
        let mut stats = crate::info::parse("redis", &text);
        stats.pool = Some(self.conns.pool_stats().await);
        tracing::trace!(target: "cache_redis", elapsed = ?started.elapsed(), "collected INFO");
        Ok(Some(stats))
    }

    async fn pool_stats(&self) -> Option<PoolStats> {
        Some(self.conns.pool_stats().await)
    }

    /// See [`Store::close`] and the [crate documentation](crate#closing): refuses new calls, lets
    /// calls in flight finish within the longest one call may take, then ends every connection (on
    /// one server, `QUIT` first) and the background tasks (under Sentinel also the watcher, and the
    /// replica connections of [`RedisStore::replica_reads`]). Closes every clone and view of this
    /// store (they share the connections).
    async fn close(&self) -> Result<()> {
        // Calls pass the gate of `conns` only, so once it is closed and drained nothing uses the
        // replica connections either.
        self.conns.close().await?;
        if let Some(replicas) = &self.replicas {
            replicas.close().await?;
        }
        Ok(())
    }
}
