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
//! - **Sharded.** The data set is split over [`SHARDS`] shards by the hash of the key, each with its
//!   own lock, so tasks on different cores rarely wait for each other. A call hashes its key once
//!   (for the shard and the lookup) without allocating it, copies a read value out after the shard's
//!   lock is released, and allocates a written value before taking it; the ordered key index that
//!   scans need changes only when a key is created or removed. Each method is still atomic on its
//!   key; the batch methods ([`Store::get_many`](cache_core::Store::get_many), [`Store::set_many`](cache_core::Store::set_many), [`Store::delete`](cache_core::Store::delete)) are
//!   atomic per key, not across keys, as the trait allows (and as on Redis Cluster).
//! - **Closing**: [`Store::close`](cache_core::Store::close) refuses every later call through any clone or sibling with
//!   [`cache_core::Error::Closed`], drops the data and ends the reaper.
//! - **Bounds** (optional): a maximum entry count and/or byte count, with the eviction policy described
//!   on [`MemoryStoreBuilder::with_max_entries`]; and a maximum value size
//!   ([`MemoryConfig::max_value_bytes`]) beyond which writes fail with
//!   [`cache_core::Error::Capacity`].
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
//! - [`Store::stats`](cache_core::Store::stats) and the entry and byte counts describe the whole shared data set (every
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

mod config;
mod glob;
mod key;
mod ops;
mod rules;
mod state;
mod value;
mod zset;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cache_core::keys::validate_prefix;
use cache_core::store::check_key;
use cache_core::{Error, Result};
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

pub use config::{MemoryConfig, MAX_BYTES_VAR, MAX_ENTRIES_VAR};
pub use glob::glob_match;
use state::{FullKey, Limits, Shard, Totals};

/// The message of Redis's `WRONGTYPE` error, reused verbatim.
const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Default [`MemoryStoreBuilder::with_max_value_bytes`] and [`MemoryConfig::max_value_bytes`]
/// (8 MiB, as on Redis).
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
    /// Set by [`Store::close`]: every call is refused from then on.
    closed: AtomicBool,
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

/// An in-memory [`Store`](cache_core::Store) with Redis semantics. See the [crate documentation](crate).
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

    /// Refuses the call with [`Error::Closed`] once the store is closed; else ensures the reaper.
    /// Every method starts here (through [`MemoryStore::lock`] or directly).
    fn open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::closed("the in-memory store"));
        }
        self.ensure_reaper();
        Ok(())
    }

    /// Shard `i`, locked; [`Error::Closed`] when the store was closed before the lock was taken
    /// (`close` empties each shard under its lock, so a call that gets the lock after that must not
    /// run on the emptied shard as if nothing happened).
    fn lock_shard(&self, i: usize) -> Result<MutexGuard<'_, Shard<Hasher>>> {
        let guard = self.shared.shards[i].0.lock();
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::closed("the in-memory store"));
        }
        Ok(guard)
    }

    /// The shard of `key`, locked, with the reaper ensured; [`Error::Closed`] once the store is
    /// closed.
    fn lock(&self, key: &FullKey<'_>) -> Result<MutexGuard<'_, Shard<Hasher>>> {
        self.open()?;
        let guard = self.shared.shard_of(key.hash).lock();
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::closed("the in-memory store"));
        }
        Ok(guard)
    }

    /// See [`Store::close`](cache_core::Store::close): refuses every later call (through any clone
    /// or re-prefixed sibling: they share one data set), drops the data and stops the reaper. Each
    /// shard is emptied under its lock, so no call is in flight on a shard once it is emptied.
    fn close_now(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for shard in self.shared.shards.iter() {
            let fresh = Shard::new(self.shared.hasher.clone(), self.shared.totals.clone());
            let old = std::mem::replace(&mut *shard.0.lock(), fresh);
            // Dropped outside the lock: freeing a large shard takes a while.
            drop(old);
        }
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
            if shared.closed.load(Ordering::Acquire) {
                return;
            }
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

#[cfg(test)]
mod tests;
