//! Store failures injected with `MockStore`: reads fail open, writes follow the write policy,
//! invalidation reports errors, and bad input never reaches the store. A call the test did not
//! expect makes the mock panic, so "no write was attempted" is checked by not expecting one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::{Bytes, CasOutcome, Error};
use cache_domain::{CacheConfig, CacheManager, LeaseConfig, LoadError, WritePolicy};
use cache_testing::MockStore;

fn timeout() -> Error {
    Error::Timeout {
        operation: "GET".into(),
        elapsed: Duration::from_millis(500),
        setting: "REDIS_RESPONSE_TIMEOUT",
    }
}

fn refused() -> Error {
    Error::Connection {
        target: "127.0.0.1:1".into(),
        message: "connection refused".into(),
        source: None,
    }
}

fn is_version_key(k: &str) -> bool {
    k.starts_with("nsversion:")
}

#[tokio::test]
async fn a_read_outage_is_a_miss_and_the_loader_still_serves_the_caller() {
    let mut mock = MockStore::new();
    mock.expect_get().returning(|_| Err(timeout()));
    let cache = CacheManager::new(mock);

    assert_eq!(cache.user().get::<String>("1").await.unwrap(), None);
    let got: Vec<Option<String>> = cache.user().get_many(&["1", "2"]).await.unwrap();
    assert_eq!(got, vec![None, None]);
    // No `set` is expected: after a failed read the write is skipped.
    let v: String = cache
        .user()
        .get_or_load("1", || async {
            Ok::<_, String>("from the database".into())
        })
        .await
        .unwrap();
    assert_eq!(v, "from the database");
    let s = cache.user().stats();
    assert_eq!((s.misses, s.loads, s.writes), (4, 1, 0));
    assert_eq!(s.store_errors, 3);
}

#[tokio::test]
async fn a_failed_data_read_skips_the_write_and_the_lease() {
    let mut mock = MockStore::new();
    mock.expect_get()
        .withf(is_version_key)
        .returning(|_| Ok(None));
    mock.expect_get()
        .withf(|k| k == "content:c1")
        .times(1)
        .returning(|_| Err(timeout()));
    let cache = CacheManager::builder(mock)
        .with_config(&CacheConfig::default().with_lease(LeaseConfig::default()))
        .build()
        .unwrap();
    let v: String = cache
        .content()
        .get_or_load("c1", || async { Ok::<_, String>("fresh".into()) })
        .await
        .unwrap();
    assert_eq!(v, "fresh");
    assert_eq!(cache.content().stats().store_errors, 1);
}

#[tokio::test]
async fn a_write_outage_is_logged_and_counted_or_returned_on_request() {
    let make = |policy| {
        let mut mock = MockStore::new();
        mock.expect_get().returning(|_| Ok(None));
        mock.expect_set().returning(|_, _, _| Err(refused()));
        mock.expect_set_many().returning(|_, _| Err(refused()));
        CacheManager::builder(mock)
            .with_config(&CacheConfig::default().with_write_policy(policy))
            .build()
            .unwrap()
    };
    let quiet = make(WritePolicy::LogAndCount);
    quiet.user().set("1", &"u").await.unwrap();
    quiet.user().set_many(&[("1", "u")]).await.unwrap();
    let v: String = quiet
        .user()
        .get_or_load("2", || async { Ok::<_, String>("loaded".into()) })
        .await
        .unwrap();
    assert_eq!(v, "loaded");
    assert_eq!(quiet.user().stats().store_errors, 3);
    assert_eq!(quiet.user().stats().writes, 0);

    let loud = make(WritePolicy::Propagate);
    let err = loud.user().set("1", &"u").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(loud.user().set_many(&[("1", "u")]).await.is_err());
    let err = loud
        .user()
        .get_or_load("2", || async { Ok::<String, String>("loaded".into()) })
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Cache(Error::Connection { .. })));
    assert_eq!(loud.user().stats().store_errors, 3);
}

#[tokio::test]
async fn caller_mistakes_are_returned_whatever_the_policy_and_never_reach_the_store() {
    // No expectations: any store call would panic.
    let cache = CacheManager::new(MockStore::new());
    assert!(matches!(
        cache.user().set("", &1).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        cache.user().get::<u8>("").await,
        Err(Error::InvalidInput(_))
    ));
    assert!(cache.user().invalidate("").await.is_err());
    assert!(cache
        .user()
        .with_ttl(Duration::ZERO)
        .set("1", &1)
        .await
        .is_err());
    // A map with non-string keys cannot be JSON: an encode error, before any store call.
    let bad = std::collections::HashMap::from([((1, 2), 3)]);
    assert!(matches!(
        cache.user().set("1", &bad).await,
        Err(Error::Encode(_))
    ));

    // A value over the store's size limit is the caller's problem too, under LogAndCount.
    let mut mock = MockStore::new();
    mock.expect_get().returning(|_| Ok(None));
    mock.expect_set()
        .returning(|_, _, _| Err(Error::Capacity("value is 9 MiB, the limit is 8 MiB".into())));
    let cache = CacheManager::new(mock);
    assert!(matches!(
        cache.content().set("c", &"big").await,
        Err(Error::Capacity(_))
    ));
    assert_eq!(cache.content().stats().store_errors, 0);
}

#[tokio::test]
async fn invalidation_and_version_bumps_return_store_errors() {
    let mut mock = MockStore::new();
    mock.expect_get_many().returning(|_| Err(refused()));
    mock.expect_incr_by().returning(|_, _, _| Err(refused()));
    mock.expect_scan().returning(|_, _, _| Err(refused()));
    let cache = CacheManager::new(mock);
    assert!(cache.user().invalidate("1").await.is_err());
    assert!(cache.invalidate_user_data("1").await.is_err());
    assert!(cache.user().bump_version().await.is_err());
    assert!(cache
        .user()
        .invalidate_matching(cache_domain::KeyMatch::All)
        .await
        .is_err());
}

#[tokio::test]
async fn crawl_status_updates_return_store_errors() {
    let mut mock = MockStore::new();
    mock.expect_get()
        .withf(is_version_key)
        .returning(|_| Ok(None));
    mock.expect_get().returning(|_| Ok(None));
    mock.expect_compare_and_swap()
        .returning(|_, _, _, _| Err(timeout()));
    let cache = CacheManager::new(mock);
    let err = cache
        .update_crawl_status("t", |s| s.advance(1))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(cache.crawl_status().stats().store_errors, 1);
}

#[tokio::test]
async fn crawl_status_retries_a_lost_race_with_the_value_it_was_given() {
    let mut mock = MockStore::new();
    mock.expect_get()
        .withf(is_version_key)
        .returning(|_| Ok(None));
    mock.expect_get().times(1).returning(|_| Ok(None));
    let mut theirs = cache_domain::CrawlStatus::new("t");
    theirs.advance(41);
    let theirs = cache_core::codec::encode(&theirs).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    mock.expect_compare_and_swap()
        .returning(move |_, expected, _, _| {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                assert!(expected.is_none());
                Ok(CasOutcome::Conflict {
                    current: Some(Bytes::from(theirs.clone())),
                })
            } else {
                assert!(expected.is_some());
                Ok(CasOutcome::Swapped)
            }
        });
    let cache = CacheManager::new(mock);
    let s = cache
        .update_crawl_status("t", |s| s.advance(1))
        .await
        .unwrap();
    assert_eq!(
        s.processed, 42,
        "applied on top of the other writer's value"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_undecodable_value_is_a_miss_even_if_deleting_it_fails() {
    let mut mock = MockStore::new();
    mock.expect_get()
        .withf(is_version_key)
        .returning(|_| Ok(None));
    mock.expect_get()
        .returning(|_| Ok(Some(b"garbage".to_vec())));
    mock.expect_compare_and_swap()
        .withf(|k, expected, new, _| {
            k == "user:1" && expected.as_deref() == Some(b"garbage") && new.is_none()
        })
        .times(1)
        .returning(|_, _, _, _| Err(refused()));
    let cache = CacheManager::new(mock);
    assert_eq!(cache.user().get::<String>("1").await.unwrap(), None);
    let s = cache.user().stats();
    assert_eq!((s.decode_failures, s.store_errors, s.misses), (1, 1, 1));
}

#[tokio::test]
async fn a_failed_lease_is_not_fatal() {
    let mut mock = MockStore::new();
    mock.expect_get().returning(|_| Ok(None));
    mock.expect_set()
        .withf(|k, _, _| k.starts_with("lease:"))
        .times(1)
        .returning(|_, _, _| Err(timeout()));
    // No data write is expected: the store just failed.
    let cache = CacheManager::builder(mock)
        .with_config(&CacheConfig::default().with_lease(LeaseConfig::default()))
        .build()
        .unwrap();
    let v: u32 = cache
        .user()
        .get_or_load("1", || async { Ok::<_, String>(7) })
        .await
        .unwrap();
    assert_eq!(v, 7);
}

#[tokio::test(start_paused = true)]
async fn a_version_refresh_failure_is_a_miss_and_keeps_the_known_version() {
    let mut mock = MockStore::new();
    let version_reads = Arc::new(AtomicUsize::new(0));
    let vr = version_reads.clone();
    mock.expect_get().withf(is_version_key).returning(move |_| {
        if vr.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(Some(b"3".to_vec()))
        } else {
            Err(timeout())
        }
    });
    mock.expect_get()
        .withf(|k| k == "user:v3:1")
        .returning(|_| Ok(Some(cache_core::codec::encode(&5u8).unwrap())));
    let cache = CacheManager::builder(mock)
        .with_config(&CacheConfig::default().with_version_refresh(Duration::from_millis(1)))
        .build()
        .unwrap();
    assert_eq!(cache.user().get::<u8>("1").await.unwrap(), Some(5));
    tokio::time::advance(Duration::from_millis(5)).await;
    // The refresh fails: that call is a miss at once (it does not wait out a second store call),
    // the failure is counted, and the known version 3 stays in use.
    assert_eq!(cache.user().get::<u8>("1").await.unwrap(), None);
    assert_eq!(cache.user().cached_version(), Some(3));
    assert_eq!(version_reads.load(Ordering::SeqCst), 2);
    assert_eq!(cache.user().stats().store_errors, 1);
    // Until the next refresh is due, calls use the known version without a version read.
    assert_eq!(cache.user().get::<u8>("1").await.unwrap(), Some(5));
    assert_eq!(version_reads.load(Ordering::SeqCst), 2);
}

/// The store's answers to a staged race for `nsversion:user`: version reads return `stale` (the
/// value before a bump this process already made: a read that ran before the bump and returned
/// after it, or a lagging replica), while the store itself holds `stored`.
fn versions_store(
    stale: &'static [u8],
    stored: &'static [u8],
    data_reads: Arc<std::sync::Mutex<Vec<String>>>,
) -> MockStore {
    let mut mock = MockStore::new();
    let first = Arc::new(AtomicUsize::new(0));
    mock.expect_get().withf(is_version_key).returning(move |_| {
        // The first read learns version 0 (no key); later ones are the staged stale reads.
        Ok((first.fetch_add(1, Ordering::SeqCst) > 0).then(|| stale.to_vec()))
    });
    mock.expect_get_many()
        .withf(|keys| keys.iter().all(|k| is_version_key(k)))
        .returning(move |keys| Ok(keys.iter().map(|_| Some(stale.to_vec())).collect()));
    mock.expect_get()
        .withf(|k| !is_version_key(k))
        .returning(move |k| {
            data_reads.lock().unwrap().push(k.to_owned());
            Ok(None)
        });
    mock.expect_incr_by()
        .withf(|k, d, _| is_version_key(k) && *d == 1)
        .times(1)
        .returning(|_, _, _| Ok(1));
    // A check against the primary: it holds the bumped value, so the read was stale.
    mock.expect_compare_and_swap()
        .withf(|k, _, _, _| is_version_key(k))
        .returning(move |_, _, _, _| {
            Ok(CasOutcome::Conflict {
                current: Some(Bytes::copy_from_slice(stored)),
            })
        });
    mock
}

/// Issue 12, item 10: a version read that returns a value from before a local bump must not take
/// the process back to the old version (it did, for one refresh interval: reads and writes went to
/// the old, invalidated namespace).
#[tokio::test(start_paused = true)]
async fn the_namespace_version_never_goes_back_when_a_read_races_a_bump() {
    let data_reads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mock = versions_store(b"0", b"1", Arc::clone(&data_reads));
    let cache = CacheManager::builder(mock)
        .with_config(&CacheConfig::default().with_version_refresh(Duration::from_secs(1)))
        .build()
        .unwrap();
    assert_eq!(cache.user().get::<String>("1").await.unwrap(), None);
    assert_eq!(cache.user().cached_version(), Some(0));
    assert_eq!(cache.user().bump_version().await.unwrap(), 1);
    assert_eq!(cache.user().cached_version(), Some(1));

    // The refresh interval passes; the next read re-reads the version and gets the stale 0.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(cache.user().get::<String>("1").await.unwrap(), None);
    assert_eq!(
        cache.user().cached_version(),
        Some(1),
        "the version went back"
    );
    // Invalidation paths read versions fresh (one round trip for all): the same rule.
    assert_eq!(
        cache.user().key_of("1").await.unwrap().as_str(),
        "user:v1:1"
    );
    assert_eq!(cache.user().cached_version(), Some(1));
    assert_eq!(
        *data_reads.lock().unwrap(),
        ["user:1", "user:v1:1"],
        "after the bump every read is in the new namespace"
    );
}
