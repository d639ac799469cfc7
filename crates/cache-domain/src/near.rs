//! The optional near cache of a family (off by default; [`CacheConfig::with_near_cache`] or
//! `CACHE_NEAR_FAMILIES`): decoded values kept in process behind [`FamilyCache::get_shared`], dropped
//! when the server reports a change of their key (`Store::track_changes`).
//!
//! - A hit costs no round trip and no decode: the value is handed out as the `Arc` it is stored as.
//! - A miss reads the value and its TTL in one round trip (`Store::get_with_ttl`) and inserts it
//!   with a ticket taken before the read, so an invalidation racing the read never leaves a stale
//!   entry; it is never served at or past the key's TTL.
//! - Writes and invalidations through this manager drop their keys before they return
//!   (read-your-writes here; a pattern invalidation empties the family's near cache); other
//!   instances, scripts and `redis-cli` reach it through the server's invalidation, within one
//!   delivery. A namespace version bump here empties the family's near cache; a bump elsewhere is
//!   seen within the version refresh interval, as without it.
//! - Tracking lost (connection dropped or killed, restart, failover, failed health check) empties
//!   it before another hit. The memory backend gets none; on Redis Cluster the manager refuses it,
//!   under Sentinel the store answers `Unsupported` (and `cachekit::Config` refuses both).
//!
//! [`CacheConfig::with_near_cache`]: crate::CacheConfig::with_near_cache
//! [`FamilyCache::get_shared`]: crate::FamilyCache::get_shared

use std::any::Any;
use std::sync::Arc;

use cache_core::tracking::InvalidationListener;
use cache_core::{codec, Error, Key, Result, Store};
use cache_near::{Miss, NearCache, NearConfig, Wait};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::engine::{FamilyState, Inner, TOMBSTONE};
use crate::family::{data_key, Family, Id};

/// A decoded value of any type, as the near cache holds it.
pub(crate) type AnyValue = dyn Any + Send + Sync;

/// One family's near cache and its registration with the store.
pub(crate) struct FamilyNear {
    pub(crate) cache: NearCache<AnyValue>,
    /// The listener the store holds weakly: kept alive here.
    listener: Arc<dyn InvalidationListener>,
    registered: OnceCell<bool>,
}

impl std::fmt::Debug for FamilyNear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FamilyNear")
            .field("cache", &self.cache)
            .finish()
    }
}

impl FamilyNear {
    /// The near cache of `family`, or `None` when it is off or the backend needs none.
    pub(crate) fn build(
        family: Family,
        config: Option<NearConfig>,
        backend: &str,
    ) -> Result<Option<FamilyNear>> {
        let Some(config) = config else {
            return Ok(None);
        };
        match backend {
            // In process already: a near cache would only copy it.
            "memory" => return Ok(None),
            "redis-cluster" => {
                return Err(Error::config(
                    "CACHE_NEAR_FAMILIES",
                    "the near cache needs server-assisted invalidation, which is implemented for \
                     one Redis server, not for Redis Cluster: turn it off",
                ))
            }
            _ => {}
        }
        let cache = NearCache::new(family.name(), config)
            .map_err(|e| Error::config("CACHE_NEAR_FAMILIES", e.to_string()))?;
        Ok(Some(FamilyNear {
            listener: Arc::new(cache.clone()),
            cache,
            registered: OnceCell::new(),
        }))
    }
}

impl FamilyNear {
    /// Whether the family's prefix is registered with the store (a near cache in use).
    pub(crate) fn is_registered(&self) -> bool {
        self.registered.get() == Some(&true)
    }
}

impl<S: Store> Inner<S> {
    /// The near cache of `family` when it is on and the store reports changes of its keys. The
    /// first call registers the family's key prefix; a store that cannot report changes turns it
    /// off for good (logged), a store failure leaves it off for this call only.
    pub(crate) async fn near(&self, family: Family) -> Option<&NearCache<AnyValue>> {
        let near = self.near_of(family)?;
        let on = near
            .registered
            .get_or_try_init(|| async {
                let weak = Arc::downgrade(&near.listener);
                match self
                    .store
                    .track_changes(family.key_prefix(), weak)
                    .await
                {
                    Ok(()) => Ok(true),
                    Err(Error::Unsupported(why)) => {
                        tracing::warn!(family = family.name(), reason = %why, "near cache off: the store does not report changes");
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await;
        match on {
            Ok(true) => Some(&near.cache),
            Ok(false) => None,
            Err(e) => {
                self.store_failed(self.fs(family), "register the near cache", &e);
                None
            }
        }
    }

    /// Drops `keys` of `family` from its near cache after this manager wrote or deleted them.
    pub(crate) fn near_forget<'k>(&self, family: Family, keys: impl IntoIterator<Item = &'k str>) {
        if let Some(near) = self.near_of(family) {
            for key in keys {
                near.cache.invalidate(key);
            }
        }
    }

    /// Empties `family`'s near cache (its namespace version changed here).
    pub(crate) fn near_flush(&self, family: Family) {
        if let Some(near) = self.near_of(family) {
            near.cache.flush();
        }
    }

    /// The first step of [`crate::FamilyCache::get_shared`], without a store call or a deadline
    /// (so that a hit costs neither): a hit of the family's near cache, or the key that missed
    /// (counted), or [`Lookup::Unknown`] when that cannot be told without the store (near cache
    /// off or not registered yet, namespace version due for a refresh).
    pub(crate) fn near_lookup<T: Send + Sync + 'static>(
        &self,
        family: Family,
        id: Id<'_>,
    ) -> Lookup<T> {
        let Some(near) = self.near_of(family).filter(|n| n.is_registered()) else {
            return Lookup::Unknown;
        };
        let Some(version) = self.known_version(self.fs(family)) else {
            return Lookup::Unknown;
        };
        match data_key(family, version, id) {
            Ok(key) => match self.near_get(family, &near.cache, key) {
                Ok(hit) => Lookup::Hit(hit),
                Err(key) => Lookup::Miss(key),
            },
            Err(_) => Lookup::Unknown,
        }
    }

    /// The near cache's value of `key` (a hit, counted), or the key back (a miss).
    fn near_get<T: Send + Sync + 'static>(
        &self,
        family: Family,
        near: &NearCache<AnyValue>,
        key: Key,
    ) -> std::result::Result<Arc<T>, Key> {
        if let Some(hit) = near.get(&key) {
            // Another type under the same key (two callers reading one family differently) is a
            // miss, and the read replaces it.
            if let Ok(v) = hit.downcast::<T>() {
                self.fs(family).stats.hits.inc();
                return Ok(v);
            }
        }
        Err(key)
    }

    /// [`crate::FamilyCache::get_shared`] after [`Inner::near_lookup`]: like `get_one`, through the
    /// family's near cache when it is on (see [`crate::near`]). `missed`: the key that
    /// `near_lookup` already looked up and missed.
    pub(crate) async fn get_shared<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        family: Family,
        id: Id<'_>,
        missed: Option<Key>,
    ) -> Result<Option<Arc<T>>> {
        let Some(near) = self.near(family).await else {
            return Ok(self.get_one::<T>(family, id).await?.map(Arc::new));
        };
        let fs = self.fs(family);
        let key = match missed {
            Some(key) => key,
            None => {
                let version = match self.version(fs).await {
                    Ok(v) => v,
                    Err(e) => {
                        self.store_failed(fs, "read namespace version", &e);
                        fs.stats.misses.inc();
                        return Ok(None);
                    }
                };
                match self.near_get(family, near, data_key(family, version, id)?) {
                    Ok(hit) => return Ok(Some(hit)),
                    Err(key) => key,
                }
            }
        };
        let fill = match near.miss(&key) {
            Miss::Lead(fill) => fill,
            // Another caller reads this key now: its answer, unless it goes away without one or
            // holds another type.
            Miss::Wait(wait) => match self.wait_for_read(fs, wait).await {
                Ok(Some(Some(v))) => match v.downcast::<T>() {
                    Ok(v) => {
                        fs.stats.hits.inc();
                        return Ok(Some(v));
                    }
                    Err(_) => near.lead(&key),
                },
                Ok(Some(None)) => {
                    fs.stats.misses.inc();
                    return Ok(None);
                }
                Ok(None) => near.lead(&key),
                Err(()) => return Ok(None),
            },
        };
        let started = Instant::now();
        let (bytes, ttl) = match self.store.get_with_ttl(&key).await {
            Ok(Some((b, ttl))) if b != TOMBSTONE => (b, ttl),
            Ok(_) => {
                fill.finish(None);
                fs.stats.misses.inc();
                return Ok(None);
            }
            Err(e) => {
                // Dropping the fill sends its waiters to the store themselves: the failure may be
                // this call's deadline, not theirs.
                drop(fill);
                self.store_failed(fs, "read", &e);
                fs.stats.misses.inc();
                return Ok(None);
            }
        };
        let value: Arc<T> = match codec::decode(&bytes) {
            Ok(v) => Arc::new(v),
            Err(e) => {
                fill.finish(None);
                self.discard_corrupt(fs, &key, &bytes, &e).await;
                fs.stats.misses.inc();
                return Ok(None);
            }
        };
        let until = match ttl {
            cache_core::KeyTtl::ExpiresIn(left) => Some(started + left),
            cache_core::KeyTtl::Persistent => None,
            // Gone right after it was read: do not keep it.
            cache_core::KeyTtl::Missing => Some(started),
        };
        fill.finish(Some((
            Arc::clone(&value) as Arc<AnyValue>,
            until,
            bytes.len(),
        )));
        fs.stats.hits.inc();
        Ok(Some(value))
    }

    /// Waits for another caller's read of a key, within this call's deadline: `Err(())` when the
    /// deadline passed first (counted and logged as a failed read, answered as a miss).
    async fn wait_for_read(
        &self,
        fs: &FamilyState,
        wait: Wait<AnyValue>,
    ) -> std::result::Result<Option<Option<Arc<AnyValue>>>, ()> {
        let Some(d) = cache_core::deadline::current() else {
            return Ok(wait.wait().await);
        };
        let started = std::time::Instant::now();
        match tokio::time::timeout(d.remaining(), wait.wait()).await {
            Ok(answer) => Ok(answer),
            Err(_) => {
                self.read_timed_out(fs.family, &d.timeout_error("cache get", started), 1);
                Err(())
            }
        }
    }
}

/// What [`Inner::near_lookup`] found.
pub(crate) enum Lookup<T> {
    /// Held by the near cache (a hit, counted).
    Hit(Arc<T>),
    /// Not held (a miss, counted): read the store for this key.
    Miss(Key),
    /// Not known without the store.
    Unknown,
}
