//! A focused release-mode micro-benchmark of [`MemoryStore`] on the workload of `cargo xtask bench`
//! (80% `GET`, 20% `SET PX 300000` of a ~1 KiB value over 10 000 preloaded keys, called through
//! `Arc<dyn Store>` with a key built per call), without a Redis server:
//!
//! ```text
//! cargo run --release -p cache-memory --example throughput [-- SECONDS_PER_CELL]
//! ```
//!
//! It prints ops/s for C = 1, 16 and 64 tasks on a runtime with one worker per core, and for one
//! task on a single-threaded runtime (the throughput of one core); and next to each the operations
//! per CPU second the process used, which stays meaningful when other processes share the cores.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Expiry, SetOptions, Store};
use cache_memory::MemoryStore;

const KEYS: u64 = 10_000;
const TTL: Duration = Duration::from_secs(300);

fn next(state: &mut u64) -> u64 {
    // xorshift64*, as the bench's load generator.
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

async fn preload(store: &Arc<dyn Store>, value: &[u8]) {
    let names: Vec<String> = (0..KEYS).map(|i| format!("kv:{i}")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|k| (k.as_str(), value)).collect();
    store
        .set_many(&entries, Expiry::In(TTL))
        .await
        .expect("preloading the memory store");
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`; 0 where unavailable.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // The kernel reports in USER_HZ, 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs one cell; returns (ops per wall second, ops per CPU second of this process).
async fn cell(store: Arc<dyn Store>, value: Arc<[u8]>, tasks: usize, secs: f64) -> (f64, f64) {
    let cpu0 = cpu_seconds();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (store, value, stop, ops) =
                (store.clone(), value.clone(), stop.clone(), ops.clone());
            tokio::spawn(async move {
                let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((t as u64 + 1) * 0x1234_5678_9ABC);
                let mut n = 0u64;
                let mut lat = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let r = next(&mut rng);
                    let key = format!("kv:{}", (r >> 8) % KEYS);
                    let t0 = Instant::now();
                    if r % 100 < 80 {
                        std::hint::black_box(store.get(&key).await.expect("get"));
                    } else {
                        store
                            .set(&key, &value, SetOptions::ttl(TTL))
                            .await
                            .expect("set");
                    }
                    lat += t0.elapsed();
                    n += 1;
                    if n % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                std::hint::black_box(lat);
                ops.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await.expect("a load task panicked");
    }
    let n = ops.load(Ordering::Relaxed) as f64;
    let cpu = cpu_seconds() - cpu0;
    (
        n / started.elapsed().as_secs_f64(),
        if cpu > 0.0 { n / cpu } else { 0.0 },
    )
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let value: Arc<[u8]> = vec![b'x'; 1018].into();

    let one = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    one.block_on(async {
        let store: Arc<dyn Store> = Arc::new(
            MemoryStore::builder()
                .with_prefix("bench")
                .build()
                .expect("store"),
        );
        preload(&store, &value).await;
        let (ops, per_cpu) = cell(store, value.clone(), 1, secs).await;
        println!("one core (current-thread runtime), C= 1: {ops:>9.0} ops/s, {per_cpu:>9.0} per CPU second");
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(
            MemoryStore::builder()
                .with_prefix("bench")
                .build()
                .expect("store"),
        );
        preload(&store, &value).await;
        for c in [1usize, 16, 64] {
            let (ops, per_cpu) = cell(store.clone(), value.clone(), c, secs).await;
            println!("{cores} workers (multi-thread runtime), C={c:>2}: {ops:>9.0} ops/s, {per_cpu:>9.0} per CPU second");
        }
    });
}
