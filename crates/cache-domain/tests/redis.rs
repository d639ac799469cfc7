//! The cache manager on a real `redis-server` spawned for each test (on a free port, never the
//! server that may run on 6379). Keys are checked on the server with `redis-cli`, independently of
//! the code under test. The scenarios live in `scenarios/` and also run on a Redis Cluster
//! (`cluster.rs`); the outage tests of one server are here.

mod scenarios;

use std::time::Duration;

use cache_core::Family;
use cache_domain::CacheConfig;
use scenarios::{eventually, user, Target, User};

#[tokio::test]
async fn every_family_with_its_default_ttl_and_the_overrides() {
    scenarios::every_family_with_its_default_ttl_and_the_overrides(&Target::server()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_with_100_callers_on_redis() {
    scenarios::single_flight_with_100_callers_on_redis(&Target::server()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_makes_two_managers_load_once() {
    scenarios::the_lease_makes_two_managers_load_once(&Target::server()).await;
}

#[tokio::test]
async fn pattern_invalidation_escapes_ids_on_redis() {
    scenarios::pattern_invalidation_escapes_ids_on_redis(&Target::server()).await;
}

#[tokio::test]
async fn version_bump_invalidates_a_family_across_managers() {
    scenarios::version_bump_invalidates_a_family_across_managers(&Target::server()).await;
}

#[tokio::test]
async fn corrupt_values_on_redis_are_misses_and_deleted() {
    scenarios::corrupt_values_on_redis_are_misses_and_deleted(&Target::server()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_status_updates_lose_nothing_under_contention() {
    scenarios::crawl_status_updates_lose_nothing_under_contention(&Target::server()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_a_miss_not_a_hang_and_the_cache_recovers() {
    let t = Target::server();
    let server = t.as_server();
    let cache = t.manager(CacheConfig::default()).await;
    cache.cache_user("1", &user(1)).await.unwrap();
    server.freeze();
    let outage = async {
        assert_eq!(cache.get_user::<User>("1").await.unwrap(), None);
        let v = cache
            .users()
            .get_or_load("2", || async { Ok::<_, String>(user(2)) })
            .await
            .unwrap();
        assert_eq!(v, user(2), "the caller gets data from the loader");
        cache.cache_user("3", &user(3)).await.unwrap();
    };
    // Bounded by the store's timeouts (300 ms per command, 800 ms budget); 10 s means "hung".
    tokio::time::timeout(Duration::from_secs(10), outage)
        .await
        .expect("no call hangs on a frozen server");
    let s = cache.family_stats(Family::User);
    assert!(s.store_errors >= 3, "{s:?}");
    assert_eq!(s.loads, 1);
    server.thaw();
    eventually("reads are served from Redis again", async || {
        cache.get_user::<User>("1").await.unwrap() == Some(user(1))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_miss_and_the_cache_recovers_after_restart() {
    let t = Target::server();
    let server = t.as_server();
    let cache = t.manager(CacheConfig::default()).await;
    cache.cache_user("1", &user(1)).await.unwrap();
    server.kill();
    let outage = async {
        assert_eq!(cache.get_user::<User>("1").await.unwrap(), None);
        let v = cache
            .users()
            .get_or_load("1", || async { Ok::<_, String>(user(10)) })
            .await
            .unwrap();
        assert_eq!(v, user(10));
        cache.cache_content("c", &"x").await.unwrap();
        let err = cache.invalidate(Family::User, "1").await.unwrap_err();
        assert!(err.is_transient(), "{err}");
    };
    tokio::time::timeout(Duration::from_secs(10), outage)
        .await
        .expect("no call hangs on a stopped server");
    server.restart();
    eventually("writes reach Redis again", async || {
        cache.cache_user("1", &user(11)).await.unwrap();
        t.exists("user:1")
    })
    .await;
    assert_eq!(cache.get_user::<User>("1").await.unwrap(), Some(user(11)));
}
