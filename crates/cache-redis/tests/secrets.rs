//! No password in any output: every configuration, builder and store built from URLs with passwords
//! (`REDIS_URL`, `REDIS_CLUSTER_NODES`, the builder methods), formatted with `{:?}` / `{:#?}` /
//! `{}` and serialized to JSON where it can be, and every error a wrong or malformed URL produces,
//! on a real password-protected server and a real password-protected cluster.

mod common;

use cache_core::health;
use cache_core::{Profile, Store};
use cache_redis::{RedisConfig, RedisEndpoint, RedisStore};
use test_redis::{RedisCluster, RedisServer};

/// A password no other text of the output could contain by chance.
const PW: &str = "pw-Zq9x-s3cret";
/// A wrong password, which must not be echoed either.
const WRONG: &str = "wrong-Kd7v-pw";

#[track_caller]
fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(PW) && !text.contains(WRONG),
        "{what} shows a password: {text}"
    );
}

/// Every way a value is printed.
#[track_caller]
fn assert_debug_clean(what: &str, value: &impl std::fmt::Debug) {
    assert_clean(what, &format!("{value:?}"));
    assert_clean(what, &format!("{value:#?}"));
}

fn lookup<'a>(vars: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }
}

#[test]
fn configs_and_builders_from_every_source_never_show_the_password() {
    let urls = [
        format!("redis://app:{PW}@127.0.0.1:6379/0"),
        format!("rediss://:{PW}@cache.internal:6380"),
        format!("redis://{PW}@127.0.0.1:6379"),
        format!("redis://app:p@{PW}@127.0.0.1:6379"),
        format!("redis+unix:///run/redis.sock?db=1&pass={PW}"),
        format!("unix:///run/redis.sock?user=app&pass={PW}"),
    ];
    for url in &urls {
        let from_env =
            RedisConfig::from_lookup(Profile::Production, lookup(&[("REDIS_URL", url.clone())]))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_debug_clean("RedisConfig from REDIS_URL", &from_env);
        assert_debug_clean("RedisEndpoint", &from_env.endpoint);
        let built = RedisConfig::new(Profile::Production, RedisEndpoint::server("redis://h:1"))
            .with_url(url.clone());
        assert_debug_clean("RedisConfig::with_url", &built);
        assert_debug_clean("RedisStoreBuilder", &RedisStore::builder(&built));
        assert_debug_clean(
            "RedisStoreBuilder (lazy)",
            &RedisStore::builder(&built).with_lazy_connect(),
        );
    }
    let nodes = [
        format!("redis://:{PW}@10.0.0.1:7000,redis://:{PW}@10.0.0.2:7000"),
        format!("app:{PW}@10.0.0.1:7000,app:{PW}@10.0.0.2:7000"),
    ];
    for list in &nodes {
        let from_env = RedisConfig::from_lookup(
            Profile::Production,
            lookup(&[("REDIS_CLUSTER_NODES", list.clone())]),
        )
        .unwrap_or_else(|e| panic!("{list}: {e}"));
        assert_debug_clean("RedisConfig from REDIS_CLUSTER_NODES", &from_env);
        let built = RedisConfig::new(Profile::Production, RedisEndpoint::server("redis://h:1"))
            .with_cluster_nodes(list.split(','));
        assert_debug_clean("RedisConfig::with_cluster_nodes", &built);
        assert_debug_clean("RedisStoreBuilder (cluster)", &RedisStore::builder(&built));
    }
    // Sentinel: passwords in the sentinel URLs, the sentinels' own and the data nodes'.
    let sentinel_env = [
        (
            "REDIS_SENTINEL_NODES",
            format!("redis://:{PW}@10.0.0.1:26379,10.0.0.2:26379"),
        ),
        ("REDIS_SENTINEL_SERVICE", "cache".to_owned()),
        ("REDIS_SENTINEL_PASSWORD", PW.to_owned()),
        ("REDIS_PASSWORD", WRONG.to_owned()),
    ];
    let from_env = RedisConfig::from_lookup(Profile::Production, lookup(&sentinel_env)).unwrap();
    assert!(from_env.endpoint.is_sentinel());
    assert_debug_clean("RedisConfig from REDIS_SENTINEL_*", &from_env);
    assert_debug_clean("RedisEndpoint::Sentinel", &from_env.endpoint);
    assert_debug_clean(
        "RedisStoreBuilder (sentinel)",
        &RedisStore::builder(&from_env),
    );
}

#[tokio::test]
async fn errors_of_malformed_urls_never_show_the_password() {
    let bad_urls = [
        // No scheme: a common slip when copying a host and a password.
        format!(":{PW}@localhost:6379"),
        format!("app:{PW}@localhost:6379"),
        format!("http://app:{PW}@localhost:6379"),
        // A scheme, but no valid port.
        format!("redis://app:{PW}@localhost:notaport"),
        format!("redis://app:{PW}@[::1"),
        // A password with characters that end a URL's authority, unencoded.
        format!("redis://app:p/w?{PW}@127.0.0.1:6379"),
        format!("redis://app:{PW}#x@127.0.0.1:6379"),
    ];
    for url in &bad_urls {
        let by_env =
            RedisConfig::from_lookup(Profile::Production, lookup(&[("REDIS_URL", url.clone())]));
        if let Err(e) = &by_env {
            assert_clean("REDIS_URL error", &e.to_string());
            assert_debug_clean("REDIS_URL error", e);
        }
        let config = RedisConfig::new(Profile::Production, RedisEndpoint::server(url.clone()));
        let e = RedisStore::builder(&config)
            .with_lazy_connect()
            .connect()
            .await
            .expect_err(url);
        assert_clean("connect error", &e.to_string());
        assert_debug_clean("connect error", &e);
    }
    let bad_nodes = [
        format!("redis://app:{PW}@10.0.0.1:notaport"),
        format!("redis://:{PW}@10.0.0.1:7000,rediss://:{PW}@10.0.0.2:7000"),
    ];
    for list in &bad_nodes {
        let config = RedisConfig::new(Profile::Production, RedisEndpoint::server("redis://h:1"))
            .with_cluster_nodes(list.split(','));
        let e = RedisStore::builder(&config)
            .with_lazy_connect()
            .connect()
            .await
            .expect_err(list);
        assert_clean("cluster connect error", &e.to_string());
        assert_debug_clean("cluster connect error", &e);
    }
}

#[tokio::test]
async fn a_store_on_a_password_protected_server_never_shows_the_password() {
    let server = RedisServer::builder().password(PW).start();
    assert!(server.url().contains(PW), "the test must use the password");
    let store = RedisStore::connect(&common::config(&server.url()))
        .await
        .unwrap();
    assert_debug_clean("RedisStore", &store);
    assert_clean("target", store.target());
    let stats = store.stats().await.unwrap();
    assert_clean("stats", &serde_json::to_string(&stats).unwrap());
    assert_debug_clean("stats", &stats);
    let json = serde_json::to_string(&store.connectivity().await).unwrap();
    assert_clean("connectivity", &json);
    assert_clean(
        "readiness",
        &serde_json::to_string(&health::readiness(&store).await).unwrap(),
    );

    // A wrong password, from the builder and from REDIS_URL: the error says what is wrong, not
    // which password was tried.
    let wrong = format!("redis://:{WRONG}@{}", server.addr());
    let e = RedisStore::connect(&common::config(&wrong))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), cache_core::ErrorKind::Auth, "{e}");
    assert_clean("auth error", &e.to_string());
    assert_debug_clean("auth error", &e);
    let lazy = RedisStore::builder(&common::config(&wrong))
        .with_lazy_connect()
        .connect()
        .await
        .unwrap();
    let e = lazy.get("k").await.unwrap_err();
    assert_clean("auth error of a call", &e.to_string());
    assert_debug_clean("auth error of a call", &e);
    assert_clean(
        "connectivity of a refused store",
        &serde_json::to_string(&lazy.connectivity().await).unwrap(),
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_store_on_a_password_protected_cluster_never_shows_the_password() {
    let cluster = RedisCluster::builder()
        .primaries(3)
        .replicas_per_primary(0)
        .password(PW)
        .start();
    let seeds = cluster.seed_urls();
    assert!(seeds.iter().all(|u| u.contains(PW)), "{seeds:?}");
    let config = common::cluster_config(&cluster);
    assert_debug_clean("cluster RedisConfig", &config);
    let store = RedisStore::connect(&config).await.unwrap();
    assert_debug_clean("cluster RedisStore", &store);
    assert_clean("cluster target", store.target());
    let stats = store.stats().await.unwrap();
    assert_clean("cluster stats", &serde_json::to_string(&stats).unwrap());
    assert_debug_clean("cluster stats", &stats);
    let nodes = store.cluster_health().await.unwrap();
    assert_clean("cluster health", &serde_json::to_string(&nodes).unwrap());
    assert_debug_clean("cluster health", &nodes);
    assert_clean(
        "cluster readiness",
        &serde_json::to_string(&health::readiness(&store).await).unwrap(),
    );

    let wrong: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| format!("redis://:{WRONG}@{}", n.addr()))
        .collect();
    let config = RedisConfig::new(Profile::Production, RedisEndpoint::cluster(&wrong));
    let e = RedisStore::connect(&config).await.unwrap_err();
    assert_clean("cluster auth error", &e.to_string());
    assert_debug_clean("cluster auth error", &e);
    store.close().await.unwrap();
}
