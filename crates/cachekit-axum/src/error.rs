//! [`SessionError`]: what the extractors reject with and what session operations return, and the
//! HTTP answer each case becomes. The mapping fails closed: a store that cannot answer is
//! `503 Service Unavailable`, never an anonymous request and never a `500`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why a session operation or extraction failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The request has no live session (no token, a malformed or unknown token, an expired or
    /// revoked session). `401 Unauthorized`.
    #[error("no session")]
    NoSession,
    /// The session store could not answer (connection lost, timeout, a server error). The request
    /// is refused rather than treated as anonymous. `503 Service Unavailable`.
    #[error("the session store is unavailable: {0}")]
    Unavailable(#[source] cache_core::Error),
    /// A login would exceed the per-user session limit of the layer
    /// ([`crate::SessionLayerBuilder::max_sessions_per_user`]); nothing changed. `409 Conflict`.
    #[error("the user already has {active} sessions; the limit is {limit}")]
    TooManySessions {
        /// The configured limit.
        limit: usize,
        /// The user's live sessions found (other than the one this request carried).
        active: usize,
    },
    /// The session data would exceed the store's record size limit; nothing was written.
    /// `413 Payload Too Large`.
    #[error("the session data is too large: {0}")]
    TooLarge(String),
    /// An argument was rejected before any store call (an empty or oversized user id, a value that
    /// does not serialize to JSON). `400 Bad Request`.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The route is not behind a [`crate::SessionLayer`]: a wiring mistake in the application,
    /// `500 Internal Server Error`.
    #[error("the route is not behind a SessionLayer")]
    MissingLayer,
}

impl SessionError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionError::NoSession => StatusCode::UNAUTHORIZED,
            SessionError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::TooManySessions { .. } => StatusCode::CONFLICT,
            SessionError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            SessionError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            SessionError::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Classifies an error of the session manager. Only input and size errors are the caller's;
    /// everything else means the store could not be trusted to answer, so it fails closed.
    pub(crate) fn from_store(err: cache_core::Error) -> Self {
        match err {
            cache_core::Error::InvalidInput(msg) => SessionError::InvalidInput(msg),
            cache_core::Error::Capacity(msg) => SessionError::TooLarge(msg),
            other => {
                crate::metrics::unavailable();
                tracing::warn!(error = %other, "session store unavailable: failing closed");
                SessionError::Unavailable(other)
            }
        }
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let status = self.status();
        // The body names the class of problem only: store errors can carry addresses and
        // settings, which are for the logs, not for clients.
        let body = match &self {
            SessionError::Unavailable(_) => "the session store is unavailable, try again".into(),
            SessionError::MissingLayer => "internal error".into(),
            other => other.to_string(),
        };
        let mut res = (status, body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fail_closed() {
        let outage = SessionError::from_store(cache_core::Error::Connection {
            target: "127.0.0.1:1".into(),
            message: "refused".into(),
            source: None,
        });
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
        let decode = SessionError::from_store(cache_core::Error::Decode("bad".into()));
        assert_eq!(decode.status(), StatusCode::SERVICE_UNAVAILABLE);
        let res = outage.into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            SessionError::from_store(cache_core::Error::invalid_input("x")).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            SessionError::from_store(cache_core::Error::Capacity("big".into())).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(SessionError::NoSession.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            SessionError::TooManySessions {
                limit: 1,
                active: 1
            }
            .status(),
            StatusCode::CONFLICT
        );
    }
}
