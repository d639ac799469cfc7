//! Helpers shared by the checks: fresh key namespaces, cleanup, assertions on results and TTLs,
//! and waiting for expiry on the backend's clock.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_core::keys::glob_escape;
use cache_core::{Error, KeyTtl, Result, SetOptions, Store, StoreExt};

use super::Capabilities;

/// A namespace of fresh keys for one check: `conformance:<check>:<pid>-<time>-<n>`.
pub(super) fn namespace(check: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "conformance:{check}:{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Unwraps a result, panicking with the context and the error.
#[track_caller]
pub(super) fn must<T>(r: Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e} ({e:?})"),
    }
}

/// Asserts that a result is [`cache_core::Error::InvalidInput`].
#[track_caller]
pub(super) fn must_be_invalid<T: Debug>(r: Result<T>, what: &str) {
    match r {
        Err(Error::InvalidInput(_)) => {}
        other => panic!("{what}: expected Error::InvalidInput, got {other:?}"),
    }
}

/// Asserts that a result is [`cache_core::Error::Capacity`].
#[track_caller]
pub(super) fn must_be_capacity<T: Debug>(r: Result<T>, what: &str) {
    match r {
        Err(Error::Capacity(_)) => {}
        other => panic!("{what}: expected Error::Capacity, got {other:?}"),
    }
}

/// Asserts that a result is [`cache_core::Error::WrongType`] naming `key`.
#[track_caller]
pub(super) fn must_be_wrong_type<T: Debug>(r: Result<T>, key: &str, what: &str) {
    match r {
        Err(Error::WrongType { key: k, .. }) => {
            assert_eq!(k, key, "{what}: WrongType must name the relative key")
        }
        other => panic!("{what}: expected Error::WrongType, got {other:?}"),
    }
}

/// Deletes every key of a check's namespace.
pub(super) async fn cleanup(store: &dyn Store, ns: &str) {
    let pattern = format!("{}:*", glob_escape(ns));
    must(
        store.delete_matching(&pattern, 500, &|_, _| {}).await,
        "cleanup",
    );
    let left = must(store.scan_all(&pattern, 500).await, "cleanup scan");
    assert!(left.is_empty(), "cleanup left keys behind: {left:?}");
}

pub(super) async fn set(store: &dyn Store, key: &str, value: &[u8], opts: SetOptions) -> bool {
    must(store.set(key, value, opts).await, &format!("set {key}"))
}

pub(super) async fn get(store: &dyn Store, key: &str) -> Option<Vec<u8>> {
    must(store.get(key).await, &format!("get {key}")).map(Vec::from)
}

pub(super) async fn ttl(store: &dyn Store, key: &str) -> KeyTtl {
    must(store.ttl(key).await, &format!("ttl {key}"))
}

/// Asserts that `key` has a TTL in `(min, max]`.
#[track_caller]
pub(super) fn assert_ttl_between(t: KeyTtl, min: Duration, max: Duration, what: &str) {
    match t {
        KeyTtl::ExpiresIn(d) => assert!(
            d > min && d <= max,
            "{what}: TTL {d:?} not in ({min:?}, {max:?}]"
        ),
        other => panic!("{what}: expected a TTL in ({min:?}, {max:?}], got {other:?}"),
    }
}

/// Lets `ttl` pass, then polls (bounded by the grace) until `key` is gone. With an exact clock, also
/// checks that the key is still there 1 ms before its deadline and gone right at it.
pub(super) async fn wait_until_expired(
    store: &dyn Store,
    key: &str,
    ttl: Duration,
    caps: &Capabilities,
) {
    let clock = &*caps.clock;
    if clock.is_exact() {
        let almost = ttl.saturating_sub(Duration::from_millis(1));
        clock.wait(almost).await;
        assert!(
            must(store.exists(key).await, "exists before deadline"),
            "{key}: gone 1 ms before its TTL of {ttl:?}"
        );
        clock.wait(ttl - almost).await;
        assert!(
            !must(store.exists(key).await, "exists at deadline"),
            "{key}: still there when its TTL of {ttl:?} has passed (exact clock)"
        );
        return;
    }
    clock.wait(ttl).await;
    poll_until_gone(store, key, ttl, caps).await;
}

/// Polls (bounded by the grace) until `key` is gone, once its TTL of `ttl` has passed.
pub(super) async fn poll_until_gone(
    store: &dyn Store,
    key: &str,
    ttl: Duration,
    caps: &Capabilities,
) {
    let clock = &*caps.clock;
    let step = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    while must(store.exists(key).await, "exists while waiting for expiry") {
        assert!(
            waited <= caps.expiry_grace,
            "{key}: still there {waited:?} after its TTL of {ttl:?} passed"
        );
        clock.wait(step).await;
        waited += step;
    }
}

/// Bytes `0, 1, ..., 250, 0, 1, ...` of the given length (never valid UTF-8 past 128 bytes).
pub(super) fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

pub(super) const LONG: Duration = Duration::from_secs(600);

pub(super) const HALF_LONG: Duration = Duration::from_secs(300);

/// A TTL short enough to wait for, long enough to be set reliably.
pub(super) const SHORT: Duration = Duration::from_millis(30);
