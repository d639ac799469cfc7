//! Read-modify-write of one key without lost updates: [`update`] reads the key, asks a closure what
//! to write, writes it with [`Store::compare_and_swap`] against the exact bytes read, and on a
//! conflict tries again, as bounded by a [`CasPolicy`]:
//!
//! - **bounded attempts**: after [`CasPolicy::with_max_attempts`] lost races the call fails with a
//!   transient [`Error::Backend`] whose source is a [`Contended`] naming the key;
//! - **retry at once, then back off**: the first [`CasPolicy::with_immediate_retries`] retries use the
//!   value the failed swap handed back (no extra round trip); later ones first sleep a random time
//!   ("full jitter": uniform in `[0, min(cap, base * 2^attempt)]`) and then read the key again, since
//!   the value seen before the pause is likely stale by then. Jitter keeps writers in several
//!   processes from retrying in lockstep;
//! - **optional per-process lock** ([`CasPolicy::with_local_lock`]): updates of one key in this
//!   process take turns on one of a fixed number of striped async locks, so the loop only races
//!   other processes. Without it, many writers of one key in a busy process starve each other
//!   (measured: 20 writers of one crawl status exhausted 64 attempts on a Redis Cluster).
//!
//! The core does not choose an async runtime: the policy is built with the runtime's sleep function
//! (`tokio::time::sleep`), which also keeps backoffs on a paused tokio clock in tests.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::cas::{self, CasPolicy, Decision};
//! use cache_core::{Expiry, Store};
//!
//! /// Adds one to a decimal counter and returns the new value.
//! async fn bump(store: &dyn Store, policy: &CasPolicy) -> cache_core::Result<u64> {
//!     cas::update(store, "counter", policy, |current| {
//!         let n: u64 = match current {
//!             None => 0,
//!             Some(bytes) => std::str::from_utf8(bytes)
//!                 .ok()
//!                 .and_then(|s| s.parse().ok())
//!                 .ok_or_else(|| cache_core::Error::Decode("not a counter".into()))?,
//!         };
//!         let next = n + 1;
//!         Ok(Decision::Write {
//!             value: next.to_string().into_bytes(),
//!             expiry: Expiry::In(Duration::from_secs(60)),
//!             output: next,
//!         })
//!     })
//!     .await
//! }
//!
//! # async fn run(store: &dyn Store) -> cache_core::Result<()> {
//! let policy = CasPolicy::new(tokio::time::sleep).with_max_attempts(64).with_local_lock(64);
//! let n = bump(store, &policy).await?;
//! # let _ = n; Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::{CasOutcome, Expiry, Store};

/// What [`update`] does with the value it read, as the closure decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<T> {
    /// Swap the value read for `value`, with `expiry`. Once the swap succeeds, [`update`] returns
    /// `output`; on a conflict the closure is asked again with the newer value.
    Write {
        /// The new value.
        value: Vec<u8>,
        /// What the write does to the key's TTL.
        expiry: Expiry,
        /// What [`update`] returns once this write has landed.
        output: T,
    },
    /// Delete the key if it still holds the value read; then return `output`.
    Delete {
        /// What [`update`] returns once the delete has landed.
        output: T,
    },
    /// Write nothing and return `output` at once (nothing to do, or a condition does not hold: a
    /// missing record that must not be recreated, for instance).
    Stop(T),
}

/// The source of the error [`update`] returns when every attempt lost its race: which key, after how
/// many attempts. Find it in an [`Error`] with [`Contended::find`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "compare-and-swap on {key} lost {attempts} races in a row: too many concurrent writers of this key"
)]
#[non_exhaustive]
pub struct Contended {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// How many compare-and-swaps were tried.
    pub attempts: u32,
}

impl Contended {
    /// The [`Contended`] behind `err`, if `err` is the error of an [`update`] that ran out of
    /// attempts.
    pub fn find(err: &Error) -> Option<&Contended> {
        match err {
            Error::Backend {
                source: Some(source),
                ..
            } => source.downcast_ref::<Contended>(),
            _ => None,
        }
    }

    fn into_error(self) -> Error {
        Error::Backend {
            message: self.to_string(),
            // Another attempt later may well succeed: the writers it lost to will be done.
            transient: true,
            source: Some(Box::new(self)),
        }
    }
}

type SleepFn = dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// How [`update`] retries: attempts, backoff, and the optional per-process lock. Build once (with
/// the runtime's sleep) and keep it: clones share the lock stripes, which is what makes the lock
/// work across calls.
#[derive(Clone)]
pub struct CasPolicy {
    max_attempts: u32,
    immediate_retries: u32,
    backoff_base: Duration,
    backoff_cap: Duration,
    sleep: Arc<SleepFn>,
    stripes: Option<Arc<[async_lock::Mutex<()>]>>,
}

impl fmt::Debug for CasPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CasPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("immediate_retries", &self.immediate_retries)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field(
                "local_lock_stripes",
                &self.stripes.as_ref().map(|s| s.len()),
            )
            .finish_non_exhaustive()
    }
}

/// Default [`CasPolicy::with_max_attempts`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 64;
/// Default [`CasPolicy::with_immediate_retries`].
pub const DEFAULT_IMMEDIATE_RETRIES: u32 = 1;
/// Default base of the backoff ([`CasPolicy::with_backoff`]).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_micros(500);
/// Default cap of the backoff ([`CasPolicy::with_backoff`]).
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_millis(32);

impl CasPolicy {
    /// A policy that sleeps with `sleep` (pass `tokio::time::sleep`): [`DEFAULT_MAX_ATTEMPTS`]
    /// attempts, [`DEFAULT_IMMEDIATE_RETRIES`] immediate retry, backoff from
    /// [`DEFAULT_BACKOFF_BASE`] up to [`DEFAULT_BACKOFF_CAP`], no per-process lock.
    pub fn new<F, Fut>(sleep: F) -> Self
    where
        F: Fn(Duration) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            immediate_retries: DEFAULT_IMMEDIATE_RETRIES,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            sleep: Arc::new(move |d| Box::pin(sleep(d))),
            stripes: None,
        }
    }

    /// How many compare-and-swaps one [`update`] tries before it fails with [`Contended`]. At least
    /// one is always tried (0 counts as 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// How many retries after a conflict go again at once with the value the conflict handed back;
    /// later retries back off and re-read. `u32::MAX`: never back off.
    pub fn with_immediate_retries(mut self, retries: u32) -> Self {
        self.immediate_retries = retries;
        self
    }

    /// The backoff after the `n`-th lost race (counting from 0) is uniform in
    /// `[0, min(cap, base * 2^n)]`.
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_cap = cap;
        self
    }

    /// Updates of one key in this process take turns on one of `stripes` async locks (picked by a
    /// hash of the key), so that they only race other processes. 0 turns the lock off. The stripes
    /// belong to this policy and its clones.
    pub fn with_local_lock(mut self, stripes: usize) -> Self {
        self.stripes =
            (stripes > 0).then(|| (0..stripes).map(|_| async_lock::Mutex::new(())).collect());
        self
    }

    /// The attempts of one [`update`].
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The pause after the `attempt`-th lost race (counting from 0): full jitter under an exponential
    /// ceiling.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.backoff_cap);
        let ceiling_ns = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Without OS randomness the pause is still bounded; only its spread is lost.
        let r = getrandom::u64().unwrap_or(ceiling_ns / 2);
        Duration::from_nanos(r % ceiling_ns.saturating_add(1))
    }

    fn stripe(&self, key: &str) -> Option<&async_lock::Mutex<()>> {
        let stripes = self.stripes.as_deref()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        // The modulo keeps the index below the length, which is not zero (see `with_local_lock`).
        stripes.get((h.finish() % stripes.len() as u64) as usize)
    }
}

/// Takes this process's turn on `key` when the policy has the per-process lock.
async fn take_turn<'p>(policy: &'p CasPolicy, key: &str) -> Option<async_lock::MutexGuard<'p, ()>> {
    let lock = policy.stripe(key)?;
    if let Some(turn) = lock.try_lock() {
        return Some(turn);
    }
    // A wait before the first store call: start the library call's deadline now
    // (`deadline::scope_after`), so that the wait counts against it.
    let _ = crate::deadline::current();
    Some(lock.lock().await)
}

/// Reads `key`, asks `apply` what to do with its value (`None`: missing), and writes the
/// [`Decision`] by compare-and-swap against the bytes read, retrying on conflicts as `policy` says.
/// Returns the `output` of the decision that took effect.
///
/// `apply` may run several times (once per attempt) and should only compute; side effects that
/// must happen once belong after `update` returns (carry what they need in `output`). Its errors,
/// and store errors, end the update at once and are returned as they are. When every attempt lost
/// its race the error is a transient [`Error::Backend`] with a [`Contended`] source naming the key.
pub async fn update<S, T, F>(store: &S, key: &str, policy: &CasPolicy, mut apply: F) -> Result<T>
where
    S: Store + ?Sized,
    F: FnMut(Option<&[u8]>) -> Result<Decision<T>>,
{
    let _turn = take_turn(policy, key).await;
    let mut current = store.get(key).await?;
    let attempts = policy.max_attempts;
    for attempt in 0..attempts {
        let (new, expiry, output) = match apply(current.as_deref())? {
            Decision::Write {
                value,
                expiry,
                output,
            } => (Some(value), expiry, output),
            Decision::Delete { output } => (None, Expiry::Never, output),
            Decision::Stop(output) => return Ok(output),
        };
        match store
            .compare_and_swap(key, current.as_deref(), new.as_deref(), expiry)
            .await?
        {
            CasOutcome::Swapped => return Ok(output),
            CasOutcome::Conflict { current: now } => {
                if attempt + 1 == attempts {
                    break;
                }
                if attempt < policy.immediate_retries {
                    current = now;
                } else {
                    (policy.sleep)(policy.backoff(attempt)).await;
                    current = store.get(key).await?;
                }
            }
        }
    }
    tracing::debug!(key, attempts, "compare-and-swap update gave up");
    Err(Contended {
        key: key.to_owned(),
        attempts,
    }
    .into_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CasPolicy {
        CasPolicy::new(|_| std::future::ready(()))
    }

    #[test]
    fn backoff_stays_under_its_exponential_ceiling_and_the_cap() {
        let p = policy().with_backoff(Duration::from_millis(1), Duration::from_millis(10));
        for attempt in 0..40 {
            let ceiling =
                Duration::from_millis(1 << attempt.min(20)).min(Duration::from_millis(10));
            for _ in 0..50 {
                assert!(p.backoff(attempt) <= ceiling, "attempt {attempt}");
            }
        }
        // A zero base never waits.
        let p = policy().with_backoff(Duration::ZERO, Duration::from_millis(10));
        assert_eq!(p.backoff(5), Duration::ZERO);
    }

    #[test]
    fn backoff_is_spread_not_constant() {
        let p = policy();
        let pauses: std::collections::BTreeSet<Duration> = (0..20).map(|_| p.backoff(6)).collect();
        assert!(pauses.len() > 1, "20 pauses were all {pauses:?}");
    }

    #[test]
    fn settings_are_clamped_and_shared_by_clones() {
        let p = policy().with_max_attempts(0).with_local_lock(8);
        assert_eq!(p.max_attempts(), 1);
        let q = p.clone();
        let (a, b) = (
            p.stripe("k").map(std::ptr::from_ref),
            q.stripe("k").map(std::ptr::from_ref),
        );
        assert!(a.is_some() && a == b, "clones share the stripes");
        assert!(policy().with_local_lock(0).stripe("k").is_none());
    }

    #[test]
    fn a_wait_for_the_local_lock_starts_the_call_deadline() {
        use std::task::{Context, Poll, Waker};
        let budget = Duration::from_secs(5);
        let p = policy().with_local_lock(1);
        let held = p.stripe("k").and_then(|l| l.try_lock()).expect("free");
        let call = crate::deadline::scope_after(budget, "X", async {
            let _turn = take_turn(&p, "k").await;
            crate::deadline::current().expect("inside the scope")
        });
        let mut call = std::pin::pin!(call);
        let mut cx = Context::from_waker(Waker::noop());
        let before = std::time::Instant::now();
        assert!(
            call.as_mut().poll(&mut cx).is_pending(),
            "waits for the turn"
        );
        let waiting = std::time::Instant::now();
        drop(held);
        let Poll::Ready(deadline) = call.as_mut().poll(&mut cx) else {
            panic!("the turn is free")
        };
        // Started while it waited, not when it got the turn (after `waiting`).
        assert!(
            deadline.instant() >= before + budget && deadline.instant() <= waiting + budget,
            "{deadline:?}"
        );
        // No wait, no clock: an uncontended turn leaves the deadline to the first store call.
        let later = std::time::Instant::now() + Duration::from_secs(60);
        let call = crate::deadline::scope_after(budget, "X", async {
            let _turn = take_turn(&p, "k").await;
            crate::deadline::current_at(later)
        });
        let mut call = std::pin::pin!(call);
        let Poll::Ready(seen) = call.as_mut().poll(&mut cx) else {
            panic!("the turn is free")
        };
        assert_eq!(seen.map(|d| d.instant()), Some(later + budget));
    }

    #[test]
    fn contended_is_found_in_the_error_it_becomes() {
        let err = Contended {
            key: "crawl:status:7".into(),
            attempts: 3,
        }
        .into_error();
        assert!(err.is_transient());
        assert!(err.to_string().contains("crawl:status:7"), "{err}");
        let found = Contended::find(&err).expect("the source is a Contended");
        assert_eq!((found.key.as_str(), found.attempts), ("crawl:status:7", 3));
        assert!(Contended::find(&Error::invalid_input("x")).is_none());
    }
}
