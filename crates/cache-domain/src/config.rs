//! Settings of the [`CacheManager`](crate::CacheManager): TTLs per family, what happens to write
//! errors, how often the namespace versions are re-read, and the optional features (cross-process
//! lease, negative caching, early refresh), all off by default.
//!
//! Precedence of a TTL, lowest first: the family's default ([`Family::default_ttl`], see the
//! [family table](crate::family)), its environment variable (`CACHE_TTL_<FAMILY>`, e.g.
//! `CACHE_TTL_USER=2h`, read by [`CacheConfig::from_lookup`] / [`CacheConfig::from_env`]),
//! [`CacheConfig::with_ttl`], and finally a per-call TTL
//! ([`FamilyCache::with_ttl`](crate::FamilyCache::with_ttl)).

use std::time::Duration;

use cache_core::config::Lookup;
use cache_core::{Error, Result};

use crate::family::Family;

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

/// The optional cross-process lease of [`FamilyCache::get_or_load`](crate::FamilyCache::get_or_load):
/// before running its loader, the in-process leader of a key takes `lease:{key}` with
/// `SET NX PX ttl`. An instance that finds the lease taken polls the cache every `poll_interval`
/// for at most `wait`, and loads itself when nothing arrived by then (so a crashed lease holder
/// costs at most `wait`, never a hang).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseConfig {
    /// How long a lease lives if its holder never releases it (a crashed process: a cancelled or
    /// panicking load releases it at once). Default 5 s.
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

/// Settings of a [`CacheManager`](crate::CacheManager). Start from [`CacheConfig::default`],
/// [`CacheConfig::from_env`] or [`CacheConfig::from_lookup`] and change with the `with_*` methods;
/// the manager validates on construction.
///
/// ```
/// use std::time::Duration;
/// use cache_domain::{CacheConfig, Family, WritePolicy};
///
/// let config = CacheConfig::from_lookup(|var| (var == "CACHE_TTL_USER").then(|| "2h".into()))?
///     .with_ttl(Family::KeywordPosts, Duration::from_secs(300))
///     .with_write_policy(WritePolicy::Propagate);
/// assert_eq!(config.ttl(Family::User), Duration::from_secs(7200));
/// assert_eq!(config.ttl(Family::KeywordPosts), Duration::from_secs(300));
/// assert_eq!(config.ttl(Family::Content), Duration::from_secs(7200));
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    ttls: [Duration; Family::COUNT],
    write_policy: WritePolicy,
    version_refresh: Duration,
    lease: Option<LeaseConfig>,
    negative_ttl: Option<Duration>,
    early_refresh: Option<f64>,
    scan_count: u32,
    call_timeout: Duration,
    near: [Option<cache_near::NearConfig>; Family::COUNT],
}

/// The environment variable of [`CacheConfig::with_call_timeout`].
pub(crate) const CALL_TIMEOUT_VAR: &str = "CACHE_CALL_TIMEOUT";

/// The default deadline of one cache manager call: 2 seconds.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The families whose near cache is on: `user,content` (default bounds), `content=5000` (that
/// many entries), `user=off`.
const NEAR_FAMILIES_ENV: &str = "CACHE_NEAR_FAMILIES";

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttls: Family::ALL.map(Family::default_ttl),
            write_policy: WritePolicy::default(),
            version_refresh: Duration::from_secs(1),
            lease: None,
            negative_ttl: None,
            early_refresh: None,
            scan_count: 500,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            near: [None; Family::COUNT],
        }
    }
}

impl CacheConfig {
    /// The defaults with the TTL overrides found by `lookup`: for each family its
    /// [`Family::ttl_env_var`] (`CACHE_TTL_USER=2h`, `CACHE_TTL_METRICS=90s`; durations as
    /// [`cache_core::config::parse_duration`] reads them), and the call timeout
    /// (`CACHE_CALL_TIMEOUT`). Blank values are ignored; a value that is not a duration is an
    /// [`Error::Config`] naming the variable.
    ///
    /// `CACHE_NEAR_FAMILIES` turns on near caches ([`CacheConfig::with_near_cache`]): a
    /// comma-separated list of family names, each alone (`content`: the default bounds), with a
    /// number of entries (`content=5000`) or switched off (`user=off`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = Lookup::new(&lookup);
        let mut c = Self::default();
        for family in Family::ALL {
            if let Some(ttl) = env.duration(family.ttl_env_var())? {
                c.ttls[family.index()] = ttl;
            }
        }
        if let Some(list) = env.get(NEAR_FAMILIES_ENV) {
            for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (name, switch) = item.split_once('=').unwrap_or((item, "on"));
                let family = Family::from_name(name.trim()).map_err(|_| {
                    Error::config(NEAR_FAMILIES_ENV, format!("{name:?} is not a cache family"))
                })?;
                c.near[family.index()] = cache_near::NearConfig::from_switch(switch)
                    .map_err(|e| Error::config(NEAR_FAMILIES_ENV, e.to_string()))?;
            }
        }
        if let Some(timeout) = env.duration(CALL_TIMEOUT_VAR)? {
            c.call_timeout = timeout;
        }
        Ok(c)
    }

    /// [`CacheConfig::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Overrides the TTL of one family. A TTL below 1 ms is reported by [`CacheConfig::validate`]
    /// (and so by the manager's constructor).
    pub fn with_ttl(mut self, family: Family, ttl: Duration) -> Self {
        self.ttls[family.index()] = ttl;
        self
    }

    /// Sets what writes do with store errors (default [`WritePolicy::LogAndCount`]).
    pub fn with_write_policy(mut self, policy: WritePolicy) -> Self {
        self.write_policy = policy;
        self
    }

    /// Sets how long a namespace version read from the store is trusted before it is read again
    /// (default 1 s). This bounds how long *another* process keeps reading a family after
    /// [`FamilyCache::bump_version`](crate::FamilyCache::bump_version); the process that bumps
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
    /// [`FamilyCache::get_or_load_optional`](crate::FamilyCache::get_or_load_optional) finds
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

    /// Sets the deadline of one manager call ([`DEFAULT_CALL_TIMEOUT`], `CACHE_CALL_TIMEOUT`),
    /// shared by all its store calls and counted from the first of them (or from a wait before it;
    /// see `cache_core::deadline::scope_after`): a `get` answers within it (a miss
    /// when the store did not), a `set` within it (the write counted as failed), and so on. A
    /// store that knows the deadline (the Redis store) ends its own calls at it. `get_or_load`
    /// spends it on its store calls only: the loader's run and the wait for another caller's load
    /// are not counted. Calls that walk the keyspace (`invalidate_matching`, `count_matching`,
    /// `key_counts`) have no call deadline, only the store's bound per call.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets the `SCAN` `COUNT` hint of pattern invalidation and key counts (default 500).
    pub fn with_scan_count(mut self, count: u32) -> Self {
        self.scan_count = count;
        self
    }

    /// The TTL of a family.
    pub fn ttl(&self, family: Family) -> Duration {
        self.ttls[family.index()]
    }

    /// Turns on the near cache of `family` with these bounds (off by default; also
    /// `CACHE_NEAR_FAMILIES`): [`FamilyCache::get_shared`](crate::FamilyCache::get_shared) then
    /// serves hot values from process memory, kept correct by the server's invalidations. Needs a
    /// store that reports changes (Redis on one server): refused on Redis Cluster when the manager is
    /// built, off (logged) on a store that cannot report changes (Redis Sentinel), ignored on the
    /// memory backend; `cachekit::Config` refuses it on Cluster and Sentinel.
    pub fn with_near_cache(mut self, family: Family, near: cache_near::NearConfig) -> Self {
        self.near[family.index()] = Some(near);
        self
    }

    /// The near cache settings of `family`, when on.
    pub fn near_cache(&self, family: Family) -> Option<cache_near::NearConfig> {
        self.near[family.index()]
    }

    /// The families whose near cache is on.
    pub fn near_families(&self) -> impl Iterator<Item = Family> + '_ {
        Family::ALL
            .into_iter()
            .filter(|f| self.near[f.index()].is_some())
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

    /// The deadline of one manager call.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Checks the settings; the error names the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        for (family, ttl) in Family::ALL.iter().zip(self.ttls) {
            if ttl < Duration::from_millis(1) {
                return Err(Error::config(
                    family.ttl_env_var(),
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
        if self.call_timeout.is_zero() {
            return Err(Error::config(CALL_TIMEOUT_VAR, "must be greater than zero"));
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
        for family in Family::ALL {
            assert_eq!(c.ttl(family), family.default_ttl());
        }
        assert_eq!(c.ttl(Family::KeywordTrends), Duration::from_secs(30 * 60));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn overrides_from_the_environment_and_the_builder() {
        let env = |k: &str| match k {
            "CACHE_TTL_USER" => Some("2h".into()),
            "CACHE_TTL_METRICS" => Some("  ".into()),
            "CACHE_TTL_SESSION" => Some("10m".into()),
            _ => None,
        };
        let c = CacheConfig::from_lookup(env)
            .unwrap()
            .with_ttl(Family::Content, Duration::from_secs(9));
        assert_eq!(c.ttl(Family::User), Duration::from_secs(7200));
        assert_eq!(c.ttl(Family::Content), Duration::from_secs(9));
        assert_eq!(c.ttl(Family::Metrics), Family::Metrics.default_ttl());
        assert!(c.validate().is_ok());
        let err = CacheConfig::from_lookup(|k| (k == "CACHE_TTL_CONTENT").then(|| "soon".into()))
            .unwrap_err();
        assert!(matches!(err, Error::Config { setting, .. } if setting == "CACHE_TTL_CONTENT"));
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
