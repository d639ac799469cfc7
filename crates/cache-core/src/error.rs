//! The one error type of the library.
//!
//! Backends map their private errors (redis-rs, pool, I/O) into [`Error`]; callers decide what to do with
//! [`Error::is_transient`] (retry or not) and [`Error::kind`] (metrics labels, CLI exit codes).

use std::time::Duration;

/// A boxed source error, kept so that `{:?}` and error reporters can show the whole chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for results of this library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to a store.
///
/// The enum is `#[non_exhaustive]`: new failure classes may be added without a breaking change, so
/// match on [`Error::kind`] or use a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend could not be reached: connection refused or reset, unknown host, broken pipe.
    #[error("cannot connect to {target}: {message}")]
    Connection {
        /// What we tried to reach (`127.0.0.1:6379`, a node of a cluster, ...).
        target: String,
        /// What went wrong, in words that say what to fix.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// An operation did not complete within its configured time budget.
    #[error(
        "{operation} timed out after {elapsed:?} (raise {setting} if the backend is just slow)"
    )]
    Timeout {
        /// The operation that timed out (`GET`, `connect`, `pool checkout`, ...).
        operation: String,
        /// How long we waited.
        elapsed: Duration,
        /// The setting that bounds this wait (`REDIS_RESPONSE_TIMEOUT`, ...).
        setting: &'static str,
    },
    /// The backend refused our credentials (wrong password, unknown ACL user, `NOAUTH`, `NOPERM`).
    #[error("authentication failed: {0}")]
    Auth(String),
    /// TLS could not be negotiated (plain server behind `rediss://`, bad certificate, ...).
    #[error("TLS error: {0}")]
    Tls(String),
    /// The caller passed something the library rejects before touching the store: an invalid key or
    /// id, a zero TTL, a malformed session token.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A configuration setting is missing or malformed.
    #[error("invalid setting {setting}: {message}")]
    Config {
        /// The setting's name as the user writes it (environment variable or builder method).
        setting: String,
        /// What is wrong with it and what would be accepted.
        message: String,
    },
    /// A stored value could not be decoded (corrupt bytes, no format envelope, wrong shape).
    #[error("cannot decode value: {0}")]
    Decode(String),
    /// A stored value is in a format version this build does not read: most likely written by a
    /// newer build during a rolling upgrade. Unlike [`Error::Decode`] the value is not corrupt (the
    /// build that wrote it reads it), so readers treat it as a miss and must neither delete nor
    /// overwrite it on that account.
    #[error(
        "value is in format version {found}, which this build does not read (it reads version \
         {supported}); a newer build probably wrote it"
    )]
    UnknownFormatVersion {
        /// The version found in the value's envelope.
        found: u32,
        /// The version this build reads and writes ([`crate::codec::FORMAT_VERSION`]).
        supported: u32,
    },
    /// A value could not be encoded.
    #[error("cannot encode value: {0}")]
    Encode(String),
    /// A size bound was hit: a value larger than allowed, or a bounded store that cannot make room.
    #[error("capacity exceeded: {0}")]
    Capacity(String),
    /// The key holds a value of another type (Redis `WRONGTYPE`).
    #[error("wrong type for key {key}: {message}")]
    WrongType {
        /// The key, relative to the store's prefix.
        key: String,
        /// The backend's message.
        message: String,
    },
    /// The operation is not supported by this backend or deployment.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The store was closed ([`Store::close`](crate::Store::close)): it refuses every call from
    /// then on. Permanent: build a new store to continue.
    #[error("the store is closed: {0}")]
    Closed(String),
    /// The backend answered with an error we do not classify further.
    #[error("backend error: {message}")]
    Backend {
        /// The backend's message.
        message: String,
        /// Whether retrying may help (`LOADING`, `TRYAGAIN`, `CLUSTERDOWN`, a busy script...).
        transient: bool,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

/// A coarse, stable classification of an [`Error`], for metrics labels, exit codes and matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::Connection`].
    Connection,
    /// [`Error::Timeout`].
    Timeout,
    /// [`Error::Auth`].
    Auth,
    /// [`Error::Tls`].
    Tls,
    /// [`Error::InvalidInput`].
    InvalidInput,
    /// [`Error::Config`].
    Config,
    /// [`Error::Decode`].
    Decode,
    /// [`Error::UnknownFormatVersion`].
    UnknownFormatVersion,
    /// [`Error::Encode`].
    Encode,
    /// [`Error::Capacity`].
    Capacity,
    /// [`Error::WrongType`].
    WrongType,
    /// [`Error::Unsupported`].
    Unsupported,
    /// [`Error::Backend`].
    Backend,
    /// [`Error::Closed`].
    Closed,
}

impl ErrorKind {
    /// A short snake_case name, stable across releases (used as a metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Auth => "auth",
            ErrorKind::Tls => "tls",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Config => "config",
            ErrorKind::Decode => "decode",
            ErrorKind::UnknownFormatVersion => "unknown_format_version",
            ErrorKind::Encode => "encode",
            ErrorKind::Capacity => "capacity",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Backend => "backend",
            ErrorKind::Closed => "closed",
        }
    }
}

impl Error {
    /// The coarse class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Connection { .. } => ErrorKind::Connection,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Auth(_) => ErrorKind::Auth,
            Error::Tls(_) => ErrorKind::Tls,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Config { .. } => ErrorKind::Config,
            Error::Decode(_) => ErrorKind::Decode,
            Error::UnknownFormatVersion { .. } => ErrorKind::UnknownFormatVersion,
            Error::Encode(_) => ErrorKind::Encode,
            Error::Capacity(_) => ErrorKind::Capacity,
            Error::WrongType { .. } => ErrorKind::WrongType,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Backend { .. } => ErrorKind::Backend,
            Error::Closed(_) => ErrorKind::Closed,
        }
    }

    /// Whether the same call may succeed if retried later: connection failures, timeouts and backend
    /// errors the server marks as temporary. Invalid input, auth, TLS and decode errors are permanent.
    ///
    /// A transient error says nothing about whether a write took effect: only retry operations that
    /// are safe to repeat. An unconditional `set` is not, once it may have been applied: repeated
    /// after another client's delete, it brings the deleted value back (the Redis backend therefore
    /// never repeats a value write after sending it).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connection { .. } | Error::Timeout { .. } => true,
            Error::Backend { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// Shorthand for [`Error::Config`].
    pub fn config(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            setting: setting.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Closed`]; `what` names the store (`the Redis store at 10.0.0.1:6379`).
    pub fn closed(what: impl std::fmt::Display) -> Self {
        Error::Closed(format!(
            "{what} was closed (close() was called); build a new store to continue"
        ))
    }

    /// Shorthand for a permanent [`Error::Backend`] without a source.
    pub fn backend(message: impl Into<String>) -> Self {
        Error::Backend {
            message: message.into(),
            transient: false,
            source: None,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Decode(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classification() {
        let conn = Error::Connection {
            target: "127.0.0.1:1".into(),
            message: "refused".into(),
            source: None,
        };
        assert!(conn.is_transient());
        let t = Error::Timeout {
            operation: "GET".into(),
            elapsed: Duration::from_millis(500),
            setting: "REDIS_RESPONSE_TIMEOUT",
        };
        assert!(t.is_transient());
        assert!(t.to_string().contains("REDIS_RESPONSE_TIMEOUT"));
        assert!(!Error::Auth("WRONGPASS".into()).is_transient());
        assert!(!Error::invalid_input("bad").is_transient());
        assert!(!Error::Decode("x".into()).is_transient());
        assert_eq!(Error::config("REDIS_URL", "x").kind(), ErrorKind::Config);
        assert_eq!(ErrorKind::WrongType.as_str(), "wrong_type");
        let closed = Error::closed("the Redis store at h:1");
        assert_eq!(closed.kind(), ErrorKind::Closed);
        assert!(!closed.is_transient(), "a closed store stays closed");
        assert!(closed.to_string().contains("close()"), "{closed}");
    }
}
