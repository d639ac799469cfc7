//! What the session test binaries share: the [`Fixture`] a backend provides, the scenarios every
//! backend runs ([`scenarios`]), the macro that turns them into tests ([`session_scenarios!`]), and
//! a store wrapper that holds a compare-and-swap to stage races ([`pausing`]).
//!
//! A backend's test file implements [`Fixture`] and writes, once:
//!
//! ```ignore
//! common::session_scenarios! {
//!     fixture: memory_fixture,
//!     sequential: #[tokio::test(start_paused = true)],
//!     concurrent: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
//! }
//! ```
//!
//! Tests that only make sense on one backend (a paused clock on memory, `MONITOR` on Redis, hash
//! slots on the cluster) stay in that backend's file.

// Each test binary uses a different subset of this module.
#![allow(dead_code, unreachable_pub, unused_imports, unused_macros)]

pub mod pausing;
pub mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Store, StoreExt};
use serde_json::{json, Value};
use sessions::{Clock, CreateOptions, SessionData, SessionManager, SystemClock};

/// One test's view of a backend: every store it opens sees the same data, and nothing another test
/// writes. The value lives as long as the test (a Redis fixture owns its server).
pub trait Fixture {
    /// The backend's store.
    type Store: Store + Clone + 'static;

    /// Another connection to this test's data: a new connection pool on Redis, a clone in memory.
    async fn connect(&self) -> Self::Store;

    /// The clock every manager of a scenario shares: the wall clock by default; the memory
    /// backend's runs on tokio's (paused) clock, which its store's TTLs follow too.
    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }

    /// The manager the scenarios use unless they need particular settings.
    async fn manager(&self) -> SessionManager<Self::Store> {
        SessionManager::builder(self.connect().await)
            .with_clock(self.clock())
            .build()
            .unwrap()
    }
}

/// Generates one `#[tokio::test]` per scenario of [`scenarios`] on the backend whose [`Fixture`]
/// `fixture(test_name)` returns. Scenarios that run on one task use the `sequential` test attribute
/// (memory runs them on a paused clock); those that spawn racing tasks use `concurrent`.
macro_rules! session_scenarios {
    (
        fixture: $fixture:path,
        sequential: #[$sequential:meta],
        concurrent: #[$concurrent:meta] $(,)?
    ) => {
        $crate::common::session_scenarios!(@tests $fixture, #[$sequential],
            lifecycle,
            no_resurrection,
            per_user_operations,
            max_sessions_rule,
            malformed_tokens_rejected,
            no_token_in_store,
            undecodable_records_deny_nothing,
        );
        $crate::common::session_scenarios!(@tests $fixture, #[$concurrent],
            late_update_does_not_resurrect,
            update_during_rotation_is_kept,
            delete_during_rotation_wins,
            concurrent_merges,
            sign_out_everywhere_while_listing,
            concurrent_logins_respect_the_limit,
            sign_out_everywhere_during_rotation,
            sign_out_others_during_rotation_keeps_the_current_session,
            expired_on_access_deletes_only_what_it_judged,
        );
    };
    (@tests $fixture:path, #[$attr:meta], $($scenario:ident),+ $(,)?) => {
        $(
            #[$attr]
            async fn $scenario() {
                $crate::common::scenarios::$scenario($fixture(stringify!($scenario))).await;
            }
        )+
    };
}
pub(crate) use session_scenarios;

pub fn obj(v: Value) -> SessionData {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

/// Another clock plus a fixed offset: an instance whose clock runs ahead (or behind).
#[derive(Debug)]
pub struct OffsetClock {
    pub base: Arc<dyn Clock>,
    pub offset: chrono::TimeDelta,
}

impl Clock for OffsetClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.base.now() + self.offset
    }
}

/// Polls `fut` at most `polls` times and drops it if it has not finished by then: a request
/// cancelled part-way (its client went away), at a point that varies with `polls`. `None`: dropped.
pub async fn cancel_after_polls<F: std::future::Future>(fut: F, polls: u32) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut left = polls;
    std::future::poll_fn(move |cx| {
        if left == 0 {
            return std::task::Poll::Ready(None);
        }
        left -= 1;
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

/// Lets the clock move between steps whose order must be visible in `created_at`. On a paused
/// runtime the sleep completes at once (auto-advance); on a real one it takes 3 ms.
pub async fn tick() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

/// Runs every operation that handles tokens (create, get, rotate, update, extend, list, revoke all
/// but one, cleanup) for two users and returns every token handed out, for the "no token in the
/// store" checks.
pub async fn exercise_every_operation<S: Store>(m: &SessionManager<S>) -> Vec<String> {
    let mut tokens = Vec::new();
    for u in ["u1", "u2"] {
        for _ in 0..3 {
            let c = m
                .create(u, CreateOptions::new().with_data(obj(json!({"k": "v"}))))
                .await
                .unwrap();
            tokens.push(c.token.expose().to_owned());
            m.get(c.token.expose()).await.unwrap().unwrap();
            let r = m.rotate(c.token.expose()).await.unwrap().unwrap();
            tokens.push(r.token.expose().to_owned());
            m.update(r.token.expose(), &obj(json!({"n": 1})))
                .await
                .unwrap()
                .unwrap();
            m.extend(r.token.expose(), Duration::from_secs(600))
                .await
                .unwrap()
                .unwrap();
        }
        m.list_user_sessions(u).await.unwrap();
    }
    let last = tokens.last().unwrap().clone();
    m.revoke_all_except("u1", &last).await.unwrap();
    m.cleanup().await.unwrap();
    tokens
}

/// Every key and every value in `store` (strings and sorted-set members): none contains a token.
pub async fn assert_no_token_in_store<S: Store>(store: &S, tokens: &[String]) {
    let keys = store.scan_all("*", 100).await.unwrap();
    assert!(!keys.is_empty(), "the scan must see the test's keys");
    for key in keys {
        for t in tokens {
            assert!(!key.contains(t.as_str()), "token in key {key}");
        }
        let text = match store.get(&key).await {
            Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
            Ok(None) => continue,
            Err(_) => format!(
                "{:?}",
                store
                    .zrange_by_score(&key, f64::NEG_INFINITY, f64::INFINITY, None)
                    .await
                    .unwrap()
            ),
        };
        for t in tokens {
            assert!(!text.contains(t.as_str()), "token in the value of {key}");
        }
    }
}
