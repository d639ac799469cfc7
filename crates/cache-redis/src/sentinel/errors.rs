//! The errors of a [`Discovery`] that failed: no sentinel answered, the sentinels refused our
//! credentials, an address is not a sentinel, the service is unknown, or a node they named failed.
//! Each names the setting to fix.

use std::time::Duration;

use cache_core::Error;
use redis::RedisError;

use super::{
    Discovery, Want, NODES_SETTING, NODE_AUTH_SETTINGS, SENTINEL_AUTH_SETTINGS, SERVICE_SETTING,
};
use crate::error::{self, Ctx};

impl Discovery {
    /// The error when no sentinel knows the service (some may not have answered at all).
    pub(super) async fn unknown_service(
        &self,
        idx: usize,
        unknown: &[usize],
        sentinel_errors: &[(usize, RedisError)],
    ) -> Error {
        let monitored = self.monitored(idx).await;
        let asked: Vec<&str> = unknown.iter().map(|i| self.names[*i].as_str()).collect();
        let mut message = format!(
            "no sentinel monitors a service named {:?} (asked {}); they monitor {}",
            self.spec.service,
            asked.join(", "),
            if monitored.is_empty() {
                "nothing".to_owned()
            } else {
                format!("{monitored:?}")
            }
        );
        if !sentinel_errors.is_empty() {
            let silent: Vec<&str> = sentinel_errors
                .iter()
                .map(|(i, _)| self.names[*i].as_str())
                .collect();
            message.push_str(&format!("; no answer from {}", silent.join(", ")));
        }
        Error::config(SERVICE_SETTING, message)
    }

    /// The error when no sentinel answered.
    pub(super) fn no_sentinel(&self, errors: Vec<(usize, RedisError)>) -> Error {
        let is_auth = |e: &RedisError| {
            e.kind() == redis::ErrorKind::AuthenticationFailed
                || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        };
        let not_sentinel = |e: &RedisError| {
            e.code() == Some("ERR")
                && e.detail().is_some_and(|d| {
                    d.contains("unknown command") || d.contains("unknown subcommand")
                })
        };
        if let Some((idx, _)) = errors.iter().find(|(_, e)| not_sentinel(e)) {
            return Error::config(
                NODES_SETTING,
                format!(
                    "{} is not a sentinel (it does not know the SENTINEL command): list the \
                     sentinels (port 26379 by default), not the data nodes",
                    self.names[*idx]
                ),
            );
        }
        if !errors.is_empty() && errors.iter().all(|(_, e)| is_auth(e)) {
            let (idx, e) = &errors[0];
            return Error::Auth(format!(
                "sentinel {} refused our credentials: {} (check {SENTINEL_AUTH_SETTINGS}: the \
                 sentinels' own password, their `requirepass`, not the data nodes')",
                self.names[*idx],
                e.detail().unwrap_or(e.category())
            ));
        }
        let parts: Vec<String> = errors
            .iter()
            .map(|(idx, e)| format!("{}: {}", self.names[*idx], cause(e)))
            .collect();
        Error::Connection {
            target: format!("the sentinels of {}", self.spec.service),
            message: format!(
                "no sentinel answered ({}); check {NODES_SETTING} and that the sentinels run",
                parts.join("; ")
            ),
            source: errors
                .into_iter()
                .next()
                .map(|(_, e)| Box::new(e) as cache_core::BoxError),
        }
    }
}

/// A short cause of a connection-level error, for lists of failures.
pub(super) fn cause(e: &RedisError) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else {
        e.to_string()
    }
}

/// Maps an error of a data node named by the sentinels.
pub(super) fn node_error(
    e: RedisError,
    target: &str,
    service: &str,
    want: Want,
    connecting: bool,
    elapsed: Duration,
) -> Error {
    let is_auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
    if is_auth {
        return Error::Auth(format!(
            "{target} refused our credentials: {} (check {NODE_AUTH_SETTINGS}: the data nodes' \
             credentials, not the sentinels')",
            e.detail().unwrap_or(e.category())
        ));
    }
    let connection_level = e.is_io_error() || e.is_timeout() || e.is_connection_dropped();
    if !connection_level {
        return error::map(
            e,
            Ctx {
                op: if connecting { "connect" } else { "ROLE" },
                key: None,
                target,
                elapsed,
                connecting,
            },
        );
    }
    let mapped = error::map(
        e,
        Ctx {
            op: "connect",
            key: None,
            target,
            elapsed,
            connecting: true,
        },
    );
    match mapped {
        Error::Connection { source, .. } => Error::Connection {
            target: target.to_owned(),
            message: format!(
                "the sentinels name it as the {} of {service}, but it cannot be reached ({}). \
                 During a failover this passes by itself; otherwise the address it announces is \
                 not reachable from here (replica-announce-ip, NAT, firewall)",
                want.word(),
                source
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "connection failed".to_owned())
            ),
            source,
        },
        other => other,
    }
}
