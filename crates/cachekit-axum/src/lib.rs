//! # cachekit-axum
//!
//! Sessions for axum (and any tower) services on top of cachekit's
//! [`SessionManager`](sessions::SessionManager): a [`SessionLayer`] and three extractors,
//! [`Session`], [`MaybeSession`] and [`SessionContext`].
//!
//! ```
//! use axum::{routing::get, Router};
//! use cachekit_axum::{MaybeSession, Session, SessionContext, SessionError, SessionLayer};
//!
//! async fn login(ctx: SessionContext) -> Result<String, SessionError> {
//!     let login = ctx.login("user-42", Default::default()).await?;
//!     Ok(login.session.user_id().to_owned())
//! }
//!
//! async fn page(session: MaybeSession) -> &'static str {
//!     match session.0 {
//!         Some(_) => "welcome back",
//!         None => "please log in",
//!     }
//! }
//!
//! async fn visit(session: Session) -> Result<String, SessionError> {
//!     let n = session.get::<u64>("visits").unwrap_or(0) + 1;
//!     session.insert("visits", n)?;
//!     Ok(n.to_string())
//! }
//!
//! let manager = sessions::SessionManager::new(cache_memory::MemoryStore::default());
//! let app: Router = Router::new()
//!     .route("/login", get(login))
//!     .route("/", get(page))
//!     .route("/visit", get(visit))
//!     .layer(SessionLayer::new(manager));
//! ```
//!
//! - **Tokens** come from a cookie (default) or from `Authorization: Bearer`
//!   ([`SessionLayer::bearer`], [`TokenSource`]); their format is checked before any store call.
//! - **Loaded once** per request, by the first extractor that needs it (one `GETEX` that slides the
//!   idle expiry); routes that take no session extractor cost nothing.
//! - **Written back** only when something changed, as one JSON merge patch through the manager's
//!   compare-and-swap merge: concurrent requests never overwrite each other's fields, and a session
//!   ended meanwhile is not brought back.
//! - **Cookies** with secure defaults ([`CookieConfig`]: `__Host-` prefix, `HttpOnly`, `Secure`,
//!   `SameSite=Lax`, `Path=/`, `Max-Age` following the session's sliding expiry), refreshed when the
//!   session is read, cleared on logout and when they name no session.
//! - **Login** ([`SessionContext::login`]) deletes whatever session the request came with before
//!   creating the new one (session fixation); [`Session::rotate`] for privilege changes;
//!   [`Session::logout`], [`Session::logout_everywhere`], [`Session::logout_other_devices`]; an
//!   optional per-user limit that refuses logins ([`SessionError::TooManySessions`]).
//! - **Fail closed** ([`SessionError`]): a store that cannot answer is `503`, never an anonymous
//!   request; a malformed or unknown token is "no session", never a `500`.
//!
//! The user guide, `docs/user-guide-web.md`, walks through all of it; its first example is compiled
//! as a test of this crate.

mod backend;
mod config;
mod error;
mod extract;
mod layer;
mod metrics;
mod state;

pub use config::{ConfigError, CookieConfig, TokenSource, DEFAULT_COOKIE_NAME};
pub use cookie::SameSite;
pub use error::SessionError;
pub use extract::{Login, MaybeSession, Session, SessionContext};
pub use layer::{SessionLayer, SessionLayerBuilder, SessionService};
/// The session manager crate, for [`CreateOptions`](sessions::CreateOptions) and friends.
pub use sessions;

/// The user guide's examples, compiled as doc tests so that the guide stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/user-guide-web.md")]
struct UserGuideWeb;
