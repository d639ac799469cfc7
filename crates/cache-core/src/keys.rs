//! The key schema: one typed builder per key family, and the escaping that keeps user input in its place.
//!
//! Keys built here are *relative*: the store adds its global prefix (see [`crate::Store`]), so two
//! services or tenants with different prefixes never see each other's keys (a prefix is one name
//! without `:`: see [`validate_prefix`]), and no code path can forget the prefix.
//!
//! | family | key | built by |
//! |---|---|---|
//! | user data | `user:{user_id}` | [`KeySchema::user`] |
//! | session | `session:{handle}` | [`KeySchema::session`] (the handle is a hash of the token, never the token) |
//! | session index | `sessions:user:{user_id}` | [`KeySchema::session_index`] |
//! | user keywords | `keyword:user:{user_id}` | [`KeySchema::user_keywords`] |
//! | keyword posts | `post:keyword:{keyword_id}` | [`KeySchema::keyword_posts`] |
//! | trend data | `trend:keyword:{keyword_id}` | [`KeySchema::keyword_trends`] |
//! | crawl status | `crawl:status:{task_id}` | [`KeySchema::crawl_status`] |
//! | content | `content:{content_id}` | [`KeySchema::content`] |
//! | deployment status | `deploy:status:{deployment_id}` | [`KeySchema::deploy_status`] |
//! | metrics | `metrics:{type}:{date}` | [`KeySchema::metrics`] |
//!
//! # Escaping
//!
//! Every id part goes through [`escape_id`]: ASCII letters, digits and `-_.@+=` are kept, every
//! other byte (including `:`, `*`, `?`, `[`, `]`, `\`, `{`, `}`, `%` and whitespace) becomes `%XX`.
//! The escaping is injective, so two different ids never share a key; an escaped id contains no `:`,
//! so it cannot forge a key of another family; and it contains no glob metacharacter, so a pattern
//! built from it ([`Family::pattern_for`]) matches exactly what it says.

use std::fmt;

use crate::error::{Error, Result};

/// The longest id part accepted, in bytes before escaping.
pub const MAX_ID_BYTES: usize = 256;

/// A key family of the schema.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Family {
    /// `user:{user_id}`.
    User,
    /// `session:{handle}`.
    Session,
    /// `sessions:user:{user_id}`: the per-user index of sessions.
    SessionIndex,
    /// `keyword:user:{user_id}`.
    UserKeywords,
    /// `post:keyword:{keyword_id}`.
    KeywordPosts,
    /// `trend:keyword:{keyword_id}`.
    KeywordTrends,
    /// `crawl:status:{task_id}`.
    CrawlStatus,
    /// `content:{content_id}`.
    Content,
    /// `deploy:status:{deployment_id}`.
    DeployStatus,
    /// `metrics:{type}:{date}`.
    Metrics,
}

impl Family {
    /// Every family, in schema order.
    pub const ALL: [Family; 10] = [
        Family::User,
        Family::Session,
        Family::SessionIndex,
        Family::UserKeywords,
        Family::KeywordPosts,
        Family::KeywordTrends,
        Family::CrawlStatus,
        Family::Content,
        Family::DeployStatus,
        Family::Metrics,
    ];

    /// The family's stable snake_case name (`user`, `keyword_posts`, ...), used in configuration
    /// (`CACHE_TTL_USER`), metrics labels and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Family::User => "user",
            Family::Session => "session",
            Family::SessionIndex => "session_index",
            Family::UserKeywords => "user_keywords",
            Family::KeywordPosts => "keyword_posts",
            Family::KeywordTrends => "keyword_trends",
            Family::CrawlStatus => "crawl_status",
            Family::Content => "content",
            Family::DeployStatus => "deploy_status",
            Family::Metrics => "metrics",
        }
    }

    /// Parses [`Family::name`] (also accepts `-` for `_`).
    pub fn from_name(name: &str) -> Result<Family> {
        let norm = name.trim().to_ascii_lowercase().replace('-', "_");
        Family::ALL
            .into_iter()
            .find(|f| f.name() == norm)
            .ok_or_else(|| {
                let names: Vec<_> = Family::ALL.iter().map(|f| f.name()).collect();
                Error::invalid_input(format!(
                    "unknown family {name:?}; expected one of {}",
                    names.join(", ")
                ))
            })
    }

    /// The literal part of the family's keys before the id (`user:`, `post:keyword:`, ...).
    pub fn key_prefix(self) -> &'static str {
        match self {
            Family::User => "user:",
            Family::Session => "session:",
            Family::SessionIndex => "sessions:user:",
            Family::UserKeywords => "keyword:user:",
            Family::KeywordPosts => "post:keyword:",
            Family::KeywordTrends => "trend:keyword:",
            Family::CrawlStatus => "crawl:status:",
            Family::Content => "content:",
            Family::DeployStatus => "deploy:status:",
            Family::Metrics => "metrics:",
        }
    }

    /// The key template as documented (`user:{user_id}`).
    pub fn template(self) -> &'static str {
        match self {
            Family::User => "user:{user_id}",
            Family::Session => "session:{handle}",
            Family::SessionIndex => "sessions:user:{user_id}",
            Family::UserKeywords => "keyword:user:{user_id}",
            Family::KeywordPosts => "post:keyword:{keyword_id}",
            Family::KeywordTrends => "trend:keyword:{keyword_id}",
            Family::CrawlStatus => "crawl:status:{task_id}",
            Family::Content => "content:{content_id}",
            Family::DeployStatus => "deploy:status:{deployment_id}",
            Family::Metrics => "metrics:{type}:{date}",
        }
    }

    /// A glob pattern matching every key of the family (`user:*`).
    pub fn pattern(self) -> String {
        format!("{}*", self.key_prefix())
    }

    /// A glob pattern matching the family's key for one id exactly (the id is escaped, so `*` as a user
    /// id matches the user whose id is `*` and nothing else).
    pub fn pattern_for(self, id: &str) -> Result<String> {
        Ok(format!("{}{}", self.key_prefix(), escape_id(id)?))
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated, relative store key. Build with [`KeySchema`] or [`Key::new`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Wraps a raw relative key after checking it against the store contract ([`crate::store::check_key`]).
    /// No escaping is applied: use the [`KeySchema`] builders for keys that contain user input.
    pub fn new(raw: impl Into<String>) -> Result<Key> {
        let raw = raw.into();
        crate::store::check_key(&raw)?;
        Ok(Key(raw))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The typed key builders. Stateless: the global prefix belongs to the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeySchema;

impl KeySchema {
    fn build(family: Family, id: &str) -> Result<Key> {
        Ok(Key(format!("{}{}", family.key_prefix(), escape_id(id)?)))
    }

    /// `user:{user_id}`.
    pub fn user(user_id: &str) -> Result<Key> {
        Self::build(Family::User, user_id)
    }

    /// `session:{handle}`: `handle` is the non-secret session handle (a hash of the token).
    pub fn session(handle: &str) -> Result<Key> {
        Self::build(Family::Session, handle)
    }

    /// `sessions:user:{user_id}`: the sorted set indexing a user's sessions.
    pub fn session_index(user_id: &str) -> Result<Key> {
        Self::build(Family::SessionIndex, user_id)
    }

    /// `keyword:user:{user_id}`.
    pub fn user_keywords(user_id: &str) -> Result<Key> {
        Self::build(Family::UserKeywords, user_id)
    }

    /// `post:keyword:{keyword_id}`.
    pub fn keyword_posts(keyword_id: &str) -> Result<Key> {
        Self::build(Family::KeywordPosts, keyword_id)
    }

    /// `trend:keyword:{keyword_id}`.
    pub fn keyword_trends(keyword_id: &str) -> Result<Key> {
        Self::build(Family::KeywordTrends, keyword_id)
    }

    /// `crawl:status:{task_id}`.
    pub fn crawl_status(task_id: &str) -> Result<Key> {
        Self::build(Family::CrawlStatus, task_id)
    }

    /// `content:{content_id}`.
    pub fn content(content_id: &str) -> Result<Key> {
        Self::build(Family::Content, content_id)
    }

    /// `deploy:status:{deployment_id}`.
    pub fn deploy_status(deployment_id: &str) -> Result<Key> {
        Self::build(Family::DeployStatus, deployment_id)
    }

    /// `metrics:{type}:{date}`. Both parts are escaped.
    pub fn metrics(metric_type: &str, date: &str) -> Result<Key> {
        Ok(Key(format!(
            "{}{}:{}",
            Family::Metrics.key_prefix(),
            escape_id(metric_type)?,
            escape_id(date)?
        )))
    }

    /// The key of `family` for `id`. For [`Family::Metrics`], `id` is `type:date` with both parts
    /// escaped separately.
    pub fn for_family(family: Family, id: &str) -> Result<Key> {
        match family {
            Family::Metrics => {
                let (t, d) = id.split_once(':').ok_or_else(|| {
                    Error::invalid_input(format!("metrics id must be TYPE:DATE, got {id:?}"))
                })?;
                Self::metrics(t, d)
            }
            f => Self::build(f, id),
        }
    }
}

fn is_safe_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+' | b'=')
}

/// Escapes one id part of a key: see the [module documentation](self#escaping).
///
/// Errors with [`Error::InvalidInput`] when the id is empty or longer than [`MAX_ID_BYTES`].
///
/// ```
/// use cache_core::keys::escape_id;
/// assert_eq!(escape_id("42").unwrap(), "42");
/// assert_eq!(escape_id("a:b*").unwrap(), "a%3Ab%2A");
/// assert!(escape_id("").is_err());
/// ```
pub fn escape_id(id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid_input("id must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid_input(format!(
            "id is {} bytes, the limit is {MAX_ID_BYTES}",
            id.len()
        )));
    }
    if id.bytes().all(is_safe_id_byte) {
        return Ok(id.to_owned());
    }
    let mut out = String::with_capacity(id.len() * 3);
    for b in id.bytes() {
        if is_safe_id_byte(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 0xf) as usize]));
        }
    }
    Ok(out)
}

/// Reverses [`escape_id`]. Errors on malformed escapes.
pub fn unescape_id(escaped: &str) -> Result<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::invalid_input(format!("malformed escape in {escaped:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid_input(format!("{escaped:?} is not UTF-8")))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Escapes Redis glob metacharacters (`*`, `?`, `[`, `]`, `\`) so that `s` matches itself literally in
/// a [`crate::Store::scan`] pattern.
///
/// ```
/// use cache_core::keys::glob_escape;
/// assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
/// ```
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The longest global key prefix accepted, in bytes.
pub const MAX_PREFIX_BYTES: usize = 64;

fn is_prefix_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Validates a global key prefix (`CACHE_KEY_PREFIX`): empty, or **one name** of up to
/// [`MAX_PREFIX_BYTES`] ASCII letters, digits and `-_.`, with no `:` (and so no glob character, no
/// brace, no whitespace).
///
/// # Why one name: isolation by construction
///
/// A store keeps a relative key `k` as `{prefix}:{k}` on the backend. Because a prefix holds no
/// `:`, the text before the first `:` of a backend key *is* its prefix, and every pattern a store
/// sends (`{prefix}:{pattern}`, `{prefix}:*` for `flush_prefix`) starts with the literal
/// `{prefix}:` (a prefix has no glob character to escape). So for two different prefixes `N` and
/// `M`, no key, pattern, scan or flush of one can reach a key of the other: if `N` is a proper
/// prefix of `M`, the byte after `N` is `:` in `N`'s keys and a name byte in `M`'s.
///
/// Prefixes with `:` inside (`shop:user`) were accepted before and were *not* isolated: `shop`'s
/// pattern `user:*` became `shop:user:*`, which matched every key of `shop:user`. Nest with
/// [`sub_prefix`] instead (`shop.user`). The empty prefix keeps keys bare (`user:42`), which a
/// prefixed store's keys can look like, so it is for a database used by one application alone.
///
/// Errors with [`Error::Config`] naming `CACHE_KEY_PREFIX`.
///
/// ```
/// use cache_core::keys::validate_prefix;
/// assert!(validate_prefix("shop").is_ok());
/// assert!(validate_prefix("shop.user").is_ok());
/// let e = validate_prefix("shop:user").unwrap_err().to_string();
/// assert!(e.contains("CACHE_KEY_PREFIX") && e.contains("shop.user"), "{e}");
/// ```
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > MAX_PREFIX_BYTES {
        return Err(Error::config(
            "CACHE_KEY_PREFIX",
            format!(
                "prefix is {} bytes, the limit is {MAX_PREFIX_BYTES}",
                prefix.len()
            ),
        ));
    }
    if prefix.contains(':') {
        return Err(Error::config(
            "CACHE_KEY_PREFIX",
            format!(
                "{prefix:?} contains ':'; a prefix is one name (letters, digits, '-', '_', '.'), \
                 because a prefix with ':' is not isolated from its neighbours ({first:?} would \
                 reach the keys of {prefix:?}); replace ':' with '.' ({dotted:?}) and see the \
                 CHANGELOG for moving existing keys",
                first = prefix.split(':').next().unwrap_or_default(),
                dotted = prefix.replace(':', "."),
            ),
        ));
    }
    if !prefix.bytes().all(is_prefix_byte) {
        return Err(Error::config(
            "CACHE_KEY_PREFIX",
            format!(
                "{prefix:?} is not a valid prefix: use one name of letters, digits, '-', '_' \
                 and '.' (no ':', glob characters, braces or whitespace)"
            ),
        ));
    }
    Ok(())
}

/// The prefix of a scope inside `parent`: `{parent}.{scope}` (or `scope` alone when `parent` is
/// empty), a single name like every prefix, so the scope is isolated from its parent and from
/// every other prefix (see [`validate_prefix`]). `scope` must be a non-empty name of letters,
/// digits and `-_.`, and the result must fit [`MAX_PREFIX_BYTES`]; otherwise
/// [`Error::InvalidInput`].
///
/// The scope is a tenant of its own: its name is the joined text, so a store configured with the
/// prefix `shop.user` shares the keys of scope `user` of `shop`.
///
/// ```
/// use cache_core::keys::sub_prefix;
/// assert_eq!(sub_prefix("shop", "user").unwrap(), "shop.user");
/// assert_eq!(sub_prefix("", "user").unwrap(), "user");
/// assert!(sub_prefix("shop", "a:b").is_err());
/// ```
pub fn sub_prefix(parent: &str, scope: &str) -> Result<String> {
    if scope.is_empty() || !scope.bytes().all(is_prefix_byte) {
        return Err(Error::invalid_input(format!(
            "{scope:?} is not a valid scope: use a non-empty name of letters, digits, '-', '_' \
             and '.'"
        )));
    }
    let joined = if parent.is_empty() {
        scope.to_owned()
    } else {
        format!("{parent}.{scope}")
    };
    if joined.len() > MAX_PREFIX_BYTES {
        return Err(Error::invalid_input(format!(
            "the prefix of scope {scope:?} ({joined:?}) is {} bytes, the limit is \
             {MAX_PREFIX_BYTES}",
            joined.len()
        )));
    }
    // `parent` is a valid prefix (a store's own) and `scope` a valid name, so `joined` is one too.
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_builds_its_documented_key() {
        assert_eq!(KeySchema::user("42").unwrap().as_str(), "user:42");
        assert_eq!(KeySchema::session("ab").unwrap().as_str(), "session:ab");
        assert_eq!(
            KeySchema::session_index("42").unwrap().as_str(),
            "sessions:user:42"
        );
        assert_eq!(
            KeySchema::user_keywords("42").unwrap().as_str(),
            "keyword:user:42"
        );
        assert_eq!(
            KeySchema::keyword_posts("7").unwrap().as_str(),
            "post:keyword:7"
        );
        assert_eq!(
            KeySchema::keyword_trends("7").unwrap().as_str(),
            "trend:keyword:7"
        );
        assert_eq!(
            KeySchema::crawl_status("t1").unwrap().as_str(),
            "crawl:status:t1"
        );
        assert_eq!(KeySchema::content("c").unwrap().as_str(), "content:c");
        assert_eq!(
            KeySchema::deploy_status("d").unwrap().as_str(),
            "deploy:status:d"
        );
        assert_eq!(
            KeySchema::metrics("api", "2026-11-26").unwrap().as_str(),
            "metrics:api:2026-11-26"
        );
        for f in Family::ALL {
            assert_eq!(Family::from_name(f.name()).unwrap(), f);
            assert!(f.template().starts_with(f.key_prefix()));
        }
    }

    #[test]
    fn ids_cannot_forge_other_families_or_globs() {
        // A user id that tries to look like another family's key stays inside `user:`.
        let k = KeySchema::user("1:session:abc").unwrap();
        assert_eq!(k.matches(':').count(), 1);
        for evil in ["*", "1?", "[a-z]", "\\", "{tag}", "a b", "%41", "é"] {
            let e = escape_id(evil).unwrap();
            assert!(
                !e.contains(['*', '?', '[', ']', '\\', ':', '{', '}', ' ']),
                "{evil:?} escaped to {e:?}"
            );
            assert_eq!(unescape_id(&e).unwrap(), evil);
        }
        // Injective: "%41" and "A" differ after escaping.
        assert_ne!(escape_id("%41").unwrap(), escape_id("A").unwrap());
        assert_eq!(Family::User.pattern_for("*").unwrap(), "user:%2A");
    }

    #[test]
    fn bad_ids_are_rejected() {
        assert!(KeySchema::user("").is_err());
        assert!(KeySchema::user(&"x".repeat(MAX_ID_BYTES + 1)).is_err());
        assert!(KeySchema::for_family(Family::Metrics, "nodate").is_err());
        assert_eq!(
            KeySchema::for_family(Family::Metrics, "api:2026-01-01")
                .unwrap()
                .as_str(),
            "metrics:api:2026-01-01"
        );
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("app").is_ok());
        assert!(validate_prefix("app.tenant-1_x").is_ok());
        assert!(validate_prefix(&"p".repeat(MAX_PREFIX_BYTES)).is_ok());
        assert!(validate_prefix(&"p".repeat(MAX_PREFIX_BYTES + 1)).is_err());
        for bad in [
            "a*",
            "a:",
            ":a",
            "a b",
            "{x}",
            "a::b",
            "app:tenant",
            "a?",
            "a[b]",
            "a\\b",
            "é",
        ] {
            let e = validate_prefix(bad).unwrap_err();
            assert!(e.to_string().contains("CACHE_KEY_PREFIX"), "{bad}: {e}");
        }
    }

    #[test]
    fn sub_prefixes_are_single_names() {
        assert_eq!(sub_prefix("shop", "user").unwrap(), "shop.user");
        assert_eq!(sub_prefix("", "user").unwrap(), "user");
        for bad in ["", "a:b", "a*", "a b"] {
            assert!(sub_prefix("shop", bad).is_err(), "{bad:?}");
        }
        assert!(sub_prefix(&"p".repeat(MAX_PREFIX_BYTES), "x").is_err());
    }
}
