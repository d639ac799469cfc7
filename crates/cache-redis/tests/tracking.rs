//! The near-cache tracker (`src/tracking.rs`) against real `redis-server` processes: writes,
//! deletes and expiry through another connection and through `redis-cli` are reported; `FLUSHDB`
//! is a flush; `CLIENT KILL` of the tracking connection and a server restart are reported as lost
//! and tracking comes back by itself.
//!
//! Waits are bounded waits for an event (never sleeps asserting time).

// The module is compiled into this test until the store exposes it.
#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../src/tracking.rs"]
mod tracking;

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::AsyncCommands;
use test_redis::RedisServer;
use tokio::sync::Notify;
use tracking::{Tracker, TrackingListener, TrackingOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Key(String),
    Flush,
    Lost,
    Ready,
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Notify,
}

impl Recorder {
    fn push(&self, e: Event) {
        self.events.lock().push(e);
        self.changed.notify_waiters();
    }

    /// Waits (at most 20 s: a generous bound for a loaded machine) until an event matching `pred`
    /// has been recorded since index `from`; returns its index.
    async fn wait(&self, from: usize, what: &str, pred: impl Fn(&Event) -> bool) -> usize {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let changed = self.changed.notified();
                if let Some(i) = self.events.lock()[from..].iter().position(&pred) {
                    return from + i;
                }
                changed.await;
            }
        })
        .await;
        match found {
            Ok(i) => i,
            Err(_) => panic!("no {what} event; recorded: {:?}", self.events.lock()),
        }
    }

    fn len(&self) -> usize {
        self.events.lock().len()
    }
}

impl TrackingListener for Recorder {
    fn invalidate(&self, key: &str) {
        self.push(Event::Key(key.to_owned()));
    }
    fn flush(&self) {
        self.push(Event::Flush);
    }
    fn tracking_lost(&self) {
        self.push(Event::Lost);
    }
    fn tracking_ready(&self) {
        self.push(Event::Ready);
    }
}

fn options() -> TrackingOptions {
    TrackingOptions {
        health_interval: Duration::from_millis(200),
        ..TrackingOptions::default()
    }
}

async fn setup(server: &RedisServer, prefix: &str) -> (Tracker, Arc<Recorder>) {
    let client = redis::Client::open(server.url()).unwrap();
    let tracker = Tracker::start(&client, "app", options());
    let rec = Arc::new(Recorder::default());
    let weak: Weak<dyn TrackingListener> =
        Arc::downgrade(&(rec.clone() as Arc<dyn TrackingListener>));
    tracker.register(prefix, weak).await;
    rec.wait(0, "ready", |e| *e == Event::Ready).await;
    assert!(tracker.is_up());
    (tracker, rec)
}

async fn other_connection(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn key(k: &str) -> impl Fn(&Event) -> bool + '_ {
    move |e| *e == Event::Key(k.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_deletes_and_expiry_elsewhere_are_reported() {
    let server = RedisServer::start();
    let (tracker, rec) = setup(&server, "user:").await;
    let mut other = other_connection(&server).await;

    let from = rec.len();
    let _: () = other.set("app:other:1", "x").await.unwrap();
    let _: () = other.set("app:user:1", "x").await.unwrap();
    let at = rec.wait(from, "SET", key("user:1")).await;
    assert!(
        !rec.events.lock()[from..at].contains(&Event::Key("other:1".into())),
        "keys outside the registered prefix are not reported"
    );

    let from = rec.len();
    let _: () = other.del("app:user:1").await.unwrap();
    rec.wait(from, "DEL", key("user:1")).await;

    // Expiry: the server reports the key when it expires it (a few milliseconds here).
    let from = rec.len();
    let _: () = other.pset_ex("app:user:2", "x", 5).await.unwrap();
    rec.wait(from, "SET PX", key("user:2")).await;
    let from = rec.len();
    rec.wait(from, "expiry", key("user:2")).await;

    // redis-cli, a client that knows nothing of us.
    let from = rec.len();
    server.cli(["SET", "app:user:3", "from-cli"]);
    rec.wait(from, "redis-cli SET", key("user:3")).await;

    // tracking-table-max-keys limits the default mode's table only: broadcast mode still reports
    // every key.
    server.cli(["CONFIG", "SET", "tracking-table-max-keys", "1"]);
    let from = rec.len();
    for i in 0..20 {
        let _: () = other.set(format!("app:user:t{i}"), "x").await.unwrap();
    }
    rec.wait(from, "20th key", key("user:t19")).await;
    let seen = rec.events.lock()[from..]
        .iter()
        .filter(|e| matches!(e, Event::Key(k) if k.starts_with("user:t")))
        .count();
    assert_eq!(seen, 20);

    // FLUSHDB is a flush.
    let from = rec.len();
    server.cli(["FLUSHDB"]);
    rec.wait(from, "flush", |e| *e == Event::Flush).await;
    assert!(tracker.is_up(), "a flush does not stop tracking");
    let stats = tracker.stats();
    assert!(stats.keys >= 25 && stats.flushes == 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracking_connection_is_lost_then_tracked_again() {
    let server = RedisServer::start();
    let (tracker, rec) = setup(&server, "user:").await;
    let id = tracker.client_id().await.expect("connected");
    let from = rec.len();
    server.cli(["CLIENT", "KILL", "ID", &id.to_string()]);
    let lost = rec.wait(from, "lost", |e| *e == Event::Lost).await;
    let ready = rec.wait(lost, "ready again", |e| *e == Event::Ready).await;
    assert!(ready > lost);
    // And it reports changes again, on a new connection.
    assert_ne!(tracker.client_id().await, Some(id));
    let mut other = other_connection(&server).await;
    let from = rec.len();
    let _: () = other.set("app:user:9", "x").await.unwrap();
    rec.wait(from, "SET after reconnect", key("user:9")).await;
    assert_eq!(tracker.stats().losses, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_lost_then_tracked_again() {
    let server = RedisServer::start();
    let (tracker, rec) = setup(&server, "session:").await;
    let from = rec.len();
    server.restart();
    let lost = rec.wait(from, "lost", |e| *e == Event::Lost).await;
    rec.wait(lost, "ready again", |e| *e == Event::Ready).await;
    let mut other = other_connection(&server).await;
    let from = rec.len();
    let _: () = other.set("app:session:abc", "x").await.unwrap();
    rec.wait(from, "SET after restart", key("session:abc"))
        .await;
    assert!(tracker.stats().connects >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_fails_the_health_check() {
    let server = RedisServer::start();
    let (_tracker, rec) = setup(&server, "user:").await;
    let from = rec.len();
    server.freeze();
    rec.wait(from, "lost", |e| *e == Event::Lost).await;
    server.thaw();
    rec.wait(from, "ready again", |e| *e == Event::Ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_registered_later_are_added_to_the_live_connection() {
    let server = RedisServer::start();
    let (tracker, users) = setup(&server, "user:").await;
    let id = tracker.client_id().await;
    let sessions = Arc::new(Recorder::default());
    let weak: Weak<dyn TrackingListener> =
        Arc::downgrade(&(sessions.clone() as Arc<dyn TrackingListener>));
    tracker.register("session:", weak).await;
    assert_eq!(
        sessions.events.lock().as_slice(),
        &[Event::Ready],
        "ready at once"
    );
    assert_eq!(tracker.client_id().await, id, "same connection");
    let mut other = other_connection(&server).await;
    let (fu, fs) = (users.len(), sessions.len());
    let _: () = other.set("app:session:1", "x").await.unwrap();
    let _: () = other.set("app:user:1", "x").await.unwrap();
    sessions.wait(fs, "session key", key("session:1")).await;
    let at = users.wait(fu, "user key", key("user:1")).await;
    assert!(
        !users.events.lock()[fu..at].contains(&Event::Key("session:1".into())),
        "each listener hears its own prefix"
    );
}
