//! In-process session events, through a [`tokio::sync::broadcast`] channel.
//!
//! Subscribe with `SessionManager::subscribe`. Events are emitted by *this* manager (and its clones)
//! after the store confirmed the change; other instances do not see them (this is not a
//! cross-process bus, and nothing in the library depends on it). A receiver that falls behind by more
//! than the channel capacity gets `RecvError::Lagged` and loses the oldest events; emitting never
//! blocks and never fails a session operation.

use crate::token::SessionHandle;

/// Something that happened to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session was created.
    Created {
        /// The new session.
        handle: SessionHandle,
        /// Its user.
        user_id: String,
    },
    /// A session got a new token; the old one no longer works.
    Rotated {
        /// The handle of the old token.
        old: SessionHandle,
        /// The handle of the new token.
        new: SessionHandle,
        /// The session's user.
        user_id: String,
    },
    /// A session was ended on purpose.
    Revoked {
        /// The session.
        handle: SessionHandle,
        /// Its user, when known.
        user_id: Option<String>,
        /// Why.
        reason: RevokeReason,
    },
    /// A read found the session past its idle or absolute deadline; it was removed.
    ExpiredOnAccess {
        /// The session.
        handle: SessionHandle,
        /// Its user.
        user_id: String,
    },
}

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeReason {
    /// `delete` with its token (a logout).
    Deleted,
    /// `revoke` / `revoke_for_user` by handle.
    Revoked,
    /// `revoke_all` for its user.
    RevokedAll,
    /// The user went over the maximum number of sessions and this was the oldest.
    MaxSessions,
}
