//! `MemoryStore` passes the whole conformance suite of `cache_testing::conformance`: directly, through
//! `Arc<dyn Store>`, through a `Layered` store (so every delegated method is exercised), on a paused
//! tokio clock (time moved with `tokio::time::advance`) and in real time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::async_trait;
use cache_core::layer::{Layered, Method, Op, StoreHook};
use cache_core::Store;
use cache_memory::MemoryStore;
use cache_testing::conformance::{self, run_all, Capabilities, Clock, RealClock};

const MAX_VALUE: usize = 2 * 1024 * 1024;

/// Moves tokio's paused clock: the memory store's time passes exactly and only through the suite.
#[derive(Debug)]
struct Advance;

#[async_trait]
impl Clock for Advance {
    async fn wait(&self, d: Duration) {
        tokio::time::advance(d).await;
    }
    fn is_exact(&self) -> bool {
        true
    }
}

fn stores() -> (MemoryStore, MemoryStore, MemoryStore) {
    let root = MemoryStore::builder()
        .with_max_value_bytes(MAX_VALUE)
        .build()
        .unwrap();
    (
        root.with_prefix("conformance_a").unwrap(),
        root.with_prefix("conformance_b").unwrap(),
        root.with_prefix("").unwrap(),
    )
}

fn paused_caps() -> Capabilities {
    Capabilities::new()
        .with_max_value_bytes(MAX_VALUE)
        .with_clock(Arc::new(Advance))
}

#[tokio::test(start_paused = true)]
async fn memory_store_passes_the_suite_on_a_paused_clock() {
    let (store, other, unprefixed) = stores();
    run_all(&store, &other, &unprefixed, &paused_caps()).await;
    // Every check cleaned up after itself; only the isolation check's flush touched `other`.
    assert_eq!(store.entry_count(), 0, "checks left keys behind");
}

#[tokio::test(start_paused = true)]
async fn memory_store_passes_the_suite_as_dyn_store() {
    let (store, other, unprefixed) = stores();
    let store: Arc<dyn Store> = Arc::new(store);
    let other: Arc<dyn Store> = Arc::new(other);
    let unprefixed: Box<dyn Store> = Box::new(unprefixed);
    run_all(&store, &other, &unprefixed, &paused_caps()).await;
}

/// Notes which methods passed through the layer.
#[derive(Debug, Default)]
struct Seen(Mutex<BTreeSet<&'static str>>);

impl StoreHook for Seen {
    fn after(&self, op: &Op<'_>, _: Duration, _: cache_core::Result<(), &cache_core::Error>) {
        self.0.lock().unwrap().insert(op.method.as_str());
    }
}

#[tokio::test(start_paused = true)]
async fn memory_store_passes_the_suite_through_a_layer() {
    let (store, other, unprefixed) = stores();
    let seen = Arc::new(Seen::default());
    let store = Layered::new(store, Arc::clone(&seen));
    let other = Layered::new(other, Arc::clone(&seen));
    run_all(&store, &other, &unprefixed, &paused_caps()).await;
    let seen = seen.0.lock().unwrap().clone();
    let every_method: BTreeSet<&str> = [
        Method::Get,
        Method::GetMany,
        Method::GetEx,
        Method::Set,
        Method::SetMany,
        Method::Delete,
        Method::Exists,
        Method::Expire,
        Method::Persist,
        Method::Ttl,
        Method::IncrBy,
        Method::CompareAndSwap,
        Method::Scan,
        Method::Zadd,
        Method::Zrem,
        Method::ZrangeByScore,
        Method::ZremRangeByScore,
        Method::Zcard,
        Method::Ping,
        Method::FlushPrefix,
        Method::Stats,
    ]
    .into_iter()
    .map(Method::as_str)
    .collect();
    assert_eq!(seen, every_method, "every method went through the layer");
}

#[tokio::test]
async fn memory_store_passes_the_suite_in_real_time() {
    let (store, other, unprefixed) = stores();
    let caps = Capabilities::new()
        .with_max_value_bytes(MAX_VALUE)
        .with_clock(Arc::new(RealClock));
    run_all(&store, &other, &unprefixed, &caps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_checks_hold_on_a_multi_threaded_runtime() {
    let (store, _, _) = stores();
    conformance::check_compare_and_swap_contention(&store).await;
    conformance::check_incr_by_concurrent(&store).await;
    // And with real parallel tasks, not only interleaved futures.
    let key = "parallel:counter";
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                loop {
                    let current = store.get(key).await.unwrap();
                    let n: u64 = current
                        .as_deref()
                        .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
                        .unwrap_or(0);
                    let next = (n + 1).to_string();
                    let outcome = store
                        .compare_and_swap(
                            key,
                            current.as_deref(),
                            Some(next.as_bytes()),
                            cache_core::Expiry::Never,
                        )
                        .await
                        .unwrap();
                    if outcome == cache_core::CasOutcome::Swapped {
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.get(key).await.unwrap().as_deref(), Some(&b"800"[..]));
}
