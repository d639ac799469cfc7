//! Keys: the [`Key`] type, the escaping that keeps user input in its place, and the rules of the
//! global key prefix.
//!
//! Keys are *relative*: the store adds its global prefix (see [`crate::Store`]), so two services or
//! tenants with different prefixes never see each other's keys (a prefix is one name without `:`:
//! see [`validate_prefix`]), and no code path can forget the prefix.
//!
//! The key families themselves are defined by the crate whose concept they are, each in one table
//! with one key builder: the cache families in `cache_domain::family`, the session keys in
//! `sessions::keys` (see `docs/ARCHITECTURE.md`, "Key schema"). This module only gives them the
//! shared pieces.
//!
//! # Escaping
//!
//! Every id part goes through [`escape_id`] (or [`escape_id_into`]): ASCII letters, digits and
//! `-_.@+=` are kept, every other byte (including `:`, `*`, `?`, `[`, `]`, `\`, `{`, `}`, `%` and
//! whitespace) becomes `%XX`. The escaping is injective, so two different ids never share a key; an
//! escaped id contains no `:`, so it cannot forge a key of another family; and it contains no glob
//! metacharacter, so a pattern built from it matches exactly what it says. Literal parts of patterns
//! that are not escaped ids go through [`glob_escape`].

use std::fmt;

use crate::error::{Error, Result};

/// The longest id part accepted, in bytes before escaping.
pub const MAX_ID_BYTES: usize = 256;

/// A validated, relative store key. Build with [`Key::new`], escaping every id part in it with
/// [`escape_id`] or [`escape_id_into`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Wraps a raw relative key after checking it against the store contract ([`crate::store::check_key`]).
    /// No escaping is applied: escape the user input in it first ([`escape_id_into`]).
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

/// Which bytes an escaped id keeps as they are (ASCII letters, digits and `-_.@+=`), as a table:
/// ids are often random tokens, on which the comparisons of a `match` mispredict about every
/// other byte; a table lookup has no branch to mispredict.
const SAFE_ID_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'@' | b'+' | b'=');
        b += 1;
    }
    t
};

fn is_safe_id_byte(b: u8) -> bool {
    SAFE_ID_BYTE[usize::from(b)]
}

/// Whether every byte of `id` is kept by the escaping. No early exit: the loop has no
/// data-dependent branch, which on the short ids of keys is faster than stopping at the first
/// unsafe byte (those are rare).
fn all_safe(id: &str) -> bool {
    id.bytes().fold(true, |all, b| all & is_safe_id_byte(b))
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
    let mut out = String::new();
    escape_id_into(&mut out, id)?;
    Ok(out)
}

/// [`escape_id`] appending to `out`, for key builders that assemble a key in one buffer (one
/// allocation per key instead of one more per id part). On error `out` is left unchanged.
///
/// ```
/// use cache_core::keys::escape_id_into;
/// let mut key = String::from("user:");
/// escape_id_into(&mut key, "a b")?;
/// assert_eq!(key, "user:a%20b");
/// # Ok::<(), cache_core::Error>(())
/// ```
pub fn escape_id_into(out: &mut String, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid_input("id must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid_input(format!(
            "id is {} bytes, the limit is {MAX_ID_BYTES}",
            id.len()
        )));
    }
    if all_safe(id) {
        out.push_str(id);
        return Ok(());
    }
    out.reserve(id.len() * 3);
    for b in id.bytes() {
        if is_safe_id_byte(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    Ok(())
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
    fn ids_cannot_forge_other_families_or_globs() {
        // An id that tries to look like another family's key gains no `:`.
        let mut k = String::from("user:");
        escape_id_into(&mut k, "1:session:abc").unwrap();
        assert_eq!(k, "user:1%3Asession%3Aabc");
        assert_eq!(Key::new(k).unwrap().matches(':').count(), 1);
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
        assert_eq!(escape_id("safe-id_1.x@y+z=").unwrap(), "safe-id_1.x@y+z=");
    }

    #[test]
    fn the_safe_byte_table_keeps_exactly_letters_digits_and_six_marks() {
        for b in 0..=u8::MAX {
            let documented =
                b.is_ascii_alphanumeric() || [b'-', b'_', b'.', b'@', b'+', b'='].contains(&b);
            assert_eq!(is_safe_id_byte(b), documented, "byte {b:#04x}");
            // One byte of each kind, alone and inside a safe id, escaped or kept as documented.
            if let Ok(s) = std::str::from_utf8(&[b]) {
                let id = format!("ab{s}cd");
                let escaped = escape_id(&id).unwrap();
                assert_eq!(escaped == id, documented, "{id:?} -> {escaped:?}");
            }
        }
    }

    #[test]
    fn bad_ids_are_rejected_and_leave_the_buffer_alone() {
        assert!(escape_id("").is_err());
        assert!(escape_id(&"x".repeat(MAX_ID_BYTES)).is_ok());
        assert!(escape_id(&"x".repeat(MAX_ID_BYTES + 1)).is_err());
        let mut k = String::from("user:");
        assert!(escape_id_into(&mut k, "").is_err());
        assert!(escape_id_into(&mut k, &"x".repeat(MAX_ID_BYTES + 1)).is_err());
        assert_eq!(k, "user:");
        assert!(unescape_id("%4").is_err());
        assert!(unescape_id("%zz").is_err());
        assert!(Key::new("").is_err());
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
