//! Health: the connectivity check and the operations self-test, as inherent methods of
//! [`RedisStore`]. Both are the backend-neutral checks of [`cache_core::health`] (so every backend
//! reports the same shape); on Redis the version comes from `INFO`, and the self-test's key space
//! lives under the store's prefix.

use cache_core::health::{self, Connectivity, SelfTestReport};

use crate::store::RedisStore;

impl RedisStore {
    /// Whether the server answers: `PING` round-trip time, server version (`INFO`), or the error in
    /// detail (class and message). Never fails: an unreachable server is an answer, not an error.
    /// The server address is [`RedisStore::target`].
    pub async fn connectivity(&self) -> Connectivity {
        health::connectivity(self).await
    }

    /// Exercises every operation family (strings, batches, TTLs, counters, compare-and-swap, scan,
    /// sorted sets, ping) under a dedicated key space inside the store's prefix
    /// (`{prefix}:__selftest-{nonce}:`), and deletes that key space afterwards even when a step
    /// fails. Each step reports separately; nothing outside the key space is read or written.
    pub async fn self_test(&self) -> SelfTestReport {
        health::self_test(self).await
    }
}
