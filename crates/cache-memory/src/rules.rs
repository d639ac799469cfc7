//! Redis's rules for the inputs of the memory store: TTLs to deadlines, scores, stored integers.

use std::time::Duration;

use cache_core::store::ttl_millis;
use cache_core::{Error, Expiry, Result};
use tokio::time::Instant;

/// The deadline `ttl` from `now`, validated like every backend validates TTLs.
pub(crate) fn deadline(now: Instant, ttl: Duration) -> Result<Instant> {
    let ms = ttl_millis(ttl)?;
    now.checked_add(Duration::from_millis(ms))
        .ok_or_else(|| Error::invalid_input(format!("TTL {ttl:?} is too large")))
}

/// Validates an expiry before taking the lock (so that a bad TTL changes nothing).
pub(crate) fn check_expiry(expiry: Expiry) -> Result<()> {
    if let Expiry::In(ttl) = expiry {
        ttl_millis(ttl)?;
    }
    Ok(())
}

pub(crate) fn check_score(what: &str, score: f64) -> Result<()> {
    if score.is_nan() {
        return Err(Error::invalid_input(format!("{what} must not be NaN")));
    }
    Ok(())
}

/// Parses a stored integer with Redis's rules (`string2ll`): optional `-`, no `+`, no leading zeros,
/// no spaces, within `i64`.
pub(crate) fn parse_redis_int(bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    if s == "0" {
        return Some(0);
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    let mut chars = digits.bytes();
    let first = chars.next()?;
    if !(b'1'..=b'9').contains(&first) || !chars.all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
