//! Shared helpers of the integration tests: a configuration for a spawned server and a store on it.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::time::{Duration, Instant};

use cache_core::Profile;
use cache_redis::{PoolConfig, RedisConfig, RedisEndpoint, RedisStore, RetryConfig};
use test_redis::RedisServer;

/// Production defaults with short timeouts, so fault tests finish quickly, and prefix `t`.
pub fn config(url: &str) -> RedisConfig {
    RedisConfig::new(Profile::Production, RedisEndpoint::server(url))
        .with_key_prefix("t")
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(300))
        .with_pool(
            PoolConfig::default()
                .with_max_open(8)
                .with_health_check_interval(Duration::from_millis(200)),
        )
        .with_retry(RetryConfig::default().with_budget(Duration::from_millis(800)))
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
pub fn cluster_config(cluster: &test_redis::RedisCluster) -> RedisConfig {
    RedisConfig::new(
        Profile::Production,
        RedisEndpoint::cluster(cluster.seed_urls()),
    )
    .with_key_prefix("t")
    .with_connect_timeout(Duration::from_millis(500))
    .with_response_timeout(Duration::from_millis(500))
    .with_pool(
        PoolConfig::default()
            .with_max_open(8)
            .with_health_check_interval(Duration::from_millis(200)),
    )
    .with_retry(RetryConfig::default().with_budget(Duration::from_millis(1000)))
}

/// Outcome of every operation of a load run under faults, by time.
#[derive(Default)]
pub struct Log {
    pub ok: u64,
    pub failed: u64,
    pub first_failure: Option<Instant>,
    pub last_failure: Option<Instant>,
    pub last_error: Option<String>,
}

impl Log {
    pub fn record<T, E: std::fmt::Display>(&mut self, r: &Result<T, E>) {
        match r {
            Ok(_) => self.ok += 1,
            Err(e) => {
                let now = Instant::now();
                self.failed += 1;
                self.first_failure.get_or_insert(now);
                self.last_failure = Some(now);
                self.last_error = Some(e.to_string());
            }
        }
    }
}
