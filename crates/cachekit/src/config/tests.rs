//! `Config`: one environment for every part, the profile picking every part's defaults, errors
//! that name the variable, and `Debug` output without passwords.

use std::time::Duration;

use super::*;
use crate::{ErrorKind, Family};

/// A lookup over fixed pairs, as the environment would answer.
fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

/// The setting an error names.
fn setting(err: Error) -> String {
    match err {
        Error::Config { setting, .. } => setting,
        other => panic!("not a configuration error: {other}"),
    }
}

#[test]
fn the_cache_and_session_settings_come_from_the_same_environment() {
    let c = Config::from_lookup(env(&[
        ("CACHE_TTL_USER", "2h"),
        ("CACHE_TTL_SESSION", "30m"),
        ("REDIS_SCAN_COUNT", "77"),
        ("CACHE_CALL_TIMEOUT", "750ms"),
        ("SESSION_CALL_TIMEOUT", "3s"),
    ]))
    .unwrap();
    assert_eq!(c.cache.ttl(Family::User), Duration::from_secs(7200));
    assert_eq!(c.cache.scan_count(), 77);
    assert_eq!(c.cache.call_timeout(), Duration::from_millis(750));
    assert_eq!(c.sessions.idle_timeout, Some(Duration::from_secs(30 * 60)));
    assert_eq!(c.sessions.call_timeout, Some(Duration::from_secs(3)));
}

#[test]
fn the_near_cache_settings_come_from_the_same_environment() {
    let c = Config::from_lookup(env(&[
        ("CACHE_NEAR_FAMILIES", "user, content=5000"),
        ("CACHE_NEAR_SESSIONS", "300"),
    ]))
    .unwrap();
    assert_eq!(
        c.cache.near_cache(Family::User),
        Some(crate::NearConfig::default())
    );
    assert_eq!(
        c.cache.near_cache(Family::Content).unwrap().max_entries,
        5000
    );
    assert_eq!(c.cache.near_families().count(), 2);
    assert_eq!(c.sessions.near_cache.unwrap().max_entries, 300);
    let c = Config::from_lookup(env(&[
        ("CACHE_NEAR_FAMILIES", " "),
        ("CACHE_NEAR_SESSIONS", "off"),
    ]))
    .unwrap();
    assert_eq!(c.cache.near_families().count(), 0);
    assert_eq!(c.sessions.near_cache, None);
}

#[test]
fn bad_cache_or_session_settings_name_the_variable() {
    for (pairs, name) in [
        (&[("CACHE_PROFILE", "qa")][..], "CACHE_PROFILE"),
        (&[("CACHE_BACKEND", "etcd")], "CACHE_BACKEND"),
        (&[("CACHE_TTL_USER", "0s")], "CACHE_TTL_USER"),
        (
            &[("CACHE_TTL_KEYWORD_POSTS", "soon")],
            "CACHE_TTL_KEYWORD_POSTS",
        ),
        (&[("CACHE_TTL_SESSION", "0")], "CACHE_TTL_SESSION"),
        (&[("CACHE_CALL_TIMEOUT", "0s")], "CACHE_CALL_TIMEOUT"),
        (&[("CACHE_CALL_TIMEOUT", "soon")], "CACHE_CALL_TIMEOUT"),
        (&[("SESSION_CALL_TIMEOUT", "0")], "SESSION_CALL_TIMEOUT"),
        (&[("REDIS_SCAN_COUNT", "0")], "REDIS_SCAN_COUNT"),
        (&[("REDIS_SCAN_COUNT", "many")], "REDIS_SCAN_COUNT"),
        (
            &[("CACHE_NEAR_FAMILIES", "sessions")],
            "CACHE_NEAR_FAMILIES",
        ),
        (
            &[("CACHE_NEAR_FAMILIES", "user=lots")],
            "CACHE_NEAR_FAMILIES",
        ),
        (&[("CACHE_NEAR_SESSIONS", "lots")], "CACHE_NEAR_SESSIONS"),
    ] {
        let err = Config::from_lookup(env(pairs)).unwrap_err();
        assert_eq!(setting(err), name, "{pairs:?}");
    }
}

#[test]
fn a_compiled_out_backend_names_its_feature() {
    let e = feature_off("redis", "REDIS_URL (a Redis server)");
    assert_eq!(e.kind(), ErrorKind::Config);
    let msg = e.to_string();
    assert!(msg.contains("CACHE_BACKEND"), "{msg}");
    assert!(msg.contains(r#"features = ["redis"]"#), "{msg}");
}

#[cfg(feature = "memory")]
mod memory {
    use super::*;
    use crate::MemoryConfig;

    #[test]
    fn nothing_set_is_the_development_memory_store() {
        let c = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(c, Config::memory());
        assert_eq!(c.profile(), Profile::Development);
        assert_eq!(c.key_prefix(), "dev");
        assert_eq!(c.backend.name(), "memory");
        assert_eq!(c.cache, CacheConfig::default());
        assert_eq!(c.sessions, SessionConfig::default());
    }

    #[test]
    fn the_profile_picks_the_memory_store_s_defaults() {
        let c = Config::from_lookup(env(&[("CACHE_PROFILE", "production")])).unwrap();
        assert_eq!(c, Config::new(MemoryConfig::new(Profile::Production)));
        assert_eq!(c.key_prefix(), "");
        let c = Config::from_lookup(env(&[
            ("CACHE_PROFILE", "staging"),
            ("CACHE_MAX_VALUE_BYTES", "1024"),
        ]))
        .unwrap();
        assert_eq!(
            c.backend,
            Backend::Memory(MemoryConfig::new(Profile::Staging).with_max_value_bytes(1024))
        );
    }

    #[test]
    fn cache_backend_memory_wins_over_redis_variables() {
        let c = Config::from_lookup(env(&[
            ("CACHE_BACKEND", "memory"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("CACHE_KEY_PREFIX", "svc"),
        ]))
        .unwrap();
        assert_eq!(c.backend.name(), "memory");
        assert_eq!(c.key_prefix(), "svc");
    }

    #[test]
    fn builder_methods_and_validation() {
        let c = Config::memory()
            .with_key_prefix("shop")
            .with_cache(CacheConfig::default().with_ttl(Family::Content, Duration::from_secs(5)))
            .with_sessions(SessionConfig::default().with_idle_timeout(Duration::from_secs(60)));
        c.validate().unwrap();
        assert_eq!(c.key_prefix(), "shop");
        assert_eq!(c.cache.ttl(Family::Content), Duration::from_secs(5));
        for (bad, name) in [
            (Config::memory().with_key_prefix("a*"), "CACHE_KEY_PREFIX"),
            (
                Config::memory()
                    .with_cache(CacheConfig::default().with_ttl(Family::User, Duration::ZERO)),
                "CACHE_TTL_USER",
            ),
            (
                Config::new(MemoryConfig::default().with_max_value_bytes(0)),
                "CACHE_MAX_VALUE_BYTES",
            ),
        ] {
            assert_eq!(setting(bad.validate().unwrap_err()), name);
        }
        for (pairs, name) in [
            (&[("CACHE_KEY_PREFIX", "a b")][..], "CACHE_KEY_PREFIX"),
            (&[("CACHE_MAX_VALUE_BYTES", "0")], "CACHE_MAX_VALUE_BYTES"),
        ] {
            let err = Config::from_lookup(env(pairs)).unwrap_err();
            assert_eq!(setting(err), name, "{pairs:?}");
        }
    }

    #[tokio::test]
    async fn connect_builds_the_configured_memory_store() {
        let store = crate::connect(&Config::memory().with_key_prefix("svc"))
            .await
            .unwrap();
        assert_eq!(store.prefix(), "svc");
        assert_eq!(store.backend_name(), "memory");
        let err = crate::connect(&Config::memory().with_key_prefix("a*"))
            .await
            .unwrap_err();
        assert_eq!(setting(err), "CACHE_KEY_PREFIX");
    }
}

#[cfg(any(feature = "redis", feature = "cluster"))]
mod redis {
    use super::*;
    use crate::RedisEndpoint;

    const URL: (&str, &str) = ("REDIS_URL", "redis://127.0.0.1:6380/1");

    #[test]
    fn redis_variables_select_redis_with_the_profile_s_defaults() {
        for (pairs, endpoint) in [
            (&[URL][..], RedisEndpoint::server(URL.1)),
            (
                &[URL, ("REDIS_CLUSTER_NODES", "a:1,b:2")],
                RedisEndpoint::cluster(["a:1", "b:2"]),
            ),
            (
                &[
                    URL,
                    ("REDIS_CLUSTER_NODES", "a:1"),
                    ("CACHE_BACKEND", "redis"),
                ],
                RedisEndpoint::server(URL.1),
            ),
        ] {
            let mut pairs = pairs.to_vec();
            pairs.push(("CACHE_PROFILE", "prod"));
            let c = Config::from_lookup(env(&pairs)).unwrap();
            assert_eq!(
                c.backend,
                Backend::Redis(RedisConfig::new(Profile::Production, endpoint)),
                "{pairs:?}"
            );
            assert_eq!(c.profile(), Profile::Production);
        }
        // Sentinel, when its nodes are set, wins over REDIS_URL (REDIS_CLUSTER_NODES over both).
        let c = Config::from_lookup(env(&[
            URL,
            ("REDIS_SENTINEL_NODES", "s1:26379,s2:26379"),
            ("REDIS_SENTINEL_SERVICE", "cache"),
        ]))
        .unwrap();
        assert!(c.backend.redis().unwrap().endpoint.is_sentinel(), "{c:?}");
        assert_eq!(c.backend.name(), "redis");
        let c = Config::from_lookup(env(&[URL, ("REDIS_POOL_MAX_OPEN", "8")])).unwrap();
        let redis = c.backend.redis().unwrap();
        assert_eq!(redis.profile, Profile::Development);
        assert_eq!(redis.key_prefix, "dev");
        assert_eq!(redis.pool.max_open, 8);
        assert_eq!(
            redis.response_timeout,
            Duration::from_secs(2),
            "development timeouts"
        );
    }

    #[test]
    fn bad_redis_settings_name_the_variable() {
        for (pairs, name) in [
            (&[("CACHE_BACKEND", "redis")][..], "REDIS_URL"),
            (&[("CACHE_BACKEND", "cluster"), URL], "REDIS_CLUSTER_NODES"),
            (&[("REDIS_URL", "http://x")], "REDIS_URL"),
            (
                &[URL, ("REDIS_RESPONSE_TIMEOUT", "fast")],
                "REDIS_RESPONSE_TIMEOUT",
            ),
            (&[URL, ("REDIS_POOL_MAX_OPEN", "0")], "REDIS_POOL_MAX_OPEN"),
            (&[URL, ("CACHE_KEY_PREFIX", "a*")], "CACHE_KEY_PREFIX"),
            (&[URL, ("CACHE_TTL_USER", "0s")], "CACHE_TTL_USER"),
        ] {
            let err = Config::from_lookup(env(pairs)).unwrap_err();
            assert_eq!(setting(err), name, "{pairs:?}");
        }
    }

    /// Near caches need one server: refused with a cluster or Sentinel, from the environment and
    /// in code alike, naming the variable.
    #[test]
    fn near_caches_are_refused_on_a_cluster_and_under_sentinel() {
        let sentinel = [
            ("REDIS_SENTINEL_NODES", "s1:26379"),
            ("REDIS_SENTINEL_SERVICE", "cache"),
        ];
        let cluster = [("REDIS_CLUSTER_NODES", "a:1,b:2")];
        for topology in [&sentinel[..], &cluster[..]] {
            for (near, value) in [
                ("CACHE_NEAR_FAMILIES", "content"),
                ("CACHE_NEAR_SESSIONS", "on"),
            ] {
                let mut pairs = topology.to_vec();
                pairs.push((near, value));
                let err = Config::from_lookup(env(&pairs)).unwrap_err();
                let message = err.to_string();
                assert_eq!(setting(err), near, "{pairs:?}");
                let name = if topology == &cluster[..] {
                    "Redis Cluster"
                } else {
                    "Redis Sentinel"
                };
                assert!(message.contains(name), "{message}");
            }
            // Off is fine.
            let mut pairs = topology.to_vec();
            pairs.push(("CACHE_NEAR_SESSIONS", "off"));
            assert!(Config::from_lookup(env(&pairs)).is_ok());
        }
        // One server: allowed.
        let c = Config::from_lookup(env(&[
            URL,
            ("CACHE_NEAR_FAMILIES", "content"),
            ("CACHE_NEAR_SESSIONS", "on"),
        ]))
        .unwrap();
        assert!(c.validate().is_ok());
        // In code, `validate` (and so `connect`) says the same.
        let sentinel = RedisConfig::new(
            Profile::Production,
            RedisEndpoint::sentinel(["s1:26379"], "cache"),
        );
        let c = Config::redis(sentinel).with_sessions(
            crate::SessionConfig::default().with_near_cache(Some(crate::NearConfig::default())),
        );
        assert_eq!(setting(c.validate().unwrap_err()), "CACHE_NEAR_SESSIONS");
    }

    #[test]
    fn with_key_prefix_sets_the_redis_prefix() {
        let c = Config::redis(RedisConfig::new(
            Profile::Production,
            RedisEndpoint::server(URL.1),
        ))
        .with_key_prefix("shop");
        assert_eq!(c.backend.redis().unwrap().key_prefix, "shop");
        assert_eq!(c.key_prefix(), "shop");
        assert_eq!(c.backend.name(), "redis");
    }

    /// Every way a password reaches a configuration, and every way a configuration is printed.
    #[test]
    fn debug_never_prints_a_password() {
        let from_env = [
            Config::from_lookup(env(&[("REDIS_URL", "rediss://app:s3cr3t-url@h:6380/0")])).unwrap(),
            Config::from_lookup(env(&[(
                "REDIS_CLUSTER_NODES",
                "redis://:s3cr3t-node@10.0.0.1:7000,u:s3cr3t-bare@10.0.0.2:7000",
            )]))
            .unwrap(),
            Config::from_lookup(env(&[("REDIS_URL", "redis+unix:///r.sock?pass=s3cr3t-q")]))
                .unwrap(),
            Config::from_lookup(env(&[
                (
                    "REDIS_SENTINEL_NODES",
                    "redis://:s3cr3t-sn@s1:26379,s2:26379",
                ),
                ("REDIS_SENTINEL_SERVICE", "cache"),
                ("REDIS_SENTINEL_PASSWORD", "s3cr3t-sp"),
                ("REDIS_PASSWORD", "s3cr3t-dp"),
            ]))
            .unwrap(),
        ];
        let built = [
            Config::redis(RedisConfig::new(
                Profile::Production,
                RedisEndpoint::server("redis://user:s3cr3t-built@h:1"),
            )),
            Config::redis(
                RedisConfig::new(Profile::Production, RedisEndpoint::server(URL.1))
                    .with_cluster_nodes(["redis://:s3cr3t-with@n:1"]),
            ),
        ];
        for config in from_env.iter().chain(&built) {
            let shown = [
                format!("{config:?}"),
                format!("{config:#?}"),
                format!("{:?}", config.backend),
                format!("{:?}", config.backend.redis().unwrap()),
                format!("{:?}", config.backend.redis().unwrap().endpoint),
            ];
            for text in shown {
                assert!(!text.contains("s3cr3t"), "password leaked: {text}");
                assert!(text.contains("***"), "{text}");
            }
        }
        // Nor an error about the URL.
        let err = Config::from_lookup(env(&[("REDIS_URL", "http://u:s3cr3t@h")])).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[cfg(not(feature = "cluster"))]
    #[test]
    fn a_cluster_without_the_cluster_feature_names_it() {
        let err = Config::from_lookup(env(&[("REDIS_CLUSTER_NODES", "a:1")])).unwrap_err();
        assert!(
            err.to_string().contains(r#"features = ["cluster"]"#),
            "{err}"
        );
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn a_server_without_the_redis_feature_names_it() {
        let err = Config::from_lookup(env(&[URL])).unwrap_err();
        assert!(err.to_string().contains(r#"features = ["redis"]"#), "{err}");
    }
}

#[cfg(not(any(feature = "redis", feature = "cluster")))]
#[test]
fn redis_variables_without_a_redis_feature_are_a_clear_error() {
    let err = Config::from_lookup(env(&[("REDIS_URL", "redis://127.0.0.1:1")])).unwrap_err();
    assert!(err.to_string().contains(r#"features = ["redis"]"#), "{err}");
    let err = Config::from_lookup(env(&[("REDIS_CLUSTER_NODES", "a:1")])).unwrap_err();
    assert!(
        err.to_string().contains(r#"features = ["cluster"]"#),
        "{err}"
    );
}

#[cfg(not(feature = "memory"))]
#[test]
fn memory_without_its_feature_is_a_clear_error() {
    let err = Config::from_lookup(env(&[])).unwrap_err();
    assert!(
        err.to_string().contains(r#"features = ["memory"]"#),
        "{err}"
    );
}
