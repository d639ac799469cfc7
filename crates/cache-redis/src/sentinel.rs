//! Redis Sentinel: finding the primary (or a replica) of a monitored service through the
//! sentinels, and noticing failovers as they happen.
//!
//! ## Why not redis-rs's `sentinel` module
//!
//! redis 1.8 has one (feature `sentinel`: `Sentinel`, `SentinelClient`), read for this decision in
//! `redis-1.8.1/src/sentinel.rs`. It does not fit the store's connection design:
//!
//! - its sentinel connections and its `ROLE` check open connections with
//!   `get_multiplexed_async_connection()`, i.e. redis-rs's default timeouts, not
//!   `REDIS_CONNECT_TIMEOUT` / `REDIS_RESPONSE_TIMEOUT`;
//! - it checks `ROLE` on a connection of its own and hands back a `Client`, so every connection to
//!   the primary costs two TCP (and TLS, and AUTH) handshakes;
//! - an unknown service name and a primary that sentinels flag as down are the same
//!   `MasterNameNotFoundBySentinel` (redis-rs issue #1240 is a user lost in it), and connection
//!   errors do not say whether a sentinel or the primary failed, so the clear errors we promise
//!   cannot be built on it;
//! - it does not follow `+switch-master`, and a `ROLE` check alone cannot see the window after a
//!   `SENTINEL FAILOVER` in which the old primary still answers `ROLE master` (measured here:
//!   about 10 s on Redis 7.0, until the sentinels next read its `INFO`): only the sentinels know;
//! - `Sentinel::async_master_for` takes `&mut self`, so every reconnect of every slot would queue
//!   on one lock.
//!
//! The protocol itself is small (the Sentinel client spec), so this module implements it on
//! redis-rs's ordinary async connections, which keeps the store's timeouts, TLS and ACL handling.
//!
//! ## Discovery
//!
//! [`Discovery::connect`] asks the sentinels in turn, starting with the one that answered last,
//! `SENTINEL GET-MASTER-ADDR-BY-NAME <service>` (for a replica: `SENTINEL REPLICAS <service>`, the
//! healthy ones in random order), connects to the node named with the data nodes' credentials,
//! database, TLS mode and timeouts, and checks with `ROLE` on that very connection that the node
//! has the role asked for; that connection is the one returned. When the node named cannot be
//! reached or has another role, the next sentinel is asked (it may know better), but one discovery
//! never connects to the same address twice. Every step has the connect or the response timeout.
//! The sentinel connection is kept for the next question.
//!
//! What can fail, and how it is reported ([`cache_core::Error`]):
//!
//! - no sentinel answers → `Connection` naming every sentinel and why (transient);
//! - the sentinels refuse our credentials → `Auth` naming the sentinel settings;
//! - an address is not a sentinel (a data node, say) → `Config` on the sentinel list;
//! - no sentinel knows the service → `Config` on the service setting, listing the names the
//!   sentinels do monitor;
//! - the node named cannot be reached → `Connection` naming the node and the sentinel that named
//!   it (transient: during a failover the sentinels name the dead primary for a while);
//! - the node named has another role → transient `Backend` (a failover in progress);
//! - no replica is healthy → transient `Backend`.
//!
//! ## Following failovers
//!
//! Every new connection runs a discovery, so refilling a slot after a connection error finds the
//! new primary; a discovery that finds another primary than the one known reports a switch.
//! [`Discovery::watch`] subscribes on every sentinel (the one leading a failover can be any) to
//! `+failover-state-wait-promotion` (the leader has just sent `REPLICAOF NO ONE` to the replica it
//! promotes) and `+switch-master` (the failover is complete), and reports a new primary of our
//! service at the first of the two; it also asks the sentinels for the primary every `every` (so a
//! lost subscription or a missed message costs at most that long). Following the promotion rather
//! than the switch matters: from `REPLICAOF NO ONE` on, whatever the old primary acknowledges is
//! lost, and `+switch-master` comes only after the sentinels have seen the promotion in the replica's
//! `INFO` and the other replicas are reconfigured (measured on Redis 7.0 with 1 primary, 2 replicas,
//! 3 sentinels: the first `+switch-master` 0.9 s after the promotion, the leader's own 2 s after).
//! After a switch, a sentinel that still names the old primary is passed over for
//! [`STALE_AFTER_SWITCH`]: discovery tries the announced primary first and the old one only when
//! that fails (an aborted failover), and the watcher's poll ignores that answer.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cache_core::{Error, Result};
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use rand::seq::SliceRandom;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, RedisError, Role,
};

use crate::error::{self, Ctx};

/// The setting that lists the sentinels, for messages.
pub(crate) const NODES_SETTING: &str = "REDIS_SENTINEL_NODES";
/// The setting that names the service, for messages.
pub(crate) const SERVICE_SETTING: &str = "REDIS_SENTINEL_SERVICE";
/// The settings of the sentinels' own credentials, for messages.
pub(crate) const SENTINEL_AUTH_SETTINGS: &str = "REDIS_SENTINEL_USERNAME / REDIS_SENTINEL_PASSWORD";
/// Where the data nodes' credentials come from, for messages.
pub(crate) const NODE_AUTH_SETTINGS: &str = "REDIS_USERNAME / REDIS_PASSWORD";

/// How long after a switch (a promotion announced, a `+switch-master`, or a discovery that found a
/// new primary) discovery passes over a sentinel that still names the old primary. The old primary
/// answers `ROLE master` until the sentinels reconfigure it (up to about 10 s after a `SENTINEL
/// FAILOVER`); the sentinels agree on the new one within a couple of seconds.
pub(crate) const STALE_AFTER_SWITCH: Duration = Duration::from_secs(30);

/// Margin of the outer timeouts over redis-rs's own, so that redis-rs's (with the better message)
/// fire first.
const BACKSTOP: Duration = Duration::from_millis(50);

/// The channel on which sentinels announce a new primary, once the failover is complete (the
/// other replicas reconfigured).
const SWITCH_CHANNEL: &str = "+switch-master";

/// The channel on which the sentinel leading a failover announces that it has just sent `REPLICAOF
/// NO ONE` to the replica it promotes. From then on writes to the old primary are lost (the new one
/// no longer replicates it), while `+switch-master` comes only after the other replicas are
/// reconfigured (up to a second or more later): following this event shortens the window in which
/// the old primary acknowledges writes that a failover then discards.
const PROMOTION_CHANNEL: &str = "+failover-state-wait-promotion";

/// A data node's address as the sentinels give it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct NodeAddr {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which node of the service a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The primary (`ROLE` answers `master`).
    Primary,
    /// A replica (`ROLE` answers `slave`).
    Replica,
}

impl Want {
    fn word(self) -> &'static str {
        match self {
            Want::Primary => "primary",
            Want::Replica => "replica",
        }
    }
}

/// What discovery needs to know.
#[derive(Debug, Clone)]
pub(crate) struct SentinelSpec {
    /// Each sentinel: address, and the credentials and TLS mode to reach it with.
    pub(crate) sentinels: Vec<ConnectionInfo>,
    /// The name the sentinels monitor the primary under.
    pub(crate) service: String,
    /// The data nodes' credentials, database, protocol and TLS mode (`rediss://`); its address is
    /// replaced by the one the sentinels name.
    pub(crate) node: ConnectionInfo,
}

/// A connection to the node discovery found, and its address.
pub(crate) struct Discovered {
    pub(crate) conn: MultiplexedConnection,
    pub(crate) addr: NodeAddr,
}

/// The sentinel side of a store. See the [module documentation](self).
pub(crate) struct Discovery {
    spec: SentinelSpec,
    /// `host:port` of each sentinel, for messages.
    names: Vec<String>,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// The sentinel asked first: the last one that answered.
    preferred: AtomicUsize,
    /// A connection to one sentinel (its index), reused for questions.
    sentinel: Mutex<Option<(usize, MultiplexedConnection)>>,
    /// The primary as last discovered or announced.
    primary: RwLock<Option<NodeAddr>>,
    /// The old primary of the last switch we heard of, and when.
    switched_from: Mutex<Option<(NodeAddr, Instant)>>,
    /// Switches of the primary noticed (by the watcher, or by a discovery that found another
    /// primary than the one known).
    switches: AtomicU64,
    /// What to do when the primary switches (set by [`Discovery::watch`]).
    on_switch: Mutex<Option<SwitchHook>>,
}

/// What [`Discovery::watch`] runs when the primary switches.
type SwitchHook = Arc<dyn Fn(&NodeAddr) + Send + Sync>;

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("service", &self.spec.service)
            .field("sentinels", &self.names)
            .field("primary", &*self.primary.read())
            .finish_non_exhaustive()
    }
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// `host:port` of a connection address.
fn addr_text(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => NodeAddr {
            host: host.clone(),
            port: *port,
        }
        .to_string(),
        ConnectionAddr::TcpTls { host, port, .. } => format!(
            "{} (TLS)",
            NodeAddr {
                host: host.clone(),
                port: *port,
            }
        ),
        other => format!("{other:?}"),
    }
}

impl Discovery {
    /// Discovery for `spec`, with the store's connect and response timeouts.
    pub(crate) fn new(
        spec: SentinelSpec,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self> {
        if spec.sentinels.is_empty() {
            return Err(Error::config(
                NODES_SETTING,
                "at least one sentinel is needed",
            ));
        }
        if spec.service.trim().is_empty() {
            return Err(Error::config(SERVICE_SETTING, "the service name is empty"));
        }
        let names = spec.sentinels.iter().map(|s| addr_text(s.addr())).collect();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Ok(Self {
            spec,
            names,
            config,
            connect_timeout,
            response_timeout,
            preferred: AtomicUsize::new(0),
            sentinel: Mutex::new(None),
            primary: RwLock::new(None),
            switched_from: Mutex::new(None),
            switches: AtomicU64::new(0),
            on_switch: Mutex::new(None),
        })
    }

    /// The monitored service's name.
    pub(crate) fn service(&self) -> &str {
        &self.spec.service
    }

    /// `sentinel service S via [a, b, c]`, for messages and logs.
    pub(crate) fn describe(&self) -> String {
        format!(
            "sentinel service {} via [{}]",
            self.spec.service,
            self.names.join(", ")
        )
    }

    /// The primary as last discovered or announced.
    pub(crate) fn primary(&self) -> Option<NodeAddr> {
        self.primary.read().clone()
    }

    /// How many switches of the primary the watcher noticed.
    pub(crate) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    /// The sentinels' indexes, the preferred one first.
    fn order(&self) -> impl Iterator<Item = usize> {
        let n = self.spec.sentinels.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        (0..n).map(move |k| (start + k) % n)
    }

    /// After sentinel `idx` failed: ask the next one first from now on (unless another call moved
    /// the preference already).
    fn pass_over(&self, idx: usize) {
        let next = (idx + 1) % self.spec.sentinels.len();
        let _ = self
            .preferred
            .compare_exchange(idx, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A connection to sentinel `idx`: the kept one, or a new one (which is then kept).
    async fn sentinel_conn(
        &self,
        idx: usize,
    ) -> std::result::Result<MultiplexedConnection, RedisError> {
        if let Some((i, conn)) = &*self.sentinel.lock() {
            if *i == idx {
                return Ok(conn.clone());
            }
        }
        let client = redis::Client::open(self.spec.sentinels[idx].clone())?;
        let fut = client.get_multiplexed_async_connection_with_config(&self.config);
        let conn = tokio::time::timeout(self.connect_timeout + BACKSTOP, fut)
            .await
            .map_err(|_| timed_out())??;
        *self.sentinel.lock() = Some((idx, conn.clone()));
        Ok(conn)
    }

    fn forget_sentinel(&self, idx: usize) {
        let mut kept = self.sentinel.lock();
        if matches!(&*kept, Some((i, _)) if *i == idx) {
            *kept = None;
        }
    }

    /// Sends `cmd` to sentinel `idx`, bounded by the timeouts; a failed connection is forgotten.
    async fn ask<T: FromRedisValue>(
        &self,
        idx: usize,
        cmd: &Cmd,
    ) -> std::result::Result<T, RedisError> {
        let result = async {
            let mut conn = self.sentinel_conn(idx).await?;
            tokio::time::timeout(
                self.response_timeout + BACKSTOP,
                cmd.query_async::<T>(&mut conn),
            )
            .await
            .map_err(|_| timed_out())?
        }
        .await;
        if let Err(e) = &result {
            if e.code().is_none() {
                // Not an error reply: the connection itself failed.
                self.forget_sentinel(idx);
            }
        }
        result
    }

    /// The primary's address as sentinel `idx` names it; `None` when it does not know the service.
    async fn ask_primary(&self, idx: usize) -> std::result::Result<Option<NodeAddr>, RedisError> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("GET-MASTER-ADDR-BY-NAME").arg(&self.spec.service);
        let named: Option<(String, u16)> = self.ask(idx, &cmd).await?;
        Ok(named.map(|(host, port)| NodeAddr { host, port }))
    }

    /// The healthy replicas sentinel `idx` lists, in random order; `None` when it does not know the
    /// service.
    async fn ask_replicas(
        &self,
        idx: usize,
    ) -> std::result::Result<Option<Vec<NodeAddr>>, RedisError> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("REPLICAS").arg(&self.spec.service);
        let listed: Vec<HashMap<String, String>> = match self.ask(idx, &cmd).await {
            Ok(listed) => listed,
            Err(e) if e.detail().is_some_and(|d| d.contains("No such master")) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut healthy: Vec<NodeAddr> = listed
            .into_iter()
            .filter_map(|mut r| {
                let flags = r.get("flags")?;
                let down = flags
                    .split(',')
                    .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
                let linked = r.get("master-link-status").map(String::as_str) == Some("ok");
                if down || !linked {
                    return None;
                }
                let port = r.get("port")?.parse().ok()?;
                Some(NodeAddr {
                    host: r.remove("ip")?,
                    port,
                })
            })
            .collect();
        healthy.shuffle(&mut rand::rng());
        Ok(Some(healthy))
    }

    /// The names of the services sentinel `idx` monitors (for the unknown-service message).
    async fn monitored(&self, idx: usize) -> Vec<String> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("MASTERS");
        match self.ask::<Vec<HashMap<String, String>>>(idx, &cmd).await {
            Ok(masters) => masters
                .into_iter()
                .filter_map(|mut m| m.remove("name"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Whether `addr` is the old primary of a recent switch (see [`STALE_AFTER_SWITCH`]).
    fn recently_switched_from(&self, addr: &NodeAddr) -> bool {
        matches!(&*self.switched_from.lock(), Some((old, at)) if old == addr && at.elapsed() < STALE_AFTER_SWITCH)
    }

    /// Finds the node `want` through the sentinels and connects to it. See the
    /// [module documentation](self#discovery).
    pub(crate) async fn connect(&self, want: Want) -> Result<Discovered> {
        let epoch = self.switches();
        let found = self.connect_once(want).await?;
        // A switch announced while this discovery ran, to a node other than the one it found: the
        // sentinel asked had not heard of it yet. Ask again.
        if want == Want::Primary
            && self.switches() != epoch
            && self.primary().as_ref() != Some(&found.addr)
        {
            return self.connect_once(want).await;
        }
        Ok(found)
    }

    async fn connect_once(&self, want: Want) -> Result<Discovered> {
        let mut sentinel_errors: Vec<(usize, RedisError)> = Vec::new();
        let mut unknown: Vec<usize> = Vec::new();
        let mut node_errors: Vec<(NodeAddr, Error)> = Vec::new();
        let mut without_replicas = 0usize;
        // The old primary of a recent switch, named by a sentinel that has not heard of it yet:
        // tried only when no sentinel names another node.
        let mut stale: Option<(usize, NodeAddr)> = None;
        for idx in self.order() {
            let named = match want {
                Want::Primary => match self.ask_primary(idx).await {
                    Ok(Some(addr)) if self.recently_switched_from(&addr) => {
                        stale.get_or_insert((idx, addr));
                        continue;
                    }
                    Ok(Some(addr)) => vec![addr],
                    Ok(None) => {
                        unknown.push(idx);
                        continue;
                    }
                    Err(e) => {
                        self.pass_over(idx);
                        sentinel_errors.push((idx, e));
                        continue;
                    }
                },
                Want::Replica => match self.ask_replicas(idx).await {
                    Ok(Some(addrs)) if addrs.is_empty() => {
                        without_replicas += 1;
                        continue;
                    }
                    Ok(Some(addrs)) => addrs,
                    Ok(None) => {
                        unknown.push(idx);
                        continue;
                    }
                    Err(e) => {
                        self.pass_over(idx);
                        sentinel_errors.push((idx, e));
                        continue;
                    }
                },
            };
            if let Some(found) = self.try_nodes(idx, named, want, &mut node_errors).await {
                return Ok(found);
            }
        }
        if let Some((idx, addr)) = stale {
            // The sentinels asked still name the old primary of a switch we heard of (announced at
            // the promotion, before the sentinels name the new one): try the announced primary
            // first, and the old one only when that fails (a failover that was aborted).
            let mut candidates = Vec::with_capacity(2);
            if let Some(announced) = self.primary().filter(|p| *p != addr) {
                candidates.push(announced);
            }
            candidates.push(addr);
            if let Some(found) = self
                .try_nodes(idx, candidates, want, &mut node_errors)
                .await
            {
                return Ok(found);
            }
        }
        if let Some((_, e)) = node_errors.pop() {
            return Err(e);
        }
        if without_replicas > 0 {
            return Err(Error::Backend {
                message: format!(
                    "no replica of {} is available: the sentinels list none that is up and \
                     linked to the primary",
                    self.spec.service
                ),
                transient: true,
                source: None,
            });
        }
        if let Some(&idx) = unknown.first() {
            return Err(self.unknown_service(idx, &unknown, &sentinel_errors).await);
        }
        Err(self.no_sentinel(sentinel_errors))
    }

    /// Connects to the first of `addrs` (named by sentinel `idx`) that answers with the role
    /// wanted, skipping addresses that failed already in this discovery.
    async fn try_nodes(
        &self,
        idx: usize,
        addrs: Vec<NodeAddr>,
        want: Want,
        failed: &mut Vec<(NodeAddr, Error)>,
    ) -> Option<Discovered> {
        for addr in addrs {
            if failed.iter().any(|(a, _)| *a == addr) {
                continue;
            }
            match self.connect_node(&addr, want, idx).await {
                Ok(conn) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    if want == Want::Primary && !self.recently_switched_from(&addr) {
                        // Another primary than the one known is a switch too (the watcher's
                        // sentinel may not have announced it yet): the other connections move.
                        self.switched(addr.clone());
                    }
                    tracing::debug!(target: "cache_redis", service = %self.spec.service, node = %addr, role = want.word(), sentinel = %self.names[idx], "discovered through Sentinel");
                    return Some(Discovered { conn, addr });
                }
                Err(e) => {
                    tracing::debug!(target: "cache_redis", service = %self.spec.service, node = %addr, sentinel = %self.names[idx], error = %e, "node named by a sentinel failed");
                    failed.push((addr, e));
                }
            }
        }
        None
    }

    /// The connection info of a data node at `addr`: the template's credentials, database and TLS
    /// mode with this address.
    fn node_info(&self, addr: &NodeAddr) -> ConnectionInfo {
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
    async fn connect_node(
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

    /// The error when no sentinel knows the service (some may not have answered at all).
    async fn unknown_service(
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
    fn no_sentinel(&self, errors: Vec<(usize, RedisError)>) -> Error {
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

    /// Records that the primary is now `new`. When another one was known, that is a switch: it is
    /// counted, the old primary is remembered (see [`STALE_AFTER_SWITCH`]) and the hook of
    /// [`Discovery::watch`] runs. Returns whether it was a switch.
    fn switched(&self, new: NodeAddr) -> bool {
        let old = {
            let mut primary = self.primary.write();
            if primary.as_ref() == Some(&new) {
                return false;
            }
            primary.replace(new.clone())
        };
        let Some(old) = old else {
            return false;
        };
        *self.switched_from.lock() = Some((old.clone(), Instant::now()));
        self.switches.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "cache_redis", service = %self.spec.service, from = %old, to = %new, "the sentinels switched the primary");
        let hook = self.on_switch.lock().clone();
        if let Some(hook) = hook {
            hook(&new);
        }
        true
    }

    /// Parses a message of the watched channels and returns the new primary when it is about our
    /// service: `+switch-master` (`<name> <old ip> <old port> <new ip> <new port>`) or
    /// `+failover-state-wait-promotion` (`slave <ip>:<port> <ip> <port> @ <name> <old ip> <old
    /// port>`, the replica being promoted).
    fn parse_switch(&self, channel: &str, payload: &str) -> Option<NodeAddr> {
        let parts: Vec<&str> = payload.split(' ').collect();
        let (name, host, port) = match (channel, parts.as_slice()) {
            (SWITCH_CHANNEL, [name, _, _, host, port]) => (*name, *host, *port),
            (PROMOTION_CHANNEL, [_, _, host, port, "@", name, _, _]) => (*name, *host, *port),
            _ => return None,
        };
        (name == self.spec.service).then_some(NodeAddr {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }

    /// Subscribes to `+switch-master` and `+failover-state-wait-promotion` on sentinel `idx`.
    async fn subscribe(
        &self,
        idx: usize,
    ) -> std::result::Result<redis::aio::PubSubStream, RedisError> {
        let client = redis::Client::open(self.spec.sentinels[idx].clone())?;
        let setup = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub
                .subscribe(&[SWITCH_CHANNEL, PROMOTION_CHANNEL])
                .await?;
            Ok::<_, RedisError>(pubsub.into_on_message())
        };
        tokio::time::timeout(
            self.connect_timeout + self.response_timeout + BACKSTOP,
            setup,
        )
        .await
        .map_err(|_| timed_out())?
    }

    /// Starts the watcher (see [Following failovers](self#following-failovers)): one subscriber
    /// per sentinel (a failover's promotion is announced by the sentinel that leads it, which can
    /// be any of them) and a poll of the sentinels every `every`. `on_switch` runs with the new
    /// primary each time the service's primary changes (also when a discovery finds the change
    /// first). The task holds weak references and ends when the discovery is dropped; abort it
    /// through the handle to end it sooner.
    pub(crate) fn watch<F>(
        self: &Arc<Self>,
        every: Duration,
        on_switch: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn(&NodeAddr) + Send + Sync + 'static,
    {
        *self.on_switch.lock() = Some(Arc::new(on_switch));
        let every = every.max(Duration::from_millis(10));
        let subscribers: Vec<_> = (0..self.spec.sentinels.len())
            .map(|idx| subscriber(Arc::downgrade(self), idx, every))
            .collect();
        let poll = poller(Arc::downgrade(self), every);
        tokio::spawn(async move {
            futures::future::join(futures::future::join_all(subscribers), poll).await;
        })
    }

    /// Asks sentinel `idx` for the primary and records a change; false when it did not answer.
    async fn check(&self, idx: usize) -> bool {
        match self.ask_primary(idx).await {
            // The sentinel still names the old primary of a switch announced to us (at the
            // promotion, or by a quicker sentinel): it has not caught up yet.
            Ok(Some(addr)) if self.recently_switched_from(&addr) => true,
            Ok(Some(addr)) => {
                self.switched(addr.clone());
                // The first answer, before any connection: just remember it.
                self.primary.write().get_or_insert(addr);
                true
            }
            // A sentinel that does not know the service is no use to ask.
            Ok(None) => false,
            Err(_) => false,
        }
    }

    /// One check on the sentinels in order until one answers.
    async fn poll_once(&self) {
        for idx in self.order() {
            if self.check(idx).await {
                return;
            }
            self.pass_over(idx);
        }
    }
}

/// Keeps a subscription to sentinel `idx`'s announcements and records every new primary of the
/// service they name; resubscribes after a pause when the sentinel closes the connection or cannot
/// be reached.
async fn subscriber(weak: Weak<Discovery>, idx: usize, every: Duration) {
    let mut failures: u32 = 0;
    loop {
        let Some(this) = weak.upgrade() else { return };
        let subscribed = this.subscribe(idx).await;
        match subscribed {
            Ok(mut stream) => {
                failures = 0;
                drop(this);
                while let Some(msg) = stream.next().await {
                    let Some(this) = weak.upgrade() else { return };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if let Some(new) = this.parse_switch(msg.get_channel_name(), &payload) {
                        this.switched(new);
                    }
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(target: "cache_redis", sentinel = %this.names[idx], error = %e, "cannot subscribe to the sentinel's announcements");
            }
        }
        tokio::time::sleep(every.saturating_mul(failures.clamp(1, 10))).await;
    }
}

/// Asks the sentinels for the primary every `every` (covers a lost subscription or message).
async fn poller(weak: Weak<Discovery>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(this) = weak.upgrade() else { return };
        this.poll_once().await;
    }
}

/// A short cause of a connection-level error, for lists of failures.
fn cause(e: &RedisError) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else {
        e.to_string()
    }
}

/// Maps an error of a data node named by the sentinels.
fn node_error(
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

/// What a failed command's error means for a connection discovered through Sentinel: like
/// [`error::disposition`], except that `READONLY` (the node was turned into a replica) makes the
/// connection broken, so the slot is refilled through a new discovery.
pub(crate) fn disposition(e: &RedisError) -> error::Disposition {
    if e.code() == Some("READONLY") {
        error::Disposition::Broken
    } else {
        error::disposition(e)
    }
}

#[cfg(test)]
mod tests;
