//! The family near cache (`FamilyCache::get_shared` with `CacheConfig::with_near_cache`) on a real
//! `redis-server`: two managers (each its own store, so its own tracking connection) and
//! `redis-cli`; a write, a delete or an expiry elsewhere is seen; no stale read once the
//! invalidation is processed; the memory bound holds; a version bump empties it; `CLIENT KILL` of
//! the tracking connection and a server restart empty it; the memory backend gets none.
//!
//! Waits are bounded waits for an event, never timed assertions.

use std::time::{Duration, Instant};

use cache_core::Profile;
use cache_domain::{CacheConfig, CacheManager, CrawlState, CrawlStatus, Family, KeyMatch};
use cache_near::NearConfig;
use cache_redis::{RedisConfig, RedisEndpoint, RedisStore};
use serde::{Deserialize, Serialize};
use test_redis::RedisServer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    n: u64,
    body: String,
}

fn doc(n: u64) -> Doc {
    Doc {
        n,
        body: "x".repeat(100),
    }
}

async fn manager(server: &RedisServer, near: NearConfig) -> CacheManager<RedisStore> {
    let config = RedisConfig::new(Profile::Development, RedisEndpoint::server(server.url()))
        .with_key_prefix("app");
    let store = RedisStore::connect(&config).await.unwrap();
    CacheManager::builder(store)
        .with_config(&CacheConfig::default().with_near_cache(Family::Content, near))
        .build()
        .unwrap()
}

/// Waits (bounded: 20 s for a loaded machine) until `cond` holds.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads until the near cache serves `id`.
async fn warm<S: cache_core::Store>(m: &CacheManager<S>, id: &str) {
    eventually("the near cache serves", async || {
        let before = m.content().near_cache_stats().unwrap().hits;
        assert!(m.content().get_shared::<Doc>(id).await.unwrap().is_some());
        m.content().near_cache_stats().unwrap().hits > before
    })
    .await;
}

fn invalidations<S: cache_core::Store>(m: &CacheManager<S>) -> u64 {
    m.content().near_cache_stats().unwrap().invalidations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_deletes_and_expiry_elsewhere_are_seen() {
    let server = RedisServer::start();
    let a = manager(&server, NearConfig::default()).await;
    let b = manager(&server, NearConfig::default()).await;
    a.content().set("d1", &doc(1)).await.unwrap();
    warm(&b, "d1").await;
    let s = b.content().near_cache_stats().unwrap();
    assert!(s.hits >= 1 && s.misses >= 1, "{s:?}");

    // A write on the other instance: once the invalidation is processed, never the old value.
    let before = invalidations(&b);
    a.content().set("d1", &doc(2)).await.unwrap();
    eventually("B hears A's write", async || invalidations(&b) > before).await;
    assert_eq!(
        *b.content().get_shared::<Doc>("d1").await.unwrap().unwrap(),
        doc(2)
    );

    // A delete from redis-cli.
    warm(&b, "d1").await;
    let before = invalidations(&b);
    server.cli(["DEL", "app:content:d1"]);
    eventually("B hears the DEL", async || invalidations(&b) > before).await;
    assert_eq!(b.content().get_shared::<Doc>("d1").await.unwrap(), None);

    // A short TTL: gone once it passed (the near cache never serves past it).
    a.content()
        .with_ttl(Duration::from_millis(30))
        .set("d2", &doc(3))
        .await
        .unwrap();
    assert!(b.content().get_shared::<Doc>("d2").await.unwrap().is_some());
    eventually("the TTL passes", async || {
        b.content().get_shared::<Doc>("d2").await.unwrap().is_none()
    })
    .await;

    // The writing instance reads its own write at once.
    a.content().set("d3", &doc(4)).await.unwrap();
    warm(&a, "d3").await;
    a.content().set("d3", &doc(5)).await.unwrap();
    assert_eq!(
        *a.content().get_shared::<Doc>("d3").await.unwrap().unwrap(),
        doc(5)
    );
    // And a bump of the namespace version empties its near cache.
    warm(&a, "d3").await;
    a.content().bump_version().await.unwrap();
    assert_eq!(a.content().near_cache_stats().unwrap().entries, 0);
    assert_eq!(a.content().get_shared::<Doc>("d3").await.unwrap(), None);
}

/// Pattern invalidation and crawl-status updates drop this instance's copies before they return,
/// as `set` and `invalidate` do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_invalidation_and_crawl_updates_read_their_writes() {
    let server = RedisServer::start();
    let config = RedisConfig::new(Profile::Development, RedisEndpoint::server(server.url()))
        .with_key_prefix("app");
    let m = CacheManager::builder(RedisStore::connect(&config).await.unwrap())
        .with_config(
            &CacheConfig::default()
                .with_near_cache(Family::Content, NearConfig::default())
                .with_near_cache(Family::CrawlStatus, NearConfig::default()),
        )
        .build()
        .unwrap();

    m.content().set("d1", &doc(1)).await.unwrap();
    warm(&m, "d1").await;
    m.content()
        .invalidate_matching(KeyMatch::IdPrefix("d".into()))
        .await
        .unwrap();
    assert_eq!(m.content().get_shared::<Doc>("d1").await.unwrap(), None);

    m.update_crawl_status("t1", |s| s.processed = 1)
        .await
        .unwrap();
    eventually("the near cache serves the status", async || {
        let before = m.crawl_status().near_cache_stats().unwrap().hits;
        let s = m
            .crawl_status()
            .get_shared::<CrawlStatus>("t1")
            .await
            .unwrap();
        assert_eq!(s.unwrap().processed, 1);
        m.crawl_status().near_cache_stats().unwrap().hits > before
    })
    .await;
    m.update_crawl_status("t1", |s| {
        s.processed = 2;
        s.state = CrawlState::Completed;
    })
    .await
    .unwrap();
    let s = m
        .crawl_status()
        .get_shared::<CrawlStatus>("t1")
        .await
        .unwrap();
    assert_eq!(s.unwrap().processed, 2, "no stale status after the update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_bound_holds() {
    let server = RedisServer::start();
    let m = manager(&server, NearConfig::default().with_max_entries(50)).await;
    for i in 0..500 {
        m.content().set(&format!("d{i}"), &doc(i)).await.unwrap();
    }
    for i in 0..500 {
        m.content()
            .get_shared::<Doc>(&format!("d{i}"))
            .await
            .unwrap();
    }
    let s = m.content().near_cache_stats().unwrap();
    assert!(s.entries <= 50, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracking_connection_or_a_restart_empties_it() {
    let server = RedisServer::start();
    let m = manager(&server, NearConfig::default()).await;
    m.content().set("d1", &doc(1)).await.unwrap();
    warm(&m, "d1").await;
    let flushes = m.content().near_cache_stats().unwrap().flushes;
    server.cli(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"]);
    eventually("the loss is noticed", async || {
        m.content().near_cache_stats().unwrap().flushes > flushes
    })
    .await;
    assert_eq!(m.content().near_cache_stats().unwrap().entries, 0);
    warm(&m, "d1").await;

    let flushes = m.content().near_cache_stats().unwrap().flushes;
    server.restart();
    eventually("the restart is noticed", async || {
        m.content().near_cache_stats().unwrap().flushes > flushes
    })
    .await;
    // The restarted server is empty (no persistence): no stale value survives.
    eventually("reads work again", async || {
        m.content().get_shared::<Doc>("d1").await.unwrap().is_none()
    })
    .await;
}

#[tokio::test]
async fn the_memory_backend_gets_no_near_cache() {
    let m = CacheManager::builder(cache_memory::MemoryStore::new())
        .with_config(
            &CacheConfig::default().with_near_cache(Family::Content, NearConfig::default()),
        )
        .build()
        .unwrap();
    m.content().set("d", &doc(1)).await.unwrap();
    assert_eq!(
        *m.content().get_shared::<Doc>("d").await.unwrap().unwrap(),
        doc(1)
    );
    assert!(m.content().near_cache_stats().is_none());
}

#[test]
fn the_families_come_from_the_environment() {
    let lookup = |v: &str| (v == "CACHE_NEAR_FAMILIES").then(|| "content, user=500".to_owned());
    let c = CacheConfig::from_lookup(lookup).unwrap();
    assert_eq!(c.near_cache(Family::Content), Some(NearConfig::default()));
    assert_eq!(c.near_cache(Family::User).unwrap().max_entries, 500);
    assert_eq!(c.near_cache(Family::KeywordTrends), None);
    let bad = |v: &str| (v == "CACHE_NEAR_FAMILIES").then(|| "nope".to_owned());
    let err = CacheConfig::from_lookup(bad).unwrap_err();
    assert!(err.to_string().contains("CACHE_NEAR_FAMILIES"), "{err}");
}

/// Once armed, counts the store reads behind near-cache misses (`get_with_ttl`) and holds each of
/// them until the test releases it (a `watch` whose value is how many reads may go on).
#[derive(Debug)]
struct GateReads {
    armed: std::sync::atomic::AtomicBool,
    reads: std::sync::atomic::AtomicU64,
    released: tokio::sync::watch::Sender<u64>,
}

impl GateReads {
    fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            armed: Default::default(),
            reads: Default::default(),
            released: tokio::sync::watch::channel(0).0,
        })
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn release_one(&self) {
        self.released.send_modify(|n| *n += 1);
    }
}

#[async_trait::async_trait]
impl cache_core::layer::StoreHook for GateReads {
    async fn before(&self, op: &cache_core::layer::Op<'_>) -> cache_core::Result<()> {
        if op.method == cache_core::layer::Method::GetWithTtl
            && self.armed.load(std::sync::atomic::Ordering::SeqCst)
        {
            let n = self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let mut rx = self.released.subscribe();
            let _ = rx.wait_for(|released| *released >= n).await;
        }
        Ok(())
    }
}

type Gated = cache_core::layer::Layered<RedisStore, std::sync::Arc<GateReads>>;

/// A manager over a gated store whose near cache is tracking (it has served a hit).
async fn gated_manager(
    server: &RedisServer,
    gate: &std::sync::Arc<GateReads>,
) -> CacheManager<Gated> {
    let config = RedisConfig::new(Profile::Development, RedisEndpoint::server(server.url()))
        .with_key_prefix("app");
    let store = RedisStore::connect(&config).await.unwrap();
    let m = CacheManager::builder(cache_core::layer::Layered::new(
        store,
        std::sync::Arc::clone(gate),
    ))
    // The gate holds reads for as long as a test needs: a call deadline far beyond any test keeps
    // a held read from timing out on a slow machine.
    .with_config(
        &CacheConfig::default()
            .with_near_cache(Family::Content, NearConfig::default())
            .with_call_timeout(Duration::from_secs(120)),
    )
    .build()
    .unwrap();
    m.content().set("tracking", &doc(0)).await.unwrap();
    warm(&m, "tracking").await;
    gate.arm();
    m
}

fn coalesced<S: cache_core::Store>(m: &CacheManager<S>) -> u64 {
    m.content().near_cache_stats().unwrap().coalesced
}

/// When a hot key changes, every request reading it misses at once: one store read per key, the
/// other callers wait for its answer (the herd a near cache otherwise sends to Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_a_key_send_one_read() {
    let server = RedisServer::start();
    let gate = GateReads::new();
    let m = std::sync::Arc::new(gated_manager(&server, &gate).await);
    let before = invalidations(&m);
    m.content().set("hot", &doc(1)).await.unwrap();
    // The write's own invalidation comes back from the server too (this manager's tracking
    // connection is not the one that wrote); wait for it, or it would refuse the insert below.
    eventually("the server's invalidation of our write", async || {
        invalidations(&m) == before + 2
    })
    .await;
    let readers: Vec<_> = (0..32)
        .map(|_| {
            let m = std::sync::Arc::clone(&m);
            tokio::spawn(async move { m.content().get_shared::<Doc>("hot").await })
        })
        .collect();
    eventually("31 readers wait for the first one's read", async || {
        coalesced(&m) == 31
    })
    .await;
    assert_eq!(gate.reads(), 1, "one read of the key in flight");
    gate.release_one();
    for r in readers {
        assert_eq!(*r.await.unwrap().unwrap().unwrap(), doc(1));
    }
    assert_eq!(gate.reads(), 1, "one store read served all 32 callers");
    // And the value is held now.
    assert_eq!(
        *m.content().get_shared::<Doc>("hot").await.unwrap().unwrap(),
        doc(1)
    );
    assert_eq!(gate.reads(), 1);
}

/// A read that starts after the key changed (the invalidation was processed) never receives the
/// answer of a read that started before: it reads the store itself and sees the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_after_a_change_does_not_join_an_older_read() {
    let server = RedisServer::start();
    let gate = GateReads::new();
    let m = std::sync::Arc::new(gated_manager(&server, &gate).await);
    let other = manager(&server, NearConfig::default()).await;
    let before = invalidations(&m);
    m.content().set("k", &doc(1)).await.unwrap();
    eventually("the server's invalidation of our write", async || {
        invalidations(&m) == before + 2
    })
    .await;
    let first = {
        let m = std::sync::Arc::clone(&m);
        tokio::spawn(async move { m.content().get_shared::<Doc>("k").await })
    };
    eventually("the first read is held", async || gate.reads() == 1).await;
    // Read the old value from Redis, then let it wait; the key changes on another instance.
    let before = m.content().near_cache_stats().unwrap().invalidations;
    other.content().set("k", &doc(2)).await.unwrap();
    eventually("the change is heard", async || {
        m.content().near_cache_stats().unwrap().invalidations > before
    })
    .await;
    let second = {
        let m = std::sync::Arc::clone(&m);
        tokio::spawn(async move { m.content().get_shared::<Doc>("k").await })
    };
    eventually("the second caller reads for itself", async || {
        gate.reads() == 2
    })
    .await;
    assert_eq!(coalesced(&m), 0);
    gate.release_one();
    gate.release_one();
    assert!(first.await.unwrap().unwrap().is_some());
    assert_eq!(*second.await.unwrap().unwrap().unwrap(), doc(2));
    // Whatever the first read found, the near cache holds the new value only.
    assert_eq!(
        *m.content().get_shared::<Doc>("k").await.unwrap().unwrap(),
        doc(2)
    );
}
