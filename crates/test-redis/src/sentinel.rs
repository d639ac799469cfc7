//! [`RedisSentinel`]: a primary, its replicas and a group of Redis Sentinels, all real processes on
//! free loopback ports.
//!
//! This file is over 600 lines because a Sentinel topology is one lifecycle (start, wait for
//! agreement, fail over, kill, restart, tear down) whose steps wait on each other's state; it is
//! test harness, not library code.
//!
//! - The data nodes are [`RedisServer`]s: one primary and (by default) two replicas started with
//!   `--replicaof` the primary, all with `--repl-diskless-sync-delay 0` (Redis 7 waits 5 s by default
//!   for more replicas before a full sync, which would make every start and failover slow). With a
//!   [password](RedisSentinelBuilder::password) every data node requires it and replicates with it
//!   (`--masterauth`).
//! - The sentinels (3 by default) are `redis-server <conf> --sentinel` processes, each with its own
//!   temporary directory holding its configuration file (Sentinel rewrites it, so it must be
//!   writable) and log: `sentinel monitor <service> 127.0.0.1 <primary port> <quorum>` (quorum: a
//!   majority of the sentinels), a short `down-after-milliseconds` (1 s by default) and
//!   `failover-timeout` (3 s), `sentinel resolve-hostnames no`, `sentinel auth-pass` when the data
//!   nodes have a password, and `requirepass` when the sentinels get [their own
//!   password](RedisSentinelBuilder::sentinel_password) (sentinels then authenticate to each other
//!   with it too).
//! - [`RedisSentinelBuilder::start`] starts the data nodes, waits until every replica's link to the
//!   primary is up, then starts the sentinels, and returns once every sentinel names the primary,
//!   sees every replica healthy, knows every other sentinel and says `SENTINEL CKQUORUM` is
//!   reachable (bounded by [`SENTINEL_READY_TIMEOUT`]). Anything that does not get there fails the
//!   test with every process's log.
//! - Faults: [`RedisSentinel::failover`] (`SENTINEL FAILOVER`), [`RedisSentinel::kill_primary`]
//!   (`SIGKILL`, then Sentinel's automatic failover), both waiting until every running sentinel names
//!   a new primary and that node answers `ROLE` with `master`; [`RedisSentinel::restart_node`] (a
//!   killed node comes back and is turned into a replica by the sentinels); sentinels can be killed,
//!   frozen and restarted one by one ([`SentinelNode`]).
//! - Dropping the topology kills every process (`SIGKILL`) and removes their directories; when the
//!   test is panicking, every log is printed first.
//!
//! The harness talks to the processes with a small hand-written RESP client (`sentinel/wire.rs`; no
//! Redis client dependency, like the rest of the crate), so polling does not spawn a `redis-cli` per
//! question. One sentinel process (configuration, start, freeze, restart) is `sentinel/node.rs`.
//!
//! ```no_run
//! use test_redis::RedisSentinel;
//!
//! let topology = RedisSentinel::builder().password("data-pw").sentinel_password("sentinel-pw").start();
//! let nodes = topology.sentinels_env(); // "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
//! let service = topology.service_name();
//! let before = topology.primary().port();
//! let promotion = topology.failover();
//! assert_eq!(promotion.from, before);
//! assert_ne!(topology.primary().port(), before);
//! let crash = topology.kill_primary();
//! topology.restart_node(crash.from); // comes back as a replica
//! # let _ = (nodes, service);
//! ```

use std::time::{Duration, Instant};

use crate::{RedisServer, HOST};

mod node;
mod wire;

pub use node::SentinelNode;
use wire::{query, Reply, RoleConn};

/// How long [`RedisSentinelBuilder::start`] and the waits of [`RedisSentinel`] wait for the
/// topology to reach the state they wait for.
pub const SENTINEL_READY_TIMEOUT: Duration = Duration::from_secs(40);

/// The service name the sentinels monitor unless [`RedisSentinelBuilder::service_name`] says
/// otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "cachekit-primary";

/// Options of a [`RedisSentinel`]; see [`RedisSentinel::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .start() to start the topology"]
pub struct RedisSentinelBuilder {
    service: String,
    replicas: usize,
    sentinels: usize,
    quorum: Option<usize>,
    down_after: Duration,
    failover_timeout: Duration,
    password: Option<String>,
    sentinel_password: Option<String>,
}

impl Default for RedisSentinelBuilder {
    fn default() -> Self {
        Self {
            service: DEFAULT_SERVICE_NAME.to_owned(),
            replicas: 2,
            sentinels: 3,
            quorum: None,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(3000),
            password: None,
            sentinel_password: None,
        }
    }
}

impl RedisSentinelBuilder {
    /// The name the sentinels monitor the primary under (default [`DEFAULT_SERVICE_NAME`]).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service = name.into();
        self
    }

    /// Number of replicas (default 2; at least 1, or nothing could be promoted).
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// Number of sentinels (default 3).
    pub fn sentinels(mut self, n: usize) -> Self {
        self.sentinels = n;
        self
    }

    /// How many sentinels must agree that the primary is down (default: a majority).
    pub fn quorum(mut self, n: usize) -> Self {
        self.quorum = Some(n);
        self
    }

    /// `sentinel down-after-milliseconds` (default 1 s): how long the primary must be unreachable
    /// before a sentinel considers it down, the largest part of an automatic failover's duration.
    pub fn down_after(mut self, d: Duration) -> Self {
        self.down_after = d;
        self
    }

    /// `sentinel failover-timeout` (default 3 s). Sentinel also waits twice this long before it
    /// retries a failover of the same service.
    pub fn failover_timeout(mut self, d: Duration) -> Self {
        self.failover_timeout = d;
        self
    }

    /// Every data node requires this password (`requirepass`, `masterauth`), and the sentinels use
    /// it (`sentinel auth-pass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Every sentinel requires this password (`requirepass` in its configuration), separately from
    /// the data nodes'.
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        self.sentinel_password = Some(password.into());
        self
    }

    /// Starts the data nodes and the sentinels and waits until the topology is ready (see the
    /// [module documentation](self)). Panics, printing every log, when it cannot.
    pub fn start(self) -> RedisSentinel {
        assert!(
            self.replicas >= 1,
            "test-redis: a Sentinel topology needs at least one replica"
        );
        assert!(
            self.sentinels >= 1,
            "test-redis: a Sentinel topology needs at least one sentinel"
        );
        assert!(
            !self.service.is_empty() && !self.service.contains(char::is_whitespace),
            "test-redis: the service name must be one non-empty word"
        );
        let quorum = self.quorum.unwrap_or(self.sentinels / 2 + 1);
        let data_node = |replica_of: Option<u16>| {
            let mut b = RedisServer::builder().args(["--repl-diskless-sync-delay", "0"]);
            if let Some(port) = replica_of {
                b = b.args(["--replicaof".to_owned(), HOST.to_owned(), port.to_string()]);
            }
            if let Some(pw) = &self.password {
                b = b.password(pw.clone());
            }
            b.start()
        };
        let primary = data_node(None);
        let primary_port = primary.port();
        let mut data = vec![primary];
        for _ in 0..self.replicas {
            data.push(data_node(Some(primary_port)));
        }
        let mut topology = RedisSentinel {
            service: self.service,
            password: self.password,
            sentinel_password: self.sentinel_password,
            quorum,
            down_after: self.down_after,
            failover_timeout: self.failover_timeout,
            data,
            sentinels: Vec::new(),
        };
        // Sentinel learns the replicas from the primary's INFO, which it reads when it connects
        // and then every 10 s: start it once the replicas are attached, or it would not know them
        // for 10 s.
        topology.poll("the replicas to sync with the primary", || {
            topology.data[1..]
                .iter()
                .all(|n| topology.replication(n, primary_port) == Replication::Synced)
        });
        for _ in 0..self.sentinels {
            let node = SentinelNode::start(&topology.sentinel_conf(primary_port), &topology);
            topology.sentinels.push(node);
        }
        topology.wait_until_ready();
        topology
    }
}

/// What [`RedisSentinel::failover`] and [`RedisSentinel::kill_primary`] observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Promotion {
    /// The port of the primary before the failover.
    pub from: u16,
    /// The port of the promoted replica.
    pub to: u16,
    /// From the `SENTINEL FAILOVER` command (or the `SIGKILL`) until every running sentinel named
    /// the new primary and it answered `ROLE` with `master`.
    pub elapsed: Duration,
    /// From the same start until a replica first answered `ROLE` with `master` (its promotion:
    /// from then on it no longer replicates the old primary), as seen by asking every replica
    /// about once a millisecond; `None` when that was not seen (the answer came between two
    /// questions and the wait ended first, which does not happen in practice).
    pub promoted: Option<Duration>,
}

/// A primary, its replicas and a group of sentinels owned by one test. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct RedisSentinel {
    service: String,
    password: Option<String>,
    sentinel_password: Option<String>,
    quorum: usize,
    down_after: Duration,
    failover_timeout: Duration,
    /// The initial primary first, then the replicas (roles change with failovers).
    data: Vec<RedisServer>,
    sentinels: Vec<SentinelNode>,
}

impl RedisSentinel {
    /// Starts 1 primary, 2 replicas and 3 sentinels (see [`RedisSentinelBuilder::start`]).
    pub fn start() -> RedisSentinel {
        Self::builder().start()
    }

    /// Options: service name, replicas, sentinels, quorum, timings, passwords.
    pub fn builder() -> RedisSentinelBuilder {
        RedisSentinelBuilder::default()
    }

    /// The name the sentinels monitor the primary under (`REDIS_SENTINEL_SERVICE`).
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// `127.0.0.1:PORT` of every sentinel, in start order.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(SentinelNode::addr).collect()
    }

    /// `127.0.0.1:PORT,127.0.0.1:PORT,...`: the form of `REDIS_SENTINEL_NODES`.
    pub fn sentinels_env(&self) -> String {
        self.sentinel_addrs().join(",")
    }

    /// The sentinels, in start order.
    pub fn sentinel_nodes(&self) -> &[SentinelNode] {
        &self.sentinels
    }

    /// The data nodes' password, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The sentinels' password, if any.
    pub fn sentinel_password(&self) -> Option<&str> {
        self.sentinel_password.as_deref()
    }

    /// The sentinels' `down-after-milliseconds`.
    pub fn down_after(&self) -> Duration {
        self.down_after
    }

    /// The sentinels' `failover-timeout`.
    pub fn failover_timeout(&self) -> Duration {
        self.failover_timeout
    }

    /// How many sentinels must agree that the primary is down.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Every data node, the initial primary first (roles change with failovers).
    pub fn data_nodes(&self) -> &[RedisServer] {
        &self.data
    }

    /// The data node listening on `port`.
    pub fn node_by_port(&self, port: u16) -> Option<&RedisServer> {
        self.data.iter().find(|n| n.port() == port)
    }

    /// The data node a running sentinel names as the primary now (`SENTINEL
    /// get-master-addr-by-name`). Panics (with the logs) when no sentinel answers or the answer is
    /// not one of the data nodes.
    pub fn primary(&self) -> &RedisServer {
        let port = self
            .sentinels
            .iter()
            .filter(|s| s.is_running())
            .find_map(|s| self.primary_port_seen_by(s))
            .unwrap_or_else(|| self.fail("no running sentinel names a primary"));
        self.node_by_port(port).unwrap_or_else(|| {
            self.fail(&format!("the sentinels name port {port}, not a data node"))
        })
    }

    /// The running data nodes that are not [the primary](Self::primary).
    pub fn replicas(&self) -> Vec<&RedisServer> {
        let primary = self.primary().port();
        self.data
            .iter()
            .filter(|n| n.port() != primary && n.is_running())
            .collect()
    }

    /// Runs `redis-cli` against the first running sentinel (authenticating when the sentinels have
    /// a password) and returns its output, trimmed.
    pub fn sentinel_cli<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.sentinels
            .iter()
            .find(|s| s.is_running())
            .unwrap_or_else(|| self.fail("no sentinel is running"))
            .cli(args)
    }

    /// A manual failover: `SENTINEL FAILOVER <service>` on a running sentinel (repeated while a
    /// previous failover is still in progress or no replica is ready to be promoted yet), then waits
    /// until every running sentinel names a new primary and it answers `ROLE` with `master`.
    ///
    /// The old primary keeps answering as a primary until the sentinels turn it into a replica
    /// (they do so when they next read its `INFO`, up to about 10 s later): that window is exactly
    /// what a client must cope with, so this method does not wait for it.
    pub fn failover(&self) -> Promotion {
        let from = self.primary().port();
        let watch = self.watch_promotion(from);
        let start = Instant::now();
        let deadline = start + SENTINEL_READY_TIMEOUT;
        loop {
            let answer = self
                .sentinels
                .iter()
                .filter(|s| s.is_running())
                .find_map(|s| s.query(&["SENTINEL", "FAILOVER", &self.service]).ok());
            match answer {
                Some(Reply::Status(s)) if s == "OK" => break,
                // INPROG: a failover is still running; NOGOODSLAVE: no replica is ready yet (e.g.
                // right after another failover). Both pass by themselves.
                Some(Reply::Error(e))
                    if e.starts_with("INPROG") || e.starts_with("NOGOODSLAVE") => {}
                other => self.fail(&format!("SENTINEL FAILOVER answered {other:?}")),
            }
            if Instant::now() >= deadline {
                self.fail("SENTINEL FAILOVER kept answering INPROG or NOGOODSLAVE");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let to = self.wait_for_new_primary(from);
        let elapsed = start.elapsed();
        Promotion {
            from,
            to,
            elapsed,
            promoted: watch.finish().map(|at| at.saturating_duration_since(start)),
        }
    }

    /// Kills the primary (`SIGKILL`: a crash) and waits until the sentinels have promoted a replica
    /// (every running sentinel names it, and it answers `ROLE` with `master`). The killed node stays
    /// down until [`RedisSentinel::restart_node`].
    pub fn kill_primary(&self) -> Promotion {
        let primary = self.primary();
        let from = primary.port();
        let watch = self.watch_promotion(from);
        let start = Instant::now();
        primary.kill();
        let to = self.wait_for_new_primary(from);
        let elapsed = start.elapsed();
        Promotion {
            from,
            to,
            elapsed,
            promoted: watch.finish().map(|at| at.saturating_duration_since(start)),
        }
    }

    /// Starts asking every running data node but the primary on `from` for its `ROLE`, about once
    /// a millisecond, until one answers `master`.
    fn watch_promotion(&self, from: u16) -> PromotionWatch {
        let ports: Vec<u16> = self
            .data
            .iter()
            .filter(|n| n.port() != from && n.is_running())
            .map(RedisServer::port)
            .collect();
        let password = self.password.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<RoleConn> = ports
                .iter()
                .map(|p| RoleConn::new(*p, password.as_deref()))
                .collect();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for c in &mut conns {
                    if c.is_master() {
                        return Some(Instant::now());
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            None
        });
        PromotionWatch { stop, thread }
    }

    /// Waits until every running sentinel names a primary other than the one on `old_port` and
    /// that node answers `ROLE` with `master`; returns its port.
    pub fn wait_for_new_primary(&self, old_port: u16) -> u16 {
        let mut new_port = 0;
        self.poll("a replica to be promoted", || {
            let mut seen = self
                .sentinels
                .iter()
                .filter(|s| s.is_running())
                .map(|s| self.primary_port_seen_by(s));
            let Some(Some(first)) = seen.next() else {
                return false;
            };
            if first == old_port || !seen.all(|p| p == Some(first)) {
                return false;
            }
            new_port = first;
            self.node_by_port(first)
                .is_some_and(|n| self.role(n).as_deref() == Some("master"))
        });
        new_port
    }

    /// Restarts a killed (or running) data node on its port and waits until the sentinels have
    /// made it a replica of the current primary, its link is up, and the topology is ready again.
    /// A restarted former primary comes back empty (no persistence) and answering as a primary; the
    /// sentinels turn it into a replica when they read its `INFO` (up to about 10 s).
    pub fn restart_node(&self, port: u16) {
        let node = self
            .node_by_port(port)
            .unwrap_or_else(|| self.fail(&format!("port {port} is not a data node")));
        node.restart();
        self.wait_until_ready();
    }

    /// Waits until every running sentinel names the same running primary, sees every other
    /// running data node as a replica without a failure flag, knows every other running sentinel,
    /// and says the quorum is reachable; and every other running data node is a replica of that
    /// primary with its link up and its sync done.
    ///
    /// A data node that still answers as a primary although the sentinels named another one (the
    /// old primary after [`RedisSentinel::failover`]), or replicates another node (a restarted
    /// one comes back with its original `--replicaof`), is sent `REPLICAOF` the current primary:
    /// the sentinels do exactly that when they next read its `INFO`, up to 10 s later, and a test
    /// waiting for a stable topology need not wait for that.
    pub fn wait_until_ready(&self) {
        self.poll("the sentinels to agree on the topology", || self.ready());
    }

    fn ready(&self) -> bool {
        let running: Vec<&SentinelNode> =
            self.sentinels.iter().filter(|s| s.is_running()).collect();
        let Some(primary) = running.first().and_then(|s| self.primary_port_seen_by(s)) else {
            return false;
        };
        let Some(primary_node) = self.node_by_port(primary) else {
            return false;
        };
        if !primary_node.is_running() || self.role(primary_node).as_deref() != Some("master") {
            return false;
        }
        if running
            .iter()
            .any(|s| self.primary_port_seen_by(s) != Some(primary))
        {
            return false;
        }
        let mut replicas: Vec<u16> = Vec::new();
        let mut linked = true;
        for node in self
            .data
            .iter()
            .filter(|n| n.is_running() && n.port() != primary)
        {
            replicas.push(node.port());
            match self.replication(node, primary) {
                Replication::Synced => {}
                Replication::Syncing => linked = false,
                Replication::Elsewhere => {
                    let port = primary.to_string();
                    let _ = query(
                        node.port(),
                        self.password.as_deref(),
                        &["REPLICAOF", HOST, &port],
                    );
                    linked = false;
                }
            }
        }
        replicas.sort_unstable();
        let others = running.len().saturating_sub(1);
        linked
            && running.iter().all(|s| {
                self.replicas_seen_by(s) == replicas
                    && self.sentinels_known_by(s) >= others
                    && matches!(
                        s.query(&["SENTINEL", "CKQUORUM", &self.service]),
                        Ok(Reply::Status(ref ok)) if ok.starts_with("OK")
                    )
            })
    }

    /// The primary's port as `sentinel` names it.
    fn primary_port_seen_by(&self, sentinel: &SentinelNode) -> Option<u16> {
        match sentinel.query(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.service]) {
            Ok(Reply::Array(a)) if a.len() == 2 => a[1].text()?.parse().ok(),
            _ => None,
        }
    }

    /// Ports of the replicas `sentinel` sees without a failure flag, sorted.
    fn replicas_seen_by(&self, sentinel: &SentinelNode) -> Vec<u16> {
        let Ok(Reply::Array(replicas)) = sentinel.query(&["SENTINEL", "REPLICAS", &self.service])
        else {
            return Vec::new();
        };
        let mut ports: Vec<u16> = replicas
            .iter()
            .filter_map(|r| {
                let flags = r.field("flags")?;
                let healthy = flags
                    .split(',')
                    .all(|f| !matches!(f, "s_down" | "o_down" | "disconnected" | "promoted"));
                if healthy {
                    r.field("port")?.parse().ok()
                } else {
                    None
                }
            })
            .collect();
        ports.sort_unstable();
        ports
    }

    /// How many other sentinels `sentinel` knows for the service.
    fn sentinels_known_by(&self, sentinel: &SentinelNode) -> usize {
        match sentinel.query(&["SENTINEL", "SENTINELS", &self.service]) {
            Ok(Reply::Array(a)) => a.len(),
            _ => 0,
        }
    }

    /// The first element of `ROLE` on a data node (`master`, `slave`), `None` when it does not
    /// answer.
    fn role(&self, node: &RedisServer) -> Option<String> {
        match query(node.port(), self.password.as_deref(), &["ROLE"]) {
            Ok(Reply::Array(a)) => a.first()?.text().map(str::to_owned),
            _ => None,
        }
    }

    /// Whether `node` replicates the primary on `primary`, and how far.
    fn replication(&self, node: &RedisServer, primary: u16) -> Replication {
        let Ok(Reply::Bulk(info)) = query(
            node.port(),
            self.password.as_deref(),
            &["INFO", "replication"],
        ) else {
            return Replication::Syncing;
        };
        let has = |line: &str| info.lines().any(|l| l.trim() == line);
        if !has("role:slave") || !has(&format!("master_port:{primary}")) {
            Replication::Elsewhere
        } else if has("master_link_status:up") && has("master_sync_in_progress:0") {
            Replication::Synced
        } else {
            Replication::Syncing
        }
    }

    fn poll(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + SENTINEL_READY_TIMEOUT;
        loop {
            if done() {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "timed out after {SENTINEL_READY_TIMEOUT:?} waiting for {what}; {}",
                    self.describe()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One line per process: what it answers now, for failure messages.
    fn describe(&self) -> String {
        let mut out = String::from("topology now:");
        for n in &self.data {
            out.push_str(&format!(
                "\n  data {} running={} role={:?}",
                n.port(),
                n.is_running(),
                self.role(n)
            ));
        }
        for s in &self.sentinels {
            out.push_str(&format!(
                "\n  sentinel {} running={} primary={:?} replicas={:?} sentinels={}",
                s.port(),
                s.is_running(),
                self.primary_port_seen_by(s),
                self.replicas_seen_by(s),
                self.sentinels_known_by(s)
            ));
        }
        out
    }

    /// Prints every process's log to stderr.
    pub fn print_logs(&self) {
        for n in &self.data {
            n.print_log();
        }
        for s in &self.sentinels {
            s.print_log();
        }
    }

    fn fail(&self, msg: &str) -> ! {
        // The logs are printed by the processes' `Drop` while the panic unwinds.
        panic!("test-redis sentinel: {msg}");
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test-redis sentinel: a test panicked; every process's log follows");
        }
        // Sentinels first, so none starts a failover while the data nodes go away. Each process
        // kills itself (and prints its log when panicking) in its own `Drop`.
        self.sentinels.clear();
        self.data.clear();
    }
}

/// The thread of [`RedisSentinel::watch_promotion`].
struct PromotionWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Option<Instant>>,
}

impl PromotionWatch {
    /// Stops the watch; returns when a replica first answered `ROLE` with `master`.
    fn finish(self) -> Option<Instant> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

/// Where a data node stands with respect to the current primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replication {
    /// A replica of it, link up, sync done.
    Synced,
    /// A replica of it, not synced yet (or not answering).
    Syncing,
    /// A primary itself, or a replica of another node.
    Elsewhere,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One topology with both passwords exercises start, readiness, a manual failover, a crash
    /// of the primary and its return as a replica (`cache-redis`'s sentinel tests cover the client
    /// side; one topology per harness self-test keeps CI short).
    #[test]
    fn a_protected_topology_starts_fails_over_and_takes_a_crashed_primary_back() {
        let t = RedisSentinel::builder()
            .password("data pw")
            .sentinel_password("sentinel pw")
            .start();
        assert_eq!(t.data_nodes().len(), 3);
        assert_eq!(t.sentinel_addrs().len(), 3);
        assert_eq!(t.sentinels_env().split(',').count(), 3);
        assert_eq!(t.service_name(), DEFAULT_SERVICE_NAME);
        let first = t.primary().port();
        assert_eq!(first, t.data_nodes()[0].port());
        assert_eq!(t.replicas().len(), 2);
        // Both passwords are enforced, separately.
        assert!(matches!(
            query(first, None, &["GET", "k"]),
            Ok(Reply::Error(e)) if e.starts_with("NOAUTH")
        ));
        assert!(matches!(
            query(t.sentinel_nodes()[0].port(), None, &["SENTINEL", "MASTERS"]),
            Ok(Reply::Error(e)) if e.starts_with("NOAUTH")
        ));
        // The data password does not open a sentinel (AUTH fails, so the helper reports an error).
        assert!(query(t.sentinel_nodes()[0].port(), Some("data pw"), &["PING"]).is_err());
        assert_eq!(t.sentinel_cli(["PING"]), "PONG");
        t.primary().cli(["SET", "before", "1"]);

        let manual = t.failover();
        assert!(manual.promoted.is_some_and(|p| p <= manual.elapsed));
        assert_eq!(manual.from, first);
        assert_ne!(manual.to, first);
        assert_eq!(t.primary().port(), manual.to);
        eprintln!(
            "SENTINEL FAILOVER: promoted after {:?}, all sentinels agree after {:?}",
            manual.promoted, manual.elapsed
        );
        // The promoted replica had the data.
        assert_eq!(t.primary().cli(["GET", "before"]), "1");
        t.wait_until_ready();

        let crash = t.kill_primary();
        assert_eq!(crash.from, manual.to);
        assert_ne!(crash.to, crash.from);
        assert!(!t.node_by_port(crash.from).unwrap().is_running());
        eprintln!(
            "SIGKILL of the primary: promoted after {:?}, all sentinels agree after {:?}",
            crash.promoted, crash.elapsed
        );
        t.restart_node(crash.from);
        assert_eq!(t.primary().port(), crash.to);
        assert_eq!(t.replicas().len(), 2);
        assert!(t
            .node_by_port(crash.from)
            .unwrap()
            .cli(["ROLE"])
            .starts_with("slave"));
    }

    #[test]
    fn a_sentinel_can_be_killed_frozen_and_restarted() {
        let t = RedisSentinel::builder()
            .replicas(1)
            .service_name("other")
            .start();
        let s = &t.sentinel_nodes()[1];
        s.freeze();
        assert!(query(s.port(), None, &["PING"]).is_err());
        s.thaw();
        s.kill();
        assert!(!s.is_running());
        // The others still name the primary.
        assert_eq!(t.primary().port(), t.data_nodes()[0].port());
        s.restart();
        t.wait_until_ready();
        assert!(s.log_contents().contains("+monitor master other"));
    }
}
