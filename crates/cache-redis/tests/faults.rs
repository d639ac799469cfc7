//! Failure behaviour against real servers: frozen, killed and restarted, wrong password, dead port,
//! malformed URL, TLS mismatch, unknown host. Each error must be the documented kind with a message
//! that names what to fix, and every call must return within its configured bound.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use cache_core::{Config, Error, ErrorKind, Profile, SetOptions, Store};
use cache_redis::{PoolConfig, RedisConfig, RedisEndpoint, RedisStore};
use common::{config, store};
use test_redis::RedisServer;

/// The hard bound of one call with the test config: max(budget, connect + response) = 800 ms.
const CALL_CAP: Duration = Duration::from_millis(800);
/// Slack for a loaded CI machine; generous so the assertion does not flake, small enough to catch
/// a hang (which would otherwise be unbounded).
const SLACK: Duration = Duration::from_secs(2);

/// A loopback port with nothing listening on it.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[tokio::test]
async fn a_frozen_server_times_out_within_the_bound_and_recovers_after_thaw() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.set("k", b"v", SetOptions::new()).await.unwrap();

    server.freeze();
    for op in ["get", "set", "incr"] {
        let started = Instant::now();
        let r = match op {
            "get" => s.get("k").await.map(|_| ()),
            "set" => s.set("k", b"w", SetOptions::new()).await.map(|_| ()),
            _ => s.incr_by("n", 1, None).await.map(|_| ()),
        };
        let took = started.elapsed();
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{op}: {e}");
        assert!(e.is_transient());
        assert!(
            e.to_string().contains("REDIS_RESPONSE_TIMEOUT")
                || e.to_string().contains("REDIS_RETRY_BUDGET")
                || e.to_string().contains("REDIS_CONNECT_TIMEOUT"),
            "the error names the setting: {e}"
        );
        assert!(took < CALL_CAP + SLACK, "{op} took {took:?}");
        // A non-idempotent call is not retried after sending: one response timeout.
        if op == "incr" {
            assert!(
                took < Duration::from_millis(300) + SLACK,
                "incr took {took:?}"
            );
        }
    }
    // Many concurrent calls all return, none hangs.
    let started = Instant::now();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.get(&format!("k{i}")).await })
        })
        .collect();
    for c in calls {
        assert!(c.await.unwrap().is_err());
    }
    assert!(started.elapsed() < CALL_CAP + SLACK);

    server.thaw();
    // Back after SIGCONT: the next call succeeds (and the earlier SET may or may not have applied:
    // it timed out, which says nothing about whether it ran).
    let v = s.get("k").await.unwrap();
    assert!(
        v.as_deref() == Some(&b"v"[..]) || v.as_deref() == Some(&b"w"[..]),
        "{v:?}"
    );
    s.set("k2", b"after", SetOptions::new()).await.unwrap();
    assert_eq!(server.cli(["GET", "t:k2"]), "after");
}

#[tokio::test]
async fn a_killed_server_gives_connection_errors_and_is_reconnected_after_restart() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.set("k", b"v", SetOptions::new()).await.unwrap();
    let opened_before = s.connections_opened();

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let e = s.get("k").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
        assert!(e.is_transient());
        assert!(started.elapsed() < CALL_CAP + SLACK);
    }
    let e = s.incr_by("n", 1, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    let c = s.connectivity().await;
    assert!(!c.reachable);
    assert_eq!(c.error_kind, Some("connection"));

    server.restart();
    // No application restart: the very next calls work, including non-idempotent ones (the dead
    // connections were retired while the server was down, so nothing is sent on them).
    assert_eq!(
        s.get("k").await.unwrap(),
        None,
        "the restarted server has no data"
    );
    assert_eq!(s.incr_by("n", 1, None).await.unwrap(), 1);
    s.set("k", b"again", SetOptions::new()).await.unwrap();
    assert_eq!(server.cli(["GET", "t:k"]), "again");
    assert!(s.connections_opened() > opened_before);
    assert!(s.connectivity().await.reachable);
}

#[tokio::test]
async fn a_restart_without_traffic_in_between_is_survived_by_idempotent_calls() {
    // The server goes away and comes back while the store is idle: the first call finds a dead
    // connection. Reads retry transparently (on the other slot or a fresh connection).
    let server = RedisServer::start();
    let s = store(&server).await;
    s.set("k", b"v", SetOptions::new()).await.unwrap();
    server.kill();
    server.restart();
    assert_eq!(s.get("k").await.unwrap(), None);
    s.set("k", b"v2", SetOptions::new()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v2"[..]));
}

#[tokio::test]
async fn the_background_check_replaces_dead_connections_without_traffic() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let before = s.connections_opened();
    server.kill();
    server.restart();
    // Health checks run every 200 ms in the test config: wait until both slots were replaced.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.connections_opened() < before + s.shared_connections() as u64 {
        assert!(
            Instant::now() < deadline,
            "connections were not replaced in the background"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Now even a non-idempotent call goes through on the first attempt.
    assert_eq!(s.incr_by("n", 2, None).await.unwrap(), 2);
}

#[tokio::test]
async fn connections_are_rotated_at_their_max_lifetime() {
    // With room in the pool (new connection first) and without (shared connections fill it).
    for max_open in [4, 2] {
        rotation(max_open).await;
    }
}

async fn rotation(max_open: u64) {
    let server = RedisServer::start();
    let cfg = RedisConfig::new(Profile::Production, RedisEndpoint::server(server.url()))
        .with_key_prefix("t")
        .with_pool(
            PoolConfig::default()
                .with_max_open(max_open)
                .with_health_check_interval(Duration::from_millis(50))
                .with_max_lifetime(Duration::from_millis(100)),
        );
    let s = RedisStore::connect(&cfg).await.unwrap();
    let before = s.connections_opened();
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.connections_opened() < before + 4 {
        // Traffic keeps flowing during rotations.
        s.set("k", b"v", SetOptions::new()).await.unwrap();
        assert!(Instant::now() < deadline, "no rotation happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pool = s.stats().await.unwrap().unwrap().pool.unwrap();
    assert!(
        pool.open <= max_open,
        "old connections are closed: {pool:?}"
    );
    assert_eq!(pool.timeouts, 0, "{pool:?}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let server = RedisServer::builder().password("right").start();
    let url = format!("redis://:wrong@{}", server.addr());
    let e = RedisStore::connect(&config(&url)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.is_transient());
    assert!(e.to_string().contains("REDIS_URL"), "{e}");
    assert!(
        !e.to_string().contains("wrong"),
        "no password in the message: {e}"
    );

    // No password at all (NOAUTH) is an auth error too, also on a lazily connected store.
    let lazy = RedisStore::builder(&config(&server.url_without_auth()))
        .with_lazy_connect()
        .connect()
        .await
        .unwrap();
    let e = lazy.get("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");

    // Unknown ACL user.
    let url = format!("redis://nobody:right@{}", server.addr());
    let e = RedisStore::connect(&config(&url)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");

    // The right password works.
    let s = RedisStore::connect(&config(&server.url())).await.unwrap();
    s.set("k", b"v", SetOptions::new()).await.unwrap();
}

#[tokio::test]
async fn a_dead_port_is_a_connection_error_saying_nothing_listens() {
    let port = dead_port();
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    let e = RedisStore::connect(&config(&url)).await.unwrap_err();
    assert!(started.elapsed() < CALL_CAP + SLACK);
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("nothing listens") && msg.contains(&format!("127.0.0.1:{port}")),
        "{msg}"
    );

    let lazy = RedisStore::builder(&config(&url))
        .with_lazy_connect()
        .connect()
        .await
        .unwrap();
    let e = lazy.get("k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");
    let c = lazy.connectivity().await;
    assert!(!c.reachable);
    assert_eq!(c.error_kind, Some("connection"));
    assert!(c.error.unwrap().contains("nothing listens"));
}

#[tokio::test]
async fn a_malformed_url_is_a_config_error_naming_redis_url() {
    for url in [
        "redis://127.0.0.1:notaport",
        "redis://user:s3cr3t@127.0.0.1:99999999",
        "http://127.0.0.1:6379",
    ] {
        let mut cfg = config("redis://127.0.0.1:1");
        cfg.endpoint = RedisEndpoint::server(url);
        let e = RedisStore::connect(&cfg).await.unwrap_err();
        assert!(
            matches!(&e, Error::Config { setting, .. } if setting == "REDIS_URL"),
            "{url}: {e}"
        );
        assert!(!e.to_string().contains("s3cr3t"), "password leaked: {e}");
    }
    // A workspace configuration that selects another backend.
    let e = RedisConfig::from_core(&Config::for_profile(Profile::Production)).unwrap_err();
    assert!(
        matches!(&e, Error::Config { setting, .. } if setting == "CACHE_BACKEND"),
        "{e}"
    );
}

#[tokio::test]
async fn tls_against_a_plain_server_is_a_clear_tls_error() {
    let server = RedisServer::start();
    let url = format!("rediss://{}", server.addr());
    let started = Instant::now();
    let e = RedisStore::connect(&config(&url)).await.unwrap_err();
    assert!(started.elapsed() < CALL_CAP + SLACK);
    assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("plain-text") && msg.contains("redis://"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unknown_host_is_a_connection_error_saying_dns() {
    let url = "redis://no-such-host.invalid:6379";
    let started = Instant::now();
    let e = RedisStore::connect(&config(url)).await.unwrap_err();
    assert!(started.elapsed() < CALL_CAP + SLACK);
    eprintln!("unknown host: {e}");
    // A resolver that answers fails with a DNS message; one that does not answer in time gives a
    // connect timeout. Both name what to check.
    match e.kind() {
        ErrorKind::Connection => assert!(e.to_string().contains("DNS"), "{e}"),
        ErrorKind::Timeout => assert!(e.to_string().contains("REDIS_CONNECT_TIMEOUT"), "{e}"),
        _ => panic!("unexpected error for an unknown host: {e}"),
    }
}
