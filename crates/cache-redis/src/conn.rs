//! [`Conn`]: the connection type of the hot path, a multiplexed connection to one server or a
//! cluster connection. Both implement redis-rs's `ConnectionLike`, and so does `Conn`, so every
//! command of the store is written once; where a command goes on a cluster is [`crate::route`].

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// One connection of the hot path: a multiplexed connection to one server, or a cluster connection
/// (redis-rs keeps a multiplexed connection per node inside it, follows `MOVED`/`ASK` and refreshes
/// the slot map). Cheap to clone: clones share the socket(s).
#[derive(Clone)]
pub(crate) enum Conn {
    /// A multiplexed connection to one server.
    Single(MultiplexedConnection),
    /// A Redis Cluster connection.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Shortens the response timeout of this clone (for the last attempt within a retry budget).
    /// A cluster connection has one overall timeout per request, set when it is opened.
    pub(crate) fn set_response_timeout(&mut self, timeout: Duration) {
        match self {
            Conn::Single(c) => c.set_response_timeout(timeout),
            Conn::Cluster(_) => {}
        }
    }
}
