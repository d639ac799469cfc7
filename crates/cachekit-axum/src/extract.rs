//! The axum extractors: [`Session`] (a live session, or `401`), [`MaybeSession`] (a session if
//! there is one) and [`SessionContext`] (log in and out whatever the request carries). All three
//! reject with `503` when the store cannot answer: a request is never silently anonymous.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sessions::{CreateOptions, Session as SessionView, SessionData, SessionHandle, SessionToken};

use crate::error::SessionError;
use crate::state::{RequestHandle, RequestState};

fn state(parts: &Parts) -> Result<Arc<RequestState>, SessionError> {
    parts
        .extensions
        .get::<RequestHandle>()
        .map(|h| Arc::clone(&h.0))
        .ok_or_else(|| {
            tracing::error!("a session extractor is used on a route without a SessionLayer");
            SessionError::MissingLayer
        })
}

/// The request's live session. As an extractor it rejects with `401` when the request has no live
/// session and with `503` when the store cannot answer.
///
/// Reads are local (the session was loaded once for the request). Changes ([`Session::insert`],
/// [`Session::remove`]) are applied to this view at once and written when the response leaves,
/// as one atomic merge into the stored session: concurrent requests that change other fields are
/// never overwritten. [`Session::save`] writes them earlier, to see the outcome in the handler.
///
/// Clones share the same state.
#[derive(Clone)]
pub struct Session {
    state: Arc<RequestState>,
    user_id: Arc<str>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("handle", &self.handle())
            .finish_non_exhaustive()
    }
}

impl Session {
    fn new(state: Arc<RequestState>, view: &SessionView) -> Self {
        Self {
            state,
            user_id: Arc::from(view.user_id.as_str()),
        }
    }

    /// The user the session belongs to.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The session's non-secret handle (for "your devices" pages and logs); `None` once it ended.
    pub fn handle(&self) -> Option<SessionHandle> {
        self.state.view().map(|v| v.handle)
    }

    /// The whole session as the handler sees it (data with pending changes, timestamps,
    /// deadlines); `None` once it ended in this request.
    pub fn snapshot(&self) -> Option<SessionView> {
        self.state.view()
    }

    /// The session's data (empty once it ended).
    pub fn data(&self) -> SessionData {
        self.state
            .view()
            .map(|v| Arc::unwrap_or_clone(v.data))
            .unwrap_or_default()
    }

    /// One field of the data, deserialized; `None` when absent or of another shape.
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Option<T> {
        self.state.view().and_then(|v| v.get(field))
    }

    /// When the session ends if it is not used again (idle deadline, capped by the absolute one).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.state.view().map(|v| v.expires_at())
    }

    /// Sets a field. Written as the JSON merge patch `{field: value}` (RFC 7386): scalars and arrays
    /// replace, objects merge into an object already there, `null` members delete.
    pub fn insert<T: Serialize>(&self, field: &str, value: T) -> Result<(), SessionError> {
        let value =
            serde_json::to_value(value).map_err(|e| SessionError::InvalidInput(e.to_string()))?;
        self.state
            .patch(SessionData::from_iter([(field.to_owned(), value)]))
    }

    /// Removes a field.
    pub fn remove(&self, field: &str) -> Result<(), SessionError> {
        self.state.patch(SessionData::from_iter([(
            field.to_owned(),
            serde_json::Value::Null,
        )]))
    }

    /// Merges a JSON merge patch (RFC 7386) into the data.
    pub fn merge(&self, patch: SessionData) -> Result<(), SessionError> {
        self.state.patch(patch)
    }

    /// Writes the pending changes now instead of when the response leaves.
    /// [`SessionError::NoSession`]: the session ended meanwhile and nothing was written.
    pub async fn save(&self) -> Result<(), SessionError> {
        self.state.flush().await
    }

    /// Gives the session a new token (after a privilege change: "sudo mode", a role granted). The
    /// old token is dead when this returns; the response carries the new cookie. Returns the new
    /// token, which bearer-token APIs hand to their client.
    pub async fn rotate(&self) -> Result<SessionToken, SessionError> {
        self.state.rotate().await
    }

    /// Logs out: deletes the session and clears the cookie.
    pub async fn logout(&self) -> Result<(), SessionError> {
        self.state.logout().await.map(|_| ())
    }

    /// Logs the user out everywhere, this session included, and clears the cookie. Returns how
    /// many sessions ended.
    pub async fn logout_everywhere(&self) -> Result<u64, SessionError> {
        self.state.logout_everywhere().await
    }

    /// Logs the user out of every other session; this one stays. Returns how many ended.
    pub async fn logout_other_devices(&self) -> Result<u64, SessionError> {
        self.state.logout_others().await
    }

    /// The user's live sessions, oldest first (handles and data, never tokens), for a "your
    /// devices" page.
    pub async fn devices(&self) -> Result<Vec<SessionView>, SessionError> {
        self.state.devices().await
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let state = state(parts)?;
        match state.current().await? {
            Some(view) => Ok(Session::new(state, &view)),
            None => Err(SessionError::NoSession),
        }
    }
}

/// The request's session if it has one. Rejects only with `503` (the store cannot answer), so a
/// handler never mistakes an outage for an anonymous visitor.
#[derive(Debug, Clone)]
pub struct MaybeSession(pub Option<Session>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeSession {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let state = state(parts)?;
        let view = state.current().await?;
        Ok(MaybeSession(view.map(|v| Session::new(state, &v))))
    }
}

/// What [`SessionContext::login`] returns.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Login {
    /// The new session.
    pub session: Session,
    /// Its token. With cookies the layer sends it; bearer-token APIs return it to their client
    /// (`token.expose()`), once.
    pub token: SessionToken,
}

/// The request's session slot, whether or not it holds a session: log in, look at the session,
/// log out. Never rejects except without a layer (the store is only called by its methods).
#[derive(Clone)]
pub struct SessionContext {
    state: Arc<RequestState>,
}

impl std::fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionContext").finish_non_exhaustive()
    }
}

impl SessionContext {
    /// The request's live session, if any (`Err` only when the store cannot answer).
    pub async fn session(&self) -> Result<Option<Session>, SessionError> {
        let view = self.state.current().await?;
        Ok(view.map(|v| Session::new(Arc::clone(&self.state), &v)))
    }

    /// Logs `user_id` in (after the application checked the credentials) with a new session.
    ///
    /// Any session the request came with is deleted first, whoever it belonged to: a token planted
    /// in the browser before login (session fixation) is dead afterwards, and the response carries
    /// the new cookie. With a per-user limit
    /// ([`crate::SessionLayerBuilder::max_sessions_per_user`]) a login over it is
    /// [`SessionError::TooManySessions`] and changes nothing.
    pub async fn login(&self, user_id: &str, opts: CreateOptions) -> Result<Login, SessionError> {
        let token = self.state.login(user_id, opts).await?;
        let view = self.state.view().ok_or(SessionError::NoSession)?;
        Ok(Login {
            session: Session::new(Arc::clone(&self.state), &view),
            token,
        })
    }

    /// Logs out whatever session the request carries (without loading it first) and clears the
    /// cookie. `true`: a stored session was deleted.
    pub async fn logout(&self) -> Result<bool, SessionError> {
        self.state.logout().await
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionContext {
    type Rejection = SessionError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(SessionContext {
            state: state(parts)?,
        })
    }
}
