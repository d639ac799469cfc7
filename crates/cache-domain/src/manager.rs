//! The [`CacheManager`]: construction, the way to each family ([`FamilyCache`] handles), the seed's
//! operations that span families or need a read-modify-write, and statistics.
//!
//! Where the rest lives: the key layout in [`crate::family`], typed reads and writes and their
//! failure behaviour in [`crate::engine`], namespace versions in [`crate::versions`], cache-aside
//! loading in [`crate::loading`], invalidation in [`crate::invalidate`], crawl-status updates in
//! [`crate::crawl`].

use std::collections::BTreeMap;
use std::sync::Arc;

use cache_core::{BackendStats, Result, Store, StoreExt};

use crate::config::CacheConfig;
use crate::crawl::CrawlStatus;
use crate::engine::Inner;
use crate::family::Family;
use crate::stats::{describe_metrics, CacheStats};
use crate::typed::FamilyCache;

/// The cache manager: typed caching per data family over any [`Store`].
///
/// Reach a family through its handle: `cache.user()`, `cache.keyword_trends()`, ... (one accessor
/// per [`Family`], named after it), or `cache.family(family)` when the family is data. The
/// [`FamilyCache`] handle has every typed call (`get`, `set`, bulk calls, `get_or_load`,
/// invalidation, version bumps, statistics).
///
/// Cheap to clone (an `Arc` inside); clones share the store, the statistics, the in-flight loads and
/// the version cache. Works with a concrete store (`CacheManager<RedisStore>`,
/// `CacheManager<MemoryStore>`) and with `CacheManager<Arc<dyn Store>>`.
#[derive(Debug)]
pub struct CacheManager<S: Store> {
    inner: Arc<Inner<S>>,
}

impl<S: Store> Clone for CacheManager<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Builds a [`CacheManager`]; start with [`CacheManager::builder`]. The same shape as the session
/// manager's builder: settings with [`CacheManagerBuilder::with_config`], then
/// [`CacheManagerBuilder::build`], which checks them.
///
/// ```
/// use std::time::Duration;
/// use cache_domain::{CacheConfig, CacheManager, Family};
///
/// let config = CacheConfig::default().with_ttl(Family::User, Duration::from_secs(600));
/// let cache = CacheManager::builder(cache_memory::MemoryStore::new())
///     .with_config(&config)
///     .build()?;
/// assert_eq!(cache.config().ttl(Family::User), Duration::from_secs(600));
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct CacheManagerBuilder<S> {
    store: S,
    config: CacheConfig,
}

impl<S: Store> CacheManagerBuilder<S> {
    /// Uses these settings (replacing the defaults, or an earlier `with_config`).
    pub fn with_config(mut self, config: &CacheConfig) -> Self {
        self.config = config.clone();
        self
    }

    /// Checks the settings ([`CacheConfig::validate`]: the error names the setting) and builds the
    /// manager.
    pub fn build(self) -> Result<CacheManager<S>> {
        self.config.validate()?;
        CacheManager::build(self.store, self.config)
    }
}

impl<S: Store> CacheManager<S> {
    /// A manager with the default settings ([`CacheConfig::default`]).
    pub fn new(store: S) -> Self {
        Self::build(store, CacheConfig::default())
            // The defaults have no near cache, the only part of building that can fail.
            .expect("the default cache settings build")
    }

    /// A builder, starting from the default settings.
    pub fn builder(store: S) -> CacheManagerBuilder<S> {
        CacheManagerBuilder {
            store,
            config: CacheConfig::default(),
        }
    }

    /// Builds the manager from checked settings; fails only when a near cache cannot be built.
    fn build(store: S, config: CacheConfig) -> Result<Self> {
        describe_metrics();
        Ok(Self {
            inner: Arc::new(Inner::new(store, config)?),
        })
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    // ---- The families -------------------------------------------------------------------------

    /// The handle on `family`, for tools that take the family as data (the CLI, admin endpoints).
    /// Code that knows its family uses the named accessor (`cache.user()`, ...).
    pub fn family(&self, family: Family) -> FamilyCache<'_, S> {
        FamilyCache::new(&self.inner, family)
    }

    /// The handle on users' data (`user:{user_id}`).
    pub fn user(&self) -> FamilyCache<'_, S> {
        self.family(Family::User)
    }

    /// The handle on users' keywords (`keyword:user:{user_id}`).
    pub fn user_keywords(&self) -> FamilyCache<'_, S> {
        self.family(Family::UserKeywords)
    }

    /// The handle on keywords' posts (`post:keyword:{keyword_id}`).
    pub fn keyword_posts(&self) -> FamilyCache<'_, S> {
        self.family(Family::KeywordPosts)
    }

    /// The handle on keywords' trend analyses, TF-IDF results (`trend:keyword:{keyword_id}`).
    pub fn keyword_trends(&self) -> FamilyCache<'_, S> {
        self.family(Family::KeywordTrends)
    }

    /// The handle on crawl task statuses (`crawl:status:{task_id}`). To change a status as the task
    /// advances, use [`CacheManager::update_crawl_status`], which cannot lose a concurrent update.
    pub fn crawl_status(&self) -> FamilyCache<'_, S> {
        self.family(Family::CrawlStatus)
    }

    /// The handle on generated content (`content:{content_id}`).
    pub fn content(&self) -> FamilyCache<'_, S> {
        self.family(Family::Content)
    }

    /// The handle on deployments' statuses (`deploy:status:{deployment_id}`).
    pub fn deploy_status(&self) -> FamilyCache<'_, S> {
        self.family(Family::DeployStatus)
    }

    /// The handle on metrics (`metrics:{type}:{date}`); its ids are written `TYPE:DATE`.
    pub fn metrics(&self) -> FamilyCache<'_, S> {
        self.family(Family::Metrics)
    }

    // ---- Operations across families -----------------------------------------------------------

    /// All cached data of a user: `user:{id}` and `keyword:user:{id}`, in one `UNLINK`. Returns how
    /// many keys existed.
    pub async fn invalidate_user_data(&self, user_id: &str) -> Result<u64> {
        self.invalidate_across(&[Family::User, Family::UserKeywords], user_id)
            .await
    }

    /// All cached posts and trends of a keyword: `post:keyword:{id}` and `trend:keyword:{id}`, in
    /// one `UNLINK`. Returns how many keys existed.
    pub async fn invalidate_keyword_data(&self, keyword_id: &str) -> Result<u64> {
        self.invalidate_across(&[Family::KeywordPosts, Family::KeywordTrends], keyword_id)
            .await
    }

    async fn invalidate_across(&self, families: &[Family], id: &str) -> Result<u64> {
        let items = families
            .iter()
            .map(|f| Ok((*f, f.parse_id(id)?)))
            .collect::<Result<Vec<_>>>()?;
        self.inner
            .bounded("invalidate", self.inner.invalidate_ids(&items), Err)
            .await
    }

    /// Updates the status of a crawl task atomically as it advances: reads it, applies `update`,
    /// and writes it back with a compare-and-swap, retrying when another worker changed it
    /// meanwhile: the first retry at once with the value the failed swap returned, later ones after
    /// a short jittered backoff and a fresh read. Writers in one process take turns (a striped
    /// lock), so retries only happen against other processes. `update` may therefore run more than
    /// once; it should only change the status it is given. A missing status (never
    /// cached, expired, or corrupt) starts as [`CrawlStatus::new`]. A status in a format version
    /// this build does not read (a newer build's, during a rolling upgrade) is not overwritten: the
    /// update fails with [`Error::UnknownFormatVersion`](cache_core::Error::UnknownFormatVersion)
    /// and the stored status stays. Each update gives the status the family TTL again. Returns the
    /// stored status. Store errors are returned whatever the [`WritePolicy`](crate::WritePolicy),
    /// since the caller needs to know whether the step was recorded.
    pub async fn update_crawl_status<F>(&self, task_id: &str, update: F) -> Result<CrawlStatus>
    where
        F: FnMut(&mut CrawlStatus) + Send,
    {
        self.inner
            .bounded(
                "update_crawl_status",
                self.inner.update_crawl_status(task_id, update),
                Err,
            )
            .await
    }

    // ---- Statistics ---------------------------------------------------------------------------

    /// A snapshot of the per-family counters (one family's: `cache.user().stats()`).
    pub fn stats(&self) -> CacheStats {
        CacheStats::from_counters(self.inner.families().iter().map(|f| &f.stats))
    }

    /// The backend's statistics (Redis `INFO`: memory, clients, keyspace hits, pool), when it has
    /// any.
    pub async fn backend_stats(&self) -> Result<Option<BackendStats>> {
        self.inner
            .bounded("backend_stats", self.inner.store.stats(), Err)
            .await
    }

    /// Number of keys per cache family (all versions), counted with `SCAN` on demand. Holds one
    /// family's key names in memory at a time; on a very large keyspace prefer sampling.
    pub async fn key_counts(&self) -> Result<BTreeMap<Family, u64>> {
        let mut out = BTreeMap::new();
        for family in Family::ALL {
            let n = self
                .inner
                .store
                .count_matching(&family.all_keys_pattern(), self.inner.config.scan_count())
                .await?;
            out.insert(family, n);
        }
        Ok(out)
    }

    /// Number of keys being loaded by `get_or_load` in this process right now.
    pub fn loads_in_flight(&self) -> usize {
        self.inner.flights.len()
    }
}
