//! Sorted sets: add, update, ranges, removal, edge scores, and `WRONGTYPE` between sorted sets and
//! strings.

use super::support::*;
use cache_core::{Bytes, Expiry, KeyTtl, SetOptions, Store};

/// Sorted sets: add/update, ranges with bounds and limits, removal, emptied sets are deleted.
pub async fn check_sorted_sets(store: &dyn Store) {
    let ns = namespace("zset");
    let z = format!("{ns}:z");
    let all = |limit| store.zrange_by_score(&z, f64::NEG_INFINITY, f64::INFINITY, limit);
    assert_eq!(must(store.zcard(&z).await, "zcard missing"), 0);
    assert!(must(all(None).await, "zrange missing").is_empty());
    assert_eq!(must(store.zrem(&z, &["x"]).await, "zrem missing"), 0);
    assert_eq!(
        must(
            store.zrem_range_by_score(&z, 0.0, 1.0).await,
            "zremrange missing"
        ),
        0
    );
    assert!(
        !must(store.exists(&z).await, "exists"),
        "reads create nothing"
    );

    assert!(must(store.zadd(&z, "c", 3.0).await, "zadd c"));
    assert!(must(store.zadd(&z, "a", 1.0).await, "zadd a"));
    assert!(must(store.zadd(&z, "b", 2.0).await, "zadd b"));
    assert!(must(store.zadd(&z, "b2", 2.0).await, "zadd b2"));
    assert!(must(store.zadd(&z, "neg", -1.5).await, "zadd neg"));
    assert!(
        !must(store.zadd(&z, "a", 10.0).await, "update a"),
        "updating a score is not new"
    );
    assert_eq!(must(store.zcard(&z).await, "zcard"), 5);
    assert_eq!(
        ttl(store, &z).await,
        KeyTtl::Persistent,
        "created without TTL"
    );
    let s = |m: &str, x: f64| (m.to_owned(), x);
    assert_eq!(
        must(all(None).await, "zrange all"),
        vec![
            s("neg", -1.5),
            s("b", 2.0),
            s("b2", 2.0),
            s("c", 3.0),
            s("a", 10.0)
        ],
        "by score, ties by member"
    );
    assert_eq!(
        must(all(Some(2)).await, "limit 2"),
        vec![s("neg", -1.5), s("b", 2.0)]
    );
    assert!(must(all(Some(0)).await, "limit 0").is_empty(), "limit 0");
    assert_eq!(
        must(store.zrange_by_score(&z, 2.0, 3.0, None).await, "inclusive"),
        vec![s("b", 2.0), s("b2", 2.0), s("c", 3.0)],
        "bounds are inclusive"
    );
    assert_eq!(
        must(
            store.zrange_by_score(&z, 2.5, f64::INFINITY, Some(1)).await,
            "open max"
        ),
        vec![s("c", 3.0)]
    );
    assert!(
        must(store.zrange_by_score(&z, 3.0, 2.0, None).await, "min > max").is_empty(),
        "min > max is empty"
    );
    // An update moves the member.
    assert!(!must(store.zadd(&z, "neg", 2.5).await, "move neg"));
    assert_eq!(
        must(store.zrange_by_score(&z, 2.1, 2.9, None).await, "moved"),
        vec![s("neg", 2.5)]
    );
    // ZADD leaves an existing TTL alone.
    assert!(must(store.expire(&z, LONG).await, "expire"));
    assert!(must(store.zadd(&z, "d", 4.0).await, "zadd d"));
    assert_ttl_between(ttl(store, &z).await, HALF_LONG, LONG, "ZADD keeps TTL");

    assert_eq!(
        must(store.zrem(&z, &["a", "missing", "a", "d"]).await, "zrem"),
        2,
        "zrem counts members present"
    );
    assert_eq!(
        must(store.zrem_range_by_score(&z, 2.0, 2.5).await, "zremrange"),
        3,
        "b, b2, neg"
    );
    assert_eq!(must(all(None).await, "rest"), vec![s("c", 3.0)]);
    assert_eq!(must(store.zrem(&z, &["c"]).await, "zrem last"), 1);
    assert!(
        !must(store.exists(&z).await, "exists"),
        "an emptied set is deleted"
    );

    let z2 = format!("{ns}:z2");
    for (i, m) in ["x", "y", "z"].iter().enumerate() {
        must(store.zadd(&z2, m, i as f64).await, "zadd");
    }
    assert_eq!(
        must(
            store
                .zrem_range_by_score(&z2, f64::NEG_INFINITY, f64::INFINITY)
                .await,
            "zremrange all"
        ),
        3
    );
    assert!(
        !must(store.exists(&z2).await, "exists"),
        "a set emptied by range removal is deleted"
    );
    cleanup(store, &ns).await;
}

/// Sorted-set edge cases: infinite and extreme scores, many members, NaN rejected.
pub async fn check_sorted_set_edges(store: &dyn Store) {
    let ns = namespace("zset_edges");
    let z = format!("{ns}:z");
    must(store.zadd(&z, "inf", f64::INFINITY).await, "zadd +inf");
    must(store.zadd(&z, "-inf", f64::NEG_INFINITY).await, "zadd -inf");
    must(store.zadd(&z, "big", 1.7e308).await, "zadd big");
    must(store.zadd(&z, "tiny", 5e-324).await, "zadd tiny");
    must(store.zadd(&z, "zero", 0.0).await, "zadd zero");
    let got = must(
        store
            .zrange_by_score(&z, f64::NEG_INFINITY, f64::INFINITY, None)
            .await,
        "zrange",
    );
    let names: Vec<&str> = got.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["-inf", "zero", "tiny", "big", "inf"]);
    assert_eq!(got[4].1, f64::INFINITY);
    assert_eq!(got[0].1, f64::NEG_INFINITY);
    assert_eq!(got[2].1, 5e-324, "scores round-trip exactly");
    assert_eq!(got[3].1, 1.7e308);
    assert_eq!(
        must(store.zrange_by_score(&z, 0.0, 0.0, None).await, "zero only"),
        vec![("zero".to_owned(), 0.0)]
    );
    must_be_invalid(store.zadd(&z, "nan", f64::NAN).await, "NaN score");
    must_be_invalid(
        store.zrange_by_score(&z, f64::NAN, 1.0, None).await,
        "NaN min",
    );
    must_be_invalid(
        store.zrem_range_by_score(&z, 0.0, f64::NAN).await,
        "NaN max",
    );
    assert_eq!(must(store.zcard(&z).await, "zcard"), 5, "NaN added nothing");
    // Members are arbitrary strings, and many of them page correctly.
    let z2 = format!("{ns}:many");
    for i in 0..300 {
        must(
            store
                .zadd(&z2, &format!("member {i} ✓:*"), f64::from(i % 10))
                .await,
            "zadd many",
        );
    }
    assert_eq!(must(store.zcard(&z2).await, "zcard many"), 300);
    assert_eq!(
        must(store.zrange_by_score(&z2, 9.0, 9.0, None).await, "score 9").len(),
        30
    );
    assert_eq!(
        must(
            store.zrange_by_score(&z2, 0.0, 9.0, Some(250)).await,
            "limit"
        )
        .len(),
        250
    );
    cleanup(store, &ns).await;
}

/// `WRONGTYPE`: string reads and writes against a sorted set fail (a plain `SET` replaces it);
/// sorted-set commands against a string fail; `MGET` reads another type as missing.
pub async fn check_wrong_type(store: &dyn Store) {
    let ns = namespace("wrongtype");
    let (z, s) = (format!("{ns}:zset"), format!("{ns}:string"));
    must(store.zadd(&z, "m", 1.0).await, "zadd");
    assert!(set(store, &s, b"1", SetOptions::new()).await);

    must_be_wrong_type(store.get(&z).await, &z, "GET on a zset");
    must_be_wrong_type(store.get_ex(&z, LONG).await, &z, "GETEX on a zset");
    must_be_wrong_type(store.incr_by(&z, 1, None).await, &z, "INCRBY on a zset");
    must_be_wrong_type(
        store
            .compare_and_swap(&z, None, Some(b"x"), Expiry::Never)
            .await,
        &z,
        "CAS on a zset",
    );
    assert_eq!(
        must(store.get_many(&[&z, &s]).await, "MGET"),
        vec![None, Some(Bytes::from_static(b"1"))],
        "MGET reads a zset as missing"
    );
    assert!(
        !set(store, &z, b"x", SetOptions::new().if_absent()).await,
        "NX: the zset exists"
    );
    assert_eq!(
        must(store.zcard(&z).await, "zcard"),
        1,
        "refused NX changed nothing"
    );

    must_be_wrong_type(store.zadd(&s, "m", 1.0).await, &s, "ZADD on a string");
    must_be_wrong_type(store.zrem(&s, &["m"]).await, &s, "ZREM on a string");
    must_be_wrong_type(
        store.zrange_by_score(&s, 0.0, 1.0, None).await,
        &s,
        "ZRANGEBYSCORE on a string",
    );
    must_be_wrong_type(
        store.zrem_range_by_score(&s, 0.0, 1.0).await,
        &s,
        "ZREMRANGEBYSCORE on a string",
    );
    must_be_wrong_type(store.zcard(&s).await, &s, "ZCARD on a string");
    assert_eq!(
        get(store, &s).await.as_deref(),
        Some(&b"1"[..]),
        "unchanged"
    );

    // Type-agnostic commands work on both; a plain SET replaces a zset.
    assert!(must(store.exists(&z).await, "exists zset"));
    assert!(set(store, &z, b"now a string", SetOptions::new().if_present()).await);
    assert_eq!(get(store, &z).await.as_deref(), Some(&b"now a string"[..]));
    must_be_wrong_type(store.zcard(&z).await, &z, "ZCARD after SET");
    assert_eq!(must(store.delete(&[&z, &s]).await, "delete"), 2);
    cleanup(store, &ns).await;
}
