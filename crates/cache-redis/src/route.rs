//! Where a command goes: [`Target`], the one function that sends a command there ([`Conn::query`]),
//! and the store's ways to run a command through the call runner (`query`, `read`, `on_node`).
//!
//! On one server every target is that server. On a cluster redis-rs routes a command by its key
//! ([`Target::Auto`]); the store names the target itself when the key alone does not say it: a read
//! of a [`RedisStore::replica_reads`] view (a replica of the key's slot), a part of a batch split per
//! slot, and the per-node commands (`SCAN`, `PING`, `INFO`) whose errors then name the node.

use cache_core::{Error, Result};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, RedisError, RedisFuture, Value};

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt as _;

use crate::conn::Conn;
use crate::retry::Idempotency;
use crate::slots::Connections;
use crate::store::RedisStore;

/// Where a command goes on a cluster (every target is the one server otherwise).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// Where the connection routes it: on a cluster, the primary of the command's key.
    Auto,
    /// The node that serves a slot (its primary, or a replica for replica reads).
    Slot(Route),
    /// The cluster node at `host:port`.
    Node {
        /// Host as the cluster announces it.
        host: &'a str,
        /// Port.
        port: u16,
    },
    /// Any one node (the topology, the connection check).
    AnyNode,
}

impl Target<'_> {
    /// The cluster routing of this target; `None` leaves it to the connection.
    fn routing(self) -> Option<RoutingInfo> {
        let node = match self {
            Target::Auto => return None,
            Target::Slot(route) => SingleNodeRoutingInfo::SpecificNode(route),
            Target::Node { host, port } => SingleNodeRoutingInfo::ByAddress {
                host: host.to_owned(),
                port,
            },
            Target::AnyNode => SingleNodeRoutingInfo::Random,
        };
        Some(RoutingInfo::SingleNode(node))
    }
}

impl Conn {
    /// Sends `cmd` to `target` and converts the reply (a server error in the reply is an error).
    pub(crate) async fn query<T: FromRedisValue>(
        &mut self,
        cmd: &Cmd,
        target: Target<'_>,
    ) -> std::result::Result<T, RedisError> {
        let value = self.send(cmd, target).await?;
        Ok(redis::from_redis_value(value.extract_error()?)?)
    }

    /// The reply of `cmd` sent to `target`. A plain function returning redis-rs's boxed future, so
    /// that a command's future holds that box and not the cluster routing's state machine (over a
    /// kilobyte, held by every command on one server too when it was awaited inline).
    fn send<'a>(&'a mut self, cmd: &'a Cmd, target: Target<'_>) -> RedisFuture<'a, Value> {
        match (self, target.routing()) {
            (Conn::Cluster(c), Some(routing)) => {
                let cmd = cmd.clone();
                Box::pin(async move { c.route_command(cmd, routing).await })
            }
            (c, _) => redis::aio::ConnectionLike::req_packed_command(c, cmd),
        }
    }
}

impl RedisStore {
    // `query`, `read`, `query_at` and `query_on` are plain functions returning the call runner's
    // future, not `async fn`s: each `async fn` layer would wrap that future in one more state
    // machine holding copies of its arguments, and every store call allocates the outermost one.

    /// Runs one command through the call runner, routed by the connection (by its key on a
    /// cluster).
    pub(crate) fn query<'a, T: FromRedisValue + 'a>(
        &'a self,
        op: &'static str,
        key: Option<&'a str>,
        idempotency: Idempotency,
        cmd: &'a Cmd,
    ) -> impl Future<Output = Result<T>> + 'a {
        self.query_at(op, key, Target::Auto, idempotency, cmd)
    }

    /// Where reads of this view go in a cluster.
    pub(crate) fn read_addr(&self) -> SlotAddr {
        if self.replica_reads {
            SlotAddr::ReplicaOptional
        } else {
            SlotAddr::Master
        }
    }

    /// Runs a read of one key, the first argument of `cmd` (as [`RedisStore::key_cmd`] builds it);
    /// in a cluster it goes to the key's primary, or to a replica for a
    /// [`RedisStore::replica_reads`] view.
    pub(crate) fn read<'a, T: FromRedisValue + 'a>(
        &'a self,
        op: &'static str,
        key: &'a str,
        cmd: &'a Cmd,
    ) -> impl Future<Output = Result<T>> + 'a {
        let target = if self.is_cluster() {
            let full = match cmd.args_iter().nth(1) {
                Some(redis::Arg::Simple(k)) => k,
                _ => &[],
            };
            Target::Slot(Route::with_key(full, self.read_addr()))
        } else {
            Target::Auto
        };
        self.query_on(
            self.read_conns(),
            op,
            Some(key),
            target,
            Idempotency::Repeatable,
            cmd,
        )
    }

    /// Runs `cmd` on `target` through the call runner (timeouts and retries); `op` and `key` are
    /// for error messages, and a cluster node's errors name the node.
    pub(crate) fn query_at<'a, T: FromRedisValue + 'a>(
        &'a self,
        op: &'static str,
        key: Option<&'a str>,
        target: Target<'a>,
        idempotency: Idempotency,
        cmd: &'a Cmd,
    ) -> impl Future<Output = Result<T>> + 'a {
        self.query_on(&self.conns, op, key, target, idempotency, cmd)
    }

    /// [`RedisStore::query_at`] on the given connections (the store's, or the replica connections
    /// of a Sentinel replica-reads view).
    pub(crate) fn query_on<'a, T: FromRedisValue + 'a>(
        &'a self,
        conns: &'a Arc<Connections>,
        op: &'static str,
        key: Option<&'a str>,
        target: Target<'a>,
        idempotency: Idempotency,
        cmd: &'a Cmd,
    ) -> impl Future<Output = Result<T>> + 'a {
        conns
            .run(op, key, idempotency, move |mut c| async move {
                c.query::<T>(cmd, target).await
            })
            .map(move |result| match target {
                Target::Node { host, port } => result.map_err(|e| name_node(e, host, port)),
                _ => result,
            })
    }
}

/// Names the cluster node in an error of a command sent to that node.
fn name_node(e: Error, host: &str, port: u16) -> Error {
    let node = format!("{host}:{port}");
    match e {
        Error::Connection {
            message, source, ..
        } => Error::Connection {
            message: format!("cluster node {node}: {message}"),
            target: node,
            source,
        },
        Error::Timeout {
            operation,
            elapsed,
            setting,
        } => Error::Timeout {
            operation: format!("{operation} (cluster node {node})"),
            elapsed,
            setting,
        },
        Error::Backend {
            message,
            transient,
            source,
        } => Error::Backend {
            message: format!("cluster node {node}: {message}"),
            transient,
            source,
        },
        other => other,
    }
}
