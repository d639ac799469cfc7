//! Shared helpers of the integration tests: a configuration for a spawned server and a store on it.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::time::Duration;

use cache_core::config::{PoolConfig, RetryConfig};
use cache_core::{Config, Profile};
use cache_redis::RedisStore;
use test_redis::RedisServer;

/// Production defaults with short timeouts, so fault tests finish quickly, and prefix `t`.
pub fn config(url: &str) -> Config {
    Config::builder()
        .profile(Profile::Production)
        .redis_url(url)
        .key_prefix("t")
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(300))
        .pool(
            PoolConfig::default()
                .with_max_open(8)
                .with_health_check_interval(Duration::from_millis(200)),
        )
        .retry(RetryConfig::default().with_budget(Duration::from_millis(800)))
        .build()
        .expect("test config is valid")
}

/// A connected store with prefix `t` on `server`.
pub async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::connect(&config(&server.url()))
        .await
        .expect("connect to the test server")
}

/// Number of keys in database 0 of `server`, read with redis-cli (independent of the store).
pub fn dbsize(server: &RedisServer) -> u64 {
    server.cli(["DBSIZE"]).parse().expect("DBSIZE is a number")
}

/// The test configuration (short timeouts, prefix `t`) for a spawned cluster, by seed URLs.
pub fn cluster_config(cluster: &test_redis::RedisCluster) -> Config {
    Config::builder()
        .profile(Profile::Production)
        .cluster_nodes(cluster.seed_urls())
        .key_prefix("t")
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .pool(
            PoolConfig::default()
                .with_max_open(8)
                .with_health_check_interval(Duration::from_millis(200)),
        )
        .retry(RetryConfig::default().with_budget(Duration::from_millis(1000)))
        .build()
        .expect("test cluster config is valid")
}
