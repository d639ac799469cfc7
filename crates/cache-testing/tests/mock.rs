//! [`MockStore`] works as `Arc<dyn Store>` and injects errors.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Bytes, CasOutcome, Error, ErrorKind, Expiry, SetOptions, Store};
use cache_testing::MockStore;

#[tokio::test]
async fn mock_injects_errors_through_dyn_store() {
    let mut mock = MockStore::with_prefix("app");
    mock.expect_get().returning(|_| {
        Err(Error::Connection {
            target: "127.0.0.1:6379".into(),
            message: "connection refused".into(),
            source: None,
        })
    });
    mock.expect_set()
        .withf(|key, value, opts| key == "k" && value == b"v" && *opts == SetOptions::new())
        .times(1)
        .returning(|_, _, _| Err(Error::Capacity("full".into())));
    mock.expect_get_many()
        .withf(|keys| keys == &["a".to_owned(), "b".to_owned()])
        .returning(|keys| Ok(vec![None; keys.len()]));
    mock.expect_set_many()
        .withf(|entries, expiry| {
            entries == &[("a".to_owned(), b"1".to_vec())] && *expiry == Expiry::Never
        })
        .returning(|_, _| Ok(()));
    mock.expect_compare_and_swap()
        .withf(|key, expected, new, _| {
            key == "c" && expected.is_none() && new.as_deref() == Some(&b"x"[..])
        })
        .returning(|_, _, _, _| {
            Ok(CasOutcome::Conflict {
                current: Some(Bytes::from_static(b"y")),
            })
        });
    mock.expect_ping().returning(|| {
        Err(Error::Timeout {
            operation: "PING".into(),
            elapsed: Duration::from_millis(500),
            setting: "REDIS_RESPONSE_TIMEOUT",
        })
    });

    let store: Arc<dyn Store> = Arc::new(mock);
    assert_eq!(store.prefix(), "app");
    assert_eq!(store.backend_name(), "mock");
    let err = store.get("x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert!(err.is_transient());
    let err = store.set("k", b"v", SetOptions::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity);
    assert_eq!(store.get_many(&["a", "b"]).await.unwrap(), vec![None, None]);
    store.set_many(&[("a", b"1")], Expiry::Never).await.unwrap();
    assert_eq!(
        store
            .compare_and_swap("c", None, Some(b"x"), Expiry::Never)
            .await
            .unwrap(),
        CasOutcome::Conflict {
            current: Some(Bytes::from_static(b"y"))
        }
    );
    assert!(store.ping().await.unwrap_err().is_transient());
}

#[tokio::test]
#[should_panic(expected = "No matching expectation found")]
async fn unexpected_calls_fail_the_test() {
    let mut mock = MockStore::new();
    mock.expect_delete()
        .withf(|keys| keys.len() == 1)
        .returning(|_| Ok(1));
    let _ = mock.expect_get();
    let store: Arc<dyn Store> = Arc::new(mock);
    let _ = store.delete(&["a", "b"]).await;
}
