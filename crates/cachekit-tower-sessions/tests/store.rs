//! The `SessionStore` contract called directly: collision-safe `create`, expiry by the record's date
//! on the in-memory store's (paused) clock, and store failures reported as errors on real Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use cache_core::Store;
use cachekit_tower_sessions::CachekitStore;
use serde_json::json;
use test_redis::RedisServer;
use time::{Duration, OffsetDateTime};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::{ExpiredDeletion, SessionStore};

fn record(id: Id, value: i64, ttl: Duration) -> Record {
    Record {
        id,
        data: HashMap::from([("v".to_string(), json!(value))]),
        expiry_date: OffsetDateTime::now_utc() + ttl,
    }
}

#[tokio::test]
async fn create_never_overwrites_and_draws_a_new_id() {
    let store = CachekitStore::new(Arc::new(cache_memory::MemoryStore::default()));
    let taken = Id::default();
    let mut first = record(taken, 1, Duration::hours(1));
    store.create(&mut first).await.unwrap();
    assert_eq!(first.id, taken, "a free id is kept");

    let mut second = record(taken, 2, Duration::hours(1));
    store.create(&mut second).await.unwrap();
    assert_ne!(second.id, taken, "a taken id is replaced");
    assert_eq!(store.load(&taken).await.unwrap().unwrap().data["v"], 1);
    assert_eq!(store.load(&second.id).await.unwrap().unwrap().data["v"], 2);
}

#[tokio::test]
async fn save_updates_a_live_session_and_never_creates_one() {
    let store = CachekitStore::new(Arc::new(cache_memory::MemoryStore::default()));
    let mut rec = record(Id::default(), 1, Duration::hours(1));
    store.create(&mut rec).await.unwrap();
    rec.data.insert("v".into(), json!(2));
    store.save(&rec).await.unwrap();
    assert_eq!(store.load(&rec.id).await.unwrap().unwrap().data["v"], 2);

    store.delete(&rec.id).await.unwrap();
    store.save(&rec).await.unwrap();
    assert!(
        store.load(&rec.id).await.unwrap().is_none(),
        "not resurrected"
    );
    let never = record(Id::default(), 3, Duration::hours(1));
    store.save(&never).await.unwrap();
    assert!(
        store.load(&never.id).await.unwrap().is_none(),
        "save is not create"
    );
}

/// The in-memory store runs on tokio's clock: the key's TTL (the record's expiry) is exact and
/// instant under a paused clock.
#[tokio::test(start_paused = true)]
async fn the_key_expires_with_the_record() {
    let store = CachekitStore::new(Arc::new(cache_memory::MemoryStore::default()));
    let mut rec = record(Id::default(), 1, Duration::hours(1));
    store.create(&mut rec).await.unwrap();
    tokio::time::advance(StdDuration::from_secs(59 * 60)).await;
    assert!(store.load(&rec.id).await.unwrap().is_some());
    tokio::time::advance(StdDuration::from_secs(2 * 60)).await;
    assert!(store.load(&rec.id).await.unwrap().is_none());
    store.delete_expired().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_an_error_never_no_session() {
    let server = RedisServer::start();
    let config = cache_core::Config::builder()
        .redis_url(server.url())
        .key_prefix("tower")
        .build()
        .unwrap();
    let redis: Arc<dyn Store> = Arc::new(
        cache_redis::RedisStore::connect(&cache_redis::RedisConfig::from_core(&config).unwrap())
            .await
            .unwrap(),
    );
    let store = CachekitStore::new(redis);
    let mut rec = record(Id::default(), 1, Duration::hours(1));
    store.create(&mut rec).await.unwrap();
    assert!(store.load(&rec.id).await.unwrap().is_some());
    server.kill();
    assert!(store.load(&rec.id).await.is_err());
    assert!(store.save(&rec).await.is_err());
    assert!(store.delete(&rec.id).await.is_err());
    let mut other = record(Id::default(), 2, Duration::hours(1));
    assert!(store.create(&mut other).await.is_err());
}
