//! Server-assisted invalidation: how a backend tells in-process caches (the near caches of the
//! cache and session managers) that keys changed. A backend that can watch its server (Redis with
//! RESP3 `CLIENT TRACKING`) implements [`Store::track_changes`](crate::Store::track_changes); the
//! others answer [`Error::Unsupported`](crate::Error::Unsupported), and a near cache is then not
//! used.

/// Receives what a backend learns about changes of keys under a registered prefix. The backend
/// calls it from its connection task: implementations must be quick and must not block on I/O.
pub trait InvalidationListener: Send + Sync + 'static {
    /// `key` (relative to the store's prefix) was modified, deleted, expired or evicted.
    fn invalidate(&self, key: &str);
    /// Every key may have changed (`FLUSHDB`, `FLUSHALL`), tracking goes on.
    fn flush(&self);
    /// Tracking is lost: changes may have been missed and may be missed until
    /// [`InvalidationListener::tracking_ready`]. Anything cached must be dropped now.
    fn tracking_lost(&self);
    /// The server reports every change of the listener's keys from now on (again).
    fn tracking_ready(&self);
}
