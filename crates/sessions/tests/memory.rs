//! The session manager on `MemoryStore`: the shared scenarios, and expiry on a paused tokio clock
//! (the store's TTLs and the manager's clock both follow `tokio::time::advance`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_core::{codec, KeySchema, KeyTtl, Store};
use cache_memory::MemoryStore;
use common::*;
use serde_json::json;
use sessions::{Clock, CreateOptions, RevokeReason, SessionEvent, SessionManager, TokioClock};
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

#[tokio::test(start_paused = true)]
async fn lifecycle_on_memory() {
    lifecycle(&manager(&store())).await;
}

#[tokio::test(start_paused = true)]
async fn no_resurrection_on_memory() {
    no_resurrection(&manager(&store())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_update_and_rotation_races_on_memory() {
    let s = store();
    let plain = manager(&s);
    let (gated_store, gate) = pausing(s.clone());
    let gated = SessionManager::builder(gated_store)
        .with_clock(Arc::clone(plain.clock()))
        .build()
        .unwrap();
    late_update_does_not_resurrect(gated.clone(), Arc::clone(&gate), &plain).await;
    update_during_rotation_is_kept(gated.clone(), Arc::clone(&gate), &plain).await;
    delete_during_rotation_wins(gated, gate, &plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_merges_from_two_managers_on_memory() {
    let s = store();
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::new());
    let a = SessionManager::builder(s.clone())
        .with_clock(Arc::clone(&clock))
        .build()
        .unwrap();
    let b = SessionManager::builder(s.clone())
        .with_clock(clock)
        .build()
        .unwrap();
    concurrent_merges(a, b).await;
}

#[tokio::test(start_paused = true)]
async fn per_user_operations_on_memory() {
    per_user_operations(&manager(&store())).await;
}

#[tokio::test(start_paused = true)]
async fn max_sessions_on_memory() {
    let m = SessionManager::builder(store())
        .with_max_sessions_per_user(2)
        .build()
        .unwrap();
    max_sessions_rule(&m).await;
}

#[tokio::test(start_paused = true)]
async fn malformed_tokens_on_memory() {
    malformed_tokens_rejected(&manager(&store())).await;
}

#[tokio::test(start_paused = true)]
async fn no_token_anywhere_in_the_store() {
    let s = store();
    let m = manager(&s);
    let mut tokens = Vec::new();
    for u in ["u1", "u2"] {
        for _ in 0..3 {
            let c = m
                .create(u, CreateOptions::new().with_data(obj(json!({"k": "v"}))))
                .await
                .unwrap();
            tokens.push(c.token.expose().to_owned());
            let r = m.rotate(c.token.expose()).await.unwrap().unwrap();
            tokens.push(r.token.expose().to_owned());
            m.update(r.token.expose(), &obj(json!({"n": 1})))
                .await
                .unwrap()
                .unwrap();
        }
    }
    assert_no_token_in_store(&s, &tokens).await;
}

/// A session used more often than its idle timeout lives on (sliding), one left alone ends, and no
/// session outlives its absolute deadline however often it is used.
#[tokio::test(start_paused = true)]
async fn sliding_and_absolute_expiry() {
    let s = store();
    let m = manager(&s); // idle 10 min, absolute 60 min
    let busy = m.create("u", CreateOptions::new()).await.unwrap();
    let idle = m.create("u", CreateOptions::new()).await.unwrap();
    let busy_key = KeySchema::session(busy.token.handle().as_str()).unwrap();

    // Sliding: touched every 9 minutes, alive at 54 minutes, far past the 10-minute idle timeout.
    for _ in 0..6 {
        advance(9 * MIN).await;
        assert!(m.get(busy.token.expose()).await.unwrap().is_some());
    }
    // The idle one ended at 10 minutes.
    assert!(m.get(idle.token.expose()).await.unwrap().is_none());
    assert!(!s
        .exists(&KeySchema::session(idle.token.handle().as_str()).unwrap())
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
    let key = KeySchema::session(c.token.handle().as_str()).unwrap();
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
    let key = KeySchema::session(c.token.handle().as_str()).unwrap();
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
    let key = KeySchema::session(short.token.handle().as_str()).unwrap();
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
    let key = KeySchema::session(c.token.handle().as_str()).unwrap();
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
    let index = KeySchema::session_index("u").unwrap();
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
    let index = KeySchema::session_index("u").unwrap();
    // A half-created session: index entry written, record not yet.
    let pending = sessions::SessionToken::generate().unwrap();
    let pending_key = KeySchema::session(pending.handle().as_str()).unwrap();
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
        .get(&KeySchema::session(c.token.handle().as_str()).unwrap())
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
    let key = KeySchema::session(e.token.handle().as_str()).unwrap();
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

trait ScanLen {
    async fn scan_all_len(&self) -> usize;
}

impl ScanLen for MemoryStore {
    async fn scan_all_len(&self) -> usize {
        use cache_core::StoreExt;
        self.scan_all("*", 100).await.unwrap().len()
    }
}
