//! A library call's deadline (`cache_core::deadline`) ends the store calls under it: on a frozen
//! server, calls inside a scope end at the scope's deadline (their error names its setting) instead
//! of each waiting for the store's own, longer bound; a deadline later than the store's bound
//! changes nothing.

mod common;

use std::time::Duration;

use cache_core::deadline::{self, Deadline};
use cache_core::{ErrorKind, SetOptions, Store};
use cache_redis::{RedisStore, RetryConfig};
use test_redis::RedisServer;

const SETTING: &str = "TEST_CALL_DEADLINE";

/// A store whose own bound of one call is long (response timeout 2 s, budget 3 s): a call ended
/// earlier was ended by the deadline.
async fn patient_store(server: &RedisServer) -> RedisStore {
    let config = common::config(&server.url())
        .with_response_timeout(Duration::from_secs(2))
        .with_retry(RetryConfig::default().with_budget(Duration::from_secs(3)));
    let store = RedisStore::connect(&config).await.unwrap();
    // Both shared connections open, so every call below takes the fast path first.
    for _ in 0..4 {
        store.get("warm").await.unwrap();
    }
    store
}

#[track_caller]
fn assert_ended_by_deadline(what: &str, r: cache_core::Result<()>) {
    let e = r.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{what}: {e}");
    assert!(e.to_string().contains(SETTING), "{what}: {e}");
}

#[tokio::test]
async fn every_store_call_under_a_deadline_ends_at_it_on_a_frozen_server() {
    let server = RedisServer::start();
    let store = patient_store(&server).await;
    server.freeze();
    // One deadline for three calls in sequence (as a session create makes several): the first
    // waits until the deadline, the next ones fail at once; none waits the store's 2-3 s bound.
    let d = Deadline::after(Duration::from_millis(300), SETTING);
    let results = deadline::scope(d, async {
        let get = store.get("k").await.map(|_| ());
        let set = store.set("k", b"v", SetOptions::new()).await.map(|_| ());
        let incr = store.incr_by("n", 1, None).await.map(|_| ());
        (get, set, incr)
    })
    .await;
    assert!(d.is_expired());
    assert_ended_by_deadline("get", results.0);
    assert_ended_by_deadline("set", results.1);
    assert_ended_by_deadline("incr_by", results.2);
    // Outside the scope, the store's own bound applies again.
    let e = store.get("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(!e.to_string().contains(SETTING), "{e}");
    server.thaw();
    store.get("k").await.unwrap();
}

#[tokio::test]
async fn a_deadline_later_than_the_store_bound_changes_nothing() {
    let server = RedisServer::start();
    let store = common::store(&server).await;
    let d = Deadline::after(Duration::from_secs(60), SETTING);
    deadline::scope(d, async {
        store.set("k", b"v", SetOptions::new()).await.unwrap();
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    })
    .await;
    server.freeze();
    let e = deadline::scope(d, store.get("k")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(
        !e.to_string().contains(SETTING),
        "the store's own bound came first: {e}"
    );
    server.thaw();
}
