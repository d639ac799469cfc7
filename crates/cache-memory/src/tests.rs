//! Unit tests of the store's own behaviour (the shared contract is checked by the conformance suite
//! in `tests/`).

use super::*;
use cache_core::{Bytes, KeyTtl, ScanCursor, SetOptions, Store};

fn store() -> MemoryStore {
    MemoryStore::builder().with_prefix("t").build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn set_get_ttl_and_expiry_on_tokio_clock() {
    let s = store();
    assert!(s
        .set("a", b"1", SetOptions::ttl(Duration::from_millis(100)))
        .await
        .unwrap());
    assert_eq!(s.get("a").await.unwrap(), Some(Bytes::from_static(b"1")));
    assert_eq!(
        s.ttl("a").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_millis(100))
    );
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(s.exists("a").await.unwrap());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(s.get("a").await.unwrap(), None);
    assert_eq!(s.ttl("a").await.unwrap(), KeyTtl::Missing);
}

#[tokio::test]
async fn nx_xx_keepttl() {
    let s = store();
    assert!(!s
        .set("k", b"x", SetOptions::new().if_present())
        .await
        .unwrap());
    assert!(s
        .set(
            "k",
            b"1",
            SetOptions::ttl(Duration::from_secs(60)).if_absent()
        )
        .await
        .unwrap());
    assert!(!s
        .set("k", b"2", SetOptions::new().if_absent())
        .await
        .unwrap());
    assert!(s
        .set("k", b"3", SetOptions::new().keep_ttl().if_present())
        .await
        .unwrap());
    assert!(s.ttl("k").await.unwrap().remaining().is_some());
    assert!(s.set("k", b"4", SetOptions::new()).await.unwrap());
    assert_eq!(s.ttl("k").await.unwrap(), KeyTtl::Persistent);
}

#[tokio::test]
async fn incr_rules_follow_redis() {
    let s = store();
    assert_eq!(s.incr_by("n", 5, None).await.unwrap(), 5);
    assert_eq!(s.incr_by("n", -7, None).await.unwrap(), -2);
    for bad in [
        &b"+1"[..],
        b"01",
        b" 1",
        b"1 ",
        b"-0",
        b"",
        b"1.5",
        b"abc",
        b"99999999999999999999",
    ] {
        s.set("b", bad, SetOptions::new()).await.unwrap();
        let err = s.incr_by("b", 1, None).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{bad:?}: {err}");
        assert_eq!(s.get("b").await.unwrap().as_deref(), Some(bad));
    }
    for (good, n) in [
        (&b"0"[..], 0i64),
        (b"-1", -1),
        (b"9223372036854775807", i64::MAX),
    ] {
        s.set("g", good, SetOptions::new()).await.unwrap();
        assert_eq!(s.incr_by("g", 0, None).await.unwrap(), n);
    }
    let err = s.incr_by("g", 1, None).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)));
    assert_eq!(
        s.get("g").await.unwrap().as_deref(),
        Some(&b"9223372036854775807"[..])
    );
}

#[tokio::test]
async fn zset_basics_and_wrongtype() {
    let s = store();
    assert!(s.zadd("z", "a", 2.0).await.unwrap());
    assert!(s.zadd("z", "b", 1.0).await.unwrap());
    assert!(!s.zadd("z", "a", 3.0).await.unwrap());
    assert_eq!(
        s.zrange_by_score("z", f64::NEG_INFINITY, f64::INFINITY, None)
            .await
            .unwrap(),
        vec![("b".to_owned(), 1.0), ("a".to_owned(), 3.0)]
    );
    assert!(matches!(s.get("z").await, Err(Error::WrongType { .. })));
    assert_eq!(s.get_many(&["z"]).await.unwrap(), vec![None]);
    assert!(matches!(
        s.zadd("z", "x", f64::NAN).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(s.zrem_range_by_score("z", 0.0, 10.0).await.unwrap(), 2);
    assert!(!s.exists("z").await.unwrap());
}

#[tokio::test]
async fn scan_pages_are_incremental_and_complete() {
    let s = store();
    for i in 0..250 {
        s.set(&format!("k:{i:03}"), b"v", SetOptions::new())
            .await
            .unwrap();
    }
    s.set("other", b"v", SetOptions::new()).await.unwrap();
    let mut cursor = ScanCursor::start();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = s.scan("k:*", cursor, 100).await.unwrap();
        pages += 1;
        assert!(page.keys.len() <= 100);
        seen.extend(page.keys);
        match page.next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert!(matches!(
        s.scan("*", ScanCursor::start(), 0).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn with_prefix_shares_data() {
    let a = store();
    let b = a.with_prefix("u").unwrap();
    a.set("k", b"a", SetOptions::new()).await.unwrap();
    b.set("k", b"b", SetOptions::new()).await.unwrap();
    assert_eq!(a.get("k").await.unwrap().as_deref(), Some(&b"a"[..]));
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"b"[..]));
    let root = a.with_prefix("").unwrap();
    assert_eq!(root.get("t:k").await.unwrap().as_deref(), Some(&b"a"[..]));
    assert!(matches!(
        root.flush_prefix().await,
        Err(Error::InvalidInput(_))
    ));
    assert!(a.with_prefix("bad prefix*").is_err());
    assert_eq!(a.flush_prefix().await.unwrap(), 1);
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"b"[..]));
}

/// A slot compares a key's first 40 bytes in place and reads the key's own allocation only for
/// the rest: keys that agree on their head, or differ only past it, or in length by one byte
/// around it, must still each find their own entry.
#[tokio::test]
async fn keys_that_share_their_first_bytes_stay_apart() {
    let s = store();
    // With the prefix `t:` the full keys are 2 bytes longer than these.
    let head = "h".repeat(38);
    let keys = [
        head.clone(),         // 40 bytes in full: all in the slot
        format!("{head}a"),   // 41: one byte past the head
        format!("{head}b"),   // 41: differs from the previous only past the head
        format!("{head}ab"),  // 42
        format!("{head}abc"), // 43
        "h".repeat(37),       // 39: a prefix of all the above
        format!("{head}a{}", "z".repeat(100)),
        format!("{head}a{}", "y".repeat(100)),
    ];
    for (i, k) in keys.iter().enumerate() {
        s.set(k, i.to_string().as_bytes(), SetOptions::new())
            .await
            .unwrap();
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            s.get(k).await.unwrap(),
            Some(Bytes::from(i.to_string())),
            "{k:?}"
        );
    }
    assert_eq!(s.get(&format!("{head}c")).await.unwrap(), None);
    assert_eq!(s.delete(&[keys[1].as_str()]).await.unwrap(), 1);
    assert_eq!(s.get(&keys[1]).await.unwrap(), None);
    assert_eq!(
        s.get(&keys[2]).await.unwrap(),
        Some(Bytes::from_static(b"2"))
    );
}
