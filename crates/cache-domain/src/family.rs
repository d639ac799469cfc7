//! The cache families: one table (`TABLE`) that defines each family once (name, key prefix, id
//! rule, default TTL, environment variable), and the only functions that turn a family and an id
//! into a store key (`data_key`) or a `SCAN` pattern (`pattern`).
//!
//! | family | key | id | default TTL | override |
//! |---|---|---|---:|---|
//! | [`Family::User`] | `user:{user_id}` | 1 to 256 bytes | 1 h | `CACHE_TTL_USER` |
//! | [`Family::UserKeywords`] | `keyword:user:{user_id}` | 1 to 256 bytes | 30 min | `CACHE_TTL_USER_KEYWORDS` |
//! | [`Family::KeywordPosts`] | `post:keyword:{keyword_id}` | 1 to 256 bytes | 15 min | `CACHE_TTL_KEYWORD_POSTS` |
//! | [`Family::KeywordTrends`] | `trend:keyword:{keyword_id}` | 1 to 256 bytes | 30 min | `CACHE_TTL_KEYWORD_TRENDS` |
//! | [`Family::CrawlStatus`] | `crawl:status:{task_id}` | 1 to 256 bytes | 1 h | `CACHE_TTL_CRAWL_STATUS` |
//! | [`Family::Content`] | `content:{content_id}` | 1 to 256 bytes | 2 h | `CACHE_TTL_CONTENT` |
//! | [`Family::DeployStatus`] | `deploy:status:{deployment_id}` | 1 to 256 bytes | 24 h | `CACHE_TTL_DEPLOY_STATUS` |
//! | [`Family::Metrics`] | `metrics:{type}:{date}` | `TYPE:DATE`, type 1 to 192 bytes, date 1 to 64 | 5 min | `CACHE_TTL_METRICS` |
//!
//! Why these TTLs: the first six are the seed's. Deployment status keeps 24 h because a deployment is
//! written at every step and read long after it ends ("did last night's deploy go through?");
//! metrics keep 5 min because today's figures change all the time and dashboards must not lag by
//! more than a few minutes, while past days are cheap to recompute.
//!
//! # Keys
//!
//! A value of family `f` for id `i` lives at `{prefix}{escape_id(i)}` while the family's namespace
//! version is 0 (`user:42`, the documented schema key), and at `{prefix}v{n}:{escape_id(i)}` once it
//! is `n > 0` (`user:v3:42`). A metrics id `TYPE:DATE` is split at its first `:` and each part is
//! escaped on its own (`metrics:api:2026-11-01`), so a date may contain `:` and a type may not.
//! Escaped ids never contain `:` (see [`cache_core::keys::escape_id`]), so the two forms cannot
//! collide and no id reaches into another family or acts as a glob. The manager also writes
//! `nsversion:{family}` (`version_key`) and, with the lease enabled, `lease:{data key}`
//! (`lease_key`).
//!
//! The id limits are chosen so that no accepted id produces a key over the store's
//! [`MAX_KEY_BYTES`], at any version and with the lease prefix: a compile-time check below the
//! table enforces it.
//!
//! The session families (`session:{handle}`, `sessions:user:{user_id}`) are not here: their keys
//! belong to the session manager, and the cache manager cannot name them, so a cache call can never
//! overwrite a session.

use std::fmt::{self, Write as _};
use std::time::Duration;

use cache_core::keys::{escape_id, escape_id_into, glob_escape, Key, MAX_ID_BYTES};
use cache_core::store::MAX_KEY_BYTES;
use cache_core::{Error, Result};

/// A family of cached data. Each has a key layout, an id rule and a default TTL: see the
/// [module table](self).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Family {
    /// A user's data: `user:{user_id}`.
    User,
    /// A user's keywords: `keyword:user:{user_id}`.
    UserKeywords,
    /// A keyword's posts: `post:keyword:{keyword_id}`.
    KeywordPosts,
    /// A keyword's trend analysis (TF-IDF results): `trend:keyword:{keyword_id}`.
    KeywordTrends,
    /// A crawl task's status: `crawl:status:{task_id}`.
    CrawlStatus,
    /// Generated content: `content:{content_id}`.
    Content,
    /// A deployment's status: `deploy:status:{deployment_id}`.
    DeployStatus,
    /// Metrics of one type and date: `metrics:{type}:{date}`, ids written `TYPE:DATE`.
    Metrics,
}

/// How a family's ids are written and how long each part may be (in bytes, before escaping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdRule {
    /// One part, escaped as a whole.
    Single {
        /// The part's name in the key template (`user_id`).
        name: &'static str,
        /// Its longest accepted length.
        max_bytes: usize,
    },
    /// Two parts, given as `FIRST:SECOND` (split at the first `:`) and escaped separately.
    Pair {
        /// The first part's name in the key template (`type`).
        first: &'static str,
        /// Its longest accepted length.
        max_first_bytes: usize,
        /// The second part's name in the key template (`date`).
        second: &'static str,
        /// Its longest accepted length.
        max_second_bytes: usize,
    },
}

/// One row of [`TABLE`].
#[derive(Debug)]
struct Spec {
    family: Family,
    name: &'static str,
    /// The literal part of every key before the version and the id.
    prefix: &'static str,
    id: IdRule,
    default_ttl: Duration,
    ttl_env_var: &'static str,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

const fn single(name: &'static str) -> IdRule {
    IdRule::Single {
        name,
        max_bytes: MAX_ID_BYTES,
    }
}

const fn ttl(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Every cache family, once, in schema order (the order of [`Family`], checked below).
const TABLE: [Spec; 8] = [
    Spec {
        family: Family::User,
        name: "user",
        prefix: "user:",
        id: single("user_id"),
        default_ttl: ttl(HOUR),
        ttl_env_var: "CACHE_TTL_USER",
    },
    Spec {
        family: Family::UserKeywords,
        name: "user_keywords",
        prefix: "keyword:user:",
        id: single("user_id"),
        default_ttl: ttl(30 * MINUTE),
        ttl_env_var: "CACHE_TTL_USER_KEYWORDS",
    },
    Spec {
        family: Family::KeywordPosts,
        name: "keyword_posts",
        prefix: "post:keyword:",
        id: single("keyword_id"),
        default_ttl: ttl(15 * MINUTE),
        ttl_env_var: "CACHE_TTL_KEYWORD_POSTS",
    },
    Spec {
        family: Family::KeywordTrends,
        name: "keyword_trends",
        prefix: "trend:keyword:",
        id: single("keyword_id"),
        default_ttl: ttl(30 * MINUTE),
        ttl_env_var: "CACHE_TTL_KEYWORD_TRENDS",
    },
    Spec {
        family: Family::CrawlStatus,
        name: "crawl_status",
        prefix: "crawl:status:",
        id: single("task_id"),
        default_ttl: ttl(HOUR),
        ttl_env_var: "CACHE_TTL_CRAWL_STATUS",
    },
    Spec {
        family: Family::Content,
        name: "content",
        prefix: "content:",
        id: single("content_id"),
        default_ttl: ttl(2 * HOUR),
        ttl_env_var: "CACHE_TTL_CONTENT",
    },
    Spec {
        family: Family::DeployStatus,
        name: "deploy_status",
        prefix: "deploy:status:",
        id: single("deployment_id"),
        default_ttl: ttl(24 * HOUR),
        ttl_env_var: "CACHE_TTL_DEPLOY_STATUS",
    },
    Spec {
        family: Family::Metrics,
        name: "metrics",
        prefix: "metrics:",
        // Together no longer than a single id: a metric type is a short name and a date a date.
        id: IdRule::Pair {
            first: "type",
            max_first_bytes: 192,
            second: "date",
            max_second_bytes: 64,
        },
        default_ttl: ttl(5 * MINUTE),
        ttl_env_var: "CACHE_TTL_METRICS",
    },
];

/// `lease:` + data key: the longest thing the manager builds from a data key.
const LEASE_PREFIX: &str = "lease:";

/// The longest version segment, `v{u64::MAX}:`.
const LONGEST_VERSION: usize = "v18446744073709551615:".len();

/// The longest key the manager can build for a family: lease prefix, family prefix, version, and
/// every id byte escaped to three.
const fn longest_key(spec: &Spec) -> usize {
    let id = match spec.id {
        IdRule::Single { max_bytes, .. } => 3 * max_bytes,
        IdRule::Pair {
            max_first_bytes,
            max_second_bytes,
            ..
        } => 3 * max_first_bytes + 1 + 3 * max_second_bytes,
    };
    LEASE_PREFIX.len() + spec.prefix.len() + LONGEST_VERSION + id
}

// The table is in `Family` order (so `family as usize` indexes it), every id limit is within what
// `escape_id` accepts, and no accepted id can produce a key the store would refuse.
const _: () = {
    let mut i = 0;
    while i < TABLE.len() {
        let spec = &TABLE[i];
        assert!(spec.family as usize == i, "TABLE is not in Family order");
        match spec.id {
            IdRule::Single { max_bytes, .. } => assert!(max_bytes <= MAX_ID_BYTES),
            IdRule::Pair {
                max_first_bytes,
                max_second_bytes,
                ..
            } => assert!(max_first_bytes <= MAX_ID_BYTES && max_second_bytes <= MAX_ID_BYTES),
        }
        assert!(
            longest_key(spec) <= MAX_KEY_BYTES,
            "a family's longest key exceeds the store's key limit"
        );
        i += 1;
    }
};

impl Family {
    /// Every cache family, in schema order.
    pub const ALL: [Family; 8] = [
        Family::User,
        Family::UserKeywords,
        Family::KeywordPosts,
        Family::KeywordTrends,
        Family::CrawlStatus,
        Family::Content,
        Family::DeployStatus,
        Family::Metrics,
    ];

    /// The number of cache families.
    pub const COUNT: usize = TABLE.len();

    /// The family's key prefix (`user:`): what the near cache asks the store to track.
    pub(crate) fn key_prefix(self) -> &'static str {
        self.spec().prefix
    }

    fn spec(self) -> &'static Spec {
        &TABLE[self.index()]
    }

    /// The family's position in [`Family::ALL`] (and in the table).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The stable snake_case name (`user`, `keyword_posts`, ...), used in configuration, metrics
    /// labels, the version key and the CLI.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Parses [`Family::name`]; case-insensitive, `-` may stand for `_`.
    pub fn from_name(name: &str) -> Result<Family> {
        let norm = name.trim().to_ascii_lowercase().replace('-', "_");
        Family::ALL
            .into_iter()
            .find(|f| f.name() == norm)
            .ok_or_else(|| {
                let names: Vec<_> = Family::ALL.iter().map(|f| f.name()).collect();
                Error::invalid_input(format!(
                    "unknown cache family {name:?}; expected one of {} (session keys belong to \
                     the session manager)",
                    names.join(", ")
                ))
            })
    }

    /// The key template as documented (`user:{user_id}`, `metrics:{type}:{date}`).
    pub fn template(self) -> String {
        let spec = self.spec();
        match spec.id {
            IdRule::Single { name, .. } => format!("{}{{{name}}}", spec.prefix),
            IdRule::Pair { first, second, .. } => {
                format!("{}{{{first}}}:{{{second}}}", spec.prefix)
            }
        }
    }

    /// How the family's ids are written and their length limits.
    pub fn id_rule(self) -> IdRule {
        self.spec().id
    }

    /// The TTL used when neither the configuration nor the call sets one.
    pub fn default_ttl(self) -> Duration {
        self.spec().default_ttl
    }

    /// The environment variable that overrides the family's TTL (`CACHE_TTL_USER`, ...).
    pub fn ttl_env_var(self) -> &'static str {
        self.spec().ttl_env_var
    }

    /// A glob pattern matching every key of the family, of every namespace version (`user:*`).
    pub fn all_keys_pattern(self) -> String {
        format!("{}*", self.spec().prefix)
    }

    /// Splits and checks an id of this family: the rule's number of parts, none empty, none over
    /// its limit. Every call of the manager checks its ids here before touching the store.
    pub(crate) fn parse_id(self, id: &str) -> Result<Id<'_>> {
        match self.spec().id {
            IdRule::Single { name, max_bytes } => {
                check_part(self, name, id, max_bytes)?;
                Ok(Id::One(id))
            }
            IdRule::Pair {
                first,
                max_first_bytes,
                second,
                max_second_bytes,
            } => {
                let (a, b) = id.split_once(':').ok_or_else(|| {
                    Error::invalid_input(format!(
                        "{self} id must be {}:{}, got {id:?}",
                        first.to_ascii_uppercase(),
                        second.to_ascii_uppercase()
                    ))
                })?;
                check_part(self, first, a, max_first_bytes)?;
                check_part(self, second, b, max_second_bytes)?;
                Ok(Id::Pair(a, b))
            }
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn check_part(family: Family, part: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid_input(format!(
            "{family} {part} must not be empty"
        )));
    }
    if value.len() > max {
        return Err(Error::invalid_input(format!(
            "{family} {part} is {} bytes, the limit is {max}",
            value.len()
        )));
    }
    Ok(())
}

/// An id checked by [`Family::parse_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Id<'a> {
    One(&'a str),
    Pair(&'a str, &'a str),
}

/// Which keys of a family [`FamilyCache::invalidate_matching`](crate::FamilyCache::invalidate_matching)
/// deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyMatch {
    /// Every key of the family, of every namespace version (`user:*`).
    All,
    /// Keys of the current version whose id starts with this text, taken literally: the text is
    /// escaped like an id, so `*` or `1?` match ids that start with those characters and nothing
    /// else. For [`Family::Metrics`], `"api:"` selects every date of metric type `api` and
    /// `"api:2026-11"` a month of it.
    IdPrefix(String),
}

/// The store key of `id` in `family` at namespace `version` (see the [module docs](self#keys)).
/// The only function that builds a data key.
pub(crate) fn data_key(family: Family, version: u64, id: Id<'_>) -> Result<Key> {
    let prefix = family.spec().prefix;
    let id_len = match id {
        Id::One(i) => i.len(),
        Id::Pair(a, b) => a.len() + 1 + b.len(),
    };
    let mut k = String::with_capacity(prefix.len() + LONGEST_VERSION + id_len);
    k.push_str(prefix);
    if version > 0 {
        // Writing to a String cannot fail.
        let _ = write!(k, "v{version}:");
    }
    match id {
        Id::One(i) => escape_id_into(&mut k, i)?,
        Id::Pair(a, b) => {
            escape_id_into(&mut k, a)?;
            k.push(':');
            escape_id_into(&mut k, b)?;
        }
    }
    Key::new(k)
}

/// The `SCAN` pattern of the keys `selection` names, `version` being the family's current namespace
/// version (only [`KeyMatch::IdPrefix`] depends on it). The only function that builds a pattern.
pub(crate) fn pattern(family: Family, selection: &KeyMatch, version: u64) -> Result<String> {
    let p = match selection {
        KeyMatch::All => return Ok(family.all_keys_pattern()),
        KeyMatch::IdPrefix(p) => p,
    };
    let escaped = match (family.spec().id, p.split_once(':')) {
        (IdRule::Pair { .. }, Some((first, second))) => {
            format!("{}:{}", escape_id(first)?, escape_prefix(second)?)
        }
        _ => escape_prefix(p)?,
    };
    let mut pattern = String::from(family.spec().prefix);
    if version > 0 {
        let _ = write!(pattern, "v{version}:");
    }
    // escape_id output has no glob metacharacters; glob_escape is a second guard.
    pattern.push_str(&glob_escape(&escaped));
    pattern.push('*');
    Ok(pattern)
}

/// Whether `key`, matched by [`pattern`]`(family, selection, version)`, is a data key of that
/// version. Only a selection at version 0 needs the check: version-0 keys carry no `v{n}:`
/// segment, so `user:v*` (ids starting with `v`) also matches `user:v3:…`, a key of another
/// version. An escaped id has no `:`, so a key of the selected version has exactly as many `:`
/// after the family prefix as its id rule (none for one id, one for a pair).
pub(crate) fn selects(family: Family, selection: &KeyMatch, version: u64, key: &str) -> bool {
    if version > 0 || matches!(selection, KeyMatch::All) {
        return true;
    }
    let id_colons = match family.spec().id {
        IdRule::Single { .. } => 0,
        IdRule::Pair { .. } => 1,
    };
    key.strip_prefix(family.spec().prefix)
        .is_some_and(|rest| rest.matches(':').count() == id_colons)
}

/// The escaped form of a possibly empty id prefix.
fn escape_prefix(p: &str) -> Result<String> {
    if p.is_empty() {
        Ok(String::new())
    } else {
        escape_id(p)
    }
}

/// `nsversion:{family}`: where the family's namespace version is stored.
pub(crate) fn version_key(family: Family) -> String {
    format!("nsversion:{}", family.name())
}

/// `lease:{data key}`: the cross-process lease of a cache-aside load.
pub(crate) fn lease_key(data_key: &str) -> String {
    format!("{LEASE_PREFIX}{data_key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(family: Family, version: u64, id: &str) -> String {
        data_key(family, version, family.parse_id(id).unwrap())
            .unwrap()
            .into_string()
    }

    #[test]
    fn version_zero_keys_are_the_schema_keys_byte_for_byte() {
        // The keys of the first version (built by cache_core's former KeySchema), written out:
        // existing data must stay reachable.
        assert_eq!(key(Family::User, 0, "42"), "user:42");
        assert_eq!(key(Family::UserKeywords, 0, "42"), "keyword:user:42");
        assert_eq!(key(Family::KeywordPosts, 0, "7"), "post:keyword:7");
        assert_eq!(key(Family::KeywordTrends, 0, "7"), "trend:keyword:7");
        assert_eq!(key(Family::CrawlStatus, 0, "t1"), "crawl:status:t1");
        assert_eq!(key(Family::Content, 0, "c"), "content:c");
        assert_eq!(key(Family::DeployStatus, 0, "d"), "deploy:status:d");
        assert_eq!(
            key(Family::Metrics, 0, "api:2026-11-26"),
            "metrics:api:2026-11-26"
        );
        assert_eq!(key(Family::User, 0, "a:b*"), "user:a%3Ab%2A");
        assert_eq!(key(Family::User, 0, "a.b-c_d@e+f=g"), "user:a.b-c_d@e+f=g");
        assert_eq!(key(Family::Metrics, 0, "api:12:00"), "metrics:api:12%3A00");
        // After a bump.
        assert_eq!(key(Family::User, 3, "42"), "user:v3:42");
        assert_eq!(key(Family::Metrics, 2, "api:d"), "metrics:v2:api:d");
        assert_eq!(key(Family::User, 1, "*"), "user:v1:%2A");
        for f in Family::ALL {
            assert_eq!(version_key(f), format!("nsversion:{f}"));
            assert!(f
                .template()
                .starts_with(f.all_keys_pattern().trim_end_matches('*')));
        }
        assert_eq!(lease_key("user:v1:42"), "lease:user:v1:42");
    }

    #[test]
    fn ids_are_checked_against_the_family_rule() {
        assert!(Family::User.parse_id("").is_err());
        assert!(Family::User.parse_id(&"x".repeat(MAX_ID_BYTES)).is_ok());
        assert!(Family::User
            .parse_id(&"x".repeat(MAX_ID_BYTES + 1))
            .is_err());
        assert!(Family::Metrics.parse_id("nodate").is_err());
        assert!(Family::Metrics.parse_id("api:").is_err());
        assert!(Family::Metrics.parse_id(":2026").is_err());
        assert!(Family::Metrics
            .parse_id(&format!("{}:d", "t".repeat(193)))
            .is_err());
        assert!(Family::Metrics
            .parse_id(&format!("t:{}", "d".repeat(65)))
            .is_err());
        assert_eq!(
            Family::Metrics.parse_id("api:2026-01-01:x").unwrap(),
            Id::Pair("api", "2026-01-01:x")
        );
        // The longest ids, fully escaped, at the highest version, with the lease prefix, fit.
        for f in Family::ALL {
            let id = match f.id_rule() {
                IdRule::Single { max_bytes, .. } => "*".repeat(max_bytes),
                IdRule::Pair {
                    max_first_bytes,
                    max_second_bytes,
                    ..
                } => format!(
                    "{}:{}",
                    "*".repeat(max_first_bytes),
                    "*".repeat(max_second_bytes)
                ),
            };
            let k = key(f, u64::MAX, &id);
            assert!(lease_key(&k).len() <= MAX_KEY_BYTES, "{f}");
        }
    }

    #[test]
    fn patterns_escape_ids_and_follow_the_version() {
        let all = KeyMatch::All;
        let prefix = |p: &str| KeyMatch::IdPrefix(p.into());
        assert_eq!(pattern(Family::User, &all, 3).unwrap(), "user:*");
        assert_eq!(
            pattern(Family::User, &prefix("1?"), 0).unwrap(),
            "user:1%3F*"
        );
        assert_eq!(
            pattern(Family::User, &prefix("*"), 2).unwrap(),
            "user:v2:%2A*"
        );
        assert_eq!(
            pattern(Family::Metrics, &prefix("api:"), 0).unwrap(),
            "metrics:api:*"
        );
        assert_eq!(
            pattern(Family::Metrics, &prefix("api:2026-11"), 1).unwrap(),
            "metrics:v1:api:2026-11*"
        );
        assert_eq!(
            pattern(Family::Content, &prefix(""), 0).unwrap(),
            "content:*"
        );
    }
}
