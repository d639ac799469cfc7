//! Connecting to a data node the sentinels named: the data nodes' connection settings with the
//! named address, the connect and `ROLE` check under the store's timeouts, and the error that names
//! the node and the sentinel.

use std::time::Instant;

use cache_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo, RedisError, Role};

use super::errors::node_error;
use super::{timed_out, Discovery, NodeAddr, Want, BACKSTOP};

impl Discovery {
    /// The connection info of a data node at `addr`: the template's credentials, database and TLS
    /// mode with this address.
    pub(super) fn node_info(&self, addr: &NodeAddr) -> ConnectionInfo {
        let template = &self.spec.node;
        let node_addr = match template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: addr.host.clone(),
                port: addr.port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(addr.host.clone(), addr.port),
        };
        template.clone().set_addr(node_addr)
    }

    /// Connects to the data node at `addr` (named by sentinel `by`) and checks its role.
    pub(super) async fn connect_node(
        &self,
        addr: &NodeAddr,
        want: Want,
        by: usize,
    ) -> Result<MultiplexedConnection> {
        let start = Instant::now();
        let info = self.node_info(addr);
        let target = format!(
            "{addr} (the {} of {} named by sentinel {})",
            want.word(),
            self.spec.service,
            self.names[by]
        );
        let fail = |e: RedisError, connecting: bool| {
            node_error(
                e,
                &target,
                &self.spec.service,
                want,
                connecting,
                start.elapsed(),
            )
        };
        let client = redis::Client::open(info).map_err(|e| fail(e, true))?;
        let fut = client.get_multiplexed_async_connection_with_config(&self.config);
        let mut conn = tokio::time::timeout(self.connect_timeout + BACKSTOP, fut)
            .await
            .map_err(|_| fail(timed_out(), true))?
            .map_err(|e| fail(e, true))?;
        let role_cmd = redis::cmd("ROLE");
        let role = tokio::time::timeout(
            self.response_timeout + BACKSTOP,
            role_cmd.query_async::<Role>(&mut conn),
        )
        .await
        .map_err(|_| fail(timed_out(), false))?
        .map_err(|e| fail(e, false))?;
        let matches = matches!(
            (want, &role),
            (Want::Primary, Role::Primary { .. }) | (Want::Replica, Role::Replica { .. })
        );
        if matches {
            Ok(conn)
        } else {
            let actual = match role {
                Role::Primary { .. } => "a primary",
                Role::Replica { .. } => "a replica",
                Role::Sentinel { .. } => "a sentinel",
                _ => "something else",
            };
            Err(Error::Backend {
                message: format!(
                    "{target} answers ROLE as {actual}: a failover is in progress, or the \
                     sentinels' view is stale (retrying will ask them again)"
                ),
                transient: true,
                source: None,
            })
        }
    }
}
