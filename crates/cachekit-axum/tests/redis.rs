//! The layer on a real `redis-server`: two service instances (two managers, two layers) share the
//! sessions, merge into them without losing each other's writes, and fail closed when Redis dies.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use cache_core::{KeySchema, Store};
use cachekit_axum::SessionLayer;
use common::{routes, Client, Gate};
use sessions::{SessionManager, SessionToken};
use test_redis::RedisServer;

async fn instance(server: &RedisServer, gate: Gate) -> (axum::Router, Arc<dyn Store>) {
    let config = cache_core::Config::builder()
        .redis_url(server.url())
        .key_prefix("web")
        .build()
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(
        cache_redis::RedisStore::connect(&cache_redis::RedisConfig::from_core(&config).unwrap())
            .await
            .unwrap(),
    );
    let manager = SessionManager::new(Arc::clone(&store));
    (routes(gate).layer(SessionLayer::new(manager)), store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_and_merge_writes() {
    let server = RedisServer::start();
    // Both instances' gated requests meet at the same barrier.
    let gate = Gate(Arc::new(tokio::sync::Barrier::new(2)));
    let (one, store) = instance(&server, gate.clone()).await;
    let (two, _) = instance(&server, gate).await;

    let mut a = Client::new(one);
    let token = a.send("POST", "/login/ada").await.body;
    let mut b = Client::new(two);
    b.jar = a.jar.clone();
    assert_eq!(
        b.send("GET", "/count").await.body,
        "1",
        "the other instance sees the session"
    );
    assert_eq!(a.send("GET", "/count").await.body, "2");

    let (ra, rb) = tokio::join!(
        a.send("POST", "/gated/left"),
        b.send("POST", "/gated/right")
    );
    assert_eq!((ra.status, rb.status), (StatusCode::OK, StatusCode::OK));
    let data = a.send("GET", "/me").await.json()["data"].clone();
    assert_eq!(
        (data["left"].clone(), data["right"].clone()),
        (true.into(), true.into())
    );

    // Only the hash of the token is in Redis.
    let handle = SessionToken::parse(&token).unwrap().handle().clone();
    let key = KeySchema::session(handle.as_str()).unwrap();
    assert!(store.exists(key.as_str()).await.unwrap());
    let dump = server.cli(["--scan", "--pattern", "*"]);
    assert!(!dump.contains(&token));

    assert_eq!(b.send("POST", "/logout").await.status, StatusCode::OK);
    assert_eq!(a.send("GET", "/me").await.status, StatusCode::UNAUTHORIZED);
    assert!(!store.exists(key.as_str()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_is_503_for_every_session_route() {
    let server = RedisServer::start();
    let (app, _) = instance(&server, Gate(Arc::new(tokio::sync::Barrier::new(2)))).await;
    let mut client = Client::new(app);
    client.send("POST", "/login/ada").await;
    server.kill();
    for (method, path) in [
        ("GET", "/me"),
        ("GET", "/maybe"),
        ("GET", "/count"),
        ("POST", "/login/bob"),
        ("POST", "/logout"),
        ("POST", "/logout-everywhere"),
    ] {
        let reply = client.send(method, path).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}"
        );
        assert!(
            reply.cookie().is_none(),
            "{method} {path}: the cookie is kept"
        );
    }
}
