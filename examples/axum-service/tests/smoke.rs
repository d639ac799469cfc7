//! Smoke test of the example service, on the in-memory backend and on a spawned redis-server: the
//! bearer-token API (login, session reads and merges, logout everywhere), the cookie pages (login
//! form, reload counter, logout), cache-aside trend data, health, the Prometheus scrape, and failing
//! closed when Redis dies.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum_service::{app, AppState};
use cachekit::Config;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use test_redis::RedisServer;
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn set_cookie(&self) -> Option<cookie::Cookie<'static>> {
        self.headers
            .get(header::SET_COOKIE)
            .map(|v| cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
    }
}

async fn send(router: &axum::Router, req: Request<Body>) -> Reply {
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .expect("infallible router");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

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
    let reply = send(router, req).await;
    (reply.status, reply.json())
}

/// A browser's request: the session cookie if it has one, a form body for posts.
async fn page(
    router: &axum::Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: &str,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("__Host-session={c}"));
    }
    if !form.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    send(
        router,
        req.body(Body::from(form.to_owned())).expect("request"),
    )
    .await
}

async fn api_scenario(router: &axum::Router) {
    let (status, login) = call(
        router,
        "POST",
        "/api/login",
        None,
        Some(json!({"user_id": "42"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let token = login["token"].as_str().expect("token").to_string();
    let (_, other) = call(
        router,
        "POST",
        "/api/login",
        None,
        Some(json!({"user_id": "42"})),
    )
    .await;
    let other = other["token"].as_str().expect("token").to_string();

    let (status, me) = call(router, "GET", "/api/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user_id"], "42");
    assert!(me["data"]["logged_in_at"].is_u64());

    let (status, prefs) = call(
        router,
        "POST",
        "/api/me/prefs",
        Some(&token),
        Some(json!({"theme": "dark"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(prefs["data"]["theme"], "dark");
    let (_, me) = call(router, "GET", "/api/me", Some(&token), None).await;
    assert_eq!(me["data"]["theme"], "dark", "the merge was stored");

    // A malformed token and no token are both "no session" (401), never a 500.
    let (status, _) = call(router, "GET", "/api/me", Some("not*a*token"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(router, "GET", "/api/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Log out everywhere: both of the user's sessions end.
    let (status, out) = call(router, "POST", "/api/logout-everywhere", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(out["revoked"], 2);
    for t in [&token, &other] {
        let (status, _) = call(router, "GET", "/api/me", Some(t), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    let (_, again) = call(
        router,
        "POST",
        "/api/login",
        None,
        Some(json!({"user_id": "7"})),
    )
    .await;
    let again = again["token"].as_str().expect("token").to_string();
    let (status, _) = call(router, "POST", "/api/logout", Some(&again), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(router, "GET", "/api/me", Some(&again), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn page_scenario(router: &axum::Router) {
    let form = page(router, "GET", "/", None, "").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text.contains("id=\"username\""), "{}", form.text);
    assert!(form.set_cookie().is_none());

    let bad = page(router, "POST", "/login", None, "username=+").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let login = page(router, "POST", "/login", None, "username=ada%3Cb%3E").await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert_eq!(login.headers[header::LOCATION], "/");
    let cookie = login.set_cookie().expect("the login sets the cookie");
    assert_eq!(cookie.name(), "__Host-session");
    assert_eq!(cookie.http_only(), Some(true));
    let token = cookie.value().to_owned();

    for n in 1..=2 {
        let home = page(router, "GET", "/", Some(&token), "").await;
        assert_eq!(home.status, StatusCode::OK);
        assert!(
            home.text.contains(&format!("<dd id=\"visits\">{n}</dd>")),
            "{}",
            home.text
        );
        assert!(home.text.contains("ada&lt;b&gt;"), "user names are escaped");
        assert_eq!(home.headers[header::CACHE_CONTROL], "no-store");
    }

    // The API's bearer layer does not accept the browser's cookie, and the pages ignore bearer tokens.
    let (status, _) = call(router, "GET", "/api/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let out = page(router, "POST", "/logout", Some(&token), "").await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.set_cookie().expect("cleared").value(), "");
    let home = page(router, "GET", "/", Some(&token), "").await;
    assert!(home.text.contains("id=\"username\""));
    assert_eq!(
        home.set_cookie()
            .expect("the dead cookie is cleared")
            .value(),
        ""
    );
}

async fn scenario(config: Config) {
    let state = AppState::new(&config).await.expect("state");
    let db_queries = state.db_queries.clone();
    let router = app(state);

    api_scenario(&router).await;
    page_scenario(&router).await;

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

/// `/metrics` is a Prometheus text exposition with the cache's and the session layer's counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_in_prometheus_format() {
    let state = AppState::new(&Config::builder().memory().build().unwrap())
        .await
        .expect("state");
    let router = app(state);
    call(
        &router,
        "POST",
        "/api/login",
        None,
        Some(json!({"user_id": "m"})),
    )
    .await;
    call(&router, "GET", "/trends/metrics", None, None).await;
    call(&router, "GET", "/trends/metrics", None, None).await;

    let reply = send(
        &router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = reply.text;
    // Every sample line is `name{labels} value`, and the families are typed.
    let mut samples = std::collections::HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').expect("name value");
        let value: f64 = value.parse().expect("a number");
        samples.insert(name.to_owned(), value);
    }
    assert!(
        text.contains("# TYPE session_layer_logins_total counter"),
        "{text}"
    );
    assert!(samples["session_layer_logins_total"] >= 1.0, "{text}");
    assert!(text.contains("# TYPE cache_hits_total counter"), "{text}");
    assert!(
        samples["cache_hits_total{family=\"keyword_trends\"}"] >= 1.0,
        "{text}"
    );
    assert!(samples["cache_loads_total{family=\"keyword_trends\"}"] >= 1.0);
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
        "/api/login",
        None,
        Some(json!({"user_id": "1"})),
    )
    .await;
    let token = login["token"].as_str().expect("token").to_string();
    let browser = page(&router, "POST", "/login", None, "username=1").await;
    let cookie = browser.set_cookie().expect("cookie").value().to_owned();
    server.kill();
    let (status, body) = call(&router, "GET", "/api/me", Some(&token), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // The page does not fall back to the login form (that would be "logged out"): it is a 503, and
    // the browser keeps its cookie.
    let home = page(&router, "GET", "/", Some(&cookie), "").await;
    assert_eq!(home.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(home.set_cookie().is_none());
    let (status, _) = call(&router, "GET", "/health", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
