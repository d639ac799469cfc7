//! Property-based test of reading the whole configuration from an environment
//! (`cachekit::Config::from_lookup`, which composes the profile, the memory or Redis backend
//! settings, the cache manager's and the session manager's): whatever the variables hold, reading
//! them never panics, and an error is `Error::Config` naming a variable the user set (or the endpoint
//! that is missing). Issue 12, item 18.
//!
//! Case counts are proptest's default (256), or `PROPTEST_CASES` when set.

use std::collections::BTreeMap;

use cachekit::{Config, Error};
use proptest::prelude::*;

/// The variables the facade's configuration reads (every part's).
const VARIABLES: &[&str] = &[
    "CACHE_PROFILE",
    "CACHE_BACKEND",
    "REDIS_URL",
    "REDIS_CLUSTER_NODES",
    "REDIS_SENTINEL_NODES",
    "REDIS_SENTINEL_SERVICE",
    "REDIS_SENTINEL_USERNAME",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_TLS",
    "CACHE_KEY_PREFIX",
    "REDIS_DB",
    "REDIS_CONNECT_TIMEOUT",
    "REDIS_RESPONSE_TIMEOUT",
    "REDIS_POOL_WAIT_TIMEOUT",
    "REDIS_HEALTH_CHECK_INTERVAL",
    "REDIS_CONN_MAX_LIFETIME",
    "REDIS_RETRY_BASE_DELAY",
    "REDIS_RETRY_MAX_DELAY",
    "REDIS_RETRY_BUDGET",
    "REDIS_POOL_MAX_OPEN",
    "REDIS_POOL_MAX_IDLE",
    "REDIS_RETRY_ATTEMPTS",
    "REDIS_SHARED_CONNECTIONS",
    "REDIS_READ_FROM_REPLICAS",
    "REDIS_SCAN_COUNT",
    "CACHE_MAX_VALUE_BYTES",
    "CACHE_TTL_USER",
    "CACHE_TTL_METRICS",
    "CACHE_TTL_SESSION",
    "CACHE_CALL_TIMEOUT",
    "SESSION_CALL_TIMEOUT",
    "CACHE_NEAR_FAMILIES",
    "CACHE_NEAR_SESSIONS",
];

/// A value for any variable: plausible ones (so that parsing goes deep) and arbitrary text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,4}(ms|s|m|h|d)?",
        prop::sample::select(
            &[
                "redis://127.0.0.1:6379/0",
                "rediss://user:pw@host:6380",
                "127.0.0.1:7000,127.0.0.1:7001",
                ",",
                "memory",
                "redis",
                "cluster",
                "sentinel",
                "mymaster",
                "production",
                "dev",
                "true",
                "on",
                "off",
                "user,content=5000",
                "content=off",
                "5000",
                "shop",
                "shop.user",
                "shop:user",
                "0",
                "-1",
                "99999999999999999999",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn environment() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(VARIABLES).prop_map(str::to_owned),
        value(),
        0..8,
    )
}

proptest! {
    #[test]
    fn reading_any_environment_never_panics_and_errors_name_a_given_setting(env in environment()) {
        let given = |k: &str| env.get(k).is_some_and(|v| !v.trim().is_empty());
        match Config::from_lookup(|k| env.get(k).cloned()) {
            Ok(config) => {
                prop_assert!(config.validate().is_ok());
                prop_assert!(!config.key_prefix().contains(':'), "{:?}", config.key_prefix());
            }
            Err(Error::Config { setting, message }) => {
                let endpoint = matches!(
                    setting.as_str(),
                    "REDIS_URL"
                        | "REDIS_CLUSTER_NODES"
                        | "REDIS_SENTINEL_NODES"
                        | "REDIS_SENTINEL_SERVICE"
                );
                let named = VARIABLES.contains(&setting.as_str())
                    && (given(&setting)
                        || VARIABLES.iter().any(|v| given(v) && message.contains(v))
                        || endpoint);
                prop_assert!(named, "{setting}: {message} (environment {env:?})");
            }
            Err(other) => prop_assert!(false, "not a config error: {other}"),
        }
    }
}
