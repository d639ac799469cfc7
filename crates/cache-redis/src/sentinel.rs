//! Redis Sentinel: finding the primary (or a replica) of a monitored service through the
//! sentinels, and noticing failovers as they happen.
//!
//! Files: this one (the types, asking the sentinels, the discovery loop), `node.rs` (connecting to
//! a node they named), `errors.rs` (what a failed discovery reports), `watch.rs` (following
//! promotions and switches).
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
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Error, Result};
use parking_lot::{Mutex, RwLock};
use rand::seq::SliceRandom;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, RedisError,
};

use crate::error;

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
        let mut conn = tokio::time::timeout(self.connect_timeout + BACKSTOP, fut)
            .await
            .map_err(|_| timed_out())??;
        // Named like the data connections, so that a sentinel's `CLIENT LIST` tells it from the
        // other sentinels' links (bounded by the response timeout; a refusal is only logged).
        crate::manager::set_name(&mut conn, &addr_text(self.spec.sentinels[idx].addr())).await;
        *self.sentinel.lock() = Some((idx, conn.clone()));
        Ok(conn)
    }

    /// Lets go of the connection kept for questions to a sentinel (the store is closing).
    pub(crate) fn forget_sentinels(&self) {
        *self.sentinel.lock() = None;
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

mod errors;
mod node;
#[cfg(test)]
mod tests;
mod watch;
