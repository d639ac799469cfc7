//! # cache-near
//!
//! [`NearCache`]: an in-process cache of **decoded** values in front of a shared store, kept correct
//! by the store telling it which keys changed (Redis's server-assisted client-side caching, RESP3
//! `CLIENT TRACKING`). A hit costs no round trip and no decode: it is a hash lookup and an `Arc`
//! clone. The cache knows nothing of Redis: whatever watches the server calls the
//! [`InvalidationListener`] methods, and the layer that reads the store (the cache manager, the
//! session manager) follows the read protocol below. The listener trait is
//! `cache_core::tracking::InvalidationListener` (re-exported here), which a store that can watch its
//! server feeds through `Store::track_changes`.
//!
//! # The read protocol
//!
//! ```
//! use std::sync::Arc;
//! use cache_near::{InvalidationListener, NearCache, NearConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let near: NearCache<String> = NearCache::new("docs", NearConfig::default()).unwrap();
//! near.tracking_ready(); // what the tracker calls once the server tracks the keys
//! let key = "user:42";
//! let value = match near.get(key) {
//!     Some(hit) => hit,
//!     None => {
//!         // 1. A ticket *before* the store is read.
//!         let ticket = near.ticket(key);
//!         // 2. Read the store (value and remaining TTL), decode.
//!         let value = Arc::new("ada".to_owned());
//!         // 3. Insert with the ticket: refused if the key was invalidated (or tracking was lost)
//!         //    since the ticket was taken, so a racing invalidation never leaves a stale entry.
//!         near.insert(ticket, key, value.clone(), None, 3);
//!         value
//!     }
//! };
//! assert_eq!(*value, "ada");
//! # }
//! ```
//!
//! A local write calls [`NearCache::invalidate`] for the key (read-your-writes on this instance);
//! the server's invalidation then reaches every other instance.
//!
//! # One store read per key at a time
//!
//! When a hot key changes, every request that reads it misses at once. [`NearCache::miss`] lets
//! the first of them read the store (a [`Fill`]) and makes the others wait for its answer (a
//! [`Wait`]) instead of sending the same read: one round trip per key per change, whatever the
//! concurrency. A waiter joins only a read that started after the key's last invalidation (same
//! stripe sequence and tracking epoch as now), so it never receives a value older than a change
//! this cache had already been told of when the waiter arrived; a change told during the read
//! refuses the leader's insert, but the leader and its waiters still get the value, which was read
//! while their calls ran. A leader dropped before it answers (cancelled, panicked) wakes its
//! waiters with nothing, and they read for themselves.
//!
//! ```
//! use std::sync::Arc;
//! use cache_near::{InvalidationListener, Miss, NearCache, NearConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let near: NearCache<String> = NearCache::new("docs", NearConfig::default()).unwrap();
//! near.tracking_ready();
//! let value = match near.miss("user:42") {
//!     Miss::Lead(fill) => {
//!         let value = Arc::new("ada".to_owned()); // read and decode from the store
//!         fill.finish(Some((value.clone(), None, 3)));
//!         Some(value)
//!     }
//!     // `None`: the leader went away without an answer; read the store yourself.
//!     Miss::Wait(wait) => wait.wait().await.flatten(),
//! };
//! assert_eq!(value.as_deref().map(String::as_str), Some("ada"));
//! assert_eq!(near.get("user:42").as_deref().map(String::as_str), Some("ada"));
//! # }
//! ```
//!
//! # Consistency model
//!
//! - **Invalidation races** are closed by sequence numbers: every key maps to one of
//!   [`STRIPES`] stripes; an invalidation bumps its stripe under the stripe's lock and removes the
//!   key; an insert checks, under the same lock, that neither the stripe nor the tracking epoch moved
//!   since its ticket. So once [`InvalidationListener::invalidate`] has returned, no read of this
//!   cache returns the old value. (Two keys sharing a stripe cost an occasional refused insert, a
//!   miss, never a stale hit.)
//! - **Tracking lost** ([`InvalidationListener::tracking_lost`]: the tracking connection dropped,
//!   was killed, the server restarted or failed over, a health check failed): the cache is emptied
//!   before the call returns and refuses inserts until [`InvalidationListener::tracking_ready`];
//!   reads that started before that are refused too (the epoch moved). A new cache starts in that
//!   state: it serves nothing until its tracker says the server tracks its keys.
//! - **Flush** ([`InvalidationListener::flush`]: `FLUSHDB`/`FLUSHALL` on the server, a whole-family
//!   invalidation): emptied, inserts of reads that started before refused.
//! - **TTL**: an entry is never served at or after the deadline it was inserted with (the caller
//!   passes the key's remaining TTL as read from the store, measured from before the read), nor
//!   after [`NearConfig::max_age`] when set.
//! - **Staleness across instances** is the delivery time of one invalidation (the server pushes it
//!   when it executes the write; loopback: tens of microseconds to a millisecond). A network
//!   partition that the tracker has not noticed yet can extend it up to the tracker's health-check
//!   bound.
//!
//! # Bounds
//!
//! At most [`NearConfig::max_entries`] entries and [`NearConfig::max_bytes`] bytes (counted as the
//! encoded size the caller passes plus the key), evicted by S3-FIFO (`quick_cache`): one weighted
//! bound enforces both, because every entry weighs at least `max_bytes / max_entries`.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::striped::Striped;
use parking_lot::Mutex;
use tokio::time::Instant;

/// Number of invalidation stripes per cache (a power of two).
pub const STRIPES: usize = 1024;

pub use cache_core::tracking::InvalidationListener;

/// Limits of a [`NearCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearConfig {
    /// Most entries held.
    pub max_entries: usize,
    /// Most bytes held (encoded value size plus key length, as passed to [`NearCache::insert`]).
    pub max_bytes: usize,
    /// Longest time an entry is served, whatever its TTL in the store (`None`: up to the TTL, or
    /// until invalidated for a key without one).
    pub max_age: Option<Duration>,
}

/// Default [`NearConfig::max_entries`].
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
/// Default [`NearConfig::max_bytes`] (64 MiB).
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

impl Default for NearConfig {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: None,
        }
    }
}

impl NearConfig {
    /// The default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`NearConfig::max_entries`].
    pub fn with_max_entries(mut self, max: usize) -> Self {
        self.max_entries = max;
        self
    }

    /// Sets [`NearConfig::max_bytes`].
    pub fn with_max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }

    /// Parses an on/off switch as the near-cache environment variables take it: `off`, `false`,
    /// `no`, `0` or blank is off (`None`), `on`, `true` or `yes` the default bounds, a positive
    /// number that many entries (default byte bound).
    pub fn from_switch(value: &str) -> Result<Option<NearConfig>, InvalidConfig> {
        let v = value.trim().to_ascii_lowercase();
        match v.as_str() {
            "" | "off" | "false" | "no" | "0" => Ok(None),
            "on" | "true" | "yes" => Ok(Some(NearConfig::default())),
            n => n
                .parse::<usize>()
                .map(|entries| Some(NearConfig::default().with_max_entries(entries)))
                .map_err(|_| InvalidConfig("expected on, off or a number of entries")),
        }
    }

    /// Sets [`NearConfig::max_age`].
    pub fn with_max_age(mut self, max: Duration) -> Self {
        self.max_age = Some(max);
        self
    }
}

/// A [`NearConfig`] that cannot work (a zero bound or age), or a switch that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid near-cache setting: {0}")]
pub struct InvalidConfig(pub &'static str);

/// What a [`NearCache`] has done since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearStats {
    /// Reads answered from the near cache.
    pub hits: u64,
    /// Reads the near cache could not answer.
    pub misses: u64,
    /// Values inserted.
    pub inserts: u64,
    /// Inserts refused because the key was invalidated, tracking was lost or the cache flushed
    /// while the value was being read.
    pub stale_inserts_refused: u64,
    /// Keys invalidated (by the server or by a local write).
    pub invalidations: u64,
    /// Times the whole cache was emptied (tracking lost, flush).
    pub flushes: u64,
    /// Misses that waited for another caller's read of the same key instead of reading the store
    /// themselves ([`NearCache::miss`]).
    pub coalesced: u64,
    /// Entries held now.
    pub entries: u64,
    /// Bytes held now, as weighed for the bound.
    pub bytes: u64,
}

/// Where a read started; see the [crate documentation](crate).
#[derive(Debug, Clone, Copy)]
#[must_use = "a ticket is passed to NearCache::insert"]
pub struct Ticket {
    epoch: u64,
    stripe: usize,
    seq: u64,
}

struct Slot<V: ?Sized> {
    value: Arc<V>,
    expires_at: Option<Instant>,
    weight: u64,
}

// Not derived: a derive would require `V: Clone`, and only the `Arc` is cloned.
impl<V: ?Sized> Clone for Slot<V> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            expires_at: self.expires_at,
            weight: self.weight,
        }
    }
}

#[derive(Clone)]
struct Weigh;

impl<V: ?Sized> quick_cache::Weighter<Box<str>, Slot<V>> for Weigh {
    fn weight(&self, _key: &Box<str>, slot: &Slot<V>) -> u64 {
        slot.weight
    }
}

type Table<V> = quick_cache::sync::Cache<Box<str>, Slot<V>, Weigh, foldhash::fast::RandomState>;

/// The statistics, striped: a hit is counted by every thread on every hit, and one shared line
/// written by all of them cost more than the rest of the hit.
#[derive(Default)]
struct Counters {
    hits: Striped,
    misses: Striped,
    inserts: Striped,
    refused: Striped,
    invalidations: Striped,
    flushes: Striped,
    coalesced: Striped,
}

/// `metrics` handles, registered once so that the hot path does no label lookup.
struct Meters {
    hits: metrics::Counter,
    misses: metrics::Counter,
    invalidations: metrics::Counter,
    flushes: metrics::Counter,
    coalesced: metrics::Counter,
}

impl Meters {
    fn new(name: &str) -> Self {
        let label = name.to_owned();
        Self {
            hits: metrics::counter!("cachekit_near_hits_total", "cache" => label.clone()),
            misses: metrics::counter!("cachekit_near_misses_total", "cache" => label.clone()),
            invalidations: metrics::counter!(
                "cachekit_near_invalidations_total", "cache" => label.clone()
            ),
            flushes: metrics::counter!("cachekit_near_flushes_total", "cache" => label.clone()),
            coalesced: metrics::counter!("cachekit_near_coalesced_total", "cache" => label),
        }
    }
}

struct Inner<V: ?Sized> {
    name: String,
    table: Table<V>,
    /// Invalidation sequence and reads in flight per stripe of keys; its lock orders inserts
    /// against invalidations.
    stripes: Box<[Mutex<Stripe<V>>]>,
    next_flight: AtomicU64,
    stripe_hasher: foldhash::fast::RandomState,
    /// Even: tracking is up; odd: down. Every flush and every transition moves it.
    epoch: AtomicU64,
    /// Serialises epoch transitions (flush, lost, ready).
    transition: Mutex<()>,
    min_weight: u64,
    max_age: Option<Duration>,
    counters: Counters,
    meters: Meters,
}

/// An in-process cache of decoded values; see the [crate documentation](crate). Cheap to clone
/// (clones share the entries).
pub struct NearCache<V: ?Sized> {
    inner: Arc<Inner<V>>,
}

impl<V: ?Sized> Clone for NearCache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<V: ?Sized + Send + Sync + 'static> fmt::Debug for NearCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NearCache")
            .field("name", &self.inner.name)
            .field("entries", &self.inner.table.len())
            .field("tracking", &self.is_tracking())
            .finish_non_exhaustive()
    }
}

impl<V: ?Sized + Send + Sync + 'static> NearCache<V> {
    /// An empty cache named `name` (the `cache` label of its metrics), not tracking yet: it serves
    /// nothing until [`InvalidationListener::tracking_ready`].
    pub fn new(name: &str, config: NearConfig) -> Result<Self, InvalidConfig> {
        if config.max_entries == 0 {
            return Err(InvalidConfig("max_entries must be at least 1"));
        }
        if config.max_bytes == 0 {
            return Err(InvalidConfig("max_bytes must be at least 1"));
        }
        if config.max_age == Some(Duration::ZERO) {
            return Err(InvalidConfig("max_age must not be zero"));
        }
        // Every entry weighs at least max_bytes / max_entries, so the one weighted bound of the
        // table also bounds the entry count.
        let min_weight = (config.max_bytes as u64).div_ceil(config.max_entries as u64);
        let table = Table::with(
            config.max_entries,
            config.max_bytes as u64,
            Weigh,
            foldhash::fast::RandomState::default(),
            Default::default(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                table,
                stripes: (0..STRIPES)
                    .map(|_| {
                        Mutex::new(Stripe {
                            seq: 0,
                            flights: Vec::new(),
                        })
                    })
                    .collect(),
                next_flight: AtomicU64::new(1),
                stripe_hasher: foldhash::fast::RandomState::default(),
                epoch: AtomicU64::new(1),
                transition: Mutex::new(()),
                min_weight,
                max_age: config.max_age,
                counters: Counters::default(),
                meters: Meters::new(name),
            }),
        })
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the cache currently accepts inserts (its keys are tracked).
    pub fn is_tracking(&self) -> bool {
        self.inner.epoch.load(Ordering::Acquire) % 2 == 0
    }

    fn stripe(&self, key: &str) -> usize {
        (self.inner.stripe_hasher.hash_one(key) as usize) & (STRIPES - 1)
    }

    /// The value at `key` if held and not past its deadline; counts a hit or a miss.
    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        let inner = &*self.inner;
        match inner.table.get(key) {
            Some(slot) if slot.expires_at.is_none_or(|at| Instant::now() < at) => {
                inner.counters.hits.add(1);
                inner.meters.hits.increment(1);
                Some(slot.value)
            }
            found => {
                if let Some(slot) = found {
                    // Past its deadline: drop it unless it was replaced meanwhile.
                    inner
                        .table
                        .remove_if(key, |s| Arc::ptr_eq(&s.value, &slot.value));
                }
                inner.counters.misses.add(1);
                inner.meters.misses.increment(1);
                None
            }
        }
    }

    /// A ticket for a read of `key` from the store: take it before the read starts.
    pub fn ticket(&self, key: &str) -> Ticket {
        let stripe = self.stripe(key);
        let seq = self.inner.stripes[stripe].lock().seq;
        Ticket {
            epoch: self.inner.epoch.load(Ordering::Acquire),
            stripe,
            seq,
        }
    }

    /// Inserts a value read from the store after `ticket` was taken. `expires_at` is the key's
    /// deadline in the store as seen from before the read (`None`: the key has no TTL); `bytes` its
    /// encoded size. Returns whether the value was inserted: not when the key was invalidated,
    /// tracking was lost or the cache flushed since the ticket, nor when the deadline has passed.
    pub fn insert(
        &self,
        ticket: Ticket,
        key: &str,
        value: Arc<V>,
        expires_at: Option<Instant>,
        bytes: usize,
    ) -> bool {
        let inner = &*self.inner;
        let now = Instant::now();
        let cap = inner.max_age.and_then(|age| now.checked_add(age));
        let expires_at = match (expires_at, cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if expires_at.is_some_and(|at| at <= now) {
            return false;
        }
        let weight = ((bytes + key.len()) as u64).max(inner.min_weight);
        let stripe = inner.stripes[ticket.stripe].lock();
        if ticket.epoch % 2 == 1
            || stripe.seq != ticket.seq
            || inner.epoch.load(Ordering::Acquire) != ticket.epoch
        {
            drop(stripe);
            inner.counters.refused.add(1);
            return false;
        }
        inner.table.insert(
            key.into(),
            Slot {
                value,
                expires_at,
                weight,
            },
        );
        drop(stripe);
        inner.counters.inserts.add(1);
        true
    }

    /// Moves the epoch by `step` and empties the table so that no insert of a read that started
    /// before survives: every insert that checked the old epoch holds its stripe's lock until it
    /// has inserted, so passing through every stripe lock before clearing catches them all.
    fn move_epoch(&self, to_odd: Option<bool>) {
        let inner = &*self.inner;
        let _transition = inner.transition.lock();
        let epoch = inner.epoch.load(Ordering::Acquire);
        let next = match to_odd {
            // A flush keeps the parity.
            None => epoch + 2,
            Some(odd) if (epoch % 2 == 1) == odd => epoch + 2,
            Some(_) => epoch + 1,
        };
        inner.epoch.store(next, Ordering::Release);
        for stripe in inner.stripes.iter() {
            drop(stripe.lock());
        }
        inner.table.clear();
    }

    /// What the cache has done, and what it holds now.
    pub fn stats(&self) -> NearStats {
        let c = &self.inner.counters;
        NearStats {
            hits: c.hits.sum(),
            misses: c.misses.sum(),
            inserts: c.inserts.sum(),
            stale_inserts_refused: c.refused.sum(),
            invalidations: c.invalidations.sum(),
            flushes: c.flushes.sum(),
            coalesced: c.coalesced.sum(),
            entries: self.inner.table.len() as u64,
            bytes: self.inner.table.weight(),
        }
    }
}

impl<V: ?Sized + Send + Sync + 'static> InvalidationListener for NearCache<V> {
    fn invalidate(&self, key: &str) {
        let inner = &*self.inner;
        let mut stripe = inner.stripes[self.stripe(key)].lock();
        stripe.seq += 1;
        inner.table.remove(key);
        drop(stripe);
        inner.counters.invalidations.add(1);
        inner.meters.invalidations.increment(1);
    }

    fn flush(&self) {
        self.move_epoch(None);
        self.inner.counters.flushes.add(1);
        self.inner.meters.flushes.increment(1);
        tracing::debug!(cache = %self.inner.name, "near cache flushed");
    }

    fn tracking_lost(&self) {
        self.move_epoch(Some(true));
        self.inner.counters.flushes.add(1);
        self.inner.meters.flushes.increment(1);
        tracing::info!(cache = %self.inner.name, "near cache emptied: tracking lost");
    }

    fn tracking_ready(&self) {
        let inner = &*self.inner;
        let _transition = inner.transition.lock();
        let epoch = inner.epoch.load(Ordering::Acquire);
        if epoch % 2 == 1 {
            // Empty already (emptied when tracking was lost, refusing inserts since).
            inner.epoch.store(epoch + 1, Ordering::Release);
            tracing::debug!(cache = %inner.name, "near cache tracking");
        }
    }
}

mod flight;
use flight::Stripe;
pub use flight::{Fill, Miss, Wait};

#[cfg(test)]
mod tests;
