//! The stored value format: JSON in a small version envelope, `{"v":1,"d":<value>}`.
//!
//! The envelope lets the format evolve without a flush: a reader that meets a version it does not know
//! gets [`Error::UnknownFormatVersion`], distinct from [`Error::Decode`] (corrupt bytes, no envelope,
//! another shape), never a panic and never a wrong value. The distinction matters during a rolling
//! upgrade: a value in a newer version is fine for the instances that wrote it, so a reader treats it
//! as a miss and leaves it alone, while a corrupt value may be deleted.
//! Datetimes round-trip through serde as RFC 3339 strings (chrono's and time's serde formats).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The envelope version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What [`encode`] writes before the value (of [`FORMAT_VERSION`]; a test ties the two).
const ENVELOPE_HEAD: &[u8] = br#"{"v":1,"d":"#;

#[derive(Serialize)]
struct EnvelopeRef<'a, T: ?Sized> {
    v: u32,
    d: &'a T,
}

#[derive(Deserialize)]
struct Envelope<T> {
    v: u32,
    d: T,
}

#[derive(Deserialize)]
struct Head {
    v: Option<u32>,
}

/// Encodes a value into the versioned envelope.
///
/// ```
/// let bytes = cache_core::codec::encode(&vec![1, 2]).unwrap();
/// assert_eq!(bytes, br#"{"v":1,"d":[1,2]}"#);
/// let back: Vec<i32> = cache_core::codec::decode(&bytes).unwrap();
/// assert_eq!(back, vec![1, 2]);
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(&EnvelopeRef {
        v: FORMAT_VERSION,
        d: value,
    })
    .map_err(|e| Error::Encode(e.to_string()))
}

/// Decodes a value written by [`encode`]. An envelope of another version is
/// [`Error::UnknownFormatVersion`] (whatever its payload); corrupt bytes, a missing envelope or a
/// value of another shape are [`Error::Decode`] with a message that says which.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    // The envelope exactly as `encode` writes it: the value is parsed in place, without the
    // envelope's map (its keys, the field dispatch, a visitor around the value): 80-140 ns of
    // the 750-820 a 1 KiB document took. A JSON value parses the same alone as inside the envelope, so
    // the answer is the envelope's; anything else (other whitespace or key order, another
    // version, a value the type refuses) takes the full path below and its errors. The one
    // difference: a value nested exactly as deep as serde_json's recursion limit (128) decodes
    // here, where inside the envelope it is one level too deep.
    if let Some(inner) = bytes
        .strip_prefix(ENVELOPE_HEAD)
        .and_then(|b| b.strip_suffix(b"}"))
    {
        if let Ok(v) = serde_json::from_slice(inner) {
            return Ok(v);
        }
    }
    decode_envelope(bytes)
}

/// [`decode`] through the envelope's map, with the errors that say what is wrong.
fn decode_envelope<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match serde_json::from_slice::<Envelope<T>>(bytes) {
        Ok(env) if env.v == FORMAT_VERSION => Ok(env.d),
        Ok(env) => Err(unknown_version(env.v)),
        Err(e) => Err(match serde_json::from_slice::<Head>(bytes) {
            Ok(Head { v: Some(v) }) if v != FORMAT_VERSION => unknown_version(v),
            Ok(Head { v: Some(_) }) => Error::Decode(format!("value has another shape: {e}")),
            Ok(Head { v: None }) => Error::Decode("value has no format envelope".into()),
            Err(_) => Error::Decode(format!("not a JSON envelope: {e}")),
        }),
    }
}

fn unknown_version(found: u32) -> Error {
    Error::UnknownFormatVersion {
        found,
        supported: FORMAT_VERSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct User {
        id: u64,
        name: String,
        seen: DateTime<Utc>,
    }

    #[test]
    fn round_trip_with_datetime_as_rfc3339() {
        let u = User {
            id: 7,
            name: "ada".into(),
            seen: Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap(),
        };
        let bytes = encode(&u).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("2026-11-26T10:00:00Z"), "{text}");
        assert_eq!(decode::<User>(&bytes).unwrap(), u);
    }

    #[test]
    fn encode_writes_the_envelope_head_the_value_and_a_brace() {
        for (value, json) in [
            (serde_json::json!(1), "1"),
            (serde_json::json!({"a": [1, "x"]}), r#"{"a":[1,"x"]}"#),
            (serde_json::json!(null), "null"),
        ] {
            let bytes = encode(&value).unwrap();
            let mut expect = ENVELOPE_HEAD.to_vec();
            expect.extend_from_slice(json.as_bytes());
            expect.push(b'}');
            assert_eq!(bytes, expect);
        }
        assert_eq!(
            ENVELOPE_HEAD,
            format!(r#"{{"v":{FORMAT_VERSION},"d":"#).as_bytes()
        );
    }

    /// The same answer as the envelope's full parse, value or error message.
    fn same_as_full_path<T: DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
        match (decode::<T>(bytes), decode_envelope::<T>(bytes)) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(bytes)),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!(
                "{}: fast path {a:?}, full path {b:?}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    use proptest::prelude::{any, Strategy};

    proptest::proptest! {
        #[test]
        fn the_fast_path_answers_as_the_envelope_does(
            head in proptest::sample::select(vec![
                r#"{"v":1,"d":"#, r#"{"v":2,"d":"#, r#"{"v":1, "d":"#, r#"{"d":"#, "",
            ]),
            middle in proptest::prop_oneof![
                // Anything JSON-like, mostly not JSON.
                r#"[\[\]{}",:0-9a-z. -]{0,24}"#,
                // Values the types below accept or refuse, alone or with something after them.
                any::<u64>().prop_map(|n| n.to_string()),
                proptest::collection::vec("[a-z\"]{0,3}", 0..4)
                    .prop_map(|v| serde_json::to_string(&v).unwrap()),
                proptest::collection::btree_map("[a-z]{1,3}", 0u64..9, 0..3)
                    .prop_map(|m| serde_json::to_string(&m).unwrap()),
                (any::<u64>(), r#"[,}\] "a:]{1,4}"#)
                    .prop_map(|(n, rest)| format!("{n}{rest}")),
            ],
            tail in proptest::sample::select(vec!["}", "", "} ", r#","v":1}"#, "}}"]),
        ) {
            let bytes = format!("{head}{middle}{tail}").into_bytes();
            same_as_full_path::<serde_json::Value>(&bytes);
            same_as_full_path::<u64>(&bytes);
            same_as_full_path::<Vec<String>>(&bytes);
            same_as_full_path::<std::collections::BTreeMap<String, u64>>(&bytes);
        }
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let cases: [(&[u8], &str); 4] = [
            (b"\xff\x00garbage", "not a JSON envelope"),
            (br#"{"v":1,"d":"text"}"#, "another shape"),
            (br#"{"id":1}"#, "no format envelope"),
            (b"", "not a JSON envelope"),
        ];
        for (bytes, expect) in cases {
            let err = decode::<u64>(bytes).unwrap_err();
            assert!(matches!(err, Error::Decode(_)));
            assert!(err.to_string().contains(expect), "{err} / {expect}");
        }
    }

    #[test]
    fn another_version_is_its_own_kind_whatever_the_payload() {
        for bytes in [
            &br#"{"v":2,"d":1}"#[..],
            br#"{"v":2,"d":"text"}"#,
            br#"{"d":{"new":"shape"},"v":7}"#,
            br#"{"v":0,"d":null}"#,
        ] {
            let err = decode::<u64>(bytes).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::UnknownFormatVersion, "{err}");
            assert!(!err.is_transient());
            assert!(err.to_string().contains("version 1"), "{err}");
        }
        assert!(matches!(
            decode::<u64>(br#"{"v":9,"d":1}"#),
            Err(Error::UnknownFormatVersion {
                found: 9,
                supported: FORMAT_VERSION
            })
        ));
    }
}
