//! The cache manager on the in-memory store, with tokio's clock paused so that TTLs are checked
//! exactly and without sleeping.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::{Family, KeySchema, KeyTtl, Store};
use cache_domain::{
    CacheConfig, CacheManager, CrawlError, CrawlState, KeyMatch, LoadError, CACHE_FAMILIES,
};
use cache_memory::MemoryStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

fn user(id: u64) -> User {
    User {
        id,
        name: format!("user-{id}"),
    }
}

fn manager() -> (CacheManager<MemoryStore>, MemoryStore) {
    let store = MemoryStore::default();
    (CacheManager::new(store.clone()), store)
}

const MIN: u64 = 60;

#[tokio::test(start_paused = true)]
async fn every_family_round_trips_under_its_schema_key_with_its_default_ttl() {
    let (cache, store) = manager();
    let u = user(1);
    cache.cache_user("1", &u).await.unwrap();
    cache
        .cache_user_keywords("1", &vec!["rust", "redis"])
        .await
        .unwrap();
    cache
        .cache_keyword_posts("k1", &vec![10u64, 11])
        .await
        .unwrap();
    cache
        .cache_trend_data("k1", &BTreeMap::from([("tokio", 0.5)]))
        .await
        .unwrap();
    let mut crawl = cache_domain::CrawlStatus::new("t1");
    crawl.start(Some(5));
    cache.cache_crawl_status(&crawl).await.unwrap();
    cache.cache_content("c1", &"<h1>post</h1>").await.unwrap();
    cache.cache_deploy_status("d1", &"running").await.unwrap();
    cache
        .cache_metrics("api", "2026-11-26", &vec![1, 2, 3])
        .await
        .unwrap();

    assert_eq!(cache.get_user::<User>("1").await.unwrap(), Some(u));
    assert_eq!(
        cache.get_user_keywords::<Vec<String>>("1").await.unwrap(),
        Some(vec!["rust".to_owned(), "redis".to_owned()])
    );
    assert_eq!(
        cache.get_keyword_posts::<Vec<u64>>("k1").await.unwrap(),
        Some(vec![10, 11])
    );
    assert_eq!(
        cache
            .get_trend_data::<BTreeMap<String, f64>>("k1")
            .await
            .unwrap()
            .unwrap()["tokio"],
        0.5
    );
    assert_eq!(cache.get_crawl_status("t1").await.unwrap(), Some(crawl));
    assert_eq!(
        cache.get_content::<String>("c1").await.unwrap().as_deref(),
        Some("<h1>post</h1>")
    );
    assert_eq!(
        cache
            .get_deploy_status::<String>("d1")
            .await
            .unwrap()
            .as_deref(),
        Some("running")
    );
    assert_eq!(
        cache
            .get_metrics::<Vec<i32>>("api", "2026-11-26")
            .await
            .unwrap(),
        Some(vec![1, 2, 3])
    );
    // The generic API reaches the same metrics entry with a TYPE:DATE id.
    assert_eq!(
        cache
            .get::<Vec<i32>>(Family::Metrics, "api:2026-11-26")
            .await
            .unwrap(),
        Some(vec![1, 2, 3])
    );

    let expected = [
        (KeySchema::user("1"), 60 * MIN),
        (KeySchema::user_keywords("1"), 30 * MIN),
        (KeySchema::keyword_posts("k1"), 15 * MIN),
        (KeySchema::keyword_trends("k1"), 30 * MIN),
        (KeySchema::crawl_status("t1"), 60 * MIN),
        (KeySchema::content("c1"), 120 * MIN),
        (KeySchema::deploy_status("d1"), 24 * 60 * MIN),
        (KeySchema::metrics("api", "2026-11-26"), 5 * MIN),
    ];
    for (key, secs) in expected {
        let key = key.unwrap();
        assert_eq!(
            store.ttl(&key).await.unwrap(),
            KeyTtl::ExpiresIn(Duration::from_secs(secs)),
            "{key}"
        );
    }
    // Just before its TTL a value is there, just after it is gone.
    tokio::time::advance(Duration::from_secs(5 * MIN - 1)).await;
    assert!(cache
        .get_metrics::<Vec<i32>>("api", "2026-11-26")
        .await
        .unwrap()
        .is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(cache
        .get_metrics::<Vec<i32>>("api", "2026-11-26")
        .await
        .unwrap()
        .is_none());
    assert!(cache.get_user::<User>("1").await.unwrap().is_some());

    let stats = cache.stats();
    assert_eq!(stats.family(Family::User).hits, 2);
    assert_eq!(stats.family(Family::Metrics).hits, 3);
    assert_eq!(stats.family(Family::Metrics).misses, 1);
    assert_eq!(stats.family(Family::Metrics).writes, 1);
    assert_eq!(stats.total().writes, 8);
}

#[tokio::test(start_paused = true)]
async fn ttl_overrides_from_env_config_builder_and_per_call() {
    let store = MemoryStore::default();
    let core =
        cache_core::Config::from_lookup(|k| (k == "CACHE_TTL_USER").then(|| "2h".to_owned()))
            .unwrap();
    let config = CacheConfig::from_config(&core).with_ttl(Family::Content, Duration::from_secs(7));
    let cache = CacheManager::with_config(store.clone(), config).unwrap();
    let ttl = |key: cache_core::Result<cache_core::Key>| {
        let store = store.clone();
        async move { store.ttl(&key.unwrap()).await.unwrap().remaining().unwrap() }
    };

    cache.cache_user("1", &user(1)).await.unwrap();
    assert_eq!(ttl(KeySchema::user("1")).await, Duration::from_secs(7200));
    cache.cache_content("c", &"x").await.unwrap();
    assert_eq!(ttl(KeySchema::content("c")).await, Duration::from_secs(7));
    // Per call: the handle's TTL, and set_with_ttl.
    cache
        .users()
        .with_ttl(Duration::from_secs(30))
        .set("2", &user(2))
        .await
        .unwrap();
    assert_eq!(ttl(KeySchema::user("2")).await, Duration::from_secs(30));
    cache
        .set_with_ttl(Family::User, "3", &user(3), Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(ttl(KeySchema::user("3")).await, Duration::from_millis(1500));
    let v: User = cache
        .users()
        .with_ttl(Duration::from_secs(45))
        .get_or_load("4", || async { Ok::<_, std::io::Error>(user(4)) })
        .await
        .unwrap();
    assert_eq!(v, user(4));
    assert_eq!(ttl(KeySchema::user("4")).await, Duration::from_secs(45));
    // A zero TTL is refused, not "forever" and not "delete".
    let err = cache
        .set_with_ttl(Family::User, "5", &user(5), Duration::ZERO)
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
async fn bad_input_is_an_error_and_sessions_are_not_a_cache_family() {
    let (cache, store) = manager();
    assert!(cache.get_user::<User>("").await.is_err());
    assert!(cache.cache_user("", &user(1)).await.is_err());
    assert!(cache.get_user::<User>(&"x".repeat(300)).await.is_err());
    assert!(cache.get::<User>(Family::Metrics, "no-date").await.is_err());
    assert!(cache.set(Family::Session, "abc", &1).await.is_err());
    assert!(cache.family(Family::SessionIndex).is_err());
    let r: Result<User, LoadError<std::io::Error>> = cache
        .users()
        .get_or_load("", || async { Ok(user(1)) })
        .await;
    assert!(r.unwrap_err().cache_error().is_some());
    assert_eq!(store.entry_count(), 0);
}

async fn run_concurrent<F, Fut>(
    n: usize,
    f: F,
) -> Vec<Result<Result<User, LoadError<String>>, tokio::task::JoinError>>
where
    F: Fn(CacheManager<MemoryStore>) -> Fut,
    Fut: std::future::Future<Output = Result<User, LoadError<String>>> + Send + 'static,
{
    let (cache, _) = manager();
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(f(cache.clone()))).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn single_flight_one_loader_run_for_100_callers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (cache, _) = manager();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .users()
                    .get_or_load("7", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Ok::<_, String>(user(7))
                    })
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), user(7));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = cache.family_stats(Family::User);
    assert_eq!((s.loads, s.coalesced, s.misses, s.writes), (1, 99, 100, 1));
    assert_eq!(cache.loads_in_flight(), 0);
    // Cached now: another call does not load.
    let again: User = cache
        .users()
        .get_or_load("7", || async { Err("no".to_owned()) })
        .await
        .unwrap();
    assert_eq!(again, user(7));
}

#[tokio::test(start_paused = true)]
async fn single_flight_shares_an_error_without_caching_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    let results = run_concurrent(100, move |cache| {
        let calls = c2.clone();
        async move {
            cache
                .users()
                .get_or_load("7", || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Err::<User, _>("database down".to_owned())
                })
                .await
        }
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for r in results {
        let err = r.unwrap().unwrap_err();
        assert_eq!(
            err.loader_error().map(String::as_str),
            Some("database down")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_is_not_cached() {
    let (cache, _) = manager();
    let r = cache
        .users()
        .get_or_load("1", || async { Err::<User, _>("down".to_owned()) })
        .await;
    assert!(r.is_err());
    let v = cache
        .users()
        .get_or_load("1", || async { Ok::<_, String>(user(1)) })
        .await
        .unwrap();
    assert_eq!(v, user(1));
    let s = cache.family_stats(Family::User);
    assert_eq!((s.loads, s.load_errors), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_leader_does_not_wedge_the_waiters() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (cache, _) = manager();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .users()
                    .get_or_load("7", || async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if n == 0 {
                            panic!("loader bug");
                        }
                        Ok::<_, String>(user(7))
                    })
                    .await
            })
        })
        .collect();
    let (mut ok, mut panicked) = (0, 0);
    for t in tasks {
        match t.await {
            Ok(r) => {
                assert_eq!(r.unwrap(), user(7));
                ok += 1;
            }
            Err(e) => {
                assert!(e.is_panic());
                panicked += 1;
            }
        }
    }
    assert_eq!((ok, panicked), (99, 1));
    // The panicking load, then exactly one more by the waiter that took over.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.loads_in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_does_not_wedge_the_waiters() {
    let (cache, _) = manager();
    let calls = Arc::new(AtomicUsize::new(0));
    let spawn = |cache: CacheManager<MemoryStore>, calls: Arc<AtomicUsize>| {
        tokio::spawn(async move {
            cache
                .users()
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
        cache.users().get_or_load("8", || async {
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
                .users()
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
                .users()
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
            .users()
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
    assert_eq!(on.get_user::<User>("404").await.unwrap(), None);
    assert_eq!(on.family_stats(Family::User).decode_failures, 0);
    // A loader that needs a value is not fooled by the marker.
    let v = on
        .users()
        .get_or_load("404", || async { Ok::<_, String>(user(404)) })
        .await
        .unwrap();
    assert_eq!(v, user(404));
    on.invalidate(Family::User, "404").await.unwrap();
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
    assert_eq!(cache.family_stats(Family::KeywordTrends).load_errors, 1);
}

#[tokio::test(start_paused = true)]
async fn bulk_get_and_set_in_one_call() {
    let (cache, store) = manager();
    let users: Vec<(String, User)> = (0..64).map(|i| (i.to_string(), user(i))).collect();
    cache.set_many(Family::User, &users).await.unwrap();
    assert_eq!(
        store.ttl("user:63").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(3600))
    );
    let mut ids: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    ids.push("missing".into());
    let got: Vec<Option<User>> = cache.get_many(Family::User, &ids).await.unwrap();
    assert_eq!(got.len(), 65);
    assert_eq!(got[5], Some(user(5)));
    assert_eq!(got[64], None);
    let s = cache.family_stats(Family::User);
    assert_eq!((s.hits, s.misses, s.writes), (64, 1, 64));
    // Per-call TTL on bulk writes, and empty inputs.
    cache
        .users()
        .with_ttl(Duration::from_secs(9))
        .set_many(&[("x", user(1))])
        .await
        .unwrap();
    assert_eq!(
        store.ttl("user:x").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(9))
    );
    let none: Vec<Option<User>> = cache
        .get_many::<User, &str>(Family::User, &[])
        .await
        .unwrap();
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

async fn seed_users(cache: &CacheManager<MemoryStore>, ids: &[&str]) {
    for id in ids {
        cache.cache_user(id, &user(1)).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn invalidation_by_key_and_family_helpers() {
    let (cache, store) = manager();
    cache.cache_user("9", &user(9)).await.unwrap();
    cache.cache_user_keywords("9", &vec!["a"]).await.unwrap();
    cache.cache_user("10", &user(10)).await.unwrap();
    cache.cache_keyword_posts("k", &vec![1]).await.unwrap();
    cache.cache_trend_data("k", &vec![0.1]).await.unwrap();
    cache.cache_trend_data("k2", &vec![0.2]).await.unwrap();

    assert_eq!(cache.invalidate_user_data("9").await.unwrap(), 2);
    assert_eq!(cache.get_user::<User>("9").await.unwrap(), None);
    assert_eq!(cache.get_user::<User>("10").await.unwrap(), Some(user(10)));
    assert_eq!(cache.invalidate_keyword_data("k").await.unwrap(), 2);
    assert!(cache.invalidate_trend_data("k2").await.unwrap());
    assert!(!cache.invalidate_trend_data("k2").await.unwrap());
    assert_eq!(
        cache
            .invalidate_many(Family::User, &["10", "11"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.entry_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn pattern_invalidation_escapes_ids() {
    let (cache, store) = manager();
    seed_users(&cache, &["*", "1?", "1?x", "12", "1", "[1]", "a\\b", "abc"]).await;
    cache.cache_user_keywords("*", &vec!["x"]).await.unwrap();

    // Invalidating user "*" deletes user "*" and nothing else.
    assert!(cache.invalidate(Family::User, "*").await.unwrap());
    assert_eq!(store.entry_count(), 8);
    // A prefix "1?" matches ids that literally start with "1?".
    let n = cache
        .invalidate_matching(Family::User, KeyMatch::IdPrefix("1?".into()))
        .await
        .unwrap();
    assert_eq!(n, 2);
    for (id, alive) in [
        ("12", true),
        ("1", true),
        ("1?", false),
        ("1?x", false),
        ("[1]", true),
        ("abc", true),
    ] {
        assert_eq!(
            cache.get_user::<User>(id).await.unwrap().is_some(),
            alive,
            "{id}"
        );
    }
    let n = cache
        .invalidate_matching(Family::User, KeyMatch::IdPrefix("[".into()))
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n = cache
        .invalidate_matching(Family::User, KeyMatch::IdPrefix("a\\".into()))
        .await
        .unwrap();
    assert_eq!(n, 1);
    // The whole family, with progress, leaves other families alone (keyword:user:* survives).
    let progress = Mutex::new(Vec::new());
    let n = cache
        .invalidate_matching_with_progress(Family::User, KeyMatch::All, &|scanned, deleted| {
            progress.lock().unwrap().push((scanned, deleted))
        })
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(progress.lock().unwrap().last(), Some(&(3, 3)));
    assert_eq!(store.entry_count(), 1);
    assert!(cache
        .get_user_keywords::<Vec<String>>("*")
        .await
        .unwrap()
        .is_some());

    // Metrics: all dates of one type.
    for (t, d) in [
        ("api", "2026-11-01"),
        ("api", "2026-11-02"),
        ("api2", "2026-11-01"),
        ("web", "2026-11-01"),
    ] {
        cache.cache_metrics(t, d, &1).await.unwrap();
    }
    let n = cache
        .invalidate_matching(Family::Metrics, KeyMatch::IdPrefix("api:".into()))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(cache
        .get_metrics::<i32>("api2", "2026-11-01")
        .await
        .unwrap()
        .is_some());
    assert_eq!(cache.key_counts().await.unwrap()[&Family::Metrics], 2);
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
    a.cache_content("c1", &"old").await.unwrap();
    a.cache_user("u1", &user(1)).await.unwrap();
    assert_eq!(
        b.get_content::<String>("c1").await.unwrap().as_deref(),
        Some("old")
    );
    assert_eq!(b.cached_version(Family::Content), Some(0));

    assert_eq!(a.bump_version(Family::Content).await.unwrap(), 1);
    // The bumping manager switches at once; the old key is still stored, unreachable, ageing out.
    assert_eq!(a.get_content::<String>("c1").await.unwrap(), None);
    assert!(store.exists("content:c1").await.unwrap());
    assert_eq!(
        store.ttl("content:c1").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_secs(7200))
    );
    a.cache_content("c1", &"new").await.unwrap();
    assert_eq!(
        a.key_of(Family::Content, "c1").await.unwrap(),
        "content:v1:c1"
    );
    assert!(store.exists("content:v1:c1").await.unwrap());
    // Other families are untouched.
    assert_eq!(a.get_user::<User>("u1").await.unwrap(), Some(user(1)));

    // The other manager follows within its refresh interval (2 s), not before.
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(
        b.get_content::<String>("c1").await.unwrap().as_deref(),
        Some("old")
    );
    tokio::time::advance(Duration::from_millis(600)).await;
    assert_eq!(
        b.get_content::<String>("c1").await.unwrap().as_deref(),
        Some("new")
    );
    assert_eq!(b.cached_version(Family::Content), Some(1));

    // The trend helper for "a new analysis landed for every keyword".
    a.cache_trend_data("k", &1).await.unwrap();
    assert_eq!(a.invalidate_all_trend_data().await.unwrap(), 1);
    assert_eq!(a.get_trend_data::<i32>("k").await.unwrap(), None);
    // KeyMatch::All covers every version.
    assert_eq!(
        a.invalidate_matching(Family::Content, KeyMatch::All)
            .await
            .unwrap(),
        2
    );
    // Invalidation reads the version fresh: b deletes the v1 key even before its refresh.
    a.cache_content("c2", &"x").await.unwrap();
    a.bump_version(Family::Content).await.unwrap();
    a.cache_content("c2", &"y").await.unwrap();
    assert!(b.invalidate(Family::Content, "c2").await.unwrap());
    assert_eq!(a.get_content::<String>("c2").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn corrupt_and_old_format_values_are_misses_that_get_deleted() {
    let (cache, store) = manager();
    let opts = cache_core::SetOptions::ttl(Duration::from_secs(60));
    store.set("user:1", b"\xff\x00garbage", opts).await.unwrap();
    store
        .set("user:2", br#"{"v":2,"d":{}}"#, opts)
        .await
        .unwrap();
    store
        .set("user:3", br#"{"v":1,"d":"not a user"}"#, opts)
        .await
        .unwrap();
    for id in ["1", "2", "3"] {
        assert_eq!(cache.get_user::<User>(id).await.unwrap(), None, "{id}");
    }
    assert_eq!(store.entry_count(), 0);
    let s = cache.family_stats(Family::User);
    assert_eq!((s.decode_failures, s.misses, s.hits), (3, 3, 0));

    // get_or_load replaces a corrupt value with a loaded one.
    store.set("user:4", b"{", opts).await.unwrap();
    let v = cache
        .users()
        .get_or_load("4", || async { Ok::<_, String>(user(4)) })
        .await
        .unwrap();
    assert_eq!(v, user(4));
    assert_eq!(cache.get_user::<User>("4").await.unwrap(), Some(user(4)));
    // Bulk reads too.
    store.set("user:5", b"nope", opts).await.unwrap();
    let got: Vec<Option<User>> = cache.get_many(Family::User, &["4", "5"]).await.unwrap();
    assert_eq!(got, vec![Some(user(4)), None]);
    assert!(!store.exists("user:5").await.unwrap());
    assert_eq!(cache.family_stats(Family::User).decode_failures, 5);
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
    let s = cache.get_crawl_status("t9").await.unwrap().unwrap();
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

#[tokio::test(start_paused = true)]
async fn works_over_a_dyn_store_and_reports_backend_stats() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    let cache = CacheManager::new(store);
    cache.cache_user("1", &user(1)).await.unwrap();
    cache.cache_content("c", &"x").await.unwrap();
    assert_eq!(cache.get_user::<User>("1").await.unwrap(), Some(user(1)));
    let counts = cache.key_counts().await.unwrap();
    assert_eq!(counts.len(), CACHE_FAMILIES.len());
    assert_eq!(
        (
            counts[&Family::User],
            counts[&Family::Content],
            counts[&Family::Metrics]
        ),
        (1, 1, 0)
    );
    let _ = cache.backend_stats().await.unwrap();
    assert_eq!(cache.family_stats(Family::User).hit_ratio(), Some(1.0));
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
        cache.cache_user("1", &user(1)).await.unwrap();
        cache.get_user::<User>("1").await.unwrap();
        cache.get_user::<User>("2").await.unwrap();
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
