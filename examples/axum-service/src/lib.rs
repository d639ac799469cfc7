//! An example service built on cachekit: users log in and get a session (rotated at login, sliding
//! expiry, "log out everywhere"), and trend data is served cache-aside from a slow "database".
//!
//! Run it with `cargo run -p axum-service` (in-memory backend) or with `REDIS_URL=redis://...` set.
//!
//! | route | what it does |
//! |---|---|
//! | `POST /login` `{"user_id": "42"}` | creates a session, returns `{"token": ...}` |
//! | `GET /me` (`Authorization: Bearer TOKEN`) | the session (sliding expiry) |
//! | `POST /me/prefs` `{...}` | merges fields into the session atomically |
//! | `POST /logout` | deletes the session |
//! | `POST /logout-everywhere` | revokes every other session of the user |
//! | `GET /trends/{keyword}` | trend data, cache first, database on a miss (single-flight) |
//! | `GET /health` | readiness (a ping and one read, whatever the keyspace size); 503 when not ready |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cachekit::sessions::{CreateOptions, SessionData};
use cachekit::{CacheManager, Config, DynStore, ErrorKind, SessionManager};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Shared state of the service.
#[derive(Clone)]
pub struct AppState {
    store: DynStore,
    cache: CacheManager<DynStore>,
    sessions: SessionManager<DynStore>,
    /// How often the "database" was queried (to show cache-aside at work).
    pub db_queries: Arc<AtomicU64>,
}

impl AppState {
    /// Connects to the configured backend and builds the managers.
    pub async fn new(config: &Config) -> cachekit::Result<Self> {
        let store = cachekit::connect(config).await?;
        Ok(Self {
            cache: cachekit::cache_manager(store.clone(), config)?,
            sessions: cachekit::session_manager(store.clone(), config)?,
            store,
            db_queries: Arc::new(AtomicU64::new(0)),
        })
    }
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/me/prefs", post(prefs))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/trends/{keyword}", get(trends))
        .route("/health", get(health))
        .with_state(state)
}

/// An error response: JSON body, status from the error class.
struct ApiError(StatusCode, String);

impl From<cachekit::Error> for ApiError {
    fn from(e: cachekit::Error) -> Self {
        let status = match e.kind() {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            // Sessions fail closed: an outage is a 503, never an anonymous or stale session.
            ErrorKind::Connection | ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "missing bearer token".into()))
}

fn unauthorized() -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, "no such session".into())
}

#[derive(Deserialize)]
struct LoginRequest {
    user_id: String,
}

#[derive(Serialize)]
struct LoginResponse {
    token: String,
    handle: String,
}

async fn login(
    State(s): State<AppState>,
    Json(req): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    // (A real service checks the password here.)
    let created = s
        .sessions
        .create(
            &req.user_id,
            CreateOptions::new().with_data(SessionData::from_iter([(
                "logged_in_at".to_string(),
                json!(unix_now()),
            )])),
        )
        .await?;
    Ok(Json(LoginResponse {
        token: created.token.expose().to_string(),
        handle: created.session.handle.to_string(),
    }))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

async fn me(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = s
        .sessions
        .get(bearer(&headers)?)
        .await?
        .ok_or_else(unauthorized)?;
    Ok(Json(json!({
        "user_id": session.user_id,
        "data": session.data,
        "expires_at": session.expires_at().to_rfc3339(),
    })))
}

async fn prefs(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(patch): Json<SessionData>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let session = s
        .sessions
        .update(bearer(&headers)?, &patch)
        .await?
        .ok_or_else(unauthorized)?;
    Ok(Json(json!({"data": session.data})))
}

async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    s.sessions.delete(bearer(&headers)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout_everywhere(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = bearer(&headers)?;
    let session = s.sessions.get(token).await?.ok_or_else(unauthorized)?;
    let revoked = s
        .sessions
        .revoke_all_except(&session.user_id, token)
        .await?;
    Ok(Json(json!({"revoked": revoked})))
}

async fn trends(
    State(s): State<AppState>,
    Path(keyword): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let db_queries = s.db_queries.clone();
    let kw = keyword.clone();
    let data: serde_json::Value = s
        .cache
        .keyword_trends()
        .get_or_load(&keyword, || async move {
            // The "database": a slow TF-IDF analysis.
            db_queries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::convert::Infallible>(json!({"keyword": kw, "tfidf": [["tokio", 0.41]]}))
        })
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(data))
}

/// Readiness only: this route is public, so it costs two commands (`PING` and one `GET`) however
/// large the keyspace; the operations self-test is an operator's action (`cachectl health
/// --self-test`), never exposed here.
async fn health(State(s): State<AppState>) -> Response {
    let readiness = cachekit::health::readiness(s.store.as_ref()).await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"healthy": readiness.ready, "readiness": readiness})),
    )
        .into_response()
}
