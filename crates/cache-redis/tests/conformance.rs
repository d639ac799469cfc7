//! `RedisStore` passes the whole conformance suite of `cache_testing::conformance` against a real
//! `redis-server` spawned by the test: directly, as `dyn Store`, and with the contention checks on a
//! multi-threaded runtime.

mod common;

use std::sync::Arc;

use cache_core::Store;
use cache_redis::RedisStore;
use cache_testing::conformance::{self, run_all, Capabilities};
use common::config;
use test_redis::RedisServer;

const MAX_VALUE: usize = 2 * 1024 * 1024;

async fn stores(server: &RedisServer) -> (RedisStore, RedisStore, RedisStore) {
    let mut cfg = config(&server.url());
    cfg.max_value_bytes = MAX_VALUE;
    // Large values (2 MiB) need more than the fault tests' 300 ms on a loaded machine.
    cfg.response_timeout = std::time::Duration::from_secs(2);
    cfg.key_prefix = "conformance_a".into();
    let store = RedisStore::connect(&cfg).await.unwrap();
    cfg.key_prefix = "conformance_b".into();
    let other = RedisStore::connect(&cfg).await.unwrap();
    cfg.key_prefix = String::new();
    let unprefixed = RedisStore::connect(&cfg).await.unwrap();
    (store, other, unprefixed)
}

fn caps() -> Capabilities {
    // One server: near-cache tracking is supported (on a cluster and under Sentinel it is not).
    Capabilities::new()
        .with_max_value_bytes(MAX_VALUE)
        .with_change_tracking()
}

#[tokio::test]
async fn redis_store_passes_the_suite() {
    let server = RedisServer::start();
    let (store, other, unprefixed) = stores(&server).await;
    run_all(&store, &other, &unprefixed, &caps()).await;
    assert_eq!(
        server.cli(["--scan", "--pattern", "conformance_a:*"]),
        "",
        "checks left keys behind"
    );
}

#[tokio::test]
async fn redis_store_passes_the_suite_as_dyn_store() {
    let server = RedisServer::start();
    let (store, other, unprefixed) = stores(&server).await;
    let store: Arc<dyn Store> = Arc::new(store);
    let other: Arc<dyn Store> = Arc::new(other);
    let unprefixed: Box<dyn Store> = Box::new(unprefixed);
    run_all(&store, &other, &unprefixed, &caps()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_checks_hold_on_a_multi_threaded_runtime() {
    let server = RedisServer::start();
    let (store, _, _) = stores(&server).await;
    conformance::check_compare_and_swap_contention(&store).await;
    conformance::check_incr_by_concurrent(&store).await;
}

/// Issue 12 item 8: the `incr_by` script used to answer through a Lua number (a double), so
/// `incr_by(k, 2^53 + 1, ttl)` answered 2^53 and `incr_by(k, i64::MAX, ttl)` answered `i64::MIN`.
#[tokio::test]
async fn incr_by_with_a_ttl_is_exact_beyond_2_pow_53() {
    let server = RedisServer::start();
    let (store, _, _) = stores(&server).await;
    conformance::check_incr_by_exact_beyond_2_pow_53(&store).await;
}
