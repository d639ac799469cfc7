//! The blocking API, on the in-memory backend and on a spawned `redis-server`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cachekit::blocking::Client;
use cachekit::sessions::{CreateOptions, SessionData};
use cachekit::{Config, ErrorKind, Family};
use serde_json::json;
use test_redis::RedisServer;

fn data(v: serde_json::Value) -> SessionData {
    v.as_object().cloned().unwrap_or_default()
}

fn exercise(client: &Client) {
    client.block_on(client.store().ping()).expect("ping");
    let cache = client.cache().expect("cache");
    client
        .block_on(cache.user().set("7", &json!({"name": "grace"})))
        .expect("set");
    let got: Option<serde_json::Value> = client.block_on(cache.user().get("7")).expect("get");
    assert_eq!(got.unwrap()["name"], "grace");
    client
        .block_on(
            cache
                .content()
                .with_ttl(Duration::from_secs(5))
                .set("c", &"body"),
        )
        .expect("set with ttl");

    // Cache-aside with a synchronous loader (it runs on this thread): runs once, then hits.
    let loads = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let loads = loads.clone();
        let v: Vec<u32> = client
            .block_on(cache.keyword_trends().get_or_load("k", || async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(vec![1, 2, 3])
            }))
            .expect("load");
        assert_eq!(v, vec![1, 2, 3]);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert!(client
        .block_on(cache.keyword_trends().invalidate("k"))
        .expect("invalidate"));
    assert_eq!(cache.stats().family(Family::User).hits, 1);
    // A loader error comes back typed.
    let err = client
        .block_on(
            cache
                .user()
                .get_or_load("8", || async { Err::<u8, _>("db down".to_owned()) }),
        )
        .unwrap_err();
    assert_eq!(err.loader_error().map(String::as_str), Some("db down"));

    // The session lifecycle.
    let sessions = client.sessions().expect("sessions");
    let s = client
        .block_on(sessions.create("u1", CreateOptions::new().with_data(data(json!({"a": 1})))))
        .expect("create");
    let token = s.token.expose().to_string();
    let updated = client
        .block_on(sessions.update(&token, &data(json!({"b": 2}))))
        .expect("update")
        .expect("live");
    assert_eq!(updated.data.len(), 2);
    let rotated = client
        .block_on(sessions.rotate(&token))
        .expect("rotate")
        .expect("live");
    assert!(client
        .block_on(sessions.get(&token))
        .expect("get old")
        .is_none());
    let new_token = rotated.token.expose().to_string();
    assert!(client
        .block_on(sessions.get(&new_token))
        .expect("get new")
        .is_some());
    assert_eq!(
        client
            .block_on(sessions.list_user_sessions("u1"))
            .expect("list")
            .len(),
        1
    );
    assert_eq!(
        client
            .block_on(sessions.revoke_all("u1"))
            .expect("revoke all"),
        1
    );
    assert!(client
        .block_on(sessions.get(&new_token))
        .expect("get revoked")
        .is_none());
    client.block_on(sessions.cleanup()).expect("cleanup");
}

#[test]
fn blocking_api_on_memory() {
    let client = Client::connect(&Config::builder().memory().build().unwrap()).expect("connect");
    exercise(&client);
}

#[test]
fn blocking_api_on_redis() {
    let server = RedisServer::start();
    let config = Config::builder()
        .redis_url(server.url())
        .key_prefix("blocking")
        .build()
        .unwrap();
    let client = Client::connect(&config).expect("connect");
    exercise(&client);
}

#[test]
fn blocking_api_reports_an_unreachable_redis_as_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let config = Config::builder()
        .redis_url(format!("redis://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let err = Client::connect(&config).expect_err("nothing listens there");
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
}

#[tokio::test]
async fn blocking_api_inside_a_runtime_is_an_error_not_a_panic() {
    let err = Client::connect(&Config::builder().memory().build().unwrap())
        .expect_err("must refuse inside a runtime");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}

#[test]
fn a_client_dropped_inside_a_runtime_does_not_panic() {
    let client = Client::connect(&Config::builder().memory().build().unwrap()).expect("connect");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move {
        let err = client
            .block_on(client.store().ping())
            .expect_err("refused inside a runtime");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        drop(client);
    });
}
