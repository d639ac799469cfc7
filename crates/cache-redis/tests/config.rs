//! `RedisConfig`: the profile defaults, every environment variable, the endpoint choice, errors that
//! name the setting, and `Debug` without passwords. No server needed.

use std::time::Duration;

use cache_core::{BackendConfig, Config, Error, Profile};
use cache_redis::{
    PoolConfig, RedisConfig, RedisEndpoint, RetryConfig, DEFAULT_SHARED_CONNECTIONS,
};

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

const URL: (&str, &str) = ("REDIS_URL", "redis://127.0.0.1:6380/1");

#[test]
fn profiles_have_the_documented_defaults() {
    let dev = RedisConfig::from_lookup(Profile::Development, env(&[URL])).unwrap();
    assert_eq!(dev.key_prefix, "dev");
    assert_eq!(dev.pool.max_open, 5);
    assert_eq!(dev.response_timeout, Duration::from_secs(2));
    assert_eq!(dev.retry.budget, Duration::from_secs(3));
    assert_eq!(dev.shared_connections, DEFAULT_SHARED_CONNECTIONS);
    let prod = RedisConfig::from_lookup(Profile::Production, env(&[URL])).unwrap();
    assert_eq!(prod.key_prefix, "");
    assert_eq!(prod.pool.max_open, 20);
    assert_eq!(prod.pool.max_idle, 20);
    assert_eq!(prod.connect_timeout, Duration::from_secs(1));
    assert_eq!(prod.response_timeout, Duration::from_millis(500));
    assert_eq!(prod.retry, RetryConfig::default());
    assert_eq!(prod.scan_count, 500);
    assert_eq!(prod.max_value_bytes, 8 * 1024 * 1024);
    let staging = RedisConfig::from_lookup(Profile::Staging, env(&[URL])).unwrap();
    assert_eq!(staging.key_prefix, "staging");
    assert_eq!(staging.pool, prod.pool);
}

#[test]
fn the_same_defaults_as_the_workspace_config() {
    for profile in [Profile::Development, Profile::Staging, Profile::Production] {
        let mut core = Config::for_profile(profile);
        core.backend = BackendConfig::Redis {
            url: URL.1.to_owned(),
        };
        assert_eq!(
            RedisConfig::from_core(&core).unwrap(),
            RedisConfig::new(profile, RedisEndpoint::server(URL.1)),
            "{profile:?}"
        );
    }
    let memory = RedisConfig::from_core(&Config::default()).unwrap_err();
    assert!(
        matches!(&memory, Error::Config { setting, .. } if setting == "CACHE_BACKEND"),
        "{memory}"
    );
}

#[test]
fn every_variable_is_read() {
    let c = RedisConfig::from_lookup(
        Profile::Production,
        env(&[
            ("REDIS_URL", "redis://:pw@localhost:6380/2"),
            ("CACHE_KEY_PREFIX", " shop "),
            ("REDIS_DB", "3"),
            ("REDIS_CONNECT_TIMEOUT", "3s"),
            ("REDIS_RESPONSE_TIMEOUT", "250ms"),
            ("REDIS_POOL_MAX_OPEN", "8"),
            ("REDIS_POOL_WAIT_TIMEOUT", "4s"),
            ("REDIS_HEALTH_CHECK_INTERVAL", "5s"),
            ("REDIS_CONN_MAX_LIFETIME", "10m"),
            ("REDIS_RETRY_ATTEMPTS", "5"),
            ("REDIS_RETRY_BASE_DELAY", "10ms"),
            ("REDIS_RETRY_MAX_DELAY", "1s"),
            ("REDIS_RETRY_BUDGET", "2s"),
            ("REDIS_SHARED_CONNECTIONS", "1"),
            ("REDIS_READ_FROM_REPLICAS", "yes"),
            ("REDIS_SCAN_COUNT", "100"),
            ("CACHE_MAX_VALUE_BYTES", "1024"),
            ("REDIS_CLUSTER_NODES", ""),
        ]),
    )
    .unwrap();
    let expected = RedisConfig::new(
        Profile::Production,
        RedisEndpoint::server("redis://:pw@localhost:6380/2"),
    )
    .with_key_prefix("shop")
    .with_database(3)
    .with_connect_timeout(Duration::from_secs(3))
    .with_response_timeout(Duration::from_millis(250))
    .with_pool(
        PoolConfig::default()
            .with_max_open(8)
            .with_wait_timeout(Duration::from_secs(4))
            .with_health_check_interval(Duration::from_secs(5))
            .with_max_lifetime(Duration::from_secs(600)),
    )
    .with_retry(
        RetryConfig::default()
            .with_max_attempts(5)
            .with_base_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_secs(1))
            .with_budget(Duration::from_secs(2)),
    )
    .with_shared_connections(1)
    .with_read_from_replicas(true)
    .with_scan_count(100)
    .with_max_value_bytes(1024);
    assert_eq!(c, expected);
    assert_eq!(c.pool.max_idle, 8, "max open caps max idle");
}

#[test]
fn the_endpoint_follows_cache_backend() {
    let nodes = ("REDIS_CLUSTER_NODES", "a:1, redis://b:2,");
    let cluster = RedisEndpoint::Cluster {
        nodes: vec!["redis://a:1".into(), "redis://b:2".into()],
    };
    let server = RedisEndpoint::server(URL.1);
    let cases: [(&[(&str, &str)], &RedisEndpoint); 4] = [
        (&[URL], &server),
        (&[URL, nodes], &cluster),
        (&[URL, nodes, ("CACHE_BACKEND", "redis")], &server),
        (&[URL, nodes, ("CACHE_BACKEND", "cluster")], &cluster),
    ];
    for (pairs, endpoint) in cases {
        let c = RedisConfig::from_lookup(Profile::Production, env(pairs)).unwrap();
        assert_eq!(&c.endpoint, endpoint, "{pairs:?}");
    }
}

#[test]
fn bad_settings_name_the_setting() {
    let cases: [(&[(&str, &str)], &str); 16] = [
        (&[], "REDIS_URL"),
        (&[URL, ("CACHE_BACKEND", "memory")], "CACHE_BACKEND"),
        (&[("CACHE_BACKEND", "redis")], "REDIS_URL"),
        (&[URL, ("CACHE_BACKEND", "cluster")], "REDIS_CLUSTER_NODES"),
        (&[("REDIS_CLUSTER_NODES", ",")], "REDIS_CLUSTER_NODES"),
        (&[("REDIS_URL", "http://x")], "REDIS_URL"),
        (&[URL, ("REDIS_DB", "-1")], "REDIS_DB"),
        (
            &[("REDIS_CLUSTER_NODES", "a:1"), ("REDIS_DB", "1")],
            "REDIS_DB",
        ),
        (
            &[URL, ("REDIS_RESPONSE_TIMEOUT", "fast")],
            "REDIS_RESPONSE_TIMEOUT",
        ),
        (
            &[URL, ("REDIS_RESPONSE_TIMEOUT", "0")],
            "REDIS_RESPONSE_TIMEOUT",
        ),
        (&[URL, ("REDIS_POOL_MAX_OPEN", "0")], "REDIS_POOL_MAX_OPEN"),
        (
            &[
                URL,
                ("REDIS_POOL_MAX_OPEN", "2"),
                ("REDIS_POOL_MAX_IDLE", "3"),
            ],
            "REDIS_POOL_MAX_IDLE",
        ),
        (
            &[URL, ("REDIS_SHARED_CONNECTIONS", "0")],
            "REDIS_SHARED_CONNECTIONS",
        ),
        (
            &[URL, ("REDIS_READ_FROM_REPLICAS", "maybe")],
            "REDIS_READ_FROM_REPLICAS",
        ),
        (
            &[URL, ("REDIS_RETRY_BASE_DELAY", "1s")],
            "REDIS_RETRY_BASE_DELAY",
        ),
        (&[URL, ("CACHE_KEY_PREFIX", "a*")], "CACHE_KEY_PREFIX"),
    ];
    for (pairs, setting) in cases {
        let err = RedisConfig::from_lookup(Profile::Production, env(pairs)).unwrap_err();
        assert!(
            matches!(&err, Error::Config { setting: s, .. } if s == setting),
            "{pairs:?}: {err}"
        );
    }
}

#[test]
fn debug_never_prints_a_password() {
    let server = RedisConfig::new(
        Profile::Production,
        RedisEndpoint::server("rediss://app:s3cr3t@cache.example:6380/0"),
    );
    let cluster = server
        .clone()
        .with_cluster_nodes(["redis://:t0ps3cr3t@10.0.0.1:7000", "10.0.0.2:7000"]);
    for (config, secret, shown) in [
        (&server, "s3cr3t", "rediss://app:***@cache.example:6380/0"),
        (&cluster, "t0ps3cr3t", "redis://:***@10.0.0.1:7000"),
    ] {
        for text in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(!text.contains(secret), "password leaked: {text}");
            assert!(text.contains(shown), "{text}");
        }
    }
    assert!(format!("{cluster:?}").contains("redis://10.0.0.2:7000"));
}
