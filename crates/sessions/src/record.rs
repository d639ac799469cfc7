//! The stored session record, the public [`Session`] view of it, and the JSON merge used by updates.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::token::SessionHandle;

/// Session data: a JSON object.
pub type SessionData = Map<String, Value>;

/// What is stored under `session:{handle}`, inside the `cache_core::codec` envelope.
///
/// Times are milliseconds since the Unix epoch. Unknown fields are ignored on read, so a later version
/// can add fields without a flush. The token is not here, nor anything derived from it but the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) user_id: String,
    /// Shared, so that a near-cache hit hands out the data without copying it.
    pub(crate) data: Arc<SessionData>,
    pub(crate) created_at_ms: i64,
    /// Rewritten only when older than the touch interval, so it may lag the true last access by up to
    /// that interval.
    pub(crate) last_accessed_ms: i64,
    pub(crate) idle_timeout_ms: i64,
    pub(crate) absolute_deadline_ms: i64,
    /// The handle of the session this one was rotated from (`None`: created by a login). Set when
    /// the record is created and never changed: [`SessionManager::revoke_all_except`] keeps the
    /// successors of the session it keeps, so a rotation racing it does not sign the user out.
    ///
    /// [`SessionManager::revoke_all_except`]: crate::SessionManager::revoke_all_except
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rotated_from: Option<String>,
    /// The handle of the session created at login that this one descends from by rotations
    /// (`None`: this one was created at login). Set when the record is created and never changed:
    /// with it, `revoke_all_except` keeps a session rotated twice while it runs, whose middle
    /// record is gone before it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lineage: Option<String>,
}

impl Record {
    /// The [`Record::lineage`] of a session rotated from this one, whose handle is `handle`.
    pub(crate) fn lineage_of_successor(&self, handle: &SessionHandle) -> String {
        self.lineage
            .clone()
            .unwrap_or_else(|| handle.as_str().to_owned())
    }
}

impl Record {
    /// When the session stops being valid if it is not accessed again: the earlier of the idle
    /// deadline and the absolute deadline.
    pub(crate) fn expires_at_ms(&self) -> i64 {
        self.last_accessed_ms
            .saturating_add(self.idle_timeout_ms)
            .min(self.absolute_deadline_ms)
    }

    /// Whether the session is expired at `now_ms` (the library's own check; the store TTL only
    /// collects garbage).
    pub(crate) fn is_expired_at(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at_ms()
    }

    /// The store TTL a session accessed at `now_ms` should have: its idle timeout, clamped to the
    /// absolute deadline. `None` when the session is already past its absolute deadline.
    pub(crate) fn ttl_at(&self, now_ms: i64) -> Option<Duration> {
        let ms = self
            .idle_timeout_ms
            .min(self.absolute_deadline_ms.saturating_sub(now_ms));
        (ms > 0).then(|| Duration::from_millis(ms.unsigned_abs()))
    }

    pub(crate) fn into_session(self, handle: SessionHandle) -> Session {
        Session {
            handle,
            user_id: self.user_id,
            data: self.data,
            created_at: ms_to_datetime(self.created_at_ms),
            last_accessed: ms_to_datetime(self.last_accessed_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(0).unsigned_abs()),
            absolute_deadline: ms_to_datetime(self.absolute_deadline_ms),
        }
    }
}

pub(crate) fn ms_to_datetime(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A live session, as returned by the manager. It carries the non-secret [`SessionHandle`], never the
/// token.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Session {
    /// The session's non-secret handle (hash of its token).
    pub handle: SessionHandle,
    /// The user the session belongs to.
    pub user_id: String,
    /// The session's data, a JSON object, shared with the near cache (read it through the `Arc`;
    /// [`Arc::make_mut`] or [`Arc::unwrap_or_clone`] for a copy of your own; changes are made with
    /// `SessionManager::update`).
    pub data: Arc<SessionData>,
    /// When the session was created (kept across rotations).
    pub created_at: DateTime<Utc>,
    /// The last access. From `get` this is the time of that call; from listings it is the stored value,
    /// which is refreshed at most once per touch interval.
    pub last_accessed: DateTime<Utc>,
    /// The idle timeout: the session ends after this long without access.
    pub idle_timeout: Duration,
    /// The absolute deadline: the session ends then, however often it is used.
    pub absolute_deadline: DateTime<Utc>,
}

impl Session {
    /// When the session ends if it is not accessed again: the earlier of `last_accessed +
    /// idle_timeout` and the absolute deadline.
    pub fn expires_at(&self) -> DateTime<Utc> {
        let idle = chrono::TimeDelta::from_std(self.idle_timeout).unwrap_or(chrono::TimeDelta::MAX);
        self.last_accessed
            .checked_add_signed(idle)
            .map_or(self.absolute_deadline, |t| t.min(self.absolute_deadline))
    }

    /// One field of the data, deserialized. `None` when absent or of another shape.
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Option<T> {
        self.data.get(field).and_then(|v| T::deserialize(v).ok())
    }
}

/// Applies a JSON merge patch (RFC 7386) to an object: members of `patch` replace those of `target`;
/// `null` removes a member; nested objects merge recursively.
pub fn merge_patch(target: &mut SessionData, patch: &SessionData) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(p) => {
                let slot = target
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(t) = slot {
                    merge_patch(t, p);
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> SessionData {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn merge_follows_rfc7386() {
        let mut t = obj(json!({"a": "b", "c": {"d": "e", "f": "g"}, "keep": 1}));
        merge_patch(
            &mut t,
            &obj(json!({"a": "z", "c": {"f": null, "n": {"x": null, "y": 1}}, "new": [1]})),
        );
        assert_eq!(
            Value::Object(t),
            json!({"a": "z", "c": {"d": "e", "n": {"y": 1}}, "keep": 1, "new": [1]})
        );
        let mut t = obj(json!({"a": 1}));
        merge_patch(&mut t, &obj(json!({"a": {"b": 2}})));
        assert_eq!(Value::Object(t), json!({"a": {"b": 2}}));
    }

    #[test]
    fn expiry_arithmetic() {
        let r = Record {
            user_id: "u".into(),
            data: Arc::new(Map::new()),
            created_at_ms: 1_000,
            last_accessed_ms: 1_000,
            idle_timeout_ms: 100,
            absolute_deadline_ms: 1_150,
            rotated_from: None,
            lineage: None,
        };
        assert_eq!(r.expires_at_ms(), 1_100);
        assert!(!r.is_expired_at(1_099));
        assert!(r.is_expired_at(1_100));
        assert_eq!(r.ttl_at(1_000), Some(Duration::from_millis(100)));
        assert_eq!(r.ttl_at(1_100), Some(Duration::from_millis(50)));
        assert_eq!(r.ttl_at(1_150), None);
        let s = r.into_session(crate::SessionToken::generate().unwrap().handle().clone());
        assert_eq!(s.expires_at().timestamp_millis(), 1_100);
    }
}
