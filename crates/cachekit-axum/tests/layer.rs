//! The layer and extractors through real axum routing on the in-memory store: cookies and their
//! attributes, loading once, atomic write-back, login / rotation / logout, the per-user limit, and
//! failing closed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use cache_core::{KeySchema, SetOptions, Store};
use cache_memory::MemoryStore;
use cachekit_axum::{ConfigError, CookieConfig, SameSite, SessionError, SessionLayer, TokenSource};
use common::{routes, Client, Fail, Faulty, Gate};
use sessions::{SessionManager, SessionToken};

type Manager = SessionManager<Arc<Faulty<MemoryStore>>>;

fn setup() -> (Arc<Faulty<MemoryStore>>, Manager) {
    let store = Faulty::new(MemoryStore::default());
    let manager = SessionManager::new(Arc::clone(&store));
    (store, manager)
}

fn app(layer: SessionLayer) -> axum::Router {
    routes(Gate(Arc::new(tokio::sync::Barrier::new(2)))).layer(layer)
}

fn handle_key(token: &str) -> String {
    let token = SessionToken::parse(token).unwrap();
    KeySchema::session(token.handle().as_str())
        .unwrap()
        .into_string()
}

#[tokio::test]
async fn login_sets_a_locked_down_cookie_and_the_session_survives() {
    let (store, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager.clone())));

    let reply = client.send("POST", "/login/ada").await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.cookie().expect("login sets the cookie");
    assert_eq!(cookie.name(), "__Host-session");
    assert_eq!(
        cookie.value(),
        reply.body,
        "the cookie carries the new token"
    );
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Lax));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);
    assert_eq!(cookie.max_age(), Some(cookie::time::Duration::hours(1)));
    // The store holds the hash of the token, never the token.
    assert!(store.exists(&handle_key(cookie.value())).await.unwrap());

    for n in 1..=3 {
        let reply = client.send("GET", "/count").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, n.to_string());
        // Every read refreshes the cookie's Max-Age (the idle expiry slid in the store).
        let refreshed = reply.cookie().expect("refreshed");
        assert_eq!(refreshed.value(), cookie.value());
        assert_eq!(refreshed.max_age(), Some(cookie::time::Duration::hours(1)));
    }
    let me = client.send("GET", "/me").await;
    assert_eq!(
        me.headers[header::VARY],
        "cookie",
        "the answer depends on the cookie"
    );
    let me = me.json();
    assert_eq!(me["user"], "ada");
    assert_eq!(me["data"]["n"], 3);
    assert!(client
        .send("GET", "/untouched")
        .await
        .headers
        .get(header::VARY)
        .is_none());
}

#[tokio::test]
async fn no_token_is_401_without_a_store_call_or_a_cookie() {
    let (store, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager)));
    let reply = client.send("GET", "/me").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.cookie().is_none());
    assert_eq!(client.send("GET", "/maybe").await.body, "anonymous");
    assert_eq!(store.total_calls(), 0);
}

#[tokio::test]
async fn malformed_cookies_are_no_session_without_a_store_call_and_are_cleared() {
    let (store, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager)));
    for bad in [
        "x",
        "session:*",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA*",
        &"A".repeat(100_000),
        "%00%00",
    ] {
        client.jar = Some(("__Host-session".into(), bad.into()));
        let reply = client.send("GET", "/me").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{bad:.20}");
        let cleared = reply.cookie().expect("a bad cookie is cleared");
        assert_eq!(cleared.value(), "");
        assert_eq!(cleared.max_age(), Some(cookie::time::Duration::ZERO));
        assert_eq!(cleared.path(), Some("/"));
        client.jar = Some(("__Host-session".into(), bad.into()));
        assert_eq!(client.send("GET", "/maybe").await.body, "anonymous");
    }
    assert_eq!(
        store.total_calls(),
        0,
        "format checks come before the store"
    );
}

#[tokio::test]
async fn an_unknown_token_is_no_session_and_its_cookie_is_cleared() {
    let (_, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager)));
    let stranger = SessionToken::generate().unwrap();
    client.jar = Some(("__Host-session".into(), stranger.expose().into()));
    let reply = client.send("GET", "/me").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.cookie().unwrap().value(), "");
    assert!(client.jar.is_none());
}

#[tokio::test]
async fn an_undecodable_record_is_deleted_and_no_session() {
    let (store, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager)));
    let token = client.send("POST", "/login/ada").await.body;
    let key = handle_key(&token);
    store
        .set(&key, b"not json", SetOptions::new())
        .await
        .unwrap();
    let reply = client.send("GET", "/me").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(!store.exists(&key).await.unwrap());
}

#[tokio::test]
async fn a_store_outage_is_503_never_anonymous() {
    let (store, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager)));
    client.send("POST", "/login/ada").await;
    let before = client.jar.clone();
    store.fail(Fail::Everything);
    for path in ["/me", "/maybe", "/count", "/thrice", "/devices"] {
        let reply = client.send("GET", path).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(reply.headers[header::RETRY_AFTER], "1");
        assert!(
            reply.cookie().is_none(),
            "an outage neither clears nor refreshes"
        );
        assert!(
            !reply.body.contains("127.0.0.1"),
            "no internals in the body"
        );
    }
    for path in ["/login/bob", "/logout", "/ctx-logout", "/logout-everywhere"] {
        let reply = client.send("POST", path).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
    // A route that never needs the session is not affected.
    assert_eq!(
        client.send("GET", "/untouched").await.status,
        StatusCode::OK
    );
    assert_eq!(client.jar, before);
    store.fail(Fail::Nothing);
    assert_eq!(client.send("GET", "/me").await.json()["user"], "ada");
}

#[tokio::test]
async fn a_failed_write_back_is_503_not_the_handlers_success() {
    let (store, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager)));
    client.send("POST", "/login/ada").await;
    assert_eq!(client.send("GET", "/count").await.body, "1");
    store.fail(Fail::Writes);
    let reply = client.send("GET", "/count").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    store.fail(Fail::Nothing);
    assert_eq!(
        client.send("GET", "/count").await.body,
        "2",
        "nothing was written"
    );
}

#[tokio::test]
async fn the_session_is_loaded_once_and_written_only_when_changed() {
    let (store, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager)));
    client.send("POST", "/login/ada").await;
    store.reset_counts();
    let reply = client.send("GET", "/thrice").await;
    assert_eq!(reply.body, "ada true true");
    assert_eq!(store.calls("get_ex"), 1, "three extractors, one load");
    assert_eq!(
        store.calls("compare_and_swap"),
        0,
        "nothing changed, nothing written"
    );
    assert_eq!(store.total_calls(), 1);

    store.reset_counts();
    client.send("GET", "/untouched").await;
    assert_eq!(
        store.total_calls(),
        0,
        "a route that does not ask costs nothing"
    );

    store.reset_counts();
    client.send("GET", "/count").await;
    assert_eq!(store.calls("get_ex"), 1);
    assert_eq!(store.calls("get"), 1, "update reads the record...");
    assert_eq!(store.calls("compare_and_swap"), 1, "...and swaps it once");
}

#[tokio::test]
async fn concurrent_requests_merge_instead_of_overwriting() {
    let (_, manager) = setup();
    let router = app(SessionLayer::new(manager));
    let mut client = Client::new(router.clone());
    client.send("POST", "/login/ada").await;
    // Both requests load the session, then both write a different field.
    let mut a = Client::new(router.clone());
    a.jar = client.jar.clone();
    let mut b = Client::new(router);
    b.jar = client.jar.clone();
    let (ra, rb) = tokio::join!(
        a.send("POST", "/gated/left"),
        b.send("POST", "/gated/right")
    );
    assert_eq!(ra.status, StatusCode::OK);
    assert_eq!(rb.status, StatusCode::OK);
    let data = client.send("GET", "/me").await.json()["data"].clone();
    assert_eq!(data["left"], true);
    assert_eq!(data["right"], true);
}

#[tokio::test]
async fn a_session_ended_during_a_request_is_not_brought_back() {
    let (store, manager) = setup();
    let gate = Gate(Arc::new(tokio::sync::Barrier::new(2)));
    let router = routes(gate.clone()).layer(SessionLayer::new(manager.clone()));
    let mut client = Client::new(router);
    let token = client.send("POST", "/login/ada").await.body;
    let request = client.send("POST", "/paused/field");
    let revoke = async {
        gate.0.wait().await; // the request has loaded the session
        manager.revoke_all("ada").await.unwrap();
        gate.0.wait().await; // now it writes
    };
    let (reply, ()) = tokio::join!(request, revoke);
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.cookie().unwrap().value(),
        "",
        "the dead cookie is cleared"
    );
    assert!(!store.exists(&handle_key(&token)).await.unwrap());
    assert!(manager.list_user_sessions("ada").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_handler_writes_nothing() {
    let (_, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager)));
    client.send("POST", "/login/ada").await;
    assert_eq!(
        client.send("POST", "/fail").await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert!(client.send("GET", "/me").await.json()["data"]
        .get("poison")
        .is_none());
}

#[tokio::test]
async fn login_ends_the_session_the_request_came_with() {
    let (store, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager.clone())));
    // A token planted in the browser (fixation), or a previous user's session.
    let planted = manager.create("mallory", Default::default()).await.unwrap();
    client.jar = Some(("__Host-session".into(), planted.token.expose().into()));
    let new = client.send("POST", "/login/ada").await;
    assert_eq!(new.status, StatusCode::OK);
    let cookie = new.cookie().unwrap();
    assert_ne!(cookie.value(), planted.token.expose());
    assert!(manager.get(planted.token.expose()).await.unwrap().is_none());
    assert!(!store
        .exists(&handle_key(planted.token.expose()))
        .await
        .unwrap());
    assert_eq!(client.send("GET", "/me").await.json()["user"], "ada");
    // Logging in again (same user) rotates out the token too.
    let again = client.send("POST", "/login/ada").await.body;
    assert_ne!(again, cookie.value());
    assert!(manager.get(cookie.value()).await.unwrap().is_none());
    assert_eq!(manager.list_user_sessions("ada").await.unwrap().len(), 1);
}

#[tokio::test]
async fn rotate_gives_a_new_token_and_keeps_the_data() {
    let (_, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager.clone())));
    let old = client.send("POST", "/login/ada").await.body;
    client.send("POST", "/set/theme/dark").await;
    let reply = client.send("POST", "/rotate").await;
    let new = reply.cookie().unwrap();
    assert_eq!(new.value(), reply.body);
    assert_ne!(new.value(), old);
    assert!(manager.get(&old).await.unwrap().is_none());
    assert_eq!(
        client.send("GET", "/me").await.json()["data"]["theme"],
        "dark"
    );
}

#[tokio::test]
async fn logout_deletes_the_session_and_clears_the_cookie() {
    let (store, manager) = setup();
    let mut client = Client::new(app(SessionLayer::new(manager.clone())));
    let token = client.send("POST", "/login/ada").await.body;
    let reply = client.send("POST", "/logout").await;
    assert_eq!(reply.status, StatusCode::OK);
    let cleared = reply.cookie().unwrap();
    assert_eq!((cleared.name(), cleared.value()), ("__Host-session", ""));
    assert_eq!(cleared.max_age(), Some(cookie::time::Duration::ZERO));
    assert!(!store.exists(&handle_key(&token)).await.unwrap());
    assert_eq!(
        client.send("GET", "/me").await.status,
        StatusCode::UNAUTHORIZED
    );

    // Logout through the context needs no live session and is idempotent.
    client.jar = Some(("__Host-session".into(), token.clone()));
    let reply = client.send("POST", "/ctx-logout").await;
    assert_eq!(reply.body, "false");
    assert_eq!(reply.cookie().unwrap().value(), "");
}

#[tokio::test]
async fn logout_everywhere_and_other_devices() {
    let (_, manager) = setup();
    let router = app(SessionLayer::new(manager.clone()));
    let mut laptop = Client::new(router.clone());
    let mut phone = Client::new(router.clone());
    let mut tablet = Client::new(router);
    laptop.send("POST", "/login/ada").await;
    phone.send("POST", "/login/ada").await;
    tablet.send("POST", "/login/ada").await;
    assert_eq!(laptop.send("GET", "/devices").await.body, "3");

    assert_eq!(laptop.send("POST", "/logout-others").await.body, "2");
    assert_eq!(
        phone.send("GET", "/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(laptop.send("GET", "/me").await.status, StatusCode::OK);

    phone.send("POST", "/login/ada").await;
    let reply = laptop.send("POST", "/logout-everywhere").await;
    assert_eq!(reply.body, "2");
    assert_eq!(reply.cookie().unwrap().value(), "");
    assert_eq!(
        phone.send("GET", "/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(manager.list_user_sessions("ada").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_per_user_limit_is_a_typed_409() {
    let (_, manager) = setup();
    let layer = SessionLayer::builder(manager.clone())
        .max_sessions_per_user(2)
        .build()
        .unwrap();
    let router = app(layer);
    let mut one = Client::new(router.clone());
    let mut two = Client::new(router.clone());
    let mut three = Client::new(router);
    assert_eq!(one.send("POST", "/login/ada").await.status, StatusCode::OK);
    assert_eq!(two.send("POST", "/login/ada").await.status, StatusCode::OK);
    let refused = three.send("POST", "/login/ada").await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body.contains("limit is 2"), "{}", refused.body);
    assert!(refused.cookie().is_none());
    assert_eq!(manager.list_user_sessions("ada").await.unwrap().len(), 2);
    // Logging in again from a browser that holds one of them replaces it: not over the limit.
    assert_eq!(one.send("POST", "/login/ada").await.status, StatusCode::OK);
    assert_eq!(manager.list_user_sessions("ada").await.unwrap().len(), 2);
    // Another user is not affected.
    assert_eq!(
        three.send("POST", "/login/bob").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_logins_never_exceed_the_limit() {
    let (_, manager) = setup();
    let layer = SessionLayer::builder(manager.clone())
        .max_sessions_per_user(3)
        .build()
        .unwrap();
    let router = app(layer);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            Client::new(router).send("POST", "/login/ada").await.status
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    let live = manager.list_user_sessions("ada").await.unwrap().len();
    assert!(live <= 3, "{live} sessions");
    assert_eq!(
        live, ok,
        "every successful login is live, no refused one is"
    );
}

#[tokio::test]
async fn bearer_tokens_never_touch_cookies() {
    let (_, manager) = setup();
    let mut client = Client::new(app(SessionLayer::bearer(manager)));
    let reply = client.send("POST", "/login/ada").await;
    assert!(reply.cookie().is_none());
    client.bearer = Some(reply.body.clone());
    let reply = client.send("GET", "/count").await;
    assert_eq!(reply.body, "1");
    assert!(reply.cookie().is_none());
    // A cookie means nothing to a bearer layer.
    let token = client.bearer.take().unwrap();
    client.jar = Some(("__Host-session".into(), token.clone()));
    assert_eq!(
        client.send("GET", "/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    client.jar = None;
    client.bearer = Some("not-a-token".into());
    assert_eq!(
        client.send("GET", "/me").await.status,
        StatusCode::UNAUTHORIZED
    );
    client.bearer = Some(token);
    assert_eq!(client.send("POST", "/logout").await.status, StatusCode::OK);
    assert_eq!(
        client.send("GET", "/me").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(start_paused = true)]
async fn max_age_follows_the_idle_timeout_and_stops_at_the_absolute_deadline() {
    let store = MemoryStore::default();
    let manager = SessionManager::builder(store)
        .with_idle_timeout(Duration::from_secs(30 * 60))
        .with_absolute_lifetime(Duration::from_secs(60 * 60))
        .build()
        .unwrap();
    let mut client = Client::new(app(SessionLayer::new(manager)));
    let login = client.send("POST", "/login/ada").await.cookie().unwrap();
    assert_eq!(login.max_age(), Some(cookie::time::Duration::minutes(30)));
    tokio::time::advance(Duration::from_secs(20 * 60)).await;
    let slid = client.send("GET", "/me").await.cookie().unwrap();
    assert_eq!(slid.max_age(), Some(cookie::time::Duration::minutes(30)));
    tokio::time::advance(Duration::from_secs(25 * 60)).await;
    // 45 minutes in: the absolute deadline (60 min) is nearer than the idle one.
    let clamped = client.send("GET", "/me").await.cookie().unwrap();
    assert_eq!(clamped.max_age(), Some(cookie::time::Duration::minutes(15)));
    tokio::time::advance(Duration::from_secs(15 * 60)).await;
    let reply = client.send("GET", "/me").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.cookie().unwrap().value(), "");
}

#[tokio::test]
async fn cookie_settings_are_applied_and_checked() {
    let (_, manager) = setup();
    let layer = SessionLayer::builder(manager.clone())
        .cookie(
            CookieConfig::new()
                .with_name("sid")
                .with_same_site(SameSite::Strict)
                .with_path("/app")
                .with_max_age(false),
        )
        .build()
        .unwrap();
    let mut client = Client::new(app(layer));
    let cookie = client.send("POST", "/login/ada").await.cookie().unwrap();
    assert_eq!(cookie.name(), "__Secure-sid");
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert_eq!(cookie.path(), Some("/app"));
    assert_eq!(cookie.max_age(), None);
    assert_eq!(client.send("GET", "/me").await.status, StatusCode::OK);

    let err = SessionLayer::builder(manager.clone())
        .cookie(
            CookieConfig::new()
                .with_secure(false)
                .with_same_site(SameSite::None),
        )
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::SameSiteNone);
    let err = SessionLayer::builder(manager.clone())
        .max_sessions_per_user(0)
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::SessionLimit);
    let plain = SessionLayer::builder(manager)
        .cookie(CookieConfig::new().with_secure(false))
        .token_source(TokenSource::Cookie)
        .build()
        .unwrap();
    let cookie = Client::new(app(plain))
        .send("POST", "/login/ada")
        .await
        .cookie()
        .unwrap();
    assert_eq!(cookie.name(), "session");
    assert_ne!(cookie.secure(), Some(true));
}

#[tokio::test]
async fn an_extractor_without_the_layer_is_a_wiring_error() {
    let mut client = Client::new(routes(Gate(Arc::new(tokio::sync::Barrier::new(2)))));
    let reply = client.send("GET", "/me").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        SessionError::MissingLayer.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
