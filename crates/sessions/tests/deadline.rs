//! One deadline per session manager call (`SESSION_CALL_TIMEOUT`), shared by all its store calls and
//! counted from its start: on a real `redis-server` that freezes between two store calls of a
//! `create` or an `update`, the call ends at its deadline (the error names `SESSION_CALL_TIMEOUT`)
//! instead of waiting out the store's own bound on the next call; and on a paused clock, slow store
//! calls add up to exactly the deadline, not to one bound each.

use std::sync::Arc;
use std::time::Duration;

use cache_core::layer::{Layered, Op, StoreHook};
use cache_core::{async_trait, Error, ErrorKind, Profile, Result};
use cache_memory::MemoryStore;
use cache_redis::{RedisConfig, RedisEndpoint, RedisStore, RetryConfig};
use cache_testing::hooks::AfterCalls;
use sessions::{CreateOptions, SessionData, SessionManager};
use test_redis::RedisServer;

/// Freezes `server` (`SIGSTOP`) once the `n`-th store call has answered: the next store call of
/// the same manager call meets a frozen server.
fn freeze_after(
    server: &Arc<RedisServer>,
    n: usize,
) -> AfterCalls<impl Fn() + Send + Sync + 'static> {
    let server = Arc::clone(server);
    AfterCalls::new(n, move || server.freeze())
}

/// A Redis store whose own bound of one call is long (response timeout 2 s, budget 3 s): a call
/// that ends sooner was ended by the manager's deadline.
async fn patient_store(server: &RedisServer) -> RedisStore {
    let config = RedisConfig::new(Profile::Production, RedisEndpoint::server(server.url()))
        .with_key_prefix("t")
        .with_response_timeout(Duration::from_secs(2))
        .with_retry(RetryConfig::default().with_budget(Duration::from_secs(3)));
    RedisStore::connect(&config).await.unwrap()
}

#[track_caller]
fn assert_session_deadline(what: &str, e: Error) {
    assert_eq!(e.kind(), ErrorKind::Timeout, "{what}: {e}");
    assert!(e.is_transient());
    assert!(
        e.to_string().contains("SESSION_CALL_TIMEOUT"),
        "{what}: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_frozen_between_two_store_calls_ends_the_call_at_its_deadline() {
    let server = Arc::new(RedisServer::start());
    let store = patient_store(&server).await;
    // `create` prunes the index first (store call 1), then writes the record: freeze in between.
    let hook = freeze_after(&server, 1);
    let manager = SessionManager::builder(Layered::new(store.clone(), hook))
        .with_call_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let e = manager
        .create("ada", CreateOptions::new())
        .await
        .unwrap_err();
    assert_session_deadline("create", e);
    server.thaw();

    // `update` reads the record (store call 1), then swaps it: freeze in between.
    let plain = SessionManager::new(store.clone());
    let login = plain.create("ada", CreateOptions::new()).await.unwrap();
    let hook = freeze_after(&server, 1);
    let manager = SessionManager::builder(Layered::new(store.clone(), hook))
        .with_call_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let mut patch = SessionData::new();
    patch.insert("n".into(), 1.into());
    let e = manager
        .update(login.token.expose(), &patch)
        .await
        .unwrap_err();
    assert_session_deadline("update", e);
    server.thaw();
    // Nothing was lost or broken by the cut: the session is there, and can be updated.
    let session = plain.update(login.token.expose(), &patch).await.unwrap();
    assert_eq!(session.unwrap().data["n"], 1);
    assert_eq!(plain.list_user_sessions("ada").await.unwrap().len(), 1);
}

/// Every store call takes `delay` (a slow store, on tokio's paused clock).
#[derive(Debug)]
struct Slow(Duration);

#[async_trait]
impl StoreHook for Slow {
    async fn before(&self, _: &Op<'_>) -> Result<()> {
        tokio::time::sleep(self.0).await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn slow_store_calls_share_one_deadline_counted_from_the_start_of_the_call() {
    let store = Layered::new(MemoryStore::new(), Slow(Duration::from_millis(200)));
    let manager = SessionManager::builder(store)
        .with_clock(Arc::new(sessions::TokioClock::new()))
        .with_call_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    // Three store calls of 200 ms: 600 ms in all, over the 500 ms deadline.
    let started = tokio::time::Instant::now();
    let e = manager
        .create("ada", CreateOptions::new())
        .await
        .unwrap_err();
    assert_session_deadline("create", e);
    assert_eq!(started.elapsed(), Duration::from_millis(500));

    // A deadline with room for every store call changes nothing.
    let manager = SessionManager::builder(Layered::new(
        MemoryStore::new(),
        Slow(Duration::from_millis(200)),
    ))
    .with_clock(Arc::new(sessions::TokioClock::new()))
    .with_call_timeout(Duration::from_secs(5))
    .build()
    .unwrap();
    let login = manager.create("ada", CreateOptions::new()).await.unwrap();
    assert!(manager.get(login.token.expose()).await.unwrap().is_some());
}
