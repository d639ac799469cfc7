//! What every layer's settings share: the deployment [`Profile`], reading settings by name from the
//! environment or any other source ([`Lookup`]), the value formats (durations, numbers, flags), and
//! [`redact_url`] for messages that mention a URL.
//!
//! The settings themselves live next to what they configure: the Redis backend's in
//! `cache_redis::RedisConfig`, the in-memory backend's in `cache_memory::MemoryConfig`, the cache
//! manager's in `cache_domain::CacheConfig`, the session manager's in `sessions::SessionConfig`;
//! the `cachekit` facade composes them into one `cachekit::Config` read from one environment.
//! Every setting, its default and its environment variable are listed in `docs/operations.md`.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::config::{Lookup, Profile};
//!
//! let env = |name: &str| match name {
//!     "CACHE_PROFILE" => Some("prod".to_owned()),
//!     "REDIS_RESPONSE_TIMEOUT" => Some("250ms".to_owned()),
//!     "REDIS_POOL_MAX_OPEN" => Some(" ".to_owned()), // blank counts as unset
//!     _ => None,
//! };
//! let lookup = Lookup::new(&env);
//! assert_eq!(Profile::from_lookup(lookup)?, Profile::Production);
//! assert_eq!(lookup.duration("REDIS_RESPONSE_TIMEOUT")?, Some(Duration::from_millis(250)));
//! assert_eq!(lookup.number::<u64>("REDIS_POOL_MAX_OPEN")?, None);
//! # Ok::<(), cache_core::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// The environment variable that picks the [`Profile`].
pub const PROFILE_ENV: &str = "CACHE_PROFILE";

/// A deployment profile: picks defaults suited to the environment, for every part at once (the
/// backends' timeouts and pool, the key prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Profile {
    /// Local development: generous timeouts (a debugger may pause Redis), small pool, `dev` prefix.
    #[default]
    Development,
    /// Staging: production settings with a `staging` prefix.
    Staging,
    /// Production: tight timeouts so an outage fails fast, pool of 20 (as in the seed design).
    Production,
}

impl Profile {
    /// Parses `development`/`dev`, `staging`/`stage`, `production`/`prod`. The error names
    /// [`PROFILE_ENV`].
    pub fn parse(s: &str) -> Result<Profile> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Profile::Development),
            "staging" | "stage" => Ok(Profile::Staging),
            "production" | "prod" => Ok(Profile::Production),
            other => Err(Error::config(
                PROFILE_ENV,
                format!("{other:?} is not a profile; use development, staging or production"),
            )),
        }
    }

    /// The profile `CACHE_PROFILE` names, [`Profile::Development`] when it is unset or blank.
    pub fn from_lookup(lookup: Lookup<'_>) -> Result<Profile> {
        lookup
            .get(PROFILE_ENV)
            .map_or(Ok(Profile::Development), |p| Profile::parse(&p))
    }

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Development => "development",
            Profile::Staging => "staging",
            Profile::Production => "production",
        }
    }

    /// The profile's default global key prefix: `dev` in development, `staging` in staging, none
    /// in production. Every backend starts from it, so that a developer's keys never land next to
    /// production's by accident.
    pub fn default_key_prefix(self) -> &'static str {
        match self {
            Profile::Development => "dev",
            Profile::Staging => "staging",
            Profile::Production => "",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings by name, from the process environment ([`Lookup::env`]) or any function (a map in
/// tests, command-line flags layered over the environment). A blank value counts as unset; the
/// typed readers parse with errors that name the variable ([`Error::Config`]).
///
/// Every `from_lookup` of the workspace takes the lookup *function* (`impl Fn(&str) ->
/// Option<String>`), so that one source serves every part; this type is the shared way to read it.
#[derive(Clone, Copy)]
pub struct Lookup<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl fmt::Debug for Lookup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The values may be secrets (REDIS_URL carries a password): never print them.
        f.write_str("Lookup(..)")
    }
}

impl<'a> Lookup<'a> {
    /// Reads through `get`.
    pub fn new(get: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Lookup { get }
    }

    /// The process environment (a variable that is not valid Unicode counts as unset).
    pub fn env() -> Lookup<'static> {
        Lookup { get: &process_env }
    }

    /// The value of `name`, `None` when it is unset or blank.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }

    /// `name` as a duration ([`parse_duration`]).
    pub fn duration(&self, name: &str) -> Result<Option<Duration>> {
        self.get(name).map(|v| parse_duration(name, &v)).transpose()
    }

    /// `name` as a number ([`parse_number`]).
    pub fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.get(name).map(|v| parse_number(name, &v)).transpose()
    }

    /// `name` as a flag ([`parse_bool`]).
    pub fn flag(&self, name: &str) -> Result<Option<bool>> {
        self.get(name).map(|v| parse_bool(name, &v)).transpose()
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parses a duration written as a number and a unit: `250ms`, `30s`, `15m`, `2h`, `1d`. A bare number
/// is seconds. The error names `setting`.
pub fn parse_duration(setting: &str, v: &str) -> Result<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let bad = || {
        Error::config(
            setting,
            format!("{v:?} is not a duration; write e.g. 250ms, 30s, 15m, 2h or 1d"),
        )
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        "d" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(d)
}

/// Parses a number (surrounding whitespace ignored). The error names `setting`.
pub fn parse_number<T: FromStr>(setting: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| Error::config(setting, format!("{v:?} is not a valid number")))
}

/// Parses a flag: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`, in any case. The error names
/// `setting`.
pub fn parse_bool(setting: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(
            setting,
            format!("{v:?} is not true or false"),
        )),
    }
}

/// The URL with its password replaced by `***`, for messages, logs, `Debug` output and reports:
/// the password of the user part (`redis://user:secret@host` → `redis://user:***@host`, also
/// without a scheme, and also when the password itself holds an unencoded `@`, `/`, `?` or `#`),
/// and `pass` / `password` query parameters (`redis+unix:///sock?pass=secret`).
///
/// Where the user part ends is ambiguous when the only `@` comes after a `?` (a password holding
/// `?`, or a query value holding `@`): then everything before that `@` is hidden *and* the rest is
/// read as query parameters, so neither reading leaks a password (the host may be hidden too).
///
/// ```
/// use cache_core::config::redact_url;
/// assert_eq!(redact_url("rediss://app:s3cret@h:6380/0"), "rediss://app:***@h:6380/0");
/// assert_eq!(redact_url("redis://:s3cret@h"), "redis://:***@h");
/// assert_eq!(redact_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"), "redis+unix:///run/redis.sock?db=1&pass=***");
/// assert_eq!(redact_url(":s3cret@10.0.0.1:7000"), ":***@10.0.0.1:7000");
/// assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    let before_query = rest.split_once('?').map_or(rest, |(b, _)| b);
    // The user part: up to the last `@` before the query, or, when there is none, up to the last
    // `@` at all (the ambiguous case above). The last `@`: a password with an unencoded `@` stays
    // hidden.
    let (auth, tail, tail_is_query) = match before_query.rsplit_once('@') {
        Some((auth, _)) => (Some(auth), &rest[auth.len() + 1..], false),
        None => match rest.rsplit_once('@') {
            Some((auth, tail)) => (Some(auth), tail, !tail.contains('?')),
            None => (None, rest, false),
        },
    };
    if let Some(auth) = auth {
        if let Some((user, _)) = auth.split_once(':') {
            // A `?` in the "user" means the split above guessed: hide all of it.
            if !user.contains('?') {
                out.push_str(user);
                out.push(':');
            }
        }
        out.push_str("***@");
    }
    let (base, query) = if tail_is_query {
        ("", Some(tail))
    } else {
        match tail.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (tail, None),
        }
    };
    out.push_str(base);
    if let Some(query) = query {
        if !tail_is_query {
            out.push('?');
        }
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _))
                    if name.eq_ignore_ascii_case("pass")
                        || name.eq_ignore_ascii_case("password") =>
                {
                    out.push_str(name);
                    out.push_str("=***");
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn profiles() {
        let none = env(&[]);
        assert_eq!(
            Profile::from_lookup(Lookup::new(&none)).unwrap(),
            Profile::Development
        );
        let blank = env(&[("CACHE_PROFILE", "  ")]);
        assert_eq!(
            Profile::from_lookup(Lookup::new(&blank)).unwrap(),
            Profile::Development
        );
        for (text, profile) in [
            ("dev", Profile::Development),
            ("Stage", Profile::Staging),
            (" production ", Profile::Production),
        ] {
            assert_eq!(Profile::parse(text).unwrap(), profile);
            assert_eq!(Profile::parse(profile.name()).unwrap(), profile);
        }
        let bad = env(&[("CACHE_PROFILE", "qa")]);
        let err = Profile::from_lookup(Lookup::new(&bad)).unwrap_err();
        assert!(
            matches!(&err, Error::Config { setting, .. } if setting == "CACHE_PROFILE"),
            "{err}"
        );
        assert_eq!(Profile::Production.default_key_prefix(), "");
        assert_eq!(Profile::Staging.to_string(), "staging");
    }

    #[test]
    fn typed_readers_name_the_variable() {
        let e = env(&[("D", "fast"), ("N", "-1"), ("F", "maybe"), ("OK", " 12 ")]);
        let lookup = Lookup::new(&e);
        for err in [
            lookup.duration("D").unwrap_err(),
            lookup.number::<u32>("N").unwrap_err(),
            lookup.flag("F").unwrap_err(),
        ] {
            assert_eq!(err.kind(), crate::ErrorKind::Config);
        }
        assert!(lookup.duration("D").unwrap_err().to_string().contains('D'));
        assert_eq!(lookup.number::<u32>("OK").unwrap(), Some(12));
        assert_eq!(
            lookup.duration("OK").unwrap(),
            Some(Duration::from_secs(12))
        );
        assert_eq!(lookup.number::<u32>("MISSING").unwrap(), None);
        assert_eq!(format!("{lookup:?}"), "Lookup(..)");
    }

    #[test]
    fn durations() {
        for (text, d) in [
            ("250ms", Duration::from_millis(250)),
            ("30", Duration::from_secs(30)),
            ("15m", Duration::from_secs(900)),
            ("15min", Duration::from_secs(900)),
            ("2h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86_400)),
        ] {
            assert_eq!(parse_duration("X", text).unwrap(), d, "{text}");
        }
        for bad in ["1w", "", "ms", "-1s", "99999999999999999999d"] {
            assert!(parse_duration("X", bad).is_err(), "{bad}");
        }
        assert!(parse_bool("X", "ON").unwrap());
        assert!(!parse_bool("X", "0").unwrap());
    }

    #[test]
    fn redaction_hides_every_password_form() {
        for (url, redacted) in [
            ("redis://u:secret@h:1", "redis://u:***@h:1"),
            ("redis://:secret@h:1/0", "redis://:***@h:1/0"),
            ("rediss://:secret@h:1", "rediss://:***@h:1"),
            ("redis://secret@h:1", "redis://***@h:1"),
            ("u:secret@h:1", "u:***@h:1"),
            (":secret@h:7000", ":***@h:7000"),
            ("redis://u:p@ss:secret@h:1", "redis://u:***@h:1"),
            // A password holding `/`, `?` or `#` unencoded.
            ("redis://u:p/w?secret#x@h:1", "redis://u:***@h:1"),
            ("redis://u:secret?x@h:1/2", "redis://u:***@h:1/2"),
            ("redis://:se#cr/et@h:1", "redis://:***@h:1"),
            ("unix:///s.sock?pass=secret", "unix:///s.sock?pass=***"),
            (
                "redis+unix:///s.sock?db=2&PASSWORD=secret&user=u",
                "redis+unix:///s.sock?db=2&PASSWORD=***&user=u",
            ),
            // An `@` in a query value: the password parameter after it is still hidden.
            (
                "redis+unix:///s.sock?user=a@b&pass=secret",
                "redis+unix://***@b&pass=***",
            ),
            (
                "redis://u:secret@h:1/0?user=a@b&pass=secret",
                "redis://u:***@h:1/0?user=a@b&pass=***",
            ),
            ("redis://h:1", "redis://h:1"),
            ("redis://h:1/0?db=1", "redis://h:1/0?db=1"),
            ("h:1", "h:1"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
            assert!(!redact_url(url).contains("secret"), "{url}");
        }
    }
}
