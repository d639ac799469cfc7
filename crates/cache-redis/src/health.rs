//! Health: the connectivity check and the operations self-test.

use std::time::{Duration, Instant};

use cache_core::{CasOutcome, Error, Expiry, KeyTtl, SetOptions, Store};
use serde::Serialize;

use crate::conn::Idempotency;
use crate::store::RedisStore;

/// The answer of [`RedisStore::connectivity`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Connectivity {
    /// The server address (never with credentials).
    pub target: String,
    /// Whether the server answered `PING`.
    pub reachable: bool,
    /// Round-trip time of the `PING`, when it answered.
    #[serde(serialize_with = "ser_opt_duration_us")]
    pub rtt: Option<Duration>,
    /// `redis_version` from `INFO server`, when it answered.
    pub server_version: Option<String>,
    /// The error class (`connection`, `auth`, `timeout`, ...: [`cache_core::ErrorKind::as_str`]),
    /// when it did not answer.
    pub error_kind: Option<&'static str>,
    /// The error in words, when it did not answer.
    pub error: Option<String>,
}

fn ser_opt_duration_us<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_micros() as u64)),
        None => s.serialize_none(),
    }
}

/// One step of [`RedisStore::self_test`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SelfTestStep {
    /// The operation family tested (`set/get`, `compare_and_swap`, ...).
    pub name: &'static str,
    /// Whether every check of the step held.
    pub ok: bool,
    /// How long the step took, in microseconds.
    pub micros: u64,
    /// What went wrong, when it failed.
    pub error: Option<String>,
}

/// The answer of [`RedisStore::self_test`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SelfTestReport {
    /// The key prefix the test used (removed afterwards).
    pub prefix: String,
    /// Every step, in order; the last one is the cleanup.
    pub steps: Vec<SelfTestStep>,
    /// Keys still present under the test prefix after the cleanup (0 when it worked).
    pub leftover_keys: u64,
}

impl SelfTestReport {
    /// Whether every step passed and nothing was left behind.
    pub fn passed(&self) -> bool {
        self.leftover_keys == 0 && self.steps.iter().all(|s| s.ok)
    }

    /// The failed steps.
    pub fn failures(&self) -> impl Iterator<Item = &SelfTestStep> {
        self.steps.iter().filter(|s| !s.ok)
    }
}

/// The key-space segment under which [`RedisStore::self_test`] works (`{prefix}:selftest-{nonce}`).
pub const SELF_TEST_SCOPE: &str = "selftest";

fn check(cond: bool, what: &str) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

fn e2s(e: Error) -> String {
    e.to_string()
}

impl RedisStore {
    /// Checks that the server answers: `PING` round-trip time and server version, or the error in
    /// detail. Never fails: an unreachable server is an answer, not an error.
    pub async fn connectivity(&self) -> Connectivity {
        let mut out = Connectivity {
            target: self.target().to_owned(),
            reachable: false,
            rtt: None,
            server_version: None,
            error_kind: None,
            error: None,
        };
        match self.ping().await {
            Ok(rtt) => {
                out.reachable = true;
                out.rtt = Some(rtt);
                let mut cmd = redis::cmd("INFO");
                cmd.arg("server");
                match self
                    .query::<String>("INFO", None, Idempotency::Repeatable, cmd)
                    .await
                {
                    Ok(text) => {
                        out.server_version = crate::info::fields(&text)
                            .get("redis_version")
                            .map(|v| v.trim().to_owned());
                    }
                    Err(e) => {
                        out.error_kind = Some(e.kind().as_str());
                        out.error = Some(format!("PING answered but INFO failed: {e}"));
                    }
                }
            }
            Err(e) => {
                out.error_kind = Some(e.kind().as_str());
                out.error = Some(e.to_string());
            }
        }
        out
    }

    /// Exercises every operation family (strings, batches, TTLs, counters, compare-and-swap, scan,
    /// sorted sets, ping) under a dedicated prefix `{prefix}:selftest-{nonce}`, and removes that
    /// prefix's keys afterwards, even when a step fails. Each step reports separately; nothing
    /// outside the test prefix is read or written.
    pub async fn self_test(&self) -> SelfTestReport {
        let nonce: u64 = rand::random();
        let scope = format!("{SELF_TEST_SCOPE}-{nonce:016x}");
        let mut report = SelfTestReport {
            prefix: String::new(),
            steps: Vec::new(),
            leftover_keys: 0,
        };
        let t = match self.scoped(&scope) {
            Ok(t) => t,
            Err(e) => {
                report.steps.push(SelfTestStep {
                    name: "setup",
                    ok: false,
                    micros: 0,
                    error: Some(e.to_string()),
                });
                return report;
            }
        };
        report.prefix = t.prefix().to_owned();
        let ttl = Duration::from_secs(60);

        macro_rules! step {
            ($name:expr, $body:expr) => {{
                let started = Instant::now();
                let result: Result<(), String> = async { $body }.await;
                report.steps.push(SelfTestStep {
                    name: $name,
                    ok: result.is_ok(),
                    micros: started.elapsed().as_micros() as u64,
                    error: result.err(),
                });
            }};
        }

        step!("ping", {
            t.ping().await.map_err(e2s)?;
            Ok(())
        });
        step!("set/get", {
            check(
                t.set("str", b"v1", SetOptions::ttl(ttl))
                    .await
                    .map_err(e2s)?,
                "SET did not write",
            )?;
            check(
                t.get("str").await.map_err(e2s)?.as_deref() == Some(&b"v1"[..]),
                "GET did not read back what SET wrote",
            )?;
            check(
                !t.set("str", b"v2", SetOptions::ttl(ttl).if_absent())
                    .await
                    .map_err(e2s)?,
                "SET NX overwrote an existing key",
            )?;
            check(t.exists("str").await.map_err(e2s)?, "EXISTS missed the key")?;
            Ok(())
        });
        step!("batch", {
            t.set_many(&[("b1", b"1"), ("b2", b"2")], Expiry::In(ttl))
                .await
                .map_err(e2s)?;
            let got = t.get_many(&["b1", "missing", "b2"]).await.map_err(e2s)?;
            check(
                got == vec![Some(b"1".to_vec()), None, Some(b"2".to_vec())],
                "MGET did not return the pipelined SETs in order",
            )?;
            check(
                t.delete(&["b1", "b2", "missing"]).await.map_err(e2s)? == 2,
                "UNLINK did not count 2 deleted keys",
            )?;
            Ok(())
        });
        step!("ttl", {
            t.set("t", b"x", SetOptions::new()).await.map_err(e2s)?;
            check(
                t.ttl("t").await.map_err(e2s)? == KeyTtl::Persistent,
                "PTTL of a key without expiry",
            )?;
            check(t.expire("t", ttl).await.map_err(e2s)?, "PEXPIRE")?;
            check(
                matches!(t.ttl("t").await.map_err(e2s)?, KeyTtl::ExpiresIn(d) if d <= ttl),
                "PTTL after PEXPIRE",
            )?;
            check(t.persist("t").await.map_err(e2s)?, "PERSIST")?;
            check(
                t.get_ex("t", ttl).await.map_err(e2s)?.as_deref() == Some(&b"x"[..]),
                "GETEX value",
            )?;
            check(
                t.ttl("t").await.map_err(e2s)?.remaining().is_some(),
                "GETEX did not set a TTL",
            )?;
            Ok(())
        });
        step!("incr_by", {
            check(
                t.incr_by("n", 5, Some(ttl)).await.map_err(e2s)? == 5,
                "INCRBY on a new key",
            )?;
            check(
                t.incr_by("n", -2, None).await.map_err(e2s)? == 3,
                "INCRBY on an existing key",
            )?;
            check(
                t.ttl("n").await.map_err(e2s)?.remaining().is_some(),
                "the counter did not get its TTL",
            )?;
            Ok(())
        });
        step!("compare_and_swap", {
            check(
                t.compare_and_swap("cas", None, Some(b"a"), Expiry::In(ttl))
                    .await
                    .map_err(e2s)?
                    == CasOutcome::Swapped,
                "CAS from missing",
            )?;
            check(
                t.compare_and_swap("cas", Some(b"zzz"), Some(b"b"), Expiry::Keep)
                    .await
                    .map_err(e2s)?
                    == CasOutcome::Conflict {
                        current: Some(b"a".to_vec()),
                    },
                "CAS conflict did not report the current value",
            )?;
            check(
                t.compare_and_swap("cas", Some(b"a"), None, Expiry::Never)
                    .await
                    .map_err(e2s)?
                    == CasOutcome::Swapped,
                "CAS delete",
            )?;
            Ok(())
        });
        step!("sorted_set", {
            check(t.zadd("z", "m1", 1.0).await.map_err(e2s)?, "ZADD new")?;
            t.zadd("z", "m2", 2.0).await.map_err(e2s)?;
            t.expire("z", ttl).await.map_err(e2s)?;
            let range = t
                .zrange_by_score("z", f64::NEG_INFINITY, f64::INFINITY, Some(10))
                .await
                .map_err(e2s)?;
            check(
                range == vec![("m1".to_owned(), 1.0), ("m2".to_owned(), 2.0)],
                "ZRANGEBYSCORE",
            )?;
            check(t.zcard("z").await.map_err(e2s)? == 2, "ZCARD")?;
            check(
                t.zrem_range_by_score("z", 0.0, 1.5).await.map_err(e2s)? == 1,
                "ZREMRANGEBYSCORE",
            )?;
            check(t.zrem("z", &["m2"]).await.map_err(e2s)? == 1, "ZREM")?;
            Ok(())
        });
        step!("scan", {
            t.set("scan:1", b"1", SetOptions::ttl(ttl))
                .await
                .map_err(e2s)?;
            let keys = cache_core::StoreExt::scan_all(&t, "scan:*", 100)
                .await
                .map_err(e2s)?;
            check(keys == vec!["scan:1".to_owned()], "SCAN under the prefix")?;
            Ok(())
        });

        // Cleanup always runs, whatever failed above.
        let started = Instant::now();
        let cleanup = t.flush_prefix().await;
        let leftover = cache_core::StoreExt::count_matching(&t, "*", 500).await;
        report.leftover_keys = leftover.as_ref().copied().unwrap_or(u64::MAX);
        report.steps.push(SelfTestStep {
            name: "cleanup",
            ok: cleanup.is_ok() && matches!(leftover, Ok(0)),
            micros: started.elapsed().as_micros() as u64,
            error: match (cleanup, leftover) {
                (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
                (Ok(_), Ok(n)) if n > 0 => Some(format!("{n} keys left under the test prefix")),
                _ => None,
            },
        });
        report
    }
}
