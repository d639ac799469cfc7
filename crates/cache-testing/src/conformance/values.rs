//! Values: binary-safe and empty values, 1 MiB values, and the value-size limit.

use cache_core::{Bytes, CasOutcome, Expiry, KeyTtl, SetOptions, Store};

use super::support::*;
use super::Capabilities;

/// Values are binary-safe; the empty value is a value, not a missing key.
pub async fn check_binary_and_empty_values(store: &dyn Store) {
    let ns = namespace("binary");
    let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let cases: [(&str, &[u8]); 4] = [
        ("all-bytes", &all),
        ("nul", b"\0\0a\0"),
        ("crlf", b"*1\r\n$3\r\nGET\r\n"),
        ("empty", b""),
    ];
    for (name, value) in cases {
        let k = format!("{ns}:{name}");
        assert!(set(store, &k, value, SetOptions::new()).await);
        assert_eq!(get(store, &k).await.as_deref(), Some(value), "{name}");
    }
    let empty = format!("{ns}:empty");
    assert!(must(store.exists(&empty).await, "empty value exists"));
    assert_eq!(ttl(store, &empty).await, KeyTtl::Persistent);
    assert!(
        !set(store, &empty, b"x", SetOptions::new().if_absent()).await,
        "NX on an empty value: the key exists"
    );
    let keys: Vec<String> = cases.iter().map(|(n, _)| format!("{ns}:{n}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let many = must(store.get_many(&refs).await, "get_many binary");
    let expected: Vec<Option<Bytes>> = cases
        .iter()
        .map(|(_, v)| Some(Bytes::copy_from_slice(v)))
        .collect();
    assert_eq!(many, expected, "get_many of binary and empty values");
    // CAS distinguishes "empty" from "missing".
    let missing = format!("{ns}:missing");
    assert_eq!(
        must(
            store
                .compare_and_swap(&missing, Some(b""), Some(b"x"), Expiry::Never)
                .await,
            "cas empty vs missing"
        ),
        CasOutcome::Conflict { current: None }
    );
    assert_eq!(
        must(
            store
                .compare_and_swap(&empty, None, Some(b"x"), Expiry::Never)
                .await,
            "cas missing vs empty"
        ),
        CasOutcome::Conflict {
            current: Some(Bytes::new())
        }
    );
    assert_eq!(
        must(
            store
                .compare_and_swap(&empty, Some(b""), Some(&all), Expiry::Never)
                .await,
            "cas from empty"
        ),
        CasOutcome::Swapped
    );
    assert_eq!(get(store, &empty).await.as_deref(), Some(&all[..]));
    cleanup(store, &ns).await;
}

/// 1 MiB values round-trip through every write path; a value of exactly the limit is accepted and one
/// byte more is [`cache_core::Error::Capacity`] without writing anything.
pub async fn check_large_values(store: &dyn Store, caps: &Capabilities) {
    let ns = namespace("large");
    let mib = pattern_bytes(1024 * 1024);
    let (k1, k2, k3) = (
        format!("{ns}:set"),
        format!("{ns}:many"),
        format!("{ns}:cas"),
    );
    assert!(set(store, &k1, &mib, SetOptions::new()).await);
    assert_eq!(
        get(store, &k1).await.as_deref(),
        Some(&mib[..]),
        "1 MiB via set"
    );
    must(
        store.set_many(&[(&k2, &mib)], Expiry::In(LONG)).await,
        "set_many 1 MiB",
    );
    let many = must(store.get_many(&[&k1, &k2]).await, "get_many 1 MiB");
    assert!(many.iter().all(|v| v.as_deref() == Some(&mib[..])));
    assert_eq!(
        must(
            store
                .compare_and_swap(&k3, None, Some(&mib), Expiry::Never)
                .await,
            "cas 1 MiB"
        ),
        CasOutcome::Swapped
    );
    assert_eq!(
        must(
            store
                .compare_and_swap(&k3, Some(&mib), Some(b"small"), Expiry::Never)
                .await,
            "cas against 1 MiB"
        ),
        CasOutcome::Swapped
    );

    let max = caps.max_value_bytes;
    let at_limit = vec![b'x'; max];
    let k_max = format!("{ns}:at-limit");
    assert!(set(store, &k_max, &at_limit, SetOptions::new()).await);
    assert_eq!(
        get(store, &k_max).await.map(|v| v.len()),
        Some(max),
        "a value of exactly max_value_bytes"
    );
    drop(at_limit);
    let over = vec![b'y'; max + 1];
    let k_over = format!("{ns}:over");
    must_be_capacity(
        store.set(&k_over, &over, SetOptions::new()).await,
        "set one byte over",
    );
    assert_eq!(
        get(store, &k_over).await,
        None,
        "oversize set wrote nothing"
    );
    let k_batch = format!("{ns}:batch-ok");
    must_be_capacity(
        store
            .set_many(&[(&k_batch, b"small"), (&k_over, &over)], Expiry::Never)
            .await,
        "set_many with one oversize value",
    );
    assert_eq!(
        must(store.get_many(&[&k_batch, &k_over]).await, "get_many"),
        vec![None, None],
        "set_many with an oversize value must write nothing"
    );
    must_be_capacity(
        store
            .compare_and_swap(&k3, Some(b"small"), Some(&over), Expiry::Never)
            .await,
        "cas one byte over",
    );
    assert_eq!(get(store, &k3).await.as_deref(), Some(&b"small"[..]));
    cleanup(store, &ns).await;
}
