//! Time to live: validation, the three answers of `ttl`, expiry (also of sorted sets), sub-second
//! TTLs, `GETEX`, `EXPIRE` / `PERSIST`. Time passes through [`Capabilities::clock`].

use std::time::Duration;

use cache_core::keys::glob_escape;
use cache_core::{Bytes, CasOutcome, Expiry, KeyTtl, SetOptions, Store, StoreExt};

use super::support::*;
use super::Capabilities;

/// A zero TTL is [`cache_core::Error::InvalidInput`] everywhere a TTL is taken, and changes nothing; so is an
/// absurdly large one.
pub async fn check_ttl_validation(store: &dyn Store) {
    let ns = namespace("ttl_validation");
    let k = format!("{ns}:k");
    assert!(set(store, &k, b"v", SetOptions::new()).await);
    for bad in [Duration::ZERO, Duration::MAX] {
        let what = format!("TTL {bad:?}");
        must_be_invalid(store.set(&k, b"new", SetOptions::ttl(bad)).await, &what);
        must_be_invalid(
            store
                .set(&k, b"new", SetOptions::ttl(bad).if_present())
                .await,
            &what,
        );
        must_be_invalid(
            store.set_many(&[(&k, b"new")], Expiry::In(bad)).await,
            &what,
        );
        must_be_invalid(store.get_ex(&k, bad).await, &what);
        must_be_invalid(store.expire(&k, bad).await, &what);
        must_be_invalid(store.incr_by(&format!("{ns}:n"), 1, Some(bad)).await, &what);
        must_be_invalid(
            store
                .compare_and_swap(&k, Some(b"v"), Some(b"new"), Expiry::In(bad))
                .await,
            &what,
        );
        assert_eq!(get(store, &k).await.as_deref(), Some(&b"v"[..]), "{what}");
        assert_eq!(ttl(store, &k).await, KeyTtl::Persistent, "{what}");
        assert_eq!(get(store, &format!("{ns}:n")).await, None, "{what}");
    }
    must_be_invalid(
        store.set_many(&[(&k, b"new")], Expiry::Keep).await,
        "set_many with Expiry::Keep",
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"v"[..]));
    cleanup(store, &ns).await;
}

/// `ttl` answers the three cases apart, for strings and sorted sets.
pub async fn check_ttl_three_way(store: &dyn Store) {
    let ns = namespace("ttl3");
    let (p, e, z) = (format!("{ns}:p"), format!("{ns}:e"), format!("{ns}:z"));
    assert_eq!(ttl(store, &p).await, KeyTtl::Missing);
    assert!(set(store, &p, b"v", SetOptions::new()).await);
    assert_eq!(ttl(store, &p).await, KeyTtl::Persistent);
    assert!(set(store, &e, b"v", SetOptions::ttl(LONG)).await);
    assert_ttl_between(ttl(store, &e).await, HALF_LONG, LONG, "ExpiresIn");
    assert_eq!(
        ttl(store, &e).await.remaining().map(|d| d <= LONG),
        Some(true)
    );
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    assert_eq!(ttl(store, &z).await, KeyTtl::Persistent, "zset");
    assert!(must(store.expire(&z, LONG).await, "expire zset"));
    assert_ttl_between(ttl(store, &z).await, HALF_LONG, LONG, "zset with TTL");
    cleanup(store, &ns).await;
}

/// A key written with a short TTL disappears after it (and not before, on an exact clock).
pub async fn check_expiry(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("expiry");
    let (k, keep) = (format!("{ns}:short"), format!("{ns}:long"));
    assert!(set(store, &keep, b"v", SetOptions::ttl(LONG)).await);
    assert!(set(store, &k, b"v", SetOptions::ttl(SHORT)).await);
    if caps.clock.is_exact() {
        assert_eq!(ttl(store, &k).await, KeyTtl::ExpiresIn(SHORT), "exact TTL");
    }
    wait_until_expired(store, &k, SHORT, caps).await;
    assert_eq!(get(store, &k).await, None);
    assert_eq!(ttl(store, &k).await, KeyTtl::Missing);
    assert_eq!(
        get(store, &keep).await.as_deref(),
        Some(&b"v"[..]),
        "long TTL"
    );
    // Sorted sets expire too.
    let z = format!("{ns}:z");
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    assert!(must(store.expire(&z, SHORT).await, "expire zset"));
    wait_until_expired(store, &z, SHORT, caps).await;
    assert_eq!(must(store.zcard(&z).await, "zcard"), 0);
    cleanup(store, &ns).await;
}

/// An expired key is indistinguishable from a missing one for every method.
pub async fn check_expired_keys_are_absent_everywhere(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("expired");
    let names = [
        "get", "many", "getex", "exists", "expire", "persist", "delete", "nx", "xx", "incr", "cas",
        "scan",
    ];
    let keys: Vec<String> = names.iter().map(|n| format!("{ns}:{n}")).collect();
    let entries: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"7"[..])).collect();
    must(
        store.set_many(&entries, Expiry::In(SHORT)).await,
        "set_many with TTL",
    );
    let z = format!("{ns}:zset");
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    must(store.expire(&z, SHORT).await, "expire zset");
    // Wait for the last one; they share the deadline.
    wait_until_expired(store, &keys[keys.len() - 1], SHORT, caps).await;
    poll_until_gone(store, &z, SHORT, caps).await;
    let key = |n: &str| format!("{ns}:{n}");
    assert_eq!(get(store, &key("get")).await, None);
    assert_eq!(
        must(store.get_many(&[&key("many")]).await, "get_many"),
        vec![None]
    );
    assert_eq!(
        must(store.get_ex(&key("getex"), LONG).await, "get_ex"),
        None
    );
    assert!(!must(store.exists(&key("exists")).await, "exists"));
    assert!(!must(store.expire(&key("expire"), LONG).await, "expire"));
    assert!(!must(store.persist(&key("persist")).await, "persist"));
    assert_eq!(must(store.delete(&[&key("delete")]).await, "delete"), 0);
    assert!(set(store, &key("nx"), b"new", SetOptions::new().if_absent()).await);
    assert_eq!(
        ttl(store, &key("nx")).await,
        KeyTtl::Persistent,
        "NX over expired"
    );
    assert!(!set(store, &key("xx"), b"new", SetOptions::new().if_present()).await);
    assert_eq!(get(store, &key("xx")).await, None);
    assert_eq!(must(store.incr_by(&key("incr"), 1, None).await, "incr"), 1);
    assert_eq!(
        must(
            store
                .compare_and_swap(&key("cas"), None, Some(b"x"), Expiry::Never)
                .await,
            "cas"
        ),
        CasOutcome::Swapped,
        "an expired key is missing for CAS"
    );
    let scanned = must(
        store
            .scan_all(&format!("{}:s*", glob_escape(&ns)), 100)
            .await,
        "scan",
    );
    assert!(
        scanned.is_empty(),
        "scan returned expired keys: {scanned:?}"
    );
    assert_eq!(must(store.zcard(&z).await, "zcard"), 0);
    assert!(must(store.zadd(&z, "n", 2.0).await, "zadd recreates"));
    assert_eq!(
        must(
            store
                .zrange_by_score(&z, f64::NEG_INFINITY, f64::INFINITY, None)
                .await,
            "zrange"
        ),
        vec![("n".to_owned(), 2.0)],
        "a sorted set recreated after expiry has only the new member"
    );
    assert_eq!(ttl(store, &z).await, KeyTtl::Persistent);
    cleanup(store, &ns).await;
}

/// Sub-second and sub-millisecond TTLs: rounded up to whole milliseconds, never down to zero.
pub async fn check_sub_second_ttls(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("subsecond");
    let exact = caps.clock.is_exact();
    // 1.5 ms rounds up to 2 ms; 1 ns rounds up to 1 ms (not to "no TTL", not to an error).
    for (name, asked, effective) in [
        ("us", Duration::from_micros(1500), Duration::from_millis(2)),
        ("ns", Duration::from_nanos(1), Duration::from_millis(1)),
    ] {
        let k = format!("{ns}:{name}");
        assert!(set(store, &k, b"v", SetOptions::ttl(asked)).await);
        match ttl(store, &k).await {
            KeyTtl::ExpiresIn(d) if exact => assert_eq!(d, effective, "{name}"),
            KeyTtl::ExpiresIn(d) => assert!(d <= effective, "{name}: {d:?} > {effective:?}"),
            // On a real clock the key may already be gone.
            KeyTtl::Missing if !exact => {}
            other => panic!("{name}: expected a TTL of at most {effective:?}, got {other:?}"),
        }
        wait_until_expired(store, &k, effective, caps).await;
    }
    let k = format!("{ns}:ms");
    let asked = Duration::from_millis(250);
    assert!(set(store, &k, b"v", SetOptions::ttl(asked)).await);
    match ttl(store, &k).await {
        KeyTtl::ExpiresIn(d) if exact => assert_eq!(d, asked),
        KeyTtl::ExpiresIn(d) => assert!(d <= asked && d > Duration::ZERO),
        KeyTtl::Missing if !exact => {}
        other => panic!("250 ms: unexpected {other:?}"),
    }
    wait_until_expired(store, &k, asked, caps).await;
    cleanup(store, &ns).await;
}

/// `GETEX`: returns the value and sets the TTL (longer or shorter); a missing key stays missing.
pub async fn check_get_ex(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("getex");
    let k = format!("{ns}:k");
    assert_eq!(must(store.get_ex(&k, LONG).await, "get_ex missing"), None);
    assert!(
        !must(store.exists(&k).await, "exists"),
        "GETEX must not create"
    );
    assert!(set(store, &k, b"v", SetOptions::ttl(Duration::from_secs(5))).await);
    assert_eq!(
        must(store.get_ex(&k, LONG).await, "get_ex").as_deref(),
        Some(&b"v"[..])
    );
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "GETEX extends");
    let p = format!("{ns}:persistent");
    assert!(set(store, &p, b"p", SetOptions::new()).await);
    assert_eq!(
        must(store.get_ex(&p, SHORT).await, "get_ex short").as_deref(),
        Some(&b"p"[..])
    );
    wait_until_expired(store, &p, SHORT, caps).await;
    cleanup(store, &ns).await;
}

/// `EXPIRE` / `PERSIST`: create nothing, report whether they acted.
pub async fn check_expire_and_persist(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("expire");
    let k = format!("{ns}:k");
    assert!(!must(store.expire(&k, LONG).await, "expire missing"));
    assert!(
        !must(store.exists(&k).await, "exists"),
        "EXPIRE must not create"
    );
    assert!(!must(store.persist(&k).await, "persist missing"));
    assert!(set(store, &k, b"v", SetOptions::new()).await);
    assert!(
        !must(store.persist(&k).await, "persist persistent"),
        "PERSIST on a key without TTL"
    );
    assert!(must(store.expire(&k, LONG).await, "expire"));
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "EXPIRE");
    assert!(must(store.persist(&k).await, "persist"));
    assert_eq!(ttl(store, &k).await, KeyTtl::Persistent);
    assert!(!must(store.persist(&k).await, "persist twice"));
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"v"[..]));
    // Shortening a TTL makes the key expire.
    assert!(must(store.expire(&k, SHORT).await, "expire short"));
    wait_until_expired(store, &k, SHORT, caps).await;
    cleanup(store, &ns).await;
}

/// `get_with_ttl` answers what `get` and `ttl` answer, in one call: `None` for a missing key, the
/// value with [`KeyTtl::Persistent`] for a key without TTL, the value with the remaining TTL for
/// one with a TTL; a sorted set is [`cache_core::Error::WrongType`].
pub async fn check_get_with_ttl(store: &dyn Store) {
    let ns = namespace("get_with_ttl");
    let (p, e, z) = (format!("{ns}:p"), format!("{ns}:e"), format!("{ns}:z"));
    assert_eq!(
        must(
            store.get_with_ttl(&p).await,
            "get_with_ttl of a missing key"
        ),
        None
    );
    assert!(set(store, &p, b"persistent", SetOptions::new()).await);
    assert_eq!(
        must(store.get_with_ttl(&p).await, "get_with_ttl without TTL"),
        Some((Bytes::from_static(b"persistent"), KeyTtl::Persistent))
    );
    assert!(set(store, &e, b"", SetOptions::ttl(LONG)).await);
    let Some((value, left)) = must(store.get_with_ttl(&e).await, "get_with_ttl with a TTL") else {
        panic!("get_with_ttl: {e} is missing");
    };
    assert_eq!(value, &b""[..], "get_with_ttl: an empty value");
    assert_ttl_between(left, HALF_LONG, LONG, "get_with_ttl");
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    must_be_wrong_type(store.get_with_ttl(&z).await, &z, "get_with_ttl on a zset");
    cleanup(store, &ns).await;
}
