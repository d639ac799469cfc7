//! The near-cache tracking of `RedisStore` (`Store::track_changes`, `src/tracking.rs`) against
//! real `redis-server` processes: writes,
//! deletes and expiry through another connection and through `redis-cli` are reported; `FLUSHDB`
//! is a flush; `CLIENT KILL` of the tracking connection and a server restart are reported as lost
//! and tracking comes back by itself.
//!
//! Waits are bounded waits for an event (never sleeps asserting time).

mod common;

use std::sync::{Arc, Weak};
use std::time::Duration;

use cache_core::tracking::InvalidationListener;
use cache_core::{Bytes, KeyTtl, SetOptions, Store};
use cache_redis::RedisStore;
use parking_lot::Mutex;
use redis::AsyncCommands;
use test_redis::RedisServer;
use tokio::sync::Notify;

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

impl InvalidationListener for Recorder {
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

/// A store with prefix `app` and a recorder registered for `prefix`, tracking.
async fn setup(server: &RedisServer, prefix: &str) -> (RedisStore, Arc<Recorder>) {
    let store = RedisStore::connect(&common::config(&server.url()).with_key_prefix("app"))
        .await
        .unwrap();
    let rec = Arc::new(Recorder::default());
    register(&store, prefix, &rec).await;
    rec.wait(0, "ready", |e| *e == Event::Ready).await;
    assert!(store.tracking_stats().unwrap().up);
    (store, rec)
}

async fn register(store: &RedisStore, prefix: &str, rec: &Arc<Recorder>) {
    let weak: Weak<dyn InvalidationListener> =
        Arc::downgrade(&(rec.clone() as Arc<dyn InvalidationListener>));
    store.track_changes(prefix, weak).await.unwrap();
}

/// The server's id of the tracking connection: the client with the `t` (tracking) flag.
fn tracking_client_id(server: &RedisServer) -> Option<String> {
    server.cli(["CLIENT", "LIST"]).lines().find_map(|line| {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        };
        if field("flags")?.contains('t') {
            field("id").map(str::to_owned)
        } else {
            None
        }
    })
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
    let (store, rec) = setup(&server, "user:").await;
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
    let stats = store.tracking_stats().unwrap();
    assert!(stats.up, "a flush does not stop tracking");
    assert!(stats.keys >= 25 && stats.flushes == 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tracking_connection_is_lost_then_tracked_again() {
    let server = RedisServer::start();
    let (store, rec) = setup(&server, "user:").await;
    let id = tracking_client_id(&server).expect("a tracking connection");
    let from = rec.len();
    server.cli(["CLIENT", "KILL", "ID", &id]);
    let lost = rec.wait(from, "lost", |e| *e == Event::Lost).await;
    let ready = rec.wait(lost, "ready again", |e| *e == Event::Ready).await;
    assert!(ready > lost);
    // And it reports changes again, on a new connection.
    assert_ne!(tracking_client_id(&server), Some(id));
    let mut other = other_connection(&server).await;
    let from = rec.len();
    let _: () = other.set("app:user:9", "x").await.unwrap();
    rec.wait(from, "SET after reconnect", key("user:9")).await;
    assert_eq!(store.tracking_stats().unwrap().losses, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_lost_then_tracked_again() {
    let server = RedisServer::start();
    let (store, rec) = setup(&server, "session:").await;
    let from = rec.len();
    server.restart();
    let lost = rec.wait(from, "lost", |e| *e == Event::Lost).await;
    rec.wait(lost, "ready again", |e| *e == Event::Ready).await;
    let mut other = other_connection(&server).await;
    let from = rec.len();
    let _: () = other.set("app:session:abc", "x").await.unwrap();
    rec.wait(from, "SET after restart", key("session:abc"))
        .await;
    assert!(store.tracking_stats().unwrap().connects >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_fails_the_health_check() {
    let server = RedisServer::start();
    let (_store, rec) = setup(&server, "user:").await;
    let from = rec.len();
    server.freeze();
    rec.wait(from, "lost", |e| *e == Event::Lost).await;
    server.thaw();
    rec.wait(from, "ready again", |e| *e == Event::Ready).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_registered_later_are_added_to_the_live_connection() {
    let server = RedisServer::start();
    let (store, users) = setup(&server, "user:").await;
    let id = tracking_client_id(&server);
    let sessions = Arc::new(Recorder::default());
    register(&store, "session:", &sessions).await;
    assert_eq!(
        sessions.events.lock().as_slice(),
        &[Event::Ready],
        "ready at once"
    );
    assert_eq!(tracking_client_id(&server), id, "same connection");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_ttl_reads_value_and_ttl_in_one_call() {
    let server = RedisServer::start();
    let store = common::store(&server).await;
    assert_eq!(store.get_with_ttl("k").await.unwrap(), None);
    store.set("k", b"v", SetOptions::new()).await.unwrap();
    assert_eq!(
        store.get_with_ttl("k").await.unwrap(),
        Some((Bytes::from_static(b"v"), KeyTtl::Persistent))
    );
    store
        .set("k", b"w", SetOptions::ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    let (value, ttl) = store.get_with_ttl("k").await.unwrap().unwrap();
    assert_eq!(value, &b"w"[..]);
    let left = ttl.remaining().expect("a TTL");
    assert!(
        left <= Duration::from_secs(60) && left > Duration::from_secs(50),
        "{left:?}"
    );
    store.zadd("z", "m", 1.0).await.unwrap();
    assert!(store.get_with_ttl("z").await.is_err(), "WRONGTYPE");
}
