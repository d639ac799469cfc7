//! Shared test support: a store wrapper that counts calls and fails on demand (failure injection
//! above the `Store` trait, over a real `MemoryStore` or `RedisStore`), the test application, and an
//! HTTP helper with a one-cookie jar.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use cache_core::{
    BackendStats, CasOutcome, Error, Expiry, KeyTtl, Result, ScanCursor, ScanPage, SetOptions,
    Store,
};
use cachekit_axum::{MaybeSession, Session, SessionContext, SessionError};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Which calls of a [`Faulty`] store fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fail {
    Nothing = 0,
    Everything = 1,
    /// Compare-and-swap only: the write-back of a request.
    Writes = 2,
}

/// A store that forwards to `inner`, counts calls per method, and fails as told.
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    fail: AtomicU8,
    calls: Mutex<HashMap<&'static str, u64>>,
}

impl<S: Store> Faulty<S> {
    pub fn new(inner: S) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail: AtomicU8::new(Fail::Nothing as u8),
            calls: Mutex::new(HashMap::new()),
        })
    }

    pub fn fail(&self, how: Fail) {
        self.fail.store(how as u8, Ordering::SeqCst);
    }

    pub fn calls(&self, method: &str) -> u64 {
        self.calls.lock().get(method).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> u64 {
        self.calls.lock().values().sum()
    }

    pub fn reset_counts(&self) {
        self.calls.lock().clear();
    }

    fn enter(&self, method: &'static str) -> Result<()> {
        *self.calls.lock().entry(method).or_default() += 1;
        let fail = self.fail.load(Ordering::SeqCst);
        let fails = fail == Fail::Everything as u8
            || (fail == Fail::Writes as u8 && method == "compare_and_swap");
        if fails {
            return Err(Error::Connection {
                target: "127.0.0.1:1".into(),
                message: "injected outage".into(),
                source: None,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> Store for Faulty<S> {
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }
    fn backend_name(&self) -> &'static str {
        "faulty"
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.enter("get")?;
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.enter("get_many")?;
        self.inner.get_many(keys).await
    }
    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        self.enter("get_ex")?;
        self.inner.get_ex(key, ttl).await
    }
    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        self.enter("set")?;
        self.inner.set(key, value, opts).await
    }
    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
        self.enter("set_many")?;
        self.inner.set_many(entries, expiry).await
    }
    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        self.enter("delete")?;
        self.inner.delete(keys).await
    }
    async fn exists(&self, key: &str) -> Result<bool> {
        self.enter("exists")?;
        self.inner.exists(key).await
    }
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.enter("expire")?;
        self.inner.expire(key, ttl).await
    }
    async fn persist(&self, key: &str) -> Result<bool> {
        self.enter("persist")?;
        self.inner.persist(key).await
    }
    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.enter("ttl")?;
        self.inner.ttl(key).await
    }
    async fn incr_by(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.enter("incr_by")?;
        self.inner.incr_by(key, delta, ttl).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome> {
        self.enter("compare_and_swap")?;
        self.inner
            .compare_and_swap(key, expected, new, expiry)
            .await
    }
    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage> {
        self.enter("scan")?;
        self.inner.scan(pattern, cursor, count).await
    }
    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        self.enter("zadd")?;
        self.inner.zadd(key, member, score).await
    }
    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        self.enter("zrem")?;
        self.inner.zrem(key, members).await
    }
    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        self.enter("zrange_by_score")?;
        self.inner.zrange_by_score(key, min, max, limit).await
    }
    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        self.enter("zrem_range_by_score")?;
        self.inner.zrem_range_by_score(key, min, max).await
    }
    async fn zcard(&self, key: &str) -> Result<u64> {
        self.enter("zcard")?;
        self.inner.zcard(key).await
    }
    async fn ping(&self) -> Result<Duration> {
        self.enter("ping")?;
        self.inner.ping().await
    }
    async fn flush_prefix(&self) -> Result<u64> {
        self.enter("flush_prefix")?;
        self.inner.flush_prefix().await
    }
    async fn stats(&self) -> Result<Option<BackendStats>> {
        self.inner.stats().await
    }
}

/// Handlers that hold requests at a barrier, to interleave two of them deterministically.
#[derive(Clone)]
pub struct Gate(pub Arc<tokio::sync::Barrier>);

/// The application the layer tests drive.
pub fn routes(gate: Gate) -> Router {
    Router::new()
        .route("/login/{user}", post(login))
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/set/{field}/{value}", post(set))
        .route("/count", get(count))
        .route("/rotate", post(rotate))
        .route("/logout", post(logout))
        .route("/ctx-logout", post(ctx_logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/logout-others", post(logout_others))
        .route("/devices", get(devices))
        .route("/fail", post(fail))
        .route("/gated/{field}", post(gated))
        .route("/paused/{field}", post(paused))
        .route("/thrice", get(thrice))
        .route("/untouched", get(untouched))
        .with_state(gate)
}

async fn login(ctx: SessionContext, Path(user): Path<String>) -> Result<String, SessionError> {
    let login = ctx.login(&user, Default::default()).await?;
    Ok(login.token.expose().to_owned())
}

async fn me(session: Session) -> Json<Value> {
    Json(json!({"user": session.user_id(), "data": session.data()}))
}

async fn maybe(MaybeSession(session): MaybeSession) -> String {
    session.map_or_else(|| "anonymous".into(), |s| s.user_id().to_owned())
}

async fn set(
    session: Session,
    Path((field, value)): Path<(String, String)>,
) -> Result<(), SessionError> {
    session.insert(&field, value)
}

async fn count(session: Session) -> Result<String, SessionError> {
    let n = session.get::<u64>("n").unwrap_or(0) + 1;
    session.insert("n", n)?;
    Ok(n.to_string())
}

async fn rotate(session: Session) -> Result<String, SessionError> {
    Ok(session.rotate().await?.expose().to_owned())
}

async fn logout(session: Session) -> Result<(), SessionError> {
    session.logout().await
}

async fn ctx_logout(ctx: SessionContext) -> Result<String, SessionError> {
    Ok(ctx.logout().await?.to_string())
}

async fn logout_everywhere(session: Session) -> Result<String, SessionError> {
    Ok(session.logout_everywhere().await?.to_string())
}

async fn logout_others(session: Session) -> Result<String, SessionError> {
    Ok(session.logout_other_devices().await?.to_string())
}

async fn devices(session: Session) -> Result<String, SessionError> {
    Ok(session.devices().await?.len().to_string())
}

async fn fail(session: Session) -> impl IntoResponse {
    let _ = session.insert("poison", true);
    StatusCode::INTERNAL_SERVER_ERROR
}

async fn gated(
    State(gate): State<Gate>,
    session: Session,
    Path(field): Path<String>,
) -> Result<(), SessionError> {
    // Both requests have loaded the session before either writes.
    gate.0.wait().await;
    session.insert(&field, true)
}

async fn paused(
    State(gate): State<Gate>,
    session: Session,
    Path(field): Path<String>,
) -> Result<(), SessionError> {
    // The test meets the request here once it has loaded the session, acts, and lets it go on.
    gate.0.wait().await;
    gate.0.wait().await;
    session.insert(&field, true)
}

async fn thrice(
    a: Session,
    MaybeSession(b): MaybeSession,
    ctx: SessionContext,
) -> Result<String, SessionError> {
    let c = ctx.session().await?;
    Ok(format!("{} {} {}", a.user_id(), b.is_some(), c.is_some()))
}

async fn untouched(_ctx: SessionContext) -> &'static str {
    "ok"
}

/// One response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `Set-Cookie` headers, parsed.
    pub fn cookies(&self) -> Vec<cookie::Cookie<'static>> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
            .collect()
    }

    /// The one `Set-Cookie` of this response (panics if there are several).
    pub fn cookie(&self) -> Option<cookie::Cookie<'static>> {
        let mut all = self.cookies();
        assert!(all.len() <= 1, "several Set-Cookie headers: {all:?}");
        all.pop()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A client with a one-cookie jar (the session cookie), as a browser keeps it.
pub struct Client {
    pub app: Router,
    pub jar: Option<(String, String)>,
    pub bearer: Option<String>,
}

impl Client {
    pub fn new(app: Router) -> Self {
        Self {
            app,
            jar: None,
            bearer: None,
        }
    }

    pub async fn send(&mut self, method: &str, uri: &str) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some((name, value)) = &self.jar {
            req = req.header(header::COOKIE, format!("{name}={value}"));
        }
        if let Some(token) = &self.bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let reply = Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        for c in reply.cookies() {
            if c.max_age() == Some(cookie::time::Duration::ZERO) {
                self.jar = None;
            } else {
                self.jar = Some((c.name().to_owned(), c.value().to_owned()));
            }
        }
        reply
    }
}
