//! `cachectl top` as a real process against a real `redis-server`, with two library instances
//! publishing fleet heartbeats from this test process (two stores, two cache managers, distinct
//! instance ids, a 100 ms interval and a 400 ms TTL so that expiry needs no long wait).
//!
//! The interactive view runs under tmux (a real pseudo-terminal and a terminal emulator whose
//! screen we can read): `tmux capture-pane` reads the screen, `tmux send-keys q` quits. Each test
//! uses a tmux server of its own (`-S` socket in a temporary directory), never the user's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cachekit::core::Config;
use cachekit::fleet::{read_fleet, Fleet, FleetConfig, Heartbeat};
use cachekit::{CacheManager, DynStore};
use serde_json::Value;
use test_redis::RedisServer;

/// Upper bound of every wait below: generous for a loaded 2-core machine; reaching it fails the
/// test with what was seen last. Nothing asserts how fast anything happened.
const PATIENCE: Duration = Duration::from_secs(30);

fn cachectl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cachectl"))
}

/// Two publishing instances against one server, on a runtime of their own.
struct Fleet2 {
    runtime: tokio::runtime::Runtime,
    server: RedisServer,
    prefix: String,
    _caches: Vec<CacheManager<DynStore>>,
    heartbeats: Vec<Option<Heartbeat>>,
    reader: DynStore,
}

impl Fleet2 {
    fn start(prefix: &str) -> Self {
        let server = RedisServer::start();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = Config::builder()
            .redis_url(server.url())
            .key_prefix(prefix)
            .build()
            .unwrap();
        let (caches, heartbeats, reader) = runtime.block_on(async {
            let mut caches = Vec::new();
            let mut heartbeats = Vec::new();
            for id in ["web-a", "web-b"] {
                let fleet_config = FleetConfig::new(Duration::from_millis(100))
                    .with_ttl(Duration::from_millis(400))
                    .with_instance_id(id);
                let fleet = Fleet::connect_with(&config, Some(fleet_config))
                    .await
                    .unwrap();
                let cache = cachekit::cache_manager(fleet.store(), &config).unwrap();
                // Some traffic, so that hit ratios and store latencies have something to show.
                cache.user().set("1", &1).await.unwrap();
                cache.user().get::<i32>("1").await.unwrap();
                cache.user().get::<i32>("2").await.unwrap();
                heartbeats.push(Some(fleet.start_with_cache(&cache).await.unwrap().unwrap()));
                caches.push(cache);
            }
            let reader = cachekit::connect(&config).await.unwrap();
            (caches, heartbeats, reader)
        });
        let fleet = Fleet2 {
            runtime,
            server,
            prefix: prefix.to_owned(),
            _caches: caches,
            heartbeats,
            reader,
        };
        fleet.wait_for_instances(&["web-a", "web-b"]);
        fleet
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// Waits until exactly these instances are live (read with the library's own reader).
    fn wait_for_instances(&self, ids: &[&str]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let view = self
                .runtime
                .block_on(read_fleet(self.reader.as_ref(), 100))
                .unwrap();
            let live: Vec<&str> = view.instances.iter().map(|i| i.id.as_str()).collect();
            if live == ids {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "live instances {live:?}, want {ids:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops instance `i` the way a crash would: no more writes, the key left to its TTL.
    fn kill_instance(&mut self, i: usize) {
        let heartbeat = self.heartbeats[i].take();
        let _guard = self.runtime.enter();
        drop(heartbeat);
    }

    fn cachectl(&self) -> Command {
        let mut cmd = Command::new(cachectl_bin());
        for var in [
            "REDIS_URL",
            "REDIS_CLUSTER_NODES",
            "CACHE_BACKEND",
            "CACHE_KEY_PREFIX",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(["--redis", &self.url(), "--prefix", &self.prefix]);
        cmd
    }
}

fn instance_ids(snapshot: &Value) -> Vec<String> {
    snapshot["fleet"]["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("no fleet in {snapshot}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn json_streams_one_parseable_snapshot_per_line_with_both_instances() {
    let fleet = Fleet2::start("top-json");
    let out = fleet
        .cachectl()
        .args(["--json", "top", "--count", "2", "--interval", "200ms"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in lines {
        let snapshot: Value = serde_json::from_str(line).unwrap();
        assert_eq!(instance_ids(&snapshot), ["web-a", "web-b"], "{snapshot}");
        assert_eq!(snapshot["fleet"]["totals"]["instances"], 2);
        let instance = &snapshot["fleet"]["instances"][0];
        assert_eq!(instance["families"]["user"]["hits"], 1, "{instance}");
        assert_eq!(instance["families"]["user"]["misses"], 1, "{instance}");
        assert!(
            instance["store"]["calls"].as_u64().unwrap() >= 3,
            "{instance}"
        );
        assert!(
            instance["pool"]["max_open"].as_u64().unwrap() > 0,
            "{instance}"
        );
        assert!(instance["near_cache_hit_ratio"].is_null(), "{instance}");
        let node = &snapshot["server"]["nodes"][0];
        assert_eq!(node["address"], fleet.server.addr(), "{node}");
        assert!(node["ops_per_sec"].is_number(), "{node}");
        assert!(node["used_memory_bytes"].as_u64().unwrap() > 0, "{node}");
        let commands = node["commands"].as_array().unwrap();
        let set = commands
            .iter()
            .find(|c| c["name"] == "set")
            .expect("SET in commandstats");
        assert!(set["calls"].as_u64().unwrap() > 0);
        assert!(
            set["latency_usec"]["p99"].is_number(),
            "Redis 7 latencystats: {set}"
        );
    }
}

#[test]
fn an_instance_whose_publisher_stopped_disappears_after_its_ttl() {
    let mut fleet = Fleet2::start("top-ttl");
    fleet.kill_instance(1);
    // The key is not deleted: it expires (400 ms TTL). Poll the CLI until web-b is gone.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = fleet
            .cachectl()
            .args(["--json", "top", "--count", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let snapshot: Value = serde_json::from_slice(&out.stdout).unwrap();
        let ids = instance_ids(&snapshot);
        if ids == ["web-a"] {
            break;
        }
        assert!(Instant::now() < deadline, "still live: {ids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The instance still publishing stays.
    fleet.wait_for_instances(&["web-a"]);
}

/// A tmux server of our own, killed on drop.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        }
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux ({e}): install it (apt-get install tmux)"));
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn the_terminal_view_shows_the_server_and_both_instances_and_quits_on_q() {
    let fleet = Fleet2::start("top-tty");
    let tmux = Tmux::new();
    let rc = tmux.dir().join("rc");
    // The view runs in a shell that records its exit code, then waits, so the pane stays readable.
    let command = format!(
        "{} --redis {} --prefix {} top --interval 200ms; echo $? > {}; sleep 60",
        shell_quote(&cachectl_bin().to_string_lossy()),
        shell_quote(&fleet.url()),
        shell_quote(&fleet.prefix),
        shell_quote(&rc.to_string_lossy()),
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "200",
        "-y",
        "50",
        "sh",
        "-c",
        &command,
    ]);

    let address = fleet.server.addr();
    let deadline = Instant::now() + PATIENCE;
    let screen = loop {
        let screen = tmux.screen();
        let server_row = screen
            .lines()
            .find(|l| l.starts_with(&address))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("-").to_owned());
        // The ops/s column holds a number once the server has been read.
        let ops_shown = server_row.is_some_and(|ops| ops.parse::<f64>().is_ok());
        if ops_shown
            && screen.contains("web-a")
            && screen.contains("web-b")
            && screen.contains("FLEET: 2 live instance(s)")
        {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "the view never showed everything:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(screen.contains("ops/s"), "{screen}");
    assert!(screen.contains("COMMAND"), "{screen}");
    assert!(screen.lines().any(|l| l.starts_with("user ")), "{screen}");

    tmux.run(&["send-keys", "-t", "top", "q"]);
    let deadline = Instant::now() + PATIENCE;
    let code = loop {
        if let Ok(code) = std::fs::read_to_string(&rc) {
            if code.ends_with('\n') {
                break code.trim().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "q did not quit:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, "0", "exit code after q");
    // The terminal was restored: the alternate screen is gone, the shell's pane is back.
    assert!(!tmux.screen().contains("FLEET:"), "{}", tmux.screen());
}

#[test]
fn on_a_cluster_every_primary_is_a_node_of_the_server_view() {
    let cluster = test_redis::RedisCluster::builder()
        .replicas_per_primary(0)
        .start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config::builder()
        .cluster_nodes(cluster.seed_urls())
        .key_prefix("top-cluster")
        .build()
        .unwrap();
    let _heartbeat = runtime.block_on(async {
        let fleet = Fleet::connect_with(
            &config,
            Some(FleetConfig::new(Duration::from_millis(100)).with_instance_id("cluster-app")),
        )
        .await
        .unwrap();
        let cache = cachekit::cache_manager(fleet.store(), &config).unwrap();
        for i in 0..30 {
            cache.user().set(&i.to_string(), &i).await.unwrap();
        }
        fleet.start_with_cache(&cache).await.unwrap().unwrap()
    });

    let out = Command::new(cachectl_bin())
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_NODES")
        .args(["--cluster", &cluster.nodes_env(), "--prefix", "top-cluster"])
        .args(["--json", "top", "--count", "2", "--interval", "200ms"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let nodes = last["server"]["nodes"].as_array().unwrap();
    let mut addresses: Vec<&str> = nodes
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), 3, "{last}");
    let total = &last["server"]["total"];
    assert!(
        total["address"].as_str().unwrap().starts_with("cluster"),
        "{total}"
    );
    let keys: u64 = nodes.iter().map(|n| n["keys"].as_u64().unwrap()).sum();
    assert_eq!(total["keys"].as_u64().unwrap(), keys);
    assert!(keys >= 31, "30 users and the heartbeat: {last}");
    assert!(total["ops_per_sec"].is_number(), "{total}");
    assert_eq!(instance_ids(&last), ["cluster-app"]);
}
