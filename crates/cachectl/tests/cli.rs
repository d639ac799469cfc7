//! Every `cachectl` command, run as a real process, on the in-memory backend and on a spawned
//! `redis-server`.

mod common;

use std::time::{Duration, Instant};

use assert_cmd::Command;
use cachekit::{Config, CreateOptions, Family, Profile, RedisConfig, RedisEndpoint};
use predicates::prelude::*;
use serde_json::Value;
use test_redis::RedisServer;

/// A `cachectl` command with a clean environment, bounded to 60 s.
fn cachectl() -> Command {
    common::cachectl(Duration::from_secs(60))
}

fn json_of(output: &[u8]) -> Value {
    let text = String::from_utf8_lossy(output);
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn redis_config(server: &RedisServer, prefix: &str) -> Config {
    Config::redis(
        RedisConfig::new(Profile::Development, RedisEndpoint::server(server.url()))
            .with_key_prefix(prefix),
    )
}

// ---- In-memory backend ---------------------------------------------------------------------

#[test]
fn demo_runs_on_the_embedded_backend() {
    cachectl()
        .arg("demo")
        .assert()
        .success()
        .stdout(predicate::str::contains("embedded in-memory store"))
        .stdout(predicate::str::contains("40/40 fields present"))
        .stdout(predicate::str::contains("database queried 1 time(s)"))
        .stdout(predicate::str::contains("old token works: false"))
        .stdout(predicate::str::contains("HEALTHY"));
}

#[test]
fn demo_json_reports_every_step() {
    let out = cachectl().args(["--json", "demo"]).assert().success();
    let v = json_of(&out.get_output().stdout);
    assert_eq!(v["backend"], "memory");
    assert_eq!(v["concurrent_updates"]["present"], 40);
    assert_eq!(v["single_flight"]["loads"], 1);
    assert_eq!(v["rotation"]["old_token_works"], false);
    assert_eq!(v["invalidation"]["escaped_star_deleted"], 0);
    assert_eq!(v["health"]["healthy"], true);
    assert_eq!(v["session_created"]["token_in_keys"], 0);
}

#[test]
fn memory_health_stats_get_invalidate_sessions() {
    cachectl()
        .arg("health")
        .assert()
        .success()
        .stdout(predicate::str::contains("HEALTHY"));
    let stats = cachectl().args(["--json", "stats"]).assert().success();
    let v = json_of(&stats.get_output().stdout);
    assert_eq!(v["backend"], "memory");
    assert_eq!(v["keys_per_family"]["user"], 0);
    cachectl()
        .args(["get", "user:1"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("not found"));
    cachectl()
        .args(["invalidate", "--family", "user", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 key(s) match"));
    cachectl()
        .args(["sessions", "list", "--user", "ada"])
        .assert()
        .success()
        .stdout(predicate::str::contains("0 live session(s)"));
    cachectl()
        .args(["sessions", "cleanup"])
        .assert()
        .success()
        .stdout(predicate::str::contains("cleanup:"));
    cachectl()
        .args(["sessions", "revoke", "--user", "ada"])
        .assert()
        .success()
        .stdout(predicate::str::contains("revoked 0"));
}

#[test]
fn usage_and_input_errors_are_one_line_with_exit_codes() {
    // Missing required arguments: clap's usage error, exit 2.
    cachectl().args(["sessions", "revoke"]).assert().code(2);
    // An unknown family: exit 1 with a readable line naming the valid ones.
    cachectl()
        .args(["invalidate", "--family", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown cache family"))
        .stderr(predicate::str::contains("user_keywords"));
    // A malformed handle is rejected before any store call.
    cachectl()
        .args(["sessions", "revoke", "--handle", "not*a*handle"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("cachectl: error:"));
    // A malformed URL is a configuration error naming the setting, exit 5.
    cachectl()
        .args(["--redis", "http://localhost", "stats"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("REDIS_URL"));
}

// ---- Redis --------------------------------------------------------------------------------

#[test]
fn health_fails_fast_with_a_clear_message_on_a_dead_port() {
    // Reserve a free port, then close it: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let started = Instant::now();
    let out = cachectl()
        .args(["--redis", &format!("redis://127.0.0.1:{port}/0"), "health"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("UNHEALTHY"))
        .stdout(predicate::str::contains("nothing listens"));
    let elapsed = started.elapsed();
    // Generous bound: the point is "no hang", not a latency target.
    assert!(
        elapsed < Duration::from_secs(15),
        "health took {elapsed:?}: {:?}",
        out.get_output()
    );
    // JSON mode carries the same verdict.
    let out = cachectl()
        .args([
            "--json",
            "--redis",
            &format!("redis://127.0.0.1:{port}/0"),
            "health",
        ])
        .assert()
        .code(3);
    let v = json_of(&out.get_output().stdout);
    assert_eq!(v["healthy"], false);
}

#[test]
fn every_command_on_a_real_redis() {
    let server = RedisServer::start();
    let url = server.url();
    let prefix = "clitest";
    let config = redis_config(&server, prefix);

    // Seed data through the library, as a service would.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let handles = rt.block_on(async {
        let store = cachekit::connect(&config).await.expect("connect");
        let cache = cachekit::cache_manager(store.clone(), &config).expect("cache");
        for i in 0..30 {
            cache
                .keyword_posts()
                .set(&format!("kw{i}"), &serde_json::json!([i]))
                .await
                .expect("cache posts");
        }
        cache
            .user()
            .set("42", &serde_json::json!({"name": "ada"}))
            .await
            .expect("cache user");
        cache
            .user()
            .set("*", &serde_json::json!({"name": "star"}))
            .await
            .expect("cache user *");
        let sessions = cachekit::session_manager(store.clone(), &config).expect("sessions");
        let mut handles = Vec::new();
        for _ in 0..3 {
            let s = sessions
                .create("ada", CreateOptions::new())
                .await
                .expect("create session");
            handles.push(s.session.handle.to_string());
        }
        handles
    });
    let base = |args: &[&str]| {
        let mut c = cachectl();
        c.args(["--redis", &url, "--prefix", prefix]).args(args);
        c
    };

    base(&["health"])
        .assert()
        .success()
        .stdout(predicate::str::contains("HEALTHY"))
        .stdout(predicate::str::contains("server 7").or(predicate::str::contains("server ")));

    let v = json_of(
        &base(&["--json", "stats"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(v["keys_per_family"]["keyword_posts"], 30);
    assert_eq!(v["keys_per_family"]["user"], 2);
    assert_eq!(v["keys_per_family"]["session"], 3);
    assert!(v["server"]["version"].as_str().is_some(), "{v}");
    assert!(v["server"]["pool"]["max_open"].as_u64().is_some(), "{v}");

    let v = json_of(
        &base(&["--json", "get", "user:42"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(v["value"]["name"], "ada");
    assert!(v["ttl_ms"].as_u64().is_some_and(|ms| ms > 3_000_000), "{v}");
    base(&["get", "user:42"])
        .assert()
        .success()
        .stdout(predicate::str::contains("expires in"));

    // Sessions: list shows handles (never tokens), revoke by handle, then by user.
    let v = json_of(
        &base(&["--json", "sessions", "list", "--user", "ada"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    let listed: Vec<String> = v["sessions"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["handle"].as_str().expect("handle").to_string())
        .collect();
    assert_eq!(listed.len(), 3);
    for h in &handles {
        assert!(listed.contains(h));
    }
    base(&["sessions", "revoke", "--handle", &handles[0]])
        .assert()
        .success()
        .stdout(predicate::str::contains("revoked 1"));
    base(&["sessions", "revoke", "--user", "ada"])
        .assert()
        .success()
        .stdout(predicate::str::contains("revoked 2"));
    base(&["sessions", "cleanup"]).assert().success();

    // A session record that does not decode is skipped, left in place, and reported.
    let corrupt = rt.block_on(async {
        let store = cachekit::connect(&config).await.expect("connect");
        let sessions = cachekit::session_manager(store.clone(), &config).expect("sessions");
        let s = sessions
            .create("bob", CreateOptions::new())
            .await
            .expect("create session");
        let key = cachekit::sessions::keys::session_key(&s.session.handle).expect("key");
        store
            .set(
                &key,
                b"not a session",
                cachekit::store::SetOptions::default(),
            )
            .await
            .expect("corrupt the record");
        key
    });
    let v = json_of(
        &base(&["--json", "sessions", "cleanup"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(v["undecodable_records_skipped"], 1, "{v}");
    base(&["sessions", "cleanup"])
        .assert()
        .success()
        .stdout(predicate::str::contains("skipped 1 undecodable record(s)"));
    let left = rt.block_on(async {
        let store = cachekit::connect(&config).await.expect("connect");
        store.get(&corrupt).await.expect("read")
    });
    assert_eq!(
        left.as_deref(),
        Some(&b"not a session"[..]),
        "left in place"
    );

    // Invalidate: an escaped id deletes only that id; dry run counts; a family run deletes all.
    base(&["invalidate", "--family", "user", "--id", "*"])
        .assert()
        .success()
        .stdout(predicate::str::contains("deleted 1 key(s)"));
    base(&["get", "user:42"]).assert().success();
    base(&["invalidate", "--family", "keyword_posts", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains("30 key(s) match"));
    let v = json_of(
        &base(&["--json", "invalidate", "--pattern", "post:keyword:*"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(v["deleted"], 30);

    // A raw pattern never deletes session keys: `*` clears the cache, not the logins.
    let session_keys = || {
        let mut keys: Vec<String> = server
            .cli(["--scan", "--pattern", "clitest:session*"])
            .lines()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys
    };
    let sessions_before = session_keys();
    assert!(!sessions_before.is_empty(), "the test has sessions");
    let v = json_of(
        &base(&["--json", "invalidate", "--pattern", "*", "--dry-run"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    let left = sessions_before.len() as u64;
    assert_eq!(v["session_keys_left"], left, "{v}");
    base(&["invalidate", "--pattern", "*"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "{left} session key(s) left alone"
        )));
    assert_eq!(
        session_keys(),
        sessions_before,
        "every session key is still there"
    );
    base(&["get", "user:42"]).assert().failure();

    // The demo on Redis cleans up after itself.
    base(&["demo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Redis at"))
        .stdout(predicate::str::contains("Cleaned up"));
    // The demo's prefix is a scope of ours (`clitest.cachectl-demo-<pid>`), which our store does
    // not see: look at the raw keys.
    assert_eq!(
        server
            .cli(["--scan", "--pattern", "*cachectl-demo*"])
            .trim(),
        "",
        "the demo left keys behind"
    );

    // Wrong password: a readable auth error, exit 4.
    let locked = RedisServer::builder().password("s3cret").start();
    cachectl()
        .args([
            "--redis",
            &format!("redis://:wrong@127.0.0.1:{}/0", locked.port()),
            "stats",
        ])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("auth").or(predicate::str::contains("password")));
}

/// The id of each family used by the invalidation test (metrics ids are `TYPE:DATE`).
fn sample_id(family: Family) -> &'static str {
    match family {
        Family::Metrics => "api:2026-11-01",
        _ => "42",
    }
}

#[test]
fn invalidate_removes_the_live_key_of_every_family_on_redis_before_and_after_a_version_bump() {
    let server = RedisServer::start();
    let url = server.url();
    let prefix = "inval";
    let config = redis_config(&server, prefix);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = rt.block_on(cachekit::connect(&config)).expect("connect");
    // The service whose cache an operator invalidates.
    let service = cachekit::cache_manager(store.clone(), &config).expect("cache");
    let base = |args: &[&str]| {
        let mut c = cachectl();
        c.args(["--redis", &url, "--prefix", prefix]).args(args);
        c
    };
    let exists = |key: &str| server.cli(["EXISTS", &format!("{prefix}:{key}")]) == "1";

    for family in Family::ALL {
        let id = sample_id(family);
        for version in [0, 1] {
            let live = rt
                .block_on(async {
                    let handle = service.family(family);
                    if version == 1 {
                        assert_eq!(handle.bump_version().await?, 1);
                    }
                    handle.set(id, &"cached").await?;
                    handle.key_of(id).await
                })
                .expect("seed");
            assert!(exists(&live), "{live}");

            // The text output names the live key...
            base(&[
                "invalidate",
                "--family",
                family.name(),
                "--id",
                id,
                "--dry-run",
            ])
            .assert()
            .success()
            .stdout(predicate::str::contains("1 key(s) match"))
            .stdout(predicate::str::contains(live.as_str()));
            // ...and the deletion removes it.
            let v = json_of(
                &base(&[
                    "--json",
                    "invalidate",
                    "--family",
                    family.name(),
                    "--id",
                    id,
                ])
                .assert()
                .success()
                .get_output()
                .stdout,
            );
            assert_eq!(v["deleted"], 1, "{family} v{version}: {v}");
            assert_eq!(v["key"], live.as_str());
            assert!(!exists(&live), "{family} v{version}: {live} survived");
            let cached: Option<String> = rt.block_on(service.family(family).get(id)).expect("get");
            assert_eq!(cached, None, "{family} v{version}");
        }
    }

    // `get --family --id` reads the live key too.
    rt.block_on(service.metrics().set("api:2026-11-02", &"today"))
        .expect("seed");
    let v = json_of(
        &base(&[
            "--json",
            "get",
            "--family",
            "metrics",
            "--id",
            "api:2026-11-02",
        ])
        .assert()
        .success()
        .get_output()
        .stdout,
    );
    assert_eq!(v["key"], "metrics:v1:api:2026-11-02");
    assert_eq!(v["value"], "today");

    // Session keys are not the cache's to delete.
    for family in ["session", "session_index"] {
        base(&["invalidate", "--family", family, "--id", "x"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("cachectl sessions"));
    }
}
