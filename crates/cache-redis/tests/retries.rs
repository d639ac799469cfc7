//! Which writes may be repeated after their command was sent (issue 12, item 11), decided on a real
//! server.
//!
//! The situation: a write reaches Redis and is applied, but its reply is lost (a one-way network
//! stall, a client pause), so the client times out and, if the policy allows, sends it again.
//! Meanwhile another client deletes the key. A [`ReplyDroppingLink`] between the store and a real
//! `redis-server` produces exactly that, deterministically: requests go through, replies are
//! swallowed. The tests then look at the server.
//!
//! - An unconditional `SET` repeated after the delete brings the deleted value back, although the
//!   delete answered "1 key deleted" after the first attempt had written it: no order of single
//!   applications explains that (the write was applied twice). So value writes are not repeated
//!   once sent; the call reports a transient error instead.
//! - A TTL refresh (`PEXPIRE`, `GETEX PX`) repeated after the delete finds no key and does nothing: a
//!   repeat can only move the deadline of a key that still exists, never bring a value back. So TTL
//!   refreshes stay repeatable.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::{ErrorKind, KeyTtl, SetOptions, Store};
use cache_redis::{PoolConfig, RedisStore, RetryConfig};
use common::{config, store};
use test_redis::RedisServer;

/// A TCP link to a real server that forwards every request and, once [`Self::drop_replies`] was
/// called, swallows every reply. Not a Redis: it never parses or answers anything itself.
struct ReplyDroppingLink {
    port: u16,
    dropping: Arc<AtomicBool>,
}

impl ReplyDroppingLink {
    fn to(server: &RedisServer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the link");
        let port = listener.local_addr().expect("local address").port();
        let upstream = server.addr();
        let dropping = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&dropping);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let (mut c_in, mut s_out) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                let (mut s_in, mut c_out, flag) = (server, client, Arc::clone(&flag));
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            // The reply is read and thrown away: it never reaches the client.
                            Ok(_) if flag.load(Ordering::SeqCst) => {}
                            Ok(n) => {
                                if c_out.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Write);
                });
            }
        });
        ReplyDroppingLink { port, dropping }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// From now on, replies never reach the client (requests still reach the server).
    fn drop_replies(&self) {
        self.dropping.store(true, Ordering::SeqCst);
    }
}

/// A store connected through `link`, with room for two or three attempts in its retry budget. Its
/// background health check is out of the way (it would retire the stalled connections, and the
/// replacements cannot finish their handshake through the link, so a retry would never be sent:
/// the tests are about what happens when it can be).
async fn store_through(link: &ReplyDroppingLink) -> RedisStore {
    let cfg = config(&link.url())
        .with_pool(PoolConfig::default().with_health_check_interval(Duration::from_secs(3600)))
        .with_response_timeout(Duration::from_millis(600))
        .with_retry(
            RetryConfig::default()
                .with_max_attempts(3)
                .with_budget(Duration::from_secs(3)),
        );
    RedisStore::connect(&cfg)
        .await
        .expect("connect through the link")
}

/// How many times the server ran `command` since the last `CONFIG RESETSTAT`.
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.cli(["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a call count"))
}

/// Polls `check` until it holds (the first attempt reached the server), for at most 10 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..5000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("gave up waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_whose_reply_was_lost_is_not_repeated_over_a_later_delete() {
    let server = RedisServer::start();
    let link = ReplyDroppingLink::to(&server);
    let writer = store_through(&link).await;
    let other = store(&server).await;
    server.cli(["CONFIG", "RESETSTAT"]);

    link.drop_replies();
    let write = tokio::spawn(async move {
        writer
            .set("k", b"stale", SetOptions::ttl(Duration::from_secs(3600)))
            .await
    });
    until("the first SET was applied", || async {
        other.exists("k").await.expect("exists")
    })
    .await;
    // Another client deletes the value the first attempt wrote (an invalidation after a database
    // update, a sign-out): the delete says it removed one key.
    assert_eq!(other.delete(&["k"]).await.expect("delete"), 1);

    let result = write.await.expect("the writer task");
    let e = result.expect_err("no reply ever reached the writer");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_transient(), "the caller may retry knowingly: {e}");
    // Every attempt the writer made has reached the server by now (the link forwards requests at
    // once; the call waited a response timeout after its last one).
    assert_eq!(
        other.get("k").await.expect("get"),
        None,
        "the delete was undone: the SET was applied again after it ({} SETs ran)",
        calls(&server, "set")
    );
    assert_eq!(calls(&server, "set"), 1, "a sent SET is not repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_many_whose_reply_was_lost_is_not_repeated_over_a_later_delete() {
    let server = RedisServer::start();
    let link = ReplyDroppingLink::to(&server);
    let writer = store_through(&link).await;
    let other = store(&server).await;
    server.cli(["CONFIG", "RESETSTAT"]);

    link.drop_replies();
    let write = tokio::spawn(async move {
        writer
            .set_many(
                &[("a", &b"1"[..]), ("b", &b"2"[..])],
                cache_core::Expiry::In(Duration::from_secs(3600)),
            )
            .await
    });
    until("the first pipeline was applied", || async {
        other.exists("b").await.expect("exists")
    })
    .await;
    assert_eq!(other.delete(&["a", "b"]).await.expect("delete"), 2);
    let e = write.await.expect("task").expect_err("no reply");
    assert!(e.is_transient(), "{e}");
    assert_eq!(
        other.get_many(&["a", "b"]).await.expect("get"),
        [None, None]
    );
    assert_eq!(
        calls(&server, "set"),
        2,
        "one pipeline of two SETs, sent once"
    );
}

/// The other side of the rule, with the same fault: a TTL refresh *is* repeated, and its repeat
/// cannot bring a deleted key back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_ttl_refresh_never_brings_a_deleted_key_back() {
    for op in ["pexpire", "getex"] {
        let server = RedisServer::start();
        let link = ReplyDroppingLink::to(&server);
        let refresher = store_through(&link).await;
        let other = store(&server).await;
        assert!(other
            .set("k", b"v", SetOptions::ttl(Duration::from_secs(3600)))
            .await
            .expect("set"));
        server.cli(["CONFIG", "RESETSTAT"]);

        link.drop_replies();
        let ttl = Duration::from_secs(60);
        let refresh = tokio::spawn(async move {
            match op {
                "pexpire" => refresher.expire("k", ttl).await.map(|_| ()),
                _ => refresher.get_ex("k", ttl).await.map(|_| ()),
            }
        });
        until("the first refresh was applied", || async {
            matches!(other.ttl("k").await.expect("ttl"), KeyTtl::ExpiresIn(d) if d <= ttl)
        })
        .await;
        assert_eq!(other.delete(&["k"]).await.expect("delete"), 1);
        let e = refresh.await.expect("task").expect_err("no reply");
        assert!(e.is_transient(), "{op}: {e}");
        assert!(
            calls(&server, op) >= 2,
            "{op}: the refresh was repeated after sending ({} calls)",
            calls(&server, op)
        );
        assert_eq!(
            other.ttl("k").await.expect("ttl"),
            KeyTtl::Missing,
            "{op}: a repeat never brings a key back"
        );
    }
}
