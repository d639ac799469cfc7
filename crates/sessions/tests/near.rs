//! The session near cache on a real `redis-server`: two instances (each its own store, so its own
//! tracking connection) and `redis-cli`; a revocation, an update or a `DEL` elsewhere is seen;
//! deadlines are enforced on hits; the touch still happens once per touch interval; a killed
//! tracking connection empties the cache; the memory backend gets none.
//!
//! Waits are bounded waits for an event, never timed assertions.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::Profile;
use cache_redis::{RedisConfig, RedisEndpoint, RedisStore};
use chrono::{DateTime, Utc};
use serde_json::json;
use sessions::keys::session_key;
use sessions::{Clock, CreateOptions, NearConfig, SessionManager, SessionToken};
use test_redis::RedisServer;

/// The wall clock plus an offset the test moves (the library's time only; Redis keeps real time).
#[derive(Debug, Default)]
struct Shifted(AtomicI64);

impl Shifted {
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for Shifted {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::TimeDelta::milliseconds(self.0.load(Ordering::SeqCst))
    }
}

async fn store(server: &RedisServer) -> RedisStore {
    let config = RedisConfig::new(Profile::Development, RedisEndpoint::server(server.url()))
        .with_key_prefix("sess");
    RedisStore::connect(&config).await.unwrap()
}

async fn instance(
    server: &RedisServer,
    clock: &Arc<Shifted>,
    near: bool,
) -> SessionManager<RedisStore> {
    let mut b = SessionManager::builder(store(server).await).with_clock(clock.clone());
    if near {
        b = b.with_near_cache(NearConfig::default().with_max_entries(100));
    }
    b.build().unwrap()
}

/// Waits (bounded: 20 s for a loaded machine) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads until the near cache serves the session (the first read after the tracking connection is
/// up inserts it).
async fn warm(m: &SessionManager<RedisStore>, token: &str) {
    let start = Instant::now();
    loop {
        let before = m.near_cache_stats().unwrap().hits;
        assert!(m.get(token).await.unwrap().is_some());
        if m.near_cache_stats().unwrap().hits > before {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the near cache never served"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_elsewhere_is_seen_after_one_invalidation() {
    let server = RedisServer::start();
    let clock = Arc::new(Shifted::default());
    let a = instance(&server, &clock, true).await;
    let b = instance(&server, &clock, true).await;
    let created = a
        .create(
            "ada",
            CreateOptions::new().with_data(json!({"n": 1}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    let token = created.token.expose().to_owned();
    warm(&b, &token).await;

    // An update on A reaches B.
    let before = b.near_cache_stats().unwrap().invalidations;
    let mut patch = sessions::SessionData::new();
    patch.insert("n".into(), json!(2));
    a.update(&token, &patch).await.unwrap().unwrap();
    eventually("B hears the update", || {
        b.near_cache_stats().unwrap().invalidations > before
    })
    .await;
    let s = b.get(&token).await.unwrap().unwrap();
    assert_eq!(
        s.data["n"],
        json!(2),
        "no stale read after the invalidation"
    );

    // A logout on A: B answers None once the invalidation arrived; the delay is measured.
    warm(&b, &token).await;
    let before = b.near_cache_stats().unwrap().invalidations;
    let revoked = Instant::now();
    assert!(a.delete(&token).await.unwrap());
    eventually("B hears the revocation", || {
        b.near_cache_stats().unwrap().invalidations > before
    })
    .await;
    eprintln!(
        "revocation seen by the other instance after {:?}",
        revoked.elapsed()
    );
    assert!(b.get(&token).await.unwrap().is_none());
    // A itself never serves it again (it dropped it before returning).
    assert!(a.get(&token).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_killed_tracking_are_seen() {
    let server = RedisServer::start();
    let clock = Arc::new(Shifted::default());
    let b = instance(&server, &clock, true).await;
    let created = b.create("bob", CreateOptions::new()).await.unwrap();
    let token = created.token.expose().to_owned();
    warm(&b, &token).await;

    // CLIENT KILL of the tracking connection empties the near cache.
    let flushes = b.near_cache_stats().unwrap().flushes;
    server.cli(["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"]);
    eventually("the loss is noticed", || {
        b.near_cache_stats().unwrap().flushes > flushes
    })
    .await;
    assert_eq!(b.near_cache_stats().unwrap().entries, 0);
    // Reads still work (through the store) and the cache fills again once tracking is back.
    warm(&b, &token).await;

    // A DEL from redis-cli.
    let handle = SessionToken::parse(&token).unwrap();
    let key = format!("sess:{}", session_key(handle.handle()).unwrap().as_str());
    let before = b.near_cache_stats().unwrap().invalidations;
    server.cli(["DEL", &key]);
    eventually("B hears the DEL", || {
        b.near_cache_stats().unwrap().invalidations > before
    })
    .await;
    assert!(b.get(&token).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_enforce_deadlines_and_still_touch() {
    let server = RedisServer::start();
    let clock = Arc::new(Shifted::default());
    let plain = instance(&server, &clock, false).await;
    let b = SessionManager::builder(store(&server).await)
        .with_clock(clock.clone())
        .with_idle_timeout(Duration::from_secs(600))
        .with_touch_interval(Duration::from_secs(60))
        .with_near_cache(NearConfig::default())
        .build()
        .unwrap();
    let created = b.create("cy", CreateOptions::new()).await.unwrap();
    let token = created.token.expose().to_owned();
    warm(&b, &token).await;
    // `plain`'s read slides the key's TTL, a change of the key: b drops its copy.
    let before = b.near_cache_stats().unwrap().invalidations;
    plain.get(&token).await.unwrap().unwrap();
    eventually("b drops its copy after plain's read", || {
        b.near_cache_stats().unwrap().invalidations > before
    })
    .await;

    // Past the touch interval: the next read (a miss) goes to the store and rewrites
    // last_accessed. (A due touch on a hit is `a_due_touch_on_a_hit_swaps_without_reading_first`.)
    clock.advance(Duration::from_secs(61));
    let hits = b.near_cache_stats().unwrap().hits;
    let (t0, session, t1) = timed_get(&b, &clock, &token).await;
    assert!(session.is_some());
    assert_eq!(b.near_cache_stats().unwrap().hits, hits, "a miss");
    let (key, record) = stored(&server, &token);
    assert_touched(&record, t0, t1);
    warm(&b, &token).await;

    // Past the idle deadline (library time): a hit answers None and removes the session.
    clock.advance(Duration::from_secs(601));
    assert!(b.get(&token).await.unwrap().is_none());
    assert_eq!(server.cli(["EXISTS", &key]), "0");
}

/// How many times the server has run `command` (`INFO commandstats`).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let prefix = format!("cmdstat_{command}:calls=");
    server
        .cli(["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |rest| {
            rest.split(',').next().unwrap_or("0").parse().unwrap()
        })
}

/// A manager with a near cache, an idle timeout of 10 minutes and a touch interval of one.
async fn touching(server: &RedisServer, clock: &Arc<Shifted>) -> SessionManager<RedisStore> {
    SessionManager::builder(store(server).await)
        .with_clock(clock.clone())
        .with_idle_timeout(Duration::from_secs(600))
        .with_touch_interval(Duration::from_secs(60))
        .with_near_cache(NearConfig::default())
        .build()
        .unwrap()
}

/// The session's record as Redis holds it (the codec's envelope: the record is under `d`).
fn stored(server: &RedisServer, token: &str) -> (String, serde_json::Value) {
    let key = format!(
        "sess:{}",
        session_key(SessionToken::parse(token).unwrap().handle())
            .unwrap()
            .as_str()
    );
    let value = serde_json::from_str(&server.cli(["GET", &key])).unwrap();
    (key, value)
}

/// `get` with the library clock read just before and just after it (milliseconds): a touch in
/// between stamps `last_accessed` within that range.
async fn timed_get(
    m: &SessionManager<RedisStore>,
    clock: &Shifted,
    token: &str,
) -> (i64, Option<sessions::Session>, i64) {
    let t0 = clock.now().timestamp_millis();
    let session = m.get(token).await.unwrap();
    (t0, session, clock.now().timestamp_millis())
}

/// The stored record's `last_accessed` was rewritten between `t0` and `t1`.
fn assert_touched(record: &serde_json::Value, t0: i64, t1: i64) {
    let at = record["d"]["last_accessed_ms"].as_i64().unwrap();
    assert!(
        (t0..=t1).contains(&at),
        "last_accessed not rewritten: {record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_touch_on_a_hit_swaps_without_reading_first() {
    let server = RedisServer::start();
    let clock = Arc::new(Shifted::default());
    let b = touching(&server, &clock).await;
    let created = b.create("dot", CreateOptions::new()).await.unwrap();
    let token = created.token.expose().to_owned();
    warm(&b, &token).await;

    clock.advance(Duration::from_secs(61));
    // A read through the store is `GET` and `PTTL` in one pipeline; nothing else sends `PTTL` (the
    // compare-and-swap script's own `GET` counts as a `GET`, so `GET`s cannot tell).
    let reads = calls(&server, "pttl");
    let hits = b.near_cache_stats().unwrap().hits;
    let (t0, session, t1) = timed_get(&b, &clock, &token).await;
    let session = session.expect("the session is live");
    assert!((t0..=t1).contains(&session.last_accessed.timestamp_millis()));
    assert_eq!(
        b.near_cache_stats().unwrap().hits,
        hits + 1,
        "served from the held record"
    );
    assert_eq!(
        calls(&server, "pttl"),
        reads,
        "no read before the compare-and-swap"
    );
    assert_touched(&stored(&server, &token).1, t0, t1);
    // The next read misses (its own write invalidated the copy) and finds the touched record.
    assert!(b.get(&token).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_touch_on_a_hit_reads_first_when_redis_holds_other_bytes() {
    let server = RedisServer::start();
    let clock = Arc::new(Shifted::default());
    let b = touching(&server, &clock).await;
    let created = b.create("dot", CreateOptions::new()).await.unwrap();
    let token = created.token.expose().to_owned();
    // A record as a later version might write it: a field this version does not know, which it
    // ignores on read, so the record held here encodes to other bytes than Redis holds.
    let (key, mut record) = stored(&server, &token);
    record["d"]["added_later"] = json!(true);
    let ttl = server.cli(["PTTL", &key]);
    server.cli(["SET", &key, &record.to_string(), "PX", &ttl]);
    warm(&b, &token).await;

    clock.advance(Duration::from_secs(61));
    let reads = calls(&server, "pttl");
    let (t0, session, t1) = timed_get(&b, &clock, &token).await;
    let session = session.expect("the session is live");
    assert!((t0..=t1).contains(&session.last_accessed.timestamp_millis()));
    assert_eq!(
        calls(&server, "pttl"),
        reads + 1,
        "the swap refused, one read (GET and PTTL), then the touch"
    );
    assert_touched(&stored(&server, &token).1, t0, t1);
}

#[tokio::test]
async fn the_memory_backend_gets_no_near_cache() {
    let m = SessionManager::builder(cache_memory::MemoryStore::new())
        .with_near_cache(NearConfig::default())
        .build()
        .unwrap();
    assert!(m.near_cache_stats().is_none());
    let created = m.create("dee", CreateOptions::new()).await.unwrap();
    assert!(m.get(created.token.expose()).await.unwrap().is_some());
}
