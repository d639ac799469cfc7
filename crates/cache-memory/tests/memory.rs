//! Behaviour specific to `MemoryStore`: bounds and eviction order, value size limits, background
//! expiry on tokio's clock, the reaper's lifecycle, configuration and statistics.

use std::time::Duration;

use cache_core::{
    Bytes, Error, ErrorKind, KeyTtl, Profile, ScanCursor, SetOptions, Store, StoreExt,
};
use cache_memory::{MemoryConfig, MemoryStore};

fn set_opts() -> SetOptions {
    SetOptions::new()
}

async fn put(store: &MemoryStore, key: &str, value: &[u8]) {
    assert!(store.set(key, value, set_opts()).await.unwrap());
}

async fn present(store: &MemoryStore, key: &str) -> bool {
    store.exists(key).await.unwrap()
}

#[tokio::test]
async fn entry_bound_evicts_least_recently_used() {
    let store = MemoryStore::builder().with_max_entries(3).build().unwrap();
    put(&store, "a", b"1").await;
    put(&store, "b", b"2").await;
    put(&store, "c", b"3").await;
    // Reading `a` makes `b` the least recently used.
    assert!(store.get("a").await.unwrap().is_some());
    put(&store, "d", b"4").await;
    assert!(!present(&store, "b").await, "b was least recently used");
    assert!(present(&store, "a").await);
    // Overwriting `c` uses it: `a` is now the oldest use... then d, c.
    put(&store, "c", b"33").await;
    put(&store, "e", b"5").await;
    assert!(!present(&store, "a").await, "a was least recently used");
    for k in ["c", "d", "e"] {
        assert!(present(&store, k).await, "{k} kept");
    }
    assert_eq!(store.entry_count(), 3);
    let stats = store.stats().await.unwrap().unwrap();
    assert_eq!(stats.evicted_keys, Some(2));
}

#[tokio::test]
async fn byte_bound_evicts_and_refuses_what_cannot_fit() {
    // Sizes count key + value: "k1" + 20 bytes = 22.
    let store = MemoryStore::builder().with_max_bytes(50).build().unwrap();
    put(&store, "k1", &[1; 20]).await;
    put(&store, "k2", &[2; 20]).await;
    assert_eq!(store.approx_bytes(), 44);
    put(&store, "k3", &[3; 20]).await;
    assert!(!present(&store, "k1").await, "k1 evicted to make room");
    assert!(present(&store, "k2").await && present(&store, "k3").await);
    assert!(store.approx_bytes() <= 50);

    // An entry larger than the whole bound is refused and nothing changes.
    let err = store.set("big", &[0; 49], set_opts()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity, "{err}");
    assert!(present(&store, "k2").await && present(&store, "k3").await);
    assert!(!present(&store, "big").await);
    // The same through set_many (nothing written) and CAS.
    let err = store
        .set_many(
            &[("k4", b"x"), ("big", &[0; 49])],
            cache_core::Expiry::Never,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity);
    assert!(!present(&store, "k4").await);
    let err = store
        .compare_and_swap(
            "k2",
            Some(&[2; 20]),
            Some(&[0; 60]),
            cache_core::Expiry::Never,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity);
    assert_eq!(
        store.get("k2").await.unwrap(),
        Some(Bytes::from(vec![2; 20]))
    );
}

#[tokio::test]
async fn growing_a_sorted_set_past_the_bound_is_refused() {
    let store = MemoryStore::builder().with_max_bytes(40).build().unwrap();
    // "z" (1) + "member-1" (8) + 8 = 17 bytes; a second member makes 33; a third would make 49.
    assert!(store.zadd("z", "member-1", 1.0).await.unwrap());
    assert!(store.zadd("z", "member-2", 2.0).await.unwrap());
    let err = store.zadd("z", "member-3", 3.0).await.unwrap_err();
    assert!(matches!(err, Error::Capacity(_)), "{err}");
    assert_eq!(store.zcard("z").await.unwrap(), 2, "nothing added");
    // Updating a score does not grow the set.
    assert!(!store.zadd("z", "member-1", 5.0).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn expired_entries_go_before_live_ones_are_evicted() {
    let store = MemoryStore::builder().with_max_entries(2).build().unwrap();
    put(&store, "live", b"1").await;
    store
        .set("short", b"2", SetOptions::ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    put(&store, "new", b"3").await;
    assert!(present(&store, "live").await, "the expired entry made room");
    let stats = store.stats().await.unwrap().unwrap();
    assert_eq!(stats.evicted_keys, Some(0));
    assert_eq!(stats.expired_keys, Some(1));
}

#[tokio::test]
async fn max_value_bytes_comes_from_the_config() {
    let config = MemoryConfig::new(Profile::Production)
        .with_key_prefix("svc")
        .with_max_value_bytes(10);
    let store = MemoryStore::from_config(&config).unwrap();
    assert_eq!(store.prefix(), "svc");
    assert!(store.set("k", &[0; 10], set_opts()).await.unwrap());
    let err = store.set("k", &[0; 11], set_opts()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Capacity);
    assert!(err.to_string().contains("11 bytes"), "{err}");
    assert_eq!(
        store.get("k").await.unwrap(),
        Some(Bytes::from(vec![0; 10])),
        "unchanged"
    );
}

#[tokio::test]
async fn bounds_come_from_the_config() {
    let config = MemoryConfig::new(Profile::Production).with_max_entries(1);
    let store = MemoryStore::from_config(&config).unwrap();
    put(&store, "a", b"1").await;
    put(&store, "b", b"2").await;
    assert!(!present(&store, "a").await, "evicted by the entry bound");
    assert!(present(&store, "b").await);
    let err = MemoryStore::from_config(&MemoryConfig::default().with_max_bytes(0)).unwrap_err();
    assert!(
        matches!(&err, Error::Config { setting, .. } if setting == "CACHE_MEMORY_MAX_BYTES"),
        "{err}"
    );
}

#[test]
fn invalid_options_are_config_errors() {
    for (builder, setting) in [
        (MemoryStore::builder().with_max_entries(0), "max_entries"),
        (MemoryStore::builder().with_max_bytes(0), "max_bytes"),
        (
            MemoryStore::builder().with_max_value_bytes(0),
            "max_value_bytes",
        ),
        (
            MemoryStore::builder().with_reap_interval(Duration::ZERO),
            "reap_interval",
        ),
        (
            MemoryStore::builder().with_reap_interval(Duration::MAX),
            "reap_interval",
        ),
        (
            MemoryStore::builder().with_prefix("a*b"),
            "CACHE_KEY_PREFIX",
        ),
    ] {
        match builder.build() {
            Err(Error::Config { setting: s, .. }) => assert_eq!(s, setting),
            other => panic!("{setting}: expected a config error, got {other:?}"),
        }
    }
    assert!(MemoryStore::new().with_prefix("bad prefix").is_err());
}

#[tokio::test(start_paused = true)]
async fn background_expiry_removes_entries_nobody_reads() {
    let store = MemoryStore::builder()
        .with_reap_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let keys: Vec<String> = (0..2500).map(|i| format!("k{i}")).collect();
    let entries: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    store
        .set_many(&entries, cache_core::Expiry::In(Duration::from_millis(500)))
        .await
        .unwrap();
    put(&store, "persistent", b"v").await;
    assert_eq!(store.entry_count(), 2501);
    // Before the first tick nothing is reaped (the entries are expired but held).
    tokio::time::advance(Duration::from_millis(900)).await;
    tokio::task::yield_now().await;
    assert_eq!(store.entry_count(), 2501);
    // After the tick the reaper removes them (in batches, yielding between them).
    tokio::time::advance(Duration::from_millis(200)).await;
    for _ in 0..20 {
        if store.entry_count() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(store.entry_count(), 1, "only the persistent key is left");
    assert_eq!(store.approx_bytes(), "persistent".len() + 1);
}

#[tokio::test(start_paused = true)]
async fn the_reaper_ends_when_the_last_store_is_dropped() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let store = MemoryStore::new();
    let clone = store.with_prefix("p").unwrap();
    put(&store, "k", b"v").await;
    assert_eq!(metrics.num_alive_tasks(), before + 1, "one reaper started");
    put(&clone, "k", b"v").await;
    assert_eq!(metrics.num_alive_tasks(), before + 1, "still one reaper");
    drop(store);
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before + 1,
        "a clone keeps it alive"
    );
    drop(clone);
    tokio::time::advance(Duration::from_secs(2)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(metrics.num_alive_tasks(), before, "the reaper ended");
}

#[test]
fn a_store_outlives_runtimes_and_reaps_in_each() {
    // Built outside any runtime: no reaper yet, and no panic.
    let store = MemoryStore::builder()
        .with_reap_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    for round in 0..2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            store
                .set("k", b"v", SetOptions::ttl(Duration::from_millis(5)))
                .await
                .unwrap();
            tokio::time::advance(Duration::from_millis(30)).await;
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert_eq!(store.entry_count(), 0, "round {round}: reaped");
        });
        // Dropping the runtime ends its reaper; the next runtime starts a new one.
        drop(rt);
    }
}

#[tokio::test(start_paused = true)]
async fn ttl_is_exact_on_the_paused_clock_and_rounds_up() {
    let store = MemoryStore::new();
    store
        .set("k", b"v", SetOptions::ttl(Duration::from_micros(10_001)))
        .await
        .unwrap();
    assert_eq!(
        store.ttl("k").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_millis(11))
    );
    tokio::time::advance(Duration::from_millis(4)).await;
    assert_eq!(
        store.ttl("k").await.unwrap(),
        KeyTtl::ExpiresIn(Duration::from_millis(7))
    );
    // GETEX restarts the countdown from now.
    store.get_ex("k", Duration::from_millis(3)).await.unwrap();
    tokio::time::advance(Duration::from_millis(2)).await;
    assert!(present(&store, "k").await);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!present(&store, "k").await);
    for bad in [Duration::ZERO] {
        let err = store
            .set("k", b"v", SetOptions::ttl(bad))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("TTL"), "{err}");
    }
}

#[tokio::test]
async fn scan_continues_when_the_cursor_key_is_deleted_between_pages() {
    let store = MemoryStore::builder().with_prefix("s").build().unwrap();
    for i in 0..30 {
        put(&store, &format!("k{i:02}"), b"v").await;
    }
    let page = store.scan("k*", ScanCursor::start(), 10).await.unwrap();
    assert_eq!(page.keys.len(), 10);
    let next = page.next.unwrap();
    // Delete the key the cursor points at and one not returned yet (the store's order is by shard,
    // then by key, so "further ahead" is any key the first page did not return).
    let last = page.keys.last().unwrap().clone();
    let ahead = (0..30)
        .map(|i| format!("k{i:02}"))
        .find(|k| !page.keys.contains(k))
        .unwrap();
    store.delete(&[&last, &ahead]).await.unwrap();
    let mut seen = page.keys;
    let mut cursor = next;
    loop {
        let page = store.scan("k*", cursor, 10).await.unwrap();
        seen.extend(page.keys);
        match page.next {
            Some(n) => cursor = n,
            None => break,
        }
    }
    assert_eq!(seen.len(), 29, "every key that stayed was returned once");
    assert!(!seen.contains(&ahead));
}

#[tokio::test]
async fn scan_uses_the_literal_prefix_and_bounds_its_work() {
    let store = MemoryStore::builder().with_prefix("s").build().unwrap();
    for i in 0..100 {
        put(&store, &format!("a:{i}"), b"v").await;
        put(&store, &format!("b:{i}"), b"v").await;
    }
    // A pattern with a literal prefix finishes in one page of 100 even though the prefix holds 200
    // keys: the scan starts at `b:` and stops after it.
    let page = store.scan("b:*", ScanCursor::start(), 100).await.unwrap();
    assert_eq!(page.keys.len(), 100);
    assert!(page.next.is_none());
    // u32::MAX as count is accepted (capped internally).
    let all = store
        .scan("*", ScanCursor::start(), u32::MAX)
        .await
        .unwrap();
    assert_eq!(all.keys.len(), 200);
}

#[tokio::test]
async fn flush_prefix_deletes_in_batches_and_counts_exactly() {
    let root = MemoryStore::new();
    let a = root.with_prefix("a").unwrap();
    let ab = root.with_prefix("ab").unwrap();
    let keys: Vec<String> = (0..2500).map(|i| format!("k{i}")).collect();
    let entries: Vec<(&str, &[u8])> = keys.iter().map(|k| (k.as_str(), &b"v"[..])).collect();
    a.set_many(&entries, cache_core::Expiry::Never)
        .await
        .unwrap();
    ab.set_many(&entries[..10], cache_core::Expiry::Never)
        .await
        .unwrap();
    assert_eq!(a.flush_prefix().await.unwrap(), 2500);
    assert_eq!(a.count_matching("*", 1000).await.unwrap(), 0);
    // "ab:..." keys are not under "a:".
    assert_eq!(ab.count_matching("*", 1000).await.unwrap(), 10);
}

#[tokio::test]
async fn stats_report_the_shared_data_set() {
    let root = MemoryStore::new();
    let a = root.with_prefix("a").unwrap();
    put(&a, "k", b"12345").await;
    put(&root, "k", b"1").await;
    assert!(a.get("k").await.unwrap().is_some());
    assert!(a.get("missing").await.unwrap().is_none());
    let stats = a.stats().await.unwrap().unwrap();
    assert_eq!(stats.backend, "memory");
    assert_eq!(stats.keys_per_db.get("memory"), Some(&2));
    assert_eq!(
        stats.used_memory_bytes,
        Some(("a:k".len() + 5 + "k".len() + 1) as u64)
    );
    assert_eq!(stats.keyspace_hits, Some(1));
    assert_eq!(stats.keyspace_misses, Some(1));
    assert_eq!(stats.hit_ratio(), Some(0.5));
    assert!(a.ping().await.unwrap() < Duration::from_secs(1));
}

#[tokio::test]
async fn close_refuses_every_later_call_through_every_view_and_is_idempotent() {
    let store = MemoryStore::builder().with_prefix("a").build().unwrap();
    let sibling = store.with_prefix("b").unwrap();
    let shared: std::sync::Arc<dyn Store> = std::sync::Arc::new(store.clone());
    put(&store, "k", b"1").await;
    put(&sibling, "k", b"2").await;

    // Through `Arc<dyn Store>`: the delegation must reach the store, not the trait's default.
    shared.close().await.unwrap();
    for s in [&store, &sibling] {
        let err = s.get("k").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
        assert!(!err.is_transient());
        assert_eq!(
            s.set("k", b"3", set_opts()).await.unwrap_err().kind(),
            ErrorKind::Closed
        );
        assert_eq!(s.ping().await.unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(s.stats().await.unwrap_err().kind(), ErrorKind::Closed);
    }
    assert_eq!(store.entry_count(), 0, "the data is released");
    store.close().await.unwrap();
    sibling.close().await.unwrap();
}
