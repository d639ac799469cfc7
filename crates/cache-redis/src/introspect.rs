//! Operator introspection on [`RedisStore`]: the raw `INFO` reply of each server (one on a single
//! server, every primary on a cluster) and the pool state without a server round trip.
//!
//! These exist for tools such as `cachectl top`, which need sections the parsed
//! [`BackendStats`](cache_core::BackendStats) does not carry (`commandstats`, `latencystats`,
//! memory fragmentation), and for the fleet heartbeat, which reports pool state every few seconds and
//! must not send an `INFO` for it. They live in their own module so that the store's own files stay
//! untouched: they only use the crate-internal plumbing `stats` uses (`query`, `topology`, the
//! node-addressed call of the connection).

use cache_core::{PoolStats, Result};

use crate::cluster;
use crate::retry::Idempotency;
use crate::route::Target;
use crate::store::RedisStore;

/// The raw `INFO` reply of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// `host:port` of the server (never with credentials): [`RedisStore::target`] on a single
    /// server, the primary's address on a cluster.
    pub address: String,
    /// The reply text: `# Section` headers and `field:value` lines (parse the common fields with
    /// [`crate::info::parse`], any field with [`crate::info::fields`]).
    pub text: String,
}

impl RedisStore {
    /// `INFO` with the given sections (e.g. `["all"]`, or `["stats", "commandstats"]` on Redis 7,
    /// which accepts several) from the server, or from every primary of a cluster concurrently, in
    /// address order. No sections means the server's default set. Read-only and retried like any
    /// read; on a cluster one unreachable primary fails the call with an error naming it.
    pub async fn info_per_node(&self, sections: &[&str]) -> Result<Vec<NodeInfo>> {
        let _call = self.conns.enter()?;
        let mut cmd = redis::cmd("INFO");
        for s in sections {
            cmd.arg(*s);
        }
        if !self.is_cluster() {
            let text: String = self
                .query("INFO", None, Idempotency::Repeatable, &cmd)
                .await?;
            return Ok(vec![NodeInfo {
                address: self.target().to_owned(),
                text,
            }]);
        }
        let nodes = self.topology().await?;
        let primaries = cluster::primaries(&nodes);
        let cmd = &cmd;
        let texts = futures::future::try_join_all(primaries.iter().map(|n| async move {
            self.query_at::<String>(
                "INFO",
                None,
                Target::Node {
                    host: &n.host,
                    port: n.port,
                },
                Idempotency::Repeatable,
                cmd,
            )
            .await
        }))
        .await?;
        Ok(primaries
            .iter()
            .zip(texts)
            .map(|(n, text)| NodeInfo {
                address: n.addr(),
                text,
            })
            .collect())
    }

    /// The connection pool's state (the same as `stats().await?.pool`, without sending `INFO`):
    /// cheap enough to call every few seconds.
    pub async fn pool_stats(&self) -> PoolStats {
        self.conns.pool_stats().await
    }
}
