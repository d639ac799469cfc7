//! Counters: `incr_by` with Redis's integer rules, its TTL on creation, and concurrent increments.

use cache_core::{KeyTtl, SetOptions, Store};
use futures::future::join_all;

use super::support::*;
use super::Capabilities;

/// `INCRBY`: Redis's integer rules; `ttl_if_created` only on creation; errors change nothing.
pub async fn check_incr_by(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("incr");
    let k = format!("{ns}:n");
    assert_eq!(must(store.incr_by(&k, 5, None).await, "incr new"), 5);
    assert_eq!(ttl(store, &k).await, KeyTtl::Persistent);
    assert_eq!(must(store.incr_by(&k, -8, Some(SHORT)).await, "decr"), -3);
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "ttl_if_created leaves an existing key alone"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"-3"[..]), "decimal");
    assert_eq!(must(store.incr_by(&k, 0, None).await, "incr 0"), -3);

    let t = format!("{ns}:ttl");
    assert_eq!(must(store.incr_by(&t, 1, Some(LONG)).await, "create"), 1);
    assert_ttl_between(ttl(store, &t).await, HALF_LONG, LONG, "ttl_if_created");
    assert_eq!(must(store.incr_by(&t, 1, Some(SHORT)).await, "again"), 2);
    assert_ttl_between(ttl(store, &t).await, HALF_LONG, LONG, "TTL not reset");
    let s = format!("{ns}:short");
    assert_eq!(must(store.incr_by(&s, 1, Some(SHORT)).await, "short"), 1);
    wait_until_expired(store, &s, SHORT, caps).await;
    assert_eq!(
        must(store.incr_by(&s, 1, Some(LONG)).await, "after expiry"),
        1,
        "an expired counter restarts"
    );

    let v = format!("{ns}:text");
    for bad in [
        &b"abc"[..],
        b"1.5",
        b" 1",
        b"+1",
        b"",
        b"12345678901234567890",
    ] {
        assert!(set(store, &v, bad, SetOptions::new()).await);
        must_be_invalid(
            store.incr_by(&v, 1, None).await,
            &format!("incr on {bad:?}"),
        );
        assert_eq!(get(store, &v).await.as_deref(), Some(bad), "unchanged");
    }
    let max = format!("{ns}:max");
    assert!(
        set(
            store,
            &max,
            i64::MAX.to_string().as_bytes(),
            SetOptions::new()
        )
        .await
    );
    must_be_invalid(store.incr_by(&max, 1, None).await, "overflow");
    assert_eq!(
        get(store, &max).await,
        Some(i64::MAX.to_string().into_bytes()),
        "overflow changes nothing"
    );
    let min = format!("{ns}:min");
    assert_eq!(
        must(store.incr_by(&min, i64::MIN, None).await, "to MIN"),
        i64::MIN
    );
    must_be_invalid(store.incr_by(&min, -1, None).await, "underflow");
    cleanup(store, &ns).await;
}

/// 50 concurrent `incr_by(1)` all count.
pub async fn check_incr_by_concurrent(store: &dyn Store) {
    let ns = namespace("incr_concurrent");
    let k = format!("{ns}:n");
    let results = join_all((0..50).map(|_| store.incr_by(&k, 1, None))).await;
    let mut seen: Vec<i64> = results.into_iter().map(|r| must(r, "incr")).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=50).collect::<Vec<i64>>(),
        "each incr sees its own value"
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"50"[..]));
    cleanup(store, &ns).await;
}
