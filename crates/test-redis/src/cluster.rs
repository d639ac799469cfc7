//! [`RedisCluster`]: a real Redis Cluster of `redis-server` processes on free loopback ports.
//!
//! - Every node is a [`RedisServer`] built with [`RedisServerBuilder::cluster_node`] (its own
//!   temporary directory, `nodes.conf` inside it, a free client port and a free cluster bus port),
//!   started with a short `--cluster-node-timeout` so that failovers in tests take about two
//!   seconds.
//! - `redis-cli --cluster create ... --cluster-replicas R --cluster-yes` assigns the slots and the
//!   replicas; [`RedisClusterBuilder::start`] then polls (bounded by [`CLUSTER_READY_TIMEOUT`]) until
//!   every node says `cluster_state:ok` with all 16384 slots assigned, knows every other node, lists
//!   every node in its `CLUSTER SLOTS` (the topology a client loads when it connects), and every
//!   replica's link to its primary is up. A cluster that does not get there fails the test with
//!   every node's log.
//! - Redis lists a replica in `CLUSTER SLOTS` only once its replication offset is not zero, which on
//!   an empty data set happens at the primary's first replication ping: the nodes run with
//!   `--repl-ping-replica-period 1` (default 10 s), so the wait is a second, not ten. (A client that
//!   connected before would not know the replicas: redis-rs answers "Requested connection not
//!   found" for a command addressed to one.)
//! - Dropping the cluster kills every node. A cluster shared through a `static` (one per test
//!   binary, see [`RedisCluster::shared`]) is never dropped, so each cluster also starts a tiny
//!   *reaper* (`sh`) that holds the read end of a pipe: when the test process exits for any reason,
//!   the pipe closes and the reaper kills the nodes (checking each pid is still a `redis-server`) and
//!   removes their directories.
//! - Faults: [`RedisCluster::kill_primary_of_slot`], [`RedisCluster::wait_for_failover`] (a replica
//!   promoted, the cluster `ok` again on every live node), [`RedisCluster::restart_node`] (the old
//!   primary comes back and rejoins as a replica).

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{cli_bin, RedisServer, RedisServerBuilder};

/// How long [`RedisClusterBuilder::start`], [`RedisCluster::wait_until_ready`] and
/// [`RedisCluster::wait_for_failover`] wait for the cluster to reach the state they wait for.
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The number of hash slots of Redis Cluster.
const SLOTS: u32 = 16384;

/// Options of a [`RedisCluster`]; see [`RedisCluster::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .start() to start the cluster"]
pub struct RedisClusterBuilder {
    primaries: usize,
    replicas: usize,
    node_timeout: Duration,
    password: Option<String>,
}

impl Default for RedisClusterBuilder {
    fn default() -> Self {
        Self {
            primaries: 3,
            replicas: 1,
            node_timeout: Duration::from_millis(1000),
            password: None,
        }
    }
}

impl RedisClusterBuilder {
    /// Number of primaries (default 3, at least 3 as `redis-cli --cluster create` requires).
    pub fn primaries(mut self, n: usize) -> Self {
        self.primaries = n;
        self
    }

    /// Replicas per primary (default 1).
    pub fn replicas_per_primary(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// `--cluster-node-timeout` (default 1 s): how long a node may be unreachable before it is
    /// considered failing, which bounds how long a failover takes.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Every node requires this password (`--requirepass`, and `--masterauth` for replication).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Starts the nodes, creates the cluster and waits until it is ready (see the
    /// [module documentation](self)). Panics, printing every node's log, when it cannot.
    pub fn start(self) -> RedisCluster {
        assert!(
            self.primaries >= 3,
            "test-redis: redis-cli --cluster create needs at least 3 primaries"
        );
        let count = self.primaries * (1 + self.replicas);
        let reaper = Reaper::start();
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            let mut b = RedisServer::builder().cluster_node().args([
                "--cluster-node-timeout".to_owned(),
                self.node_timeout.as_millis().to_string(),
                // See the module documentation: replicas are listed in `CLUSTER SLOTS` after
                // their primary's first replication ping.
                "--repl-ping-replica-period".to_owned(),
                "1".to_owned(),
            ]);
            if let Some(pw) = &self.password {
                b = b.password(pw.clone());
            }
            let node = start_node(b);
            reaper.watch(&node);
            nodes.push(node);
        }
        let cluster = RedisCluster {
            nodes,
            password: self.password,
            node_timeout: self.node_timeout,
            reaper: Mutex::new(Some(reaper)),
        };
        let mut cmd = Command::new(cli_bin());
        cmd.arg("--cluster").arg("create");
        for n in &cluster.nodes {
            cmd.arg(n.addr());
        }
        cmd.args([
            "--cluster-replicas",
            &self.replicas.to_string(),
            "--cluster-yes",
        ]);
        if let Some(pw) = &cluster.password {
            cmd.arg("--no-auth-warning").args(["-a", pw]);
        }
        let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
            cluster.fail(&format!(
                "cannot run `{} --cluster create`: {e} (install redis-tools, or set \
                 TEST_REDIS_CLI_BIN)",
                cli_bin()
            ))
        });
        if !out.status.success() {
            cluster.fail(&format!(
                "`redis-cli --cluster create` failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        cluster.wait_until_ready();
        cluster
    }
}

/// Starts a node, retrying with fresh ports when one was taken meanwhile (the builder does that).
fn start_node(b: RedisServerBuilder) -> RedisServer {
    b.start()
}

/// The role of a node in [`RedisCluster::topology`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeRole {
    /// A primary (`master`).
    Primary,
    /// A replica (`slave`).
    Replica,
}

/// One line of `CLUSTER NODES`, as seen by a live node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterNode {
    /// The node id.
    pub id: String,
    /// The client port.
    pub port: u16,
    /// Primary or replica.
    pub role: NodeRole,
    /// For a replica: its primary's id.
    pub primary_id: Option<String>,
    /// Slot ranges served (primaries), inclusive.
    pub slots: Vec<(u16, u16)>,
    /// Whether the node is flagged `fail` or `fail?`.
    pub failing: bool,
    /// Whether the node is still in `handshake` or has no address.
    pub joining: bool,
}

impl ClusterNode {
    /// Whether this node serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

/// Parses a `CLUSTER NODES` reply. Lines that do not parse are skipped.
///
/// `cache-redis` has its own parser of the same reply (its slot map); this harness deliberately does
/// not use it, so that a bug there cannot hide itself from the cluster tests that check it.
pub(crate) fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            // `ip:port@cport[,hostname]`
            let addr = f[1].split('@').next()?;
            let port = addr.rsplit_once(':')?.1.parse().ok()?;
            let flags: Vec<&str> = f[2].split(',').collect();
            let role = if flags.contains(&"master") {
                NodeRole::Primary
            } else {
                NodeRole::Replica
            };
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => {
                        let n = s.parse().ok()?;
                        Some((n, n))
                    }
                })
                .collect();
            Some(ClusterNode {
                id: f[0].to_owned(),
                port,
                role,
                primary_id: (f[3] != "-").then(|| f[3].to_owned()),
                slots,
                failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
                joining: flags.iter().any(|f| *f == "handshake" || *f == "noaddr"),
            })
        })
        .collect()
}

/// A Redis Cluster of real `redis-server` processes owned by a test (or a test binary). See the
/// [module documentation](self).
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    password: Option<String>,
    node_timeout: Duration,
    reaper: Mutex<Option<Reaper>>,
}

impl RedisCluster {
    /// Starts a cluster of 3 primaries with 1 replica each (see [`RedisClusterBuilder::start`]).
    pub fn start() -> RedisCluster {
        Self::builder().start()
    }

    /// Options: number of primaries and replicas, node timeout, password.
    pub fn builder() -> RedisClusterBuilder {
        RedisClusterBuilder::default()
    }

    /// The cluster of this test binary, started on first use with the default options and shared
    /// by every test of the binary (give each test its own key prefix). Never dropped: the reaper
    /// kills its nodes when the process exits. Do not inject faults into it.
    pub fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(RedisCluster::start)
    }

    /// Every node, in start order (primaries and replicas; roles change with failovers).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// `redis://[:password@]127.0.0.1:PORT` of every node.
    pub fn seed_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `127.0.0.1:PORT,127.0.0.1:PORT,...`: the form of `REDIS_CLUSTER_NODES`.
    pub fn nodes_env(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The `--cluster-node-timeout` the nodes run with.
    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }

    /// The node listening on `port`.
    pub fn node_by_port(&self, port: u16) -> Option<&RedisServer> {
        self.nodes.iter().find(|n| n.port() == port)
    }

    fn live_node(&self) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.is_running())
            .unwrap_or_else(|| self.fail("no node of the cluster is running"))
    }

    /// Runs `redis-cli` against a running node (see [`RedisServer::cli`]).
    pub fn cli<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.live_node().cli(args)
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let out = self.cli(["CLUSTER", "KEYSLOT", key]);
        out.parse()
            .unwrap_or_else(|_| panic!("test-redis: CLUSTER KEYSLOT answered {out:?}"))
    }

    /// The cluster as a running node sees it (`CLUSTER NODES`).
    pub fn topology(&self) -> Vec<ClusterNode> {
        parse_nodes(&self.cli(["CLUSTER", "NODES"]))
    }

    /// The current primaries, sorted by port.
    pub fn primaries(&self) -> Vec<ClusterNode> {
        let mut p: Vec<ClusterNode> = self
            .topology()
            .into_iter()
            .filter(|n| n.role == NodeRole::Primary && !n.slots.is_empty())
            .collect();
        p.sort_by_key(|n| n.port);
        p
    }

    /// The node serving `slot` as primary now.
    pub fn primary_of_slot(&self, slot: u16) -> &RedisServer {
        let port = self
            .topology()
            .into_iter()
            .find(|n| n.role == NodeRole::Primary && n.serves(slot) && !n.failing)
            .map(|n| n.port)
            .unwrap_or_else(|| self.fail(&format!("no live primary serves slot {slot}")));
        self.node_by_port(port)
            .unwrap_or_else(|| self.fail(&format!("port {port} is not a node of this cluster")))
    }

    /// Kills (`SIGKILL`) the primary serving `slot` and returns its port.
    pub fn kill_primary_of_slot(&self, slot: u16) -> u16 {
        let node = self.primary_of_slot(slot);
        node.kill();
        node.port()
    }

    /// Kills the primary serving `key`'s slot and returns its port.
    pub fn kill_primary_of(&self, key: &str) -> u16 {
        self.kill_primary_of_slot(self.slot_of(key))
    }

    /// Waits until a replica has taken over `slot` from the primary on `old_port` and every running
    /// node says `cluster_state:ok`. Returns how long it waited; panics (with the logs) after
    /// [`CLUSTER_READY_TIMEOUT`].
    pub fn wait_for_failover(&self, slot: u16, old_port: u16) -> Duration {
        let start = Instant::now();
        self.poll("a replica to take over", || {
            let promoted = self.topology().into_iter().any(|n| {
                n.role == NodeRole::Primary && n.port != old_port && !n.failing && n.serves(slot)
            });
            promoted && self.running().all(|n| cluster_ok(n, None))
        });
        start.elapsed()
    }

    /// Restarts a killed node on its port with its `nodes.conf` (it rejoins the cluster; a former
    /// primary whose slots were taken over comes back as a replica) and waits until the cluster is
    /// ready again.
    pub fn restart_node(&self, port: u16) {
        let node = self
            .node_by_port(port)
            .unwrap_or_else(|| self.fail(&format!("port {port} is not a node of this cluster")));
        node.restart();
        if let Some(reaper) = &*self.reaper.lock().unwrap_or_else(|p| p.into_inner()) {
            reaper.watch(node);
        }
        self.wait_until_ready();
    }

    fn running(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// Waits until every running node says `cluster_state:ok` with all slots assigned and knows
    /// every running node, no node is still joining, every running node is listed in every
    /// node's `CLUSTER SLOTS`, and every replica's link is up.
    pub fn wait_until_ready(&self) {
        let running = self.running().count();
        self.poll("the cluster to be ready", || {
            self.running().all(|n| {
                cluster_ok(n, Some(running))
                    && parse_nodes(&n.cli(["CLUSTER", "NODES"]))
                        .iter()
                        .all(|c| !c.joining && (!c.failing || self.node_down(c.port)))
                    && replica_link_up(n)
                    && slots_list(n) >= running
            })
        });
    }

    fn node_down(&self, port: u16) -> bool {
        self.node_by_port(port).is_some_and(|n| !n.is_running())
    }

    fn poll(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        loop {
            if done() {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "timed out after {CLUSTER_READY_TIMEOUT:?} waiting for {what}; topology:\n{}",
                    self.cli(["CLUSTER", "NODES"])
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Prints every node's log to stderr.
    pub fn print_logs(&self) {
        for n in &self.nodes {
            n.print_log();
        }
    }

    fn fail(&self, msg: &str) -> ! {
        self.print_logs();
        panic!("test-redis cluster: {msg}");
    }
}

/// `CLUSTER INFO` says ok, all slots assigned and ok, and (when given) this many known nodes at
/// least.
fn cluster_ok(node: &RedisServer, known: Option<usize>) -> bool {
    let info = node.cli(["CLUSTER", "INFO"]);
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let all = SLOTS.to_string();
    field("cluster_state") == "ok"
        && field("cluster_slots_assigned") == all
        && field("cluster_slots_ok") == all
        && known.is_none_or(|k| field("cluster_known_nodes").parse::<usize>().unwrap_or(0) >= k)
}

/// How many nodes `node`'s `CLUSTER SLOTS` lists (primaries and the replicas Redis shows there: see
/// the module documentation). `redis-cli` prints the reply one element a line; each node entry
/// holds the node's 40-hex-digit id.
fn slots_list(node: &RedisServer) -> usize {
    let out = node.cli(["CLUSTER", "SLOTS"]);
    let ids: std::collections::HashSet<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 40 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    ids.len()
}

/// A replica's link to its primary is up and the initial sync is done; true for a primary.
fn replica_link_up(node: &RedisServer) -> bool {
    let info = node.cli(["INFO", "replication"]);
    if info.lines().any(|l| l.trim() == "role:master") {
        return true;
    }
    info.lines().any(|l| l.trim() == "master_link_status:up")
        && info
            .lines()
            .any(|l| l.trim() == "master_sync_in_progress:0")
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test-redis cluster: a test panicked; the nodes' logs follow");
        }
        // Each RedisServer kills its process (and prints its log when panicking) in its own Drop.
        self.nodes.clear();
        if let Some(mut reaper) = self.reaper.lock().unwrap_or_else(|p| p.into_inner()).take() {
            reaper.finish();
        }
    }
}

/// Kills the nodes when the test process ends without dropping the cluster (see the module docs).
#[derive(Debug)]
struct Reaper {
    child: Child,
    stdin: Mutex<Option<ChildStdin>>,
}

/// Reads `pid N` / `dir PATH` lines until EOF, then kills the listed pids that are still
/// `redis-server` processes and removes the directories.
const REAPER_SCRIPT: &str = r#"
pids=""
dirs=""
while IFS= read -r line; do
  case "$line" in
    "pid "*) pids="$pids ${line#pid }" ;;
    "dir "*) dirs="$dirs ${line#dir }" ;;
  esac
done
for p in $pids; do
  case "$(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null)" in
    *redis-server*) kill -9 "$p" 2>/dev/null ;;
  esac
done
for d in $dirs; do
  case "$d" in
    */test-redis-*) rm -rf -- "$d" ;;
  esac
done
"#;

impl Reaper {
    fn start() -> Reaper {
        let mut child = Command::new("sh")
            .args(["-c", REAPER_SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("test-redis: cannot start the cluster reaper (sh): {e}"));
        let stdin = child.stdin.take();
        Reaper {
            child,
            stdin: Mutex::new(stdin),
        }
    }

    fn watch(&self, node: &RedisServer) {
        let mut guard = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(stdin), Some(pid)) = (guard.as_mut(), node.pid()) {
            // The directory path has no spaces (tempfile names), as the script assumes.
            let _ = writeln!(stdin, "pid {pid}\ndir {}", node.dir().display());
        }
    }

    fn finish(&mut self) {
        // Closing stdin lets the script run; the nodes are dead already, so it only cleans up.
        drop(self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take());
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,hostname2 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003,hostname3 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005,hostname5 slave,fail 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,hostname1 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";

    #[test]
    fn parses_cluster_nodes() {
        let nodes = parse_nodes(NODES);
        assert_eq!(nodes.len(), 5);
        let first = nodes.iter().find(|n| n.port == 30001).unwrap();
        assert_eq!(first.role, NodeRole::Primary);
        assert_eq!(first.slots, vec![(0, 5460)]);
        assert!(first.serves(5460) && !first.serves(5461));
        let failed = nodes.iter().find(|n| n.port == 30005).unwrap();
        assert_eq!(failed.role, NodeRole::Replica);
        assert!(failed.failing);
        assert_eq!(
            failed.primary_id.as_deref(),
            Some("67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1")
        );
    }

    /// Failover, restart and rejoin are exercised by `cache-redis`'s `cluster_faults` tests (one
    /// cluster start per CI run is enough here).
    #[test]
    fn a_cluster_with_a_password_starts_and_serves_every_slot() {
        let cluster = RedisCluster::builder().password("pw").start();
        assert_eq!(cluster.nodes().len(), 6);
        assert_eq!(cluster.primaries().len(), 3);
        let slots: u32 = cluster
            .primaries()
            .iter()
            .flat_map(|n| n.slots.iter().map(|(a, b)| u32::from(b - a) + 1))
            .sum();
        assert_eq!(slots, SLOTS);
        assert!(cluster.seed_urls()[0].starts_with("redis://:pw@127.0.0.1:"));
        let replicas = cluster
            .topology()
            .into_iter()
            .filter(|n| n.role == NodeRole::Replica)
            .count();
        assert_eq!(replicas, 3);
        let slot = cluster.slot_of("some-key");
        assert!(cluster
            .primaries()
            .iter()
            .any(|p| p.serves(slot) && p.port == cluster.primary_of_slot(slot).port()));
    }
}
