//! What the store makes of replies whose special values carry meaning: `PTTL`'s `-1` / `-2`, and
//! the `GET` + `PTTL` pair of `Store::get_with_ttl`.

use std::time::Duration;

use cache_core::{Bytes, Error, KeyTtl, Result};

/// A `PTTL` reply: `-2` no such key, `-1` no expiry, otherwise the milliseconds left.
pub(crate) fn key_ttl(ms: i64) -> Result<KeyTtl> {
    match ms {
        -2 => Ok(KeyTtl::Missing),
        -1 => Ok(KeyTtl::Persistent),
        ms if ms >= 0 => Ok(KeyTtl::ExpiresIn(Duration::from_millis(ms.unsigned_abs()))),
        other => Err(Error::backend(format!(
            "PTTL answered {other}, which is not a TTL"
        ))),
    }
}

/// The replies of a `GET` and a `PTTL` of the same key, sent one after the other: the value and
/// its lifetime, or `None` when the key is missing. A key that `GET` found and `PTTL` did not
/// (deleted or expired between the two) is gone now: `None`.
pub(crate) fn value_with_ttl(value: Option<Bytes>, ms: i64) -> Result<Option<(Bytes, KeyTtl)>> {
    let Some(value) = value else {
        return Ok(None);
    };
    Ok(match key_ttl(ms)? {
        KeyTtl::Missing => None,
        ttl => Some((value, ttl)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pttl_replies() {
        assert_eq!(key_ttl(-2).unwrap(), KeyTtl::Missing);
        assert_eq!(key_ttl(-1).unwrap(), KeyTtl::Persistent);
        assert_eq!(key_ttl(0).unwrap(), KeyTtl::ExpiresIn(Duration::ZERO));
        assert_eq!(
            key_ttl(1_500).unwrap(),
            KeyTtl::ExpiresIn(Duration::from_millis(1_500))
        );
        let e = key_ttl(-3).unwrap_err();
        assert!(e.to_string().contains("PTTL answered -3"), "{e}");
    }

    #[test]
    fn a_value_whose_key_is_gone_by_the_pttl_is_gone() {
        let v = Bytes::from_static(b"v");
        assert_eq!(value_with_ttl(Some(v.clone()), -2).unwrap(), None);
        assert_eq!(value_with_ttl(None, -2).unwrap(), None);
        assert_eq!(value_with_ttl(None, 100).unwrap(), None);
        assert_eq!(
            value_with_ttl(Some(v.clone()), -1).unwrap(),
            Some((v.clone(), KeyTtl::Persistent))
        );
        assert_eq!(
            value_with_ttl(Some(v.clone()), 250).unwrap(),
            Some((v, KeyTtl::ExpiresIn(Duration::from_millis(250))))
        );
        assert!(value_with_ttl(Some(Bytes::new()), -7).is_err());
    }
}
