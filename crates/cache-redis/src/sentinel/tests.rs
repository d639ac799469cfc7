//! Discovery and the watcher against real topologies of `test-redis` (a primary, two replicas,
//! three sentinels).

use std::net::TcpListener;
use std::sync::Arc;

use redis::IntoConnectionInfo;
use test_redis::RedisSentinel;

use super::watch::{PROMOTION_CHANNEL, SWITCH_CHANNEL};
use super::*;

const TIMEOUT: Duration = Duration::from_millis(500);

fn info(url: &str) -> ConnectionInfo {
    url.into_connection_info().expect("valid test URL")
}

/// The spec of `t`: its sentinels with `sentinel_pw`, the data nodes with `data_pw`.
fn spec_with(t: &RedisSentinel, sentinel_pw: Option<&str>, data_pw: Option<&str>) -> SentinelSpec {
    let auth = |pw: Option<&str>| pw.map(|p| format!(":{p}@")).unwrap_or_default();
    SentinelSpec {
        sentinels: t
            .sentinel_addrs()
            .iter()
            .map(|a| info(&format!("redis://{}{a}", auth(sentinel_pw))))
            .collect(),
        service: t.service_name().to_owned(),
        node: info(&format!("redis://{}127.0.0.1:1/0", auth(data_pw))),
    }
}

fn spec(t: &RedisSentinel) -> SentinelSpec {
    spec_with(t, t.sentinel_password(), t.password())
}

fn discovery(spec: SentinelSpec) -> Arc<Discovery> {
    Arc::new(Discovery::new(spec, TIMEOUT, TIMEOUT).expect("valid spec"))
}

/// A loopback port nothing listens on (bound, read, released).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn set(conn: &mut MultiplexedConnection, key: &str) -> std::result::Result<(), RedisError> {
    redis::cmd("SET").arg(key).arg("1").query_async(conn).await
}

#[test]
fn switch_messages_and_addresses_parse() {
    let d = Discovery::new(
        SentinelSpec {
            sentinels: vec![info("redis://127.0.0.1:26379")],
            service: "svc".into(),
            node: info("redis://127.0.0.1:1"),
        },
        TIMEOUT,
        TIMEOUT,
    )
    .unwrap();
    let new = Some(NodeAddr {
        host: "10.0.0.2".into(),
        port: 6380,
    });
    assert_eq!(
        d.parse_switch(SWITCH_CHANNEL, "svc 10.0.0.1 6379 10.0.0.2 6380"),
        new
    );
    assert_eq!(
        d.parse_switch(
            PROMOTION_CHANNEL,
            "slave 10.0.0.2:6380 10.0.0.2 6380 @ svc 10.0.0.1 6379"
        ),
        new
    );
    assert_eq!(
        d.parse_switch(SWITCH_CHANNEL, "other 10.0.0.1 6379 10.0.0.2 6380"),
        None
    );
    assert_eq!(
        d.parse_switch(
            PROMOTION_CHANNEL,
            "slave 10.0.0.2:6380 10.0.0.2 6380 @ other 10.0.0.1 6379"
        ),
        None
    );
    assert_eq!(
        d.parse_switch(SWITCH_CHANNEL, "svc 10.0.0.1 6379 10.0.0.2"),
        None
    );
    assert_eq!(
        d.parse_switch("+sdown", "svc 10.0.0.1 6379 10.0.0.2 6380"),
        None
    );
    let v6 = NodeAddr {
        host: "::1".into(),
        port: 7,
    };
    assert_eq!(v6.to_string(), "[::1]:7");
    assert_eq!(d.describe(), "sentinel service svc via [127.0.0.1:26379]");
    // A switch is recorded once; the first address is not a switch.
    assert!(!d.switched(v6.clone()));
    assert!(!d.switched(v6.clone()));
    let other = NodeAddr {
        host: "::2".into(),
        port: 7,
    };
    assert!(d.switched(other.clone()));
    assert_eq!(d.switches(), 1);
    assert!(d.recently_switched_from(&v6));
    assert!(!d.recently_switched_from(&other));
}

#[test]
fn data_nodes_keep_the_template_tls_and_credentials() {
    let d = Discovery::new(
        SentinelSpec {
            sentinels: vec![info("redis://127.0.0.1:26379")],
            service: "svc".into(),
            node: info("rediss://user:pw@placeholder:1/3"),
        },
        TIMEOUT,
        TIMEOUT,
    )
    .unwrap();
    let node = d.node_info(&NodeAddr {
        host: "10.1.2.3".into(),
        port: 6390,
    });
    assert!(
        matches!(node.addr(), ConnectionAddr::TcpTls { host, port: 6390, .. } if host == "10.1.2.3"),
        "{:?}",
        node.addr()
    );
    assert_eq!(node.redis_settings().username(), Some("user"));
    assert_eq!(node.redis_settings().password(), Some("pw"));
    assert_eq!(node.redis_settings().db(), 3);
}

#[test]
fn empty_settings_are_refused() {
    let mut s = SentinelSpec {
        sentinels: vec![],
        service: "svc".into(),
        node: info("redis://127.0.0.1:1"),
    };
    let e = Discovery::new(s.clone(), TIMEOUT, TIMEOUT).unwrap_err();
    assert!(e.to_string().contains(NODES_SETTING), "{e}");
    s.sentinels.push(info("redis://127.0.0.1:26379"));
    s.service = " ".into();
    let e = Discovery::new(s, TIMEOUT, TIMEOUT).unwrap_err();
    assert!(e.to_string().contains(SERVICE_SETTING), "{e}");
}

#[test]
fn readonly_retires_the_connection() {
    let readonly = redis::make_extension_error(
        "READONLY".into(),
        Some("You can't write against a read only replica.".into()),
    );
    assert_eq!(disposition(&readonly), error::Disposition::Broken);
    assert_eq!(
        error::disposition(&readonly),
        error::Disposition::Healthy,
        "on one server a READONLY reply says nothing about the connection"
    );
}

#[tokio::test]
async fn finds_the_primary_and_a_replica_with_separate_credentials() {
    let t = RedisSentinel::builder()
        .password("data-pw")
        .sentinel_password("sentinel-pw")
        .start();
    let d = discovery(spec(&t));
    let mut primary = d.connect(Want::Primary).await.unwrap();
    assert_eq!(primary.addr.port, t.primary().port());
    assert_eq!(d.primary(), Some(primary.addr.clone()));
    set(&mut primary.conn, "k").await.unwrap();

    let mut replica = d.connect(Want::Replica).await.unwrap();
    assert!(
        t.replicas().iter().any(|r| r.port() == replica.addr.port),
        "{} is not a replica",
        replica.addr
    );
    let e = set(&mut replica.conn, "k").await.unwrap_err();
    assert_eq!(e.code(), Some("READONLY"));
    assert_eq!(disposition(&e), error::Disposition::Broken);
}

#[tokio::test]
async fn errors_name_what_to_fix() {
    let t = RedisSentinel::builder()
        .password("data-pw")
        .sentinel_password("sentinel-pw")
        .start();

    let mut s = spec(&t);
    s.service = "no-such-service".into();
    let e = discovery(s).connect(Want::Primary).await.err().unwrap();
    assert!(
        matches!(&e, Error::Config { setting, .. } if setting == SERVICE_SETTING),
        "{e}"
    );
    assert!(
        e.to_string().contains(t.service_name()),
        "lists the monitored names: {e}"
    );
    assert!(!e.is_transient());

    let e = discovery(spec_with(&t, Some("wrong"), t.password()))
        .connect(Want::Primary)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::Auth(_)), "{e}");
    assert!(e.to_string().contains("REDIS_SENTINEL_PASSWORD"), "{e}");

    let e = discovery(spec_with(&t, t.sentinel_password(), Some("wrong")))
        .connect(Want::Primary)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::Auth(_)), "{e}");
    assert!(e.to_string().contains(NODE_AUTH_SETTINGS), "{e}");

    let mut s = spec(&t);
    let dead = [dead_port(), dead_port()];
    s.sentinels = dead
        .iter()
        .map(|p| info(&format!("redis://127.0.0.1:{p}")))
        .collect();
    let e = discovery(s).connect(Want::Primary).await.err().unwrap();
    assert!(matches!(e, Error::Connection { .. }), "{e}");
    assert!(e.is_transient());
    for p in dead {
        assert!(
            e.to_string()
                .contains(&format!("127.0.0.1:{p}: connection refused")),
            "{e}"
        );
    }

    let mut s = spec(&t);
    s.sentinels = vec![info(&format!("redis://:data-pw@{}", t.primary().addr()))];
    let e = discovery(s).connect(Want::Primary).await.err().unwrap();
    assert!(
        matches!(&e, Error::Config { setting, .. } if setting == NODES_SETTING),
        "{e}"
    );
    assert!(e.to_string().contains("is not a sentinel"), "{e}");
}

#[tokio::test]
async fn a_dead_sentinel_is_passed_over_and_asked_last() {
    let t = RedisSentinel::start();
    let mut s = spec(&t);
    s.sentinels
        .insert(0, info(&format!("redis://127.0.0.1:{}", dead_port())));
    let d = discovery(s);
    let found = d.connect(Want::Primary).await.unwrap();
    assert_eq!(found.addr.port, t.primary().port());
    assert_eq!(
        d.order().next(),
        Some(1),
        "the sentinel that answered is asked first"
    );
}

#[tokio::test]
async fn a_primary_the_sentinels_name_but_we_cannot_reach() {
    // No automatic failover within the test: the sentinels keep naming the dead primary.
    let t = RedisSentinel::builder()
        .down_after(Duration::from_secs(60))
        .start();
    let port = t.primary().port();
    t.primary().kill();
    let e = discovery(spec(&t))
        .connect(Want::Primary)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::Connection { .. }), "{e}");
    assert!(e.is_transient());
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("named by sentinel"), "{text}");
    assert!(text.contains("cannot be reached"), "{text}");
}

#[tokio::test]
async fn the_old_primary_is_used_when_every_sentinel_still_names_it() {
    let t = RedisSentinel::start();
    let d = discovery(spec(&t));
    let first = d.connect(Want::Primary).await.unwrap().addr;
    // A switch away from it that the sentinels never confirmed.
    d.switched(NodeAddr {
        host: "127.0.0.1".into(),
        port: dead_port(),
    });
    d.switched(first.clone());
    *d.switched_from.lock() = Some((first.clone(), Instant::now()));
    let again = d.connect(Want::Primary).await.unwrap();
    assert_eq!(again.addr, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_reports_a_manual_failover_and_a_crash() {
    let t = Arc::new(RedisSentinel::start());
    let d = discovery(spec(&t));
    d.connect(Want::Primary).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = d.watch(Duration::from_millis(200), move |addr| {
        let _ = tx.send(addr.clone());
    });

    let topology = Arc::clone(&t);
    let manual = tokio::task::spawn_blocking(move || topology.failover())
        .await
        .unwrap();
    // Bounded only so that a broken watcher fails the test instead of hanging it.
    let announced = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the watcher reports the switch")
        .unwrap();
    assert_eq!(announced.port, manual.to);
    let found = d.connect(Want::Primary).await.unwrap();
    assert_eq!(found.addr.port, manual.to);

    let topology = Arc::clone(&t);
    let crash = tokio::task::spawn_blocking(move || {
        topology.wait_until_ready();
        topology.kill_primary()
    })
    .await
    .unwrap();
    let announced = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the watcher reports the second switch")
        .unwrap();
    assert_eq!(announced.port, crash.to);
    assert_eq!(d.switches(), 2);
    let found = d.connect(Want::Primary).await.unwrap();
    assert_eq!(found.addr.port, crash.to);
    watcher.abort();
}
