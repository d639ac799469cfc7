//! The cache manager on a real `redis-server` spawned for each test (on a free port, never the
//! server that may run on 6379): every scenario of `scenarios/` (keys checked on the server with
//! `redis-cli`, independently of the code under test), and the outage tests of one server.

#[macro_use]
mod scenarios;

use std::time::Duration;

use cache_domain::CacheConfig;
use scenarios::{eventually, user, Target, User};

backend_tests!(Target::server);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_a_miss_not_a_hang_and_the_cache_recovers() {
    let t = Target::server("frozen");
    let server = t.as_server();
    let cache = t.manager(CacheConfig::default()).await;
    cache.user().set("1", &user(1)).await.unwrap();
    server.freeze();
    let outage = async {
        assert_eq!(cache.user().get::<User>("1").await.unwrap(), None);
        let v = cache
            .user()
            .get_or_load("2", || async { Ok::<_, String>(user(2)) })
            .await
            .unwrap();
        assert_eq!(v, user(2), "the caller gets data from the loader");
        cache.user().set("3", &user(3)).await.unwrap();
    };
    // Bounded by the store's timeouts (300 ms per command, 800 ms budget); 10 s means "hung".
    tokio::time::timeout(Duration::from_secs(10), outage)
        .await
        .expect("no call hangs on a frozen server");
    let s = cache.user().stats();
    assert!(s.store_errors >= 3, "{s:?}");
    assert_eq!(s.loads, 1);
    server.thaw();
    eventually("reads are served from Redis again", async || {
        cache.user().get::<User>("1").await.unwrap() == Some(user(1))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_miss_and_the_cache_recovers_after_restart() {
    let t = Target::server("stopped");
    let server = t.as_server();
    let cache = t.manager(CacheConfig::default()).await;
    cache.user().set("1", &user(1)).await.unwrap();
    server.kill();
    let outage = async {
        assert_eq!(cache.user().get::<User>("1").await.unwrap(), None);
        let v = cache
            .user()
            .get_or_load("1", || async { Ok::<_, String>(user(10)) })
            .await
            .unwrap();
        assert_eq!(v, user(10));
        cache.content().set("c", &"x").await.unwrap();
        let err = cache.user().invalidate("1").await.unwrap_err();
        assert!(err.is_transient(), "{err}");
    };
    tokio::time::timeout(Duration::from_secs(10), outage)
        .await
        .expect("no call hangs on a stopped server");
    server.restart();
    eventually("writes reach Redis again", async || {
        cache.user().set("1", &user(11)).await.unwrap();
        t.exists("user:1").await
    })
    .await;
    assert_eq!(cache.user().get::<User>("1").await.unwrap(), Some(user(11)));
}
