//! The [`CacheManager`]: reads, writes, bulk calls, cache-aside loading, invalidation, versions and
//! statistics over any [`Store`].
//!
//! # Key layout and namespace versions
//!
//! A value of family `f` for id `i` lives at `{f.key_prefix()}{escape_id(i)}` while the family's
//! namespace version is 0 (exactly [`KeySchema`](cache_core::KeySchema)'s keys: `user:42`), and at
//! `{f.key_prefix()}v{n}:{escape_id(i)}` once it is `n > 0` (`user:v3:42`). Escaped ids never
//! contain `:`, so the two forms cannot collide. The version of each family is an integer at
//! `nsversion:{family}` (no TTL), raised by [`CacheManager::bump_version`] with one `INCRBY`: every
//! key of the old version becomes unreachable at once (O(1)) and ages out by its TTL.
//!
//! Reading the version costs no round trip per call: each manager keeps it in memory and re-reads
//! it at most once per [`CacheConfig::with_version_refresh`] interval (default 1 s), by one caller
//! while the others go on with the known value. So after a bump, **other processes may read the
//! old version for up to one refresh interval** (plus one round trip); the bumping process switches
//! at once. Invalidation calls always read the versions fresh from the store.
//!
//! If the version key is deleted (e.g. by `flush_prefix`, which deletes every key anyway) the
//! version falls back to 0; a process that still had a higher version cached may write a few keys
//! under it until its next refresh, and they die by their TTL.
//!
//! # Failure behaviour
//!
//! - A store error on read is a miss; `get_or_load` then runs the loader and the caller gets data.
//!   After a failed read the cache write (and the lease) are skipped: the store is most likely down,
//!   and trying would make the caller wait for a second timeout. No call waits longer than the
//!   store's own timeouts (plus the lease wait when the lease is enabled).
//! - A store error on write is logged (at most once per second and family, with the number of
//!   suppressed messages) and counted; [`WritePolicy::Propagate`] returns it instead.
//! - A stored value that does not decode is a miss: it is deleted (with a compare-and-swap, so a
//!   good value written meanwhile survives), counted in `decode_failures`, and logged.
//! - Invalidation, version bumps and crawl-status updates always return store errors: silently
//!   failing to invalidate would serve stale data.
//!
//! # Known limit
//!
//! Like every cache-aside cache, a load that read the database *before* an update and writes the
//! cache *after* that update's invalidation leaves the old value cached until its TTL. Keep TTLs
//! as short as the data's staleness tolerance, or bump the family version after bulk changes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::keys::{escape_id, glob_escape, MAX_ID_BYTES};
use cache_core::{
    codec, BackendStats, Error, ErrorKind, Expiry, Family, Result, SetOptions, Store, StoreExt,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::config::{not_a_cache_family, slot, CacheConfig, WritePolicy, CACHE_FAMILIES};
use crate::crawl::CrawlStatus;
use crate::error::LoadError;
use crate::flight::{self, Flights, Join, LeaderGuard, Outcome};
use crate::stats::{describe_metrics, CacheStats, FamilyCounters, FamilyStats};

/// What negative caching stores for "the loader found nothing": a codec envelope without data. Every
/// read path compares the bytes with this marker before decoding, so it is never mistaken for a
/// value; plain reads treat it as a miss.
pub const TOMBSTONE: &[u8] = br#"{"v":1,"absent":true}"#;

/// How many times [`CacheManager::update_crawl_status`] retries a lost compare-and-swap race.
const CAS_ATTEMPTS: usize = 64;

/// Stripes of the in-process update locks (see `Inner::update_locks`).
const UPDATE_LOCK_STRIPES: usize = 64;

/// The minimum time between two warnings of one family (store errors, decode failures).
const WARN_INTERVAL_MS: u64 = 1000;

/// Which keys of a family [`CacheManager::invalidate_matching`] deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyMatch {
    /// Every key of the family, of every namespace version (`user:*`).
    All,
    /// Keys of the current version whose id starts with this text, taken literally: the text is
    /// escaped like an id, so `*` or `1?` match ids that start with those characters and nothing
    /// else. For [`Family::Metrics`], `"api:"` selects every date of metric type `api` and
    /// `"api:2026-11"` a month of it.
    IdPrefix(String),
}

/// An id as the key builders take it: metrics have two parts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Id<'a> {
    One(&'a str),
    Metric(&'a str, &'a str),
}

impl<'a> Id<'a> {
    /// Parses an id of the generic API: for metrics `TYPE:DATE` (split at the first `:`).
    pub(crate) fn parse(family: Family, id: &'a str) -> Result<Id<'a>> {
        if family == Family::Metrics {
            let (t, d) = id.split_once(':').ok_or_else(|| {
                Error::invalid_input(format!("metrics id must be TYPE:DATE, got {id:?}"))
            })?;
            Ok(Id::Metric(t, d))
        } else {
            Ok(Id::One(id))
        }
    }

    fn validate(self) -> Result<()> {
        let check = |s: &str| {
            if s.is_empty() || s.len() > MAX_ID_BYTES {
                // Produces the same error message as the key schema.
                escape_id(s).map(|_| ())
            } else {
                Ok(())
            }
        };
        match self {
            Id::One(i) => check(i),
            Id::Metric(t, d) => check(t).and_then(|_| check(d)),
        }
    }

    fn len(self) -> usize {
        match self {
            Id::One(i) => i.len(),
            Id::Metric(t, d) => t.len() + d.len() + 1,
        }
    }
}

/// Same byte classes as `cache_core::keys::escape_id` keeps unescaped.
fn is_safe_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+' | b'=')
}

fn push_escaped(out: &mut String, id: &str) -> Result<()> {
    if !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(is_safe_id_byte) {
        out.push_str(id);
    } else {
        out.push_str(&escape_id(id)?);
    }
    Ok(())
}

/// The escaped form of a possibly empty id prefix.
fn escape_prefix(p: &str) -> Result<String> {
    if p.is_empty() {
        Ok(String::new())
    } else {
        escape_id(p)
    }
}

fn is_caller_error(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::InvalidInput | ErrorKind::Encode | ErrorKind::Capacity
    )
}

fn check_ttl(ttl: Duration) -> Result<Duration> {
    if ttl < Duration::from_millis(1) {
        return Err(Error::invalid_input(format!(
            "TTL {ttl:?} is below 1 ms (a zero TTL is neither 'delete' nor 'forever')"
        )));
    }
    Ok(ttl)
}

fn parse_version(key: &str, raw: Option<Vec<u8>>) -> Result<u64> {
    let Some(raw) = raw else { return Ok(0) };
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            Error::Decode(format!(
                "namespace version key {key} holds {:?}, not a non-negative integer; delete it \
                 to start again from version 0",
                String::from_utf8_lossy(&raw)
            ))
        })
}

/// Full-jitter backoff after the `attempt`-th lost compare-and-swap: uniform in
/// `[0, min(32 ms, 2^attempt * 0.5 ms)]`.
fn cas_backoff(attempt: usize) -> Duration {
    let cap_us = (500u64 << attempt.min(6)).min(32_000);
    let r = getrandom::u64().unwrap_or(cap_us / 2);
    Duration::from_micros(r % (cap_us + 1))
}

fn lease_token() -> String {
    match (getrandom::u64(), getrandom::u64()) {
        (Ok(a), Ok(b)) => format!("{a:016x}{b:016x}"),
        // No OS randomness: still unique enough for a lease (pid + time), which only guards
        // against releasing another instance's lease.
        _ => format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ),
    }
}

/// The in-memory copy of one family's namespace version.
#[derive(Debug, Default)]
struct VersionSlot {
    version: AtomicU64,
    /// Milliseconds since the manager's epoch (+1) when `version` was read; 0: never.
    fetched_at: AtomicU64,
    /// Set while one caller re-reads the version.
    refreshing: AtomicBool,
    /// Raised by every local bump, so that a re-read that started before a bump does not
    /// overwrite the bumped value with the older one.
    generation: AtomicU64,
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Rate-limits warnings: one per interval, counting those it suppressed.
#[derive(Debug, Default)]
struct LogLimiter {
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    /// `Some(suppressed since the last warning)` when a warning may be logged now.
    fn allow(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_INTERVAL_MS)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[derive(Debug)]
pub(crate) struct FamilyState {
    pub(crate) family: Family,
    version: VersionSlot,
    version_key: String,
    pub(crate) stats: FamilyCounters,
    log: LogLimiter,
}

#[derive(Debug)]
pub(crate) struct Inner<S> {
    store: S,
    config: CacheConfig,
    families: [FamilyState; CACHE_FAMILIES.len()],
    flights: Flights,
    epoch: Instant,
    refresh_ms: u64,
    /// Striped locks that serialise read-modify-write updates of one key inside this process, so
    /// that its own writers never race each other's compare-and-swap (only other processes' do).
    update_locks: Box<[tokio::sync::Mutex<()>]>,
}

/// The cache manager: typed caching per data family over any [`Store`].
///
/// Cheap to clone (an `Arc` inside); clones share the store, the statistics, the in-flight loads and
/// the version cache. Works with a concrete store (`CacheManager<RedisStore>`,
/// `CacheManager<MemoryStore>`) and with `CacheManager<Arc<dyn Store>>`.
///
/// See the [crate documentation](crate) for an overview and the [module documentation](self) for
/// the key layout and the failure behaviour.
#[derive(Debug)]
pub struct CacheManager<S: Store> {
    pub(crate) inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for CacheManager<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

enum Read {
    Hit(Vec<u8>),
    Tombstone,
    Miss,
    Failed,
}

enum Lookup<T> {
    Found(T, Vec<u8>, Option<Duration>),
    Absent,
    Missing,
    Failed,
}

enum Polled<T> {
    Found(T, Vec<u8>),
    Absent,
    GiveUp,
    Failed,
}

impl<S: Store> CacheManager<S> {
    /// A manager with the default settings ([`CacheConfig::default`]).
    pub fn new(store: S) -> Self {
        Self::build(store, CacheConfig::default())
    }

    /// A manager with these settings; fails when they do not validate.
    pub fn with_config(store: S, config: CacheConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::build(store, config))
    }

    /// A manager configured from the library-wide [`cache_core::Config`] (TTL overrides from
    /// `CACHE_TTL_<FAMILY>`, `SCAN` count).
    pub fn from_config(store: S, config: &cache_core::Config) -> Result<Self> {
        Self::with_config(store, CacheConfig::from_config(config))
    }

    fn build(store: S, config: CacheConfig) -> Self {
        describe_metrics();
        let families = CACHE_FAMILIES.map(|family| FamilyState {
            family,
            version: VersionSlot::default(),
            version_key: format!("nsversion:{}", family.name()),
            stats: FamilyCounters::new(family),
            log: LogLimiter::default(),
        });
        let refresh_ms = u64::try_from(config.version_refresh().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                families,
                flights: Flights::new(),
                epoch: Instant::now(),
                refresh_ms,
                update_locks: (0..UPDATE_LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            }),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// A handle on one family, for its generic calls (`get_or_load`, bulk calls, per-call TTL).
    /// The session families are refused with [`Error::InvalidInput`].
    pub fn family(&self, family: Family) -> Result<crate::FamilyCache<'_, S>> {
        let slot = slot(family).ok_or_else(|| not_a_cache_family(family))?;
        Ok(crate::FamilyCache::new(self, slot))
    }

    pub(crate) fn state(&self, family: Family) -> Result<(usize, &FamilyState)> {
        let i = slot(family).ok_or_else(|| not_a_cache_family(family))?;
        Ok((i, &self.inner.families[i]))
    }

    // ---- Generic calls ------------------------------------------------------------------------

    /// Reads the value of `family` for `id`. `Ok(None)`: not cached, expired, undecodable (then
    /// deleted), or the store failed (counted, logged). `Err` only for invalid input.
    ///
    /// For [`Family::Metrics`] the id is `TYPE:DATE`.
    pub async fn get<T: DeserializeOwned + Send>(
        &self,
        family: Family,
        id: &str,
    ) -> Result<Option<T>> {
        let (i, _) = self.state(family)?;
        self.inner.get_one(i, Id::parse(family, id)?).await
    }

    /// Caches a value with the family's TTL. Store errors follow the [`WritePolicy`].
    pub async fn set<T: Serialize + Sync + ?Sized>(
        &self,
        family: Family,
        id: &str,
        value: &T,
    ) -> Result<()> {
        let (i, _) = self.state(family)?;
        self.inner
            .set_one(i, Id::parse(family, id)?, value, None)
            .await
    }

    /// Caches a value with this TTL instead of the family's.
    pub async fn set_with_ttl<T: Serialize + Sync + ?Sized>(
        &self,
        family: Family,
        id: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        let (i, _) = self.state(family)?;
        self.inner
            .set_one(i, Id::parse(family, id)?, value, Some(ttl))
            .await
    }

    /// Reads many ids of one family in one round trip (`MGET`). One entry per id, in order; misses
    /// as in [`CacheManager::get`].
    pub async fn get_many<T, K>(&self, family: Family, ids: &[K]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned + Send,
        K: AsRef<str> + Sync,
    {
        self.family(family)?.get_many(ids).await
    }

    /// Caches many values of one family in one round trip, with the family's TTL. Not atomic across
    /// keys; store errors follow the [`WritePolicy`].
    pub async fn set_many<T, K>(&self, family: Family, entries: &[(K, T)]) -> Result<()>
    where
        T: Serialize + Sync,
        K: AsRef<str> + Sync,
    {
        self.family(family)?.set_many(entries).await
    }

    /// Cache-aside: returns the cached value, or runs `loader`, caches its result with the family's
    /// TTL and returns it.
    ///
    /// - **Single-flight**: concurrent calls for one key in this process run the loader once; the
    ///   others wait and get its result. A loader error reaches every waiter of that load and is
    ///   not cached. If the loading caller panics or is cancelled, the waiters retry and one of
    ///   them loads.
    /// - **Cross-process lease** when configured ([`CacheConfig::with_lease`]).
    /// - **Early refresh** when configured ([`CacheConfig::with_early_refresh`]).
    /// - **Outages**: a failed read is a miss, so the loader runs and the caller gets the data.
    ///
    /// A hit is one `GET`. On a miss the loading caller reads the cache once more before running
    /// the loader (a load that finished between its first read and its turn may have filled it),
    /// then writes the value: two reads and a write around one loader run.
    ///
    /// The loader is not bounded in time by the cache; wrap it in `tokio::time::timeout` if the
    /// database may hang, since waiters wait as long as it runs.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        family: Family,
        id: &str,
        loader: F,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        self.family(family)?.get_or_load(id, loader).await
    }

    /// Like [`CacheManager::get_or_load`] for a loader that may find nothing (`Ok(None)`). With
    /// negative caching enabled ([`CacheConfig::with_negative_caching`]) "nothing" is cached for
    /// the negative TTL, and later calls return `Ok(None)` without running the loader.
    pub async fn get_or_load_optional<T, E, F, Fut>(
        &self,
        family: Family,
        id: &str,
        loader: F,
    ) -> Result<Option<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<Option<T>, E>> + Send,
    {
        self.family(family)?.get_or_load_optional(id, loader).await
    }

    // ---- Invalidation -------------------------------------------------------------------------

    /// Deletes the cached value of one id. `true` when there was one. Store errors are returned.
    pub async fn invalidate(&self, family: Family, id: &str) -> Result<bool> {
        let (i, _) = self.state(family)?;
        Ok(self
            .inner
            .invalidate_ids(&[(i, Id::parse(family, id)?)])
            .await?
            > 0)
    }

    /// Deletes the cached values of many ids of one family in one `UNLINK`; returns how many
    /// existed.
    pub async fn invalidate_many<K: AsRef<str> + Sync>(
        &self,
        family: Family,
        ids: &[K],
    ) -> Result<u64> {
        self.family(family)?.invalidate_many(ids).await
    }

    /// Deletes the keys of a family that `selection` names, with `SCAN` and `UNLINK` in batches
    /// (never `KEYS`); returns how many were deleted. Not atomic: keys written during the run may
    /// survive. To drop a whole family at once prefer [`CacheManager::bump_version`], which is O(1).
    pub async fn invalidate_matching(&self, family: Family, selection: KeyMatch) -> Result<u64> {
        self.invalidate_matching_with_progress(family, selection, &|_, _| {})
            .await
    }

    /// Like [`CacheManager::invalidate_matching`], calling `progress(scanned, deleted)` after each
    /// batch, for long runs.
    pub async fn invalidate_matching_with_progress(
        &self,
        family: Family,
        selection: KeyMatch,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<u64> {
        let (i, fs) = self.state(family)?;
        let pattern = match selection {
            KeyMatch::All => family.pattern(),
            KeyMatch::IdPrefix(p) => {
                let escaped = match (family, p.split_once(':')) {
                    (Family::Metrics, Some((t, d))) => {
                        format!("{}:{}", escape_id(t)?, escape_prefix(d)?)
                    }
                    _ => escape_prefix(&p)?,
                };
                let version = self.inner.fresh_versions(&[i]).await?[0];
                let mut pattern = String::from(family.key_prefix());
                if version > 0 {
                    let _ = write!(pattern, "v{version}:");
                }
                // escape_id output has no glob metacharacters; glob_escape is a second guard.
                pattern.push_str(&glob_escape(&escaped));
                pattern.push('*');
                pattern
            }
        };
        let scan_count = self.inner.config.scan_count();
        let deleted = self
            .inner
            .store
            .delete_matching(&pattern, scan_count, progress)
            .await?;
        tracing::debug!(family = fs.family.name(), %pattern, deleted, "pattern invalidation");
        Ok(deleted)
    }

    /// Makes every cached value of a family unreachable at once by raising its namespace version
    /// (one `INCRBY`); old keys age out by their TTL. Returns the new version. Other processes
    /// follow within [`CacheConfig::version_refresh`].
    pub async fn bump_version(&self, family: Family) -> Result<u64> {
        let (i, _) = self.state(family)?;
        self.inner.bump(i).await
    }

    /// The namespace version of a family as this process knows it (`None` before the first use).
    pub fn cached_version(&self, family: Family) -> Option<u64> {
        let (_, fs) = self.state(family).ok()?;
        (fs.version.fetched_at.load(Ordering::Acquire) != 0)
            .then(|| fs.version.version.load(Ordering::Acquire))
    }

    /// The store key of `family` for `id` under the current namespace version (reads the version
    /// if this process does not know it yet). For tools and tests.
    pub async fn key_of(&self, family: Family, id: &str) -> Result<String> {
        let (_, fs) = self.state(family)?;
        let id = Id::parse(family, id)?;
        id.validate()?;
        let v = self.inner.version(fs).await?;
        key(fs, v, id)
    }

    /// All cached data of a user: `user:{id}` and `keyword:user:{id}`, in one `UNLINK`. Returns how
    /// many keys existed.
    pub async fn invalidate_user_data(&self, user_id: &str) -> Result<u64> {
        self.inner
            .invalidate_ids(&[(0, Id::One(user_id)), (1, Id::One(user_id))])
            .await
    }

    /// All cached posts and trends of a keyword: `post:keyword:{id}` and `trend:keyword:{id}`, in
    /// one `UNLINK`. Returns how many keys existed.
    pub async fn invalidate_keyword_data(&self, keyword_id: &str) -> Result<u64> {
        self.inner
            .invalidate_ids(&[(2, Id::One(keyword_id)), (3, Id::One(keyword_id))])
            .await
    }

    // ---- Statistics ---------------------------------------------------------------------------

    /// A snapshot of the per-family counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats::from_counters(self.inner.families.iter().map(|f| &f.stats))
    }

    /// One family's counters.
    pub fn family_stats(&self, family: Family) -> FamilyStats {
        self.stats().family(family)
    }

    /// The backend's statistics (Redis `INFO`: memory, clients, keyspace hits, pool), when it has
    /// any.
    pub async fn backend_stats(&self) -> Result<Option<BackendStats>> {
        self.inner.store.stats().await
    }

    /// Number of keys per cache family (all versions), counted with `SCAN` on demand. Holds one
    /// family's key names in memory at a time; on a very large keyspace prefer sampling.
    pub async fn key_counts(&self) -> Result<BTreeMap<Family, u64>> {
        let mut out = BTreeMap::new();
        for family in CACHE_FAMILIES {
            let n = self
                .inner
                .store
                .count_matching(&family.pattern(), self.inner.config.scan_count())
                .await?;
            out.insert(family, n);
        }
        Ok(out)
    }

    /// Number of keys being loaded by `get_or_load` in this process right now.
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.len()
    }

    // ---- Crawl status (read-modify-write) ------------------------------------------------------

    /// Updates the status of a crawl task atomically as it advances: reads it, applies `update`,
    /// and writes it back with a compare-and-swap, retrying when another worker changed it
    /// meanwhile: the first retry at once with the value the failed swap returned, later ones after
    /// a short jittered backoff and a fresh read. Writers in one process take turns (a striped
    /// lock), so retries only happen against other processes. `update` may therefore run more than
    /// once; it should only change the status it is given. A missing status (never
    /// cached, expired, or undecodable) starts as [`CrawlStatus::new`]. Each update gives the status
    /// the family TTL again. Returns the stored status. Store errors are returned whatever the
    /// [`WritePolicy`], since the caller needs to know whether the step was recorded.
    pub async fn update_crawl_status<F>(&self, task_id: &str, mut update: F) -> Result<CrawlStatus>
    where
        F: FnMut(&mut CrawlStatus) + Send,
    {
        let (i, fs) = self.state(Family::CrawlStatus)?;
        let id = Id::One(task_id);
        id.validate()?;
        let ttl = self.inner.config.ttl_at(i);
        let v = self
            .inner
            .version(fs)
            .await
            .inspect_err(|e| self.inner.store_failed(fs, "read namespace version", e))?;
        let key = key(fs, v, id)?;
        // Writers of one status in this process take turns; the compare-and-swap loop below then
        // only competes with other processes. Without this, a busy process's own writers starve
        // each other (measured: 20 writers on one status exhausted the retries on a cluster).
        let stripe = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            (h.finish() as usize) % self.inner.update_locks.len()
        };
        let _turn = self.inner.update_locks[stripe].lock().await;
        let mut current = self
            .inner
            .store
            .get(&key)
            .await
            .inspect_err(|e| self.inner.store_failed(fs, "read", e))?;
        for attempt in 0..CAS_ATTEMPTS {
            let mut status = match current.as_deref().map(codec::decode::<CrawlStatus>) {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    self.inner.note_decode_failure(fs, &key, &e);
                    CrawlStatus::new(task_id)
                }
                None => CrawlStatus::new(task_id),
            };
            update(&mut status);
            let bytes = codec::encode(&status)?;
            match self
                .inner
                .store
                .compare_and_swap(&key, current.as_deref(), Some(&bytes), Expiry::In(ttl))
                .await
                .inspect_err(|e| self.inner.store_failed(fs, "write", e))?
            {
                cache_core::CasOutcome::Swapped => {
                    fs.stats.writes.inc();
                    return Ok(status);
                }
                cache_core::CasOutcome::Conflict { current: now } => {
                    // The first retry is immediate (it has the current value already); later ones
                    // back off with jitter so that writers of one status in several processes do
                    // not livelock, and read the value again after the pause, since the one the
                    // failed swap returned is likely stale by then.
                    if attempt == 0 {
                        current = now;
                    } else {
                        tokio::time::sleep(cas_backoff(attempt)).await;
                        current = self
                            .inner
                            .store
                            .get(&key)
                            .await
                            .inspect_err(|e| self.inner.store_failed(fs, "read", e))?;
                    }
                }
            }
        }
        Err(Error::Backend {
            message: format!(
                "crawl status {task_id}: lost {CAS_ATTEMPTS} compare-and-swap races in a row; \
                 too many concurrent writers"
            ),
            transient: true,
            source: None,
        })
    }
}

/// The key of `id` in family `fs` at `version`.
pub(crate) fn key(fs: &FamilyState, version: u64, id: Id<'_>) -> Result<String> {
    let prefix = fs.family.key_prefix();
    let mut k = String::with_capacity(prefix.len() + 12 + id.len() * 3);
    k.push_str(prefix);
    if version > 0 {
        // Writing to a String cannot fail.
        let _ = write!(k, "v{version}:");
    }
    match id {
        Id::One(i) => push_escaped(&mut k, i)?,
        Id::Metric(t, d) => {
            push_escaped(&mut k, t)?;
            k.push(':');
            push_escaped(&mut k, d)?;
        }
    }
    Ok(k)
}

impl<S: Store> Inner<S> {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    pub(crate) fn fs(&self, slot: usize) -> &FamilyState {
        &self.families[slot]
    }

    fn ttl(&self, slot: usize, call: Option<Duration>) -> Result<Duration> {
        match call {
            Some(t) => check_ttl(t),
            None => Ok(self.config.ttl_at(slot)),
        }
    }

    // ---- Versions -----------------------------------------------------------------------------

    /// The family's namespace version: from memory while fresh; re-read by one caller per refresh
    /// interval (the others use the known value); read by the caller when never read before.
    async fn version(&self, fs: &FamilyState) -> Result<u64> {
        let fetched = fs.version.fetched_at.load(Ordering::Acquire);
        if fetched != 0 {
            let known = fs.version.version.load(Ordering::Acquire);
            let now = self.now_ms();
            if now.saturating_sub(fetched) < self.refresh_ms {
                return Ok(known);
            }
            if fs.version.refreshing.swap(true, Ordering::AcqRel) {
                return Ok(known);
            }
            let _clear = ClearOnDrop(&fs.version.refreshing);
            return match self.fetch_version(fs).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    // Other calls keep the known version and the refresh is tried again after
                    // another interval. This call returns the error (the caller counts it and
                    // treats it as a miss or a failed write) instead of going on to a second
                    // store call: a call must not wait out two store timeouts in an outage.
                    fs.version.fetched_at.store(now, Ordering::Release);
                    Err(e)
                }
            };
        }
        self.fetch_version(fs).await
    }

    async fn fetch_version(&self, fs: &FamilyState) -> Result<u64> {
        let generation = fs.version.generation.load(Ordering::Acquire);
        let raw = self.store.get(&fs.version_key).await?;
        let v = parse_version(&fs.version_key, raw)?;
        if fs.version.generation.load(Ordering::Acquire) == generation {
            self.publish_version(fs, v);
            Ok(v)
        } else {
            // A local bump happened meanwhile: it is newer than what we read.
            Ok(fs.version.version.load(Ordering::Acquire))
        }
    }

    fn publish_version(&self, fs: &FamilyState, v: u64) {
        fs.version.version.store(v, Ordering::Release);
        fs.version
            .fetched_at
            .store(self.now_ms(), Ordering::Release);
    }

    /// Reads the versions of these families from the store in one round trip and publishes them.
    async fn fresh_versions(&self, slots: &[usize]) -> Result<Vec<u64>> {
        let keys: Vec<&str> = slots
            .iter()
            .map(|s| self.families[*s].version_key.as_str())
            .collect();
        let raw = self.store.get_many(&keys).await?;
        let mut out = Vec::with_capacity(slots.len());
        for (s, r) in slots.iter().zip(raw) {
            let fs = &self.families[*s];
            let v = parse_version(&fs.version_key, r)?;
            self.publish_version(fs, v);
            out.push(v);
        }
        Ok(out)
    }

    async fn bump(&self, slot: usize) -> Result<u64> {
        let fs = &self.families[slot];
        let n = self.store.incr_by(&fs.version_key, 1, None).await?;
        let n = u64::try_from(n).map_err(|_| {
            Error::Decode(format!(
                "namespace version key {} went negative ({n}); delete it to start again",
                fs.version_key
            ))
        })?;
        fs.version.generation.fetch_add(1, Ordering::AcqRel);
        self.publish_version(fs, n);
        tracing::info!(
            family = fs.family.name(),
            version = n,
            "namespace version bumped"
        );
        Ok(n)
    }

    // ---- Logging and counting -----------------------------------------------------------------

    pub(crate) fn store_failed(&self, fs: &FamilyState, op: &'static str, e: &Error) {
        fs.stats.store_errors.inc();
        if let Some(suppressed) = fs.log.allow(self.now_ms()) {
            tracing::warn!(
                family = fs.family.name(),
                op,
                error = %e,
                suppressed,
                "cache store call failed; serving without the cache"
            );
        }
    }

    fn note_decode_failure(&self, fs: &FamilyState, key: &str, e: &Error) {
        fs.stats.decode_failures.inc();
        if let Some(suppressed) = fs.log.allow(self.now_ms()) {
            tracing::warn!(
                family = fs.family.name(),
                key,
                error = %e,
                suppressed,
                "cached value does not decode; treating it as a miss"
            );
        }
    }

    /// Counts, logs and deletes an undecodable value (only if it is still the same bytes).
    async fn discard_corrupt(&self, fs: &FamilyState, key: &str, bytes: &[u8], e: &Error) {
        self.note_decode_failure(fs, key, e);
        if let Err(e) = self
            .store
            .compare_and_swap(key, Some(bytes), None, Expiry::Never)
            .await
        {
            self.store_failed(fs, "delete undecodable value", &e);
        }
    }

    fn write_failed(&self, fs: &FamilyState, e: Error) -> Result<()> {
        if is_caller_error(&e) {
            return Err(e);
        }
        self.store_failed(fs, "write", &e);
        match self.config.write_policy() {
            WritePolicy::Propagate => Err(e),
            _ => Ok(()),
        }
    }

    async fn write(&self, fs: &FamilyState, key: &str, bytes: &[u8], ttl: Duration) -> Result<()> {
        match self.store.set(key, bytes, SetOptions::ttl(ttl)).await {
            Ok(_) => {
                fs.stats.writes.inc();
                Ok(())
            }
            Err(e) => self.write_failed(fs, e),
        }
    }

    // ---- Reads and writes ---------------------------------------------------------------------

    async fn read(&self, fs: &FamilyState, key: &str) -> Read {
        match self.store.get(key).await {
            Ok(Some(b)) if b == TOMBSTONE => Read::Tombstone,
            Ok(Some(b)) => Read::Hit(b),
            Ok(None) => Read::Miss,
            Err(e) => {
                self.store_failed(fs, "read", &e);
                Read::Failed
            }
        }
    }

    pub(crate) async fn get_one<T: DeserializeOwned + Send>(
        &self,
        slot: usize,
        id: Id<'_>,
    ) -> Result<Option<T>> {
        id.validate()?;
        let fs = &self.families[slot];
        let version = match self.version(fs).await {
            Ok(v) => v,
            Err(e) => {
                self.store_failed(fs, "read namespace version", &e);
                fs.stats.misses.inc();
                return Ok(None);
            }
        };
        let key = key(fs, version, id)?;
        if let Read::Hit(bytes) = self.read(fs, &key).await {
            match codec::decode(&bytes) {
                Ok(v) => {
                    fs.stats.hits.inc();
                    return Ok(Some(v));
                }
                Err(e) => self.discard_corrupt(fs, &key, &bytes, &e).await,
            }
        }
        fs.stats.misses.inc();
        Ok(None)
    }

    pub(crate) async fn set_one<T: Serialize + Sync + ?Sized>(
        &self,
        slot: usize,
        id: Id<'_>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        id.validate()?;
        let ttl = self.ttl(slot, ttl)?;
        let bytes = codec::encode(value)?;
        let fs = &self.families[slot];
        let version = match self.version(fs).await {
            Ok(v) => v,
            Err(e) => return self.write_failed(fs, e),
        };
        let key = key(fs, version, id)?;
        self.write(fs, &key, &bytes, ttl).await
    }

    pub(crate) async fn get_many<T: DeserializeOwned + Send>(
        &self,
        slot: usize,
        ids: &[Id<'_>],
    ) -> Result<Vec<Option<T>>> {
        for id in ids {
            id.validate()?;
        }
        let fs = &self.families[slot];
        let n = ids.len() as u64;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let nothing = || (0..ids.len()).map(|_| None).collect::<Vec<Option<T>>>();
        let version = match self.version(fs).await {
            Ok(v) => v,
            Err(e) => {
                self.store_failed(fs, "read namespace version", &e);
                fs.stats.misses.add(n);
                return Ok(nothing());
            }
        };
        let keys = ids
            .iter()
            .map(|id| key(fs, version, *id))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let raw = match self.store.get_many(&refs).await {
            Ok(r) => r,
            Err(e) => {
                self.store_failed(fs, "read", &e);
                fs.stats.misses.add(n);
                return Ok(nothing());
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        let (mut hits, mut corrupt) = (0u64, Vec::new());
        for (i, r) in raw.into_iter().enumerate() {
            match r {
                Some(b) if b != TOMBSTONE => match codec::decode(&b) {
                    Ok(v) => {
                        hits += 1;
                        out.push(Some(v));
                    }
                    Err(e) => {
                        corrupt.push((i, b, e));
                        out.push(None);
                    }
                },
                _ => out.push(None),
            }
        }
        fs.stats.hits.add(hits);
        fs.stats.misses.add(n - hits);
        for (i, b, e) in corrupt {
            self.discard_corrupt(fs, &keys[i], &b, &e).await;
        }
        Ok(out)
    }

    pub(crate) async fn set_many<T: Serialize + Sync>(
        &self,
        slot: usize,
        entries: &[(Id<'_>, &T)],
        ttl: Option<Duration>,
    ) -> Result<()> {
        for (id, _) in entries {
            id.validate()?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        let ttl = self.ttl(slot, ttl)?;
        let encoded = entries
            .iter()
            .map(|(_, v)| codec::encode(*v))
            .collect::<Result<Vec<_>>>()?;
        let fs = &self.families[slot];
        let version = match self.version(fs).await {
            Ok(v) => v,
            Err(e) => return self.write_failed(fs, e),
        };
        let keys = entries
            .iter()
            .map(|(id, _)| key(fs, version, *id))
            .collect::<Result<Vec<_>>>()?;
        let pairs: Vec<(&str, &[u8])> = keys
            .iter()
            .map(String::as_str)
            .zip(encoded.iter().map(Vec::as_slice))
            .collect();
        match self.store.set_many(&pairs, Expiry::In(ttl)).await {
            Ok(()) => {
                fs.stats.writes.add(pairs.len() as u64);
                Ok(())
            }
            Err(e) => self.write_failed(fs, e),
        }
    }

    /// Deletes the keys of these ids under their families' current versions, read fresh, in one
    /// `UNLINK`.
    pub(crate) async fn invalidate_ids(&self, items: &[(usize, Id<'_>)]) -> Result<u64> {
        for (_, id) in items {
            id.validate()?;
        }
        if items.is_empty() {
            return Ok(0);
        }
        let mut slots: Vec<usize> = items.iter().map(|(s, _)| *s).collect();
        slots.sort_unstable();
        slots.dedup();
        let versions = self.fresh_versions(&slots).await?;
        let keys = items
            .iter()
            .map(|(s, id)| {
                // Invariant: every slot of `items` is in `slots` (built from them above).
                let v = slots.binary_search(s).map(|i| versions[i]).unwrap_or(0);
                key(&self.families[*s], v, *id)
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.store.delete(&refs).await
    }

    // ---- Cache-aside --------------------------------------------------------------------------

    async fn lookup<T: DeserializeOwned>(
        &self,
        fs: &FamilyState,
        key: &str,
        optional: bool,
        with_ttl: bool,
    ) -> Lookup<T> {
        let (read, remaining) = if with_ttl {
            let (read, ttl) = tokio::join!(self.read(fs, key), self.store.ttl(key));
            (read, ttl.ok().and_then(|t| t.remaining()))
        } else {
            (self.read(fs, key).await, None)
        };
        match read {
            Read::Hit(bytes) => match codec::decode(&bytes) {
                Ok(v) => Lookup::Found(v, bytes, remaining),
                Err(e) => {
                    self.discard_corrupt(fs, key, &bytes, &e).await;
                    Lookup::Missing
                }
            },
            Read::Tombstone if optional => Lookup::Absent,
            Read::Tombstone | Read::Miss => Lookup::Missing,
            Read::Failed => Lookup::Failed,
        }
    }

    /// The shared core of `get_or_load` (`optional == false`: the loader never returns `None`)
    /// and `get_or_load_optional`.
    pub(crate) async fn load<T, E, F, Fut>(
        &self,
        slot: usize,
        id: Id<'_>,
        ttl: Option<Duration>,
        optional: bool,
        loader: F,
    ) -> Result<Option<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<Option<T>, E>> + Send,
    {
        id.validate()?;
        let ttl = self.ttl(slot, ttl)?;
        let fs = &self.families[slot];
        let (key, mut store_ok) = match self.version(fs).await {
            Ok(v) => (key(fs, v, id)?, true),
            Err(e) => {
                // Without the version we cannot address the cache; the key (at version 0) only
                // names the in-process flight.
                self.store_failed(fs, "read namespace version", &e);
                (key(fs, 0, id)?, false)
            }
        };
        let mut loader = Some(loader);
        let mut first = true;
        loop {
            if store_ok {
                let early = if first {
                    self.config.early_refresh()
                } else {
                    None
                };
                match self.lookup::<T>(fs, &key, optional, early.is_some()).await {
                    Lookup::Found(value, bytes, remaining) => {
                        if first {
                            fs.stats.hits.inc();
                        }
                        if let (Some(fraction), Some(left)) = (early, remaining) {
                            if left.as_secs_f64() < ttl.as_secs_f64() * fraction {
                                if let Some(f) = loader.take() {
                                    return Ok(Some(
                                        self.refresh_early(fs, &key, ttl, value, bytes, f).await,
                                    ));
                                }
                            }
                        }
                        return Ok(Some(value));
                    }
                    Lookup::Absent => {
                        if first {
                            fs.stats.hits.inc();
                        }
                        return Ok(None);
                    }
                    Lookup::Missing => {}
                    Lookup::Failed => store_ok = false,
                }
            }
            if first {
                fs.stats.misses.inc();
                first = false;
            }
            let guard = match self.flights.join(&key) {
                Join::Waiter(rx) => {
                    fs.stats.coalesced.inc();
                    match flight::wait(rx).await {
                        Some(outcome) => match adopt::<T, E>(&outcome, optional) {
                            Some(result) => return result,
                            None => continue,
                        },
                        // The leader panicked or was cancelled: retry (maybe as the leader).
                        None => continue,
                    }
                }
                Join::Leader(guard) => guard,
            };
            let Some(f) = loader.take() else {
                // Unreachable: a caller leads at most once, since leading always returns.
                return Err(LoadError::Cache(Error::backend(
                    "internal: get_or_load loader already used",
                )));
            };
            return self.lead(fs, &key, ttl, optional, store_ok, guard, f).await;
        }
    }

    /// The leader's part: check the cache again, take the lease, load, write, hand over.
    #[allow(clippy::too_many_arguments)] // A private step of `load`, called once.
    async fn lead<T, E, F, Fut>(
        &self,
        fs: &FamilyState,
        key: &str,
        ttl: Duration,
        optional: bool,
        mut store_ok: bool,
        guard: LeaderGuard<'_>,
        loader: F,
    ) -> Result<Option<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<Option<T>, E>> + Send,
    {
        // A flight that ended between our read and our join may have filled the cache.
        if store_ok {
            match self.lookup::<T>(fs, key, optional, false).await {
                Lookup::Found(v, bytes, _) => {
                    guard.complete(Outcome::Value(bytes));
                    return Ok(Some(v));
                }
                Lookup::Absent => {
                    guard.complete(Outcome::Absent);
                    return Ok(None);
                }
                Lookup::Missing => {}
                Lookup::Failed => store_ok = false,
            }
        }
        let mut lease = None;
        if let (true, Some(cfg)) = (store_ok, self.config.lease()) {
            let lease_key = format!("lease:{key}");
            let token = lease_token();
            let opts = SetOptions::ttl(cfg.ttl).if_absent();
            match self.store.set(&lease_key, token.as_bytes(), opts).await {
                Ok(true) => lease = Some((lease_key, token)),
                Ok(false) => match self
                    .poll_for_value::<T>(fs, key, &lease_key, optional, cfg)
                    .await
                {
                    Polled::Found(v, bytes) => {
                        fs.stats.coalesced.inc();
                        guard.complete(Outcome::Value(bytes));
                        return Ok(Some(v));
                    }
                    Polled::Absent => {
                        fs.stats.coalesced.inc();
                        guard.complete(Outcome::Absent);
                        return Ok(None);
                    }
                    Polled::GiveUp => {}
                    Polled::Failed => store_ok = false,
                },
                Err(e) => {
                    self.store_failed(fs, "take lease", &e);
                    store_ok = false;
                }
            }
        }
        fs.stats.loads.inc();
        let loaded = loader().await;
        let result = match loaded {
            Ok(Some(value)) => match codec::encode(&value) {
                Ok(bytes) => {
                    let written = if store_ok {
                        self.write(fs, key, &bytes, ttl).await
                    } else {
                        Ok(())
                    };
                    guard.complete(Outcome::Value(bytes));
                    written.map(|()| Some(value)).map_err(LoadError::Cache)
                }
                Err(e) => {
                    guard.complete(Outcome::EncodeError(e.to_string()));
                    Err(LoadError::Cache(e))
                }
            },
            Ok(None) => {
                let written = match (store_ok && optional, self.config.negative_ttl()) {
                    (true, Some(nttl)) => self.write(fs, key, TOMBSTONE, nttl).await,
                    _ => Ok(()),
                };
                guard.complete(Outcome::Absent);
                written.map(|()| None).map_err(LoadError::Cache)
            }
            Err(e) => {
                fs.stats.load_errors.inc();
                let e = Arc::new(e);
                guard.complete(Outcome::LoaderError(e.clone()));
                Err(LoadError::Loader(e))
            }
        };
        if let Some((lease_key, token)) = lease {
            // Release only our own lease; if it expired and another instance holds it now, the
            // swap fails and leaves theirs alone.
            if let Err(e) = self
                .store
                .compare_and_swap(&lease_key, Some(token.as_bytes()), None, Expiry::Never)
                .await
            {
                tracing::debug!(key = %lease_key, error = %e, "lease release failed; it will expire");
            }
        }
        result
    }

    /// Another instance holds the lease: read the value and the lease together (one round trip)
    /// every poll interval until the value arrives, the lease disappears without a value (its
    /// holder failed), or the wait is over.
    async fn poll_for_value<T: DeserializeOwned>(
        &self,
        fs: &FamilyState,
        key: &str,
        lease_key: &str,
        optional: bool,
        cfg: &crate::LeaseConfig,
    ) -> Polled<T> {
        let deadline = Instant::now() + cfg.wait;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Polled::GiveUp;
            }
            tokio::time::sleep(cfg.poll_interval.min(deadline - now)).await;
            match self.store.get_many(&[key, lease_key]).await {
                Ok(mut r) if r.len() == 2 => {
                    let lease_held = r[1].is_some();
                    match r[0].take() {
                        Some(b) if b == TOMBSTONE && optional => return Polled::Absent,
                        Some(b) if b == TOMBSTONE => {}
                        Some(b) => match codec::decode(&b) {
                            Ok(v) => return Polled::Found(v, b),
                            Err(e) => self.discard_corrupt(fs, key, &b, &e).await,
                        },
                        None => {}
                    }
                    if !lease_held {
                        return Polled::GiveUp;
                    }
                }
                Ok(_) => return Polled::GiveUp,
                Err(e) => {
                    self.store_failed(fs, "read", &e);
                    return Polled::Failed;
                }
            }
        }
    }

    /// Early refresh of a hit close to expiry: only one caller per key reloads (the others keep the
    /// cached value); a failed reload returns the cached value.
    async fn refresh_early<T, E, F, Fut>(
        &self,
        fs: &FamilyState,
        key: &str,
        ttl: Duration,
        cached: T,
        cached_bytes: Vec<u8>,
        loader: F,
    ) -> T
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<Option<T>, E>> + Send,
    {
        let Some(guard) = self.flights.try_lead(key) else {
            return cached;
        };
        fs.stats.loads.inc();
        match loader().await {
            Ok(Some(fresh)) => match codec::encode(&fresh) {
                Ok(bytes) => {
                    // The write policy cannot surface here: the caller gets a value either way.
                    let _ = self.write(fs, key, &bytes, ttl).await;
                    guard.complete(Outcome::Value(bytes));
                    fresh
                }
                Err(_) => {
                    guard.complete(Outcome::Value(cached_bytes));
                    cached
                }
            },
            Ok(None) => {
                // The source no longer has it: drop the cached copy so the next read misses.
                if let Err(e) = self.store.delete(&[key]).await {
                    self.store_failed(fs, "delete", &e);
                }
                guard.complete(Outcome::Value(cached_bytes));
                cached
            }
            Err(_) => {
                fs.stats.load_errors.inc();
                guard.complete(Outcome::Value(cached_bytes));
                cached
            }
        }
    }
}

/// Turns a leader's outcome into this waiter's result; `None`: it does not fit this caller (other
/// value or error type, or "absent" for a caller that needs a value), so the caller retries.
fn adopt<T: DeserializeOwned, E: Send + Sync + 'static>(
    outcome: &Outcome,
    optional: bool,
) -> Option<Result<Option<T>, LoadError<E>>> {
    match outcome {
        Outcome::Value(b) => codec::decode::<T>(b).ok().map(|v| Ok(Some(v))),
        Outcome::Absent => optional.then_some(Ok(None)),
        Outcome::LoaderError(e) => Arc::clone(e)
            .downcast::<E>()
            .ok()
            .map(|e| Err(LoadError::Loader(e))),
        Outcome::EncodeError(m) => Some(Err(LoadError::Cache(Error::Encode(m.clone())))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::KeySchema;

    fn fs(family: Family) -> FamilyState {
        FamilyState {
            family,
            version: VersionSlot::default(),
            version_key: String::new(),
            stats: FamilyCounters::new(family),
            log: LogLimiter::default(),
        }
    }

    #[test]
    fn version_zero_keys_are_the_schema_keys() {
        for id in [
            "42",
            "a:b",
            "*",
            "1?",
            "é",
            "x y",
            "[z]",
            "%41",
            "a.b-c_d@e+f=g",
        ] {
            for family in CACHE_FAMILIES {
                if family == Family::Metrics {
                    let k = key(&fs(family), 0, Id::Metric(id, "2026-11-26")).unwrap();
                    assert_eq!(k, KeySchema::metrics(id, "2026-11-26").unwrap().as_str());
                } else {
                    let k = key(&fs(family), 0, Id::One(id)).unwrap();
                    assert_eq!(k, KeySchema::for_family(family, id).unwrap().as_str());
                }
            }
        }
        assert_eq!(
            key(&fs(Family::User), 3, Id::One("42")).unwrap(),
            "user:v3:42"
        );
        assert_eq!(
            key(&fs(Family::Metrics), 2, Id::Metric("api", "d")).unwrap(),
            "metrics:v2:api:d"
        );
        assert_eq!(
            key(&fs(Family::User), 1, Id::One("*")).unwrap(),
            "user:v1:%2A"
        );
    }

    #[test]
    fn ids_are_validated() {
        assert!(Id::One("").validate().is_err());
        assert!(Id::One(&"x".repeat(MAX_ID_BYTES + 1)).validate().is_err());
        assert!(Id::Metric("a", "").validate().is_err());
        assert!(Id::parse(Family::Metrics, "nodate").is_err());
        assert!(matches!(
            Id::parse(Family::Metrics, "api:2026-01-01:x").unwrap(),
            Id::Metric("api", "2026-01-01:x")
        ));
    }

    #[test]
    fn tombstone_is_not_a_value() {
        // (An `Option<T>` would decode it as `None`, which is why every read path compares the
        // bytes with TOMBSTONE before decoding.)
        assert!(codec::decode::<serde_json::Value>(TOMBSTONE).is_err());
        assert!(codec::decode::<u8>(TOMBSTONE).is_err());
    }

    #[test]
    fn log_limiter_lets_one_through_per_interval() {
        let l = LogLimiter::default();
        assert_eq!(l.allow(1), Some(0));
        assert_eq!(l.allow(2), None);
        assert_eq!(l.allow(500), None);
        assert_eq!(l.allow(1001), Some(2));
    }
}
