//! `RedisStore` against a real `redis-server` spawned by the test: every `Store` method, the key
//! prefix, batches, scripts, health and stats.

mod common;

use std::time::Duration;

use cache_core::{Bytes, CasOutcome, Error, Expiry, KeyTtl, Profile, SetOptions, Store, StoreExt};
use cache_redis::{PoolConfig, RedisConfig, RedisStore};
use common::{config, dbsize, store};
use test_redis::RedisServer;

const MIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_key_carries_the_prefix_on_the_server() {
    let server = RedisServer::start();
    let s = store(&server).await;
    assert_eq!(s.prefix(), "t");
    assert_eq!(s.backend_name(), "redis");
    assert!(s.set("user:1", b"ada", SetOptions::new()).await.unwrap());
    assert_eq!(server.cli(["GET", "t:user:1"]), "ada");
    assert_eq!(server.cli(["EXISTS", "user:1"]), "0");
    // A key outside the prefix is invisible to the store.
    server.cli(["SET", "user:1", "outside"]);
    assert_eq!(s.get("user:1").await.unwrap().as_deref(), Some(&b"ada"[..]));
    assert_eq!(s.full_key("a").unwrap(), "t:a");
}

#[tokio::test]
async fn set_conditions_and_expiry() {
    let server = RedisServer::start();
    let s = store(&server).await;
    assert!(s.set("k", b"1", SetOptions::ttl(MIN)).await.unwrap());
    assert!(!s
        .set("k", b"2", SetOptions::new().if_absent())
        .await
        .unwrap());
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert!(!s
        .set("nope", b"x", SetOptions::new().if_present())
        .await
        .unwrap());
    assert!(!s.exists("nope").await.unwrap());
    // KEEPTTL keeps the TTL, a plain SET removes it.
    assert!(s
        .set("k", b"3", SetOptions::new().if_present().keep_ttl())
        .await
        .unwrap());
    assert!(
        matches!(s.ttl("k").await.unwrap(), KeyTtl::ExpiresIn(d) if d <= MIN && d > Duration::from_secs(50))
    );
    assert!(s.set("k", b"4", SetOptions::new()).await.unwrap());
    assert_eq!(s.ttl("k").await.unwrap(), KeyTtl::Persistent);
    assert_eq!(s.ttl("missing").await.unwrap(), KeyTtl::Missing);
    // Binary-safe and empty values.
    let bin = [0u8, 255, 13, 10, 0];
    s.set("bin", &bin, SetOptions::new()).await.unwrap();
    assert_eq!(s.get("bin").await.unwrap().as_deref(), Some(&bin[..]));
    s.set("empty", b"", SetOptions::new()).await.unwrap();
    assert_eq!(s.get("empty").await.unwrap(), Some(Bytes::new()));
    // Invalid input is refused before anything is sent.
    assert!(matches!(
        s.set("", b"x", SetOptions::new()).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        s.set("z", b"x", SetOptions::ttl(Duration::ZERO)).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn a_short_ttl_expires_on_the_server() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.set("short", b"x", SetOptions::ttl(Duration::from_millis(5)))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while s.get("short").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "key did not expire");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(s.ttl("short").await.unwrap(), KeyTtl::Missing);
}

#[tokio::test]
async fn batches_are_ordered_and_refuse_keep_ttl() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.set_many(&[("a", b"1"), ("b", b"2"), ("c", b"3")], Expiry::In(MIN))
        .await
        .unwrap();
    assert!(s.ttl("b").await.unwrap().remaining().is_some());
    let got = s.get_many(&["c", "missing", "a", "c"]).await.unwrap();
    assert_eq!(
        got,
        vec![
            Some(Bytes::from_static(b"3")),
            None,
            Some(Bytes::from_static(b"1")),
            Some(Bytes::from_static(b"3"))
        ]
    );
    assert!(s.get_many(&[]).await.unwrap().is_empty());
    s.set_many(&[], Expiry::Never).await.unwrap();
    assert!(matches!(
        s.set_many(&[("a", b"1")], Expiry::Keep).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(s.delete(&["a", "b", "missing"]).await.unwrap(), 2);
    assert_eq!(s.delete(&[]).await.unwrap(), 0);
    assert_eq!(
        s.get_many(&["a", "b", "c"]).await.unwrap(),
        vec![None, None, Some(Bytes::from_static(b"3"))]
    );
}

#[tokio::test]
async fn ttl_operations() {
    let server = RedisServer::start();
    let s = store(&server).await;
    assert!(!s.expire("missing", MIN).await.unwrap());
    assert!(!s.persist("missing").await.unwrap());
    assert_eq!(s.get_ex("missing", MIN).await.unwrap(), None);
    assert!(!s.exists("missing").await.unwrap(), "GETEX must not create");
    s.set("k", b"v", SetOptions::new()).await.unwrap();
    assert!(!s.persist("k").await.unwrap(), "no TTL to remove");
    assert!(s.expire("k", MIN).await.unwrap());
    assert!(s.persist("k").await.unwrap());
    assert_eq!(s.ttl("k").await.unwrap(), KeyTtl::Persistent);
    assert_eq!(
        s.get_ex("k", Duration::from_secs(30))
            .await
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );
    let ttl = s.ttl("k").await.unwrap().remaining().unwrap();
    assert!(
        ttl <= Duration::from_secs(30) && ttl > Duration::from_secs(25),
        "{ttl:?}"
    );
    // Sub-millisecond TTLs round up, never down to zero.
    assert!(s.expire("k", Duration::from_micros(1500)).await.unwrap());
    assert!(
        matches!(s.ttl("k").await.unwrap(), KeyTtl::ExpiresIn(d) if d <= Duration::from_millis(2))
            || !s.exists("k").await.unwrap()
    );
}

#[tokio::test]
async fn incr_by_counts_and_sets_ttl_only_on_create() {
    let server = RedisServer::start();
    let s = store(&server).await;
    assert_eq!(s.incr_by("n", 5, Some(MIN)).await.unwrap(), 5);
    assert!(s.ttl("n").await.unwrap().remaining().is_some());
    s.persist("n").await.unwrap();
    assert_eq!(s.incr_by("n", -7, Some(MIN)).await.unwrap(), -2);
    assert_eq!(
        s.ttl("n").await.unwrap(),
        KeyTtl::Persistent,
        "existing key keeps no TTL"
    );
    assert_eq!(s.incr_by("plain", 1, None).await.unwrap(), 1);
    assert_eq!(s.ttl("plain").await.unwrap(), KeyTtl::Persistent);

    s.set("text", b"abc", SetOptions::new()).await.unwrap();
    for ttl in [None, Some(MIN)] {
        let e = s.incr_by("text", 1, ttl).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    }
    s.set("big", i64::MAX.to_string().as_bytes(), SetOptions::new())
        .await
        .unwrap();
    for ttl in [None, Some(MIN)] {
        let e = s.incr_by("big", 1, ttl).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    }
    assert_eq!(
        s.get("big").await.unwrap().unwrap(),
        i64::MAX.to_string().into_bytes()
    );
    s.zadd("zs", "m", 1.0).await.unwrap();
    for ttl in [None, Some(MIN)] {
        let e = s.incr_by("zs", 1, ttl).await.unwrap_err();
        assert!(
            matches!(&e, Error::WrongType { key, .. } if key == "zs"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn compare_and_swap_is_atomic_and_reports_conflicts() {
    let server = RedisServer::start();
    let s = store(&server).await;
    assert_eq!(
        s.compare_and_swap("c", None, Some(b"v1"), Expiry::In(MIN))
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert!(s.ttl("c").await.unwrap().remaining().is_some());
    assert_eq!(
        s.compare_and_swap("c", None, Some(b"x"), Expiry::Never)
            .await
            .unwrap(),
        CasOutcome::Conflict {
            current: Some(Bytes::from_static(b"v1"))
        }
    );
    assert_eq!(
        s.compare_and_swap("c", Some(b"v1"), Some(b"v2"), Expiry::Keep)
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert!(
        s.ttl("c").await.unwrap().remaining().is_some(),
        "KEEPTTL kept the TTL"
    );
    assert_eq!(
        s.compare_and_swap("c", Some(b"v2"), Some(b"v3"), Expiry::Never)
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(s.ttl("c").await.unwrap(), KeyTtl::Persistent);
    assert_eq!(
        s.compare_and_swap("missing", Some(b"v"), Some(b"x"), Expiry::Never)
            .await
            .unwrap(),
        CasOutcome::Conflict { current: None }
    );
    assert!(!s.exists("missing").await.unwrap());
    // Empty values compare as values, not as "missing".
    s.set("e", b"", SetOptions::new()).await.unwrap();
    assert_eq!(
        s.compare_and_swap("e", None, Some(b"x"), Expiry::Never)
            .await
            .unwrap(),
        CasOutcome::Conflict {
            current: Some(Bytes::new())
        }
    );
    assert_eq!(
        s.compare_and_swap("e", Some(b""), None, Expiry::Never)
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert!(!s.exists("e").await.unwrap());
    s.zadd("zs", "m", 1.0).await.unwrap();
    let e = s
        .compare_and_swap("zs", None, Some(b"x"), Expiry::Never)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::WrongType { .. }), "{e}");

    // Concurrent increments through CAS loops lose no update.
    s.set("ctr", b"0", SetOptions::new()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let mut cur = s.get("ctr").await.unwrap();
                loop {
                    let n: u64 = String::from_utf8(cur.clone().unwrap().to_vec())
                        .unwrap()
                        .parse()
                        .unwrap();
                    let next = (n + 1).to_string();
                    match s
                        .compare_and_swap(
                            "ctr",
                            cur.as_deref(),
                            Some(next.as_bytes()),
                            Expiry::Never,
                        )
                        .await
                        .unwrap()
                    {
                        CasOutcome::Swapped => break,
                        CasOutcome::Conflict { current } => cur = current,
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get("ctr").await.unwrap().as_deref(), Some(&b"200"[..]));
}

#[tokio::test]
async fn scan_stays_inside_the_prefix_and_escapes_it() {
    let server = RedisServer::start();
    let s = store(&server).await;
    for i in 0..120 {
        s.set(&format!("user:{i}"), b"x", SetOptions::new())
            .await
            .unwrap();
    }
    s.set("session:1", b"x", SetOptions::new()).await.unwrap();
    s.set("user:*", b"star", SetOptions::new()).await.unwrap();
    server.cli(["SET", "user:outside", "x"]);
    server.cli(["SET", "tt:user:1", "x"]);
    let users = s.scan_all("user:*", 10).await.unwrap();
    assert_eq!(users.len(), 121);
    assert!(users.iter().all(|k| k.starts_with("user:")));
    assert!(!users.contains(&"user:outside".to_owned()));
    // A literal glob character matches itself when escaped.
    let star = s
        .scan_all(&cache_core::keys::glob_escape("user:*"), 10)
        .await
        .unwrap();
    assert_eq!(star, vec!["user:*".to_owned()]);
    assert_eq!(s.count_matching("session:*", 1000).await.unwrap(), 1);
    assert!(matches!(
        s.scan("*", cache_core::ScanCursor::start(), 0).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn flush_prefix_deletes_only_the_prefix_and_refuses_none() {
    let server = RedisServer::start();
    let s = store(&server).await;
    for i in 0..1200 {
        s.set(&format!("k{i}"), b"x", SetOptions::new())
            .await
            .unwrap();
    }
    server.cli(["SET", "other:keep", "1"]);
    server.cli(["SET", "tx", "1"]);
    assert_eq!(s.flush_prefix().await.unwrap(), 1200);
    assert_eq!(dbsize(&server), 2);
    assert_eq!(server.cli(["GET", "other:keep"]), "1");

    let mut cfg = config(&server.url());
    cfg.key_prefix = String::new();
    let unprefixed = RedisStore::connect(&cfg).await.unwrap();
    assert!(matches!(
        unprefixed.flush_prefix().await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(dbsize(&server), 2);
    assert_eq!(
        unprefixed.get("tx").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
}

#[tokio::test]
async fn sorted_sets() {
    let server = RedisServer::start();
    let s = store(&server).await;
    assert!(s.zadd("z", "a", 1.0).await.unwrap());
    assert!(s.zadd("z", "b", 2.5).await.unwrap());
    assert!(s.zadd("z", "c", 3.0).await.unwrap());
    assert!(
        !s.zadd("z", "a", 0.5).await.unwrap(),
        "score update is not new"
    );
    assert_eq!(s.zcard("z").await.unwrap(), 3);
    assert_eq!(
        s.zrange_by_score("z", f64::NEG_INFINITY, f64::INFINITY, None)
            .await
            .unwrap(),
        vec![
            ("a".to_owned(), 0.5),
            ("b".to_owned(), 2.5),
            ("c".to_owned(), 3.0)
        ]
    );
    assert_eq!(
        s.zrange_by_score("z", 1.0, 3.0, Some(1)).await.unwrap(),
        vec![("b".to_owned(), 2.5)]
    );
    assert!(s
        .zrange_by_score("z", 0.0, 10.0, Some(0))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        s.zadd("z", "n", f64::NAN).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(s.zrem("z", &["a", "missing"]).await.unwrap(), 1);
    assert_eq!(s.zrem("z", &[]).await.unwrap(), 0);
    assert_eq!(s.zrem_range_by_score("z", 0.0, 2.9).await.unwrap(), 1);
    assert_eq!(
        s.zrem_range_by_score("z", f64::NEG_INFINITY, f64::INFINITY)
            .await
            .unwrap(),
        1
    );
    assert!(!s.exists("z").await.unwrap(), "an emptied set is deleted");
    assert_eq!(s.zcard("z").await.unwrap(), 0);
    assert!(s
        .zrange_by_score("missing", 0.0, 1.0, None)
        .await
        .unwrap()
        .is_empty());
    s.set("str", b"x", SetOptions::new()).await.unwrap();
    assert!(matches!(
        s.zadd("str", "m", 1.0).await,
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(s.zcard("str").await, Err(Error::WrongType { .. })));
    assert!(matches!(s.get("z2").await, Ok(None)));
    s.zadd("z2", "m", 1.0).await.unwrap();
    let e = s.get("z2").await.unwrap_err();
    assert!(
        matches!(&e, Error::WrongType { key, .. } if key == "z2"),
        "{e}"
    );
}

#[tokio::test]
async fn values_over_the_limit_are_refused_before_sending() {
    let server = RedisServer::start();
    let mut cfg = config(&server.url());
    cfg.max_value_bytes = 16;
    let s = RedisStore::connect(&cfg).await.unwrap();
    let big = [7u8; 17];
    assert!(matches!(
        s.set("k", &big, SetOptions::new()).await,
        Err(Error::Capacity(_))
    ));
    assert!(matches!(
        s.set_many(&[("a", b"ok"), ("k", &big)], Expiry::Never)
            .await,
        Err(Error::Capacity(_))
    ));
    assert!(matches!(
        s.compare_and_swap("k", None, Some(&big), Expiry::Never)
            .await,
        Err(Error::Capacity(_))
    ));
    assert_eq!(dbsize(&server), 0, "nothing was written");
    assert!(s.set("k", &[7u8; 16], SetOptions::new()).await.unwrap());
}

#[tokio::test]
async fn database_comes_from_the_url_and_the_override_wins() {
    let server = RedisServer::start();
    let s = RedisStore::connect(&config(&format!("{}/2", server.url())))
        .await
        .unwrap();
    assert_eq!(s.database(), 2);
    s.set("k", b"in2", SetOptions::new()).await.unwrap();
    assert_eq!(server.cli(["-n", "2", "GET", "t:k"]), "in2");

    let mut cfg = config(&format!("{}/2", server.url()));
    cfg.database = Some(5);
    let s = RedisStore::connect(&cfg).await.unwrap();
    assert_eq!(s.database(), 5);
    s.set("k", b"in5", SetOptions::new()).await.unwrap();
    assert_eq!(server.cli(["-n", "5", "GET", "t:k"]), "in5");
    assert_eq!(dbsize(&server), 0);

    cfg.database = Some(999);
    let e = RedisStore::connect(&cfg).await.unwrap_err();
    assert!(
        matches!(&e, Error::Config { setting, .. } if setting == "REDIS_DB"),
        "{e}"
    );
}

#[tokio::test]
async fn acl_user_and_password_from_the_url() {
    let server = RedisServer::start();
    server.cli([
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">app-secret",
        "~t:*",
        "+@all",
    ]);
    let url = format!("redis://app:app-secret@{}", server.addr());
    let s = RedisStore::connect(&config(&url)).await.unwrap();
    s.set("k", b"v", SetOptions::new()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    // The ACL allows only keys under t:*: a store with another prefix is refused with Auth.
    let mut cfg = config(&url);
    cfg.key_prefix = "other".into();
    let other = RedisStore::connect(&cfg).await.unwrap();
    let e = other.set("k", b"v", SetOptions::new()).await.unwrap_err();
    assert!(matches!(e, Error::Auth(_)), "{e}");
}

#[tokio::test]
async fn many_concurrent_commands_share_a_few_connections() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let mut tasks = Vec::new();
    for t in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let k = format!("c:{t}:{i}");
                s.set(&k, k.as_bytes(), SetOptions::ttl(MIN)).await.unwrap();
                assert_eq!(s.get(&k).await.unwrap().unwrap(), k.as_bytes());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = s.stats().await.unwrap().unwrap();
    let pool = stats.pool.unwrap();
    assert_eq!(pool.open, s.shared_connections() as u64, "{pool:?}");
    assert_eq!(pool.in_use, s.shared_connections() as u64);
    assert_eq!(pool.max_open, 8);
    assert_eq!(pool.timeouts, 0);
}

#[tokio::test]
async fn the_shared_connection_count_comes_from_the_config() {
    let server = RedisServer::start();
    let env = [
        ("REDIS_URL", server.url()),
        ("REDIS_SHARED_CONNECTIONS", "3".to_owned()),
    ];
    let cfg = RedisConfig::from_lookup(Profile::Production, |k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let s = RedisStore::connect(&cfg).await.unwrap();
    assert_eq!(s.shared_connections(), 3);
    // Every slot is filled (the first at connect, the others by their first commands).
    for i in 0..6 {
        s.set(&format!("k{i}"), b"v", SetOptions::ttl(MIN))
            .await
            .unwrap();
    }
    assert_eq!(s.stats().await.unwrap().unwrap().pool.unwrap().open, 3);

    // More than the pool may open is capped to the pool size.
    let capped = config(&server.url())
        .with_pool(PoolConfig::default().with_max_open(2))
        .with_shared_connections(5);
    let s = RedisStore::connect(&capped).await.unwrap();
    assert_eq!(s.shared_connections(), 2);
}

#[tokio::test]
async fn stats_parse_a_live_info() {
    let server = RedisServer::start();
    let s = store(&server).await;
    for i in 0..5 {
        s.set(&format!("k{i}"), b"x", SetOptions::new())
            .await
            .unwrap();
    }
    s.get("k1").await.unwrap();
    s.get("missing").await.unwrap();
    let stats = s.stats().await.unwrap().unwrap();
    assert_eq!(stats.backend, "redis");
    let version = server.cli(["INFO", "server"]);
    assert!(version.contains(&format!(
        "redis_version:{}",
        stats.version.as_deref().unwrap()
    )));
    assert!(stats.uptime_secs.is_some());
    assert!(stats.used_memory_bytes.unwrap() > 0);
    assert!(stats.peak_memory_bytes.unwrap() >= stats.used_memory_bytes.unwrap() / 2);
    assert!(stats.connected_clients.unwrap() >= 1);
    assert!(stats.ops_per_sec.is_some());
    assert!(stats.keyspace_hits.unwrap() >= 1);
    assert!(stats.keyspace_misses.unwrap() >= 1);
    assert!(stats.hit_ratio().is_some());
    assert_eq!(stats.expired_keys, Some(0));
    assert_eq!(stats.evicted_keys, Some(0));
    assert_eq!(stats.keys_per_db.get("db0"), Some(&5));
    assert!(stats.pool.as_ref().unwrap().open >= 1);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["backend"], "redis");
}

#[tokio::test]
async fn connectivity_reports_rtt_and_version() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let c = s.connectivity().await;
    assert!(c.reachable, "{c:?}");
    assert!(c.rtt_us.unwrap() < 5_000_000);
    assert_eq!(c.backend, "redis");
    assert!(c
        .server_version
        .as_deref()
        .unwrap()
        .starts_with(|ch: char| ch.is_ascii_digit()));
    assert_eq!(c.error, None);
    assert_eq!(s.target(), server.addr());
    assert!(s.ping().await.unwrap() < Duration::from_secs(5));
}

#[tokio::test]
async fn self_test_passes_and_leaves_no_keys() {
    let server = RedisServer::start();
    let s = store(&server).await;
    s.set("mine", b"keep", SetOptions::new()).await.unwrap();
    server.cli(["SET", "foreign", "keep"]);
    let report = s.self_test().await;
    assert!(report.passed(), "{report:#?}");
    assert_eq!(report.scope, "__selftest");
    let names: Vec<_> = report.steps.iter().map(|st| st.name).collect();
    for family in [
        "lock",
        "ping",
        "set/get",
        "batch",
        "ttl",
        "incr_by",
        "compare_and_swap",
        "sorted_set",
        "scan",
        "cleanup",
    ] {
        assert!(names.contains(&family), "missing step {family}: {names:?}");
    }
    assert_eq!(report.leftover_keys, 0);
    assert_eq!(
        dbsize(&server),
        2,
        "only the two keys that were there before"
    );
    assert_eq!(s.get("mine").await.unwrap().as_deref(), Some(&b"keep"[..]));
}

#[tokio::test]
async fn self_test_cleans_up_even_when_a_step_fails() {
    // An ACL user that may not run EVALSHA/EVAL: the incr_by and compare_and_swap steps fail, the
    // others pass, and the cleanup still removes every key of the test prefix.
    let server = RedisServer::start();
    server.cli([
        "ACL",
        "SETUSER",
        "noscript",
        "on",
        ">pw",
        "~*",
        "+@all",
        "-@scripting",
    ]);
    let url = format!("redis://noscript:pw@{}", server.addr());
    let s = RedisStore::connect(&config(&url)).await.unwrap();
    let report = s.self_test().await;
    assert!(!report.passed());
    let failed: Vec<_> = report.failures().map(|st| st.name).collect();
    assert!(
        failed.contains(&"incr_by") && failed.contains(&"compare_and_swap"),
        "{report:#?}"
    );
    assert!(report.failures().all(|st| st.error.is_some()));
    let cleanup = report.steps.last().unwrap();
    assert_eq!(cleanup.name, "cleanup");
    assert!(cleanup.ok, "{report:#?}");
    assert_eq!(dbsize(&server), 0);
}

#[tokio::test]
async fn scoped_stores_share_connections_but_not_keys() {
    let server = RedisServer::start();
    let s = store(&server).await;
    let a = s.scoped("a").unwrap();
    a.set("k", b"1", SetOptions::new()).await.unwrap();
    assert_eq!(a.prefix(), "t.a");
    assert_eq!(server.cli(["GET", "t.a:k"]), "1");
    assert_eq!(s.get("k").await.unwrap(), None);
    // The parent does not see the scope's keys (a prefix is one name: see validate_prefix).
    assert!(s.scan_all("*", 100).await.unwrap().is_empty());
    assert_eq!(a.scoped("b").unwrap().prefix(), "t.a.b");
    for bad in ["bad*", "", "a:b", "a b"] {
        assert!(s.scoped(bad).is_err(), "{bad:?}");
    }
    assert_eq!(a.flush_prefix().await.unwrap(), 1);
}

#[tokio::test]
async fn works_as_a_trait_object() {
    let server = RedisServer::start();
    let s: std::sync::Arc<dyn Store> = std::sync::Arc::new(store(&server).await);
    s.set("k", b"v", SetOptions::new()).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert!(format!("{s:?}").contains("RedisStore"));
    assert!(!format!("{s:?}").contains("password"));
}

/// The future of a store call is allocated by every call (the `Store` trait boxes it), so its size
/// is part of every call's cost: kept under 1 KiB, the largest block glibc serves from its
/// per-thread cache (a `get` was 2.6 KiB when the retry loop, its timer and redis-rs's cluster
/// routing state sat inline in it; now they are boxed only when a call needs them).
#[tokio::test]
async fn the_futures_of_the_hot_calls_stay_small() {
    let server = RedisServer::start();
    let s: std::sync::Arc<dyn Store> = std::sync::Arc::new(store(&server).await);
    let sizes = [
        ("get", std::mem::size_of_val(&*s.get("k"))),
        ("get_ex", std::mem::size_of_val(&*s.get_ex("k", MIN))),
        (
            "set",
            std::mem::size_of_val(&*s.set("k", b"v", SetOptions::ttl(MIN))),
        ),
        ("delete", std::mem::size_of_val(&*s.delete(&["k"]))),
        (
            "compare_and_swap",
            std::mem::size_of_val(&*s.compare_and_swap(
                "k",
                Some(b"v"),
                Some(b"w"),
                Expiry::In(MIN),
            )),
        ),
    ];
    for (call, size) in sizes {
        assert!(size <= 1024, "the future of `{call}` is {size} bytes");
    }
    // The calls still work once polled (the sizes above came from futures never polled).
    s.set("k", b"v", SetOptions::ttl(MIN)).await.unwrap();
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}
