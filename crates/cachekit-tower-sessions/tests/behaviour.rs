//! `CachekitStore` behind tower-sessions' own `SessionManagerLayer`, in an axum app served on a
//! loopback socket and driven by real HTTP requests with cookies, on the in-memory store and on a
//! real `redis-server`.
//!
//! The first group is the behaviour suite tower-sessions runs against its bundled stores (its
//! `tests/common` route tests, rewritten here: the same routes and the same assertions, with wider
//! time tolerances). The second group checks what this store promises beyond it: ids hashed at
//! rest, TTLs that follow the record's expiry, and no resurrection by a late save.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use cache_core::{KeyTtl, ScanCursor, Store};
use cachekit_tower_sessions::{CachekitStore, KEY_PREFIX};
use cookie::{Cookie, SameSite};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use test_redis::RedisServer;
use time::{Duration, OffsetDateTime};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The store under test and whatever keeps it alive.
struct Backend {
    store: Arc<dyn Store>,
    _server: Option<RedisServer>,
}

async fn memory() -> Backend {
    Backend {
        store: Arc::new(cache_memory::MemoryStore::default()),
        _server: None,
    }
}

async fn redis() -> Backend {
    let server = RedisServer::start();
    let config = cache_core::Config::builder()
        .redis_url(server.url())
        .key_prefix("tower")
        .build()
        .unwrap();
    let store =
        cache_redis::RedisStore::connect(&cache_redis::RedisConfig::from_core(&config).unwrap())
            .await
            .unwrap();
    Backend {
        store: Arc::new(store),
        _server: Some(server),
    }
}

/// The routes of tower-sessions' behaviour suite, plus two used by the extra checks.
fn routes(gate: Arc<tokio::sync::Barrier>) -> Router {
    Router::new()
        .route("/", get(|_: Session| async move { "Hello, world!" }))
        .route(
            "/insert",
            get(|session: Session| async move {
                session.insert("foo", 42).await.unwrap();
            }),
        )
        .route(
            "/get",
            get(|session: Session| async move {
                format!("{}", session.get::<usize>("foo").await.unwrap().unwrap())
            }),
        )
        .route(
            "/get_value",
            get(|session: Session| async move {
                format!("{:?}", session.get_value("foo").await.unwrap())
            }),
        )
        .route(
            "/remove",
            get(|session: Session| async move {
                session.remove::<usize>("foo").await.unwrap();
            }),
        )
        .route(
            "/remove_value",
            get(|session: Session| async move {
                session.remove_value("foo").await.unwrap();
            }),
        )
        .route(
            "/cycle_id",
            get(|session: Session| async move {
                session.cycle_id().await.unwrap();
            }),
        )
        .route(
            "/flush",
            get(|session: Session| async move {
                session.flush().await.unwrap();
            }),
        )
        .route(
            "/set_expiry",
            get(|session: Session| async move {
                let expiry = Expiry::AtDateTime(OffsetDateTime::now_utc() + Duration::days(1));
                session.set_expiry(Some(expiry));
            }),
        )
        .route(
            "/remove_expiry",
            get(|session: Session| async move {
                session.set_expiry(Some(Expiry::OnSessionEnd));
            }),
        )
        .route(
            "/late_insert",
            get(
                |State(gate): State<Arc<tokio::sync::Barrier>>, session: Session| async move {
                    // Loaded; the test deletes the session meanwhile; then this request writes.
                    session.get::<usize>("foo").await.unwrap();
                    gate.wait().await;
                    gate.wait().await;
                    session.insert("late", 1).await.unwrap();
                },
            ),
        )
        .with_state(gate)
}

/// An app on a loopback port and a plain HTTP client for it.
struct App {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    gate: Arc<tokio::sync::Barrier>,
    store: Arc<dyn Store>,
    _server: tokio::task::JoinHandle<()>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn session_cookie(&self) -> Cookie<'static> {
        let value = self
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .next()
            .expect("a Set-Cookie header")
            .to_str()
            .unwrap()
            .to_owned();
        Cookie::parse_encoded(value).unwrap()
    }

    fn has_cookie(&self) -> bool {
        self.headers.get(header::SET_COOKIE).is_some()
    }
}

impl App {
    async fn start(backend: &Backend, max_age: Option<Duration>, domain: Option<String>) -> App {
        let mut layer = SessionManagerLayer::new(CachekitStore::new(Arc::clone(&backend.store)))
            .with_secure(true);
        if let Some(max_age) = max_age {
            layer = layer.with_expiry(Expiry::OnInactivity(max_age));
        }
        if let Some(domain) = domain {
            layer = layer.with_domain(domain);
        }
        let gate = Arc::new(tokio::sync::Barrier::new(2));
        let app = routes(Arc::clone(&gate)).layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        App {
            base: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
            gate,
            store: Arc::clone(&backend.store),
            _server: server,
        }
    }

    async fn get(&self, path: &str, cookie: Option<&Cookie<'_>>) -> Reply {
        let mut req = Request::get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c.encoded().to_string());
        }
        let res = self
            .client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Every key the store holds (relative to its prefix).
    async fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut cursor = ScanCursor::start();
        loop {
            let page = self.store.scan("*", cursor, 100).await.unwrap();
            keys.extend(page.keys);
            match page.next {
                Some(next) => cursor = next,
                None => return keys,
            }
        }
    }
}

/// `actual` is `expected` give or take a minute (the suite upstream allows one second; a loaded CI
/// machine gets more room, and an hour against a day is still told apart).
fn roughly(actual: Duration, expected: Duration) -> bool {
    (actual - expected).abs() <= Duration::minutes(1)
}

macro_rules! behaviour_tests {
    ($backend:expr) => {
        use super::*;

        // ---- tower-sessions' behaviour suite ----

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn no_session_set() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let res = app.get("/", None).await;
            assert!(!res.has_cookie());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn bogus_session_cookie() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let bogus = Cookie::new("id", "AAAAAAAAAAAAAAAAAAAAAA");
            let res = app.get("/insert", Some(&bogus)).await;
            assert_eq!(res.status, StatusCode::OK);
            assert_ne!(res.session_cookie().value(), "AAAAAAAAAAAAAAAAAAAAAA");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn malformed_session_cookie() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let res = app.get("/", Some(&Cookie::new("id", "malformed"))).await;
            assert_eq!(res.status, StatusCode::OK);
            assert_ne!(res.session_cookie().value(), "malformed");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn insert_session() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            assert_eq!(cookie.name(), "id");
            assert_eq!(cookie.http_only(), Some(true));
            assert_eq!(cookie.same_site(), Some(SameSite::Strict));
            assert!(cookie.max_age().is_some_and(|d| d <= Duration::hours(1)));
            assert_eq!(cookie.secure(), Some(true));
            assert_eq!(cookie.path(), Some("/"));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn session_max_age() {
            let b = $backend.await;
            let app = App::start(&b, None, None).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            assert_eq!(cookie.name(), "id");
            assert_eq!(cookie.http_only(), Some(true));
            assert_eq!(cookie.same_site(), Some(SameSite::Strict));
            assert!(cookie.max_age().is_none());
            assert_eq!(cookie.secure(), Some(true));
            assert_eq!(cookie.path(), Some("/"));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn get_session() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            let res = app.get("/get", Some(&cookie)).await;
            assert_eq!(res.status, StatusCode::OK);
            assert_eq!(res.body, "42");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn get_no_value() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            assert_eq!(app.get("/get_value", None).await.body, "None");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn remove_last_value() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            app.get("/remove_value", Some(&cookie)).await;
            assert_eq!(app.get("/get_value", Some(&cookie)).await.body, "None");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn cycle_session_id() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let first = app.get("/insert", None).await.session_cookie();
            let second = app.get("/cycle_id", Some(&first)).await.session_cookie();
            let res = app.get("/get", Some(&second)).await;
            assert_ne!(first.value(), second.value());
            assert_eq!(res.body, "42");
            // Beyond the upstream suite: the old id is dead.
            assert_eq!(app.get("/get_value", Some(&first)).await.body, "None");
            assert_eq!(app.keys().await.len(), 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn flush_session() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            let cleared = app.get("/flush", Some(&cookie)).await.session_cookie();
            assert_eq!(cleared.value(), "");
            assert_eq!(cleared.max_age(), Some(Duration::ZERO));
            assert_eq!(cleared.path(), Some("/"));
            assert!(app.keys().await.is_empty(), "the record is gone");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn flush_with_domain() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), Some("localhost".into())).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            let cleared = app.get("/flush", Some(&cookie)).await.session_cookie();
            assert_eq!(cleared.value(), "");
            assert_eq!(cleared.max_age(), Some(Duration::ZERO));
            assert_eq!(cleared.domain(), Some("localhost"));
            assert_eq!(cleared.path(), Some("/"));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn set_expiry() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), Some("localhost".into())).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            assert!(roughly(cookie.max_age().unwrap(), Duration::hours(1)));
            let cookie = app.get("/set_expiry", Some(&cookie)).await.session_cookie();
            assert!(roughly(cookie.max_age().unwrap(), Duration::days(1)));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn change_expiry_type() {
            let b = $backend.await;
            let app = App::start(&b, None, Some("localhost".into())).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            assert_eq!(cookie.max_age(), None);
            let cookie = app.get("/set_expiry", Some(&cookie)).await.session_cookie();
            assert!(roughly(
                cookie.max_age().expect("a Max-Age"),
                Duration::days(1)
            ));

            let app2 = App::start(&b, Some(Duration::hours(1)), Some("localhost".into())).await;
            let cookie = app2.get("/insert", None).await.session_cookie();
            assert!(roughly(cookie.max_age().unwrap(), Duration::hours(1)));
            let cookie = app2
                .get("/remove_expiry", Some(&cookie))
                .await
                .session_cookie();
            assert_eq!(cookie.max_age(), None);
        }

        // ---- what this store adds ----

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ids_are_hashed_at_rest() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            let keys = app.keys().await;
            assert_eq!(keys.len(), 1);
            let key = &keys[0];
            let hash = key.strip_prefix(KEY_PREFIX).expect("our key family");
            assert_eq!(hash.len(), 64);
            assert!(hash.bytes().all(|c| c.is_ascii_hexdigit()));
            assert!(!key.contains(cookie.value()));
            let value = app.store.get(key).await.unwrap().unwrap();
            let value = String::from_utf8_lossy(&value);
            assert!(
                !value.contains(cookie.value()),
                "the id is not in the value: {value}"
            );
            assert!(value.contains("42"));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_ttl_follows_the_record_expiry() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            let key = app.keys().await.remove(0);
            let hour = StdDuration::from_secs(3600);
            let ttl = app.store.ttl(&key).await.unwrap().remaining().unwrap();
            assert!(
                ttl <= hour && ttl > hour - StdDuration::from_secs(60),
                "{ttl:?}"
            );
            app.get("/set_expiry", Some(&cookie)).await;
            let day = StdDuration::from_secs(24 * 3600);
            let ttl = app.store.ttl(&key).await.unwrap().remaining().unwrap();
            assert!(
                ttl <= day && ttl > day - StdDuration::from_secs(60),
                "{ttl:?}"
            );

            let no_expiry = App::start(&b, None, None).await;
            no_expiry.get("/insert", None).await;
            // tower-sessions' default for a session-end cookie: two weeks in the store.
            let fortnight = StdDuration::from_secs(14 * 24 * 3600);
            let mut ttls = Vec::new();
            for key in no_expiry.keys().await {
                ttls.push(no_expiry.store.ttl(&key).await.unwrap());
            }
            assert!(ttls.iter().all(|t| matches!(t, KeyTtl::ExpiresIn(_))));
            assert!(ttls
                .iter()
                .any(|t| t.remaining().unwrap() > day && t.remaining().unwrap() <= fortnight));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_late_save_does_not_resurrect_a_flushed_session() {
            let b = $backend.await;
            let app = App::start(&b, Some(Duration::hours(1)), None).await;
            let cookie = app.get("/insert", None).await.session_cookie();
            let late = app.get("/late_insert", Some(&cookie));
            let flush = async {
                app.gate.wait().await;
                let res = app.get("/flush", Some(&cookie)).await;
                assert_eq!(res.session_cookie().value(), "");
                app.gate.wait().await;
            };
            let (res, ()) = tokio::join!(late, flush);
            assert_eq!(res.status, StatusCode::OK);
            assert!(app.keys().await.is_empty(), "the late save wrote nothing");
            assert_eq!(app.get("/get_value", Some(&cookie)).await.body, "None");
        }
    };
}

mod memory_store {
    behaviour_tests!(memory());
}

mod redis_store {
    behaviour_tests!(redis());
}
