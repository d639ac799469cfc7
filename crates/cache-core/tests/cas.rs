//! `cas::update` against the in-memory store: no lost update under contention from many tasks (with
//! and without the per-process lock), bounded attempts with a typed error naming the key, and each
//! kind of decision.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cache_core::cas::{self, CasPolicy, Contended, Decision};
use cache_core::layer::{Layered, Method, Op, StoreHook};
use cache_core::{async_trait, Error, Expiry, KeyTtl, Result, SetOptions, Store};
use cache_memory::MemoryStore;

fn policy() -> CasPolicy {
    CasPolicy::new(tokio::time::sleep)
}

fn parse(current: Option<&[u8]>) -> Result<u64> {
    match current {
        None => Ok(0),
        Some(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::Decode(format!("not a counter: {b:?}"))),
    }
}

/// Adds one to the counter at `key`; counts how often the closure ran in `calls`.
async fn bump(store: &dyn Store, key: &str, policy: &CasPolicy, calls: &AtomicU32) -> Result<u64> {
    cas::update(store, key, policy, |current| {
        calls.fetch_add(1, Ordering::Relaxed);
        let next = parse(current)? + 1;
        Ok(Decision::Write {
            value: next.to_string().into_bytes(),
            expiry: Expiry::Never,
            output: next,
        })
    })
    .await
}

/// Yields before every compare-and-swap: on one thread, every writer then reads before the first
/// one swaps, so conflicts are certain rather than a matter of timing.
#[derive(Debug)]
struct YieldBeforeSwap;

#[async_trait]
impl StoreHook for YieldBeforeSwap {
    async fn before(&self, op: &Op<'_>) -> Result<()> {
        if op.method == Method::CompareAndSwap {
            tokio::task::yield_now().await;
        }
        Ok(())
    }
}

/// 16 tasks x 25 updates of one counter in `store`, the tasks spread evenly over `policies` (one
/// policy per simulated process). Returns the counter and the closure runs.
async fn contention<S: Store + Clone>(store: S, policies: &[CasPolicy]) -> (u64, u32) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let policy = policies[i % policies.len()].clone();
        let (store, calls) = (store.clone(), Arc::clone(&calls));
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                bump(&store, "counter", &policy, &calls).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = parse(store.get("counter").await.unwrap().as_deref()).unwrap();
    (n, calls.load(Ordering::Relaxed))
}

fn racing() -> Layered<MemoryStore, Arc<YieldBeforeSwap>> {
    Layered::new(MemoryStore::new(), Arc::new(YieldBeforeSwap))
}

#[tokio::test(start_paused = true)]
async fn no_update_is_lost_under_contention() {
    // Enough attempts that the loop, not the bound, is what is tested here.
    let (n, calls) = contention(racing(), &[policy().with_max_attempts(10_000)]).await;
    assert_eq!(n, 400, "every update landed exactly once");
    assert!(
        calls > 400,
        "the writers did conflict ({calls} closure runs)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_update_is_lost_with_writers_on_two_threads() {
    let (n, _) = contention(MemoryStore::new(), &[policy().with_max_attempts(10_000)]).await;
    assert_eq!(n, 400);
}

#[tokio::test(start_paused = true)]
async fn with_the_local_lock_writers_in_one_process_never_conflict() {
    let (n, calls) = contention(
        racing(),
        &[policy().with_local_lock(8).with_max_attempts(1)],
    )
    .await;
    assert_eq!(n, 400);
    // One attempt each is enough: writers of one key in this process take turns.
    assert_eq!(calls, 400, "the closure ran once per update");
}

#[tokio::test(start_paused = true)]
async fn two_processes_with_local_locks_lose_nothing() {
    // Two policies with their own locks over one store: their writers race each other only.
    let processes = [
        policy().with_local_lock(4).with_max_attempts(10_000),
        policy().with_local_lock(4).with_max_attempts(10_000),
    ];
    let (n, calls) = contention(racing(), &processes).await;
    assert_eq!(n, 400);
    assert!(
        calls > 400,
        "the two processes did conflict ({calls} closure runs)"
    );
}

/// Before every compare-and-swap on its key, another writer changes the value: every swap loses.
#[derive(Debug)]
struct Meddler {
    store: MemoryStore,
    n: AtomicU32,
}

#[async_trait]
impl StoreHook for Meddler {
    async fn before(&self, op: &Op<'_>) -> Result<()> {
        if op.method == Method::CompareAndSwap {
            let n = self.n.fetch_add(1, Ordering::Relaxed);
            let key = op.key().expect("compare_and_swap has one key");
            self.store
                .set(key, format!("other-{n}").as_bytes(), SetOptions::new())
                .await?;
        }
        Ok(())
    }
}

/// `store` behind a [`Meddler`] that writes to it before every compare-and-swap.
fn meddled(store: &MemoryStore) -> Layered<MemoryStore, Meddler> {
    let meddler = Meddler {
        store: store.clone(),
        n: AtomicU32::new(0),
    };
    Layered::new(store.clone(), meddler)
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded_and_the_error_names_the_key() {
    let store = MemoryStore::new();
    let meddled = meddled(&store);
    let calls = AtomicU32::new(0);
    let err = cas::update(
        &meddled,
        "crawl:status:7",
        &policy().with_max_attempts(5),
        |_| {
            calls.fetch_add(1, Ordering::Relaxed);
            Ok(Decision::Write {
                value: b"mine".to_vec(),
                expiry: Expiry::Never,
                output: (),
            })
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        calls.load(Ordering::Relaxed),
        5,
        "one closure run per attempt"
    );
    assert_eq!(
        meddled.hook().n.load(Ordering::Relaxed),
        5,
        "five swaps tried"
    );
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("crawl:status:7"), "{err}");
    let contended = Contended::find(&err).expect("a Contended source");
    assert_eq!(contended.key, "crawl:status:7");
    assert_eq!(contended.attempts, 5);
    assert_eq!(
        store.get("crawl:status:7").await.unwrap().as_deref(),
        Some(&b"other-4"[..])
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_sleeps_after_the_immediate_retries() {
    let store = MemoryStore::new();
    let meddled = meddled(&store);
    let sleeps = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&sleeps);
    let p = CasPolicy::new(move |d| {
        counted.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(d)
    })
    .with_max_attempts(6)
    .with_immediate_retries(2);
    let res = cas::update(&meddled, "k", &p, |_| {
        Ok(Decision::Write {
            value: b"v".to_vec(),
            expiry: Expiry::Never,
            output: (),
        })
    })
    .await;
    assert!(res.is_err());
    // Six attempts: retries 1 and 2 immediate, retries 3 to 5 after a pause; none after the last.
    assert_eq!(sleeps.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn decisions_write_delete_and_stop() {
    let store = MemoryStore::new();
    let p = policy();
    // Stop: nothing is written, the output comes back.
    let out = cas::update(&store, "k", &p, |cur| {
        assert_eq!(cur, None);
        Ok(Decision::Stop("absent"))
    })
    .await
    .unwrap();
    assert_eq!(out, "absent");
    assert!(!store.exists("k").await.unwrap(), "Stop creates nothing");

    // Write with a TTL.
    let ttl = Duration::from_secs(60);
    cas::update(&store, "k", &p, |_| {
        Ok(Decision::Write {
            value: b"one".to_vec(),
            expiry: Expiry::In(ttl),
            output: (),
        })
    })
    .await
    .unwrap();
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(store.ttl("k").await.unwrap(), KeyTtl::ExpiresIn(ttl));

    // Delete sees the current value and removes it.
    let seen = cas::update(&store, "k", &p, |cur| {
        Ok(Decision::Delete {
            output: cur.map(<[u8]>::to_vec),
        })
    })
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some(&b"one"[..]));
    assert!(!store.exists("k").await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn closure_and_store_errors_end_the_update_unchanged() {
    let store = MemoryStore::new();
    store.set("k", b"v", SetOptions::new()).await.unwrap();
    let calls = AtomicU32::new(0);
    let err = cas::update(&store, "k", &policy(), |_| -> Result<Decision<()>> {
        calls.fetch_add(1, Ordering::Relaxed);
        Err(Error::Encode("cannot encode".into()))
    })
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Encode(_)), "{err:?}");
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "no retry after a closure error"
    );
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));

    // A store error (here WRONGTYPE on a sorted set) is returned as it is.
    store.zadd("z", "m", 1.0).await.unwrap();
    let err = cas::update(&store, "z", &policy(), |_| Ok(Decision::Stop(())))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongType { .. }), "{err:?}");
}
