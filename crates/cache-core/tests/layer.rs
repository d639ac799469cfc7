//! `Layered` over the in-memory store: the hook sees every call with its method and keys, `before`
//! can fail a call (the store is not touched) or hold it, and layers stack.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::layer::{Layered, Method, Op, StoreHook, Target};
use cache_core::{async_trait, Error, Expiry, Result, SetOptions, Store};
use cache_memory::MemoryStore;
use tokio::sync::Notify;

/// Records what `after` saw: method, keys, and whether the call failed.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<(Method, Vec<String>, bool)>>,
    refuse: Option<Method>,
}

#[async_trait]
impl StoreHook for Recorder {
    async fn before(&self, op: &Op<'_>) -> Result<()> {
        if Some(op.method) == self.refuse {
            return Err(Error::Unsupported(format!(
                "{} refused",
                op.method.as_str()
            )));
        }
        Ok(())
    }
    fn after(&self, op: &Op<'_>, _elapsed: Duration, outcome: Result<(), &Error>) {
        let keys = match op.target {
            Target::Key(k) | Target::Pattern(k) => vec![k.to_owned()],
            Target::Keys(ks) => ks.iter().map(|k| (*k).to_owned()).collect(),
            Target::Entries(es) => es.iter().map(|(k, _)| (*k).to_owned()).collect(),
            _ => Vec::new(),
        };
        self.seen
            .lock()
            .unwrap()
            .push((op.method, keys, outcome.is_err()));
    }
}

fn strings(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

#[tokio::test(start_paused = true)]
async fn the_hook_sees_each_call_with_its_method_keys_and_outcome() {
    let store = Layered::new(
        MemoryStore::builder().with_prefix("app").build().unwrap(),
        Recorder::default(),
    );
    assert_eq!(store.prefix(), "app", "answered by the inner store");
    assert_eq!(store.backend_name(), "memory");
    store.set("a", b"1", SetOptions::new()).await.unwrap();
    store
        .set_many(&[("b", b"2"), ("c", b"3")], Expiry::Never)
        .await
        .unwrap();
    store.get_many(&["a", "b"]).await.unwrap();
    store.zadd("z", "m", 1.0).await.unwrap();
    assert!(store.get("z").await.is_err(), "WRONGTYPE");
    store
        .scan("*", cache_core::ScanCursor::start(), 10)
        .await
        .unwrap();
    store.delete(&["a", "b", "c", "z"]).await.unwrap();
    store.ping().await.unwrap();
    let seen = store.hook().seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Method::Set, strings(&["a"]), false),
            (Method::SetMany, strings(&["b", "c"]), false),
            (Method::GetMany, strings(&["a", "b"]), false),
            (Method::Zadd, strings(&["z"]), false),
            (Method::Get, strings(&["z"]), true),
            (Method::Scan, strings(&["*"]), false),
            (Method::Delete, strings(&["a", "b", "c", "z"]), false),
            (Method::Ping, Vec::new(), false),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_before_skips_the_call_and_after() {
    let inner = MemoryStore::new();
    let store = Layered::new(
        inner.clone(),
        Recorder {
            refuse: Some(Method::Set),
            ..Recorder::default()
        },
    );
    let err = store.set("k", b"v", SetOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(
        !inner.exists("k").await.unwrap(),
        "the inner store was not called"
    );
    assert!(
        store.hook().seen.lock().unwrap().is_empty(),
        "after did not run"
    );
    // Other methods go through.
    assert_eq!(store.get("k").await.unwrap(), None);
}

/// Holds every `get` until released.
#[derive(Debug, Default)]
struct Hold {
    reached: Notify,
    release: Notify,
    armed: AtomicBool,
}

#[async_trait]
impl StoreHook for Hold {
    async fn before(&self, op: &Op<'_>) -> Result<()> {
        if op.method == Method::Get && self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_can_hold_a_call_and_an_arc_hook_is_shared() {
    let inner = MemoryStore::new();
    let hold = Arc::new(Hold::default());
    let store = Layered::new(inner.clone(), Arc::clone(&hold));
    inner.set("k", b"old", SetOptions::new()).await.unwrap();
    hold.armed.store(true, Ordering::SeqCst);
    let held = tokio::spawn(async move { store.get("k").await });
    hold.reached.notified().await;
    // The held read has not reached the store yet: it sees what is written meanwhile.
    inner.set("k", b"new", SetOptions::new()).await.unwrap();
    hold.release.notify_one();
    assert_eq!(held.await.unwrap().unwrap().as_deref(), Some(&b"new"[..]));
}

#[tokio::test(start_paused = true)]
async fn layers_stack_and_work_behind_dyn_store() {
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let outer = Layered::new(
        Layered::new(Arc::clone(&inner), Recorder::default()),
        Recorder {
            refuse: Some(Method::FlushPrefix),
            ..Recorder::default()
        },
    );
    let store: Box<dyn Store> = Box::new(outer);
    store.set("k", b"v", SetOptions::new()).await.unwrap();
    assert!(matches!(
        store.flush_prefix().await,
        Err(Error::Unsupported(_))
    ));
    assert_eq!(inner.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn method_names_are_the_trait_method_names() {
    assert_eq!(Method::CompareAndSwap.as_str(), "compare_and_swap");
    assert_eq!(Method::ZremRangeByScore.as_str(), "zrem_range_by_score");
    let op = Op::new(Method::Get, Target::Key("user:1"));
    assert_eq!(op.key(), Some("user:1"));
    assert_eq!(Op::new(Method::Ping, Target::None).key(), None);
}

#[test]
fn only_stores_that_end_their_calls_at_the_deadline_say_so() {
    let memory = MemoryStore::new();
    assert!(
        memory.ends_calls_at_deadline(),
        "the memory store never waits"
    );
    let shared: Arc<dyn Store> = Arc::new(memory.clone());
    assert!(shared.ends_calls_at_deadline(), "Arc forwards");
    let boxed: Box<dyn Store> = Box::new(memory.clone());
    assert!(boxed.ends_calls_at_deadline(), "Box forwards");
    // A hook may wait before a call without looking at any deadline: a layered store does not
    // promise it, whatever the store under it does, so the managers keep their own timer.
    let layered = Layered::new(memory, Recorder::default());
    assert!(!layered.ends_calls_at_deadline());
}
