//! Compare-and-swap: every outcome and expiry mode, and no lost update under contention.

use super::support::*;
use cache_core::{Bytes, CasOutcome, Expiry, KeyTtl, Store};
use futures::future::join_all;

/// Compare-and-swap: create, conflict with the current value, swap, delete, expiry modes.
pub async fn check_compare_and_swap(store: &dyn Store) {
    let ns = namespace("cas");
    let k = format!("{ns}:k");
    let cas = |expected: Option<&'static [u8]>, new: Option<&'static [u8]>, expiry| {
        let k = k.clone();
        async move {
            must(
                store.compare_and_swap(&k, expected, new, expiry).await,
                "compare_and_swap",
            )
        }
    };
    assert_eq!(
        cas(Some(b"a"), Some(b"b"), Expiry::Never).await,
        CasOutcome::Conflict { current: None },
        "expected a value, key missing"
    );
    assert_eq!(get(store, &k).await, None, "a conflict writes nothing");
    assert_eq!(
        cas(None, None, Expiry::Never).await,
        CasOutcome::Swapped,
        "missing -> missing"
    );
    assert_eq!(
        cas(None, Some(b"a"), Expiry::In(LONG)).await,
        CasOutcome::Swapped,
        "create"
    );
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "create with TTL");
    assert_eq!(
        cas(None, Some(b"x"), Expiry::Never).await,
        CasOutcome::Conflict {
            current: Some(Bytes::from_static(b"a"))
        },
        "expected missing, key exists"
    );
    assert_eq!(
        cas(Some(b"z"), Some(b"x"), Expiry::Never).await,
        CasOutcome::Conflict {
            current: Some(Bytes::from_static(b"a"))
        },
        "wrong expected value"
    );
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "conflict keeps TTL");
    assert_eq!(
        cas(Some(b"a"), Some(b"b"), Expiry::Keep).await,
        CasOutcome::Swapped
    );
    assert_eq!(get(store, &k).await.as_deref(), Some(&b"b"[..]));
    assert_ttl_between(ttl(store, &k).await, HALF_LONG, LONG, "Expiry::Keep");
    assert_eq!(
        cas(Some(b"b"), Some(b"c"), Expiry::Never).await,
        CasOutcome::Swapped
    );
    assert_eq!(ttl(store, &k).await, KeyTtl::Persistent, "Expiry::Never");
    assert_eq!(
        cas(Some(b"c"), None, Expiry::Never).await,
        CasOutcome::Swapped,
        "delete"
    );
    assert!(
        !must(store.exists(&k).await, "exists"),
        "CAS to None deletes"
    );
    assert_eq!(
        cas(None, Some(b"d"), Expiry::Keep).await,
        CasOutcome::Swapped,
        "Keep on a new key"
    );
    assert_eq!(
        ttl(store, &k).await,
        KeyTtl::Persistent,
        "Keep on a new key: no TTL"
    );
    cleanup(store, &ns).await;
}

/// Increments a counter with a read / compare-and-swap loop; returns the number of conflicts.
async fn cas_increment(store: &dyn Store, key: &str) -> u32 {
    let mut current = get(store, key).await;
    let mut conflicts = 0;
    loop {
        // Let the other tasks read the same value, so that swaps really compete.
        tokio::task::yield_now().await;
        let n: u64 = match &current {
            None => 0,
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{key}: counter holds {v:?}")),
        };
        let next = (n + 1).to_string();
        match must(
            store
                .compare_and_swap(
                    key,
                    current.as_deref(),
                    Some(next.as_bytes()),
                    Expiry::Never,
                )
                .await,
            "cas increment",
        ) {
            CasOutcome::Swapped => return conflicts,
            CasOutcome::Conflict { current: now } => {
                conflicts += 1;
                assert!(conflicts < 10_000, "{key}: CAS loop does not converge");
                current = now.map(Vec::from);
            }
        }
    }
}

/// 50 concurrent read-modify-write loops over compare-and-swap: no update is lost.
pub async fn check_compare_and_swap_contention(store: &dyn Store) {
    let ns = namespace("cas_contention");
    let k = format!("{ns}:counter");
    let tasks = 50;
    join_all((0..tasks).map(|_| cas_increment(store, &k))).await;
    assert_eq!(
        get(store, &k).await,
        Some(tasks.to_string().into_bytes()),
        "every increment survived"
    );
    cleanup(store, &ns).await;
}
