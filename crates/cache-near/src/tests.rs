//! Unit tests of the near cache's protocol: tickets against invalidations, tracking loss, TTLs and
//! bounds, on tokio's paused clock where time matters.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::*;

fn tracking(config: NearConfig) -> NearCache<u64> {
    let near = NearCache::new("test", config).unwrap();
    near.tracking_ready();
    near
}

fn put(near: &NearCache<u64>, key: &str, v: u64) -> bool {
    let t = near.ticket(key);
    near.insert(t, key, Arc::new(v), None, 8)
}

#[tokio::test(start_paused = true)]
async fn a_new_cache_serves_nothing_until_tracking_is_ready() {
    let near: NearCache<u64> = NearCache::new("t", NearConfig::default()).unwrap();
    assert!(!near.is_tracking());
    assert!(!put(&near, "k", 1), "no insert before tracking");
    assert!(near.get("k").is_none());
    // A ticket taken before tracking was ready stays refused after.
    let early = near.ticket("k");
    near.tracking_ready();
    assert!(!near.insert(early, "k", Arc::new(1), None, 8));
    assert!(put(&near, "k", 2));
    assert_eq!(near.get("k").as_deref(), Some(&2));
    let s = near.stats();
    assert_eq!(
        (s.hits, s.misses, s.inserts, s.stale_inserts_refused),
        (1, 1, 1, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn an_invalidation_during_a_read_refuses_its_insert() {
    let near = tracking(NearConfig::default());
    let ticket = near.ticket("k");
    // The key changes on the server while the read is in flight.
    near.invalidate("k");
    assert!(
        !near.insert(ticket, "k", Arc::new(1), None, 8),
        "stale insert refused"
    );
    assert!(near.get("k").is_none());
    // Another key's ticket is unaffected (unless it shares the stripe).
    assert!(put(&near, "k", 2));
    near.invalidate("k");
    assert!(near.get("k").is_none(), "invalidated entry gone");
    assert_eq!(near.stats().invalidations, 2);
}

#[tokio::test(start_paused = true)]
async fn losing_tracking_empties_and_refuses_reads_that_started_before() {
    let near = tracking(NearConfig::default());
    assert!(put(&near, "a", 1));
    let in_flight = near.ticket("b");
    near.tracking_lost();
    assert!(!near.is_tracking());
    assert!(near.get("a").is_none(), "emptied");
    assert!(!put(&near, "a", 1), "no inserts while tracking is down");
    near.tracking_ready();
    assert!(
        !near.insert(in_flight, "b", Arc::new(1), None, 8),
        "read from before the loss"
    );
    assert!(put(&near, "b", 2));
    assert_eq!(near.get("b").as_deref(), Some(&2));
    assert_eq!(near.stats().flushes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_flush_empties_and_keeps_tracking() {
    let near = tracking(NearConfig::default());
    assert!(put(&near, "a", 1));
    let in_flight = near.ticket("b");
    near.flush();
    assert!(near.is_tracking());
    assert!(near.get("a").is_none());
    assert!(!near.insert(in_flight, "b", Arc::new(1), None, 8));
    assert!(put(&near, "b", 2));
}

#[tokio::test(start_paused = true)]
async fn entries_are_never_served_at_or_past_their_deadline() {
    let near = tracking(NearConfig::default().with_max_age(Duration::from_secs(10)));
    let t = near.ticket("ttl");
    let deadline = Instant::now() + Duration::from_millis(50);
    assert!(near.insert(t, "ttl", Arc::new(1), Some(deadline), 8));
    // Persistent in the store, but capped by max_age.
    assert!(put(&near, "aged", 2));
    tokio::time::advance(Duration::from_millis(49)).await;
    assert!(near.get("ttl").is_some());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(near.get("ttl").is_none(), "gone exactly at the deadline");
    assert!(near.get("aged").is_some());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(near.get("aged").is_none(), "max_age caps persistent keys");
    // A deadline already past is not inserted at all.
    let t = near.ticket("late");
    assert!(!near.insert(t, "late", Arc::new(1), Some(Instant::now()), 8));
}

#[tokio::test(start_paused = true)]
async fn both_bounds_hold() {
    let near = tracking(
        NearConfig::default()
            .with_max_entries(64)
            .with_max_bytes(1 << 20),
    );
    for i in 0..10_000 {
        put(&near, &format!("k{i}"), i);
    }
    let s = near.stats();
    assert!(s.entries <= 64, "{s:?}");
    assert!(s.entries > 0);
    let near = tracking(
        NearConfig::default()
            .with_max_entries(1_000_000)
            .with_max_bytes(10_000),
    );
    for i in 0..10_000 {
        let key = format!("k{i}");
        let t = near.ticket(&key);
        near.insert(t, &key, Arc::new(i), None, 1_000);
    }
    let s = near.stats();
    assert!(s.bytes <= 10_000, "{s:?}");
    assert!(s.entries <= 10, "{s:?}");
}

#[test]
fn zero_bounds_are_refused() {
    assert!(NearCache::<u64>::new("t", NearConfig::default().with_max_entries(0)).is_err());
    assert!(NearCache::<u64>::new("t", NearConfig::default().with_max_bytes(0)).is_err());
    assert!(
        NearCache::<u64>::new("t", NearConfig::default().with_max_age(Duration::ZERO)).is_err()
    );
}

/// Readers insert what they read while a writer changes the "store" and invalidates: once an
/// invalidation has returned, no reader may see a value older than the write it reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_hit_after_an_invalidation_returns() {
    let near = tracking(NearConfig::default());
    let store = Arc::new(AtomicU64::new(0));
    let committed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (near, store, committed, stop, progress) = (
            near.clone(),
            store.clone(),
            committed.clone(),
            stop.clone(),
            progress.clone(),
        );
        readers.push(tokio::spawn(async move {
            let mut checked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                progress.fetch_add(1, Ordering::SeqCst);
                let floor = committed.load(Ordering::SeqCst);
                match near.get("k") {
                    Some(v) => {
                        assert!(*v >= floor, "stale hit {v} after {floor} was invalidated");
                        checked += 1;
                    }
                    None => {
                        let t = near.ticket("k");
                        let v = store.load(Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        near.insert(t, "k", Arc::new(v), None, 8);
                    }
                }
                tokio::task::yield_now().await;
            }
            checked
        }));
    }
    for _ in 0..2_000 {
        let v = store.fetch_add(1, Ordering::SeqCst) + 1;
        near.invalidate("k");
        committed.store(v, Ordering::SeqCst);
        // Let the readers run a few iterations (miss, insert, hit) before the next write; no
        // timing involved, only their progress.
        let seen = progress.load(Ordering::SeqCst);
        while progress.load(Ordering::SeqCst) < seen + 4 {
            // A reader that failed its assertion makes no more progress: report it.
            if readers.iter().any(|r| r.is_finished()) {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut hits = 0;
    for r in readers {
        hits += r.await.unwrap();
    }
    assert!(hits > 0, "the readers hit at least sometimes");
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_of_a_key_share_one_read() {
    let near = tracking(NearConfig::default());
    let Miss::Lead(fill) = near.miss("k") else {
        panic!("the first miss leads")
    };
    let waiters: Vec<_> = (0..3)
        .map(|_| match near.miss("k") {
            Miss::Wait(w) => tokio::spawn(w.wait()),
            Miss::Lead(_) => panic!("a read of k is in flight: wait for it"),
        })
        .collect();
    // Another key is read on its own.
    assert!(matches!(near.miss("other"), Miss::Lead(_)));
    assert!(fill.finish(Some((Arc::new(7), None, 8))));
    for w in waiters {
        assert_eq!(w.await.unwrap(), Some(Some(Arc::new(7))));
    }
    assert_eq!(near.get("k").as_deref(), Some(&7));
    assert_eq!(near.stats().coalesced, 3);
    // The read is over: the next miss leads again.
    near.invalidate("k");
    assert!(matches!(near.miss("k"), Miss::Lead(_)));
}

#[tokio::test(start_paused = true)]
async fn a_miss_after_an_invalidation_does_not_join_the_older_read() {
    let near = tracking(NearConfig::default());
    let Miss::Lead(old) = near.miss("k") else {
        panic!("leads")
    };
    let Miss::Wait(early) = near.miss("k") else {
        panic!("joins")
    };
    // The key changes while the read is in flight: a read that starts now must not receive what
    // the older read found.
    near.invalidate("k");
    let Miss::Lead(new) = near.miss("k") else {
        panic!("a miss after the invalidation reads the store itself")
    };
    let Miss::Wait(late) = near.miss("k") else {
        panic!("and a later miss joins the newer read")
    };
    // The older read's insert is refused, but its waiter (whose call ran during the read) gets it.
    assert!(!old.finish(Some((Arc::new(1), None, 8))));
    assert_eq!(early.wait().await, Some(Some(Arc::new(1))));
    assert!(near.get("k").is_none(), "nothing stale was inserted");
    assert!(new.finish(Some((Arc::new(2), None, 8))));
    assert_eq!(late.wait().await, Some(Some(Arc::new(2))));
    assert_eq!(near.get("k").as_deref(), Some(&2));
}

#[tokio::test(start_paused = true)]
async fn a_leader_gone_without_an_answer_frees_its_waiters() {
    let near = tracking(NearConfig::default());
    let Miss::Lead(fill) = near.miss("k") else {
        panic!("leads")
    };
    let Miss::Wait(w) = near.miss("k") else {
        panic!("joins")
    };
    drop(fill); // cancelled or panicked
    assert_eq!(w.wait().await, None, "told to read for itself");
    assert!(
        matches!(near.miss("k"), Miss::Lead(_)),
        "no flight left behind"
    );
    // An absent key is an answer too.
    let Miss::Lead(fill) = near.miss("gone") else {
        panic!("leads")
    };
    let Miss::Wait(w) = near.miss("gone") else {
        panic!("joins")
    };
    assert!(!fill.finish(None));
    assert_eq!(w.wait().await, Some(None));
    // Losing tracking: a miss afterwards does not join a read that started before.
    let Miss::Lead(_before) = near.miss("k2") else {
        panic!("leads")
    };
    near.tracking_lost();
    near.tracking_ready();
    assert!(matches!(near.miss("k2"), Miss::Lead(_)));
    // `lead` never joins.
    let _a = near.lead("k3");
    let _b = near.lead("k3");
}
