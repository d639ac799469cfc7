//! Settings of the [`CacheManager`](crate::CacheManager): TTLs per family, what happens to write
//! errors, how often the namespace versions are re-read, and the optional features (cross-process
//! lease, negative caching, early refresh), all off by default.
//!
//! | family | key | default TTL | why |
//! |---|---|---:|---|
//! | [`Family::User`] | `user:{user_id}` | 1 h | seed |
//! | [`Family::UserKeywords`] | `keyword:user:{user_id}` | 30 min | seed |
//! | [`Family::KeywordPosts`] | `post:keyword:{keyword_id}` | 15 min | seed |
//! | [`Family::KeywordTrends`] | `trend:keyword:{keyword_id}` | 30 min | seed (requirement 5.3) |
//! | [`Family::CrawlStatus`] | `crawl:status:{task_id}` | 1 h | seed (requirement 3.4); refreshed by every update |
//! | [`Family::Content`] | `content:{content_id}` | 2 h | seed |
//! | [`Family::DeployStatus`] | `deploy:status:{deployment_id}` | 24 h | a deployment is written at every step and read long after it ends ("did last night's deploy go through?"); a day covers that at the cost of a few small keys |
//! | [`Family::Metrics`] | `metrics:{type}:{date}` | 5 min | today's figures change all the time, so dashboards must not lag by more than a few minutes; past days are cheap to recompute |
//!
//! Precedence of a TTL, lowest first: the table above, [`cache_core::Config::ttl_overrides`] (the
//! `CACHE_TTL_<FAMILY>` environment variables, e.g. `CACHE_TTL_USER=2h`, applied by
//! [`CacheConfig::from_config`]), [`CacheConfig::with_ttl`], and finally a per-call TTL
//! ([`FamilyCache::with_ttl`](crate::FamilyCache::with_ttl),
//! [`CacheManager::set_with_ttl`](crate::CacheManager::set_with_ttl)).

use std::time::Duration;

use cache_core::{Error, Family, Result};

/// The families the cache manager serves, in schema order. Sessions and their index belong to the
/// session manager and are refused here, so that a cache call can never overwrite a session.
pub const CACHE_FAMILIES: [Family; 8] = [
    Family::User,
    Family::UserKeywords,
    Family::KeywordPosts,
    Family::KeywordTrends,
    Family::CrawlStatus,
    Family::Content,
    Family::DeployStatus,
    Family::Metrics,
];

/// The index of a cache family in [`CACHE_FAMILIES`], `None` for the session families.
pub(crate) fn slot(family: Family) -> Option<usize> {
    match family {
        Family::User => Some(0),
        Family::UserKeywords => Some(1),
        Family::KeywordPosts => Some(2),
        Family::KeywordTrends => Some(3),
        Family::CrawlStatus => Some(4),
        Family::Content => Some(5),
        Family::DeployStatus => Some(6),
        Family::Metrics => Some(7),
        _ => None,
    }
}

pub(crate) fn not_a_cache_family(family: Family) -> Error {
    Error::invalid_input(format!(
        "family {family} is not cached by the cache manager (sessions belong to the session \
         manager); cache families are: user, user_keywords, keyword_posts, keyword_trends, \
         crawl_status, content, deploy_status, metrics"
    ))
}

/// The default TTL of a cache family (see the [module table](self)); `None` for the session
/// families.
pub fn default_ttl(family: Family) -> Option<Duration> {
    const MIN: u64 = 60;
    const HOUR: u64 = 60 * MIN;
    let secs = match family {
        Family::User => HOUR,
        Family::UserKeywords => 30 * MIN,
        Family::KeywordPosts => 15 * MIN,
        Family::KeywordTrends => 30 * MIN,
        Family::CrawlStatus => HOUR,
        Family::Content => 2 * HOUR,
        Family::DeployStatus => 24 * HOUR,
        Family::Metrics => 5 * MIN,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// What a cache write does with a store error (the store is down, timed out, refused the write).
///
/// Invalid input (an empty id, a zero TTL), a value that cannot be encoded and a value over the
/// store's size limit are the caller's mistakes and are always returned, whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WritePolicy {
    /// The error is logged (rate-limited) and counted in
    /// [`FamilyStats::store_errors`](crate::FamilyStats::store_errors); the call returns `Ok`. A cache
    /// outage never fails the request that wanted to cache something. The default.
    #[default]
    LogAndCount,
    /// The error is counted and returned to the caller.
    Propagate,
}

/// The optional cross-process lease of [`CacheManager::get_or_load`](crate::CacheManager::get_or_load):
/// before running its loader, the in-process leader of a key takes `lease:{key}` with
/// `SET NX PX ttl`. An instance that finds the lease taken polls the cache every `poll_interval`
/// for at most `wait`, and loads itself when nothing arrived by then (so a crashed lease holder
/// costs at most `wait`, never a hang).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseConfig {
    /// How long a lease lives if its holder never releases it (crash, cancellation). Default 5 s.
    pub ttl: Duration,
    /// How long an instance that did not get the lease waits for the holder's value. Default 2 s.
    pub wait: Duration,
    /// How often the waiting instance reads the cache. Default 50 ms.
    pub poll_interval: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(5),
            wait: Duration::from_secs(2),
            poll_interval: Duration::from_millis(50),
        }
    }
}

impl LeaseConfig {
    /// Sets the lease TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the longest wait for another instance's value.
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sets the polling interval.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// Settings of a [`CacheManager`](crate::CacheManager). Start from [`CacheConfig::default`] or
/// [`CacheConfig::from_config`] and change with the `with_*` methods; the manager validates on
/// construction.
///
/// ```
/// use std::time::Duration;
/// use cache_core::Family;
/// use cache_domain::{CacheConfig, WritePolicy};
///
/// let config = CacheConfig::default()
///     .with_ttl(Family::KeywordPosts, Duration::from_secs(300))
///     .with_write_policy(WritePolicy::Propagate);
/// assert_eq!(config.ttl(Family::KeywordPosts), Some(Duration::from_secs(300)));
/// assert_eq!(config.ttl(Family::User), Some(Duration::from_secs(3600)));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    ttls: [Duration; CACHE_FAMILIES.len()],
    write_policy: WritePolicy,
    version_refresh: Duration,
    lease: Option<LeaseConfig>,
    negative_ttl: Option<Duration>,
    early_refresh: Option<f64>,
    scan_count: u32,
    problems: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttls: CACHE_FAMILIES.map(|f| {
                // Invariant: every family of CACHE_FAMILIES has a default TTL (see default_ttl).
                default_ttl(f).expect("every cache family has a default TTL")
            }),
            write_policy: WritePolicy::default(),
            version_refresh: Duration::from_secs(1),
            lease: None,
            negative_ttl: None,
            early_refresh: None,
            scan_count: 500,
            problems: Vec::new(),
        }
    }
}

impl CacheConfig {
    /// The defaults plus what the library-wide [`cache_core::Config`] says: its per-family TTL
    /// overrides (`CACHE_TTL_<FAMILY>`) and its `SCAN` count (`REDIS_SCAN_COUNT`). Overrides of the
    /// session families are ignored here (they belong to the session manager).
    pub fn from_config(config: &cache_core::Config) -> Self {
        let mut c = Self::default().with_scan_count(config.scan_count);
        for (family, ttl) in &config.ttl_overrides {
            if let Some(i) = slot(*family) {
                c.ttls[i] = *ttl;
            }
        }
        c
    }

    /// Overrides the TTL of one family. A session family or a zero TTL is reported by
    /// [`CacheConfig::validate`] (and so by the manager's constructor).
    pub fn with_ttl(mut self, family: Family, ttl: Duration) -> Self {
        match slot(family) {
            Some(i) => self.ttls[i] = ttl,
            None => self.problems.push(not_a_cache_family(family).to_string()),
        }
        self
    }

    /// Sets what writes do with store errors (default [`WritePolicy::LogAndCount`]).
    pub fn with_write_policy(mut self, policy: WritePolicy) -> Self {
        self.write_policy = policy;
        self
    }

    /// Sets how long a namespace version read from the store is trusted before it is read again
    /// (default 1 s). This bounds how long *another* process keeps reading a family after
    /// [`CacheManager::bump_version`](crate::CacheManager::bump_version); the process that bumps
    /// sees the new version at once. The re-read is done by one caller per family and interval,
    /// the others keep using the known version, so the cost is one `GET` per family per interval.
    pub fn with_version_refresh(mut self, interval: Duration) -> Self {
        self.version_refresh = interval;
        self
    }

    /// Enables the cross-process lease of `get_or_load` (off by default).
    pub fn with_lease(mut self, lease: LeaseConfig) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Enables negative caching (off by default): when the loader of
    /// [`CacheManager::get_or_load_optional`](crate::CacheManager::get_or_load_optional) finds
    /// nothing, a small marker is cached for `ttl`, so repeated lookups of a missing id do not reach
    /// the database. Keep it short: an id created meanwhile stays "missing" for up to `ttl` unless
    /// it is invalidated.
    pub fn with_negative_caching(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Enables early refresh (off by default): a `get_or_load` hit whose remaining TTL is below
    /// `fraction` of the family TTL (e.g. `0.1`: the last 10%) makes that one caller reload the
    /// value and write it with a fresh TTL, while everyone else keeps getting the cached value. A
    /// hot key then never expires under load. Costs a `PTTL` next to each `GET` of `get_or_load`
    /// (sent together, so no extra round-trip wait). If the reload fails the caller gets the cached
    /// value.
    pub fn with_early_refresh(mut self, fraction: f64) -> Self {
        self.early_refresh = Some(fraction);
        self
    }

    /// Sets the `SCAN` `COUNT` hint of pattern invalidation and key counts (default 500).
    pub fn with_scan_count(mut self, count: u32) -> Self {
        self.scan_count = count;
        self
    }

    /// The TTL of a family (`None` for the session families).
    pub fn ttl(&self, family: Family) -> Option<Duration> {
        slot(family).map(|i| self.ttls[i])
    }

    pub(crate) fn ttl_at(&self, slot: usize) -> Duration {
        self.ttls[slot]
    }

    /// The write policy.
    pub fn write_policy(&self) -> WritePolicy {
        self.write_policy
    }

    /// The namespace version refresh interval.
    pub fn version_refresh(&self) -> Duration {
        self.version_refresh
    }

    /// The cross-process lease, when enabled.
    pub fn lease(&self) -> Option<&LeaseConfig> {
        self.lease.as_ref()
    }

    /// The negative-caching TTL, when enabled.
    pub fn negative_ttl(&self) -> Option<Duration> {
        self.negative_ttl
    }

    /// The early-refresh fraction, when enabled.
    pub fn early_refresh(&self) -> Option<f64> {
        self.early_refresh
    }

    /// The `SCAN` `COUNT` hint.
    pub fn scan_count(&self) -> u32 {
        self.scan_count
    }

    /// Checks the settings; the error names the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = self.problems.first() {
            return Err(Error::config("CacheConfig::with_ttl", p.clone()));
        }
        for (family, ttl) in CACHE_FAMILIES.iter().zip(self.ttls) {
            if ttl < Duration::from_millis(1) {
                return Err(Error::config(
                    cache_core::config::ttl_env_var(*family),
                    "TTL must be at least 1 ms",
                ));
            }
        }
        if self.version_refresh.is_zero() {
            return Err(Error::config(
                "CacheConfig::with_version_refresh",
                "must be greater than zero",
            ));
        }
        if let Some(l) = &self.lease {
            if l.ttl < Duration::from_millis(1) || l.poll_interval.is_zero() {
                return Err(Error::config(
                    "CacheConfig::with_lease",
                    "lease TTL must be at least 1 ms and the poll interval greater than zero",
                ));
            }
        }
        if self
            .negative_ttl
            .is_some_and(|t| t < Duration::from_millis(1))
        {
            return Err(Error::config(
                "CacheConfig::with_negative_caching",
                "TTL must be at least 1 ms",
            ));
        }
        if let Some(f) = self.early_refresh {
            if !(f > 0.0 && f < 1.0) {
                return Err(Error::config(
                    "CacheConfig::with_early_refresh",
                    format!("{f} is not a fraction strictly between 0 and 1"),
                ));
            }
        }
        if self.scan_count == 0 {
            return Err(Error::config(
                "CacheConfig::with_scan_count",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ttls_are_the_defaults() {
        let c = CacheConfig::default();
        let min = |m: u64| Some(Duration::from_secs(m * 60));
        assert_eq!(c.ttl(Family::User), min(60));
        assert_eq!(c.ttl(Family::UserKeywords), min(30));
        assert_eq!(c.ttl(Family::KeywordPosts), min(15));
        assert_eq!(c.ttl(Family::KeywordTrends), min(30));
        assert_eq!(c.ttl(Family::CrawlStatus), min(60));
        assert_eq!(c.ttl(Family::Content), min(120));
        assert_eq!(c.ttl(Family::DeployStatus), min(24 * 60));
        assert_eq!(c.ttl(Family::Metrics), min(5));
        assert_eq!(c.ttl(Family::Session), None);
        assert!(c.validate().is_ok());
        for (i, f) in CACHE_FAMILIES.iter().enumerate() {
            assert_eq!(slot(*f), Some(i));
        }
    }

    #[test]
    fn overrides_from_env_config_and_builder() {
        let core = cache_core::Config::from_lookup(|k| match k {
            "CACHE_TTL_USER" => Some("2h".into()),
            "CACHE_TTL_SESSION" => Some("10m".into()),
            "REDIS_SCAN_COUNT" => Some("77".into()),
            _ => None,
        })
        .unwrap();
        let c = CacheConfig::from_config(&core).with_ttl(Family::Content, Duration::from_secs(9));
        assert_eq!(c.ttl(Family::User), Some(Duration::from_secs(7200)));
        assert_eq!(c.ttl(Family::Content), Some(Duration::from_secs(9)));
        assert_eq!(c.scan_count(), 77);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_settings_are_named() {
        let setting = |c: CacheConfig| match c.validate().unwrap_err() {
            Error::Config { setting, .. } => setting,
            other => panic!("{other}"),
        };
        assert_eq!(
            setting(CacheConfig::default().with_ttl(Family::User, Duration::ZERO)),
            "CACHE_TTL_USER"
        );
        assert_eq!(
            setting(CacheConfig::default().with_ttl(Family::Session, Duration::from_secs(1))),
            "CacheConfig::with_ttl"
        );
        assert_eq!(
            setting(CacheConfig::default().with_early_refresh(1.5)),
            "CacheConfig::with_early_refresh"
        );
        assert_eq!(
            setting(CacheConfig::default().with_version_refresh(Duration::ZERO)),
            "CacheConfig::with_version_refresh"
        );
        assert_eq!(
            setting(CacheConfig::default().with_negative_caching(Duration::ZERO)),
            "CacheConfig::with_negative_caching"
        );
        assert_eq!(
            setting(CacheConfig::default().with_scan_count(0)),
            "CacheConfig::with_scan_count"
        );
    }
}
