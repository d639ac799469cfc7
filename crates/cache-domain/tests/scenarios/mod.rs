//! The cache manager's scenarios, written once and run on every backend: the in-memory store
//! (`memory.rs`), a real `redis-server` (`redis.rs`) and a real Redis Cluster (`cluster.rs`). Each
//! test binary instantiates all of them with one line, `backend_tests!(Target::memory)` (or
//! `Target::server`, `Target::cluster`).
//!
//! Each scenario takes a [`Target`] that says where the store connects and how to inspect keys
//! independently of the manager under test: on Redis with `redis-cli` (with `-c` on a cluster so
//! it follows the key's slot to its node), on memory through the store itself.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset of the helpers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::{ErrorKind, KeyTtl, Profile, SetOptions, Store};
use cache_domain::{
    CacheConfig, CacheManager, CrawlError, CrawlStatus, Family, KeyMatch, LeaseConfig, LoadError,
};
use cache_memory::MemoryStore;
use cache_redis::{PoolConfig, RedisConfig, RedisEndpoint, RedisStore, RetryConfig};
use serde::{Deserialize, Serialize};
use test_redis::{RedisCluster, RedisServer};
use tokio::sync::watch;

/// Instantiates every scenario below as a test in a module `scenario`, on the target that
/// `$target(scenario_name)` builds. Add a new scenario to the list as well as below.
macro_rules! backend_tests {
    ($target:expr) => {
        backend_tests!(@each $target;
            every_family_with_its_default_ttl_and_the_overrides,
            single_flight_with_100_callers,
            the_lease_makes_two_managers_load_once,
            an_aborted_or_panicking_leader_releases_its_lease,
            a_closed_store_is_an_error_not_a_miss,
            pattern_invalidation_escapes_ids,
            version_bump_invalidates_a_family_across_managers,
            invalidation_removes_the_live_key_of_every_family_after_a_bump,
            corrupt_values_are_misses_and_deleted,
            a_newer_format_version_is_a_miss_and_left_alone,
            crawl_status_updates_lose_nothing_under_contention,
        );
    };
    (@each $target:expr; $($name:ident),* $(,)?) => {
        mod scenario {
            #[allow(unused_imports)] // The target's path, as the caller wrote it.
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let target = ($target)(stringify!($name));
                    crate::scenarios::$name(&target).await;
                }
            )*
        }
    };
}

/// The store type every scenario runs on.
pub type DynStore = Arc<dyn Store>;

/// Where a scenario runs.
pub enum Target {
    /// An in-memory store of its own (prefix `t`).
    Memory(MemoryStore),
    /// A `redis-server` of its own, spawned for the test (prefix `t`).
    Server(RedisServer),
    /// The shared cluster of the test binary, and this scenario's key prefix.
    Cluster(&'static RedisCluster, String),
}

impl Target {
    /// A fresh in-memory store.
    pub fn memory(_scenario: &str) -> Target {
        Target::Memory(
            MemoryStore::new()
                .with_prefix("t")
                .expect("t is a valid prefix"),
        )
    }

    /// A fresh server.
    pub fn server(_scenario: &str) -> Target {
        Target::Server(RedisServer::start())
    }

    /// The shared cluster, with keys under a prefix named after the scenario.
    pub fn cluster(scenario: &str) -> Target {
        let mut prefix = format!("cd_{scenario}");
        // A key prefix is at most 64 bytes; scenario names are ASCII.
        prefix.truncate(60);
        Target::Cluster(RedisCluster::shared(), prefix)
    }

    /// The server, for the fault tests of a single server.
    pub fn as_server(&self) -> &RedisServer {
        match self {
            Target::Server(s) => s,
            _ => panic!("not a single-server target"),
        }
    }

    fn prefix(&self) -> &str {
        match self {
            Target::Memory(_) | Target::Server(_) => "t",
            Target::Cluster(_, p) => p,
        }
    }

    /// The full backend key of `rel`.
    fn key(&self, rel: &str) -> String {
        format!("{}:{rel}", self.prefix())
    }

    /// The store's backend name.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Target::Memory(_) => "memory",
            Target::Server(_) => "redis",
            Target::Cluster(..) => "redis-cluster",
        }
    }

    /// Production settings with short timeouts so that outage tests finish quickly (Redis
    /// targets only).
    fn redis_config(&self) -> RedisConfig {
        let endpoint = match self {
            Target::Server(s) => RedisEndpoint::server(s.url()),
            Target::Cluster(c, _) => RedisEndpoint::cluster(c.seed_urls()),
            Target::Memory(_) => unreachable!("the memory target has no Redis settings"),
        };
        // Six cluster nodes share the machine with the tests: a little more room per call.
        let (response, budget) = match self {
            Target::Cluster(..) => (1000, 2000),
            _ => (300, 800),
        };
        RedisConfig::new(Profile::Production, endpoint)
            .with_key_prefix(self.prefix())
            .with_response_timeout(Duration::from_millis(response))
            .with_retry(RetryConfig::default().with_budget(Duration::from_millis(budget)))
            .with_connect_timeout(Duration::from_millis(500))
            .with_pool(
                PoolConfig::default()
                    .with_max_open(8)
                    .with_health_check_interval(Duration::from_millis(200)),
            )
    }

    /// A store on the target: a new connection on Redis, the same data on memory (as two service
    /// instances share one Redis).
    pub async fn store(&self) -> DynStore {
        match self {
            Target::Memory(m) => Arc::new(m.clone()),
            _ => Arc::new(
                RedisStore::connect(&self.redis_config())
                    .await
                    .expect("connect to the test server"),
            ),
        }
    }

    /// A cache manager on a new store.
    pub async fn manager(&self, cache: CacheConfig) -> CacheManager<DynStore> {
        CacheManager::builder(self.store().await)
            .with_config(&cache)
            .build()
            .expect("valid cache config")
    }

    /// `redis-cli` with `args` (on a cluster: any node, following redirections).
    fn cli(&self, args: &[&str]) -> String {
        match self {
            Target::Server(s) => s.cli(args),
            Target::Cluster(c, _) => {
                let mut all = vec!["-c"];
                all.extend(args);
                c.cli(all)
            }
            Target::Memory(_) => unreachable!("memory targets are inspected through the store"),
        }
    }

    /// The raw value at the relative key `rel` (as text), `None` when absent.
    pub async fn raw_get(&self, rel: &str) -> Option<String> {
        match self {
            Target::Memory(m) => m
                .get(rel)
                .await
                .expect("memory get")
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
            _ => self
                .exists(rel)
                .await
                .then(|| self.cli(&["GET", &self.key(rel)])),
        }
    }

    /// Writes raw bytes at the relative key `rel`, without a TTL, behind the manager's back.
    pub async fn raw_set(&self, rel: &str, value: &str) {
        match self {
            Target::Memory(m) => {
                m.set(rel, value.as_bytes(), SetOptions::new())
                    .await
                    .expect("memory set");
            }
            _ => assert_eq!(self.cli(&["SET", &self.key(rel), value]), "OK"),
        }
    }

    /// `PTTL` of the relative key `rel` (-2: absent, -1: no TTL).
    pub async fn pttl_ms(&self, rel: &str) -> i64 {
        match self {
            Target::Memory(m) => match m.ttl(rel).await.expect("memory ttl") {
                KeyTtl::ExpiresIn(d) => d.as_millis() as i64,
                KeyTtl::Persistent => -1,
                KeyTtl::Missing => -2,
            },
            _ => self
                .cli(&["PTTL", &self.key(rel)])
                .parse()
                .expect("PTTL is a number"),
        }
    }

    /// Whether the relative key `rel` exists.
    pub async fn exists(&self, rel: &str) -> bool {
        match self {
            Target::Memory(m) => m.exists(rel).await.expect("memory exists"),
            _ => self.cli(&["EXISTS", &self.key(rel)]) == "1",
        }
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
    let config =
        CacheConfig::from_lookup(|k| (k == "CACHE_TTL_KEYWORD_POSTS").then(|| "90s".into()))
            .unwrap();
    let cache = t.manager(config).await;

    cache.user().set("1", &user(1)).await.unwrap();
    cache.user_keywords().set("1", &["rust"]).await.unwrap();
    cache.keyword_posts().set("k", &[1, 2]).await.unwrap();
    cache
        .keyword_trends()
        .set("k", &[("tokio", 0.7)])
        .await
        .unwrap();
    cache
        .update_crawl_status("t1", |s| {
            s.start(Some(10));
            s.record_error(CrawlError::new("HTTP 503").with_item("r/rust").retryable());
        })
        .await
        .unwrap();
    cache.content().set("c", &"<p>hi</p>").await.unwrap();
    cache.deploy_status().set("d", &"done").await.unwrap();
    cache.metrics().set("api:2026-11-26", &[3]).await.unwrap();
    cache
        .user()
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
        let ms = t.pttl_ms(key).await;
        assert!(
            ms <= secs * 1000 && ms > secs * 1000 - 5000,
            "{key}: PTTL {ms} ms, expected about {secs} s"
        );
    }
    assert_eq!(cache.user().get::<User>("1").await.unwrap(), Some(user(1)));
    assert_eq!(
        cache
            .user_keywords()
            .get::<Vec<String>>("1")
            .await
            .unwrap()
            .unwrap(),
        ["rust"]
    );
    assert_eq!(
        cache
            .keyword_posts()
            .get::<Vec<u32>>("k")
            .await
            .unwrap()
            .unwrap(),
        [1, 2]
    );
    assert_eq!(
        cache
            .keyword_trends()
            .get::<Vec<(String, f64)>>("k")
            .await
            .unwrap()
            .unwrap()[0]
            .1,
        0.7
    );
    let crawl: CrawlStatus = cache.crawl_status().get("t1").await.unwrap().unwrap();
    assert_eq!((crawl.total, crawl.error_count), (Some(10), 1));
    assert_eq!(crawl.errors[0].item.as_deref(), Some("r/rust"));
    assert_eq!(
        cache.content().get::<String>("c").await.unwrap().unwrap(),
        "<p>hi</p>"
    );
    assert_eq!(
        cache
            .deploy_status()
            .get::<String>("d")
            .await
            .unwrap()
            .unwrap(),
        "done"
    );
    assert_eq!(
        cache
            .metrics()
            .get::<Vec<u8>>("api:2026-11-26")
            .await
            .unwrap()
            .unwrap(),
        [3]
    );
    // The stored format is the versioned codec envelope.
    assert_eq!(
        t.raw_get("deploy:status:d").await.as_deref(),
        Some(r#"{"v":1,"d":"done"}"#)
    );

    // Bulk: 64 values in one call each way.
    let many: Vec<(String, User)> = (100..164).map(|i| (i.to_string(), user(i))).collect();
    cache.user().set_many(&many).await.unwrap();
    let ids: Vec<String> = (100..165).map(|i| i.to_string()).collect();
    let got: Vec<Option<User>> = cache.user().get_many(&ids).await.unwrap();
    assert_eq!(got[63], Some(user(163)));
    assert_eq!(got[64], None);
    assert!(t.pttl_ms("user:150").await > 3_590_000);

    let counts = cache.key_counts().await.unwrap();
    assert_eq!(counts[&Family::User], 66);
    assert_eq!(counts[&Family::Metrics], 1);
    let backend = cache
        .backend_stats()
        .await
        .unwrap()
        .expect("every backend reports stats");
    assert_eq!(backend.backend, t.backend_name());
    let s = cache.user().stats();
    assert_eq!((s.hits, s.misses, s.store_errors), (65, 1, 0));
}

/// Runs 100 concurrent `get_or_load` calls on one key whose loader waits for a gate, opens the gate
/// once 99 callers wait for the first one's load, and returns the loader call count and results.
pub async fn hundred_callers(
    cache: &CacheManager<DynStore>,
    id: &'static str,
    outcome: impl Fn(usize) -> Result<User, String> + Send + Sync + 'static,
) -> (
    usize,
    Vec<Result<Result<User, LoadError<String>>, tokio::task::JoinError>>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let outcome = Arc::new(outcome);
    let (open, gate) = watch::channel(false);
    let before = cache.user().stats().coalesced;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, calls, outcome, mut gate) =
                (cache.clone(), calls.clone(), outcome.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .user()
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
        cache.user().stats().coalesced - before == 99
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

pub async fn single_flight_with_100_callers(t: &Target) {
    let cache = t.manager(CacheConfig::default()).await;

    let (calls, results) = hundred_callers(&cache, "ok", |_| Ok(user(1))).await;
    assert_eq!(calls, 1);
    for r in results {
        assert_eq!(r.unwrap().unwrap(), user(1));
    }
    assert!(t.exists("user:ok").await);
    let s = cache.user().stats();
    assert_eq!((s.loads, s.coalesced, s.misses, s.writes), (1, 99, 100, 1));
    // Cached now: another call does not load.
    let again = cache
        .user()
        .get_or_load("ok", || async { Err::<User, _>("not called".to_owned()) })
        .await
        .unwrap();
    assert_eq!(again, user(1));

    let (calls, results) = hundred_callers(&cache, "err", |_| Err("db down".into())).await;
    assert_eq!(calls, 1);
    for r in results {
        let e = r.unwrap().unwrap_err();
        assert_eq!(e.loader_error().map(String::as_str), Some("db down"));
    }
    assert!(!t.exists("user:err").await, "an error is not cached");

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
    let load = |cache: CacheManager<DynStore>, result: Result<User, String>| {
        let (calls, mut gate) = (calls.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .user()
                .get_or_load("hot", || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let _ = gate.wait_for(|open| *open).await;
                    result
                })
                .await
        })
    };

    let first = load(a.clone(), Ok(user(1)));
    eventually("a holds the lease", async || {
        t.exists("lease:user:hot").await
    })
    .await;
    let second = load(b.clone(), Ok(user(2)));
    // Let b find the lease taken and start polling, then let a finish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    open.send_replace(true);
    assert_eq!(first.await.unwrap().unwrap(), user(1));
    assert_eq!(second.await.unwrap().unwrap(), user(1), "b got a's value");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(b.user().stats().loads, 0);
    assert!(!t.exists("lease:user:hot").await, "the lease is released");

    // When the lease holder fails, the other instance stops waiting as soon as the lease is
    // released and loads itself (long before the 20 s wait).
    open.send_replace(false);
    a.user().invalidate("hot").await.unwrap();
    let first = load(a.clone(), Err("db down".into()));
    eventually("a holds the lease", async || {
        t.exists("lease:user:hot").await
    })
    .await;
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

/// A leader whose task is aborted mid-load, or whose loader panics, gives its lease back at once
/// (the lease TTL is only the backstop of a crashed process): the lease key is gone long before
/// its 60 s TTL, and another manager's next miss takes the lease and loads.
pub async fn an_aborted_or_panicking_leader_releases_its_lease(t: &Target) {
    let lease = LeaseConfig::default()
        .with_ttl(Duration::from_secs(60))
        .with_wait(Duration::from_secs(60))
        .with_poll_interval(Duration::from_millis(10));
    let a = t
        .manager(CacheConfig::default().with_lease(lease.clone()))
        .await;
    let b = t.manager(CacheConfig::default().with_lease(lease)).await;

    let (started, loading) = tokio::sync::oneshot::channel::<()>();
    let leader = tokio::spawn({
        let a = a.clone();
        async move {
            a.user()
                .get_or_load("held", || async move {
                    let _ = started.send(());
                    std::future::pending::<Result<User, String>>().await
                })
                .await
        }
    });
    loading.await.expect("the loader started");
    let ttl = t.pttl_ms("lease:user:held").await;
    assert!(ttl > 50_000, "a holds the lease with its 60 s TTL: {ttl}");
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    eventually("the aborted leader's lease is released", async || {
        !t.exists("lease:user:held").await
    })
    .await;
    let got = b
        .user()
        .get_or_load("held", || async { Ok::<_, String>(user(7)) })
        .await
        .unwrap();
    assert_eq!(got, user(7));
    assert_eq!(b.user().stats().loads, 1);
    assert_eq!(b.user().stats().coalesced, 0, "b did not wait for a lease");

    let leader = tokio::spawn({
        let a = a.clone();
        async move {
            a.user()
                .get_or_load("boom", || async {
                    if true {
                        panic!("the loader panics (on purpose)");
                    }
                    Ok::<User, String>(user(0))
                })
                .await
        }
    });
    assert!(leader.await.unwrap_err().is_panic());
    eventually("the panicking leader's lease is released", async || {
        !t.exists("lease:user:boom").await
    })
    .await;
    assert_eq!(a.loads_in_flight(), 0);
}

/// After `Store::close`, the cache does not fail open: reads, writes and loads return the `Closed`
/// error (a miss would run the loader on every call for ever, and writes would vanish).
pub async fn a_closed_store_is_an_error_not_a_miss(t: &Target) {
    let cache = t
        .manager(CacheConfig::default().with_lease(LeaseConfig::default()))
        .await;
    cache.user().set("1", &user(1)).await.unwrap();
    cache.store().close().await.unwrap();
    let closed = |e: &cache_core::Error| e.kind() == cache_core::ErrorKind::Closed;
    let e = cache.user().get::<User>("1").await.unwrap_err();
    assert!(closed(&e), "{e}");
    let e = cache
        .user()
        .get_many::<User, _>(&["1", "2"])
        .await
        .unwrap_err();
    assert!(closed(&e), "{e}");
    let e = cache.user().set("2", &user(2)).await.unwrap_err();
    assert!(closed(&e), "{e}");
    let loads = AtomicUsize::new(0);
    let r = cache
        .user()
        .get_or_load("3", || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(user(3))
        })
        .await;
    assert!(
        matches!(&r, Err(LoadError::Cache(e)) if closed(e)),
        "{:?}",
        r.map_err(|e| e.to_string())
    );
    assert_eq!(
        loads.load(Ordering::SeqCst),
        0,
        "no loader runs on a closed store"
    );
    // A manager built on the closed store learns it at its first call.
    let fresh = CacheManager::builder(cache.store().clone())
        .with_config(&CacheConfig::default())
        .build()
        .unwrap();
    let e = fresh.keyword_trends().get::<User>("x").await.unwrap_err();
    assert!(closed(&e), "{e}");
}

pub async fn pattern_invalidation_escapes_ids(t: &Target) {
    let cache = t.manager(CacheConfig::default()).await;
    for id in ["*", "1?", "1?a", "12", "1", "[ab]", "a", "b", "a\\b"] {
        cache.user().set(id, &user(1)).await.unwrap();
    }
    cache.user_keywords().set("*", &["x"]).await.unwrap();
    cache.keyword_posts().set("1?", &[1]).await.unwrap();

    // Invalidating user "*" deletes user "*" and nothing else.
    assert!(cache.user().invalidate("*").await.unwrap());
    assert!(!t.exists("user:%2A").await);
    for key in ["user:1%3F", "user:12", "user:1", "keyword:user:%2A"] {
        assert!(
            t.exists(key).await,
            "{key} must survive invalidating user *"
        );
    }
    // A prefix "1?" matches ids that literally start with "1?".
    let n = cache
        .user()
        .invalidate_matching(KeyMatch::IdPrefix("1?".into()))
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
        assert_eq!(t.exists(key).await, alive, "{key}");
    }
    let n = cache
        .user()
        .invalidate_matching(KeyMatch::IdPrefix("[ab]".into()))
        .await
        .unwrap();
    assert_eq!(n, 1, "only the id that starts with the literal text [ab]");
    assert!(t.exists("user:a").await && t.exists("user:b").await);
    let prefix = KeyMatch::IdPrefix("a\\".into());
    assert_eq!(
        cache.user().count_matching(prefix.clone()).await.unwrap(),
        1
    );
    assert_eq!(cache.user().invalidate_matching(prefix).await.unwrap(), 1);

    // Family helpers.
    cache.user_keywords().set("12", &["y"]).await.unwrap();
    assert_eq!(cache.invalidate_user_data("12").await.unwrap(), 2);
    cache.keyword_trends().set("1?", &[0.5]).await.unwrap();
    assert_eq!(cache.invalidate_keyword_data("1?").await.unwrap(), 2);
    assert!(!cache.keyword_trends().invalidate("1?").await.unwrap());
    assert_eq!(
        cache
            .user()
            .invalidate_many(&["a", "b", "zz"])
            .await
            .unwrap(),
        2
    );

    // Metrics: all dates of one type.
    for id in [
        "api:2026-11-01",
        "api:2026-11-02",
        "api2:2026-11-01",
        "web:2026-11-01",
    ] {
        cache.metrics().set(id, &1).await.unwrap();
    }
    let n = cache
        .metrics()
        .invalidate_matching(KeyMatch::IdPrefix("api:".into()))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(cache
        .metrics()
        .get::<i32>("api2:2026-11-01")
        .await
        .unwrap()
        .is_some());

    // At namespace version 0 keys carry no `v{n}:` segment, so ids starting with `v` share a
    // pattern with keys of other versions (`user:v*` matches `user:v3:…`, `metrics:v*` matches
    // `metrics:v3:api:…`): those are not this version's and are left alone.
    cache.user().set("vic", &1).await.unwrap();
    cache.user().set("v3", &1).await.unwrap();
    t.raw_set("user:v3:vanessa", "\"another version\"").await;
    cache.metrics().set("vapi:2026-11-01", &1).await.unwrap();
    t.raw_set("metrics:v3:api:2026-11-01", "1").await;
    let v = KeyMatch::IdPrefix("v".into());
    assert_eq!(cache.user().count_matching(v.clone()).await.unwrap(), 2);
    assert_eq!(
        cache.user().invalidate_matching(v.clone()).await.unwrap(),
        2
    );
    assert!(!t.exists("user:vic").await && !t.exists("user:v3").await);
    assert!(t.exists("user:v3:vanessa").await, "another version's key");
    assert_eq!(cache.metrics().invalidate_matching(v).await.unwrap(), 1);
    assert!(!t.exists("metrics:vapi:2026-11-01").await);
    assert!(
        t.exists("metrics:v3:api:2026-11-01").await,
        "another version's key"
    );

    // The whole family, in batches, with progress; other families untouched.
    let bulk: Vec<(String, u32)> = (0..1200).map(|i| (format!("bulk{i}"), i)).collect();
    cache.user().set_many(&bulk).await.unwrap();
    let batches = AtomicUsize::new(0);
    let n = cache
        .user()
        .invalidate_matching_with_progress(KeyMatch::All, &|_, _| {
            batches.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    // Every version's keys: the bulk, the one left above and `user:v3:vanessa`.
    assert_eq!(n, 1202);
    assert!(
        batches.load(Ordering::SeqCst) >= 2,
        "deleted in several batches"
    );
    assert!(t.exists("keyword:user:%2A").await);
    let counts = cache.key_counts().await.unwrap();
    assert_eq!((counts[&Family::User], counts[&Family::Metrics]), (0, 3));
}

pub async fn version_bump_invalidates_a_family_across_managers(t: &Target) {
    let refresh = CacheConfig::default().with_version_refresh(Duration::from_millis(100));
    let a = t.manager(refresh.clone()).await;
    let b = t.manager(refresh).await;
    a.keyword_trends().set("k", &"old").await.unwrap();
    a.user().set("u", &user(1)).await.unwrap();
    assert_eq!(
        b.keyword_trends()
            .get::<String>("k")
            .await
            .unwrap()
            .unwrap(),
        "old"
    );

    assert_eq!(a.keyword_trends().bump_version().await.unwrap(), 1);
    assert_eq!(
        t.raw_get("nsversion:keyword_trends").await.as_deref(),
        Some("1")
    );
    assert_eq!(a.keyword_trends().get::<String>("k").await.unwrap(), None);
    assert!(
        t.pttl_ms("trend:keyword:k").await > 0,
        "old key ages out by its TTL"
    );
    a.keyword_trends().set("k", &"new").await.unwrap();
    assert!(t.exists("trend:keyword:v1:k").await);
    assert_eq!(
        a.keyword_trends().key_of("k").await.unwrap().as_str(),
        "trend:keyword:v1:k"
    );
    eventually("b follows the new version", async || {
        b.keyword_trends()
            .get::<String>("k")
            .await
            .unwrap()
            .as_deref()
            == Some("new")
    })
    .await;
    assert_eq!(b.keyword_trends().cached_version(), Some(1));
    assert_eq!(b.user().get::<User>("u").await.unwrap(), Some(user(1)));
    // Versioned keys are found by invalidation and pattern invalidation.
    assert!(b.keyword_trends().invalidate("k").await.unwrap());
    a.keyword_trends().set("k2", &"x").await.unwrap();
    assert_eq!(
        a.keyword_trends()
            .invalidate_matching(KeyMatch::IdPrefix("k".into()))
            .await
            .unwrap(),
        1
    );
    // KeyMatch::All covers every version: the old v0 key of "k" is still there.
    assert_eq!(
        a.keyword_trends()
            .invalidate_matching(KeyMatch::All)
            .await
            .unwrap(),
        1
    );
}

/// The id of each family used by the invalidation scenario (metrics ids are `TYPE:DATE`).
pub fn sample_id(family: Family) -> &'static str {
    match family {
        Family::Metrics => "api:2026-11-01",
        _ => "42",
    }
}

pub async fn invalidation_removes_the_live_key_of_every_family_after_a_bump(t: &Target) {
    // `stale` learns every version before the bump and would not re-read it for an hour: its
    // invalidation must still find the live key, since invalidation reads versions fresh.
    let stale = t
        .manager(CacheConfig::default().with_version_refresh(Duration::from_secs(3600)))
        .await;
    let writer = t.manager(CacheConfig::default()).await;
    for family in Family::ALL {
        let id = sample_id(family);
        stale.family(family).set(id, &"v0").await.unwrap();
        assert_eq!(stale.family(family).cached_version(), Some(0));
        assert_eq!(writer.family(family).bump_version().await.unwrap(), 1);
        writer.family(family).set(id, &"v1").await.unwrap();
        let live = writer.family(family).key_of(id).await.unwrap();
        assert!(live.contains(":v1:"), "{live}");
        assert!(t.exists(&live).await, "{live}");

        assert!(
            stale.family(family).invalidate(id).await.unwrap(),
            "{family}"
        );
        assert!(
            !t.exists(&live).await,
            "{family}: the live key {live} survived"
        );
        assert_eq!(writer.family(family).get::<String>(id).await.unwrap(), None);
    }
}

pub async fn corrupt_values_are_misses_and_deleted(t: &Target) {
    let cache = t.manager(CacheConfig::default()).await;
    t.raw_set("user:1", "\u{1}garbage").await;
    t.raw_set("user:3", r#"{"v":1,"d":"not a user"}"#).await;
    for id in ["1", "3"] {
        assert_eq!(cache.user().get::<User>(id).await.unwrap(), None, "{id}");
        assert!(!t.exists(&format!("user:{id}")).await, "{id} is deleted");
    }
    let s = cache.user().stats();
    assert_eq!((s.decode_failures, s.misses, s.hits), (2, 2, 0));

    // get_or_load replaces a corrupt value with a loaded one.
    t.raw_set("user:4", "{").await;
    let v = cache
        .user()
        .get_or_load("4", || async { Ok::<_, String>(user(4)) })
        .await
        .unwrap();
    assert_eq!(v, user(4));
    assert_eq!(cache.user().get::<User>("4").await.unwrap(), Some(user(4)));
    // Bulk reads too.
    t.raw_set("user:5", "nope").await;
    let got: Vec<Option<User>> = cache.user().get_many(&["4", "5"]).await.unwrap();
    assert_eq!(got, vec![Some(user(4)), None]);
    assert!(!t.exists("user:5").await);
    assert_eq!(cache.user().stats().decode_failures, 4);
}

/// A rolling upgrade: a newer build writes values in a format version this build does not read.
/// They are misses here, but they are not corrupt, so they are left alone (issue 12, item 9: they
/// used to be deleted, so old and new instances deleted each other's values), and a crawl-status
/// update refuses to overwrite one (it used to replace it, losing the progress it recorded).
pub async fn a_newer_format_version_is_a_miss_and_left_alone(t: &Target) {
    let cache = t.manager(CacheConfig::default()).await;
    let newer = r#"{"v":2,"d":{"id":2,"name":"from a newer build","tier":"gold"}}"#;
    t.raw_set("user:2", newer).await;
    assert_eq!(cache.user().get::<User>("2").await.unwrap(), None);
    assert_eq!(
        t.raw_get("user:2").await.as_deref(),
        Some(newer),
        "a value of a newer build is left for the instances that read it"
    );
    let got: Vec<Option<User>> = cache.user().get_many(&["2"]).await.unwrap();
    assert_eq!(got, vec![None]);
    assert_eq!(t.raw_get("user:2").await.as_deref(), Some(newer));
    let s = cache.user().stats();
    assert_eq!((s.decode_failures, s.misses, s.hits), (0, 2, 0), "{s:?}");
    assert_eq!(s.unknown_format_versions, 2, "{s:?}");

    // get_or_load treats it as a miss: the loader runs and its value is served (and cached in
    // this build's version, which the newer build reads as well).
    let v = cache
        .user()
        .get_or_load("2", || async { Ok::<_, String>(user(2)) })
        .await
        .unwrap();
    assert_eq!(v, user(2));

    // A crawl-status update does not overwrite a status it cannot read: a typed error, and the
    // newer build's progress stays.
    let status = r#"{"v":2,"d":{"task_id":"job","processed":41,"shards":[1,2]}}"#;
    t.raw_set("crawl:status:job", status).await;
    let e = cache
        .update_crawl_status("job", |s| s.advance(1))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownFormatVersion, "{e}");
    assert_eq!(t.raw_get("crawl:status:job").await.as_deref(), Some(status));
    assert_eq!(
        cache
            .crawl_status()
            .get::<CrawlStatus>("job")
            .await
            .unwrap(),
        None
    );
    assert_eq!(t.raw_get("crawl:status:job").await.as_deref(), Some(status));
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
    let s: CrawlStatus = cache.crawl_status().get("job").await.unwrap().unwrap();
    assert_eq!(s.processed, 200);
    assert_eq!(s.error_count, 20);
    assert!(t.pttl_ms("crawl:status:job").await > 3_590_000);
}
