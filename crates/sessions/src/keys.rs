//! Session keys: the one place that knows what the sessions crate writes to the store.
//!
//! [`FAMILIES`] lists the two key families once (name, template, what the id is, what is stored, TTL),
//! and [`session_key`] and [`index_key`] are the only functions that build their keys. Everything
//! else (the manager, tests, `cachectl`, docs tables) goes through them, so a key can never be spelled
//! two ways.
//!
//! | name | key | id | value | TTL |
//! |---|---|---|---|---|
//! | `session` | `session:{handle}` | the session handle (hex SHA-256 of the token, never the token) | the versioned JSON record | idle timeout, clamped to the absolute deadline |
//! | `session_index` | `sessions:user:{user_id}` | the user id, escaped | sorted set: member = handle, score = absolute deadline (epoch ms) | none; pruned by score |
//!
//! Id parts are escaped with [`cache_core::keys::escape_id`], so a user id cannot forge another
//! family's key or put a glob character into a pattern. Keys are relative: the store adds its global
//! prefix. These strings are part of the stored format: changing one makes existing sessions
//! unreadable.

use cache_core::keys::{escape_id, escape_id_into, unescape_id, Key};
use cache_core::Result;

use crate::token::SessionHandle;

/// One key family of the sessions crate: a row of the [module](self) table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionFamily {
    /// Stable snake_case name, for configuration, metrics labels and the CLI (`session`,
    /// `session_index`).
    pub name: &'static str,
    /// The key template as documented (`session:{handle}`).
    pub template: &'static str,
    /// The literal part of the key before the id (`session:`); it holds no glob character.
    pub prefix: &'static str,
    /// What the id part of the key is.
    pub id: &'static str,
    /// What is stored under the key.
    pub value: &'static str,
    /// How long the key lives.
    pub ttl: &'static str,
    /// The environment variable that sets this family's TTL, if one does.
    pub ttl_env: Option<&'static str>,
    kind: Kind,
}

/// Which builder a family's keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Record,
    Index,
}

/// `session:{handle}`: one session record.
pub static SESSION: SessionFamily = SessionFamily {
    name: "session",
    template: "session:{handle}",
    prefix: "session:",
    id: "the session handle: lowercase hex SHA-256 of the token (the token itself is never stored)",
    value:
        "the versioned JSON record: user id, data, created and last-accessed times, idle timeout, \
            absolute deadline",
    ttl: "the idle timeout, clamped to the absolute deadline",
    ttl_env: Some("CACHE_TTL_SESSION"),
    kind: Kind::Record,
};

/// `sessions:user:{user_id}`: the per-user index of sessions.
pub static SESSION_INDEX: SessionFamily = SessionFamily {
    name: "session_index",
    template: "sessions:user:{user_id}",
    prefix: "sessions:user:",
    id: "the user id, escaped",
    value: "a sorted set: member = session handle, score = absolute deadline (epoch ms)",
    ttl: "none; entries past their score are pruned on every read and write of the index",
    ttl_env: None,
    kind: Kind::Index,
};

/// Every key family the sessions crate writes, in documentation order.
pub static FAMILIES: [&SessionFamily; 2] = [&SESSION, &SESSION_INDEX];

impl SessionFamily {
    /// The family named `name` (as in [`SessionFamily::name`]; `-` is accepted for `_`).
    pub fn from_name(name: &str) -> Option<&'static SessionFamily> {
        let norm = name.trim().to_ascii_lowercase().replace('-', "_");
        FAMILIES.into_iter().find(|f| f.name == norm)
    }

    /// A glob pattern matching every key of the family (`session:*`), for `SCAN`.
    pub fn pattern(&self) -> String {
        format!("{}*", self.prefix)
    }

    /// The family's key for `id`, through [`session_key`] or [`index_key`]. For [`SESSION`], `id` must
    /// be a handle ([`SessionHandle::parse`]); anything else is [`cache_core::Error::InvalidInput`].
    pub fn key_for(&self, id: &str) -> Result<Key> {
        match self.kind {
            Kind::Record => session_key(&SessionHandle::parse(id)?),
            Kind::Index => index_key(id),
        }
    }
}

/// `session:{handle}`: the key of the session record named by `handle`.
pub fn session_key(handle: &SessionHandle) -> Result<Key> {
    // One allocation, sized for the common case (a handle has nothing to escape).
    let mut key = String::with_capacity(SESSION.prefix.len() + handle.as_str().len());
    key.push_str(SESSION.prefix);
    escape_id_into(&mut key, handle.as_str())?;
    Key::new(key)
}

/// `sessions:user:{user_id}`: the key of `user_id`'s session index. Errors with
/// [`cache_core::Error::InvalidInput`] when the user id is empty or too long
/// ([`cache_core::keys::MAX_ID_BYTES`]).
pub fn index_key(user_id: &str) -> Result<Key> {
    Key::new(format!("{}{}", SESSION_INDEX.prefix, escape_id(user_id)?))
}

/// The user id of an index key found by `SCAN` (the inverse of [`index_key`]). `None` when `key` is
/// not an index key; an error when its id part is not a valid escape.
pub(crate) fn index_user(key: &str) -> Option<Result<String>> {
    key.strip_prefix(SESSION_INDEX.prefix).map(unescape_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionToken;

    /// The stored format: these exact bytes are what existing deployments hold.
    #[test]
    fn keys_are_byte_identical_to_the_stored_format() {
        let token = SessionToken::generate().unwrap();
        let handle = token.handle();
        assert_eq!(
            session_key(handle).unwrap().as_str(),
            format!("session:{}", handle.as_str())
        );
        assert_eq!(index_key("42").unwrap().as_str(), "sessions:user:42");
        assert_eq!(
            index_key("a:b*c d").unwrap().as_str(),
            "sessions:user:a%3Ab%2Ac%20d"
        );
        assert_eq!(SESSION.pattern(), "session:*");
        assert_eq!(SESSION_INDEX.pattern(), "sessions:user:*");
    }

    #[test]
    fn the_table_matches_the_builders() {
        let token = SessionToken::generate().unwrap();
        let handle = token.handle().as_str();
        assert_eq!(
            SESSION.key_for(handle).unwrap(),
            session_key(token.handle()).unwrap()
        );
        assert!(SESSION.key_for("not-a-handle").is_err());
        assert_eq!(
            SESSION_INDEX.key_for("a:b").unwrap(),
            index_key("a:b").unwrap()
        );
        for family in FAMILIES {
            assert!(family.template.starts_with(family.prefix));
            assert_eq!(SessionFamily::from_name(family.name), Some(family));
            assert!(!family.prefix.contains(['*', '?', '[', ']', '\\']));
        }
        assert_eq!(
            SessionFamily::from_name("Session-Index"),
            Some(&SESSION_INDEX)
        );
        assert_eq!(SessionFamily::from_name("user"), None);
    }

    #[test]
    fn index_keys_round_trip() {
        for user in ["42", "a:b", "*", "é"] {
            let key = index_key(user).unwrap();
            assert_eq!(index_user(&key).unwrap().unwrap(), user);
        }
        assert!(index_user("session:abc").is_none());
        assert!(index_user("sessions:user:%zz").unwrap().is_err());
    }

    #[test]
    fn bad_user_ids_are_rejected() {
        assert!(index_key("").is_err());
        assert!(index_key(&"x".repeat(cache_core::keys::MAX_ID_BYTES + 1)).is_err());
    }

    /// The crate documentation's table names every family's template.
    #[test]
    fn crate_docs_list_every_family() {
        let docs = include_str!("lib.rs");
        for family in FAMILIES {
            assert!(
                docs.contains(&format!("`{}`", family.template)),
                "{}",
                family.template
            );
        }
    }
}
