//! Smoke test of the example service, on the in-memory backend and on a spawned redis-server:
//! login, session reads and updates, logout everywhere, cache-aside trend data, health.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum_service::{app, AppState};
use cachekit::Config;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use test_redis::RedisServer;
use tower::ServiceExt;

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .expect("infallible router");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn scenario(config: Config) {
    let state = AppState::new(&config).await.expect("state");
    let db_queries = state.db_queries.clone();
    let router = app(state);

    let (status, login) = call(
        &router,
        "POST",
        "/login",
        None,
        Some(json!({"user_id": "42"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let token = login["token"].as_str().expect("token").to_string();
    let (_, other) = call(
        &router,
        "POST",
        "/login",
        None,
        Some(json!({"user_id": "42"})),
    )
    .await;
    let other = other["token"].as_str().expect("token").to_string();

    let (status, me) = call(&router, "GET", "/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user_id"], "42");

    let (status, prefs) = call(
        &router,
        "POST",
        "/me/prefs",
        Some(&token),
        Some(json!({"theme": "dark"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(prefs["data"]["theme"], "dark");

    // A malformed token is a 400 before any store call; an unknown one is a 401.
    let (status, _) = call(&router, "GET", "/me", Some("not*a*token"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&router, "GET", "/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, out) = call(&router, "POST", "/logout-everywhere", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["revoked"], 1);
    let (status, _) = call(&router, "GET", "/me", Some(&other), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Cache-aside: 20 concurrent requests, one database query; later requests are hits.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            call(&router, "GET", "/trends/rust", None, None).await
        }));
    }
    for t in tasks {
        let (status, body) = t.await.expect("task");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["keyword"], "rust");
    }
    call(&router, "GET", "/trends/rust", None, None).await;
    assert_eq!(db_queries.load(Ordering::SeqCst), 1);

    let (status, health) = call(&router, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["healthy"], true);

    let (status, _) = call(&router, "POST", "/logout", Some(&token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&router, "GET", "/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_service_on_memory() {
    scenario(Config::builder().memory().build().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_service_on_redis() {
    let server = RedisServer::start();
    scenario(
        Config::builder()
            .redis_url(server.url())
            .key_prefix("example")
            .build()
            .unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_fail_closed_when_redis_dies() {
    let server = RedisServer::start();
    let config = Config::builder()
        .redis_url(server.url())
        .key_prefix("example")
        .build()
        .unwrap();
    let router = app(AppState::new(&config).await.expect("state"));
    let (_, login) = call(
        &router,
        "POST",
        "/login",
        None,
        Some(json!({"user_id": "1"})),
    )
    .await;
    let token = login["token"].as_str().expect("token").to_string();
    server.kill();
    let (status, body) = call(&router, "GET", "/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _) = call(&router, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
