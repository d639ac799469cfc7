//! Failure injection and call accounting with `cache_testing::MockStore`: a mock without
//! expectations panics on any call, so "this never reaches the store" is checked exactly.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Bytes, CasOutcome, Error, Store};
use cache_memory::MemoryStore;
use cache_testing::MockStore;
use common::*;
use serde_json::json;
use sessions::keys::session_key;
use sessions::{Clock, CreateOptions, SessionManager, TokioClock, DEFAULT_IDLE_TIMEOUT};

fn connection_lost() -> Error {
    Error::Connection {
        target: "127.0.0.1:1".into(),
        message: "connection refused".into(),
        source: None,
    }
}

/// A real record (created on a memory store) and its token, with a clock both managers share.
async fn real_session(clock: &Arc<dyn Clock>) -> (String, String, Vec<u8>) {
    let store = MemoryStore::default();
    let m = SessionManager::builder(store.clone())
        .with_clock(Arc::clone(clock))
        .build()
        .unwrap();
    let c = m
        .create("u", CreateOptions::new().with_data(obj(json!({"a": 1}))))
        .await
        .unwrap();
    let key = session_key(c.token.handle()).unwrap();
    let raw = store.get(&key).await.unwrap().unwrap().to_vec();
    (c.token.expose().to_owned(), key.into_string(), raw)
}

#[tokio::test]
async fn malformed_tokens_never_reach_the_store() {
    // No expectations: any store call panics.
    let m = SessionManager::new(MockStore::new());
    scenarios::assert_malformed_tokens_rejected(&m).await;
    // Bad user ids and bad TTLs are rejected before the store too.
    assert!(m.create("", CreateOptions::new()).await.is_err());
    assert!(m.list_user_sessions("").await.is_err());
    assert!(m.revoke_all(&"x".repeat(1000)).await.is_err());
    let token = sessions::SessionToken::generate().unwrap();
    assert!(m.extend(token.expose(), Duration::ZERO).await.is_err());
}

/// The common case of `get` is exactly one store call: `GETEX` with the idle timeout.
#[tokio::test(start_paused = true)]
async fn get_is_one_round_trip_in_the_common_case() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let (token, key, raw) = real_session(&clock).await;
    let mut mock = MockStore::new();
    mock.expect_get_ex()
        .withf(move |k, ttl| k == key && *ttl == DEFAULT_IDLE_TIMEOUT)
        .times(3)
        .returning(move |_, _| Ok(Some(raw.clone())));
    let m = SessionManager::builder(mock)
        .with_clock(clock)
        .build()
        .unwrap();
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(10)).await; // within the 60 s touch interval
        let s = m.get(&token).await.unwrap().unwrap();
        assert_eq!(s.data["a"], 1);
    }
}

/// When the touch interval has passed, the second call is a compare-and-swap that keeps TTL
/// semantics and never overwrites a concurrent change.
#[tokio::test(start_paused = true)]
async fn touch_is_a_compare_and_swap_against_the_bytes_read() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let (token, _key, raw) = real_session(&clock).await;
    let mut mock = MockStore::new();
    let r = raw.clone();
    mock.expect_get_ex()
        .times(1)
        .returning(move |_, _| Ok(Some(r.clone())));
    mock.expect_compare_and_swap()
        .withf(move |_, expected, new, _| expected.as_deref() == Some(&raw[..]) && new.is_some())
        .times(1)
        .returning(|_, _, _, _| Ok(CasOutcome::Conflict { current: None }));
    let m = SessionManager::builder(mock)
        .with_clock(clock)
        .build()
        .unwrap();
    tokio::time::advance(Duration::from_secs(120)).await;
    // The session was deleted between the read and the touch: no session.
    assert!(m.get(&token).await.unwrap().is_none());
}

/// Fail closed: a store error is an error on every path, never `None` or a stale session.
#[tokio::test(start_paused = true)]
async fn store_errors_are_errors_not_none() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let (token, _key, raw) = real_session(&clock).await;

    // GETEX fails.
    let mut mock = MockStore::new();
    mock.expect_get_ex()
        .returning(|_, _| Err(connection_lost()));
    mock.expect_get().returning(|_| Err(connection_lost()));
    mock.expect_zrem_range_by_score()
        .returning(|_, _, _| Err(connection_lost()));
    let m = SessionManager::builder(mock)
        .with_clock(Arc::clone(&clock))
        .build()
        .unwrap();
    let err = m.get(&token).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(m.update(&token, &obj(json!({"b": 2}))).await.is_err());
    assert!(m.rotate(&token).await.is_err());
    assert!(m.delete(&token).await.is_err());
    assert!(m.list_user_sessions("u").await.is_err());
    assert!(m.revoke_all("u").await.is_err());
    assert!(m.create("u", CreateOptions::new()).await.is_err());

    // The read works but the touch fails: an error, not the session we read.
    let mut mock = MockStore::new();
    let r = raw.clone();
    mock.expect_get_ex()
        .returning(move |_, _| Ok(Some(r.clone())));
    mock.expect_get().returning(move |_| Ok(Some(raw.clone())));
    mock.expect_compare_and_swap()
        .returning(|_, _, _, _| Err(connection_lost()));
    let m = SessionManager::builder(mock)
        .with_clock(clock)
        .build()
        .unwrap();
    tokio::time::advance(Duration::from_secs(120)).await;
    assert!(m.get(&token).await.is_err());
    assert!(m.update(&token, &obj(json!({"b": 2}))).await.is_err());
}

/// A record that does not decode is an error, not "no session".
#[tokio::test]
async fn corrupt_record_is_an_error() {
    let token = sessions::SessionToken::generate().unwrap();
    let mut mock = MockStore::new();
    mock.expect_get_ex()
        .returning(|_, _| Ok(Some(b"garbage".to_vec())));
    let m = SessionManager::new(mock);
    let err = m.get(token.expose()).await.unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err}");
}

/// Update retries on conflict with the value the conflict returned, without another read.
#[tokio::test(start_paused = true)]
async fn update_conflict_retry_costs_no_extra_read() {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let (token, _key, raw) = real_session(&clock).await;
    // The value another writer left: same record with another field.
    let mut other: serde_json::Value = cache_core::codec::decode(&raw).unwrap();
    other["data"]["other"] = json!(true);
    let other = cache_core::codec::encode(&other).unwrap();

    let mut mock = MockStore::new();
    let r = raw.clone();
    mock.expect_get()
        .times(1)
        .returning(move |_| Ok(Some(r.clone())));
    let mut seq = mockall::Sequence::new();
    let (r, o) = (raw.clone(), other.clone());
    mock.expect_compare_and_swap()
        .withf(move |_, expected, _, _| expected.as_deref() == Some(&r[..]))
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _, _, _| {
            Ok(CasOutcome::Conflict {
                current: Some(Bytes::from(o.clone())),
            })
        });
    let o = other.clone();
    mock.expect_compare_and_swap()
        .withf(move |_, expected, new, _| {
            let new: serde_json::Value =
                cache_core::codec::decode(new.as_deref().unwrap_or_default()).unwrap();
            expected.as_deref() == Some(&o[..])
                && new["data"] == json!({"a": 1, "other": true, "mine": 1})
        })
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Ok(CasOutcome::Swapped));
    let m = SessionManager::builder(mock)
        .with_clock(clock)
        .build()
        .unwrap();
    let s = m
        .update(&token, &obj(json!({"mine": 1})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(std::sync::Arc::unwrap_or_clone(s.data)),
        json!({"a": 1, "other": true, "mine": 1})
    );
}

/// `revoke_all` reads the index again until it names nothing new; when something new appears in
/// every reading, it stops after `MAX_REVOKE_ROUNDS` readings with a transient error instead of
/// looping for ever or claiming success.
#[tokio::test]
async fn revoke_all_is_bounded_when_sessions_keep_appearing() {
    let mut mock = MockStore::new();
    mock.expect_zrem_range_by_score().returning(|_, _, _| Ok(0));
    mock.expect_zrange_by_score()
        .times(sessions::MAX_REVOKE_ROUNDS)
        .returning(|_, _, _, _| {
            let fresh = sessions::SessionToken::generate().unwrap();
            Ok(vec![(fresh.handle().as_str().to_owned(), 1e15)])
        });
    mock.expect_get_many()
        .returning(|keys| Ok(vec![Some(b"x".to_vec()); keys.len()]));
    mock.expect_delete().returning(|keys| Ok(keys.len() as u64));
    mock.expect_zrem().returning(|_, m| Ok(m.len() as u64));
    let m = SessionManager::new(mock);
    let err = m.revoke_all("u").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}
