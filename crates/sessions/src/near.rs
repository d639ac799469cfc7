//! The optional near cache of session records (off by default; [`SessionManagerBuilder::with_near_cache`]
//! or `CACHE_NEAR_SESSIONS`): decoded records kept in process and dropped when the server reports a
//! change of their key (`Store::track_changes`), so that a session read on every request costs no
//! round trip and no decode.
//!
//! What a hit still does, and why the rules of [`SessionManager::get`] hold:
//!
//! - **Deadlines.** Every hit checks the idle and absolute deadlines against the manager's clock, as
//!   a store read does: a cached record is never returned past either. A hit found past one is
//!   dropped and the store is read instead, so the expired record is judged and deleted on the
//!   bytes stored (compare-and-swap, as without the near cache): a session another instance
//!   refreshed meanwhile is never deleted.
//! - **Touch and sliding.** When `last_accessed` is older than the touch interval, the hit goes to
//!   the store: the compare-and-swap touch that also slides the TTL, against the encoding of the
//!   record held (the one the store held when it was cached, since no invalidation came), and only
//!   when the store holds other bytes a read first, exactly as without the near cache; so the TTL
//!   is slid at most once per touch interval per session.
//!   Between touches nothing is written: in Redis a TTL change is a change of the key, which would
//!   empty every instance's near cache. A miss reads with `get_with_ttl` (no TTL change) and slides
//!   only when the key's TTL would end before the session's deadline.
//! - **Revocation and logout** delete the key: the server pushes the invalidation to every
//!   instance, which drops the record before the next read there (one invalidation delivery); the
//!   instance that wrote drops it itself before the call returns.
//! - **The memory backend** needs no near cache and gets none; on Redis Cluster it is refused when
//!   the manager is built; under Redis Sentinel the store answers `Unsupported` (its tracking
//!   connection does not follow failovers), so it stays off (and `cachekit::Config` refuses it).
//!
//! [`SessionManagerBuilder::with_near_cache`]: crate::SessionManagerBuilder::with_near_cache

use std::sync::Arc;

use cache_core::tracking::InvalidationListener;
use cache_core::{Error, Result, Store};
use cache_near::NearCache;
use tokio::sync::OnceCell;

use crate::keys::SESSION;
use crate::manager::SessionManager;
use crate::record::Record;

/// The near cache of a manager and its registration with the store.
pub(crate) struct Near {
    pub(crate) cache: NearCache<Record>,
    /// The listener the store holds weakly: kept alive here.
    listener: Arc<dyn InvalidationListener>,
    /// Whether the store reports changes (decided on first use: registering is a round trip).
    registered: OnceCell<bool>,
}

impl Near {
    pub(crate) fn new(cache: NearCache<Record>) -> Self {
        Self {
            listener: Arc::new(cache.clone()),
            cache,
            registered: OnceCell::new(),
        }
    }
}

impl std::fmt::Debug for Near {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Near").field("cache", &self.cache).finish()
    }
}

impl<S: Store> SessionManager<S> {
    /// The near cache when it is on and the store reports changes of session keys. The first call
    /// registers with the store; a store that cannot report changes turns it off for good (logged
    /// once), a failure to reach the store is returned (and registration is tried again).
    pub(crate) async fn near(&self) -> Result<Option<&NearCache<Record>>> {
        let Some(near) = &self.inner.near else {
            return Ok(None);
        };
        let on = near
            .registered
            .get_or_try_init(|| async {
                let weak = Arc::downgrade(&near.listener);
                match self.inner.store.track_changes(SESSION.prefix, weak).await {
                    Ok(()) => Ok(true),
                    Err(Error::Unsupported(why)) => {
                        tracing::warn!(reason = %why, "session near cache off: the store does not report changes");
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(on.then_some(&near.cache))
    }

    /// Drops `keys` from the near cache after this instance wrote or deleted them, so that this
    /// instance reads its own writes before the server's invalidation arrives.
    pub(crate) fn near_forget(&self, keys: &[&str]) {
        if let Some(near) = &self.inner.near {
            for key in keys {
                near.cache.invalidate(key);
            }
        }
    }

    /// What the near cache has done (`None` when it is off).
    pub fn near_cache_stats(&self) -> Option<cache_near::NearStats> {
        self.inner.near.as_ref().map(|n| n.cache.stats())
    }
}
