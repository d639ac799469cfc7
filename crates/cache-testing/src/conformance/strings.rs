//! String basics: `get` / `set`, key validation, the `NX` / `XX` conditions and `KEEPTTL`.

use super::support::*;
use cache_core::store::MAX_KEY_BYTES;
use cache_core::{Expiry, KeyTtl, SetOptions, Store};

/// `get` / `set` basics: missing is `None`, a write is read back, an overwrite replaces.
pub async fn check_get_set(store: &dyn Store) {
    let ns = namespace("get_set");
    let k = format!("{ns}:k");
    assert_eq!(get(store, &k).await, None, "missing key");
    assert!(set(store, &k, b"one", SetOptions::new()).await);
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"one"[..]));
    assert!(set(store, &k, b"two", SetOptions::new()).await);
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"two"[..]));
    assert!(must(store.exists(&k).await, "exists"));
    // Keys may hold any UTF-8, including spaces, braces and glob characters.
    let odd = format!("{ns}:odd key {{tag}} * ? [x] \\ é ✓");
    assert!(set(store, &odd, b"v", SetOptions::new()).await);
    assert_eq!(get(store, &odd).await.as_deref(), Some(&b"v"[..]));
    cleanup(store, &ns).await;
    assert_eq!(get(store, &k).await, None, "after cleanup");
}

/// Empty and over-long keys are [`cache_core::Error::InvalidInput`] for every method taking keys.
pub async fn check_key_validation(store: &dyn Store) {
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    for bad in ["", long.as_str()] {
        let what = format!("key of {} bytes", bad.len());
        must_be_invalid(store.get(bad).await, &what);
        must_be_invalid(store.set(bad, b"v", SetOptions::new()).await, &what);
        must_be_invalid(store.get_many(&[bad]).await, &what);
        must_be_invalid(store.set_many(&[(bad, b"v")], Expiry::Never).await, &what);
        must_be_invalid(store.delete(&[bad]).await, &what);
        must_be_invalid(store.exists(bad).await, &what);
        must_be_invalid(store.ttl(bad).await, &what);
        must_be_invalid(store.incr_by(bad, 1, None).await, &what);
        must_be_invalid(
            store
                .compare_and_swap(bad, None, Some(b"v"), Expiry::Never)
                .await,
            &what,
        );
        must_be_invalid(store.zadd(bad, "m", 1.0).await, &what);
        must_be_invalid(store.zcard(bad).await, &what);
    }
    // The longest accepted key works.
    let ns = namespace("keys");
    let max = format!("{ns}:{}", "k".repeat(MAX_KEY_BYTES - ns.len() - 1));
    assert_eq!(max.len(), MAX_KEY_BYTES);
    assert!(set(store, &max, b"v", SetOptions::new()).await);
    assert_eq!(get(store, &max).await.as_deref(), Some(&b"v"[..]));
    cleanup(store, &ns).await;
}

/// `NX` / `XX`: the write happens only when the condition holds, and a refused write changes nothing
/// (value and TTL).
pub async fn check_set_conditions(store: &dyn Store) {
    let ns = namespace("nx_xx");
    let k = format!("{ns}:k");
    assert!(
        !set(store, &k, b"x", SetOptions::new().if_present()).await,
        "XX on a missing key"
    );
    assert_eq!(get(store, &k).await, None, "XX must not create");
    assert!(
        set(store, &k, b"1", SetOptions::ttl(LONG).if_absent()).await,
        "NX on a missing key"
    );
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "NX with TTL");
    assert!(
        !set(store, &k, b"2", SetOptions::new().if_absent()).await,
        "NX on an existing key"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"1"[..]));
    assert_ttl_between(
        ttl(store, &k).await,
        HALF_LONG,
        LONG,
        "refused NX keeps TTL",
    );
    assert!(
        set(store, &k, b"3", SetOptions::new().if_present()).await,
        "XX on an existing key"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"3"[..]));
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "XX with Expiry::Never removes the TTL"
    );
    // A plain write removes an existing TTL; a write with a TTL sets it.
    assert!(set(store, &k, b"4", SetOptions::ttl(LONG)).await);
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "SET PX");
    assert!(set(store, &k, b"5", SetOptions::new()).await);
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "plain SET clears TTL"
    );
    cleanup(store, &ns).await;
}

/// `KEEPTTL`: an existing key keeps its TTL, a new key gets none.
pub async fn check_keep_ttl(store: &dyn Store) {
    let ns = namespace("keepttl");
    let k = format!("{ns}:k");
    assert!(set(store, &k, b"1", SetOptions::new().keep_ttl()).await);
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "KEEPTTL on a new key"
    );
    must(store.expire(&k, LONG).await, "expire");
    assert!(set(store, &k, b"2", SetOptions::new().keep_ttl()).await);
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"2"[..]));
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "KEEPTTL keeps");
    assert!(set(store, &k, b"3", SetOptions::new().keep_ttl().if_present()).await);
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "XX KEEPTTL keeps");
    assert!(
        !set(store, &k, b"4", SetOptions::new().keep_ttl().if_absent()).await,
        "NX KEEPTTL on an existing key"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"3"[..]));
    cleanup(store, &ns).await;
}
