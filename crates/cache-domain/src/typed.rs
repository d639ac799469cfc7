//! The typed surface: a [`FamilyCache`] handle per family, and one named cache / get pair per data
//! family of the seed on [`CacheManager`].

use std::future::Future;
use std::time::Duration;

use cache_core::{Family, Result, Store};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::CACHE_FAMILIES;
use crate::crawl::CrawlStatus;
use crate::error::LoadError;
use crate::manager::{CacheManager, Id, KeyMatch};
use crate::stats::FamilyStats;

/// One family of a [`CacheManager`]: the generic calls without repeating the family, and a per-call
/// TTL with [`FamilyCache::with_ttl`]. Get one with [`CacheManager::family`] or the named
/// accessors ([`CacheManager::users`], [`CacheManager::keyword_trends`], ...). Copying it is free.
///
/// For [`Family::Metrics`] ids are `TYPE:DATE` (split at the first `:`).
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
    mgr: &'a CacheManager<S>,
    slot: usize,
    ttl: Option<Duration>,
}

impl<S: Store> Clone for FamilyCache<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Store> Copy for FamilyCache<'_, S> {}

impl<'a, S: Store> FamilyCache<'a, S> {
    pub(crate) fn new(mgr: &'a CacheManager<S>, slot: usize) -> Self {
        Self {
            mgr,
            slot,
            ttl: None,
        }
    }

    /// The family.
    pub fn family(&self) -> Family {
        CACHE_FAMILIES[self.slot]
    }

    /// The same handle, writing with this TTL instead of the family's (for `set`, `set_many` and
    /// the writes of `get_or_load`). A TTL below 1 ms is refused by the calls.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// See [`CacheManager::get`].
    pub async fn get<T: DeserializeOwned + Send>(&self, id: &str) -> Result<Option<T>> {
        let id = Id::parse(self.family(), id)?;
        self.mgr.inner.get_one(self.slot, id).await
    }

    /// See [`CacheManager::set`].
    pub async fn set<T: Serialize + Sync + ?Sized>(&self, id: &str, value: &T) -> Result<()> {
        let id = Id::parse(self.family(), id)?;
        self.mgr.inner.set_one(self.slot, id, value, self.ttl).await
    }

    /// See [`CacheManager::get_many`].
    pub async fn get_many<T, K>(&self, ids: &[K]) -> Result<Vec<Option<T>>>
    where
        T: DeserializeOwned + Send,
        K: AsRef<str> + Sync,
    {
        let family = self.family();
        let ids = ids
            .iter()
            .map(|k| Id::parse(family, k.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        self.mgr.inner.get_many(self.slot, &ids).await
    }

    /// See [`CacheManager::set_many`].
    pub async fn set_many<T, K>(&self, entries: &[(K, T)]) -> Result<()>
    where
        T: Serialize + Sync,
        K: AsRef<str> + Sync,
    {
        let family = self.family();
        let entries = entries
            .iter()
            .map(|(k, v)| Ok((Id::parse(family, k.as_ref())?, v)))
            .collect::<Result<Vec<_>>>()?;
        self.mgr.inner.set_many(self.slot, &entries, self.ttl).await
    }

    /// See [`CacheManager::get_or_load`].
    pub async fn get_or_load<T, E, F, Fut>(&self, id: &str, loader: F) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
    {
        let id = Id::parse(self.family(), id)?;
        let loaded = self
            .mgr
            .inner
            .load(self.slot, id, self.ttl, false, move || async move {
                loader().await.map(Some)
            })
            .await?;
        // With `optional == false` nothing produces `Ok(None)`: the loader's value is always
        // wrapped in `Some`, and "absent" outcomes make such callers retry.
        loaded.ok_or_else(|| {
            LoadError::Cache(cache_core::Error::backend(
                "internal: get_or_load produced no value",
            ))
        })
    }

    /// See [`CacheManager::get_or_load_optional`].
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
        let id = Id::parse(self.family(), id)?;
        self.mgr
            .inner
            .load(self.slot, id, self.ttl, true, loader)
            .await
    }

    /// See [`CacheManager::invalidate`].
    pub async fn invalidate(&self, id: &str) -> Result<bool> {
        let id = Id::parse(self.family(), id)?;
        Ok(self.mgr.inner.invalidate_ids(&[(self.slot, id)]).await? > 0)
    }

    /// See [`CacheManager::invalidate_many`].
    pub async fn invalidate_many<K: AsRef<str> + Sync>(&self, ids: &[K]) -> Result<u64> {
        let items = ids
            .iter()
            .map(|k| Ok((self.slot, Id::parse(self.family(), k.as_ref())?)))
            .collect::<Result<Vec<_>>>()?;
        self.mgr.inner.invalidate_ids(&items).await
    }

    /// See [`CacheManager::invalidate_matching`].
    pub async fn invalidate_matching(&self, selection: KeyMatch) -> Result<u64> {
        self.mgr.invalidate_matching(self.family(), selection).await
    }

    /// See [`CacheManager::bump_version`].
    pub async fn bump_version(&self) -> Result<u64> {
        self.mgr.bump_version(self.family()).await
    }

    /// This family's counters.
    pub fn stats(&self) -> FamilyStats {
        self.mgr.inner.fs(self.slot).stats.snapshot()
    }
}

macro_rules! family_pair {
    (
        $family:ident, $accessor:ident, $cache:ident, $get:ident, $id:ident, $what:literal, $key:literal
    ) => {
        #[doc = concat!("The handle on ", $what, " (`", $key, "`).")]
        pub fn $accessor(&self) -> FamilyCache<'_, S> {
            // Invariant: the family is one of CACHE_FAMILIES.
            FamilyCache::new(self, crate::config::slot(Family::$family).unwrap_or_default())
        }

        #[doc = concat!("Caches ", $what, " (`", $key, "`) with the family's TTL. Store errors follow the [`WritePolicy`](crate::WritePolicy).")]
        pub async fn $cache<T: Serialize + Sync + ?Sized>(&self, $id: &str, value: &T) -> Result<()> {
            self.$accessor().set($id, value).await
        }

        #[doc = concat!("Reads cached ", $what, " (`", $key, "`); `Ok(None)` on a miss or a store error (see [`CacheManager::get`]).")]
        pub async fn $get<T: DeserializeOwned + Send>(&self, $id: &str) -> Result<Option<T>> {
            self.$accessor().get($id).await
        }
    };
}

/// The seed's data families by name.
impl<S: Store> CacheManager<S> {
    family_pair!(
        User,
        users,
        cache_user,
        get_user,
        user_id,
        "a user's data",
        "user:{user_id}"
    );
    family_pair!(
        UserKeywords,
        user_keywords,
        cache_user_keywords,
        get_user_keywords,
        user_id,
        "a user's keywords",
        "keyword:user:{user_id}"
    );
    family_pair!(
        KeywordPosts,
        keyword_posts,
        cache_keyword_posts,
        get_keyword_posts,
        keyword_id,
        "a keyword's posts",
        "post:keyword:{keyword_id}"
    );
    family_pair!(
        KeywordTrends,
        keyword_trends,
        cache_trend_data,
        get_trend_data,
        keyword_id,
        "a keyword's trend analysis (TF-IDF results)",
        "trend:keyword:{keyword_id}"
    );
    family_pair!(
        Content,
        content,
        cache_content,
        get_content,
        content_id,
        "generated content",
        "content:{content_id}"
    );
    family_pair!(
        DeployStatus,
        deploy_status,
        cache_deploy_status,
        get_deploy_status,
        deployment_id,
        "a deployment's status",
        "deploy:status:{deployment_id}"
    );

    /// The handle on crawl task statuses (`crawl:status:{task_id}`).
    pub fn crawl_status(&self) -> FamilyCache<'_, S> {
        // Invariant: the family is one of CACHE_FAMILIES.
        FamilyCache::new(
            self,
            crate::config::slot(Family::CrawlStatus).unwrap_or_default(),
        )
    }

    /// Caches a crawl task's status under its `task_id` (`crawl:status:{task_id}`). To change it as
    /// the task advances, prefer [`CacheManager::update_crawl_status`], which cannot lose a
    /// concurrent update.
    pub async fn cache_crawl_status(&self, status: &CrawlStatus) -> Result<()> {
        self.crawl_status().set(&status.task_id, status).await
    }

    /// Reads a crawl task's status.
    pub async fn get_crawl_status(&self, task_id: &str) -> Result<Option<CrawlStatus>> {
        self.crawl_status().get(task_id).await
    }

    /// The handle on metrics (`metrics:{type}:{date}`); its ids are `TYPE:DATE`.
    pub fn metrics(&self) -> FamilyCache<'_, S> {
        // Invariant: the family is one of CACHE_FAMILIES.
        FamilyCache::new(
            self,
            crate::config::slot(Family::Metrics).unwrap_or_default(),
        )
    }

    /// Caches metrics of one type and date (`metrics:{type}:{date}`; both parts are escaped
    /// separately, so either may contain `:`).
    pub async fn cache_metrics<T: Serialize + Sync + ?Sized>(
        &self,
        metric_type: &str,
        date: &str,
        value: &T,
    ) -> Result<()> {
        let slot = self.state(Family::Metrics)?.0;
        self.inner
            .set_one(slot, Id::Metric(metric_type, date), value, None)
            .await
    }

    /// Reads cached metrics of one type and date.
    pub async fn get_metrics<T: DeserializeOwned + Send>(
        &self,
        metric_type: &str,
        date: &str,
    ) -> Result<Option<T>> {
        let slot = self.state(Family::Metrics)?.0;
        self.inner
            .get_one(slot, Id::Metric(metric_type, date))
            .await
    }

    /// Deletes a keyword's cached trend analysis, when a new analysis lands (seed requirement 5.3).
    /// `true` when there was one.
    pub async fn invalidate_trend_data(&self, keyword_id: &str) -> Result<bool> {
        self.keyword_trends().invalidate(keyword_id).await
    }

    /// Makes every keyword's cached trend analysis unreachable at once (a new analysis run for all
    /// keywords landed): a namespace version bump, O(1). Returns the new version.
    pub async fn invalidate_all_trend_data(&self) -> Result<u64> {
        self.bump_version(Family::KeywordTrends).await
    }
}
