//! Property-based tests of what the sessions crate parses from client input and the environment:
//! tokens (cookies, headers), handles (admin tools) and `CACHE_TTL_SESSION`.
//!
//! Case counts are proptest's default (256), or `PROPTEST_CASES` when set.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cache_core::{Error, ErrorKind};
use proptest::prelude::*;
use sessions::{SessionConfig, SessionHandle, SessionToken, HANDLE_LEN, TOKEN_LEN};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Client input: anything, token-shaped text (right length, base64url-ish alphabet with intruders),
/// and real tokens.
fn token_input() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_*?=+/ -]{43}",
        "[A-Za-z0-9_-]{40,46}",
        prop::array::uniform32(any::<u8>()).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
    ]
}

proptest! {
    #[test]
    fn parsing_any_input_never_panics_and_accepts_only_canonical_tokens(input in token_input()) {
        match SessionToken::parse(&input) {
            Ok(token) => {
                prop_assert_eq!(token.expose(), input.as_str());
                prop_assert_eq!(input.len(), TOKEN_LEN);
                // Canonical: the 32 bytes it stands for encode back to the same text.
                let bytes = URL_SAFE_NO_PAD.decode(&input).unwrap();
                prop_assert_eq!(bytes.len(), 32);
                prop_assert_eq!(URL_SAFE_NO_PAD.encode(&bytes), input.clone());
                // The handle is the hex SHA-256 of those bytes, never the token.
                prop_assert_eq!(token.handle().as_str(), hex(&Sha256::digest(&bytes)));
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
                // The message never echoes the input (it may be someone's secret).
                if input.len() >= 8 {
                    prop_assert!(!e.to_string().contains(&input), "{e}");
                }
                prop_assert!(e.to_string().len() < 200);
            }
        }
    }

    #[test]
    fn every_32_bytes_make_exactly_one_token(bytes in prop::array::uniform32(any::<u8>())) {
        let text = URL_SAFE_NO_PAD.encode(bytes);
        let token = SessionToken::parse(&text).unwrap();
        prop_assert_eq!(token.handle().as_str(), hex(&Sha256::digest(bytes)));
        // The handle parses as a handle and not as a token.
        prop_assert!(SessionHandle::parse(token.handle().as_str()).is_ok());
        prop_assert!(SessionToken::parse(token.handle().as_str()).is_err());
        // Any other spelling of the last character (4 payload bits, 2 unused) is refused.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for &c in alphabet {
            let mut other = text[..TOKEN_LEN - 1].to_owned();
            other.push(char::from(c));
            if other != text {
                match SessionToken::parse(&other) {
                    Ok(t) => prop_assert_ne!(t.handle(), token.handle()),
                    Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidInput),
                }
            }
        }
    }

    #[test]
    fn parsing_any_handle_never_panics(input in prop_oneof![
        any::<String>(),
        "[0-9a-fA-F]{62,66}",
    ]) {
        match SessionHandle::parse(&input) {
            Ok(h) => {
                prop_assert_eq!(h.as_str(), input.as_str());
                prop_assert_eq!(input.len(), HANDLE_LEN);
                prop_assert!(input.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidInput),
        }
    }

    #[test]
    fn the_session_ttl_from_the_environment_never_panics_and_names_the_variable(
        value in prop_oneof![any::<String>(), "[0-9]{1,20}(ms|s|m|min|h|d)?"],
    ) {
        let lookup = |k: &str| (k == "CACHE_TTL_SESSION").then(|| value.clone());
        match SessionConfig::from_lookup(lookup) {
            Ok(config) => {
                if let Some(ttl) = config.idle_timeout {
                    prop_assert!(!ttl.is_zero());
                } else {
                    prop_assert!(value.trim().is_empty(), "{value:?} was ignored");
                }
            }
            Err(Error::Config { setting, .. }) => prop_assert_eq!(setting, "CACHE_TTL_SESSION"),
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}
