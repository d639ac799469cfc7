//! The HTML pages a person uses: a login form, and a session page with a visit counter that
//! survives reloads, "log out" and "log out everywhere". Session state travels in the layer's
//! cookie; the forms post back and redirect (303) to `/`.

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use cachekit_axum::{MaybeSession, SessionContext, SessionError};
use serde::Deserialize;

/// The longest user name the login form accepts.
const MAX_USERNAME: usize = 64;

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto}}\
         form{{display:inline-block;margin-right:1rem}}dt{{font-weight:bold}}</style>\
         </head><body><h1>{title}</h1>\n{body}\n</body></html>\n"
    );
    // Pages show session data: never store them in a shared cache.
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const LOGIN_FORM: &str = "<form method=\"post\" action=\"/login\">\
    <label for=\"username\">User name</label> \
    <input id=\"username\" name=\"username\" required maxlength=\"64\" autocomplete=\"username\"> \
    <button id=\"login\" type=\"submit\">Log in</button></form>";

/// `GET /`: the login form, or the session page (which counts this visit).
pub(crate) async fn home(MaybeSession(session): MaybeSession) -> Result<Response, SessionError> {
    let Some(session) = session else {
        return Ok(page("Log in", LOGIN_FORM));
    };
    let visits = session.get::<u64>("visits").unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    let devices = session.devices().await?.len();
    let handle = session
        .handle()
        .and_then(|h| h.as_str().get(..12).map(str::to_owned))
        .unwrap_or_default();
    let expires = session
        .expires_at()
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let body = format!(
        "<p id=\"greeting\">Logged in as <strong id=\"user\">{user}</strong>.</p>\
         <dl><dt>Visits in this session</dt><dd id=\"visits\">{visits}</dd>\
         <dt>Session</dt><dd id=\"handle\">{handle}…</dd>\
         <dt>Expires (if idle)</dt><dd id=\"expires\">{expires}</dd>\
         <dt>Active sessions of this user</dt><dd id=\"devices\">{devices}</dd></dl>\
         <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Log out</button></form>\
         <form method=\"post\" action=\"/logout-everywhere\">\
         <button id=\"logout-everywhere\" type=\"submit\">Log out everywhere</button></form>",
        user = escape(session.user_id()),
    );
    Ok(page("Your session", &body))
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    username: String,
}

/// `POST /login`: logs in (after a real service checked a password) and goes back to `/`.
pub(crate) async fn login(
    ctx: SessionContext,
    Form(form): Form<LoginForm>,
) -> Result<Response, SessionError> {
    let username = form.username.trim();
    if username.is_empty() || username.len() > MAX_USERNAME {
        let body = format!(
            "<p id=\"error\">Enter a user name of 1 to {MAX_USERNAME} characters.</p>{LOGIN_FORM}"
        );
        let mut res = page("Log in", &body);
        *res.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(res);
    }
    ctx.login(username, super::login_data()).await?;
    Ok(Redirect::to("/").into_response())
}

/// `POST /logout`: ends this browser's session.
pub(crate) async fn logout(ctx: SessionContext) -> Result<Redirect, SessionError> {
    ctx.logout().await?;
    Ok(Redirect::to("/"))
}

/// `POST /logout-everywhere`: ends every session of the user, in every browser.
pub(crate) async fn logout_everywhere(
    MaybeSession(session): MaybeSession,
) -> Result<Redirect, SessionError> {
    if let Some(session) = session {
        session.logout_everywhere().await?;
    }
    Ok(Redirect::to("/"))
}
