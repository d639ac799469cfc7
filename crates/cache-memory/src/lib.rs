//! # cache-memory
//!
//! [`MemoryStore`]: the in-memory backend of [`cache_core::Store`], with the semantics of Redis
//! (string values and sorted sets, `NX`/`XX`/`KEEPTTL`, `GETEX`, `WRONGTYPE`, glob `SCAN`,
//! `INCRBY` rules) so that code tested against it behaves the same on a Redis server. It passes the
//! same conformance suite (`cache_core::testing`) as the Redis backends.
//!
//! - **Deterministic time.** Deadlines are [`tokio::time::Instant`]s: under `tokio::time::pause()`
//!   a test moves time with `tokio::time::advance` and never sleeps.
//! - **Expiry** is lazy (every access checks the deadline, so an expired key is never seen) and also
//!   periodic: a background task, started on first use inside a tokio runtime, removes expired entries
//!   every [`MemoryStoreBuilder::with_reap_interval`]. It holds only a weak reference and ends when the
//!   last clone of the store is dropped.
//! - **Shared state.** [`MemoryStore`] is `Clone`; clones and the stores made by
//!   [`MemoryStore::with_prefix`] share one data set, like several clients of one Redis server.
//! - **Sharded.** The data set is split over [`SHARDS`] shards by the hash of the key, each with its
//!   own lock, so tasks on different cores rarely wait for each other. A call hashes its key once
//!   (for the shard and the lookup) without allocating it, copies a read value out after the shard's
//!   lock is released, and allocates a written value before taking it; the ordered key index that
//!   scans need changes only when a key is created or removed. Each method is still atomic on its
//!   key; the batch methods ([`Store::get_many`], [`Store::set_many`], [`Store::delete`]) are
//!   atomic per key, not across keys, as the trait allows (and as on Redis Cluster).
//! - **Bounds** (optional): a maximum entry count and/or byte count, with the eviction policy described
//!   on [`MemoryStoreBuilder::with_max_entries`]; and a maximum value size
//!   ([`cache_core::Config::max_value_bytes`]) beyond which writes fail with
//!   [`cache_core::Error::Capacity`].
//! - `mock` feature: `mock::MockStore`, a mockall mock of the trait for injecting failures.
//!
//! # Where it differs from a Redis server (all within the trait's contract)
//!
//! - A key is gone exactly at its deadline (Redis keeps it for the millisecond of the deadline).
//! - A scan visits the shards one after the other and each shard's keys in order, so it returns
//!   each key at most once; `count` is the number of entries a page examines (capped at 10 000 to
//!   bound how long a page holds a lock). A `count` of 0 is [`cache_core::Error::InvalidInput`]
//!   (Redis answers a syntax error).
//! - Eviction is LRU over the whole data set, not sampled: every use is stamped from one store-wide
//!   clock and the victim is the oldest stamp over all shards, so one task sees exact LRU. Under
//!   concurrent writers the bounds hold once the writes have returned (a bound may be exceeded
//!   while a write is evicting, and two writers evicting at once may remove one entry more than
//!   needed).
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

mod glob;
#[cfg(feature = "mock")]
pub mod mock;
mod state;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use cache_core::keys::validate_prefix;
use cache_core::store::{check_key, ttl_millis};
use cache_core::{
    BackendStats, CasOutcome, Config, Error, Expiry, KeyTtl, Result, ScanCursor, ScanPage,
    SetCondition, SetOptions, Store,
};
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

pub use glob::glob_match;
use state::{Counters, FullKey, Limits, Now, Shard, Totals, Value, ZSet};

/// The message of Redis's `WRONGTYPE` error, reused verbatim.
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Default [`MemoryStoreBuilder::with_max_value_bytes`]: the default of
/// [`cache_core::Config::max_value_bytes`] (8 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 * 1024 * 1024;

/// Default [`MemoryStoreBuilder::with_reap_interval`].
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(1);

/// Longest accepted [`MemoryStoreBuilder::with_reap_interval`] (one day).
const MAX_REAP_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Shards of a store's data set: a power of two, enough that tasks on every core of a large
/// machine rarely meet on one lock, few enough that a store-wide walk (stats, eviction) stays cheap.
pub const SHARDS: usize = 32;

/// Most entries one scan page examines, whatever `count` asks: bounds how long a page holds a lock.
const MAX_SCAN_WORK: usize = 10_000;

/// Entries removed per lock acquisition by `flush_prefix` and the reaper.
const BATCH: usize = 1_000;

/// The hasher of the shard tables (per-store random seed).
type Hasher = foldhash::fast::RandomState;

/// A shard's lock on its own cache line, so that two cores taking neighbouring shards do not
/// contend on one line.
#[repr(align(64))]
struct Padded(Mutex<Shard<Hasher>>);

/// The state shared by a store, its clones and its re-prefixed siblings.
struct Shared {
    shards: Box<[Padded]>,
    hasher: Hasher,
    /// Store-wide totals and LRU clock; only a bounded store keeps them.
    totals: Option<Arc<Totals>>,
    limits: Limits,
    reap_interval: Duration,
    /// Whether a reaper task is alive (cleared by the task itself when it ends).
    reaper_running: AtomicBool,
}

impl Shared {
    fn shard_of(&self, hash: u64) -> &Mutex<Shard<Hasher>> {
        // hashbrown uses the top 7 bits and the low bits of the hash inside a table; the shard
        // takes bits from the middle so that the two do not correlate.
        &self.shards[(hash >> 32) as usize & (SHARDS - 1)].0
    }

    fn over_bounds(&self, totals: &Totals) -> bool {
        self.limits
            .max_entries
            .is_some_and(|m| totals.entries.load(Ordering::Relaxed) > m)
            || self
                .limits
                .max_bytes
                .is_some_and(|m| totals.bytes.load(Ordering::Relaxed) > m)
    }
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
    /// [`Error::Capacity`] and nothing changes. Like Redis's `allkeys-lru` (but exact for one task,
    /// not sampled: see the crate documentation for concurrent writers), this can evict keys without
    /// a TTL, sessions included: bound a store only when it is a cache. A bounded store pays for the
    /// LRU order on every read (an unbounded one does not keep it).
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
        let hasher = Hasher::default();
        let totals = limits.bounded().then(|| Arc::new(Totals::default()));
        let shards = (0..SHARDS)
            .map(|_| Padded(Mutex::new(Shard::new(hasher.clone(), totals.clone()))))
            .collect();
        let shared = Arc::new(Shared {
            shards,
            hasher,
            totals,
            limits,
            reap_interval: self.reap_interval,
            reaper_running: AtomicBool::new(false),
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

    /// A store with the prefix and maximum value size of `config` (other settings concern Redis).
    pub fn from_config(config: &Config) -> Result<Self> {
        Self::builder()
            .with_prefix(config.key_prefix.clone())
            .with_max_value_bytes(config.max_value_bytes)
            .build()
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
        self.shared.shards.iter().map(|s| s.0.lock().len()).sum()
    }

    /// Bytes held over every prefix, as counted by [`MemoryStoreBuilder::with_max_bytes`].
    pub fn approx_bytes(&self) -> usize {
        self.shared.shards.iter().map(|s| s.0.lock().bytes()).sum()
    }

    /// Removes every expired entry now (what the background task does periodically); returns how
    /// many were removed.
    pub fn purge_expired(&self) -> usize {
        let now = Instant::now();
        self.shared
            .shards
            .iter()
            .map(|s| s.0.lock().purge_expired(now, usize::MAX).0)
            .sum()
    }

    /// The full key of a relative key (validated) with its hash.
    fn key<'a>(&'a self, key: &'a str) -> Result<FullKey<'a>> {
        check_key(key)?;
        Ok(FullKey::new(&self.key_base, key, &self.shared.hasher))
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

    /// Fails with [`Error::Capacity`] when an entry of `size` bytes could never fit the bound.
    fn check_fits(&self, key: &str, size: usize) -> Result<()> {
        match self.shared.limits.max_bytes {
            Some(max) if size > max => Err(Error::Capacity(format!(
                "entry {key:?} would take {size} bytes; the store is bounded to {max} bytes"
            ))),
            _ => Ok(()),
        }
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

    /// The shard of `key`, locked, with the reaper ensured.
    fn lock(&self, key: &FullKey<'_>) -> MutexGuard<'_, Shard<Hasher>> {
        self.ensure_reaper();
        self.shared.shard_of(key.hash).lock()
    }

    /// Eviction policy (see [`MemoryStoreBuilder::with_max_entries`]): while a bound is exceeded,
    /// drop expired entries first, then the least recently used entry over all shards, never the
    /// entry at `protect` that was just written. Runs after the writer released its shard, and
    /// holds one shard lock at a time.
    fn enforce_bounds(&self, protect: &FullKey<'_>) {
        let shared = &*self.shared;
        let Some(totals) = &shared.totals else {
            return;
        };
        if !shared.over_bounds(totals) {
            return;
        }
        let now = Instant::now();
        for shard in shared.shards.iter() {
            let mut shard = shard.0.lock();
            if shard.has_expired(now) {
                shard.purge_expired(now, usize::MAX);
            }
        }
        while shared.over_bounds(totals) {
            let oldest = shared
                .shards
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.0.lock().lru_head(protect.bytes()).map(|t| (t, i)))
                .min();
            let Some((tick, i)) = oldest else {
                break;
            };
            // The entry may have been used or removed since we looked; then look again.
            let evicted = shared.shards[i].0.lock().evict(tick);
            drop(evicted);
        }
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
        let mut shard = 0;
        loop {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let (removed, more) = shared.shards[shard]
                .0
                .lock()
                .purge_expired(Instant::now(), BATCH);
            if removed > 0 {
                tracing::trace!(removed, shard, "memory store reaped expired entries");
            }
            drop(shared);
            if more {
                tokio::task::yield_now().await;
            } else if shard + 1 < SHARDS {
                shard += 1;
            } else {
                break;
            }
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
        let k = self.key(key)?;
        let found = {
            let mut sh = self.lock(&k);
            let mut now = Now::default();
            let found = match sh.lookup(&k, &mut now) {
                None => None,
                Some(entry) => match &entry.value {
                    Value::Str(v) => Some(Arc::clone(v)),
                    Value::ZSet(_) => return Err(Self::wrong_type(key)),
                },
            };
            match found {
                Some(_) => sh.counters.hits += 1,
                None => sh.counters.misses += 1,
            }
            found
        };
        // The copy happens after the shard's lock is released.
        Ok(found.map(|v| v.to_vec()))
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let fulls = keys
            .iter()
            .map(|k| self.key(k))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(fulls.len());
        let mut now = Now::default();
        for k in &fulls {
            let found = {
                let mut sh = self.lock(k);
                // Like MGET, a key of another type reads as missing.
                let found = match sh.lookup(k, &mut now) {
                    Some(entry) => match &entry.value {
                        Value::Str(v) => Some(Arc::clone(v)),
                        Value::ZSet(_) => None,
                    },
                    None => None,
                };
                match found {
                    Some(_) => sh.counters.hits += 1,
                    None => sh.counters.misses += 1,
                }
                found
            };
            out.push(found.map(|v| v.to_vec()));
        }
        Ok(out)
    }

    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        let k = self.key(key)?;
        ttl_millis(ttl)?;
        let value = {
            let mut sh = self.lock(&k);
            let mut now = Now::default();
            let at = deadline(now.get(), ttl)?;
            let value = match sh.lookup(&k, &mut now) {
                None => {
                    sh.counters.misses += 1;
                    return Ok(None);
                }
                Some(entry) => match &entry.value {
                    Value::Str(v) => Arc::clone(v),
                    Value::ZSet(_) => return Err(Self::wrong_type(key)),
                },
            };
            sh.counters.hits += 1;
            sh.set_expiry(&k, Some(at));
            value
        };
        Ok(Some(value.to_vec()))
    }

    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        let k = self.key(key)?;
        self.check_value(key, value)?;
        check_expiry(opts.expiry)?;
        self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), value.len()))?;
        // The value is copied before the shard's lock is taken, the replaced one freed after.
        let value: Arc<[u8]> = Arc::from(value);
        let replaced = {
            let mut sh = self.lock(&k);
            let mut now = Now::default();
            let existing = sh.lookup(&k, &mut now).map(|e| e.expires_at);
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
                Expiry::In(ttl) => Some(deadline(now.get(), ttl)?),
                Expiry::Keep => existing.flatten(),
                _ => None,
            };
            sh.put(&k, Value::Str(value), expires_at)
        };
        drop(replaced);
        self.enforce_bounds(&k);
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
            let k = self.key(key)?;
            self.check_value(key, value)?;
            self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), value.len()))?;
            fulls.push(k);
        }
        // One deadline for the whole batch, as MSET followed by PEXPIRE would give.
        let expires_at = match expiry {
            Expiry::In(ttl) => Some(deadline(Instant::now(), ttl)?),
            _ => None,
        };
        for ((_, value), k) in entries.iter().zip(&fulls) {
            let value: Arc<[u8]> = Arc::from(*value);
            let replaced = self.lock(k).put(k, Value::Str(value), expires_at);
            drop(replaced);
            self.enforce_bounds(k);
        }
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        let fulls = keys
            .iter()
            .map(|k| self.key(k))
            .collect::<Result<Vec<_>>>()?;
        let mut deleted = 0;
        let mut now = Now::default();
        for k in &fulls {
            let (live, value) = self.lock(k).remove_live(k, &mut now);
            drop(value);
            deleted += u64::from(live);
        }
        Ok(deleted)
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let k = self.key(key)?;
        let mut now = Now::default();
        let found = self.lock(&k).peek(&k, &mut now).is_some();
        Ok(found)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let k = self.key(key)?;
        ttl_millis(ttl)?;
        let mut sh = self.lock(&k);
        let mut now = Now::default();
        let at = deadline(now.get(), ttl)?;
        if sh.lookup(&k, &mut now).is_none() {
            return Ok(false);
        }
        sh.set_expiry(&k, Some(at));
        Ok(true)
    }

    async fn persist(&self, key: &str) -> Result<bool> {
        let k = self.key(key)?;
        let mut sh = self.lock(&k);
        let mut now = Now::default();
        match sh.peek(&k, &mut now) {
            Some(entry) if entry.expires_at.is_some() => {
                sh.set_expiry(&k, None);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        let k = self.key(key)?;
        let mut sh = self.lock(&k);
        let mut now = Now::default();
        Ok(match sh.peek(&k, &mut now) {
            None => KeyTtl::Missing,
            Some(entry) => match entry.expires_at {
                None => KeyTtl::Persistent,
                Some(at) => KeyTtl::ExpiresIn(at - now.get()),
            },
        })
    }

    async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_if_created: Option<Duration>,
    ) -> Result<i64> {
        let k = self.key(key)?;
        if let Some(ttl) = ttl_if_created {
            ttl_millis(ttl)?;
        }
        let replaced = {
            let mut sh = self.lock(&k);
            let mut now = Now::default();
            let current = match sh.lookup(&k, &mut now) {
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
            let bytes: Arc<[u8]> = Arc::from(new.to_string().into_bytes());
            let replaced = match current {
                Some(_) => {
                    let old = sh
                        .lookup(&k, &mut now)
                        .map(|entry| std::mem::replace(&mut entry.value, Value::Str(bytes)));
                    sh.resized(&k);
                    old
                }
                None => {
                    self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), bytes.len()))?;
                    let at = ttl_if_created
                        .map(|ttl| deadline(now.get(), ttl))
                        .transpose()?;
                    sh.put(&k, Value::Str(bytes), at)
                }
            };
            (new, replaced)
        };
        self.enforce_bounds(&k);
        Ok(replaced.0)
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome> {
        let k = self.key(key)?;
        if let Some(v) = new {
            self.check_value(key, v)?;
        }
        check_expiry(expiry)?;
        let new: Option<Arc<[u8]>> = new.map(Arc::from);
        let replaced = {
            let mut sh = self.lock(&k);
            let mut now = Now::default();
            let (current, old_deadline) = match sh.lookup(&k, &mut now) {
                None => (None, None),
                Some(entry) => match &entry.value {
                    Value::Str(v) => (Some(Arc::clone(v)), entry.expires_at),
                    Value::ZSet(_) => return Err(Self::wrong_type(key)),
                },
            };
            if current.as_deref() != expected {
                return Ok(CasOutcome::Conflict {
                    current: current.map(|v| v.to_vec()),
                });
            }
            match new {
                None => sh.remove(&k).map(|(_, e)| e.value),
                Some(v) => {
                    self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), v.len()))?;
                    let at = match expiry {
                        Expiry::In(ttl) => Some(deadline(now.get(), ttl)?),
                        Expiry::Keep => old_deadline,
                        _ => None,
                    };
                    sh.put(&k, Value::Str(v), at)
                }
            }
        };
        drop(replaced);
        self.enforce_bounds(&k);
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
        // The cursor is the shard (two hex digits) and the last key examined in it.
        let (mut shard, mut after) = if cursor.is_start() {
            (0, None)
        } else {
            let state = cursor.as_backend();
            let shard = state
                .get(..2)
                .and_then(|s| usize::from_str_radix(s, 16).ok())
                .filter(|s| *s < SHARDS)
                .ok_or_else(|| Error::invalid_input("scan cursor of another store"))?;
            (shard, Some(format!("{}{}", self.key_base, &state[2..])))
        };
        self.ensure_reaper();
        let base = self.key_base.len();
        let mut keys = Vec::new();
        let mut examined = 0usize;
        let mut last: Option<(usize, Arc<str>)> = None;
        let mut more = false;
        'shards: while shard < SHARDS {
            let (start, exclusive) = match &after {
                Some(after) if after.as_str() >= within.as_str() => (after.as_str(), true),
                _ => (within.as_str(), false),
            };
            let mut sh = self.shared.shards[shard].0.lock();
            let now = Instant::now();
            // One entry more than the budget: it tells whether the scan goes on.
            let batch = sh.keys_from(start, exclusive, &within, work - examined + 1, now);
            for (full, expired) in batch {
                if examined == work {
                    more = true;
                    break 'shards;
                }
                examined += 1;
                if expired {
                    sh.remove_key(&full, now);
                } else {
                    let rel = &full[base..];
                    if glob_match(pattern, rel) {
                        keys.push(rel.to_owned());
                    }
                }
                last = Some((shard, full));
            }
            drop(sh);
            shard += 1;
            after = None;
        }
        let next = match (more, last) {
            (true, Some((shard, last))) => Some(ScanCursor::from_backend(format!(
                "{shard:02x}{}",
                &last[base..]
            ))),
            _ => None,
        };
        Ok(ScanPage { keys, next })
    }

    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        let k = self.key(key)?;
        check_score("score", score)?;
        let added = {
            let mut sh = self.lock(&k);
            let mut now = Now::default();
            let size = match sh.lookup(&k, &mut now) {
                None => None,
                Some(entry) => match &entry.value {
                    Value::ZSet(z) => {
                        Some(Shard::<Hasher>::entry_size(k.len(), z.size_with(member)))
                    }
                    Value::Str(_) => return Err(Self::wrong_type(key)),
                },
            };
            match size {
                None => {
                    let mut z = ZSet::default();
                    z.insert(member, score);
                    self.check_fits(key, Shard::<Hasher>::entry_size(k.len(), z.size()))?;
                    sh.put(&k, Value::ZSet(Box::new(z)), None);
                    true
                }
                Some(size) => {
                    self.check_fits(key, size)?;
                    let added = match sh.lookup(&k, &mut now).map(|e| &mut e.value) {
                        Some(Value::ZSet(z)) => z.insert(member, score),
                        _ => false,
                    };
                    sh.resized(&k);
                    added
                }
            }
        };
        self.enforce_bounds(&k);
        Ok(added)
    }

    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        let k = self.key(key)?;
        let mut sh = self.lock(&k);
        let mut now = Now::default();
        let (removed, empty) = match sh.lookup(&k, &mut now) {
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
            sh.remove(&k);
        } else if removed > 0 {
            sh.resized(&k);
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
        let k = self.key(key)?;
        check_score("min", min)?;
        check_score("max", max)?;
        let mut sh = self.lock(&k);
        let mut now = Now::default();
        match sh.lookup(&k, &mut now) {
            None => Ok(Vec::new()),
            Some(entry) => match &entry.value {
                Value::ZSet(z) => Ok(z.range(min, max, limit.unwrap_or(usize::MAX))),
                Value::Str(_) => Err(Self::wrong_type(key)),
            },
        }
    }

    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        let k = self.key(key)?;
        check_score("min", min)?;
        check_score("max", max)?;
        let mut sh = self.lock(&k);
        let mut now = Now::default();
        let (removed, empty) = match sh.lookup(&k, &mut now) {
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
            sh.remove(&k);
        } else if removed > 0 {
            sh.resized(&k);
        }
        Ok(removed)
    }

    async fn zcard(&self, key: &str) -> Result<u64> {
        let k = self.key(key)?;
        let mut sh = self.lock(&k);
        let mut now = Now::default();
        match sh.lookup(&k, &mut now) {
            None => Ok(0),
            Some(entry) => match &entry.value {
                Value::ZSet(z) => Ok(z.len() as u64),
                Value::Str(_) => Err(Self::wrong_type(key)),
            },
        }
    }

    async fn ping(&self) -> Result<Duration> {
        let started = std::time::Instant::now();
        self.ensure_reaper();
        drop(self.shared.shards[0].0.lock());
        Ok(started.elapsed())
    }

    async fn flush_prefix(&self) -> Result<u64> {
        if self.prefix.is_empty() {
            return Err(Error::invalid_input(
                "flush_prefix refuses to run without a key prefix: it would delete every key",
            ));
        }
        self.ensure_reaper();
        let mut deleted = 0u64;
        for shard in self.shared.shards.iter() {
            loop {
                let batch_len = {
                    let mut sh = shard.0.lock();
                    let now = Instant::now();
                    let batch = sh.keys_from(&self.key_base, false, &self.key_base, BATCH, now);
                    for (key, _) in &batch {
                        if sh.remove_key(key, now) {
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
        }
        Ok(deleted)
    }

    async fn stats(&self) -> Result<Option<BackendStats>> {
        self.ensure_reaper();
        let now = Instant::now();
        let (mut counters, mut bytes, mut len) = (Counters::default(), 0usize, 0usize);
        for shard in self.shared.shards.iter() {
            let mut sh = shard.0.lock();
            sh.purge_expired(now, usize::MAX);
            counters.add(&sh.counters);
            bytes += sh.bytes();
            len += sh.len();
        }
        let mut stats = BackendStats::new("memory");
        stats.used_memory_bytes = Some(bytes as u64);
        stats.keyspace_hits = Some(counters.hits);
        stats.keyspace_misses = Some(counters.misses);
        stats.expired_keys = Some(counters.expired);
        stats.evicted_keys = Some(counters.evicted);
        stats.keys_per_db.insert("memory".to_owned(), len as u64);
        Ok(Some(stats))
    }
}

#[cfg(test)]
mod tests;
