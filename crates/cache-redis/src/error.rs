//! Mapping of redis-rs and pool errors into [`cache_core::Error`], with messages that say what to fix.
//!
//! The mapping is the only place that looks inside a `redis::RedisError`; the rest of the crate sees
//! [`Error`] and a [`Disposition`] (what to do with the connection that produced the error).

use std::error::Error as _;
use std::time::Duration;

use cache_core::Error;
use redis::{ErrorKind as RKind, RedisError, ServerErrorKind};

/// Where an error happened, for the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The command or step (`GET`, `connect`, ...).
    pub(crate) op: &'a str,
    /// The key, relative to the store prefix, when the command has one.
    pub(crate) key: Option<&'a str>,
    /// The redacted address of the server (`127.0.0.1:6379`).
    pub(crate) target: &'a str,
    /// How long the call waited, for timeouts.
    pub(crate) elapsed: Duration,
    /// Whether the error happened while opening a connection (decides the timeout setting named).
    pub(crate) connecting: bool,
}

/// What an error says about the connection that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// The connection is fine (a server error about this command only).
    Healthy,
    /// The connection may be stalled (a response timeout): check it before trusting it again.
    Suspect,
    /// The connection is broken (dropped, reset, protocol error): replace it.
    Broken,
}

/// Classifies what an error means for the connection it came from.
pub(crate) fn disposition(e: &RedisError) -> Disposition {
    if e.is_timeout() {
        return Disposition::Suspect;
    }
    match e.kind() {
        RKind::Io | RKind::Parse => Disposition::Broken,
        RKind::AuthenticationFailed => Disposition::Broken,
        _ if e.is_connection_dropped() || e.is_unrecoverable_error() => Disposition::Broken,
        _ => Disposition::Healthy,
    }
}

/// Classifies an error of a *cluster* connection. The cluster connection reconnects to nodes and
/// refreshes its slot map by itself, so a node's connection error or timeout says nothing about the
/// connection object; only a cluster connection whose internal task has ended is broken.
pub(crate) fn cluster_disposition(e: &RedisError) -> Disposition {
    if chain_text(e).contains("redis_cluster: Unable to") {
        Disposition::Broken
    } else {
        Disposition::Healthy
    }
}

fn chain_text(e: &RedisError) -> String {
    let mut text = e.to_string();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cur = err.source();
    }
    text
}

fn looks_like_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "tls",
        "ssl",
        "certificate",
        "handshake",
        "invalidcontenttype",
        "corrupt message",
        "received corrupt",
        "peer sent",
        "alert",
    ]
    .iter()
    .any(|needle| t.contains(needle))
}

fn looks_like_dns(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("failed to lookup address")
        || t.contains("name or service not known")
        || t.contains("nodename nor servname")
        || t.contains("no such host")
        || t.contains("temporary failure in name resolution")
        || t.contains("no address")
}

/// Maps a redis-rs error into the library's error, naming what to fix.
pub(crate) fn map(e: RedisError, ctx: Ctx<'_>) -> Error {
    let text = chain_text(&e);
    let code = e.code().map(str::to_owned);
    let detail = e.detail().unwrap_or_default().to_owned();
    let server_msg = || match &code {
        Some(c) if !detail.is_empty() => format!("{c} {detail}"),
        Some(c) => c.clone(),
        None => text.clone(),
    };

    // Authentication: wrong password, unknown ACL user, missing AUTH, missing permission.
    if e.kind() == RKind::AuthenticationFailed
        || matches!(code.as_deref(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || e.kind() == RKind::Server(ServerErrorKind::NoPerm)
    {
        return Error::Auth(format!(
            "{} refused our credentials during {}: {} (check the user and password in REDIS_URL, \
             and the user's ACL permissions)",
            ctx.target,
            ctx.op,
            server_msg()
        ));
    }

    if e.is_timeout() {
        let setting = if ctx.connecting {
            "REDIS_CONNECT_TIMEOUT"
        } else {
            "REDIS_RESPONSE_TIMEOUT"
        };
        return Error::Timeout {
            operation: format!("{} on {}", ctx.op, ctx.target),
            elapsed: ctx.elapsed,
            setting,
        };
    }

    match e.kind() {
        RKind::InvalidClientConfig => {
            return Error::config(
                "REDIS_URL",
                format!(
                    "{text}; expected redis://[user:password@]host:port[/db] or rediss:// for TLS"
                ),
            );
        }
        RKind::Io => {
            if looks_like_tls(&text) {
                let hint = if text.to_ascii_lowercase().contains("certificate") {
                    "the server's certificate is not trusted or does not match the host: check the \
                     host in REDIS_URL, and that the issuing CA is in the system roots (or in \
                     SSL_CERT_FILE)"
                } else {
                    "is the server speaking TLS? use rediss:// only for TLS servers, redis:// for \
                     plain ones"
                };
                return Error::Tls(format!(
                    "TLS with {} failed during {}: {text} ({hint})",
                    ctx.target, ctx.op
                ));
            }
            if looks_like_dns(&text) {
                return Error::Connection {
                    target: ctx.target.to_owned(),
                    message: format!(
                        "cannot resolve the host name (DNS lookup failed: {text}); check the host \
                         in REDIS_URL"
                    ),
                    source: Some(Box::new(e)),
                };
            }
            let message = if e.is_connection_refusal() {
                format!(
                    "connection refused: nothing listens on {} (is Redis running there? check \
                     the host and port in REDIS_URL)",
                    ctx.target
                )
            } else if e.is_connection_dropped() && ctx.connecting {
                format!(
                    "the server closed the connection during the handshake ({text}); if it \
                     requires TLS use rediss://"
                )
            } else if e.is_connection_dropped() {
                format!(
                    "connection lost during {} ({text}); it will be re-opened",
                    ctx.op
                )
            } else {
                format!("{} failed: {text}", ctx.op)
            };
            return Error::Connection {
                target: ctx.target.to_owned(),
                message,
                source: Some(Box::new(e)),
            };
        }
        _ => {}
    }

    match code.as_deref() {
        Some("WRONGTYPE") => {
            return Error::WrongType {
                key: ctx.key.unwrap_or("?").to_owned(),
                message: server_msg(),
            }
        }
        Some(
            "LOADING" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "BUSY" | "READONLY" | "MOVED"
            | "ASK",
        ) => {
            return Error::Backend {
                message: format!("{} on {}: {} (temporary)", ctx.op, ctx.target, server_msg()),
                transient: true,
                source: Some(Box::new(e)),
            };
        }
        Some("ERR")
            if detail.contains("DB index is out of range")
                || detail.contains("invalid DB index") =>
        {
            return Error::config(
                "REDIS_DB",
                format!("{}: the server has fewer databases ({detail})", ctx.target),
            );
        }
        _ => {}
    }

    let transient = matches!(
        e.kind(),
        RKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        )
    ) || e.kind() == RKind::ClusterConnectionNotFound;
    Error::Backend {
        message: format!("{} on {} failed: {}", ctx.op, ctx.target, server_msg()),
        transient,
        source: Some(Box::new(e)),
    }
}

/// A copy of an error for replaying it to other callers (the source chain is not kept).
pub(crate) fn replay(e: &Error) -> Error {
    match e {
        Error::Connection {
            target, message, ..
        } => Error::Connection {
            target: target.clone(),
            message: message.clone(),
            source: None,
        },
        Error::Timeout {
            operation,
            elapsed,
            setting,
        } => Error::Timeout {
            operation: operation.clone(),
            elapsed: *elapsed,
            setting,
        },
        Error::Auth(m) => Error::Auth(m.clone()),
        Error::Tls(m) => Error::Tls(m.clone()),
        Error::Config { setting, message } => Error::Config {
            setting: setting.clone(),
            message: message.clone(),
        },
        Error::Backend {
            message, transient, ..
        } => Error::Backend {
            message: message.clone(),
            transient: *transient,
            source: None,
        },
        other => Error::Backend {
            message: other.to_string(),
            transient: other.is_transient(),
            source: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn ctx() -> Ctx<'static> {
        Ctx {
            op: "GET",
            key: Some("k"),
            target: "127.0.0.1:1",
            elapsed: Duration::from_millis(5),
            connecting: false,
        }
    }

    #[test]
    fn io_errors_become_connection_errors_that_name_the_cause() {
        let refused = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        let e = map(refused, ctx());
        assert!(matches!(e, Error::Connection { .. }));
        assert!(
            e.to_string().contains("nothing listens on 127.0.0.1:1"),
            "{e}"
        );
        assert!(e.is_transient());

        let timeout = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        let e = map(timeout.clone(), ctx());
        assert!(
            matches!(
                e,
                Error::Timeout {
                    setting: "REDIS_RESPONSE_TIMEOUT",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(disposition(&timeout), Disposition::Suspect);
        let e = map(
            timeout,
            Ctx {
                connecting: true,
                ..ctx()
            },
        );
        assert!(matches!(
            e,
            Error::Timeout {
                setting: "REDIS_CONNECT_TIMEOUT",
                ..
            }
        ));

        let dns = RedisError::from(io::Error::other(
            "failed to lookup address information: Name or service not known",
        ));
        let e = map(dns, ctx());
        assert!(e.to_string().contains("DNS"), "{e}");

        let reset = RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(disposition(&reset), Disposition::Broken);
    }

    #[test]
    fn server_errors_are_classified() {
        let wrongtype = redis::make_extension_error(
            "WRONGTYPE".into(),
            Some("Operation against a key holding the wrong kind of value".into()),
        );
        assert_eq!(disposition(&wrongtype), Disposition::Healthy);
        let e = map(wrongtype, ctx());
        assert!(
            matches!(&e, Error::WrongType { key, .. } if key == "k"),
            "{e}"
        );

        let wrongpass = redis::make_extension_error(
            "WRONGPASS".into(),
            Some("invalid username-password pair".into()),
        );
        assert!(matches!(map(wrongpass, ctx()), Error::Auth(_)));

        let busy = redis::make_extension_error("BUSY".into(), Some("script running".into()));
        let e = map(busy, ctx());
        assert!(e.is_transient(), "{e}");

        let other = redis::make_extension_error("ERR".into(), Some("syntax error".into()));
        let e = map(other, ctx());
        assert!(!e.is_transient());
        assert!(e.to_string().contains("syntax error"));
    }

    #[test]
    fn replay_keeps_kind_and_message() {
        let e = Error::Auth("nope".into());
        assert_eq!(replay(&e).to_string(), e.to_string());
        let e = Error::Connection {
            target: "t".into(),
            message: "m".into(),
            source: None,
        };
        assert!(replay(&e).is_transient());
    }
}
