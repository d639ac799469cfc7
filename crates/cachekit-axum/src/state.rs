//! The per-request session state the layer puts into the request's extensions, and the operations
//! the extractors run on it.
//!
//! One [`RequestState`] lives for one request. It holds the token the request presented (parsed
//! once, before any store call), the session once it has been looked up (at most once: the first
//! extractor that needs it loads it, the others share the result), the changes handlers made that
//! are not written yet, and what happened to the token (issued, rotated, ended). When the handler's
//! response comes back, [`RequestState::finish`] writes the changes through the manager's atomic
//! merge and sets, refreshes or clears the cookie.
//!
//! Locking: `ops` (an async mutex) serialises the operations that call the store (load, login,
//! rotate, logout, write-back) within the request, so they never interleave; `inner` (a plain mutex,
//! never held across an `.await`) guards the state itself, so reads and local changes are
//! synchronous.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use cache_core::ErrorKind;
use parking_lot::Mutex;
use sessions::{
    merge_patch, CreateOptions, Session as SessionView, SessionData, SessionHandle, SessionToken,
};

use crate::backend::Backend;
use crate::config::{CookieConfig, TokenSource};
use crate::error::SessionError;
use crate::metrics;

/// What every request of one layer shares.
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) cookie: CookieConfig,
    /// The cookie name, prefix included (computed once).
    pub(crate) cookie_name: String,
    pub(crate) source: TokenSource,
    pub(crate) max_sessions_per_user: Option<usize>,
}

/// What the request carried.
enum Presented {
    /// No token at all.
    Nothing,
    /// Something under the cookie name or in the bearer header that is not a well-formed token:
    /// "no session", decided without a store call.
    Malformed,
    /// A well-formed token (which may or may not name a live session).
    Token(SessionToken),
}

struct Live {
    token: SessionToken,
    view: SessionView,
    /// Merge patches not written yet, in order. Usually one: consecutive changes are folded into
    /// one patch whenever the fold means exactly the same as applying them one after the other.
    pending: Vec<SessionData>,
}

#[derive(Default)]
struct Inner {
    /// `live` is the truth: the presented token was looked up, or a login, rotation or logout
    /// replaced it in this request.
    settled: bool,
    live: Option<Live>,
    /// A token was issued in this request (login, rotation): its cookie must be sent.
    issued: bool,
    /// A session was ended in this request (logout, or a write found it gone).
    ended: bool,
}

/// The request's session state (see the module documentation).
pub(crate) struct RequestState {
    shared: Arc<Shared>,
    presented: Presented,
    ops: tokio::sync::Mutex<()>,
    inner: Mutex<Inner>,
}

/// The extension the layer inserts: a cheap handle to the request's state.
#[derive(Clone)]
pub(crate) struct RequestHandle(pub(crate) Arc<RequestState>);

impl RequestState {
    pub(crate) fn new(shared: Arc<Shared>, headers: &HeaderMap) -> Self {
        let presented = match shared.source {
            TokenSource::Cookie => from_cookies(headers, &shared.cookie_name),
            TokenSource::Bearer => from_bearer(headers),
        };
        if matches!(presented, Presented::Malformed) {
            metrics::rejected_token();
            tracing::debug!("malformed session token: treated as no session");
        }
        Self {
            shared,
            presented,
            ops: tokio::sync::Mutex::new(()),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn backend(&self) -> &dyn Backend {
        self.shared.backend.as_ref()
    }

    /// Looks the presented token up, once per request. A store failure is an error (and is not
    /// remembered, so a later extractor of the same request asks again).
    async fn ensure_loaded(&self) -> Result<(), SessionError> {
        if self.inner.lock().settled {
            return Ok(());
        }
        let _op = self.ops.lock().await;
        self.load_locked().await
    }

    async fn load_locked(&self) -> Result<(), SessionError> {
        if self.inner.lock().settled {
            return Ok(());
        }
        let token = match &self.presented {
            Presented::Token(token) => token.clone(),
            Presented::Nothing | Presented::Malformed => {
                self.inner.lock().settled = true;
                return Ok(());
            }
        };
        let live = match self.backend().get(token.expose()).await {
            Ok(found) => found.map(|view| Live {
                token,
                view,
                pending: Vec::new(),
            }),
            Err(e) if e.kind() == ErrorKind::Decode => {
                // A record nobody can read cannot vouch for anyone: end it (best effort) and carry
                // on without a session. The store answered, so this is not an outage.
                metrics::rejected_token();
                tracing::warn!(error = %e, "undecodable session record: deleting it");
                if let Err(e) = self.backend().delete(token.expose()).await {
                    tracing::warn!(error = %e, "could not delete an undecodable session");
                }
                None
            }
            Err(e) if e.kind() == ErrorKind::UnknownFormatVersion => {
                // Another build's record (a rolling upgrade): no session here, but not garbage,
                // so it stays for the instances that can read it.
                metrics::rejected_token();
                tracing::warn!(error = %e, "session record in a format version this build does not read");
                None
            }
            Err(e) if e.kind() == ErrorKind::InvalidInput => {
                metrics::rejected_token();
                None
            }
            Err(e) => return Err(SessionError::from_store(e)),
        };
        let mut inner = self.inner.lock();
        inner.settled = true;
        inner.live = live;
        Ok(())
    }

    /// The request's live session, loading it if needed.
    pub(crate) async fn current(&self) -> Result<Option<SessionView>, SessionError> {
        self.ensure_loaded().await?;
        Ok(self.view())
    }

    /// The live session as the handler sees it (pending changes included), without a store call.
    pub(crate) fn view(&self) -> Option<SessionView> {
        self.inner.lock().live.as_ref().map(|l| l.view.clone())
    }

    /// Records a change: applied to the local view at once, written at the end of the request (or
    /// by [`RequestState::flush`]).
    pub(crate) fn patch(&self, patch: SessionData) -> Result<(), SessionError> {
        let mut inner = self.inner.lock();
        let live = inner.live.as_mut().ok_or(SessionError::NoSession)?;
        merge_patch(Arc::make_mut(&mut live.view.data), &patch);
        let folded = live
            .pending
            .last_mut()
            .is_some_and(|last| fold(last, &patch));
        if !folded {
            live.pending.push(patch);
        }
        Ok(())
    }

    /// Writes the pending changes now, through the manager's atomic merge (one compare-and-swap
    /// loop per patch: concurrent writers on other requests or instances are never overwritten).
    pub(crate) async fn flush(&self) -> Result<(), SessionError> {
        let _op = self.ops.lock().await;
        self.flush_locked().await
    }

    async fn flush_locked(&self) -> Result<(), SessionError> {
        loop {
            let (token, patch) = {
                let mut inner = self.inner.lock();
                let Some(live) = inner.live.as_mut() else {
                    return Ok(());
                };
                if live.pending.is_empty() {
                    return Ok(());
                }
                (live.token.clone(), live.pending.remove(0))
            };
            match self.backend().update(token.expose(), &patch).await {
                Ok(Some(mut view)) => {
                    let mut inner = self.inner.lock();
                    if let Some(live) = inner.live.as_mut() {
                        // Changes made while the write was in flight stay pending and visible.
                        for p in &live.pending {
                            merge_patch(Arc::make_mut(&mut view.data), p);
                        }
                        live.view = view;
                    }
                }
                Ok(None) => {
                    // The session ended meanwhile (a logout elsewhere, expiry): nothing is written
                    // and nothing is brought back.
                    tracing::debug!("session ended before its changes were written");
                    let mut inner = self.inner.lock();
                    inner.live = None;
                    inner.ended = true;
                    return Err(SessionError::NoSession);
                }
                Err(e) => {
                    let mut inner = self.inner.lock();
                    if let Some(live) = inner.live.as_mut() {
                        live.pending.insert(0, patch);
                    }
                    return Err(SessionError::from_store(e));
                }
            }
        }
    }

    /// Logs `user_id` in with a new session. Whatever session the request came with is deleted
    /// first, so a token planted before login (session fixation) never becomes an authenticated
    /// one.
    pub(crate) async fn login(
        &self,
        user_id: &str,
        opts: CreateOptions,
    ) -> Result<SessionToken, SessionError> {
        let _op = self.ops.lock().await;
        let old = {
            let inner = self.inner.lock();
            if inner.settled {
                inner.live.as_ref().map(|l| l.token.clone())
            } else {
                match &self.presented {
                    Presented::Token(t) => Some(t.clone()),
                    _ => None,
                }
            }
        };
        let limit = self.shared.max_sessions_per_user;
        if let Some(limit) = limit {
            let keep_out = old.as_ref().map(SessionToken::handle);
            let active = self.count_sessions(user_id, keep_out).await?;
            if active >= limit {
                metrics::login_rejected();
                return Err(SessionError::TooManySessions { limit, active });
            }
        }
        if let Some(old) = &old {
            self.backend()
                .delete(old.expose())
                .await
                .map_err(SessionError::from_store)?;
            let mut inner = self.inner.lock();
            inner.settled = true;
            inner.live = None;
            inner.ended = true;
        }
        let created = self
            .backend()
            .create(user_id, opts)
            .await
            .map_err(SessionError::from_store)?;
        if let Some(limit) = limit {
            // A concurrent login elsewhere may have passed the same check: count again with ours
            // in, and back out if the user is now over the limit (both may back out; never both
            // stay).
            let active = self.count_sessions(user_id, None).await?;
            if active > limit {
                if let Err(e) = self.backend().delete(created.token.expose()).await {
                    tracing::warn!(error = %e, "could not back out a login over the limit");
                }
                metrics::login_rejected();
                return Err(SessionError::TooManySessions {
                    limit,
                    active: active - 1,
                });
            }
        }
        metrics::login();
        let token = created.token.clone();
        let mut inner = self.inner.lock();
        inner.settled = true;
        inner.issued = true;
        inner.live = Some(Live {
            token: created.token,
            view: created.session,
            pending: Vec::new(),
        });
        Ok(token)
    }

    async fn count_sessions(
        &self,
        user_id: &str,
        except: Option<&SessionHandle>,
    ) -> Result<usize, SessionError> {
        let listed = self
            .backend()
            .list(user_id)
            .await
            .map_err(SessionError::from_store)?;
        Ok(listed.iter().filter(|s| Some(&s.handle) != except).count())
    }

    /// A new token for the live session (privilege changes); the old one is dead when this returns.
    pub(crate) async fn rotate(&self) -> Result<SessionToken, SessionError> {
        let _op = self.ops.lock().await;
        self.load_locked().await?;
        let token = self.live_token()?;
        match self.backend().rotate(token.expose()).await {
            Ok(Some(rotated)) => {
                let mut inner = self.inner.lock();
                inner.issued = true;
                let new_token = rotated.token.clone();
                if let Some(live) = inner.live.as_mut() {
                    let mut view = rotated.session;
                    for p in &live.pending {
                        merge_patch(Arc::make_mut(&mut view.data), p);
                    }
                    live.token = rotated.token;
                    live.view = view;
                }
                Ok(new_token)
            }
            Ok(None) => {
                self.end();
                Err(SessionError::NoSession)
            }
            Err(e) => Err(SessionError::from_store(e)),
        }
    }

    /// Ends the request's session, if it has one. `true`: a stored session was deleted.
    pub(crate) async fn logout(&self) -> Result<bool, SessionError> {
        let _op = self.ops.lock().await;
        let token = {
            let inner = self.inner.lock();
            if inner.settled {
                inner.live.as_ref().map(|l| l.token.clone())
            } else {
                match &self.presented {
                    Presented::Token(t) => Some(t.clone()),
                    _ => None,
                }
            }
        };
        let Some(token) = token else {
            self.end();
            return Ok(false);
        };
        let deleted = self
            .backend()
            .delete(token.expose())
            .await
            .map_err(SessionError::from_store)?;
        self.end();
        metrics::logout("session");
        Ok(deleted)
    }

    /// Ends every session of the live session's user, this one included.
    pub(crate) async fn logout_everywhere(&self) -> Result<u64, SessionError> {
        let _op = self.ops.lock().await;
        self.load_locked().await?;
        let user_id = self.live_user()?;
        let n = self
            .backend()
            .revoke_all(&user_id)
            .await
            .map_err(SessionError::from_store)?;
        self.end();
        metrics::logout("everywhere");
        Ok(n)
    }

    /// Ends every other session of the live session's user.
    pub(crate) async fn logout_others(&self) -> Result<u64, SessionError> {
        let _op = self.ops.lock().await;
        self.load_locked().await?;
        let user_id = self.live_user()?;
        let token = self.live_token()?;
        let n = self
            .backend()
            .revoke_all_except(&user_id, token.expose())
            .await
            .map_err(SessionError::from_store)?;
        metrics::logout("others");
        Ok(n)
    }

    /// The live sessions of the live session's user (handles, never tokens).
    pub(crate) async fn devices(&self) -> Result<Vec<SessionView>, SessionError> {
        self.ensure_loaded().await?;
        let user_id = self.live_user()?;
        self.backend()
            .list(&user_id)
            .await
            .map_err(SessionError::from_store)
    }

    fn live_token(&self) -> Result<SessionToken, SessionError> {
        self.inner
            .lock()
            .live
            .as_ref()
            .map(|l| l.token.clone())
            .ok_or(SessionError::NoSession)
    }

    fn live_user(&self) -> Result<String, SessionError> {
        self.inner
            .lock()
            .live
            .as_ref()
            .map(|l| l.view.user_id.clone())
            .ok_or(SessionError::NoSession)
    }

    fn end(&self) {
        let mut inner = self.inner.lock();
        inner.settled = true;
        inner.live = None;
        inner.ended = true;
    }

    /// After the handler: writes pending changes, then sets, refreshes or clears the cookie.
    pub(crate) async fn finish(&self, mut res: Response) -> Response {
        let _op = self.ops.lock().await;
        if res.status().is_server_error() {
            // The handler failed: its half-made changes are not written (the tokens it issued or
            // ended are real, so the cookie is still brought up to date below).
            if let Some(live) = self.inner.lock().live.as_mut() {
                live.pending.clear();
            }
        } else {
            match self.flush_locked().await {
                Ok(()) | Err(SessionError::NoSession) => {}
                // The changes were not stored: the handler's answer would be a lie, so the
                // request fails (503 for an outage, 413 for oversized data). The cookie is left
                // as it is: the session itself is unchanged.
                Err(e) => return e.into_response(),
            }
        }
        if self.shared.source == TokenSource::Cookie {
            if self.inner.lock().settled {
                // The answer depended on the cookie: caches must not serve it to another one.
                res.headers_mut()
                    .append(header::VARY, HeaderValue::from_static("cookie"));
            }
            if let Some(value) = self.cookie_header() {
                match HeaderValue::from_str(&value) {
                    Ok(v) => {
                        res.headers_mut().append(header::SET_COOKIE, v);
                    }
                    Err(e) => tracing::error!(error = %e, "session cookie is not a valid header"),
                }
            }
        }
        res
    }

    /// The `Set-Cookie` value this response needs, if any.
    fn cookie_header(&self) -> Option<String> {
        let inner = self.inner.lock();
        let cookie = &self.shared.cookie;
        match &inner.live {
            // Looked up or issued in this request: (re)send it, so that `Max-Age` follows the
            // sliding expiry the lookup just applied in the store.
            Some(live) if inner.settled => {
                // Rounded to the nearest second: the milliseconds spent in this request would
                // otherwise turn a one-hour session into `Max-Age=3599`. The store's expiry is
                // the authority either way.
                let ms = (live.view.expires_at() - self.backend().now()).num_milliseconds();
                let secs = ms.saturating_add(500).div_euclid(1000);
                if secs > 0 {
                    Some(cookie.set_cookie(live.token.expose(), secs))
                } else {
                    Some(cookie.removal_cookie())
                }
            }
            Some(_) => None,
            None => {
                let presented = !matches!(self.presented, Presented::Nothing);
                // A cookie that names no session (unknown, expired, malformed, logged out) is
                // cleared; a request that never carried one gets nothing.
                let stale =
                    presented && (inner.settled || matches!(self.presented, Presented::Malformed));
                (stale || (inner.ended && inner.issued)).then(|| cookie.removal_cookie())
            }
        }
    }
}

/// Folds `next` into `acc` when applying the result once means exactly the same as applying `acc`
/// and then `next` (RFC 7386 merge patches do not compose in general: an object merged after a
/// replacement of the same member is not expressible as one patch). Returns `false`, leaving `acc`
/// untouched, when they do not fold.
fn fold(acc: &mut SessionData, next: &SessionData) -> bool {
    if !foldable(acc, next) {
        return false;
    }
    fold_unchecked(acc, next);
    true
}

fn foldable(acc: &SessionData, next: &SessionData) -> bool {
    next.iter().all(|(k, v)| match (acc.get(k), v) {
        (None, _) | (Some(_), serde_json::Value::Null) => true,
        (Some(serde_json::Value::Object(a)), serde_json::Value::Object(n)) => foldable(a, n),
        // An object merged into a member `acc` replaces or deletes: not one patch.
        (Some(_), serde_json::Value::Object(_)) => false,
        (Some(_), _) => true,
    })
}

fn fold_unchecked(acc: &mut SessionData, next: &SessionData) {
    for (k, v) in next {
        match (acc.get_mut(k), v) {
            (Some(serde_json::Value::Object(a)), serde_json::Value::Object(n)) => {
                fold_unchecked(a, n)
            }
            _ => {
                acc.insert(k.clone(), v.clone());
            }
        }
    }
}

fn from_cookies(headers: &HeaderMap, name: &str) -> Presented {
    let mut seen = false;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for cookie in cookie::Cookie::split_parse(value).flatten() {
            if cookie.name() != name {
                continue;
            }
            // With several cookies of this name (a planted one under a narrower path comes first),
            // the first well-formed token wins; the `__Host-` prefix keeps others from planting.
            if let Ok(token) = SessionToken::parse(cookie.value()) {
                return Presented::Token(token);
            }
            seen = true;
        }
    }
    if seen {
        Presented::Malformed
    } else {
        Presented::Nothing
    }
}

fn from_bearer(headers: &HeaderMap) -> Presented {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Presented::Nothing;
    };
    let Ok(value) = value.to_str() else {
        return Presented::Malformed;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Presented::Malformed;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, ...) is not ours to judge.
        return Presented::Nothing;
    }
    match SessionToken::parse(token.trim()) {
        Ok(token) => Presented::Token(token),
        Err(_) => Presented::Malformed,
    }
}

#[cfg(test)]
mod tests;
