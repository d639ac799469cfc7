//! The cache manager on the in-memory store: every scenario of `scenarios/` (also run on Redis and
//! Redis Cluster), and the tests that need tokio's paused clock, so that TTLs, refresh intervals and
//! expiry are checked exactly and without sleeping.

#[macro_use]
mod scenarios;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::{KeyTtl, Store};
use cache_domain::{
    CacheConfig, CacheManager, CrawlError, CrawlState, CrawlStatus, Family, LoadError,
};
use cache_memory::MemoryStore;
use scenarios::{sample_id, user, Target, User};

backend_tests!(Target::memory);

fn manager() -> (CacheManager<MemoryStore>, MemoryStore) {
    let store = MemoryStore::default();
    (CacheManager::new(store.clone()), store)
}

#[tokio::test(start_paused = true)]
async fn every_family_round_trips_under_its_schema_key_with_its_exact_default_ttl() {
    let (cache, store) = manager();
    let documented = [
        (Family::User, "user:42", 60),
        (Family::UserKeywords, "keyword:user:42", 30),
        (Family::KeywordPosts, "post:keyword:42", 15),
        (Family::KeywordTrends, "trend:keyword:42", 30),
        (Family::CrawlStatus, "crawl:status:42", 60),
        (Family::Content, "content:42", 120),
        (Family::DeployStatus, "deploy:status:42", 24 * 60),
        (Family::Metrics, "metrics:api:2026-11-01", 5),
    ];
    for (family, key, minutes) in documented {
        let id = sample_id(family);
        cache
            .family(family)
            .set(id, &[family.name()])
            .await
            .unwrap();
        assert_eq!(
            store.ttl(key).await.unwrap(),
            KeyTtl::ExpiresIn(Duration::from_secs(minutes * 60)),
            "{key}"
        );
        assert_eq!(
            cache.family(family).get::<Vec<String>>(id).await.unwrap(),
            Some(vec![family.name().to_owned()])
        );
    }
    // A crawl status round-trips as its type.
    let mut crawl = CrawlStatus::new("t1");
    crawl.start(Some(5));
    cache
        .crawl_status()
        .set(&crawl.task_id, &crawl)
        .await
        .unwrap();
    assert_eq!(cache.crawl_status().get("t1").await.unwrap(), Some(crawl));

    // Just before its TTL a value is there, just after it is gone.
    tokio::time::advance(Duration::from_secs(5 * 60 - 1)).await;
    let metrics = cache.metrics();
    let id = "api:2026-11-01";
    assert!(metrics.get::<Vec<String>>(id).await.unwrap().is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(metrics.get::<Vec<String>>(id).await.unwrap().is_none());
    assert!(cache
        .user()
        .get::<Vec<String>>("42")
        .await
        .unwrap()
        .is_some());

    let stats = cache.stats();
    assert_eq!(stats.family(Family::User).hits, 2);
    assert_eq!(stats.family(Family::Metrics).hits, 2);
    assert_eq!(stats.family(Family::Metrics).misses, 1);
    assert_eq!(stats.family(Family::Metrics).writes, 1);
    assert_eq!(stats.total().writes, 9);
}

#[tokio::test(start_paused = true)]
async fn ttl_overrides_from_env_config_builder_and_per_call() {
    let store = MemoryStore::default();
    let config = CacheConfig::from_lookup(|k| (k == "CACHE_TTL_USER").then(|| "2h".to_owned()))
        .unwrap()
        .with_ttl(Family::Content, Duration::from_secs(7));
    let cache = CacheManager::with_config(store.clone(), config).unwrap();
    let ttl = |key: &'static str| {
        let store = store.clone();
        async move { store.ttl(key).await.unwrap().remaining().unwrap() }
    };

    cache.user().set("1", &user(1)).await.unwrap();
    assert_eq!(ttl("user:1").await, Duration::from_secs(7200));
    cache.content().set("c", &"x").await.unwrap();
    assert_eq!(ttl("content:c").await, Duration::from_secs(7));
    // Per call: the handle's TTL, on writes and on the writes of get_or_load.
    cache
        .user()
        .with_ttl(Duration::from_secs(30))
        .set("2", &user(2))
        .await
        .unwrap();
    assert_eq!(ttl("user:2").await, Duration::from_secs(30));
    cache
        .user()
        .with_ttl(Duration::from_millis(1500))
        .set("3", &user(3))
        .await
        .unwrap();
    assert_eq!(ttl("user:3").await, Duration::from_millis(1500));
    let v: User = cache
        .user()
        .with_ttl(Duration::from_secs(45))
        .get_or_load("4", || async { Ok::<_, std::io::Error>(user(4)) })
        .await
        .unwrap();
    assert_eq!(v, user(4));
    assert_eq!(ttl("user:4").await, Duration::from_secs(45));
    // A zero TTL is refused, not "forever" and not "delete".
    let err = cache
        .user()
        .with_ttl(Duration::ZERO)
        .set("5", &user(5))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TTL"), "{err}");
    assert!(!store.exists("user:5").await.unwrap());
    // Bad configuration is refused when the manager is built.
    assert!(CacheManager::with_config(
        store.clone(),
        CacheConfig::default().with_ttl(Family::User, Duration::ZERO)
    )
    .is_err());
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_an_error_before_any_store_call() {
    let (cache, store) = manager();
    assert!(cache.user().get::<User>("").await.is_err());
    assert!(cache.user().set("", &user(1)).await.is_err());
    assert!(cache.user().get::<User>(&"x".repeat(300)).await.is_err());
    assert!(cache.metrics().get::<User>("no-date").await.is_err());
    assert!(cache
        .metrics()
        .set(&format!("{}:d", "t".repeat(193)), &1)
        .await
        .is_err());
    assert!(cache.invalidate_user_data("").await.is_err());
    let r: Result<User, LoadError<std::io::Error>> =
        cache.user().get_or_load("", || async { Ok(user(1)) }).await;
    assert!(r.unwrap_err().cache_error().is_some());
    assert_eq!(store.entry_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_error_is_not_cached() {
    let (cache, _) = manager();
    let r = cache
        .user()
        .get_or_load("1", || async { Err::<User, _>("down".to_owned()) })
        .await;
    assert!(r.is_err());
    let v = cache
        .user()
        .get_or_load("1", || async { Ok::<_, String>(user(1)) })
        .await
        .unwrap();
    assert_eq!(v, user(1));
    let s = cache.user().stats();
    assert_eq!((s.loads, s.load_errors), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_does_not_wedge_the_waiters() {
    let (cache, _) = manager();
    let calls = Arc::new(AtomicUsize::new(0));
    let spawn = |cache: CacheManager<MemoryStore>, calls: Arc<AtomicUsize>| {
        tokio::spawn(async move {
            cache
                .user()
                .get_or_load("7", || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok::<_, String>(user(7))
                })
                .await
        })
    };
    let leader = spawn(cache.clone(), calls.clone());
    tokio::time::sleep(Duration::from_millis(1)).await;
    let waiters: Vec<_> = (0..10)
        .map(|_| spawn(cache.clone(), calls.clone()))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    leader.abort();
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), user(7));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A caller that times out while waiting does not disturb the others either.
    let timed_out = tokio::time::timeout(
        Duration::from_millis(5),
        cache.user().get_or_load("8", || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, String>(user(8))
        }),
    )
    .await;
    assert!(timed_out.is_err());
    assert_eq!(cache.loads_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn single_flight_is_per_key() {
    let (cache, _) = manager();
    let started = Arc::new(AtomicUsize::new(0));
    // Two keys load at the same time: neither waits for the other.
    let a = {
        let (cache, started) = (cache.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .user()
                .get_or_load("a", || async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok::<_, String>(user(1))
                })
                .await
        })
    };
    let b = {
        let (cache, started) = (cache.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .user()
                .get_or_load("b", || async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok::<_, String>(user(2))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(started.load(Ordering::SeqCst), 2);
    assert_eq!(cache.loads_in_flight(), 2);
    assert_eq!(a.await.unwrap().unwrap(), user(1));
    assert_eq!(b.await.unwrap().unwrap(), user(2));
}

#[tokio::test(start_paused = true)]
async fn negative_caching_is_off_by_default_and_bounded_when_on() {
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |cache: CacheManager<MemoryStore>, calls: Arc<AtomicUsize>| async move {
        cache
            .user()
            .get_or_load_optional("404", || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<Option<User>, String>(None)
            })
            .await
            .unwrap()
    };
    let (off, _) = manager();
    assert_eq!(load(off.clone(), calls.clone()).await, None);
    assert_eq!(load(off.clone(), calls.clone()).await, None);
    assert_eq!(calls.swap(0, Ordering::SeqCst), 2);

    let store = MemoryStore::default();
    let on = CacheManager::with_config(
        store.clone(),
        CacheConfig::default().with_negative_caching(Duration::from_secs(30)),
    )
    .unwrap();
    assert_eq!(load(on.clone(), calls.clone()).await, None);
    assert_eq!(load(on.clone(), calls.clone()).await, None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.ttl("user:404").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(30))
    );
    // A plain read sees a miss, never a decode failure, and the marker stays.
    assert_eq!(on.user().get::<User>("404").await.unwrap(), None);
    assert_eq!(on.user().stats().decode_failures, 0);
    // A loader that needs a value is not fooled by the marker.
    let v = on
        .user()
        .get_or_load("404", || async { Ok::<_, String>(user(404)) })
        .await
        .unwrap();
    assert_eq!(v, user(404));
    on.user().invalidate("404").await.unwrap();
    assert_eq!(load(on.clone(), calls.clone()).await, None);
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(load(on.clone(), calls.clone()).await, None);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn early_refresh_reloads_a_hot_key_before_it_expires() {
    let store = MemoryStore::default();
    let cache = CacheManager::with_config(
        store.clone(),
        CacheConfig::default()
            .with_ttl(Family::KeywordTrends, Duration::from_secs(100))
            .with_early_refresh(0.2),
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let get = || {
        let calls = calls.clone();
        let cache = cache.clone();
        async move {
            cache
                .keyword_trends()
                .get_or_load("k", || async move {
                    Ok::<_, String>(calls.fetch_add(1, Ordering::SeqCst) as u64)
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(get().await, 0);
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(
        get().await,
        0,
        "outside the window: the cached value, no load"
    );
    tokio::time::advance(Duration::from_secs(35)).await;
    assert_eq!(get().await, 1, "15 s left < 20% of 100 s: reloaded");
    assert_eq!(
        store.ttl("trend:keyword:k").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(100))
    );
    assert_eq!(get().await, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A failing reload serves the cached value.
    tokio::time::advance(Duration::from_secs(90)).await;
    let v: u64 = cache
        .keyword_trends()
        .get_or_load("k", || async { Err::<u64, _>("db down".to_owned()) })
        .await
        .unwrap();
    assert_eq!(v, 1);
    assert_eq!(cache.keyword_trends().stats().load_errors, 1);
}

#[tokio::test(start_paused = true)]
async fn version_bump_invalidates_a_family_in_one_step() {
    let store = MemoryStore::default();
    let a = CacheManager::new(store.clone());
    let b = CacheManager::with_config(
        store.clone(),
        CacheConfig::default().with_version_refresh(Duration::from_secs(2)),
    )
    .unwrap();
    a.content().set("c1", &"old").await.unwrap();
    a.user().set("u1", &user(1)).await.unwrap();
    assert_eq!(
        b.content().get::<String>("c1").await.unwrap().as_deref(),
        Some("old")
    );
    assert_eq!(b.content().cached_version(), Some(0));

    assert_eq!(a.content().bump_version().await.unwrap(), 1);
    // The bumping manager switches at once; the old key is still stored, unreachable, ageing out.
    assert_eq!(a.content().get::<String>("c1").await.unwrap(), None);
    assert!(store.exists("content:c1").await.unwrap());
    assert_eq!(
        store.ttl("content:c1").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(7200))
    );
    a.content().set("c1", &"new").await.unwrap();
    assert_eq!(
        a.content().key_of("c1").await.unwrap().as_str(),
        "content:v1:c1"
    );
    assert!(store.exists("content:v1:c1").await.unwrap());
    // Other families are untouched.
    assert_eq!(a.user().get::<User>("u1").await.unwrap(), Some(user(1)));

    // The other manager follows within its refresh interval (2 s), not before.
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(
        b.content().get::<String>("c1").await.unwrap().as_deref(),
        Some("old")
    );
    tokio::time::advance(Duration::from_millis(600)).await;
    assert_eq!(
        b.content().get::<String>("c1").await.unwrap().as_deref(),
        Some("new")
    );
    assert_eq!(b.content().cached_version(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn bulk_get_and_set_in_one_call() {
    let (cache, store) = manager();
    let users: Vec<(String, User)> = (0..64).map(|i| (i.to_string(), user(i))).collect();
    cache.user().set_many(&users).await.unwrap();
    assert_eq!(
        store.ttl("user:63").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(3600))
    );
    let mut ids: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    ids.push("missing".into());
    let got: Vec<Option<User>> = cache.user().get_many(&ids).await.unwrap();
    assert_eq!(got.len(), 65);
    assert_eq!(got[5], Some(user(5)));
    assert_eq!(got[64], None);
    let s = cache.user().stats();
    assert_eq!((s.hits, s.misses, s.writes), (64, 1, 64));
    // Per-call TTL on bulk writes, and empty inputs.
    cache
        .user()
        .with_ttl(Duration::from_secs(9))
        .set_many(&[("x", user(1))])
        .await
        .unwrap();
    assert_eq!(
        store.ttl("user:x").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(9))
    );
    let none: Vec<Option<User>> = cache.user().get_many::<User, &str>(&[]).await.unwrap();
    assert!(none.is_empty());
    // Metrics ids in bulk.
    cache
        .metrics()
        .set_many(&[("api:d1", 1), ("api:d2", 2)])
        .await
        .unwrap();
    let m: Vec<Option<i32>> = cache
        .metrics()
        .get_many(&["api:d1", "api:d2", "web:d1"])
        .await
        .unwrap();
    assert_eq!(m, vec![Some(1), Some(2), None]);
}

#[tokio::test(start_paused = true)]
async fn crawl_status_updates_are_atomic_and_refresh_the_ttl() {
    let (cache, store) = manager();
    let s = cache
        .update_crawl_status("t9", |s| s.start(Some(100)))
        .await
        .unwrap();
    assert_eq!(s.state, CrawlState::Running);
    tokio::time::advance(Duration::from_secs(600)).await;
    let workers: Vec<_> = (0..50)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .update_crawl_status("t9", move |s| {
                        s.advance(1);
                        if i % 10 == 0 {
                            s.record_error(
                                CrawlError::new(format!("item {i}")).with_item(i.to_string()),
                            );
                        }
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let s: CrawlStatus = cache.crawl_status().get("t9").await.unwrap().unwrap();
    assert_eq!(s.processed, 50, "no update lost");
    assert_eq!(s.error_count, 5);
    assert_eq!(s.progress(), Some(0.5));
    assert_eq!(
        store.ttl("crawl:status:t9").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(3600))
    );
    let s = cache
        .update_crawl_status("t9", |s| s.fail("proxy banned"))
        .await
        .unwrap();
    assert!(s.is_finished());
    assert_eq!(s.message.as_deref(), Some("proxy banned"));
    // A status that expired starts again from "pending".
    tokio::time::advance(Duration::from_secs(3601)).await;
    let s = cache
        .update_crawl_status("t9", |s| s.advance(1))
        .await
        .unwrap();
    assert_eq!((s.state, s.processed), (CrawlState::Pending, 1));
}

mod metrics_facade {
    use super::*;
    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use std::sync::atomic::AtomicU64;

    #[derive(Default)]
    struct Capture(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let c = self.0.lock().unwrap().entry(name).or_default().clone();
            Counter::from_arc(c)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn counters_are_published_with_a_family_label() {
        let rec = Capture::default();
        let cache =
            metrics::with_local_recorder(&rec, || CacheManager::new(MemoryStore::default()));
        cache.user().set("1", &user(1)).await.unwrap();
        cache.user().get::<User>("1").await.unwrap();
        cache.user().get::<User>("2").await.unwrap();
        let _ = cache
            .keyword_posts()
            .get_or_load("k", || async { Err::<u8, _>("x".to_owned()) })
            .await;
        let got = |name: &str| {
            rec.0
                .lock()
                .unwrap()
                .get(name)
                .map(|c| c.load(Ordering::SeqCst))
        };
        assert_eq!(got("cache_hits_total{family=user}"), Some(1));
        assert_eq!(got("cache_misses_total{family=user}"), Some(1));
        assert_eq!(got("cache_writes_total{family=user}"), Some(1));
        assert_eq!(got("cache_loads_total{family=keyword_posts}"), Some(1));
        assert_eq!(
            got("cache_load_errors_total{family=keyword_posts}"),
            Some(1)
        );
        assert_eq!(got("cache_store_errors_total{family=user}"), Some(0));
    }
}
