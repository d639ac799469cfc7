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
