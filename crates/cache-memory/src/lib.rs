//! # cache-memory
//!
//! [`MemoryStore`]: the in-memory backend of [`cache_core::Store`], with the semantics of Redis
//! (string values and sorted sets, `NX`/`XX`/`KEEPTTL`, `GETEX`, `WRONGTYPE`, glob `SCAN`,
//! `INCRBY` rules) so that code tested against it behaves the same on a Redis server. It passes the
//! same conformance suite (`cache_testing::conformance`) as the Redis backends.
//!
//! - **Deterministic time.** Deadlines are [`tokio::time::Instant`]s: under `tokio::time::pause()`
//!   a test moves time with `tokio::time::advance` and never sleeps.
//! - **Expiry** is lazy (every access checks the deadline, so an expired key is never seen) and also
//!   periodic: a background task, started on first use inside a tokio runtime, removes expired entries
//!   every [`MemoryStoreBuilder::with_reap_interval`]. It holds only a weak reference and ends when the
//!   last clone of the store is dropped.
//! - **Shared state.** [`MemoryStore`] is `Clone`; clones and the stores made by
//!   [`MemoryStore::with_prefix`] share one data set, like several clients of one Redis server.
//! - **Closing**: [`Store::close`] refuses every later call through any clone or sibling with
//!   [`cache_core::Error::Closed`], drops the data and ends the reaper.
//! - **Bounds** (optional): a maximum entry count and/or byte count, with the eviction policy described
//!   on [`MemoryStoreBuilder::with_max_entries`]; and a maximum value size
//!   ([`MemoryConfig::max_value_bytes`]) beyond which writes fail with
//!   [`cache_core::Error::Capacity`].
//!
//! # Where it differs from a Redis server (all within the trait's contract)
//!
//! - A key is gone exactly at its deadline (Redis keeps it for the millisecond of the deadline).
//! - A scan visits keys in order, so it returns each key at most once; `count` is the number of
//!   entries a page examines (capped at 10 000 to bound how long a page holds the lock). A `count`
//!   of 0 is [`cache_core::Error::InvalidInput`] (Redis answers a syntax error).
//! - Eviction is exact LRU over the whole data set, not sampled.
//! - [`Store::stats`] and the entry and byte counts describe the whole shared data set (every
//!   prefix), like Redis `INFO`; `used_memory_bytes` counts key and value bytes only.
//! - Glob matching compares bytes as unsigned values inside `[a-z]` ranges (Redis on x86 compares
//!   them as signed `char`s, which only matters for non-ASCII range ends).
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{SetOptions, Store, KeyTtl};
//! use cache_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cache_core::Result<()> {
//! let store = MemoryStore::builder().with_prefix("app").build()?;
//! store.set("user:42", b"ada", SetOptions::ttl(Duration::from_secs(60))).await?;
//! assert_eq!(store.get("user:42").await?.as_deref(), Some(&b"ada"[..]));
//! assert!(matches!(store.ttl("user:42").await?, KeyTtl::ExpiresIn(_)));
//! # Ok(())
//! # }
//! ```
//!
//! This file is over 600 lines because it holds the whole `Store` implementation of the backend, one
//! method after another over the shared state (`state.rs`); the sharded rewrite of the store (issue
//! 13, not landed yet) splits it by operation family.

mod config;
mod glob;
mod state;

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cache_core::keys::validate_prefix;
use cache_core::store::{check_key, ttl_millis};
use cache_core::{
    BackendStats, CasOutcome, Error, Expiry, KeyTtl, Result, ScanCursor, ScanPage, SetCondition,
    SetOptions, Store,
};
use parking_lot::Mutex;
use tokio::time::Instant;

pub use config::MemoryConfig;
pub use glob::glob_match;
use state::{Limits, State, Value, ZSet};

/// The message of Redis's `WRONGTYPE` error, reused verbatim.
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Default [`MemoryStoreBuilder::with_max_value_bytes`] and [`MemoryConfig::max_value_bytes`]
/// (8 MiB, as on Redis).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;

/// Default [`MemoryStoreBuilder::with_reap_interval`].
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Longest accepted [`MemoryStoreBuilder::with_reap_interval`] (one day).
const MAX_REAP_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Most entries one scan page examines, whatever `count` asks: bounds how long a page holds the lock.
const MAX_SCAN_WORK: usize = 10_000;

/// Entries removed per lock acquisition by `flush_prefix` and the reaper.
const BATCH: usize = 1_000;

/// The state shared by a store, its clones and its re-prefixed siblings.
struct Shared {
    state: Mutex<State>,
    limits: Limits,
    reap_interval: Duration,
    /// Whether a reaper task is alive (cleared by the task itself when it ends).
    reaper_running: AtomicBool,
    /// Set by [`Store::close`]: every call is refused from then on.
    closed: AtomicBool,
}

/// An in-memory [`Store`] with Redis semantics. See the [crate documentation](crate).
///
/// Cheap to clone; clones share the data. Build one with [`MemoryStore::new`],
/// [`MemoryStore::builder`] or [`MemoryStore::from_config`].
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    /// The prefix as configured (no trailing `:`).
    prefix: Arc<str>,
    /// What is put in front of keys: `"{prefix}:"`, or `""` without a prefix.
    key_base: Arc<str>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("prefix", &self.prefix)
            .field("max_entries", &self.shared.limits.max_entries)
            .field("max_bytes", &self.shared.limits.max_bytes)
            .field("max_value_bytes", &self.shared.limits.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Options of a [`MemoryStore`]; finish with [`MemoryStoreBuilder::build`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    prefix: String,
    max_entries: Option<usize>,
    max_bytes: Option<usize>,
    max_value_bytes: usize,
    reap_interval: Duration,
}

impl Default for MemoryStoreBuilder {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            max_entries: None,
            max_bytes: None,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            reap_interval: DEFAULT_REAP_INTERVAL,
        }
    }
}

impl MemoryStoreBuilder {
    /// The key prefix (validated like `CACHE_KEY_PREFIX`); empty (the default) means none.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bounds the number of entries (keys of any type, over every prefix sharing the data).
    ///
    /// **Eviction policy** (for this bound and [`MemoryStoreBuilder::with_max_bytes`]): when a write
    /// leaves the store over a bound, expired entries are removed first; then entries are evicted
    /// least recently used first, where a use is any read or write of the key; the entry just written
    /// is never its own victim. An entry that alone exceeds the byte bound is refused with
    /// [`Error::Capacity`] and nothing changes. Like Redis's `allkeys-lru` (but exact, not sampled),
    /// this can evict keys without a TTL, sessions included: bound a store only when it is a cache.
    pub fn with_max_entries(mut self, max: usize) -> Self {
        self.max_entries = Some(max);
        self
    }

    /// Bounds the bytes held: the sum over entries of key length plus value length (a sorted-set
    /// member counts its name plus 8 bytes). Allocator and index overhead are not counted. Same
    /// eviction policy as [`MemoryStoreBuilder::with_max_entries`].
    pub fn with_max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = Some(max);
        self
    }

    /// The largest string value accepted; larger writes fail with [`Error::Capacity`] and change
    /// nothing. Defaults to [`DEFAULT_MAX_VALUE_BYTES`].
    pub fn with_max_value_bytes(mut self, max: usize) -> Self {
        self.max_value_bytes = max;
        self
    }

    /// How often the background task removes expired entries (default 1 s, at most one day, measured
    /// on tokio's clock). Expired entries are invisible in any case; this bounds how long they hold
    /// memory.
    pub fn with_reap_interval(mut self, every: Duration) -> Self {
        self.reap_interval = every;
        self
    }

    /// Builds the store. Fails with [`Error::Config`] on an invalid prefix or a zero bound.
    pub fn build(self) -> Result<MemoryStore> {
        validate_prefix(&self.prefix)?;
        if self.max_entries == Some(0) {
            return Err(Error::config("max_entries", "must be at least 1"));
        }
        if self.max_bytes == Some(0) {
            return Err(Error::config("max_bytes", "must be at least 1"));
        }
        if self.max_value_bytes == 0 {
            return Err(Error::config("max_value_bytes", "must be at least 1"));
        }
        if self.reap_interval.is_zero() || self.reap_interval > MAX_REAP_INTERVAL {
            return Err(Error::config(
                "reap_interval",
                format!("must be between 1 ns and {MAX_REAP_INTERVAL:?}"),
            ));
        }
        let limits = Limits {
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            max_value_bytes: self.max_value_bytes,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(limits)),
            limits,
            reap_interval: self.reap_interval,
            reaper_running: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        Ok(MemoryStore::over(shared, &self.prefix))
    }
}

impl MemoryStore {
    /// An unbounded store without a prefix, accepting values up to [`DEFAULT_MAX_VALUE_BYTES`].
    pub fn new() -> Self {
        // The default options are valid (empty prefix, no zero bound), so `build` cannot fail.
        MemoryStoreBuilder::default()
            .build()
            .expect("default memory store options are valid")
    }

    /// Options for a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// A store with the settings of `config` (prefix, value size limit, bounds). Fails with
    /// [`Error::Config`] naming the setting when `config` does not validate.
    pub fn from_config(config: &MemoryConfig) -> Result<Self> {
        config.validate()?;
        let mut builder = Self::builder()
            .with_prefix(config.key_prefix.clone())
            .with_max_value_bytes(config.max_value_bytes);
        if let Some(n) = config.max_entries {
            builder = builder.with_max_entries(n);
        }
        if let Some(n) = config.max_bytes {
            builder = builder.with_max_bytes(n);
        }
        builder.build()
    }

    /// A store over the same data with another prefix (empty for none), as two services sharing one
    /// Redis with different `CACHE_KEY_PREFIX`es. Fails with [`Error::Config`] on an invalid prefix.
    pub fn with_prefix(&self, prefix: &str) -> Result<Self> {
        validate_prefix(prefix)?;
        Ok(Self::over(self.shared.clone(), prefix))
    }

    fn over(shared: Arc<Shared>, prefix: &str) -> Self {
        let key_base = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}:")
        };
        Self {
            shared,
            prefix: Arc::from(prefix),
            key_base: Arc::from(key_base),
        }
    }

    /// Entries held over every prefix, including expired ones the reaper has not removed yet.
    pub fn entry_count(&self) -> usize {
        self.shared.state.lock().len()
    }

    /// Bytes held over every prefix, as counted by [`MemoryStoreBuilder::with_max_bytes`].
    pub fn approx_bytes(&self) -> usize {
        self.shared.state.lock().bytes()
    }

    /// Removes every expired entry now (what the background task does periodically); returns how
    /// many were removed.
    pub fn purge_expired(&self) -> usize {
        self.shared
            .state
            .lock()
            .purge_expired(Instant::now(), usize::MAX)
    }

    /// The full key of a relative key (validated).
    fn full<'a>(&self, key: &'a str) -> Result<Cow<'a, str>> {
        check_key(key)?;
        Ok(if self.key_base.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!("{}{key}", self.key_base))
        })
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<()> {
        let max = self.shared.limits.max_value_bytes;
        if value.len() > max {
            return Err(Error::Capacity(format!(
                "value for {key:?} is {} bytes; the limit is {max} (CACHE_MAX_VALUE_BYTES)",
                value.len()
            )));
        }
        Ok(())
    }

    fn wrong_type(key: &str) -> Error {
        Error::WrongType {
            key: key.to_owned(),
            message: WRONGTYPE.to_owned(),
        }
    }

    /// Starts the background reaper if none runs and we are inside a tokio runtime.
    fn ensure_reaper(&self) {
        let shared = &self.shared;
        if shared.reaper_running.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if shared.reaper_running.swap(true, Ordering::AcqRel) {
            return;
        }
        // The first tick is one interval after now, not after the task is first polled.
        let first = Instant::now() + shared.reap_interval;
        handle.spawn(reap(Arc::downgrade(shared), first, shared.reap_interval));
    }

    /// The state, locked, with "now" read after locking (so that deadlines and reads agree), and the
    /// reaper ensured; [`Error::Closed`] once the store is closed.
    fn lock(&self) -> Result<(parking_lot::MutexGuard<'_, State>, Instant)> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::closed("the in-memory store"));
        }
        self.ensure_reaper();
        let guard = self.shared.state.lock();
        // Checked again under the lock: `close` empties the state under it, so a call that got the
        // lock after `close` must not run on the emptied state as if nothing happened.
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::closed("the in-memory store"));
        }
        Ok((guard, Instant::now()))
    }
}

/// The deadline `ttl` from `now`, validated like every backend validates TTLs.
fn deadline(now: Instant, ttl: Duration) -> Result<Instant> {
    let ms = ttl_millis(ttl)?;
    now.checked_add(Duration::from_millis(ms))
        .ok_or_else(|| Error::invalid_input(format!("TTL {ttl:?} is too large")))
}

/// Validates an expiry before taking the lock (so that a bad TTL changes nothing).
fn check_expiry(expiry: Expiry) -> Result<()> {
    if let Expiry::In(ttl) = expiry {
        ttl_millis(ttl)?;
    }
    Ok(())
}

fn check_score(what: &str, score: f64) -> Result<()> {
    if score.is_nan() {
        return Err(Error::invalid_input(format!("{what} must not be NaN")));
    }
    Ok(())
}

/// Parses a stored integer with Redis's rules (`string2ll`): optional `-`, no `+`, no leading zeros,
/// no spaces, within `i64`.
fn parse_redis_int(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s == "0" {
        return Some(0);
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    let mut chars = digits.bytes();
    let first = chars.next()?;
    if !(b'1'..=b'9').contains(&first) || !chars.all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The background reaper: every `every`, removes expired entries in batches, until the store is gone.
async fn reap(weak: Weak<Shared>, first: Instant, every: Duration) {
    /// Clears the running flag when the task ends for any reason (store dropped, runtime shut down),
    /// so that the next use inside a runtime starts a new reaper.
    struct Running(Weak<Shared>);
    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(shared) = self.0.upgrade() {
                shared.reaper_running.store(false, Ordering::Release);
            }
        }
    }
    let _running = Running(weak.clone());
    let mut ticks = tokio::time::interval_at(first, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        loop {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            if shared.closed.load(Ordering::Acquire) {
                return;
            }
            let removed = shared.state.lock().purge_expired(Instant::now(), BATCH);
            if removed > 0 {
                tracing::trace!(removed, "memory store reaped expired entries");
            }
            drop(shared);
            if removed < BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = self.full(key)?;
        let (mut st, now) = self.lock()?;
        let found = match st.lookup(&full, now) {
            None => None,
            Some(entry) => match &entry.value {
                Value::Str(v) => Some(v.clone()),
                Value::ZSet(_) => return Err(Self::wrong_type(key)),
            },
        };
        match found {
            Some(_) => st.counters.hits += 1,
            None => st.counters.misses += 1,
        }
        Ok(found)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let fulls = keys
            .iter()
            .map(|k| self.full(k))
            .collect::<Result<Vec<_>>>()?;
        let (mut st, now) = self.lock()?;
        let mut out = Vec::with_capacity(fulls.len());
        for full in &fulls {
            // Like MGET, a key of another type reads as missing.
            let found = match st.lookup(full, now) {
                Some(entry) => match &entry.value {
                    Value::Str(v) => Some(v.clone()),
                    Value::ZSet(_) => None,
                },
                None => None,
            };
            match found {
                Some(_) => st.counters.hits += 1,
                None => st.counters.misses += 1,
            }
            out.push(found);
        }
        Ok(out)
    }

    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        let full = self.full(key)?;
        ttl_millis(ttl)?;
        let (mut st, now) = self.lock()?;
        let at = deadline(now, ttl)?;
        let value = match st.lookup(&full, now) {
            None => {
                st.counters.misses += 1;
                return Ok(None);
            }
            Some(entry) => match &entry.value {
                Value::Str(v) => v.clone(),
                Value::ZSet(_) => return Err(Self::wrong_type(key)),
            },
        };
        st.counters.hits += 1;
        st.set_expiry(&full, Some(at));
        Ok(Some(value))
    }

    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        let full = self.full(key)?;
        self.check_value(key, value)?;
        check_expiry(opts.expiry)?;
        let (mut st, now) = self.lock()?;
        st.check_fits(key, State::entry_size(&full, value.len()))?;
        let existing = st.lookup(&full, now).map(|e| e.expires_at);
        let allowed = match opts.condition {
            SetCondition::IfAbsent => existing.is_none(),
            SetCondition::IfPresent => existing.is_some(),
            // `SetCondition` is non-exhaustive upstream; `Always` and anything new write.
            _ => true,
        };
        if !allowed {
            return Ok(false);
        }
        let expires_at = match opts.expiry {
            Expiry::In(ttl) => Some(deadline(now, ttl)?),
            Expiry::Keep => existing.flatten(),
            _ => None,
        };
        st.put(&full, Value::Str(value.to_vec()), expires_at, now);
        Ok(true)
    }

    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
        if matches!(expiry, Expiry::Keep) {
            return Err(Error::invalid_input(
                "set_many does not accept Expiry::Keep (MSET has no KEEPTTL)",
            ));
        }
        check_expiry(expiry)?;
        let mut fulls = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            fulls.push(self.full(key)?);
            self.check_value(key, value)?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        let (mut st, now) = self.lock()?;
        for ((key, value), full) in entries.iter().zip(&fulls) {
            st.check_fits(key, State::entry_size(full, value.len()))?;
        }
        let expires_at = match expiry {
            Expiry::In(ttl) => Some(deadline(now, ttl)?),
            _ => None,
        };
        for ((_, value), full) in entries.iter().zip(&fulls) {
            st.put(full, Value::Str(value.to_vec()), expires_at, now);
        }
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        let fulls = keys
            .iter()
            .map(|k| self.full(k))
            .collect::<Result<Vec<_>>>()?;
        if fulls.is_empty() {
            return Ok(0);
        }
        let (mut st, now) = self.lock()?;
        Ok(fulls.iter().filter(|f| st.remove_live(f, now)).count() as u64)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let full = self.full(key)?;
        let (mut st, now) = self.lock()?;
        Ok(st.peek(&full, now).is_some())
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let full = self.full(key)?;
        ttl_millis(ttl)?;
        let (mut st, now) = self.lock()?;
        let at = deadline(now, ttl)?;
        if st.lookup(&full, now).is_none() {
            return Ok(false);
        }
        st.set_expiry(&full, Some(at));
        Ok(true)
    }

    async fn persist(&self, key: &str) -> Result<bool> {
        let full = self.full(key)?;
        let (mut st, now) = self.lock()?;
        match st.peek(&full, now) {
            Some(entry) if entry.expires_at.is_some() => {
                st.set_expiry(&full, None);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let full = self.full(key)?;
        let (mut st, now) = self.lock()?;
        Ok(match st.peek(&full, now) {
            None => KeyTtl::Missing,
            Some(entry) => match entry.expires_at {
                None => KeyTtl::Persistent,
                Some(at) => KeyTtl::ExpiresIn(at - now),
            },
        })
    }

    async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_if_created: Option<Duration>,
    ) -> Result<i64> {
        let full = self.full(key)?;
        if let Some(ttl) = ttl_if_created {
            ttl_millis(ttl)?;
        }
        let (mut st, now) = self.lock()?;
        let current = match st.lookup(&full, now) {
            None => None,
            Some(entry) => match &entry.value {
                Value::Str(v) => Some(parse_redis_int(v).ok_or_else(|| {
                    Error::invalid_input(format!(
                        "value of {key:?} is not an integer or out of range"
                    ))
                })?),
                Value::ZSet(_) => return Err(Self::wrong_type(key)),
            },
        };
        let new = current.unwrap_or(0).checked_add(delta).ok_or_else(|| {
            Error::invalid_input(format!(
                "incrementing {key:?} by {delta} would overflow an i64"
            ))
        })?;
        let bytes = new.to_string().into_bytes();
        match current {
            Some(_) => {
                if let Some(entry) = st.lookup(&full, now) {
                    entry.value = Value::Str(bytes);
                }
                st.resized(&full, now);
            }
            None => {
                st.check_fits(key, State::entry_size(&full, bytes.len()))?;
                let at = ttl_if_created.map(|ttl| deadline(now, ttl)).transpose()?;
                st.put(&full, Value::Str(bytes), at, now);
            }
        }
        Ok(new)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome> {
        let full = self.full(key)?;
        if let Some(v) = new {
            self.check_value(key, v)?;
        }
        check_expiry(expiry)?;
        let (mut st, now) = self.lock()?;
        let (current, old_deadline) = match st.lookup(&full, now) {
            None => (None, None),
            Some(entry) => match &entry.value {
                Value::Str(v) => (Some(v.as_slice()), entry.expires_at),
                Value::ZSet(_) => return Err(Self::wrong_type(key)),
            },
        };
        if current != expected {
            return Ok(CasOutcome::Conflict {
                current: current.map(<[u8]>::to_vec),
            });
        }
        match new {
            None => {
                st.remove(&full);
            }
            Some(v) => {
                st.check_fits(key, State::entry_size(&full, v.len()))?;
                let at = match expiry {
                    Expiry::In(ttl) => Some(deadline(now, ttl)?),
                    Expiry::Keep => old_deadline,
                    _ => None,
                };
                st.put(&full, Value::Str(v.to_vec()), at, now);
            }
        }
        Ok(CasOutcome::Swapped)
    }

    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage> {
        if count == 0 {
            return Err(Error::invalid_input("scan count must be at least 1"));
        }
        let work = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(MAX_SCAN_WORK);
        // Every match starts with the pattern's literal part: start (and stop) there.
        let within = format!("{}{}", self.key_base, glob::literal_prefix(pattern));
        let after =
            (!cursor.is_start()).then(|| format!("{}{}", self.key_base, cursor.as_backend()));
        let (start, exclusive) = match &after {
            Some(after) if after.as_str() >= within.as_str() => (after.as_str(), true),
            _ => (within.as_str(), false),
        };
        let base = self.key_base.len();
        let (mut st, now) = self.lock()?;
        let mut keys = Vec::new();
        let mut expired = Vec::new();
        let mut last = None;
        let mut more = false;
        for (examined, (full, entry)) in st.keys_from(start, exclusive, &within).enumerate() {
            if examined == work {
                more = true;
                break;
            }
            let rel = &full[base..];
            last = Some(full.clone());
            if State::expired(entry, now) {
                expired.push(full.clone());
            } else if glob_match(pattern, rel) {
                keys.push(rel.to_owned());
            }
        }
        for key in expired {
            st.remove(&key);
            st.counters.expired += 1;
        }
        let next = match (more, last) {
            (true, Some(last)) => Some(ScanCursor::from_backend(&last[base..])),
            _ => None,
        };
        Ok(ScanPage { keys, next })
    }

    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        let full = self.full(key)?;
        check_score("score", score)?;
        let (mut st, now) = self.lock()?;
        let size = match st.lookup(&full, now) {
            None => None,
            Some(entry) => match &entry.value {
                Value::ZSet(z) => Some(State::entry_size(&full, z.size_with(member))),
                Value::Str(_) => return Err(Self::wrong_type(key)),
            },
        };
        match size {
            None => {
                let mut z = ZSet::default();
                z.insert(member, score);
                st.check_fits(key, State::entry_size(&full, z.size()))?;
                st.put(&full, Value::ZSet(z), None, now);
                Ok(true)
            }
            Some(size) => {
                st.check_fits(key, size)?;
                let added = match st.lookup(&full, now).map(|e| &mut e.value) {
                    Some(Value::ZSet(z)) => z.insert(member, score),
                    _ => false,
                };
                st.resized(&full, now);
                Ok(added)
            }
        }
    }

    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        let full = self.full(key)?;
        let (mut st, now) = self.lock()?;
        let (removed, empty) = match st.lookup(&full, now) {
            None => return Ok(0),
            Some(entry) => match &mut entry.value {
                Value::ZSet(z) => {
                    let removed = members.iter().filter(|m| z.remove(m)).count() as u64;
                    (removed, z.is_empty())
                }
                Value::Str(_) => return Err(Self::wrong_type(key)),
            },
        };
        if empty {
            st.remove(&full);
        } else if removed > 0 {
            st.resized(&full, now);
        }
        Ok(removed)
    }

    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        let full = self.full(key)?;
        check_score("min", min)?;
        check_score("max", max)?;
        let (mut st, now) = self.lock()?;
        match st.lookup(&full, now) {
            None => Ok(Vec::new()),
            Some(entry) => match &entry.value {
                Value::ZSet(z) => Ok(z.range(min, max, limit.unwrap_or(usize::MAX))),
                Value::Str(_) => Err(Self::wrong_type(key)),
            },
        }
    }

    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        let full = self.full(key)?;
        check_score("min", min)?;
        check_score("max", max)?;
        let (mut st, now) = self.lock()?;
        let (removed, empty) = match st.lookup(&full, now) {
            None => return Ok(0),
            Some(entry) => match &mut entry.value {
                Value::ZSet(z) => {
                    let doomed = z.range(min, max, usize::MAX);
                    for (member, _) in &doomed {
                        z.remove(member);
                    }
                    (doomed.len() as u64, z.is_empty())
                }
                Value::Str(_) => return Err(Self::wrong_type(key)),
            },
        };
        if empty {
            st.remove(&full);
        } else if removed > 0 {
            st.resized(&full, now);
        }
        Ok(removed)
    }

    async fn zcard(&self, key: &str) -> Result<u64> {
        let full = self.full(key)?;
        let (mut st, now) = self.lock()?;
        match st.lookup(&full, now) {
            None => Ok(0),
            Some(entry) => match &entry.value {
                Value::ZSet(z) => Ok(z.len() as u64),
                Value::Str(_) => Err(Self::wrong_type(key)),
            },
        }
    }

    async fn ping(&self) -> Result<Duration> {
        let started = std::time::Instant::now();
        drop(self.lock()?);
        Ok(started.elapsed())
    }

    async fn flush_prefix(&self) -> Result<u64> {
        if self.prefix.is_empty() {
            return Err(Error::invalid_input(
                "flush_prefix refuses to run without a key prefix: it would delete every key",
            ));
        }
        let mut deleted = 0u64;
        loop {
            let batch_len = {
                let (mut st, now) = self.lock()?;
                let batch: Vec<Arc<str>> = st
                    .keys_from(&self.key_base, false, &self.key_base)
                    .take(BATCH)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in &batch {
                    if st.remove_live(key, now) {
                        deleted += 1;
                    }
                }
                batch.len()
            };
            if batch_len < BATCH {
                break;
            }
            // Let other tasks use the store between batches.
            tokio::task::yield_now().await;
        }
        Ok(deleted)
    }

    async fn stats(&self) -> Result<Option<BackendStats>> {
        let (mut st, now) = self.lock()?;
        st.purge_expired(now, usize::MAX);
        let mut stats = BackendStats::new("memory");
        stats.used_memory_bytes = Some(st.bytes() as u64);
        stats.keyspace_hits = Some(st.counters.hits);
        stats.keyspace_misses = Some(st.counters.misses);
        stats.expired_keys = Some(st.counters.expired);
        stats.evicted_keys = Some(st.counters.evicted);
        stats
            .keys_per_db
            .insert("memory".to_owned(), st.len() as u64);
        Ok(Some(stats))
    }

    /// Refuses every later call (through any clone or re-prefixed sibling: they share one data
    /// set) with [`Error::Closed`], drops the data and stops the reaper. Calls run under the state's
    /// lock, so none is in flight once the lock is taken here. Idempotent.
    async fn close(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let limits = self.shared.limits;
        let old = std::mem::replace(&mut *self.shared.state.lock(), State::new(limits));
        // Dropped outside the lock: freeing a large data set takes a while.
        drop(old);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
