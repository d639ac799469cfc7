//! # cachekit-tower-sessions
//!
//! A [`tower_sessions_core::SessionStore`] (tower-sessions 0.15) on any cachekit
//! [`Store`]: Redis, Redis Cluster or the in-memory store. A service already on
//! tower-sessions switches with one line and keeps its handlers:
//!
//! ```
//! # async fn f() -> cache_core::Result<()> {
//! use std::sync::Arc;
//! use cachekit_tower_sessions::CachekitStore;
//!
//! let store: Arc<dyn cache_core::Store> = Arc::new(cache_memory::MemoryStore::default());
//! let session_store = CachekitStore::new(store); // instead of RedisStore::new(pool)
//! // let layer = tower_sessions::SessionManagerLayer::new(session_store);
//! # let _ = session_store; Ok(()) }
//! ```
//!
//! What it does that tower-sessions' own Redis store does not:
//!
//! - **Ids hashed at rest.** The key is `tower-session:{hex(SHA-256(id))}` and the value holds the
//!   data and the expiry date only, never the id: whoever reads a Redis dump, a replica or the output
//!   of `SCAN` learns nothing that opens a session. (The id has 128 random bits; SHA-256 is
//!   preimage resistant, so no salt is needed.)
//! - **`create` never overwrites**: `SET NX`; on a collision a new id is drawn (at most
//!   [`MAX_ID_ATTEMPTS`] times, after which the random generator is broken and `create` fails).
//! - **`save` never resurrects**: `SET XX`. A session deleted meanwhile (a logout in another tab,
//!   `cycle_id`, expiry) stays deleted; the save is dropped.
//! - **Expiry follows the record**: the key's TTL is the time left until `expiry_date`, set on every
//!   write; `load` also checks the date, so a key whose TTL was lost (an operator's `PERSIST`) cannot
//!   outlive its record. A record already past its date is not written (and deleted on save).
//! - Our store underneath: timeouts, retries, health checks, Redis Cluster, and store errors are
//!   errors (never "no session").
//!
//! [`ExpiredDeletion`] is implemented as a no-op: keys expire by their TTL, so there is nothing to
//! sweep, but code that spawns `continuously_delete_expired` keeps compiling.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cache_core::{codec, ErrorKind, SetOptions, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, ExpiredDeletion, SessionStore};

/// The literal part of every key this store writes, before the hashed id.
pub const KEY_PREFIX: &str = "tower-session:";

/// How many ids `create` tries when `SET NX` finds the key taken.
pub const MAX_ID_ATTEMPTS: u32 = 8;

/// A tower-sessions store on a cachekit store. Cheap to clone (one `Arc`).
pub struct CachekitStore<S: ?Sized = dyn Store> {
    store: Arc<S>,
}

impl<S: ?Sized> Clone for CachekitStore<S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
        }
    }
}

impl<S: Store + ?Sized> fmt::Debug for CachekitStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachekitStore")
            .field("backend", &self.store.backend_name())
            .field("prefix", &self.store.prefix())
            .finish()
    }
}

impl<S: Store + ?Sized> CachekitStore<S> {
    /// Sessions in `store` (its prefix applies, as to every key of the library).
    pub fn new(store: Arc<S>) -> Self {
        Self { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The store key of a session id: the hash, never the id.
    pub fn key(id: &Id) -> String {
        let digest = Sha256::digest(id.0.to_le_bytes());
        let mut key = String::with_capacity(KEY_PREFIX.len() + 64);
        key.push_str(KEY_PREFIX);
        for byte in digest {
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        key
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What is stored: the data and the expiry date. The id is the key's preimage and is not stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    data: std::collections::HashMap<String, serde_json::Value>,
    /// Nanoseconds since the Unix epoch.
    expires_at_ns: i128,
}

impl Stored {
    fn of(record: &Record) -> Self {
        Self {
            data: record.data.clone(),
            expires_at_ns: record.expiry_date.unix_timestamp_nanos(),
        }
    }
}

/// The TTL that makes a key expire at `expiry`, or `None` when that moment has passed.
fn ttl_until(expiry: OffsetDateTime) -> Option<Duration> {
    let left = expiry - OffsetDateTime::now_utc();
    // Sub-millisecond remainders round up in the store; a non-positive one means "already expired".
    Duration::try_from(left).ok().filter(|d| !d.is_zero())
}

fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    codec::encode(&Stored::of(record)).map_err(|e| session_store::Error::Encode(e.to_string()))
}

fn store_error(e: cache_core::Error) -> session_store::Error {
    match e.kind() {
        ErrorKind::Decode => session_store::Error::Decode(e.to_string()),
        ErrorKind::Encode => session_store::Error::Encode(e.to_string()),
        _ => session_store::Error::Backend(e.to_string()),
    }
}

#[async_trait]
impl<S: Store + ?Sized> SessionStore for CachekitStore<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let Some(ttl) = ttl_until(record.expiry_date) else {
            // Born expired (an `AtDateTime` in the past): nothing worth storing.
            return Ok(());
        };
        let bytes = encode(record)?;
        for _ in 0..MAX_ID_ATTEMPTS {
            let key = Self::key(&record.id);
            if self
                .store
                .set(&key, &bytes, SetOptions::ttl(ttl).if_absent())
                .await
                .map_err(store_error)?
            {
                return Ok(());
            }
            tracing::error!("session id collision: drawing a new id (is the RNG broken?)");
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(
            "no free session id after several attempts: the random generator is broken".into(),
        ))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let key = Self::key(&record.id);
        let Some(ttl) = ttl_until(record.expiry_date) else {
            self.store.delete(&[&key]).await.map_err(store_error)?;
            return Ok(());
        };
        let written = self
            .store
            .set(&key, &encode(record)?, SetOptions::ttl(ttl).if_present())
            .await
            .map_err(store_error)?;
        if !written {
            // Deleted or expired since it was loaded: a save must not bring it back.
            tracing::debug!("session gone before save: not resurrected");
        }
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let key = Self::key(session_id);
        let Some(bytes) = self.store.get(&key).await.map_err(store_error)? else {
            return Ok(None);
        };
        let stored: Stored = codec::decode(&bytes).map_err(store_error)?;
        let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(stored.expires_at_ns)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        if expiry_date <= OffsetDateTime::now_utc() {
            // The key outlived its record (a lost TTL): the record decides.
            if let Err(e) = self.store.delete(&[&key]).await {
                tracing::warn!(error = %e, "could not delete an expired session");
            }
            return Ok(None);
        }
        Ok(Some(Record {
            id: *session_id,
            data: stored.data,
            expiry_date,
        }))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.store
            .delete(&[&Self::key(session_id)])
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

#[async_trait]
impl<S: Store + ?Sized> ExpiredDeletion for CachekitStore<S> {
    /// Nothing to do: every key carries its record's expiry as its TTL.
    async fn delete_expired(&self) -> session_store::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_memory::MemoryStore;
    use serde_json::json;

    fn record(expiry: OffsetDateTime) -> Record {
        Record {
            id: Id::default(),
            data: [("foo".to_string(), json!(42))].into_iter().collect(),
            expiry_date: expiry,
        }
    }

    #[test]
    fn keys_are_hashes() {
        let id = Id(42);
        let key = CachekitStore::<MemoryStore>::key(&id);
        assert_eq!(key.len(), KEY_PREFIX.len() + 64);
        assert!(!key.contains(&id.to_string()));
        assert_eq!(key, CachekitStore::<MemoryStore>::key(&Id(42)));
        assert_ne!(key, CachekitStore::<MemoryStore>::key(&Id(43)));
    }

    /// A key whose TTL was lost cannot outlive its record: `load` checks the date itself.
    #[tokio::test]
    async fn load_checks_the_record_date() {
        let memory = Arc::new(MemoryStore::default());
        let store = CachekitStore::new(Arc::clone(&memory));
        let past = record(OffsetDateTime::now_utc() - time::Duration::minutes(1));
        let key = CachekitStore::<MemoryStore>::key(&past.id);
        memory
            .set(&key, &encode(&past).unwrap(), SetOptions::new())
            .await
            .unwrap();
        assert!(store.load(&past.id).await.unwrap().is_none());
        assert!(!memory.exists(&key).await.unwrap(), "deleted on sight");
    }

    #[tokio::test]
    async fn expired_records_are_not_stored() {
        let memory = Arc::new(MemoryStore::default());
        let store = CachekitStore::new(Arc::clone(&memory));
        let mut live = record(OffsetDateTime::now_utc() + time::Duration::hours(1));
        store.create(&mut live).await.unwrap();
        let mut dead = live.clone();
        dead.expiry_date = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        store.save(&dead).await.unwrap();
        assert!(store.load(&live.id).await.unwrap().is_none());
        let mut born_dead = record(dead.expiry_date);
        store.create(&mut born_dead).await.unwrap();
        assert!(store.load(&born_dead.id).await.unwrap().is_none());
    }
}
