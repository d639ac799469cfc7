//! What the layer reads tokens from and how it writes cookies: [`TokenSource`], [`CookieConfig`]
//! and the errors of a configuration that would be unsafe or that browsers would drop
//! ([`ConfigError`]).

use cookie::{Cookie, SameSite};

/// The default cookie name before its prefix: the cookie is `__Host-session` with the defaults.
pub const DEFAULT_COOKIE_NAME: &str = "session";

/// Where the layer looks for the session token of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenSource {
    /// A cookie (the default, for browsers). The layer sets, refreshes and clears it.
    #[default]
    Cookie,
    /// An `Authorization: Bearer <token>` header (for API clients). The layer never sets a cookie;
    /// a login hands the token to the handler, which returns it to the client.
    Bearer,
}

/// The session cookie's name and attributes. The defaults are the safe ones:
///
/// | attribute | default | why |
/// |---|---|---|
/// | name | `__Host-session` | the `__Host-` prefix makes browsers refuse the cookie unless it is `Secure`, has `Path=/` and no `Domain`, so a sibling subdomain or a plain-HTTP page cannot plant or overwrite it (cookie tossing) |
/// | `HttpOnly` | on | page scripts (and so XSS) cannot read the token |
/// | `Secure` | on | never sent over plain HTTP |
/// | `SameSite` | `Lax` | not sent on cross-site sub-requests or form posts (CSRF), still sent when a user follows a link to the site |
/// | `Path` | `/` | the whole site |
/// | `Domain` | none | this host only |
/// | `Max-Age` | the session's remaining life, refreshed on every request that reads it | the browser forgets the cookie when the server forgets the session (sliding idle timeout, clamped to the absolute deadline) |
///
/// Every attribute can be changed with a `with_*` method; [`crate::SessionLayerBuilder::build`]
/// rejects combinations browsers drop or that weaken the cookie silently ([`ConfigError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    pub(crate) name: String,
    pub(crate) prefixed: bool,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) max_age: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            prefixed: true,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            max_age: true,
        }
    }
}

impl CookieConfig {
    /// The defaults (see the type's documentation).
    pub fn new() -> Self {
        Self::default()
    }

    /// The cookie's base name ([`DEFAULT_COOKIE_NAME`]); the `__Host-` or `__Secure-` prefix is
    /// added in front unless [`CookieConfig::with_name_prefix`] turns that off. A name that already
    /// starts with one of the prefixes is used as it is (and must satisfy its rules).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Whether to prefix the name (default `true`): `__Host-` when the cookie is `Secure`, has
    /// `Path=/` and no `Domain`; `__Secure-` when it is `Secure` otherwise; nothing when it is not
    /// `Secure`.
    pub fn with_name_prefix(mut self, prefixed: bool) -> Self {
        self.prefixed = prefixed;
        self
    }

    /// The `Secure` attribute (default `true`). Turn it off only for plain-HTTP development on a
    /// host browsers do not treat as secure (`localhost` and `127.0.0.1` already are).
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The `HttpOnly` attribute (default `true`).
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// The `SameSite` attribute (default `Lax`). `None` requires `Secure`.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The `Path` attribute (default `/`). Anything else rules out the `__Host-` prefix.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The `Domain` attribute (default: none, the cookie goes to this host only). Setting it shares
    /// the cookie with subdomains and rules out the `__Host-` prefix.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Whether the cookie carries `Max-Age` (default `true`): the session's remaining life,
    /// refreshed with each request that reads the session. Without it the cookie lives until the
    /// browser closes (the server-side expiry holds either way).
    pub fn with_max_age(mut self, max_age: bool) -> Self {
        self.max_age = max_age;
        self
    }

    /// The name the cookie is sent under, prefix included.
    pub fn cookie_name(&self) -> String {
        if has_prefix(&self.name) || !self.prefixed || !self.secure {
            self.name.clone()
        } else if self.host_prefix_allowed() {
            format!("__Host-{}", self.name)
        } else {
            format!("__Secure-{}", self.name)
        }
    }

    fn host_prefix_allowed(&self) -> bool {
        self.secure && self.path == "/" && self.domain.is_none()
    }

    /// Checks that browsers will accept the cookie as configured.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() || !self.name.bytes().all(is_token_char) {
            return Err(ConfigError::CookieName(self.name.clone()));
        }
        let name = self.cookie_name();
        if name.starts_with("__Host-") && !self.host_prefix_allowed() {
            return Err(ConfigError::HostPrefix);
        }
        if name.starts_with("__Secure-") && !self.secure {
            return Err(ConfigError::SecurePrefix);
        }
        if self.same_site == SameSite::None && !self.secure {
            return Err(ConfigError::SameSiteNone);
        }
        if !self.path.starts_with('/') || !self.path.bytes().all(is_attribute_char) {
            return Err(ConfigError::Attribute("Path", self.path.clone()));
        }
        if let Some(domain) = &self.domain {
            if domain.is_empty() || !domain.bytes().all(is_attribute_char) {
                return Err(ConfigError::Attribute("Domain", domain.clone()));
            }
        }
        Ok(())
    }

    /// The `Set-Cookie` value that stores `token` for `max_age_secs` seconds.
    pub(crate) fn set_cookie(&self, token: &str, max_age_secs: i64) -> String {
        let mut cookie = self.base(token.to_owned());
        if self.max_age {
            cookie.set_max_age(cookie::time::Duration::seconds(max_age_secs.max(0)));
        }
        cookie.to_string()
    }

    /// The `Set-Cookie` value that makes the browser drop the cookie (empty value, `Max-Age=0`, an
    /// `Expires` in the past, and the same `Path` / `Domain`, without which browsers keep it).
    pub(crate) fn removal_cookie(&self) -> String {
        let mut cookie = self.base(String::new());
        cookie.make_removal();
        cookie.to_string()
    }

    fn base(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(self.cookie_name(), value);
        cookie.set_http_only(self.http_only);
        cookie.set_secure(self.secure);
        cookie.set_same_site(self.same_site);
        cookie.set_path(self.path.clone());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie
    }
}

fn has_prefix(name: &str) -> bool {
    name.starts_with("__Host-") || name.starts_with("__Secure-")
}

/// RFC 6265 cookie-name characters (an RFC 7230 token).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Characters allowed in a `Path` or `Domain` attribute value: visible ASCII except `;`.
fn is_attribute_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && b != b';'
}

/// A layer configuration that browsers would reject, or that would be unsafe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The cookie name is empty or has characters a cookie name cannot have.
    #[error("invalid cookie name {0:?}: use letters, digits and !#$%&'*+-.^_`|~")]
    CookieName(String),
    /// A `__Host-` name needs `Secure`, `Path=/` and no `Domain`.
    #[error("a __Host- cookie must be Secure, have Path=/ and no Domain")]
    HostPrefix,
    /// A `__Secure-` name needs `Secure`.
    #[error("a __Secure- cookie must be Secure")]
    SecurePrefix,
    /// `SameSite=None` without `Secure` is dropped by browsers.
    #[error("SameSite=None requires Secure")]
    SameSiteNone,
    /// A `Path` or `Domain` value a `Set-Cookie` header cannot carry.
    #[error("invalid {0} attribute {1:?}")]
    Attribute(&'static str, String),
    /// A per-user session limit of zero.
    #[error("the per-user session limit must be at least 1")]
    SessionLimit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_host_prefixed_and_locked_down() {
        let c = CookieConfig::default();
        c.validate().unwrap();
        let set = c.set_cookie("tok", 3600);
        let parsed = Cookie::parse(set.clone()).unwrap();
        assert_eq!(parsed.name(), "__Host-session");
        assert_eq!(parsed.value(), "tok");
        assert_eq!(parsed.http_only(), Some(true));
        assert_eq!(parsed.secure(), Some(true));
        assert_eq!(parsed.same_site(), Some(SameSite::Lax));
        assert_eq!(parsed.path(), Some("/"));
        assert_eq!(parsed.domain(), None);
        assert_eq!(
            parsed.max_age(),
            Some(cookie::time::Duration::seconds(3600))
        );
        let removal = Cookie::parse(c.removal_cookie()).unwrap();
        assert_eq!(removal.name(), "__Host-session");
        assert_eq!(removal.value(), "");
        assert_eq!(removal.max_age(), Some(cookie::time::Duration::ZERO));
        assert_eq!(removal.path(), Some("/"));
    }

    #[test]
    fn prefix_follows_the_attributes() {
        let c = CookieConfig::new().with_domain("example.com");
        assert_eq!(c.cookie_name(), "__Secure-session");
        c.validate().unwrap();
        let c = CookieConfig::new().with_path("/app");
        assert_eq!(c.cookie_name(), "__Secure-session");
        let c = CookieConfig::new().with_secure(false);
        assert_eq!(c.cookie_name(), "session");
        c.validate().unwrap();
        let c = CookieConfig::new().with_name_prefix(false).with_name("sid");
        assert_eq!(c.cookie_name(), "sid");
        let c = CookieConfig::new().with_secure(false).with_max_age(false);
        let parsed = Cookie::parse(c.set_cookie("t", 10)).unwrap();
        assert_eq!(parsed.max_age(), None);
        assert_ne!(parsed.secure(), Some(true));
    }

    #[test]
    fn unsafe_or_undeliverable_settings_are_rejected() {
        let bad = [
            (
                CookieConfig::new().with_name("__Host-x").with_domain("a.b"),
                ConfigError::HostPrefix,
            ),
            (
                CookieConfig::new()
                    .with_name("__Secure-x")
                    .with_secure(false),
                ConfigError::SecurePrefix,
            ),
            (
                CookieConfig::new()
                    .with_secure(false)
                    .with_same_site(SameSite::None),
                ConfigError::SameSiteNone,
            ),
            (
                CookieConfig::new().with_name("a b"),
                ConfigError::CookieName("a b".into()),
            ),
            (
                CookieConfig::new().with_path("/x;Domain=evil"),
                ConfigError::Attribute("Path", "/x;Domain=evil".into()),
            ),
        ];
        for (config, err) in bad {
            assert_eq!(config.validate(), Err(err));
        }
    }
}
