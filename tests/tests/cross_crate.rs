//! The cache manager and the session manager together, through the facade, on real backends.

use std::collections::BTreeMap;

use cachekit::{
    Config, CreateOptions, DynStore, Profile, RedisConfig, RedisEndpoint, Store, StoreExt,
};
use serde_json::{json, Value};
use test_redis::RedisServer;

fn redis(server: &RedisServer, prefix: &str) -> Config {
    Config::redis(
        RedisConfig::new(Profile::Development, RedisEndpoint::server(server.url()))
            .with_key_prefix(prefix),
    )
}

/// A scripted sequence of cache and session operations; returns what a caller observes.
async fn script(store: DynStore, config: &Config) -> BTreeMap<&'static str, Value> {
    let mut seen = BTreeMap::new();
    let cache = cachekit::cache_manager(store.clone(), config).expect("cache");
    let sessions = cachekit::session_manager(store.clone(), config).expect("sessions");

    cache
        .user()
        .set("1", &json!({"n": 1}))
        .await
        .expect("cache");
    cache
        .keyword_posts()
        .set("k", &json!(["p1", "p2"]))
        .await
        .expect("cache");
    cache
        .keyword_trends()
        .set("k", &json!({"t": 0.5}))
        .await
        .expect("cache");
    seen.insert(
        "user",
        json!(cache.user().get::<Value>("1").await.expect("get")),
    );
    seen.insert(
        "invalidate_keyword",
        json!(cache.invalidate_keyword_data("k").await.expect("inv")),
    );
    seen.insert(
        "posts_after",
        json!(cache.keyword_posts().get::<Value>("k").await.expect("get")),
    );
    seen.insert(
        "bump",
        json!(cache.user().bump_version().await.expect("bump")),
    );
    seen.insert(
        "user_after_bump",
        json!(cache.user().get::<Value>("1").await.expect("get")),
    );

    let a = sessions
        .create("u", CreateOptions::new())
        .await
        .expect("create");
    let b = sessions
        .create("u", CreateOptions::new())
        .await
        .expect("create");
    let patch = json!({"x": 1}).as_object().cloned().unwrap_or_default();
    let updated = sessions
        .update(a.token.expose(), &patch)
        .await
        .expect("update")
        .expect("live");
    seen.insert(
        "updated_data",
        Value::Object(std::sync::Arc::unwrap_or_clone(updated.data)),
    );
    seen.insert(
        "listed",
        json!(sessions.list_user_sessions("u").await.expect("list").len()),
    );
    seen.insert(
        "deleted_b",
        json!(sessions.delete(b.token.expose()).await.expect("del")),
    );
    seen.insert(
        "b_after_delete",
        json!(sessions.get(b.token.expose()).await.expect("get").is_some()),
    );
    seen.insert(
        "late_update_of_b",
        json!(sessions
            .update(b.token.expose(), &patch)
            .await
            .expect("update")
            .is_some()),
    );
    seen.insert(
        "listed_after",
        json!(sessions.list_user_sessions("u").await.expect("list").len()),
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_redis_behave_the_same() {
    let server = RedisServer::start();
    let mem_cfg = Config::memory().with_key_prefix("diff");
    let redis_cfg = redis(&server, "diff");
    let on_memory = script(cachekit::connect(&mem_cfg).await.unwrap(), &mem_cfg).await;
    let on_redis = script(cachekit::connect(&redis_cfg).await.unwrap(), &redis_cfg).await;
    assert_eq!(on_memory, on_redis);
    // And the script observed what it should.
    assert_eq!(on_redis["invalidate_keyword"], 2);
    assert_eq!(on_redis["posts_after"], Value::Null);
    assert_eq!(on_redis["user_after_bump"], Value::Null);
    assert_eq!(on_redis["listed"], 2);
    assert_eq!(on_redis["late_update_of_b"], false);
    assert_eq!(on_redis["listed_after"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_share_one_redis_without_seeing_each_other() {
    let server = RedisServer::start();
    let (cfg_a, cfg_b) = (redis(&server, "svc-a"), redis(&server, "svc-b"));
    let a = cachekit::connect(&cfg_a).await.unwrap();
    let b = cachekit::connect(&cfg_b).await.unwrap();
    script(a.clone(), &cfg_a).await;
    script(b.clone(), &cfg_b).await;

    let keys_a = a.scan_all("*", 100).await.unwrap();
    let keys_b = b.scan_all("*", 100).await.unwrap();
    assert!(!keys_a.is_empty());
    // Same shape of data in both namespaces (session keys differ: they hash random tokens).
    assert_eq!(keys_a.len(), keys_b.len());
    assert!(keys_a.contains(&"user:1".to_string()) && keys_b.contains(&"user:1".to_string()));

    // Flushing service A leaves B's data and sessions intact.
    let flushed = a.flush_prefix().await.unwrap();
    assert_eq!(flushed as usize, keys_a.len());
    assert!(a.scan_all("*", 100).await.unwrap().is_empty());
    assert_eq!(b.scan_all("*", 100).await.unwrap(), keys_b);
    let sessions_b = cachekit::session_manager(b.clone(), &cfg_b).unwrap();
    assert_eq!(sessions_b.list_user_sessions("u").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_from_the_environment_reaches_redis() {
    let server = RedisServer::start();
    let url = server.url();
    let config = Config::from_lookup(|k| match k {
        "REDIS_URL" => Some(url.clone()),
        "CACHE_KEY_PREFIX" => Some("envtest".into()),
        "CACHE_TTL_USER" => Some("90s".into()),
        _ => None,
    })
    .unwrap();
    let store = cachekit::connect(&config).await.unwrap();
    assert_eq!(store.backend_name(), "redis");
    let cache = cachekit::cache_manager(store.clone(), &config).unwrap();
    cache.user().set("9", &json!(1)).await.unwrap();
    let ttl = store
        .ttl("user:9")
        .await
        .unwrap()
        .remaining()
        .expect("expires");
    assert!(ttl.as_secs() <= 90 && ttl.as_secs() > 80, "{ttl:?}");
    // The key really is under the prefix on the server.
    assert_eq!(server.cli(["EXISTS", "envtest:user:9"]).trim(), "1");
}
