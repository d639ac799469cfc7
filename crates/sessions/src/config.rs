//! [`SessionConfig`]: the session settings that come from the environment.
//!
//! The sessions crate reads two variables: `CACHE_TTL_SESSION` (the default idle timeout, see
//! [`crate::keys::SESSION`]), `SESSION_CALL_TIMEOUT` (the deadline of one manager call, see
//! [`SessionManagerBuilder::with_call_timeout`](crate::SessionManagerBuilder::with_call_timeout))
//! and `CACHE_NEAR_SESSIONS` (the near cache of records). Every other setting is code: the `with_*`
//! methods of [`crate::SessionManagerBuilder`]. [`SessionConfig::from_lookup`] takes the lookup function rather
//! than reading the process environment itself, so that a facade reads one environment (or a test a
//! map) for every crate.

use std::time::Duration;

use cache_core::config::Lookup;
use cache_core::{Error, Result};

use crate::keys::SESSION;

/// Session settings from the environment; apply with
/// [`SessionManagerBuilder::with_config`](crate::SessionManagerBuilder::with_config).
///
/// ```
/// use std::time::Duration;
/// use sessions::SessionConfig;
///
/// let config = SessionConfig::from_lookup(|k| (k == "CACHE_TTL_SESSION").then(|| "30m".into()))?;
/// assert_eq!(config.idle_timeout, Some(Duration::from_secs(30 * 60)));
/// let manager = sessions::SessionManager::builder(cache_memory::MemoryStore::default())
///     .with_config(&config)
///     .build()?;
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The default idle timeout of new sessions (`CACHE_TTL_SESSION`); `None` leaves the builder's.
    pub idle_timeout: Option<Duration>,
    /// The deadline of one manager call, shared by all its store calls (`SESSION_CALL_TIMEOUT`);
    /// `None` leaves the builder's.
    pub call_timeout: Option<Duration>,
    /// The near cache of session records (`CACHE_NEAR_SESSIONS`): `None` is off (the default).
    pub near_cache: Option<cache_near::NearConfig>,
}

/// The variable of [`SessionConfig::call_timeout`].
pub(crate) const CALL_TIMEOUT_VAR: &str = "SESSION_CALL_TIMEOUT";

/// The variable that turns the session near cache on: `off` (default), `on` (default bounds), or a
/// number of entries.
const NEAR_ENV: &str = "CACHE_NEAR_SESSIONS";

impl SessionConfig {
    /// Reads `CACHE_TTL_SESSION`, `SESSION_CALL_TIMEOUT` and `CACHE_NEAR_SESSIONS` from the process
    /// environment.
    pub fn from_env() -> Result<SessionConfig> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`SessionConfig::from_env`], over any lookup function. A variable that is unset or blank
    /// is ignored; one that does not parse, or a zero TTL, is [`Error::Config`] naming it.
    /// `CACHE_NEAR_SESSIONS` is `off` (the default), `on` (the default bounds) or a number of
    /// records.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<SessionConfig> {
        let env = Lookup::new(&lookup);
        let mut config = SessionConfig::default();
        if let Some(var) = SESSION.ttl_env {
            if let Some(ttl) = env.duration(var)? {
                if ttl.is_zero() {
                    return Err(Error::config(var, "TTL must be greater than zero"));
                }
                config.idle_timeout = Some(ttl);
            }
        }
        if let Some(timeout) = env.duration(CALL_TIMEOUT_VAR)? {
            if timeout.is_zero() {
                return Err(Error::config(CALL_TIMEOUT_VAR, "must be greater than zero"));
            }
            config.call_timeout = Some(timeout);
        }
        if let Some(v) = env.get(NEAR_ENV) {
            config.near_cache = cache_near::NearConfig::from_switch(&v)
                .map_err(|e| Error::config(NEAR_ENV, e.to_string()))?;
        }
        Ok(config)
    }

    /// Sets the near cache (`None`: off).
    pub fn with_near_cache(mut self, near: Option<cache_near::NearConfig>) -> Self {
        self.near_cache = near;
        self
    }

    /// Sets the default idle timeout of new sessions.
    pub fn with_idle_timeout(mut self, ttl: Duration) -> Self {
        self.idle_timeout = Some(ttl);
        self
    }

    /// Sets the deadline of one manager call.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup that knows one variable.
    fn only(var: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |k| (k == var).then(|| value.to_owned())
    }

    #[test]
    fn reads_the_session_ttl() {
        let c = SessionConfig::from_lookup(only("CACHE_TTL_SESSION", "2h")).unwrap();
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(7200)));
        let c = SessionConfig::from_lookup(only("CACHE_TTL_SESSION", " ")).unwrap();
        assert_eq!(c, SessionConfig::default());
        let c = SessionConfig::from_lookup(only("CACHE_TTL_USER", "2h")).unwrap();
        assert_eq!(c.idle_timeout, None);
    }

    #[test]
    fn reads_the_near_cache_switch() {
        let c = SessionConfig::from_lookup(only("CACHE_NEAR_SESSIONS", "on")).unwrap();
        assert_eq!(c.near_cache, Some(cache_near::NearConfig::default()));
        let c = SessionConfig::from_lookup(only("CACHE_NEAR_SESSIONS", "5000")).unwrap();
        assert_eq!(c.near_cache.unwrap().max_entries, 5000);
        for off in ["off", "0", " ", "false"] {
            let c = SessionConfig::from_lookup(only("CACHE_NEAR_SESSIONS", off)).unwrap();
            assert_eq!(c.near_cache, None, "{off:?}");
        }
        let err = SessionConfig::from_lookup(only("CACHE_NEAR_SESSIONS", "lots")).unwrap_err();
        assert!(err.to_string().contains("CACHE_NEAR_SESSIONS"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for var in ["CACHE_TTL_SESSION", "SESSION_CALL_TIMEOUT"] {
            for bad in ["0s", "soon", "-1"] {
                let err = SessionConfig::from_lookup(only(var, bad)).unwrap_err();
                assert!(matches!(err, Error::Config { .. }), "{err}");
                assert!(err.to_string().contains(var), "{err}");
            }
        }
    }

    #[test]
    fn reads_the_call_timeout() {
        let c = SessionConfig::from_lookup(only("SESSION_CALL_TIMEOUT", "750ms")).unwrap();
        assert_eq!(c.call_timeout, Some(Duration::from_millis(750)));
        assert_eq!(c.idle_timeout, None);
    }
}
