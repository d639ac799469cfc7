//! Batches: `get_many` (`MGET`), `set_many` (`MSET`) and `delete` (`UNLINK`).

use super::support::*;
use cache_core::{Bytes, Expiry, KeyTtl, SetOptions, Store};

/// `MGET`: one answer per key, in order, duplicates answered twice, missing keys `None`.
pub async fn check_get_many(store: &dyn Store) {
    let ns = namespace("get_many");
    let (a, b, c) = (format!("{ns}:a"), format!("{ns}:b"), format!("{ns}:c"));
    assert!(set(store, &a, b"A", SetOptions::new()).await);
    assert!(set(store, &c, b"C", SetOptions::new()).await);
    assert_eq!(
        must(store.get_many(&[]).await, "get_many empty"),
        Vec::<Option<Bytes>>::new()
    );
    let got = must(store.get_many(&[&c, &b, &a, &c, &a]).await, "get_many");
    assert_eq!(
        got,
        vec![
            Some(Bytes::from_static(b"C")),
            None,
            Some(Bytes::from_static(b"A")),
            Some(Bytes::from_static(b"C")),
            Some(Bytes::from_static(b"A"))
        ]
    );
    // Many keys at once (spread over slots on a cluster).
    let keys: Vec<String> = (0..100).map(|i| format!("{ns}:n{i}")).collect();
    let values: Vec<Vec<u8>> = (0..100).map(|i| format!("v{i}").into_bytes()).collect();
    let entries: Vec<(&str, &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    must(store.set_many(&entries, Expiry::Never).await, "set_many");
    let refs: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
    let got = must(store.get_many(&refs).await, "get_many 100");
    let want: Vec<Option<Bytes>> = values
        .iter()
        .rev()
        .map(|v| Some(Bytes::copy_from_slice(v)))
        .collect();
    assert_eq!(got, want, "get_many keeps the order of the input");
    cleanup(store, &ns).await;
}

/// `MSET`: every entry written with the same expiry; the last duplicate wins.
pub async fn check_set_many(store: &dyn Store) {
    let ns = namespace("set_many");
    let (a, b) = (format!("{ns}:a"), format!("{ns}:b"));
    must(store.set_many(&[], Expiry::Never).await, "set_many empty");
    assert!(set(store, &a, b"old", SetOptions::ttl(LONG)).await);
    must(
        store
            .set_many(&[(&a, b"1"), (&b, b"2"), (&a, b"3")], Expiry::Never)
            .await,
        "set_many",
    );
    assert_eq!(
        get(store, &a).await.as_deref(),
        Some(&b"3"[..]),
        "last wins"
    );
    assert_eq!(get(store, &b).await.as_deref(), Some(&b"2"[..]));
    assert_eq!(
        ttl(store, &a).await,
        KeyTtl::Persistent,
        "Expiry::Never clears the TTL"
    );
    must(
        store
            .set_many(&[(&a, b"x"), (&b, b"y")], Expiry::In(LONG))
            .await,
        "set_many with TTL",
    );
    assert_ttl_between(ttl(store, &a).await, HALF_LONG, LONG, "a");
    assert_ttl_between(ttl(store, &b).await, HALF_LONG, LONG, "b");
    assert_eq!(get(store, &b).await.as_deref(), Some(&b"y"[..]));
    cleanup(store, &ns).await;
}

/// `DEL`: counts the keys that existed (a duplicate once), of any type.
pub async fn check_delete(store: &dyn Store) {
    let ns = namespace("delete");
    let (a, b, z, m) = (
        format!("{ns}:a"),
        format!("{ns}:b"),
        format!("{ns}:z"),
        format!("{ns}:missing"),
    );
    assert_eq!(must(store.delete(&[]).await, "delete nothing"), 0);
    assert!(set(store, &a, b"1", SetOptions::new()).await);
    assert!(set(store, &b, b"", SetOptions::ttl(LONG)).await);
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    assert_eq!(
        must(store.delete(&[&a, &m, &a, &b, &z]).await, "delete"),
        3,
        "three keys existed"
    );
    for k in [&a, &b, &z] {
        assert!(!must(store.exists(k).await, "exists"), "{k} deleted");
    }
    assert_eq!(must(store.delete(&[&a]).await, "delete again"), 0);
    cleanup(store, &ns).await;
}
