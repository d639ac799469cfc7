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
use cache_core::{Error, Result, Store};
use cache_near::{NearCache, NearConfig};
use tokio::sync::OnceCell;

use crate::engine::Inner;
use crate::family::Family;

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
}
