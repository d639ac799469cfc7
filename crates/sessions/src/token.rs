//! Session tokens (the secret a client holds) and session handles (the non-secret name a server
//! stores and lists).
//!
//! - A [`SessionToken`] is 32 bytes (256 bits) from the operating system's CSPRNG, encoded as
//!   base64url without padding: exactly [`TOKEN_LEN`] characters of `A-Z a-z 0-9 - _`. It is handed
//!   to the client once (in a cookie or a header) and never stored by this library. Its `Debug`
//!   output is redacted and it has no `Display`, so it cannot end up in a log line by accident; the
//!   secret is only reachable through [`SessionToken::expose`].
//! - A [`SessionHandle`] is the lowercase hex SHA-256 of the token's 32 bytes ([`HANDLE_LEN`]
//!   characters). It names the session in the store (`session:{handle}`), in the per-user index and
//!   in listings. Knowing a handle does not let anyone act *as* the session: SHA-256 is preimage
//!   resistant and the token has full 256-bit entropy, so no salt or pepper is needed (there is no
//!   dictionary to attack). A handle can still revoke a session, so APIs that accept handles from
//!   users must check ownership (see `SessionManager::revoke_for_user`).
//!
//! The two look different on purpose (43 base64url characters against 64 hex digits), so a handle
//! pasted where a token belongs is rejected by the format check instead of being looked up.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cache_core::{Error, Result};
use sha2::{Digest, Sha256};

/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;
/// Length of an encoded token: base64url of [`TOKEN_BYTES`] bytes without padding.
pub const TOKEN_LEN: usize = 43;
/// Length of a handle: hex of a SHA-256 digest.
pub const HANDLE_LEN: usize = 64;

/// The secret that authenticates a session: 256 random bits, base64url (43 characters).
///
/// Obtained from `SessionManager::create` / `rotate`, or parsed from client input with
/// [`SessionToken::parse`]. Deliberately not `Display`, not `Serialize` and not `PartialEq` (no
/// accidental logging, no accidental persistence, no timing-leaky comparisons).
///
/// ```
/// use sessions::SessionToken;
/// let token = SessionToken::generate().unwrap();
/// assert_eq!(token.expose().len(), 43);
/// assert!(!format!("{token:?}").contains(token.expose()));
/// let again = SessionToken::parse(token.expose()).unwrap();
/// assert_eq!(again.handle(), token.handle());
/// assert!(SessionToken::parse("session:*").is_err());
/// ```
#[derive(Clone)]
pub struct SessionToken {
    encoded: String,
    handle: SessionHandle,
}

impl SessionToken {
    /// A new token from the operating system's CSPRNG (`getrandom`). Fails only when the OS cannot
    /// provide randomness; there is no weaker fallback.
    pub fn generate() -> Result<SessionToken> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| Error::Backend {
            message: format!("the operating system's random number generator failed: {e}"),
            transient: false,
            source: None,
        })?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; TOKEN_BYTES]) -> SessionToken {
        SessionToken {
            encoded: URL_SAFE_NO_PAD.encode(bytes),
            handle: SessionHandle::of_bytes(bytes),
        }
    }

    /// Validates client input as a token: exactly [`TOKEN_LEN`] characters of the base64url alphabet
    /// in canonical form. Anything else (empty, oversize, padding, whitespace, glob characters such as
    /// `*`, `?`, `[`, a handle) is [`Error::InvalidInput`], decided without touching any store and
    /// in time independent of the secret's value. The error message never echoes the input.
    pub fn parse(input: &str) -> Result<SessionToken> {
        // Length first: an attacker-sized input costs O(1) to reject.
        if input.len() != TOKEN_LEN {
            return Err(Error::invalid_input(format!(
                "session token must be {TOKEN_LEN} characters, got {}",
                input.len().min(10_000)
            )));
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::invalid_input(
                "session token contains characters outside the base64url alphabet",
            ));
        }
        // The base64 engine rejects non-canonical trailing bits, so each token has one spelling,
        // and the input is that spelling: it is kept as it is, not encoded again. Decoded on the
        // stack (the engine wants room for its estimate, up to two bytes over).
        let mut buf = [0u8; TOKEN_BYTES + 2];
        let n = URL_SAFE_NO_PAD
            .decode_slice(input, &mut buf)
            .map_err(|_| Error::invalid_input("session token is not canonical base64url"))?;
        let bytes: &[u8; TOKEN_BYTES] = buf[..n]
            .try_into()
            .map_err(|_| Error::invalid_input("session token has the wrong length"))?;
        Ok(SessionToken {
            encoded: input.to_owned(),
            handle: SessionHandle::of_bytes(bytes),
        })
    }

    /// The secret, for sending to the client (e.g. as a `Set-Cookie` value). Never log or store it.
    pub fn expose(&self) -> &str {
        &self.encoded
    }

    /// The non-secret handle of this token's session.
    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionToken")
            .field("secret", &"<redacted>")
            .field("handle", &self.handle.as_str())
            .finish()
    }
}

impl FromStr for SessionToken {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SessionToken::parse(s)
    }
}

/// The non-secret name of a session: lowercase hex SHA-256 of its token (64 characters).
///
/// Safe to log, to show in "your devices" pages and to send to admin tools; it revokes but does not
/// authenticate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct SessionHandle(String);

impl SessionHandle {
    fn of_bytes(bytes: &[u8; TOKEN_BYTES]) -> SessionHandle {
        let digest = Sha256::digest(bytes);
        let mut hex = [0u8; HANDLE_LEN];
        for (pair, b) in hex.chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        // Every byte was taken from `HEX`, which holds ASCII digits and letters only.
        let hex = std::str::from_utf8(&hex).expect("hex digits are ASCII");
        SessionHandle(hex.to_owned())
    }

    /// Validates a handle: exactly [`HANDLE_LEN`] lowercase hex digits, else
    /// [`Error::InvalidInput`].
    pub fn parse(input: &str) -> Result<SessionHandle> {
        if input.len() != HANDLE_LEN
            || !input
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::invalid_input(format!(
                "session handle must be {HANDLE_LEN} lowercase hex digits"
            )));
        }
        Ok(SessionHandle(input.to_owned()))
    }

    /// The handle as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({})", self.0)
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SessionHandle {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SessionHandle::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for SessionHandle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SessionHandle::parse(&s).map_err(serde::de::Error::custom)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a token encodes.
    fn parsed_bytes(t: &SessionToken) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(t.expose()).unwrap()
    }

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_eq!(a.expose().len(), TOKEN_LEN);
        assert_ne!(a.expose(), b.expose());
        assert_ne!(a.handle(), b.handle());
        assert_eq!(a.handle().as_str().len(), HANDLE_LEN);
        // Round trip through parse gives the same handle.
        assert_eq!(
            SessionToken::parse(a.expose()).unwrap().handle(),
            a.handle()
        );
        // And the same token, spelled as generated (parse keeps its input, which it checked to be
        // the canonical encoding of the bytes).
        for _ in 0..64 {
            let t = SessionToken::generate().unwrap();
            let parsed = SessionToken::parse(t.expose()).unwrap();
            assert_eq!(
                parsed.expose(),
                URL_SAFE_NO_PAD.encode(parsed_bytes(&parsed))
            );
            assert_eq!(parsed.expose(), t.expose());
            assert_eq!(parsed.handle(), t.handle());
        }
    }

    #[test]
    fn handle_is_sha256_of_the_raw_bytes() {
        let token = SessionToken::from_bytes(&[0u8; 32]);
        // sha256 of 32 zero bytes.
        assert_eq!(
            token.handle().as_str(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(
            token.expose(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let t = SessionToken::generate().unwrap();
        let dbg = format!("{t:?} {:#?}", t);
        assert!(!dbg.contains(t.expose()), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = SessionToken::generate().unwrap().expose().to_owned();
        let cases = [
            String::new(),
            "short".into(),
            format!("{good}A"),
            good[..42].to_owned(),
            format!("{}*", &good[..42]),
            format!("{}?", &good[..42]),
            format!("{}[", &good[..42]),
            format!("{} ", &good[..42]),
            format!("{}=", &good[..42]),
            format!("{}+", &good[..42]),
            format!("{}/", &good[..42]),
            "*".repeat(TOKEN_LEN),
            "x".repeat(1 << 20),
            "é".repeat(21) + "a",
            // A handle is not a token.
            SessionToken::generate()
                .unwrap()
                .handle()
                .as_str()
                .to_owned(),
        ];
        for c in cases {
            let err = SessionToken::parse(&c).unwrap_err();
            assert!(matches!(err, Error::InvalidInput(_)), "{err}");
            assert!(err.to_string().len() < 200);
        }
        // Non-canonical: the last character carries 4 bits; low bits set are not canonical.
        let mut nc = good[..42].to_owned();
        nc.push('B'); // 'B' = 1: a trailing bit that a canonical encoder never sets.
        assert!(SessionToken::parse(&nc).is_err());
    }

    #[test]
    fn handles_parse_strictly() {
        let h = SessionToken::generate().unwrap().handle().clone();
        assert_eq!(SessionHandle::parse(h.as_str()).unwrap(), h);
        assert!(SessionHandle::parse(&h.as_str().to_uppercase()).is_err());
        assert!(SessionHandle::parse("*").is_err());
        assert!(SessionHandle::parse(&h.as_str()[..63]).is_err());
        let json = serde_json::to_string(&h).unwrap();
        let back: SessionHandle = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert!(serde_json::from_str::<SessionHandle>("\"nope\"").is_err());
    }
}
