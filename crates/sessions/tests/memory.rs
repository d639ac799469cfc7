//! The session manager on `MemoryStore`: the shared scenarios (on a paused tokio clock where they
//! run on one task), and expiry on a paused tokio clock (the store's TTLs and the manager's clock
//! both follow `tokio::time::advance`).

mod common;

use std::time::Duration;

use cache_core::{codec, KeyTtl, Store};
use cache_memory::MemoryStore;
use common::*;
use serde_json::json;
use sessions::keys::{index_key, session_key};
use sessions::{CreateOptions, RevokeReason, SessionEvent, SessionManager};
use tokio::time::advance;

const MIN: Duration = Duration::from_secs(60);

fn manager(store: &MemoryStore) -> SessionManager<MemoryStore> {
    SessionManager::builder(store.clone())
        .with_idle_timeout(10 * MIN)
        .with_absolute_lifetime(60 * MIN)
        .with_touch_interval(MIN)
        .build()
        .unwrap()
}

fn store() -> MemoryStore {
    MemoryStore::builder().with_prefix("test").build().unwrap()
}

/// Every store of a test is a clone of one `MemoryStore`; the usual manager has the short timeouts
/// of [`manager`].
struct MemoryFixture {
    store: MemoryStore,
}

impl Fixture for MemoryFixture {
    type Store = MemoryStore;

    async fn connect(&self) -> MemoryStore {
        self.store.clone()
    }

    async fn manager(&self) -> SessionManager<MemoryStore> {
        manager(&self.store)
    }
}

fn memory_fixture(_test: &str) -> MemoryFixture {
    MemoryFixture { store: store() }
}

common::session_scenarios! {
    fixture: memory_fixture,
    sequential: #[tokio::test(start_paused = true)],
    concurrent: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
}

/// A session used more often than its idle timeout lives on (sliding), one left alone ends, and no
/// session outlives its absolute deadline however often it is used.
#[tokio::test(start_paused = true)]
async fn sliding_and_absolute_expiry() {
    let s = store();
    let m = manager(&s); // idle 10 min, absolute 60 min
    let busy = m.create("u", CreateOptions::new()).await.unwrap();
    let idle = m.create("u", CreateOptions::new()).await.unwrap();
    let busy_key = session_key(busy.token.handle()).unwrap();

    // Sliding: touched every 9 minutes, alive at 54 minutes, far past the 10-minute idle timeout.
    for _ in 0..6 {
        advance(9 * MIN).await;
        assert!(m.get(busy.token.expose()).await.unwrap().is_some());
    }
    // The idle one ended at 10 minutes.
    assert!(m.get(idle.token.expose()).await.unwrap().is_none());
    assert!(!s
        .exists(&session_key(idle.token.handle()).unwrap())
        .await
        .unwrap());

    // 54 minutes in: 6 minutes to the absolute deadline, less than the idle timeout, so the TTL is
    // clamped to the deadline.
    match s.ttl(&busy_key).await.unwrap() {
        KeyTtl::ExpiresIn(d) => assert!(d <= 6 * MIN, "TTL {d:?} not clamped"),
        other => panic!("unexpected {other:?}"),
    }
    advance(5 * MIN).await;
    assert!(m.get(busy.token.expose()).await.unwrap().is_some());
    advance(MIN).await; // exactly 60 minutes
    assert!(
        m.get(busy.token.expose()).await.unwrap().is_none(),
        "absolute deadline"
    );
    assert!(!s.exists(&busy_key).await.unwrap());
}

/// The library decides expiry itself: a session whose key lost its TTL is still not returned after
/// its idle or absolute deadline.
#[tokio::test(start_paused = true)]
async fn library_checks_deadlines_not_the_store_ttl() {
    let s = store();
    let m = manager(&s);
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    let key = session_key(c.token.handle()).unwrap();
    assert!(s.persist(&key).await.unwrap()); // an operator "fixes" the TTL
    advance(10 * MIN).await;
    assert!(s.exists(&key).await.unwrap());
    assert!(m.get(c.token.expose()).await.unwrap().is_none());
    assert!(
        !s.exists(&key).await.unwrap(),
        "expired record removed on access"
    );
    assert!(m
        .update(c.token.expose(), &obj(json!({"a": 1})))
        .await
        .unwrap()
        .is_none());
}

/// `last_accessed` is rewritten only when older than the touch interval; between rewrites a `get` is
/// a single GETEX that changes nothing but the TTL.
#[tokio::test(start_paused = true)]
async fn touch_interval_limits_rewrites() {
    let s = store();
    let m = manager(&s); // touch interval 1 min
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    let key = session_key(c.token.handle()).unwrap();
    let raw0 = s.get(&key).await.unwrap().unwrap();
    advance(Duration::from_secs(30)).await;
    let got = m.get(c.token.expose()).await.unwrap().unwrap();
    assert_eq!(
        got.last_accessed,
        c.session.created_at + chrono::TimeDelta::seconds(30)
    );
    assert_eq!(
        s.get(&key).await.unwrap().unwrap(),
        raw0,
        "no rewrite within the interval"
    );
    advance(Duration::from_secs(31)).await;
    m.get(c.token.expose()).await.unwrap().unwrap();
    let raw1 = s.get(&key).await.unwrap().unwrap();
    assert_ne!(raw1, raw0);
    let v: serde_json::Value = codec::decode(&raw1).unwrap();
    assert_eq!(
        v["last_accessed_ms"].as_i64().unwrap(),
        c.session.created_at.timestamp_millis() + 61_000
    );
    // The stored last access is what listings show.
    let listed = m.list_user_sessions("u").await.unwrap();
    assert_eq!(
        listed[0].last_accessed,
        got.last_accessed + chrono::TimeDelta::seconds(31)
    );
}

/// Per-session idle timeouts and `extend` work with the single default-TTL GETEX: the TTL is
/// corrected to the session's own timeout.
#[tokio::test(start_paused = true)]
async fn per_session_idle_timeout_and_extend() {
    let s = store();
    let m = manager(&s); // default idle 10 min
    let short = m
        .create("u", CreateOptions::new().with_idle_timeout(2 * MIN))
        .await
        .unwrap();
    let key = session_key(short.token.handle()).unwrap();
    advance(MIN).await;
    assert!(m.get(short.token.expose()).await.unwrap().is_some());
    let ttl = s.ttl(&key).await.unwrap().remaining().unwrap();
    assert!(
        ttl <= 2 * MIN,
        "GETEX's default TTL corrected to the session's: {ttl:?}"
    );
    advance(2 * MIN).await;
    assert!(m.get(short.token.expose()).await.unwrap().is_none());

    // extend: a longer idle timeout for one session, still capped by the absolute deadline.
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    let ext = m.extend(c.token.expose(), 30 * MIN).await.unwrap().unwrap();
    assert_eq!(ext.idle_timeout, 30 * MIN);
    advance(25 * MIN).await;
    assert!(
        m.get(c.token.expose()).await.unwrap().is_some(),
        "idle 30 min now"
    );
    m.extend(c.token.expose(), 600 * MIN)
        .await
        .unwrap()
        .unwrap();
    let key = session_key(c.token.handle()).unwrap();
    let ttl = s.ttl(&key).await.unwrap().remaining().unwrap();
    assert!(ttl <= 35 * MIN, "never past the absolute deadline: {ttl:?}");
    advance(35 * MIN).await;
    assert!(m.get(c.token.expose()).await.unwrap().is_none());
}

/// Listings never show an expired session, and the index heals: entries of sessions that expired
/// are removed by listing (idle expiry) and pruning (absolute deadline), and by cleanup for users who
/// never come back.
#[tokio::test(start_paused = true)]
async fn listing_hides_expired_sessions_and_the_index_heals() {
    let s = store();
    let m = SessionManager::builder(s.clone())
        .with_idle_timeout(10 * MIN)
        .with_absolute_lifetime(60 * MIN)
        .with_clock_skew_tolerance(MIN)
        .build()
        .unwrap();
    let index = index_key("u").unwrap();
    let keep = m.create("u", CreateOptions::new()).await.unwrap();
    let _idle = m.create("u", CreateOptions::new()).await.unwrap();
    let _short = m
        .create("u", CreateOptions::new().with_absolute_lifetime(5 * MIN))
        .await
        .unwrap();
    assert_eq!(s.zcard(&index).await.unwrap(), 3);

    advance(6 * MIN).await;
    m.get(keep.token.expose()).await.unwrap().unwrap();
    // `short` is past its absolute deadline (its key expired with it); `idle` still lives.
    let listed = m.list_user_sessions("u").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        s.zcard(&index).await.unwrap(),
        2,
        "entry of the vanished session removed"
    );

    advance(5 * MIN).await; // 11 min: `idle` expired (10 min idle)
    m.get(keep.token.expose()).await.unwrap().unwrap();
    let listed = m.list_user_sessions("u").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, *keep.token.handle());
    assert_eq!(s.zcard(&index).await.unwrap(), 1);

    // Users who never come back: cleanup.
    for u in ["a", "b", "c"] {
        m.create(u, CreateOptions::new()).await.unwrap();
        m.create(u, CreateOptions::new().with_absolute_lifetime(MIN))
            .await
            .unwrap();
    }
    advance(3 * MIN).await;
    m.get(keep.token.expose()).await.unwrap().unwrap();
    let report = m.cleanup().await.unwrap();
    assert_eq!(report.indexes_scanned, 4);
    assert_eq!(report.entries_found, 7);
    assert_eq!(report.expired_entries_removed, 3, "{report:?}");
    assert_eq!(report.entries_remaining, 4, "{report:?}");
    advance(11 * MIN).await; // the three long ones expire by idle time, `keep` too
    let report = m.cleanup().await.unwrap();
    assert_eq!(report.entries_found, 4, "{report:?}");
    assert_eq!(report.orphan_entries_removed, 4, "{report:?}");
    assert_eq!(report.entries_remaining, 0);
    let report = m.cleanup().await.unwrap();
    assert_eq!(report.indexes_scanned, 0, "empty indexes are gone");
}

/// An index entry never disappears for a session that exists, even when a listing runs between
/// the index write and the record write of a create (simulated by writing the entry by hand).
#[tokio::test(start_paused = true)]
async fn listing_during_create_keeps_the_entry() {
    let s = store();
    let m = manager(&s);
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    let index = index_key("u").unwrap();
    // A half-created session: index entry written, record not yet.
    let pending = sessions::SessionToken::generate().unwrap();
    let pending_key = session_key(pending.handle()).unwrap();
    s.zadd(&index, pending.handle().as_str(), 1e15)
        .await
        .unwrap();
    assert_eq!(m.list_user_sessions("u").await.unwrap().len(), 1);
    assert_eq!(
        s.zcard(&index).await.unwrap(),
        1,
        "the stale entry was removed"
    );
    // Now the record appears (a create finishing): an entry is there because create re-adds it;
    // here we check the listing's own re-check by creating the record before the listing's removal
    // completes, i.e. a record that exists when the listing looks again.
    let raw = s
        .get(&session_key(c.token.handle()).unwrap())
        .await
        .unwrap()
        .unwrap();
    s.set(&pending_key, &raw, cache_core::SetOptions::ttl(10 * MIN))
        .await
        .unwrap();
    s.zadd(&index, pending.handle().as_str(), 1e15)
        .await
        .unwrap();
    let listed = m.list_user_sessions("u").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(s.zcard(&index).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn events_are_broadcast() {
    let m = manager(&store());
    let mut rx = m.subscribe();
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    let r = m.rotate(c.token.expose()).await.unwrap().unwrap();
    m.delete(r.token.expose()).await.unwrap();
    let e = m.create("u", CreateOptions::new()).await.unwrap();
    // Without a TTL on the key, only the library's own check can find it expired.
    let key = session_key(e.token.handle()).unwrap();
    assert!(m.store().persist(&key).await.unwrap());
    advance(11 * MIN).await;
    assert!(m.get(e.token.expose()).await.unwrap().is_none());
    let h = |t: &sessions::SessionToken| t.handle().clone();
    assert_eq!(
        rx.recv().await.unwrap(),
        SessionEvent::Created {
            handle: h(&c.token),
            user_id: "u".into()
        }
    );
    assert_eq!(
        rx.recv().await.unwrap(),
        SessionEvent::Rotated {
            old: h(&c.token),
            new: h(&r.token),
            user_id: "u".into()
        }
    );
    assert_eq!(
        rx.recv().await.unwrap(),
        SessionEvent::Revoked {
            handle: h(&r.token),
            user_id: Some("u".into()),
            reason: RevokeReason::Deleted
        }
    );
    assert!(matches!(
        rx.recv().await.unwrap(),
        SessionEvent::Created { .. }
    ));
    assert_eq!(
        rx.recv().await.unwrap(),
        SessionEvent::ExpiredOnAccess {
            handle: h(&e.token),
            user_id: "u".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_rejected_and_changes_nothing() {
    let s = store();
    let m = SessionManager::builder(s.clone())
        .with_max_session_bytes(1024)
        .build()
        .unwrap();
    assert!(m.create("", CreateOptions::new()).await.is_err());
    assert!(m
        .create(&"x".repeat(300), CreateOptions::new())
        .await
        .is_err());
    assert!(m
        .create("u", CreateOptions::new().with_idle_timeout(Duration::ZERO))
        .await
        .is_err());
    let big = obj(json!({"blob": "x".repeat(2000)}));
    let err = m
        .create("u", CreateOptions::new().with_data(big.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, cache_core::Error::Capacity(_)), "{err}");
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    let err = m.update(c.token.expose(), &big).await.unwrap_err();
    assert!(matches!(err, cache_core::Error::Capacity(_)));
    assert!(m
        .get(c.token.expose())
        .await
        .unwrap()
        .unwrap()
        .data
        .is_empty());
    assert_eq!(
        s.scan_all_len().await,
        2,
        "one session and one index, nothing else"
    );
    assert!(SessionManager::builder(s.clone())
        .with_max_sessions_per_user(0)
        .build()
        .is_err());
    assert!(SessionManager::builder(s)
        .with_absolute_lifetime(Duration::ZERO)
        .build()
        .is_err());
}

/// `CACHE_TTL_SESSION`, through `SessionConfig`, is the default idle timeout of new sessions; a later
/// builder call still wins.
#[tokio::test(start_paused = true)]
async fn session_config_sets_the_default_idle_timeout() {
    let config = sessions::SessionConfig::from_lookup(|k| {
        (k == "CACHE_TTL_SESSION").then(|| "5m".to_owned())
    })
    .unwrap();
    let m = SessionManager::builder(store())
        .with_config(&config)
        .build()
        .unwrap();
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    assert_eq!(c.session.idle_timeout, 5 * MIN);
    let m = SessionManager::builder(store())
        .with_config(&config)
        .with_idle_timeout(7 * MIN)
        .build()
        .unwrap();
    let c = m.create("u", CreateOptions::new()).await.unwrap();
    assert_eq!(c.session.idle_timeout, 7 * MIN);
}

trait ScanLen {
    async fn scan_all_len(&self) -> usize;
}

impl ScanLen for MemoryStore {
    async fn scan_all_len(&self) -> usize {
        use cache_core::StoreExt;
        self.scan_all("*", 100).await.unwrap().len()
    }
}
