//! `cachectl health` and `stats` as operators run them: what `health` costs the server (counted
//! with the server's `INFO commandstats` on an empty Redis and on one holding a million keys), and
//! that no output (text, JSON, logs) ever shows a password, on a password-protected server and a
//! password-protected cluster.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use assert_cmd::Command;
use test_redis::{RedisCluster, RedisServer};

/// A `cachectl` command with a clean environment, bounded to 120 s.
fn cachectl() -> Command {
    common::cachectl(Duration::from_secs(120))
}

/// Runs `cachectl args...` against `server`, expecting exit 0, and returns what the server counted.
fn commands_of_cachectl(server: &RedisServer, args: &[&str]) -> BTreeMap<String, u64> {
    server.cli(["CONFIG", "RESETSTAT"]);
    cachectl()
        .args(["--redis", &server.url(), "--prefix", "ops"])
        .args(args)
        .assert()
        .success();
    server.commandstats()
}

#[test]
fn health_sends_the_same_few_commands_on_an_empty_redis_and_on_a_million_keys() {
    let server = RedisServer::builder()
        .args(["--enable-debug-command", "local"])
        .start();
    // One run first: the server loads the self-test's Lua scripts once (EVAL, then EVALSHA).
    commands_of_cachectl(&server, &["health", "--self-test"]);
    let empty = (
        commands_of_cachectl(&server, &["health"]),
        commands_of_cachectl(&server, &["health", "--self-test"]),
    );
    server.cli(["DEBUG", "POPULATE", "1000000"]);
    let dbsize = server.cli(["DBSIZE"]);
    let full = (
        commands_of_cachectl(&server, &["health"]),
        commands_of_cachectl(&server, &["health", "--self-test"]),
    );
    assert_eq!(empty, full, "the keyspace size changed what health sends");
    let (health, self_test) = full;
    let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    // Connection setup (CLIENT SETINFO / SETNAME), PING, GET, INFO, QUIT.
    assert!(total(&health) <= 10, "{health:?}");
    assert!(!health.contains_key("scan"), "{health:?}");
    assert!(total(&self_test) <= 80, "{self_test:?}");
    assert_eq!(self_test.get("scan"), Some(&1), "{self_test:?}");
    assert_eq!(
        server.cli(["DBSIZE"]),
        dbsize,
        "the self-test left keys behind"
    );
}

#[test]
fn health_without_the_flag_writes_nothing_and_the_self_test_reports_its_steps() {
    let server = RedisServer::start();
    let out = cachectl()
        .args(["--redis", &server.url(), "health"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("HEALTHY") && text.contains("ready"), "{text}");
    assert!(!text.contains("self-test"), "{text}");
    let stats = server.commandstats();
    for write in ["set", "del", "unlink", "evalsha", "eval", "zadd"] {
        assert!(
            !stats.contains_key(write),
            "health wrote ({write}): {stats:?}"
        );
    }
    let out = cachectl()
        .args(["--json", "--redis", &server.url(), "health", "--self-test"])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["readiness"]["ready"], true, "{v}");
    assert_eq!(v["self_test"]["leftover_keys"], 0, "{v}");
    assert_eq!(server.cli(["DBSIZE"]), "0");
}

/// A password no other text of the output could contain by chance, and a wrong one.
const PW: &str = "pw-Zq9x-s3cret";
const WRONG: &str = "wrong-Kd7v-pw";

#[track_caller]
fn assert_no_password(what: &str, out: &std::process::Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(PW) && !text.contains(WRONG),
            "{what}: {stream} shows a password:\n{text}"
        );
    }
}

/// Every way health and stats print, with the backend given by `args` (flags) and `env`.
fn run_everything(label: &str, args: &[String], env: &[(&str, String)]) {
    let invocations: [&[&str]; 8] = [
        &["health"],
        &["--json", "health"],
        &["health", "--self-test"],
        &["--json", "health", "--self-test"],
        &["stats"],
        &["--json", "stats"],
        &["--log", "debug", "health"],
        &["--log", "debug", "--json", "stats"],
    ];
    for inv in invocations {
        let mut cmd = cachectl();
        cmd.args(args).args(inv);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_no_password(&format!("{label} {inv:?}"), &out);
    }
}

#[test]
fn health_and_stats_never_print_the_password_of_a_server() {
    let server = RedisServer::builder().password(PW).start();
    let url = server.url();
    assert!(url.contains(PW));
    run_everything("--redis", &["--redis".into(), url.clone()], &[]);
    run_everything("REDIS_URL", &[], &[("REDIS_URL", url)]);
    // A wrong password: unhealthy, an auth error in words, no password either way.
    let wrong = format!("redis://:{WRONG}@{}", server.addr());
    run_everything("wrong password", &["--redis".into(), wrong], &[]);
}

#[test]
fn health_and_stats_never_print_the_password_of_a_cluster() {
    let cluster = RedisCluster::builder()
        .primaries(3)
        .replicas_per_primary(0)
        .password(PW)
        .start();
    let nodes = cluster.seed_urls().join(",");
    assert!(nodes.contains(PW));
    run_everything("--cluster", &["--cluster".into(), nodes.clone()], &[]);
    run_everything(
        "REDIS_CLUSTER_NODES",
        &[],
        &[("REDIS_CLUSTER_NODES", nodes)],
    );
    let wrong: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| format!("redis://:{WRONG}@{}", n.addr()))
        .collect();
    run_everything(
        "wrong cluster password",
        &["--cluster".into(), wrong.join(",")],
        &[],
    );
}
