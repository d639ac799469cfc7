//! [`MemoryConfig`]: the settings of the in-memory backend, with the profile defaults and the
//! environment variables they share with the Redis backend (`CACHE_KEY_PREFIX`,
//! `CACHE_MAX_VALUE_BYTES`) and its own bounds (`CACHE_MEMORY_MAX_ENTRIES`,
//! `CACHE_MEMORY_MAX_BYTES`); see `docs/operations.md`.
//!
//! Precedence, lowest first: the profile's defaults ([`MemoryConfig::new`]), the environment
//! ([`MemoryConfig::from_lookup`] / [`MemoryConfig::from_env`]), then `with_*` calls.
//! [`MemoryStore::from_config`](crate::MemoryStore::from_config) builds the store.

use cache_core::config::Lookup;
use cache_core::keys::validate_prefix;
use cache_core::{Error, Profile, Result};

use crate::DEFAULT_MAX_VALUE_BYTES;

/// The variable that bounds the entries of the memory store ([`MemoryConfig::max_entries`]).
pub const MAX_ENTRIES_VAR: &str = "CACHE_MEMORY_MAX_ENTRIES";
/// The variable that bounds the bytes of the memory store ([`MemoryConfig::max_bytes`]).
pub const MAX_BYTES_VAR: &str = "CACHE_MEMORY_MAX_BYTES";

/// Every setting of a [`MemoryStore`](crate::MemoryStore) that a deployment chooses (the reap
/// interval stays on [`MemoryStoreBuilder`](crate::MemoryStoreBuilder): it is for tests).
///
/// ```
/// use cache_core::Profile;
/// use cache_memory::{MemoryConfig, MemoryStore};
///
/// let config = MemoryConfig::new(Profile::Development).with_max_entries(10_000);
/// assert_eq!(config.key_prefix, "dev");
/// let store = MemoryStore::from_config(&config)?;
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// The profile the defaults came from.
    pub profile: Profile,
    /// Global key prefix (`CACHE_KEY_PREFIX`; `dev` in development, `staging` in staging, none in
    /// production); empty means none.
    pub key_prefix: String,
    /// Largest value the store accepts, in bytes (`CACHE_MAX_VALUE_BYTES`, default
    /// [`DEFAULT_MAX_VALUE_BYTES`], as on Redis).
    pub max_value_bytes: usize,
    /// Most entries held, with LRU eviction beyond (`CACHE_MEMORY_MAX_ENTRIES`; see
    /// [`MemoryStoreBuilder::with_max_entries`](crate::MemoryStoreBuilder::with_max_entries));
    /// `None` (the default) for no bound.
    pub max_entries: Option<usize>,
    /// Most key and value bytes held, with LRU eviction beyond (`CACHE_MEMORY_MAX_BYTES`; see
    /// [`MemoryStoreBuilder::with_max_bytes`](crate::MemoryStoreBuilder::with_max_bytes)); `None`
    /// (the default) for no bound.
    pub max_bytes: Option<usize>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self::new(Profile::default())
    }
}

impl MemoryConfig {
    /// The defaults of `profile`: its key prefix, values up to 8 MiB, no bounds.
    pub fn new(profile: Profile) -> Self {
        MemoryConfig {
            profile,
            key_prefix: profile.default_key_prefix().to_owned(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_entries: None,
            max_bytes: None,
        }
    }

    /// [`MemoryConfig::from_lookup`] over the process environment.
    pub fn from_env(profile: Profile) -> Result<Self> {
        Self::from_lookup(profile, |name| std::env::var(name).ok())
    }

    /// The defaults of `profile`, overridden by `CACHE_KEY_PREFIX`, `CACHE_MAX_VALUE_BYTES`,
    /// `CACHE_MEMORY_MAX_ENTRIES` and `CACHE_MEMORY_MAX_BYTES` as `lookup` finds them (blank counts
    /// as unset), validated.
    pub fn from_lookup(profile: Profile, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = Lookup::new(&lookup);
        let mut c = Self::new(profile);
        if let Some(prefix) = env.get("CACHE_KEY_PREFIX") {
            c.key_prefix = prefix.trim().to_owned();
        }
        if let Some(n) = env.number("CACHE_MAX_VALUE_BYTES")? {
            c.max_value_bytes = n;
        }
        if let Some(n) = env.number(MAX_ENTRIES_VAR)? {
            c.max_entries = Some(n);
        }
        if let Some(n) = env.number(MAX_BYTES_VAR)? {
            c.max_bytes = Some(n);
        }
        c.validate()?;
        Ok(c)
    }

    /// Sets the global key prefix.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the largest accepted value size.
    pub fn with_max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// Bounds the number of entries.
    pub fn with_max_entries(mut self, n: usize) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// Bounds the bytes held.
    pub fn with_max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = Some(n);
        self
    }

    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        validate_prefix(&self.key_prefix)?;
        if self.max_value_bytes == 0 {
            return Err(Error::config("CACHE_MAX_VALUE_BYTES", "must be at least 1"));
        }
        if self.max_entries == Some(0) {
            return Err(Error::config(MAX_ENTRIES_VAR, "must be at least 1"));
        }
        if self.max_bytes == Some(0) {
            return Err(Error::config(MAX_BYTES_VAR, "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_come_from_the_environment() {
        let vars = |name: &str| match name {
            "CACHE_MEMORY_MAX_ENTRIES" => Some("50000".to_owned()),
            "CACHE_MEMORY_MAX_BYTES" => Some(" 268435456 ".to_owned()),
            _ => None,
        };
        let c = MemoryConfig::from_lookup(Profile::Production, vars).unwrap();
        assert_eq!(c.max_entries, Some(50_000));
        assert_eq!(c.max_bytes, Some(256 * 1024 * 1024));
        // Blank is unset; zero and garbage are refused, naming the variable.
        let blank = |name: &str| {
            [MAX_ENTRIES_VAR, MAX_BYTES_VAR]
                .contains(&name)
                .then(|| "  ".to_owned())
        };
        let c = MemoryConfig::from_lookup(Profile::Production, blank).unwrap();
        assert_eq!((c.max_entries, c.max_bytes), (None, None));
        for (var, value) in [
            ("CACHE_MEMORY_MAX_ENTRIES", "0"),
            ("CACHE_MEMORY_MAX_BYTES", "0"),
            ("CACHE_MEMORY_MAX_ENTRIES", "lots"),
            ("CACHE_MEMORY_MAX_BYTES", "-1"),
        ] {
            let err = MemoryConfig::from_lookup(Profile::Production, |n: &str| {
                (n == var).then(|| value.to_owned())
            })
            .unwrap_err();
            assert!(err.to_string().contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn profile_defaults_environment_and_errors() {
        assert_eq!(MemoryConfig::new(Profile::Development).key_prefix, "dev");
        assert_eq!(MemoryConfig::new(Profile::Staging).key_prefix, "staging");
        assert_eq!(MemoryConfig::new(Profile::Production).key_prefix, "");
        assert_eq!(
            MemoryConfig::default(),
            MemoryConfig::new(Profile::Development)
        );

        let env = |name: &str| match name {
            "CACHE_KEY_PREFIX" => Some(" shop ".to_owned()),
            "CACHE_MAX_VALUE_BYTES" => Some("1024".to_owned()),
            _ => None,
        };
        let c = MemoryConfig::from_lookup(Profile::Production, env).unwrap();
        assert_eq!(
            c,
            MemoryConfig::new(Profile::Production)
                .with_key_prefix("shop")
                .with_max_value_bytes(1024)
        );

        for (name, value) in [
            ("CACHE_KEY_PREFIX", "a*"),
            ("CACHE_MAX_VALUE_BYTES", "0"),
            ("CACHE_MAX_VALUE_BYTES", "lots"),
        ] {
            let err = MemoryConfig::from_lookup(Profile::Production, |n: &str| {
                (n == name).then(|| value.to_owned())
            })
            .unwrap_err();
            assert!(
                matches!(&err, Error::Config { setting, .. } if setting == name),
                "{name}={value}: {err}"
            );
        }
        assert!(MemoryConfig::default()
            .with_max_entries(0)
            .validate()
            .is_err());
        assert!(MemoryConfig::default()
            .with_max_bytes(0)
            .validate()
            .is_err());
    }
}
