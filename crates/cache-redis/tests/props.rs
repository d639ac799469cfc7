//! Property-based tests of `RedisConfig::from_lookup`: whatever the environment holds, reading it
//! never panics, and an error is `Error::Config` naming a setting the user gave (or the endpoint
//! that is missing). The scan cursor's properties are unit tests in `src/scan.rs`.
//!
//! Case counts are proptest's default (256), or `PROPTEST_CASES` when set.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use cache_core::{Error, Profile};
use cache_redis::RedisConfig;
use cache_testing::env::variables_read;
use proptest::prelude::*;

/// Environments that select each kind of endpoint: once it knows its endpoint,
/// `RedisConfig::from_lookup` asks for every optional setting.
const SELECTORS: &[&[(&str, &str)]] = &[
    &[("REDIS_URL", "redis://127.0.0.1:6379")],
    &[
        ("CACHE_BACKEND", "cluster"),
        ("REDIS_CLUSTER_NODES", "127.0.0.1:7000"),
    ],
    &[
        ("REDIS_SENTINEL_NODES", "127.0.0.1:26379"),
        ("REDIS_SENTINEL_SERVICE", "mymaster"),
    ],
];

/// The variables `RedisConfig::from_lookup` reads: the names it asks for in the [`SELECTORS`]
/// environments, recorded, so that the list the properties draw from cannot fall behind the code.
fn variables() -> &'static [String] {
    static VARIABLES: OnceLock<Vec<String>> = OnceLock::new();
    VARIABLES.get_or_init(|| {
        variables_read(SELECTORS, |lookup| {
            RedisConfig::from_lookup(Profile::Development, lookup)
        })
    })
}

#[test]
fn the_recorded_variables_are_every_setting_of_every_endpoint() {
    let vars = variables();
    for name in [
        "CACHE_BACKEND",
        "REDIS_URL",
        "REDIS_CLUSTER_NODES",
        "REDIS_SENTINEL_NODES",
        "REDIS_SENTINEL_SERVICE",
        "REDIS_SENTINEL_PASSWORD",
        "REDIS_PASSWORD",
        "CACHE_KEY_PREFIX",
        "REDIS_RETRY_BUDGET",
        "REDIS_SCAN_COUNT",
        "CACHE_MAX_VALUE_BYTES",
    ] {
        assert!(vars.iter().any(|v| v == name), "{name} not in {vars:?}");
    }
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,4}(ms|s|m|h|d)?",
        prop::sample::select(
            &[
                "redis://127.0.0.1:6379/0",
                "rediss://user:pw@host:6380",
                "unix:///tmp/redis.sock",
                "127.0.0.1:7000,127.0.0.1:7001",
                "sentinel",
                "mymaster",
                "redis://a:1, ,redis://b:2",
                ",",
                "redis",
                "cluster",
                "memory",
                "true",
                "no",
                "shop",
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
    fn reading_any_environment_never_panics_and_errors_name_a_given_setting(
        env in environment(),
        production in any::<bool>(),
    ) {
        let profile = if production { Profile::Production } else { Profile::Development };
        let given = |k: &str| env.get(k).is_some_and(|v| !v.trim().is_empty());
        match RedisConfig::from_lookup(profile, |k| env.get(k).cloned()) {
            Ok(config) => prop_assert!(config.validate().is_ok()),
            Err(Error::Config { setting, message }) => {
                let named = variables().contains(&setting)
                    && (given(&setting)
                        || variables().iter().any(|v| given(v) && message.contains(v.as_str()))
                        || matches!(
                            setting.as_str(),
                            "REDIS_URL" | "REDIS_CLUSTER_NODES" | "REDIS_SENTINEL_NODES"
                                | "REDIS_SENTINEL_SERVICE"
                        ));
                prop_assert!(named, "{setting}: {message} (environment {env:?})");
            }
            Err(other) => prop_assert!(false, "not a config error: {other}"),
        }
    }
}
