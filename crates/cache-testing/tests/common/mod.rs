//! Scenarios for the `backend_tests!` test, written once over any store.

#![allow(unreachable_pub)] // Used by the tests the macro generates in the test crate.

use cache_core::{SetOptions, Store};

/// Counts to three with `incr_by`.
pub async fn counts_to_three<S: Store>(store: S) {
    for _ in 0..3 {
        store.incr_by("n", 1, None).await.unwrap();
    }
    assert_eq!(store.get("n").await.unwrap().as_deref(), Some(&b"3"[..]));
}

/// A write is read back.
pub async fn reads_its_writes(store: &dyn Store) {
    assert!(store.set("k", b"v", SetOptions::new()).await.unwrap());
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}
