//! Property-based test of reading the whole configuration from an environment
//! (`cachekit::Config::from_lookup`, which composes the profile, the memory or Redis backend
//! settings, the cache manager's and the session manager's): whatever the variables hold, reading
//! them never panics, and an error is `Error::Config` naming a variable the user set (or the endpoint
//! that is missing). Issue 12, item 18.
//!
//! Case counts are proptest's default (256), or `PROPTEST_CASES` when set.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cache_testing::env::variables_read;
use cachekit::{Config, Error};
use proptest::prelude::*;

/// Environments that select each backend: once it knows its backend, `Config::from_lookup` asks
/// for every optional setting of every part. (This crate builds the facade with the `cluster`
/// feature, so a cluster is read to the end, not refused for a missing feature.)
const SELECTORS: &[&[(&str, &str)]] = &[
    &[],
    &[("REDIS_URL", "redis://127.0.0.1:6379")],
    &[
        ("CACHE_BACKEND", "cluster"),
        ("REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1:7001"),
    ],
    &[
        ("REDIS_SENTINEL_NODES", "127.0.0.1:26379"),
        ("REDIS_SENTINEL_SERVICE", "mymaster"),
    ],
];

/// The variables the facade's configuration reads (every part's): the names `Config::from_lookup`
/// asks for in the [`SELECTORS`] environments, recorded, so that the list the property draws from
/// cannot fall behind the code (the hand-written list it replaces had missed the memory store's
/// bounds and most families' TTLs).
fn variables() -> &'static [String] {
    static VARIABLES: OnceLock<Vec<String>> = OnceLock::new();
    VARIABLES.get_or_init(|| variables_read(SELECTORS, |lookup| Config::from_lookup(lookup)))
}

#[test]
fn each_selector_reads_to_the_end_of_its_backend() {
    // The empty environment selects the embedded default.
    for (selector, backend) in SELECTORS
        .iter()
        .zip(["memory", "redis", "cluster", "redis"])
    {
        let lookup = |k: &str| {
            selector
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let config = Config::from_lookup(lookup).unwrap_or_else(|e| panic!("{selector:?}: {e}"));
        assert_eq!(config.backend.name(), backend, "{selector:?}");
    }
}

#[test]
fn the_recorded_variables_are_every_setting_of_every_part() {
    let vars = variables();
    for name in [
        "CACHE_PROFILE",
        "CACHE_BACKEND",
        "REDIS_URL",
        "REDIS_CLUSTER_NODES",
        "REDIS_SENTINEL_NODES",
        "REDIS_SENTINEL_SERVICE",
        "REDIS_SCAN_COUNT",
        "CACHE_MEMORY_MAX_ENTRIES",
        "CACHE_MEMORY_MAX_BYTES",
        "CACHE_TTL_USER",
        "CACHE_TTL_USER_KEYWORDS",
        "CACHE_CALL_TIMEOUT",
        "SESSION_CALL_TIMEOUT",
        "CACHE_NEAR_FAMILIES",
        "CACHE_NEAR_SESSIONS",
    ] {
        assert!(vars.iter().any(|v| v == name), "{name} not in {vars:?}");
    }
}

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
    prop::collection::btree_map(prop::sample::select(variables()), value(), 0..8)
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
                let named = variables().contains(&setting)
                    && (given(&setting)
                        || variables().iter().any(|v| given(v) && message.contains(v.as_str()))
                        || endpoint);
                prop_assert!(named, "{setting}: {message} (environment {env:?})");
            }
            Err(other) => prop_assert!(false, "not a config error: {other}"),
        }
    }
}
