//! A store wrapper that can hold one compare-and-swap at a chosen moment, to stage races
//! deterministically: a [`cache_core::layer::Layered`] store whose hook is a [`Gate`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cache_core::layer::{Layered, Method, Op, StoreHook};
use cache_core::{async_trait, Result};
use tokio::sync::Notify;

/// Holds the next compare-and-swap after [`Gate::arm`] until [`Gate::release`]: the hook of a
/// [`PausingStore`].
#[derive(Debug, Default)]
pub struct Gate {
    armed: AtomicBool,
    reached: Notify,
    release: Notify,
}

impl Gate {
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
    pub async fn reached(&self) {
        self.reached.notified().await;
    }
    pub fn release(&self) {
        self.release.notify_one();
    }
}

#[async_trait]
impl StoreHook for Gate {
    async fn before(&self, op: &Op<'_>) -> Result<()> {
        if op.method == Method::CompareAndSwap && self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
        Ok(())
    }
}

/// Forwards every call to the inner store; holds a compare-and-swap when the gate is armed.
pub type PausingStore<S> = Layered<S, Arc<Gate>>;

/// Wraps `inner` in a [`PausingStore`] and returns its gate.
pub fn pausing<S>(inner: S) -> (PausingStore<S>, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    (Layered::new(inner, Arc::clone(&gate)), gate)
}
