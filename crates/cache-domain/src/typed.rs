//! [`FamilyCache`]: the one way to read, write, load and invalidate the values of a family. Get it
//! from the manager's named accessors (`cache.user()`, `cache.keyword_trends()`, ...) or, in tools
//! that take the family as data, from [`CacheManager::family`](crate::CacheManager::family).
//!
//! The handle checks ids against the family's rule ([`crate::family`]) and calls into the engine
//! ([`crate::engine`], [`crate::loading`], [`crate::invalidate`], [`crate::versions`]); it never
//! calls back into the manager.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cache_core::keys::Key;
use cache_core::{Result, Store};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::Inner;
use crate::error::LoadError;
use crate::family::{Family, Id, KeyMatch};
use crate::near::Lookup;
use crate::stats::FamilyStats;

/// One family of a [`CacheManager`](crate::CacheManager): typed reads and writes, bulk calls,
/// cache-aside loading, invalidation and the family's statistics, with an optional per-call TTL
/// ([`FamilyCache::with_ttl`]). Copying it is free.
///
/// Ids follow the family's [`IdRule`](crate::IdRule): one id of 1 to 256 bytes, or for
/// [`Family::Metrics`] `TYPE:DATE` (split at the first `:`). An id that breaks the rule is an
/// [`Error::InvalidInput`](cache_core::Error::InvalidInput) before any store call.
///
/// ```
/// # async fn demo(cache: cache_domain::CacheManager<cache_memory::MemoryStore>) -> anyhow::Result<()> {
/// use std::time::Duration;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Post { id: u64, title: String }
///
/// let posts: Vec<Post> = cache
///     .keyword_posts()
///     .with_ttl(Duration::from_secs(60))
///     .get_or_load("rust", || async { Ok::<_, std::io::Error>(vec![]) })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FamilyCache<'a, S: Store> {
    // The `Arc` itself, not the state behind it: a loading leader keeps a clone to release its
    // lease even when its caller's future is dropped (`loading.rs`).
    inner: &'a Arc<Inner<S>>,
    family: Family,
    ttl: Option<Duration>,
}

impl<S: Store> Clone for FamilyCache<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Store> Copy for FamilyCache<'_, S> {}

impl<'a, S: Store> FamilyCache<'a, S> {
    pub(crate) fn new(inner: &'a Arc<Inner<S>>, family: Family) -> Self {
        Self {
            inner,
            family,
            ttl: None,
        }
    }

    fn id<'i>(&self, id: &'i str) -> Result<Id<'i>> {
        self.family.parse_id(id)
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The same handle, writing with this TTL instead of the family's (for `set`, `set_many` and
    /// the writes of `get_or_load`). A TTL below 1 ms is refused by the calls.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Reads the value of `id`. `Ok(None)`: not cached, expired, undecodable (then deleted), or the
    /// store failed (counted, logged). `Err` only for invalid input.
    pub async fn get<T: DeserializeOwned + Send>(&self, id: &str) -> Result<Option<T>> {
        let id = self.id(id)?;
        self.inner
            .bounded("get", self.inner.get_one(self.family, id), |e| {
                self.inner.read_timed_out(self.family, &e, 1);
                Ok(None)
            })
            .await
    }

    /// Reads the value of `id` as a shared `Arc<T>`, through the family's near cache when it is on
    /// ([`CacheConfig::with_near_cache`](crate::CacheConfig::with_near_cache)): a hit costs no
    /// round trip and no decode, and a value changed anywhere (another instance, a script,
    /// `redis-cli`) is dropped within one invalidation delivery (see the user guide's consistency
    /// model). Without the near cache it is [`FamilyCache::get`] wrapped in an `Arc`. Misses as in
    /// [`FamilyCache::get`].
    pub async fn get_shared<T>(&self, id: &str) -> Result<Option<std::sync::Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let id = self.id(id)?;
        // A hit needs neither the store nor a deadline.
        let missed = match self.inner.near_lookup::<T>(self.family, id) {
            Lookup::Hit(v) => return Ok(Some(v)),
            Lookup::Miss(key) => Some(key),
            Lookup::Unknown => None,
        };
        self.inner
            .bounded("get", self.inner.get_shared(self.family, id, missed), |e| {
                self.inner.read_timed_out(self.family, &e, 1);
                Ok(None)
            })
            .await
    }

    /// What the family's near cache has done (`None` when it is off or not used with this store).
    pub fn near_cache_stats(&self) -> Option<cache_near::NearStats> {
        self.inner.near_of(self.family).map(|n| n.cache.stats())
    }

    /// Caches a value with the handle's TTL (the family's unless [`FamilyCache::with_ttl`]). Store
    /// errors follow the [`WritePolicy`](crate::WritePolicy).
    pub async fn set<T: Serialize + Sync + ?Sized>(&self, id: &str, value: &T) -> Result<()> {
        let id = self.id(id)?;
        self.inner
            .bounded(
                "set",
                self.inner.set_one(self.family, id, value, self.ttl),
                |e| self.inner.write_timed_out(self.family, e),
            )
            .await
    }

    /// Reads many ids in one round trip (`MGET`). One entry per id, in order; misses as in
    /// [`FamilyCache::get`].
    pub async fn get_many<T, K>(&self, ids: &[K]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned + Send,
        K: AsRef<str> + Sync,
    {
        let ids = ids
            .iter()
            .map(|k| self.id(k.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        self.inner
            .bounded("get_many", self.inner.get_many(self.family, &ids), |e| {
                self.inner.read_timed_out(self.family, &e, ids.len() as u64);
                Ok((0..ids.len()).map(|_| None).collect())
            })
            .await
    }

    /// Caches many values in one round trip. Not atomic across keys; store errors follow the
    /// [`WritePolicy`](crate::WritePolicy).
    pub async fn set_many<T, K>(&self, entries: &[(K, T)]) -> Result<()>
    where
        T: Serialize + Sync,
        K: AsRef<str> + Sync,
    {
        let entries = entries
            .iter()
            .map(|(k, v)| Ok((self.id(k.as_ref())?, v)))
            .collect::<Result<Vec<_>>>()?;
        self.inner
            .bounded(
                "set_many",
                self.inner.set_many(self.family, &entries, self.ttl),
                |e| self.inner.write_timed_out(self.family, e),
            )
            .await
    }

    /// Cache-aside: returns the cached value, or runs `loader`, caches its result and returns it.
    ///
    /// - **Single-flight**: concurrent calls for one key in this process run the loader once; the
    ///   others wait and get its result. A loader error reaches every waiter of that load and is
    ///   not cached. If the loading caller panics or is cancelled, the waiters retry and one of
    ///   them loads.
    /// - **Cross-process lease** when configured
    ///   ([`CacheConfig::with_lease`](crate::CacheConfig::with_lease)).
    /// - **Early refresh** when configured
    ///   ([`CacheConfig::with_early_refresh`](crate::CacheConfig::with_early_refresh)).
    /// - **Outages**: a failed read is a miss, so the loader runs and the caller gets the data.
    ///
    /// A hit is one `GET`. On a miss the loading caller reads the cache once more before running
    /// the loader (a load that finished between its first read and its turn may have filled it),
    /// then writes the value: two reads and a write around one loader run.
    ///
    /// The loader is not bounded in time by the cache; wrap it in `tokio::time::timeout` if the
    /// database may hang, since waiters wait as long as it runs. The call timeout
    /// ([`CacheConfig::with_call_timeout`](crate::CacheConfig::with_call_timeout)) is spent by the
    /// cache's own store calls only: those before the load and the write after it share it, the
    /// loader's run and the wait for another caller's load do not count.
    pub async fn get_or_load<T, E, F, Fut>(&self, id: &str, loader: F) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        let loaded = self
            .inner
            .load(
                self.family,
                self.id(id)?,
                self.ttl,
                false,
                move || async move { loader().await.map(Some) },
            )
            .await?;
        // With `optional == false` nothing produces `Ok(None)`: the loader's value is always
        // wrapped in `Some`, and "absent" outcomes make such callers retry.
        loaded.ok_or_else(|| {
            LoadError::Cache(cache_core::Error::backend(
                "internal: get_or_load produced no value",
            ))
        })
    }

    /// Like [`FamilyCache::get_or_load`] for a loader that may find nothing (`Ok(None)`). With
    /// negative caching enabled
    /// ([`CacheConfig::with_negative_caching`](crate::CacheConfig::with_negative_caching))
    /// "nothing" is cached for the negative TTL, and later calls return `Ok(None)` without running
    /// the loader.
    pub async fn get_or_load_optional<T, E, F, Fut>(
        &self,
        id: &str,
        loader: F,
    ) -> Result<Option<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<Option<T>, E>> + Send,
    {
        self.inner
            .load(self.family, self.id(id)?, self.ttl, true, loader)
            .await
    }

    /// Deletes the cached value of `id` under the family's current version (read fresh from the
    /// store). `true` when there was one. Store errors are returned.
    pub async fn invalidate(&self, id: &str) -> Result<bool> {
        let items = [(self.family, self.id(id)?)];
        let deleted = self
            .inner
            .bounded("invalidate", self.inner.invalidate_ids(&items), Err)
            .await?;
        Ok(deleted > 0)
    }

    /// Deletes the cached values of many ids in one `UNLINK`; how many existed.
    pub async fn invalidate_many<K: AsRef<str> + Sync>(&self, ids: &[K]) -> Result<u64> {
        let items = ids
            .iter()
            .map(|k| Ok((self.family, self.id(k.as_ref())?)))
            .collect::<Result<Vec<_>>>()?;
        self.inner
            .bounded("invalidate_many", self.inner.invalidate_ids(&items), Err)
            .await
    }

    /// Deletes the keys `selection` names, with `SCAN` and `UNLINK` in batches (never `KEYS`);
    /// how many were deleted. Not atomic: keys written during the run may survive. To drop a whole
    /// family at once prefer [`FamilyCache::bump_version`], which is O(1).
    pub async fn invalidate_matching(&self, selection: KeyMatch) -> Result<u64> {
        self.invalidate_matching_with_progress(selection, &|_, _| {})
            .await
    }

    /// Like [`FamilyCache::invalidate_matching`], calling `progress(scanned, deleted)` after each
    /// batch, for long runs.
    pub async fn invalidate_matching_with_progress(
        &self,
        selection: KeyMatch,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<u64> {
        self.inner
            .invalidate_matching(self.family, &selection, progress)
            .await
    }

    /// How many keys `selection` names right now (what [`FamilyCache::invalidate_matching`] would
    /// delete), counted with `SCAN`.
    pub async fn count_matching(&self, selection: KeyMatch) -> Result<u64> {
        self.inner.count_matching(self.family, &selection).await
    }

    /// Makes every cached value of the family unreachable at once by raising its namespace version
    /// (one `INCRBY`); old keys age out by their TTL. Returns the new version. Other processes
    /// follow within [`CacheConfig::version_refresh`](crate::CacheConfig::version_refresh).
    pub async fn bump_version(&self) -> Result<u64> {
        self.inner
            .bounded("bump_version", self.inner.bump(self.family), Err)
            .await
    }

    /// The family's namespace version as this process knows it (`None` before the first use).
    pub fn cached_version(&self) -> Option<u64> {
        self.inner.fs(self.family).version.known()
    }

    /// The store key that holds `id` now: under the family's current namespace version, read fresh
    /// from the store. For tools and tests; the typed calls build it themselves.
    pub async fn key_of(&self, id: &str) -> Result<Key> {
        let id = self.id(id)?;
        self.inner
            .bounded("key_of", self.inner.live_key(self.family, id), Err)
            .await
    }

    /// This family's counters.
    pub fn stats(&self) -> FamilyStats {
        self.inner.fs(self.family).stats.snapshot()
    }
}
