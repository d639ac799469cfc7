//! An example service built on cachekit: people log in on an HTML page (a session cookie), programs
//! use a bearer-token API, trend data is served cache-aside from a slow "database", and everything is
//! counted on `/metrics`.
//!
//! Run it with `cargo run -p axum-service` (in-memory backend) or with `REDIS_URL=redis://...` set,
//! then open <http://127.0.0.1:3000/>.
//!
//! | route | what it does |
//! |---|---|
//! | `GET /` | the login page, or (logged in) the session page with a visit counter |
//! | `POST /login` (form `username`) | logs in (any old session of this browser ends), back to `/` |
//! | `POST /logout` | ends this session, clears the cookie |
//! | `POST /logout-everywhere` | ends every session of the user, in every browser |
//! | `POST /api/login` `{"user_id": "42"}` | creates a session, returns `{"token": ..., "handle": ...}` |
//! | `GET /api/me` (`Authorization: Bearer TOKEN`) | the session (sliding expiry) |
//! | `POST /api/me/prefs` `{...}` | merges fields into the session atomically |
//! | `POST /api/logout` | deletes the session |
//! | `POST /api/logout-everywhere` | revokes every session of the user |
//! | `GET /trends/{keyword}` | trend data, cache first, database on a miss (single-flight) |
//! | `GET /health` | the health report; 503 when unhealthy |
//! | `GET /metrics` | Prometheus text format: cache and session-layer counters |
//!
//! Sessions come from [`cachekit_axum`]: the page routes sit behind a cookie [`SessionLayer`], the
//! API behind a bearer one, both over the same [`SessionManager`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cachekit::sessions::{CreateOptions, SessionData};
use cachekit::{CacheManager, Config, DynStore, SessionManager};
use cachekit_axum::{CookieConfig, Session, SessionContext, SessionError, SessionLayer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use serde_json::json;

mod pages;

/// Shared state of the service.
#[derive(Clone)]
pub struct AppState {
    store: DynStore,
    cache: CacheManager<DynStore>,
    sessions: SessionManager<DynStore>,
    metrics: PrometheusHandle,
    secure_cookies: bool,
    /// How often the "database" was queried (to show cache-aside at work).
    pub db_queries: Arc<AtomicU64>,
}

/// The process's Prometheus recorder, installed the first time it is asked for. It must be in place
/// before the managers are built: they register their counters when they are created.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

impl AppState {
    /// Connects to the configured backend and builds the managers.
    pub async fn new(config: &Config) -> cachekit::Result<Self> {
        let metrics = prometheus();
        let store = cachekit::connect(config).await?;
        Ok(Self {
            cache: cachekit::cache_manager(store.clone(), config)?,
            sessions: cachekit::session_manager(store.clone(), config)?,
            store,
            metrics,
            secure_cookies: true,
            db_queries: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sends the session cookie without `Secure` (and so without the `__Host-` prefix): only for a
    /// plain-HTTP deployment on a host browsers do not treat as secure. `localhost` and
    /// `127.0.0.1` do not need this.
    pub fn with_insecure_cookies(mut self) -> Self {
        self.secure_cookies = false;
        self
    }

    /// The session manager (for tests and admin tools).
    pub fn sessions(&self) -> &SessionManager<DynStore> {
        &self.sessions
    }

    /// The store (for tests and admin tools).
    pub fn store(&self) -> &DynStore {
        &self.store
    }
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    let cookie_layer = SessionLayer::builder(state.sessions.clone())
        .cookie(CookieConfig::new().with_secure(state.secure_cookies))
        .build()
        // Invariant: the default cookie with or without `Secure` passes every check of `build`.
        .expect("the example's cookie settings are valid");
    let pages = Router::new()
        .route("/", get(pages::home))
        .route("/login", post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/logout-everywhere", post(pages::logout_everywhere))
        .layer(cookie_layer);
    let api = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/me/prefs", post(prefs))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(SessionLayer::bearer(state.sessions.clone()));
    Router::new()
        .merge(pages)
        .nest("/api", api)
        .route("/trends/{keyword}", get(trends))
        .route("/health", get(health))
        .route("/metrics", get(metrics_page))
        .with_state(state)
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn login_data() -> CreateOptions {
    CreateOptions::new().with_data(SessionData::from_iter([(
        "logged_in_at".to_string(),
        json!(unix_now()),
    )]))
}

async fn login(
    ctx: SessionContext,
    Json(req): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, SessionError> {
    // (A real service checks the password here.)
    let login = ctx.login(&req.user_id, login_data()).await?;
    Ok(Json(LoginResponse {
        token: login.token.expose().to_string(),
        handle: login.token.handle().to_string(),
    }))
}

async fn me(session: Session) -> Json<serde_json::Value> {
    Json(json!({
        "user_id": session.user_id(),
        "data": session.data(),
        "expires_at": session.expires_at().map(|t| t.to_rfc3339()),
    }))
}

async fn prefs(
    session: Session,
    Json(patch): Json<SessionData>,
) -> Result<Json<serde_json::Value>, SessionError> {
    session.merge(patch)?;
    // Written now rather than on the way out, so that the answer shows the stored data (including
    // fields other requests merged meanwhile).
    session.save().await?;
    Ok(Json(json!({"data": session.data()})))
}

async fn logout(session: Session) -> Result<StatusCode, SessionError> {
    session.logout().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn logout_everywhere(session: Session) -> Result<Json<serde_json::Value>, SessionError> {
    let revoked = session.logout_everywhere().await?;
    Ok(Json(json!({"revoked": revoked})))
}

async fn trends(
    State(s): State<AppState>,
    Path(keyword): Path<String>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
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
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(data))
}

async fn health(State(s): State<AppState>) -> Response {
    let report = cachekit::health::check(s.store.as_ref()).await;
    let status = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn metrics_page(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}
