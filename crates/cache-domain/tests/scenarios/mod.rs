//! The cache manager's Redis scenarios, shared by the single-server tests (`redis.rs`) and the Redis
//! Cluster tests (`cluster.rs`): each takes a [`Target`] that says where the store connects and how
//! to inspect keys independently of the code under test (`redis-cli`, with `-c` on a cluster so it
//! follows the key's slot to its node).

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::config::{PoolConfig, RetryConfig};
use cache_core::{Config, Family, Profile};
use cache_domain::{CacheConfig, CacheManager, CrawlError, KeyMatch, LeaseConfig, LoadError};
use cache_redis::{RedisConfig, RedisStore};
use serde::{Deserialize, Serialize};
use test_redis::{RedisCluster, RedisServer};
use tokio::sync::watch;

/// Where a scenario runs: a `redis-server` of its own (prefix `t`), or the test binary's shared
/// cluster under a prefix of the scenario's own.
pub enum Target {
    /// One server, spawned for the test.
    Server(RedisServer),
    /// The shared cluster of the test binary, and this scenario's key prefix.
    Cluster(&'static RedisCluster, String),
}

impl Target {
    /// A fresh server.
    pub fn server() -> Target {
        Target::Server(RedisServer::start())
    }

    /// The shared cluster, with keys under `prefix`.
    pub fn cluster(prefix: &str) -> Target {
        Target::Cluster(RedisCluster::shared(), prefix.to_owned())
    }

    /// The server, for the fault tests of a single server.
    pub fn as_server(&self) -> &RedisServer {
        match self {
            Target::Server(s) => s,
            Target::Cluster(..) => panic!("not a single-server target"),
        }
    }

    fn prefix(&self) -> &str {
        match self {
            Target::Server(_) => "t",
            Target::Cluster(_, p) => p,
        }
    }

    /// The full Redis key of `rel`.
    pub fn key(&self, rel: &str) -> String {
        format!("{}:{rel}", self.prefix())
    }

    /// The store's backend name.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Target::Server(_) => "redis",
            Target::Cluster(..) => "redis-cluster",
        }
    }

    /// Production settings with short timeouts so outage tests finish quickly.
    pub fn config(&self, env: &[(&str, &str)]) -> Config {
        let base = Config::from_lookup(|k| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("test environment is valid");
        let b = Config::builder().profile(Profile::Production);
        let b = match self {
            Target::Server(s) => b
                .redis_url(s.url())
                .response_timeout(Duration::from_millis(300))
                .retry(RetryConfig::default().with_budget(Duration::from_millis(800))),
            // Six nodes share the machine with the tests: a little more room per call.
            Target::Cluster(c, _) => b
                .cluster_nodes(c.seed_urls())
                .response_timeout(Duration::from_millis(1000))
                .retry(RetryConfig::default().with_budget(Duration::from_millis(2000))),
        };
        let mut b = b
            .key_prefix(self.prefix())
            .connect_timeout(Duration::from_millis(500))
            .pool(
                PoolConfig::default()
                    .with_max_open(8)
                    .with_health_check_interval(Duration::from_millis(200)),
            );
        for (family, ttl) in &base.ttl_overrides {
            b = b.ttl(*family, *ttl);
        }
        b.build().expect("test config is valid")
    }

    /// A connected store.
    pub async fn store(&self) -> RedisStore {
        RedisStore::connect(&RedisConfig::from_core(&self.config(&[])).unwrap())
            .await
            .expect("connect to the test server")
    }

    /// A cache manager on a new store.
    pub async fn manager(&self, cache: CacheConfig) -> CacheManager<RedisStore> {
        CacheManager::with_config(self.store().await, cache).expect("valid cache config")
    }

    /// `redis-cli` with `args` (on a cluster: any node, following redirections).
    pub fn cli<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        match self {
            Target::Server(s) => s.cli(args),
            Target::Cluster(c, _) => {
                let mut all: Vec<std::ffi::OsString> = vec!["-c".into()];
                all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
                c.cli(all)
            }
        }
    }

    /// `PTTL` of the relative key `rel`.
    pub fn pttl_ms(&self, rel: &str) -> i64 {
        self.cli(["PTTL", &self.key(rel)])
            .parse()
            .expect("PTTL is a number")
    }

    /// Whether the relative key `rel` exists.
    pub fn exists(&self, rel: &str) -> bool {
        self.cli(["EXISTS", &self.key(rel)]) == "1"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
}

pub fn user(id: u64) -> User {
    User {
        id,
        name: format!("user-{id}"),
    }
}

/// Polls `cond` every 10 ms for at most 10 s.
pub async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn every_family_with_its_default_ttl_and_the_overrides(t: &Target) {
    let core = t.config(&[("CACHE_TTL_KEYWORD_POSTS", "90s")]);
    let cache = CacheManager::from_config(
        RedisStore::connect(&RedisConfig::from_core(&core).unwrap())
            .await
            .unwrap(),
        &core,
    )
    .unwrap();

    cache.cache_user("1", &user(1)).await.unwrap();
    cache.cache_user_keywords("1", &["rust"]).await.unwrap();
    cache.cache_keyword_posts("k", &[1, 2]).await.unwrap();
    cache
        .cache_trend_data("k", &[("tokio", 0.7)])
        .await
        .unwrap();
    cache
        .update_crawl_status("t1", |s| {
            s.start(Some(10));
            s.record_error(CrawlError::new("HTTP 503").with_item("r/rust").retryable());
        })
        .await
        .unwrap();
    cache.cache_content("c", &"<p>hi</p>").await.unwrap();
    cache.cache_deploy_status("d", &"done").await.unwrap();
    cache
        .cache_metrics("api", "2026-11-26", &[3])
        .await
        .unwrap();
    cache
        .users()
        .with_ttl(Duration::from_secs(20))
        .set("2", &user(2))
        .await
        .unwrap();

    let expected = [
        ("user:1", 3600),
        ("keyword:user:1", 1800),
        ("post:keyword:k", 90),
        ("trend:keyword:k", 1800),
        ("crawl:status:t1", 3600),
        ("content:c", 7200),
        ("deploy:status:d", 86400),
        ("metrics:api:2026-11-26", 300),
        ("user:2", 20),
    ];
    for (key, secs) in expected {
        let ms = t.pttl_ms(key);
        assert!(
            ms <= secs * 1000 && ms > secs * 1000 - 5000,
            "{key}: PTTL {ms} ms, expected about {secs} s"
        );
    }
    assert_eq!(cache.get_user::<User>("1").await.unwrap(), Some(user(1)));
    assert_eq!(
        cache
            .get_user_keywords::<Vec<String>>("1")
            .await
            .unwrap()
            .unwrap(),
        ["rust"]
    );
    assert_eq!(
        cache
            .get_keyword_posts::<Vec<u32>>("k")
            .await
            .unwrap()
            .unwrap(),
        [1, 2]
    );
    assert_eq!(
        cache
            .get_trend_data::<Vec<(String, f64)>>("k")
            .await
            .unwrap()
            .unwrap()[0]
            .1,
        0.7
    );
    let crawl = cache.get_crawl_status("t1").await.unwrap().unwrap();
    assert_eq!((crawl.total, crawl.error_count), (Some(10), 1));
    assert_eq!(crawl.errors[0].item.as_deref(), Some("r/rust"));
    assert_eq!(
        cache.get_content::<String>("c").await.unwrap().unwrap(),
        "<p>hi</p>"
    );
    assert_eq!(
        cache
            .get_deploy_status::<String>("d")
            .await
            .unwrap()
            .unwrap(),
        "done"
    );
    assert_eq!(
        cache
            .get_metrics::<Vec<u8>>("api", "2026-11-26")
            .await
            .unwrap()
            .unwrap(),
        [3]
    );
    // The stored format is the versioned codec envelope.
    assert_eq!(
        t.cli(["GET", &t.key("deploy:status:d")]),
        r#"{"v":1,"d":"done"}"#
    );

    // Bulk: 64 values in one call each way.
    let many: Vec<(String, User)> = (100..164).map(|i| (i.to_string(), user(i))).collect();
    cache.users().set_many(&many).await.unwrap();
    let ids: Vec<String> = (100..165).map(|i| i.to_string()).collect();
    let got: Vec<Option<User>> = cache.users().get_many(&ids).await.unwrap();
    assert_eq!(got[63], Some(user(163)));
    assert_eq!(got[64], None);
    assert!(t.pttl_ms("user:150") > 3_590_000);

    let counts = cache.key_counts().await.unwrap();
    assert_eq!(counts[&Family::User], 66);
    assert_eq!(counts[&Family::Metrics], 1);
    let backend = cache
        .backend_stats()
        .await
        .unwrap()
        .expect("redis reports stats");
    assert_eq!(backend.backend, t.backend_name());
    let s = cache.family_stats(Family::User);
    assert_eq!((s.hits, s.misses, s.store_errors), (65, 1, 0));
}

/// Runs 100 concurrent `get_or_load` calls on one key whose loader waits for a gate, opens the gate
/// once 99 callers wait for the first one's load, and returns the loader call count and results.
pub async fn hundred_callers(
    cache: &CacheManager<RedisStore>,
    id: &'static str,
    outcome: impl Fn(usize) -> Result<User, String> + Send + Sync + 'static,
) -> (
    usize,
    Vec<Result<Result<User, LoadError<String>>, tokio::task::JoinError>>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let outcome = Arc::new(outcome);
    let (open, gate) = watch::channel(false);
    let before = cache.family_stats(Family::User).coalesced;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, calls, outcome, mut gate) =
                (cache.clone(), calls.clone(), outcome.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .users()
                    .get_or_load(id, || async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        outcome(n)
                    })
                    .await
            })
        })
        .collect();
    eventually("99 callers wait for the leader", async || {
        cache.family_stats(Family::User).coalesced - before == 99
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    open.send_replace(true);
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await);
    }
    (calls.load(Ordering::SeqCst), results)
}

pub async fn single_flight_with_100_callers_on_redis(t: &Target) {
    let cache = t.manager(CacheConfig::default()).await;

    let (calls, results) = hundred_callers(&cache, "ok", |_| Ok(user(1))).await;
    assert_eq!(calls, 1);
    for r in results {
        assert_eq!(r.unwrap().unwrap(), user(1));
    }
    assert!(t.exists("user:ok"));

    let (calls, results) = hundred_callers(&cache, "err", |_| Err("db down".into())).await;
    assert_eq!(calls, 1);
    for r in results {
        let e = r.unwrap().unwrap_err();
        assert_eq!(e.loader_error().map(String::as_str), Some("db down"));
    }
    assert!(!t.exists("user:err"), "an error is not cached");

    let (calls, results) = hundred_callers(&cache, "panic", |n| {
        if n == 0 {
            panic!("loader bug");
        }
        Ok(user(3))
    })
    .await;
    assert_eq!(
        calls, 2,
        "the panicking load and one by the waiter that took over"
    );
    let panics = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(panics, 1);
    for r in results.into_iter().flatten() {
        assert_eq!(r.unwrap(), user(3));
    }
    assert_eq!(cache.loads_in_flight(), 0);
}

pub async fn the_lease_makes_two_managers_load_once(t: &Target) {
    let lease = LeaseConfig::default()
        .with_wait(Duration::from_secs(20))
        .with_poll_interval(Duration::from_millis(10));
    let a = t
        .manager(CacheConfig::default().with_lease(lease.clone()))
        .await;
    let b = t.manager(CacheConfig::default().with_lease(lease)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (open, gate) = watch::channel(false);
    let load = |cache: CacheManager<RedisStore>, result: Result<User, String>| {
        let (calls, mut gate) = (calls.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .users()
                .get_or_load("hot", || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    result
                })
                .await
        })
    };

    let first = load(a.clone(), Ok(user(1)));
    eventually("a holds the lease", async || t.exists("lease:user:hot")).await;
    let second = load(b.clone(), Ok(user(2)));
    // Let b find the lease taken and start polling, then let a finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    open.send_replace(true);
    assert_eq!(first.await.unwrap().unwrap(), user(1));
    assert_eq!(second.await.unwrap().unwrap(), user(1), "b got a's value");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.family_stats(Family::User).loads, 0);
    assert!(!t.exists("lease:user:hot"), "the lease is released");

    // When the lease holder fails, the other instance stops waiting as soon as the lease is
    // released and loads itself (long before the 20 s wait).
    open.send_replace(false);
    a.invalidate(Family::User, "hot").await.unwrap();
    let first = load(a.clone(), Err("db down".into()));
    eventually("a holds the lease", async || t.exists("lease:user:hot")).await;
    let second = load(b.clone(), Ok(user(2)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    open.send_replace(true);
    assert!(first.await.unwrap().is_err());
    let got = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("b stops waiting when the lease is released")
        .unwrap()
        .unwrap();
    assert_eq!(got, user(2));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

pub async fn pattern_invalidation_escapes_ids_on_redis(t: &Target) {
    let cache = t.manager(CacheConfig::default()).await;
    for id in ["*", "1?", "1?a", "12", "1", "[ab]", "a", "b"] {
        cache.cache_user(id, &user(1)).await.unwrap();
    }
    cache.cache_user_keywords("*", &["x"]).await.unwrap();
    cache.cache_keyword_posts("1?", &[1]).await.unwrap();

    assert!(cache.invalidate(Family::User, "*").await.unwrap());
    assert!(!t.exists("user:%2A"));
    for key in ["user:1%3F", "user:12", "user:1", "keyword:user:%2A"] {
        assert!(t.exists(key), "{key} must survive invalidating user *");
    }
    let n = cache
        .invalidate_matching(Family::User, KeyMatch::IdPrefix("1?".into()))
        .await
        .unwrap();
    assert_eq!(n, 2);
    for (key, alive) in [
        ("user:1%3F", false),
        ("user:1%3Fa", false),
        ("user:12", true),
        ("user:1", true),
        ("post:keyword:1%3F", true),
    ] {
        assert_eq!(t.exists(key), alive, "{key}");
    }
    let n = cache
        .invalidate_matching(Family::User, KeyMatch::IdPrefix("[ab]".into()))
        .await
        .unwrap();
    assert_eq!(n, 1, "only the id that starts with the literal text [ab]");
    assert!(t.exists("user:a") && t.exists("user:b"));

    // Family helpers.
    cache.cache_user_keywords("12", &["y"]).await.unwrap();
    assert_eq!(cache.invalidate_user_data("12").await.unwrap(), 2);
    cache.cache_trend_data("1?", &[0.5]).await.unwrap();
    assert_eq!(cache.invalidate_keyword_data("1?").await.unwrap(), 2);

    // The whole family, in batches, with progress; other families untouched.
    let bulk: Vec<(String, u32)> = (0..1200).map(|i| (format!("bulk{i}"), i)).collect();
    cache.users().set_many(&bulk).await.unwrap();
    let batches = AtomicUsize::new(0);
    let n = cache
        .invalidate_matching_with_progress(Family::User, KeyMatch::All, &|_, _| {
            batches.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    assert_eq!(n, 1203);
    assert!(
        batches.load(Ordering::SeqCst) >= 2,
        "deleted in several batches"
    );
    assert!(t.exists("keyword:user:%2A"));
    assert_eq!(cache.key_counts().await.unwrap()[&Family::User], 0);
}

pub async fn version_bump_invalidates_a_family_across_managers(t: &Target) {
    let refresh = CacheConfig::default().with_version_refresh(Duration::from_millis(100));
    let a = t.manager(refresh.clone()).await;
    let b = t.manager(refresh).await;
    a.cache_trend_data("k", &"old").await.unwrap();
    a.cache_user("u", &user(1)).await.unwrap();
    assert_eq!(
        b.get_trend_data::<String>("k").await.unwrap().unwrap(),
        "old"
    );

    assert_eq!(a.invalidate_all_trend_data().await.unwrap(), 1);
    assert_eq!(t.cli(["GET", &t.key("nsversion:keyword_trends")]), "1");
    assert_eq!(a.get_trend_data::<String>("k").await.unwrap(), None);
    assert!(
        t.pttl_ms("trend:keyword:k") > 0,
        "old key ages out by its TTL"
    );
    a.cache_trend_data("k", &"new").await.unwrap();
    assert!(t.exists("trend:keyword:v1:k"));
    eventually("b follows the new version", async || {
        b.get_trend_data::<String>("k").await.unwrap().as_deref() == Some("new")
    })
    .await;
    assert_eq!(b.get_user::<User>("u").await.unwrap(), Some(user(1)));
    // Versioned keys are found by invalidation and pattern invalidation.
    assert!(b.invalidate_trend_data("k").await.unwrap());
    a.cache_trend_data("k2", &"x").await.unwrap();
    assert_eq!(
        a.invalidate_matching(Family::KeywordTrends, KeyMatch::IdPrefix("k".into()))
            .await
            .unwrap(),
        1
    );
}

pub async fn corrupt_values_on_redis_are_misses_and_deleted(t: &Target) {
    let cache = t.manager(CacheConfig::default()).await;
    t.cli(["SET", &t.key("user:1"), "\u{1}garbage"]);
    t.cli(["SET", &t.key("user:2"), r#"{"v":9,"d":{}}"#]);
    assert_eq!(cache.get_user::<User>("1").await.unwrap(), None);
    assert_eq!(cache.get_user::<User>("2").await.unwrap(), None);
    assert!(!t.exists("user:1") && !t.exists("user:2"));
    t.cli(["SET", &t.key("user:3"), "{"]);
    let v = cache
        .users()
        .get_or_load("3", || async { Ok::<_, String>(user(3)) })
        .await
        .unwrap();
    assert_eq!(v, user(3));
    assert_eq!(cache.get_user::<User>("3").await.unwrap(), Some(user(3)));
    assert_eq!(cache.family_stats(Family::User).decode_failures, 3);
}

pub async fn crawl_status_updates_lose_nothing_under_contention(t: &Target) {
    // Two managers (two service instances): their writers race each other's compare-and-swap.
    let cache = t.manager(CacheConfig::default()).await;
    let other = t.manager(CacheConfig::default()).await;
    let workers: Vec<_> = (0..20)
        .map(|w| {
            let cache = if w % 2 == 0 {
                cache.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                for i in 0..10 {
                    cache
                        .update_crawl_status("job", |s| {
                            s.advance(1);
                            if i == 0 {
                                s.record_error(CrawlError::new(format!("worker {w}")));
                            }
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let s = cache.get_crawl_status("job").await.unwrap().unwrap();
    assert_eq!(s.processed, 200);
    assert_eq!(s.error_count, 20);
    assert!(t.pttl_ms("crawl:status:job") > 3_590_000);
}
