//! The storage trait and the small value types of its contract.
//!
//! # Contract shared by every method
//!
//! - **Keys are relative to the store's prefix.** A store built with prefix `app` stores key
//!   `user:42` as `app:user:42` on the backend, and [`Store::scan`] returns `user:42` again. No method
//!   can reach a key outside the prefix, and since a prefix is one name without `:`
//!   ([`crate::keys::validate_prefix`]), no method reaches the keys of another prefix either. Keys
//!   must be non-empty valid UTF-8; every id part in them goes through [`crate::keys::escape_id`]
//!   so that user input is escaped.
//! - **Values are bytes**, binary-safe, possibly empty. Typed values go through [`crate::codec`].
//!   Reads hand them out as [`Bytes`]: a backend that keeps values in memory hands out a
//!   reference-counted view of the value it holds instead of a copy, and the Redis backend the
//!   buffer the reply was read into, so a read copies nothing after the wire.
//! - **TTLs** are [`Duration`]s of at least one millisecond; a zero TTL is
//!   [`Error::InvalidInput`], never "delete" nor "forever". Sub-millisecond
//!   parts are rounded *up* to the next millisecond, so a key never expires earlier than asked.
//!   An expired key is indistinguishable from a missing one for every method.
//! - **Errors**: backend failures are returned as [`crate::Error`], never turned into `None` or
//!   `false`. `None` / `false` / `0` always mean "the key is not there (or the condition did not
//!   hold)", never "the backend is down".
//! - **Atomicity**: each method is atomic on its key(s) unless its documentation says otherwise. Batch
//!   methods ([`Store::get_many`], [`Store::set_many`], [`Store::delete`]) are one round trip on
//!   Redis but are not transactions across keys (in Redis Cluster the keys may live on different
//!   nodes).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use bytes::Bytes;

use crate::error::{Error, Result};

/// What a key's remaining lifetime is: the three answers of Redis `PTTL` without the `-2`/`-1`
/// magic numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// There is no such key (or it has expired).
    Missing,
    /// The key exists and has no expiry.
    Persistent,
    /// The key exists and expires after this duration.
    ExpiresIn(Duration),
}

impl KeyTtl {
    /// The remaining time to live, if the key exists and expires.
    pub fn remaining(self) -> Option<Duration> {
        match self {
            KeyTtl::ExpiresIn(d) => Some(d),
            _ => None,
        }
    }
}

/// Whether a write happens depending on the key's existence (Redis `NX` / `XX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SetCondition {
    /// Write unconditionally.
    #[default]
    Always,
    /// Write only if the key does not exist (`SET NX`).
    IfAbsent,
    /// Write only if the key already exists (`SET XX`).
    IfPresent,
}

/// What a write does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Expiry {
    /// The key does not expire; an existing TTL is removed (plain `SET`).
    #[default]
    Never,
    /// The key expires after this duration (`SET PX`).
    In(Duration),
    /// An existing key keeps its TTL; a newly created key does not expire (`SET KEEPTTL`).
    Keep,
}

/// Options of [`Store::set`]: a condition and an expiry. Build with the `with_*` methods.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{SetOptions, SetCondition, Expiry};
/// let opts = SetOptions::ttl(Duration::from_secs(60)).if_absent();
/// assert_eq!(opts.condition, SetCondition::IfAbsent);
/// assert_eq!(opts.expiry, Expiry::In(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SetOptions {
    /// When the write happens.
    pub condition: SetCondition,
    /// What the write does to the TTL.
    pub expiry: Expiry,
}

impl SetOptions {
    /// Unconditional write, no expiry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Unconditional write that expires after `ttl`.
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            condition: SetCondition::Always,
            expiry: Expiry::In(ttl),
        }
    }

    /// Sets the expiry.
    pub fn with_expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// Keeps the existing TTL (`KEEPTTL`).
    pub fn keep_ttl(self) -> Self {
        self.with_expiry(Expiry::Keep)
    }

    /// Writes only if the key does not exist (`NX`).
    pub fn if_absent(mut self) -> Self {
        self.condition = SetCondition::IfAbsent;
        self
    }

    /// Writes only if the key exists (`XX`).
    pub fn if_present(mut self) -> Self {
        self.condition = SetCondition::IfPresent;
        self
    }
}

/// The outcome of [`Store::compare_and_swap`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The key held the expected value and now holds the new one (or was deleted).
    Swapped,
    /// The key did not hold the expected value; nothing was written. `current` is what it holds
    /// (`None`: missing), read atomically with the comparison, so a caller can retry without another
    /// round trip.
    Conflict {
        /// The key's current value.
        current: Option<Bytes>,
    },
}

/// Where a [`Store::scan`] continues. Opaque: start with [`ScanCursor::start`] and pass back what
/// [`ScanPage::next`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanCursor(String);

impl ScanCursor {
    /// The cursor that starts a new scan.
    pub fn start() -> Self {
        Self(String::new())
    }

    /// Whether this cursor starts a new scan.
    pub fn is_start(&self) -> bool {
        self.0.is_empty()
    }

    /// For backends: wrap a backend-specific cursor state (never empty).
    pub fn from_backend(state: impl Into<String>) -> Self {
        Self(state.into())
    }

    /// For backends: the backend-specific state (`""` at the start).
    pub fn as_backend(&self) -> &str {
        &self.0
    }
}

/// One batch of a [`Store::scan`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanPage {
    /// Keys of this batch, relative to the store prefix. May be empty even when the scan is not over.
    pub keys: Vec<String>,
    /// Where to continue, or `None` when the scan is complete.
    pub next: Option<ScanCursor>,
}

/// Server and connection statistics a backend may report (see [`Store::stats`]). Fields a backend does
/// not know are `None`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct BackendStats {
    /// Backend name (`memory`, `redis`, `redis-cluster`).
    pub backend: String,
    /// Server version.
    pub version: Option<String>,
    /// Seconds since the server started.
    pub uptime_secs: Option<u64>,
    /// Memory in use, bytes.
    pub used_memory_bytes: Option<u64>,
    /// Peak memory in use, bytes.
    pub peak_memory_bytes: Option<u64>,
    /// Connected clients.
    pub connected_clients: Option<u64>,
    /// Instantaneous operations per second.
    pub ops_per_sec: Option<u64>,
    /// Keyspace hits (successful lookups).
    pub keyspace_hits: Option<u64>,
    /// Keyspace misses.
    pub keyspace_misses: Option<u64>,
    /// Keys expired so far.
    pub expired_keys: Option<u64>,
    /// Keys evicted so far.
    pub evicted_keys: Option<u64>,
    /// Keys per database (`db0` → count), or the entry count of an in-memory store under `"memory"`.
    pub keys_per_db: std::collections::BTreeMap<String, u64>,
    /// Connection pool state, for pooled backends.
    pub pool: Option<PoolStats>,
    /// Per-node detail for clustered backends (one entry per primary), empty otherwise.
    pub nodes: Vec<BackendStats>,
}

impl BackendStats {
    /// An empty report for the named backend.
    pub fn new(backend: impl Into<String>) -> Self {
        Self {
            backend: backend.into(),
            ..Self::default()
        }
    }

    /// `hits / (hits + misses)`, when both are known and non-zero in sum.
    pub fn hit_ratio(&self) -> Option<f64> {
        let (h, m) = (self.keyspace_hits?, self.keyspace_misses?);
        (h + m > 0).then(|| h as f64 / (h + m) as f64)
    }
}

/// Connection pool state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PoolStats {
    /// Maximum open connections.
    pub max_open: u64,
    /// Connections open now.
    pub open: u64,
    /// Open connections not in use.
    pub idle: u64,
    /// Connections checked out now.
    pub in_use: u64,
    /// Checkouts that had to wait for a connection, since start.
    pub waits: u64,
    /// Checkouts that gave up after the pool wait timeout, since start.
    pub timeouts: u64,
}

impl PoolStats {
    /// An empty report with the given maximum.
    pub fn new(max_open: u64) -> Self {
        Self {
            max_open,
            ..Self::default()
        }
    }
}

/// An async key-value store with Redis semantics: the one trait every backend implements and every
/// higher layer (cache manager, session manager, CLI) is written against.
///
/// Usable as a generic `S: Store` and as `Arc<dyn Store>` / `Box<dyn Store>`. See the
/// [module documentation](self) for the contract every method shares.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// The prefix under which this store keeps its keys (without the trailing `:`), possibly empty.
    fn prefix(&self) -> &str;

    /// A short name of the backend (`memory`, `redis`, `redis-cluster`), for reports.
    fn backend_name(&self) -> &'static str;

    /// Whether every call of this store ends by the deadline of the library call it runs under
    /// ([`crate::deadline::current`]) on its own, answering [`Error::Timeout`] at the latest then.
    /// When it does, the managers do not race their calls against a timer of their own (one timer
    /// fewer per call on the hot path); when it does not (the default), they cut the call with the
    /// runtime's timer at the deadline. Answer `true` only for a store whose every method either
    /// never waits or bounds its waits by the deadline.
    fn ends_calls_at_deadline(&self) -> bool {
        false
    }

    /// Reads a key. `None`: the key does not exist or has expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// Reads many keys in one round trip (`MGET`). The result has one entry per input key, in order;
    /// duplicates are answered twice. Not a snapshot across keys.
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>>;

    /// Reads a key and sets its TTL to `ttl` in one atomic step (`GETEX PX`): the basis of sliding
    /// expiry. `None`: the key does not exist (nothing is created).
    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Bytes>>;

    /// Writes a key according to `opts`. Returns `true` when the value was written, `false` when the
    /// condition (`IfAbsent` / `IfPresent`) did not hold, in which case nothing changed. Never
    /// repeated by a backend once it may have reached the server, not even unconditionally: a repeat
    /// after another client's delete would bring the deleted value back. A transient error therefore
    /// says the write may or may not have happened.
    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool>;

    /// Writes many keys in one round trip, each with the same expiry (`Expiry::Keep` is not accepted:
    /// [`Error::InvalidInput`]). Not atomic across keys: on error, some keys may have been written.
    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()>;

    /// Deletes keys (`UNLINK`) and returns how many of them existed. An empty slice deletes nothing.
    async fn delete(&self, keys: &[&str]) -> Result<u64>;

    /// Whether a key exists.
    async fn exists(&self, key: &str) -> Result<bool>;

    /// Sets a key's TTL. `false`: no such key (nothing is created).
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool>;

    /// Removes a key's TTL. `false`: no such key, or it had no TTL.
    async fn persist(&self, key: &str) -> Result<bool>;

    /// A key's remaining lifetime.
    async fn ttl(&self, key: &str) -> Result<KeyTtl>;

    /// Atomically adds `delta` to the integer stored at `key` (a missing key counts as 0) and returns
    /// the new value. When the key is created by this call and `ttl_if_created` is set, it expires
    /// after that TTL (the TTL of an existing key is left alone). A value that is not a decimal `i64`
    /// is [`Error::InvalidInput`]; overflow is [`Error::InvalidInput`] and changes nothing. Not
    /// idempotent: never retried blindly.
    async fn incr_by(&self, key: &str, delta: i64, ttl_if_created: Option<Duration>)
        -> Result<i64>;

    /// Atomic compare-and-swap on one key. If the key currently holds `expected` (`None`: the key does
    /// not exist), it is set to `new` (`None`: deleted) with `expiry` applied, and
    /// [`CasOutcome::Swapped`] is returned. Otherwise nothing changes and the current value is returned
    /// in [`CasOutcome::Conflict`]. This is the primitive for no-lost-update read-modify-write loops.
    /// Not idempotent: never retried blindly.
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome>;

    /// One batch of an incremental scan over keys matching a Redis glob `pattern` (relative to the
    /// prefix; escape user input with [`crate::keys::glob_escape`]). `count` is a hint of the batch size
    /// (Redis `COUNT`). A full scan (until [`ScanPage::next`] is `None`) returns every key that
    /// existed for the whole scan at least once; keys may be returned more than once; keys created or
    /// deleted during the scan may or may not appear. Never uses `KEYS`.
    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage>;

    /// Adds `member` with `score` to the sorted set at `key`, or updates its score. Returns `true`
    /// when the member is new. The set is created if missing (without a TTL).
    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool>;

    /// Removes members from a sorted set; returns how many were present.
    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64>;

    /// Members with `min <= score <= max`, lowest score first (ties by member), at most `limit` of them
    /// when given. Use `f64::NEG_INFINITY` / `f64::INFINITY` for open bounds. A missing key is empty.
    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>>;

    /// Removes members with `min <= score <= max`; returns how many were removed. A sorted set left
    /// empty is deleted, as in Redis.
    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64>;

    /// Number of members of a sorted set (0 when missing).
    async fn zcard(&self, key: &str) -> Result<u64>;

    /// Checks the backend answers, returning the round-trip time.
    async fn ping(&self) -> Result<Duration>;

    /// Deletes every key under this store's prefix (scan + batched `UNLINK`, never `FLUSHDB`) and
    /// returns how many were deleted. A store with an empty prefix refuses with
    /// [`Error::InvalidInput`]: it would wipe a database it may share with others.
    async fn flush_prefix(&self) -> Result<u64>;

    /// Server and pool statistics, when the backend has any (`None` otherwise).
    async fn stats(&self) -> Result<Option<BackendStats>> {
        Ok(None)
    }

    /// The connection pool's state as the client sees it, without a round trip to the server (the
    /// pool part of [`Store::stats`], cheap enough for a readiness probe). `None` for backends
    /// without a pool (the default).
    async fn pool_stats(&self) -> Option<PoolStats> {
        None
    }

    /// Closes the store: from the moment it is called, new calls fail with [`Error::Closed`] (not
    /// transient); calls already in flight may finish, up to a grace period the backend documents;
    /// then connections are closed and background tasks end. Idempotent: a second call (also one
    /// made concurrently, or through a clone or another view sharing the connections) waits for
    /// nothing new and returns `Ok`.
    ///
    /// Dropping a store releases its resources too, but lazily and without waiting for calls in
    /// flight; `close` is the orderly shutdown. The default does nothing and returns `Ok`: for
    /// stores that hold no resources (wrappers forward it to the store they wrap).
    async fn close(&self) -> Result<()> {
        Ok(())
    }

    /// Reads a key and its remaining lifetime (Redis: `GET` and `PTTL` in one pipeline, one round
    /// trip). `None`: the key does not exist. The two need not be atomic (the default reads them
    /// one after the other), so they may belong to different writes; a near cache is safe either
    /// way because a write in between is also reported through [`Store::track_changes`].
    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, KeyTtl)>> {
        let Some(value) = self.get(key).await? else {
            return Ok(None);
        };
        Ok(Some((value, self.ttl(key).await?)))
    }

    /// Asks the backend to report every change of a key starting with `prefix` (relative to the
    /// store's prefix) to `listener`, which it holds weakly (dropping the listener unregisters
    /// it). Returns once registered; the listener hears
    /// [`InvalidationListener::tracking_ready`](crate::tracking::InvalidationListener::tracking_ready)
    /// when the server tracks the prefix, and nothing may be cached before. Backends that cannot
    /// watch their server answer [`Error::Unsupported`] (the default).
    async fn track_changes(
        &self,
        prefix: &str,
        listener: std::sync::Weak<dyn crate::tracking::InvalidationListener>,
    ) -> Result<()> {
        let _ = (prefix, listener);
        Err(Error::Unsupported(format!(
            "the {} backend does not report key changes (no near cache)",
            self.backend_name()
        )))
    }
}

/// Validates a TTL against the [contract](self) and returns it in whole milliseconds (rounded up).
///
/// Backends call this so that every backend rejects the same TTLs with the same error.
pub fn ttl_millis(ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(Error::invalid_input(
            "TTL must be at least 1 ms (a zero TTL is neither 'delete' nor 'forever')",
        ));
    }
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms)
        .ok()
        // Redis rejects expire times that overflow when added to the current time in ms.
        .filter(|ms| *ms <= (i64::MAX as u64) / 2)
        .ok_or_else(|| Error::invalid_input(format!("TTL {ttl:?} is too large")))
}

/// Validates a key against the [contract](self): non-empty, at most [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_input("key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid_input(format!(
            "key is {} bytes, the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// The longest key (relative to the prefix) the stores accept, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

// `Arc<dyn Store>` and `Box<dyn Store>` are stores: the method list is written once, in
// `crate::delegate`, for these impls and for `crate::layer::Layered`.
delegate_store! {
    impl[T: Store + ?Sized] for Arc<T>;
    inner: |this| (**this);
    call: direct_call;
}

delegate_store! {
    impl[T: Store + ?Sized] for Box<T>;
    inner: |this| (**this);
    call: direct_call;
}

mod ext;
pub use ext::{Selected, StoreExt};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rules() {
        assert!(ttl_millis(Duration::ZERO).is_err());
        assert_eq!(ttl_millis(Duration::from_nanos(1)).unwrap(), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)).unwrap(), 2);
        assert_eq!(ttl_millis(Duration::from_millis(250)).unwrap(), 250);
        assert!(ttl_millis(Duration::MAX).is_err());
    }

    #[test]
    fn key_rules() {
        assert!(check_key("").is_err());
        assert!(check_key("a").is_ok());
        assert!(check_key(&"x".repeat(MAX_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn store_is_dyn_compatible() {
        fn assert_dyn(_: Option<&Arc<dyn Store>>) {}
        assert_dyn(None);
    }
}
