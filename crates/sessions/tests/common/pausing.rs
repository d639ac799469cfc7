//! A store wrapper that can hold one call at a chosen moment (the next compare-and-swap before it
//! runs, or the next read of a chosen kind after it answered), to stage races deterministically,
//! and can yield to the scheduler before every call, so that tasks on the
//! in-memory store (whose calls never wait) interleave between store calls as they do on Redis.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use cache_core::layer::{Hold, Layered, Method, Op, StoreHook};
use cache_core::{async_trait, Result, Store};
use tokio::sync::Notify;

/// A read the gate can hold after it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    Get,
    GetEx,
    GetMany,
    ZrangeByScore,
}

/// Holds the next compare-and-swap after [`Gate::arm`], or the next read of a kind after
/// [`Gate::arm_after`], until [`Gate::release`].
#[derive(Debug, Default)]
pub struct Gate {
    armed: AtomicBool,
    armed_after: std::sync::Mutex<Option<Read>>,
    calls: AtomicU64,
    reached: Notify,
    release: Notify,
}

impl Gate {
    /// Holds the next compare-and-swap before it runs.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
    /// Holds the next read of kind `read` after it answered (the caller has the answer but has not
    /// seen it yet).
    pub fn arm_after(&self, read: Read) {
        *self.armed_after.lock().unwrap() = Some(read);
    }
    /// Disarms and answers true when the gate was armed after `read`.
    fn take_armed_after(&self, read: Read) -> bool {
        let mut armed = self.armed_after.lock().unwrap();
        let hit = *armed == Some(read);
        if hit {
            *armed = None;
        }
        hit
    }
    /// Tells the test the held call is here, and waits for its release.
    async fn hold(&self) {
        self.reached.notify_one();
        self.release.notified().await;
    }
    pub async fn reached(&self) {
        self.reached.notified().await;
    }
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// A store wrapped with [`Pauser`]: holds a compare-and-swap when the gate is armed, a read after it
/// answered when armed after that read, and yields before every call when built with [`yielding`].
pub type PausingStore<S> = Layered<S, Pauser>;

/// The hook of a [`PausingStore`].
#[derive(Debug, Clone)]
pub struct Pauser {
    gate: Arc<Gate>,
    /// Yield up to this many times before every call (0: never).
    max_yields: u64,
}

/// A store whose calls the returned gate can hold.
pub fn gated<S: Store>(inner: S) -> (PausingStore<S>, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let hook = Pauser {
        gate: Arc::clone(&gate),
        max_yields: 0,
    };
    (Layered::new(inner, hook), gate)
}

/// A wrapper that yields to the scheduler 1 to `max_yields` times before every store call (and
/// holds nothing). A larger `max_yields` makes a task slower between its calls than others.
pub fn yielding<S: Store>(inner: S, max_yields: u64) -> PausingStore<S> {
    let hook = Pauser {
        gate: Arc::default(),
        max_yields,
    };
    Layered::new(inner, hook)
}

#[async_trait]
impl StoreHook for Pauser {
    /// When yielding, yields a varying number of times (from 1 to `max_yields`, so that the racing
    /// tasks' calls are shuffled against each other rather than lined up in lockstep); then holds
    /// an armed compare-and-swap before it runs.
    async fn before(&self, op: &Op<'_>) -> Result<()> {
        if self.max_yields > 0 {
            let n = self.gate.calls.fetch_add(1, Ordering::Relaxed);
            // A cheap deterministic scramble of the call counter.
            let times = 1 + n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.max_yields;
            for _ in 0..times {
                tokio::task::yield_now().await;
            }
        }
        if op.method == Method::CompareAndSwap && self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.reached.notify_one();
            self.gate.release.notified().await;
        }
        Ok(())
    }

    /// Holds a read the gate was armed after, once it has answered.
    fn hold(&self, op: &Op<'_>) -> Option<Hold> {
        let read = match op.method {
            Method::Get => Read::Get,
            Method::GetMany => Read::GetMany,
            Method::GetEx => Read::GetEx,
            Method::ZrangeByScore => Read::ZrangeByScore,
            _ => return None,
        };
        let gate = Arc::clone(&self.gate);
        gate.take_armed_after(read)
            .then(|| -> Hold { Box::pin(async move { gate.hold().await }) })
    }
}
