//! One deadline per cache manager call (`CACHE_CALL_TIMEOUT`), shared by all its store calls and
//! counted from its start: on a real `redis-server` that freezes between the two store calls of
//! `update_crawl_status`, the call ends at its deadline (the error names `CACHE_CALL_TIMEOUT`)
//! instead of waiting out the store's own bound; on a paused clock, `get_or_load` spends the
//! budget on its store calls only, not on the loader.

use std::sync::Arc;
use std::time::Duration;

use cache_core::layer::{Layered, Op, StoreHook};
use cache_core::{async_trait, ErrorKind, Profile, Result, Store};
use cache_domain::{CacheConfig, CacheManager, CrawlStatus};
use cache_memory::MemoryStore;
use cache_redis::{RedisConfig, RedisEndpoint, RedisStore, RetryConfig};
use cache_testing::hooks::AfterCalls;
use test_redis::RedisServer;

/// Freezes `server` (`SIGSTOP`) once the `n`-th store call has answered: the next store call of
/// the same manager call meets a frozen server.
fn freeze_after(
    server: &Arc<RedisServer>,
    n: usize,
) -> AfterCalls<impl Fn() + Send + Sync + 'static> {
    let server = Arc::clone(server);
    AfterCalls::new(n, move || server.freeze())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_frozen_between_two_store_calls_ends_the_call_at_its_deadline() {
    let server = Arc::new(RedisServer::start());
    // The store's own bound of one call is long (response timeout 2 s, budget 3 s).
    let config = RedisConfig::new(Profile::Production, RedisEndpoint::server(server.url()))
        .with_key_prefix("t")
        .with_response_timeout(Duration::from_secs(2))
        .with_retry(RetryConfig::default().with_budget(Duration::from_secs(3)));
    let store = RedisStore::connect(&config).await.unwrap();
    let plain = CacheManager::new(store.clone());
    plain
        .update_crawl_status("job", |s| s.set_message("queued"))
        .await
        .unwrap();
    // The update reads the status (store call 1), then swaps it: freeze in between.
    let hook = freeze_after(&server, 1);
    let cache = CacheManager::builder(Layered::new(store.clone(), hook))
        .with_config(&CacheConfig::default().with_call_timeout(Duration::from_millis(400)))
        .build()
        .unwrap();
    let e = cache
        .update_crawl_status("job", |s| s.set_message("running"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("CACHE_CALL_TIMEOUT"), "{e}");
    server.thaw();
    let status: CrawlStatus = plain.crawl_status().get("job").await.unwrap().unwrap();
    assert!(
        matches!(status.message.as_deref(), Some("queued" | "running")),
        "{status:?}"
    );
}

/// Every store call takes `delay` (a slow store, on tokio's paused clock).
#[derive(Debug)]
struct Slow(Duration);

#[async_trait]
impl StoreHook for Slow {
    async fn before(&self, _: &Op<'_>) -> Result<()> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

/// `get_or_load` on a miss: version, read, the leader's second read (200 ms each), the loader
/// (10 s), the write (200 ms).
async fn load_with_timeout(timeout: Duration) -> (CacheManager<Layered<MemoryStore, Slow>>, u64) {
    let memory = MemoryStore::new();
    let cache = CacheManager::builder(Layered::new(
        memory.clone(),
        Slow(Duration::from_millis(200)),
    ))
    .with_config(&CacheConfig::default().with_call_timeout(timeout))
    .build()
    .unwrap();
    let started = tokio::time::Instant::now();
    let v: u32 = cache
        .keyword_trends()
        .get_or_load("k", || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, std::io::Error>(7)
        })
        .await
        .unwrap();
    assert_eq!(v, 7);
    let elapsed = started.elapsed().as_millis() as u64;
    let cached = memory.exists("trend:keyword:k").await.unwrap();
    (cache, if cached { elapsed } else { 0 })
}

#[tokio::test(start_paused = true)]
async fn get_or_load_spends_its_deadline_on_store_calls_not_on_the_loader() {
    // 800 ms of store calls fit in 1 s, whatever the loader takes: the value is cached.
    let (cache, elapsed) = load_with_timeout(Duration::from_secs(1)).await;
    assert_eq!(
        elapsed, 10_800,
        "cached, after 4 store calls and the loader"
    );
    let s = cache.keyword_trends().stats();
    assert_eq!((s.writes, s.store_errors), (1, 0), "{s:?}");

    // With 700 ms the write (after 600 ms of reads) is cut at the deadline: the caller still gets
    // the loader's value, the write counts as failed (the default write policy) and nothing is
    // cached.
    let (cache, cached_after) = load_with_timeout(Duration::from_millis(700)).await;
    assert_eq!(cached_after, 0, "the write was cut");
    let s = cache.keyword_trends().stats();
    assert_eq!((s.writes, s.store_errors, s.loads), (0, 1, 1), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_store_makes_get_a_miss_at_the_deadline_and_set_a_counted_failure() {
    let cache = CacheManager::builder(Layered::new(
        MemoryStore::new(),
        Slow(Duration::from_secs(5)),
    ))
    .with_config(&CacheConfig::default().with_call_timeout(Duration::from_millis(300)))
    .build()
    .unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(cache.user().get::<u32>("1").await.unwrap(), None);
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    cache.user().set("1", &1u32).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(600));
    let e = cache.user().bump_version().await.unwrap_err();
    assert!(e.to_string().contains("CACHE_CALL_TIMEOUT"), "{e}");
    let s = cache.user().stats();
    assert_eq!((s.misses, s.store_errors), (1, 2), "{s:?}");
}
