//! Tenants with different key prefixes on one backend never reach each other's keys, including a
//! tenant whose name extends another's (`shop` and its scope `user`): issue 12, item 7. Before the
//! fix, `shop`'s `invalidate_matching(User, All)` (pattern `shop:user:*`) deleted the cached users,
//! session records and session index of the tenant `shop:user`, and `key_counts` counted them.

use cachekit::{
    Config, CreateOptions, ErrorKind, Family, KeyMatch, MemoryStore, Profile, RedisConfig,
    RedisEndpoint, RedisStore, Store, StoreExt,
};
use serde_json::{json, Value};
use test_redis::RedisServer;

/// The scenario of the issue: `shop` and `nested` (a tenant whose prefix starts with `shop`) each
/// cache user 1; `nested` also has a session (record and index). Every operation of one tenant that
/// works by pattern (scan, count, `invalidate_matching`, `flush_prefix`) leaves the other's keys
/// alone, in both directions.
async fn nested_tenants_stay_apart<S: Store + Clone + 'static>(
    shop: S,
    nested: S,
    config: &Config,
) {
    let what = format!("{:?} / {:?}", shop.prefix(), nested.prefix());
    let cache_shop = cachekit::cache_manager(shop.clone(), config).expect("cache manager");
    let cache_nested = cachekit::cache_manager(nested.clone(), config).expect("cache manager");
    let sessions_nested = cachekit::session_manager(nested.clone(), config).expect("sessions");

    cache_shop
        .user()
        .set("1", &json!({"tenant": "shop"}))
        .await
        .unwrap();
    cache_nested
        .user()
        .set("1", &json!({"tenant": "nested"}))
        .await
        .unwrap();
    let login = sessions_nested
        .create("u", CreateOptions::new())
        .await
        .unwrap();
    let nested_keys = nested.scan_all("*", 100).await.unwrap();
    assert_eq!(
        nested_keys.len(),
        3,
        "{what}: user, session, index: {nested_keys:?}"
    );

    // Scans and counts of `shop` see its own key only.
    assert_eq!(
        shop.scan_all("*", 100).await.unwrap(),
        vec!["user:1".to_owned()],
        "{what}: shop's scan"
    );
    let counts = cache_shop.key_counts().await.unwrap();
    assert_eq!(counts.get(&Family::User), Some(&1), "{what}: {counts:?}");
    assert_eq!(counts.values().sum::<u64>(), 1, "{what}: {counts:?}");

    // `invalidate_matching(User, All)` deletes shop's user, nothing of the other tenant.
    let deleted = cache_shop
        .family(Family::User)
        .invalidate_matching(KeyMatch::All)
        .await
        .unwrap();
    assert_eq!(
        deleted, 1,
        "{what}: invalidate_matching deleted {deleted} keys"
    );
    assert_eq!(
        cache_nested.user().get::<Value>("1").await.unwrap(),
        Some(json!({"tenant": "nested"})),
        "{what}: the other tenant's cached user"
    );
    assert!(
        sessions_nested
            .get(login.token.expose())
            .await
            .unwrap()
            .is_some(),
        "{what}: the other tenant's session"
    );
    assert_eq!(
        sessions_nested.list_user_sessions("u").await.unwrap().len(),
        1,
        "{what}: the other tenant's session index"
    );

    // `flush_prefix` of shop leaves the other tenant intact.
    cache_shop.user().set("2", &json!(2)).await.unwrap();
    assert_eq!(
        shop.flush_prefix().await.unwrap(),
        1,
        "{what}: shop's flush"
    );
    assert_eq!(
        nested.scan_all("*", 100).await.unwrap(),
        nested_keys,
        "{what}"
    );

    // And the other way round.
    cache_shop.user().set("3", &json!(3)).await.unwrap();
    let counts = cache_nested.key_counts().await.unwrap();
    assert_eq!(counts.get(&Family::User), Some(&1), "{what}: {counts:?}");
    assert_eq!(
        cache_nested
            .family(Family::User)
            .invalidate_matching(KeyMatch::All)
            .await
            .unwrap(),
        1,
        "{what}: the other tenant's invalidate_matching"
    );
    assert_eq!(
        nested.flush_prefix().await.unwrap(),
        2,
        "{what}: session and index"
    );
    assert_eq!(
        shop.scan_all("*", 100).await.unwrap(),
        vec!["user:3".to_owned()],
        "{what}: shop after the other's flush"
    );
    assert_eq!(shop.flush_prefix().await.unwrap(), 1);
}

#[tokio::test]
async fn nested_tenants_are_isolated_on_memory() {
    let config = Config::memory();
    // However a tenant whose name extends `shop` is written, either the store refuses the prefix or
    // the two tenants are isolated.
    for nested in [
        "shop:user",
        "shop.user",
        "shop-user",
        "shop_user",
        "shopuser",
    ] {
        let root = MemoryStore::new();
        let shop = root.with_prefix("shop").unwrap();
        match root.with_prefix(nested) {
            Ok(other) => nested_tenants_stay_apart(shop, other, &config).await,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Config, "{nested}: {e}");
                assert!(e.to_string().contains("CACHE_KEY_PREFIX"), "{e}");
            }
        }
    }
    // A ':' inside a prefix is what made tenants overlap: it is refused, naming the setting.
    let e = MemoryStore::new().with_prefix("shop:user").unwrap_err();
    assert!(e.to_string().contains("CACHE_KEY_PREFIX"), "{e}");
}

#[tokio::test]
async fn nested_tenants_are_isolated_on_redis() {
    let server = RedisServer::start();
    let redis = RedisConfig::new(Profile::Development, RedisEndpoint::server(server.url()))
        .with_key_prefix("shop");
    let config = Config::redis(redis.clone());
    let shop = RedisStore::connect(&redis).await.unwrap();
    // `scoped` is how a component gets a key space of its own inside a store's.
    let nested = shop.scoped("user").unwrap();
    nested_tenants_stay_apart(shop.clone(), nested.clone(), &config).await;
    assert!(!nested.prefix().contains(':'), "{:?}", nested.prefix());
    assert_eq!(server.cli(["DBSIZE"]).trim(), "0", "everything cleaned up");

    // A prefix with ':' is refused with an error naming the setting, from the environment too.
    let url = server.url();
    let e = Config::from_lookup(|k| match k {
        "REDIS_URL" => Some(url.clone()),
        "CACHE_KEY_PREFIX" => Some("shop:user".into()),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("CACHE_KEY_PREFIX"), "{e}");
    let e = RedisStore::connect(&redis.with_key_prefix("shop:user"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("CACHE_KEY_PREFIX"), "{e}");
}
