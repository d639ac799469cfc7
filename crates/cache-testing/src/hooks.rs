//! Store hooks for staging faults at a chosen call (wrap a real store with
//! [`cache_core::layer::Layered`]).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::layer::{Op, StoreHook};
use cache_core::{Error, Result};

/// Runs an action once, when the `n`-th store call through it has answered: freezing the server
/// then makes the next store call of the same library call meet a frozen server, say.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use cache_core::layer::Layered;
/// use cache_core::{SetOptions, Store};
/// use cache_memory::MemoryStore;
/// use cache_testing::hooks::AfterCalls;
///
/// let fired = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&fired);
/// let hook = AfterCalls::new(2, move || flag.store(true, Ordering::SeqCst));
/// let store = Layered::new(MemoryStore::new(), hook);
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// rt.block_on(async {
///     store.set("k", b"v", SetOptions::new()).await.unwrap();
///     assert!(!fired.load(Ordering::SeqCst));
///     store.get("k").await.unwrap();
///     assert!(fired.load(Ordering::SeqCst));
/// });
/// ```
pub struct AfterCalls<F> {
    n: usize,
    calls: AtomicUsize,
    action: F,
}

impl<F: Fn() + Send + Sync + 'static> AfterCalls<F> {
    /// Runs `action` once the `n`-th call (counting from 1) has answered.
    pub fn new(n: usize, action: F) -> Self {
        Self {
            n,
            calls: AtomicUsize::new(0),
            action,
        }
    }
}

impl<F> fmt::Debug for AfterCalls<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AfterCalls")
            .field("n", &self.n)
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<F: Fn() + Send + Sync + 'static> StoreHook for AfterCalls<F> {
    fn after(&self, _: &Op<'_>, _: Duration, _: Result<(), &Error>) {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            (self.action)();
        }
    }
}
