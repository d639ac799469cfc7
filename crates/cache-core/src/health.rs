//! Health checks that work on any [`Store`], each with a cost that does not grow with the keyspace:
//!
//! | check | what it sends | for |
//! |---|---|---|
//! | [`liveness`] | one `PING` | "is the process's store alive": a liveness probe, cheap enough to run every second |
//! | [`readiness`] | `PING`, one `GET` of the fixed key [`READINESS_KEY`], the pool state (no round trip) | "can it serve traffic": a readiness probe or a load balancer check |
//! | [`connectivity`] | `PING`, `INFO` | round trip and server version, for reports |
//! | [`self_test`] | about 40 commands on a fixed set of keys | an operator's explicit check that every operation family works (`cachectl health --self-test`); never a probe |
//!
//! None of them scans the keyspace: on a Redis holding a million keys each sends the same commands
//! as on an empty one (tested by counting the server's `INFO commandstats`). On a Redis Cluster,
//! `PING` goes to every primary and a batch `DEL` to each slot it touches, so the counts grow with
//! the number of nodes, never with the number of keys.
//!
//! # The self-test's keys
//!
//! The self-test writes only the keys named in [`SELF_TEST_KEYS`], under `__selftest:` inside the
//! store's prefix, and deletes them by name, never by pattern:
//!
//! - a run first takes the lock key `__selftest:lock` (`SET NX` with a 30 s TTL): a second operator's
//!   run at the same time is refused instead of deleting the first one's keys;
//! - it then deletes what a crashed earlier run may have left (the names are fixed, so a later run
//!   always cleans up after an earlier one);
//! - every string and counter key is created with a TTL of at most [`SELF_TEST_TTL`] in the command
//!   that creates it. The one exception is the sorted set: Redis cannot create a sorted set with a
//!   TTL, so it gets its TTL in the very next command; only a crash between those two commands could
//!   leave it without one, and the next run deletes it by name;
//! - the cleanup deletes every name, checks each one is gone (`leftover_keys`) and releases the lock
//!   only if it still holds it.
//!
//! The scan step reads one page of `SCAN` under the self-test's pattern: it checks that `SCAN` answers
//! and returns only matching keys, not that it finds a given key (that would need a walk of the whole
//! keyspace).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::{Bytes, CasOutcome, Expiry, KeyTtl, PoolStats, ScanCursor, SetOptions, Store};
use crate::Error;

/// The answer of [`liveness`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Liveness {
    /// The backend name (`memory`, `redis`, ...).
    pub backend: String,
    /// Whether the backend answered a ping.
    pub alive: bool,
    /// Round-trip time of the ping in microseconds, when it answered.
    pub rtt_us: Option<u64>,
    /// The error class ([`crate::ErrorKind::as_str`]), when it did not answer.
    pub error_kind: Option<&'static str>,
    /// The error in words, when it did not answer.
    pub error: Option<String>,
}

/// One `PING`. Never fails: an unreachable backend is an answer.
pub async fn liveness(store: &dyn Store) -> Liveness {
    let mut out = Liveness {
        backend: store.backend_name().to_owned(),
        alive: false,
        rtt_us: None,
        error_kind: None,
        error: None,
    };
    match store.ping().await {
        Ok(rtt) => {
            out.alive = true;
            out.rtt_us = Some(micros(rtt));
        }
        Err(e) => {
            out.error_kind = Some(e.kind().as_str());
            out.error = Some(e.to_string());
        }
    }
    out
}

/// The key [`readiness`] reads (relative to the store's prefix). Nothing writes it: the read checks
/// that keyed commands are served (prefix, ACL key permissions, the slot's node on a cluster), and its
/// answer is normally "absent".
pub const READINESS_KEY: &str = "__health:ready";

/// The answer of [`readiness`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Readiness {
    /// The backend name (`memory`, `redis`, ...).
    pub backend: String,
    /// Whether the backend answered the ping and the read.
    pub ready: bool,
    /// Round-trip time of the ping in microseconds, when it answered.
    pub ping_us: Option<u64>,
    /// Round-trip time of the read of [`READINESS_KEY`] in microseconds, when it answered.
    pub read_us: Option<u64>,
    /// The connection pool as the client sees it (no round trip), for pooled backends.
    pub pool: Option<PoolStats>,
    /// The check that failed (`ping` or `read`), when not ready.
    pub failed_check: Option<&'static str>,
    /// The error class ([`crate::ErrorKind::as_str`]), when not ready.
    pub error_kind: Option<&'static str>,
    /// The error in words, when not ready.
    pub error: Option<String>,
}

/// `PING`, then one `GET` of [`READINESS_KEY`], then the pool state (no round trip). Never fails:
/// a backend that cannot serve is an answer. Two commands whatever the keyspace size.
pub async fn readiness(store: &dyn Store) -> Readiness {
    let mut out = Readiness {
        backend: store.backend_name().to_owned(),
        ready: false,
        ping_us: None,
        read_us: None,
        pool: None,
        failed_check: None,
        error_kind: None,
        error: None,
    };
    let failed = |out: &mut Readiness, check: &'static str, e: Error| {
        out.failed_check = Some(check);
        out.error_kind = Some(e.kind().as_str());
        out.error = Some(e.to_string());
    };
    match store.ping().await {
        Ok(rtt) => out.ping_us = Some(micros(rtt)),
        Err(e) => {
            failed(&mut out, "ping", e);
            out.pool = store.pool_stats().await;
            return out;
        }
    }
    let started = Instant::now();
    match store.get(READINESS_KEY).await {
        Ok(_) => {
            out.read_us = Some(micros(started.elapsed()));
            out.ready = true;
        }
        Err(e) => failed(&mut out, "read", e),
    }
    out.pool = store.pool_stats().await;
    out
}

/// The answer of [`connectivity`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Connectivity {
    /// The backend name (`memory`, `redis`, ...).
    pub backend: String,
    /// Whether the backend answered a ping.
    pub reachable: bool,
    /// Round-trip time of the ping in microseconds, when it answered.
    pub rtt_us: Option<u64>,
    /// The server version, when the backend reports one.
    pub server_version: Option<String>,
    /// The error class ([`crate::ErrorKind::as_str`]), when it did not answer.
    pub error_kind: Option<&'static str>,
    /// The error in words, when it did not answer.
    pub error: Option<String>,
}

/// Pings the store and reads its version ([`Store::stats`]: `INFO` on Redis). Never fails: an
/// unreachable backend is an answer.
pub async fn connectivity(store: &dyn Store) -> Connectivity {
    let mut out = Connectivity {
        backend: store.backend_name().to_owned(),
        reachable: false,
        rtt_us: None,
        server_version: None,
        error_kind: None,
        error: None,
    };
    match store.ping().await {
        Ok(rtt) => {
            out.reachable = true;
            out.rtt_us = Some(micros(rtt));
            if let Ok(Some(stats)) = store.stats().await {
                out.server_version = stats.version;
            }
        }
        Err(e) => {
            out.error_kind = Some(e.kind().as_str());
            out.error = Some(e.to_string());
        }
    }
    out
}

/// One step of [`self_test`].
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

/// The answer of [`self_test`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SelfTestReport {
    /// The key space the test used, relative to the store prefix ([`SELF_TEST_SCOPE`]).
    pub scope: String,
    /// Every step, in order; the first takes the lock, the last one is the cleanup.
    pub steps: Vec<SelfTestStep>,
    /// Keys of [`SELF_TEST_KEYS`] still present after the cleanup (0 when it worked).
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

/// The first segment of the self-test's keys.
pub const SELF_TEST_SCOPE: &str = "__selftest";

/// The longest a self-test key lives (each key is written with this TTL or a shorter one), and how
/// long the lock of a crashed run blocks the next run.
pub const SELF_TEST_TTL: Duration = Duration::from_secs(30);

/// The lock key of the self-test (relative to the store prefix).
pub const SELF_TEST_LOCK: &str = "__selftest:lock";

/// Every data key the self-test may write (relative to the store prefix), besides
/// [`SELF_TEST_LOCK`]. The cleanup deletes exactly these names.
pub const SELF_TEST_KEYS: [&str; 8] = [
    "__selftest:str",
    "__selftest:b1",
    "__selftest:b2",
    "__selftest:ttl",
    "__selftest:counter",
    "__selftest:cas",
    "__selftest:zset",
    "__selftest:scan",
];

/// A key that no step writes: the batch read checks that a missing key reads as absent.
const MISSING: &str = "__selftest:missing";

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

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Exercises every operation family (strings, batches, TTLs, counters, compare-and-swap, sorted
/// sets, scan, ping) on the fixed keys [`SELF_TEST_KEYS`] and deletes them by name afterwards, even
/// when a step fails; see the [module documentation](self) for the lock and the TTL rules. Each step
/// reports separately. Never fails: failures are in the report. An operator's action, not a probe:
/// about 40 commands, whatever the keyspace size.
pub async fn self_test(t: &dyn Store) -> SelfTestReport {
    let mut report = SelfTestReport {
        scope: SELF_TEST_SCOPE.to_owned(),
        steps: Vec::new(),
        leftover_keys: 0,
    };
    let ttl = SELF_TEST_TTL;
    let [k_str, k_b1, k_b2, k_ttl, k_counter, k_cas, k_zset, k_scan] = SELF_TEST_KEYS;
    // Identifies this run's lock, so that the cleanup never releases another run's.
    let nonce = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{:016x}",
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        )
    };

    macro_rules! step {
        ($name:expr, $body:expr) => {{
            let started = Instant::now();
            let result: Result<(), String> = async { $body }.await;
            let ok = result.is_ok();
            report.steps.push(SelfTestStep {
                name: $name,
                ok,
                micros: micros(started.elapsed()),
                error: result.err(),
            });
            ok
        }};
    }

    let locked = step!("lock", {
        check(
            t.set(
                SELF_TEST_LOCK,
                nonce.as_bytes(),
                SetOptions::ttl(ttl).if_absent(),
            )
            .await
            .map_err(e2s)?,
            "another self-test is running on this store (or one stopped less than 30 s ago); \
             try again later",
        )?;
        // What a crashed earlier run may have left: the names are fixed, so delete them.
        t.delete(&SELF_TEST_KEYS).await.map_err(e2s)?;
        Ok(())
    });
    if !locked {
        // Another run holds the lock: its keys are not ours to delete.
        return report;
    }

    step!("ping", {
        t.ping().await.map_err(e2s)?;
        Ok(())
    });
    step!("set/get", {
        check(
            t.set(k_str, b"v1", SetOptions::ttl(ttl))
                .await
                .map_err(e2s)?,
            "SET did not write",
        )?;
        check(
            t.get(k_str).await.map_err(e2s)?.as_deref() == Some(&b"v1"[..]),
            "GET did not read back what SET wrote",
        )?;
        check(
            !t.set(k_str, b"v2", SetOptions::ttl(ttl).if_absent())
                .await
                .map_err(e2s)?,
            "SET NX overwrote an existing key",
        )?;
        check(t.exists(k_str).await.map_err(e2s)?, "EXISTS missed the key")?;
        Ok(())
    });
    step!("batch", {
        t.set_many(&[(k_b1, b"1"), (k_b2, b"2")], Expiry::In(ttl))
            .await
            .map_err(e2s)?;
        let got = t.get_many(&[k_b1, MISSING, k_b2]).await.map_err(e2s)?;
        check(
            got == [
                Some(Bytes::from_static(b"1")),
                None,
                Some(Bytes::from_static(b"2")),
            ],
            "batch get did not return the batch set in order",
        )?;
        check(
            t.delete(&[k_b1, k_b2, MISSING]).await.map_err(e2s)? == 2,
            "delete did not count 2 deleted keys",
        )?;
        Ok(())
    });
    step!("ttl", {
        // Created with a short TTL, then given the full one: every state of the key expires.
        let short = Duration::from_secs(5);
        t.set(k_ttl, b"x", SetOptions::ttl(short))
            .await
            .map_err(e2s)?;
        check(
            matches!(t.ttl(k_ttl).await.map_err(e2s)?, KeyTtl::ExpiresIn(d) if d <= short),
            "TTL of a key written with one",
        )?;
        check(t.expire(k_ttl, ttl).await.map_err(e2s)?, "EXPIRE")?;
        check(
            matches!(t.ttl(k_ttl).await.map_err(e2s)?, KeyTtl::ExpiresIn(d) if d > short && d <= ttl),
            "TTL after EXPIRE",
        )?;
        check(
            t.get_ex(k_ttl, short).await.map_err(e2s)?.as_deref() == Some(&b"x"[..]),
            "GETEX value",
        )?;
        check(
            matches!(t.ttl(k_ttl).await.map_err(e2s)?, KeyTtl::ExpiresIn(d) if d <= short),
            "GETEX did not set the TTL",
        )?;
        Ok(())
    });
    step!("incr_by", {
        check(
            t.incr_by(k_counter, 5, Some(ttl)).await.map_err(e2s)? == 5,
            "INCRBY on a new key",
        )?;
        check(
            t.incr_by(k_counter, -2, None).await.map_err(e2s)? == 3,
            "INCRBY on an existing key",
        )?;
        check(
            t.ttl(k_counter).await.map_err(e2s)?.remaining().is_some(),
            "the counter did not get its TTL",
        )?;
        Ok(())
    });
    step!("compare_and_swap", {
        check(
            t.compare_and_swap(k_cas, None, Some(b"a"), Expiry::In(ttl))
                .await
                .map_err(e2s)?
                == CasOutcome::Swapped,
            "CAS from missing",
        )?;
        check(
            t.compare_and_swap(k_cas, Some(b"zzz"), Some(b"b"), Expiry::Keep)
                .await
                .map_err(e2s)?
                == CasOutcome::Conflict {
                    current: Some(Bytes::from_static(b"a")),
                },
            "CAS conflict did not report the current value",
        )?;
        check(
            t.compare_and_swap(k_cas, Some(b"a"), None, Expiry::In(ttl))
                .await
                .map_err(e2s)?
                == CasOutcome::Swapped,
            "CAS delete",
        )?;
        Ok(())
    });
    step!("sorted_set", {
        check(t.zadd(k_zset, "m1", 1.0).await.map_err(e2s)?, "ZADD new")?;
        // Redis cannot create a sorted set with a TTL: it gets one in the very next command.
        check(t.expire(k_zset, ttl).await.map_err(e2s)?, "EXPIRE")?;
        t.zadd(k_zset, "m2", 2.0).await.map_err(e2s)?;
        let range = t
            .zrange_by_score(k_zset, f64::NEG_INFINITY, f64::INFINITY, Some(10))
            .await
            .map_err(e2s)?;
        check(
            range == vec![("m1".to_owned(), 1.0), ("m2".to_owned(), 2.0)],
            "ZRANGEBYSCORE",
        )?;
        check(t.zcard(k_zset).await.map_err(e2s)? == 2, "ZCARD")?;
        check(
            t.zrem_range_by_score(k_zset, 0.0, 1.5).await.map_err(e2s)? == 1,
            "ZREMRANGEBYSCORE",
        )?;
        check(t.zrem(k_zset, &["m2"]).await.map_err(e2s)? == 1, "ZREM")?;
        Ok(())
    });
    step!("scan", {
        t.set(k_scan, b"1", SetOptions::ttl(ttl))
            .await
            .map_err(e2s)?;
        // One page only: finding the key could take a walk of the whole keyspace.
        let page = t
            .scan(&format!("{SELF_TEST_SCOPE}:*"), ScanCursor::start(), 100)
            .await
            .map_err(e2s)?;
        check(
            page.keys
                .iter()
                .all(|k| k.starts_with(&format!("{SELF_TEST_SCOPE}:"))),
            "SCAN returned a key that does not match its pattern",
        )?;
        Ok(())
    });

    // Cleanup always runs, whatever failed above: every name, then a check of each.
    let started = Instant::now();
    let mut errors = Vec::new();
    if let Err(e) = t.delete(&SELF_TEST_KEYS).await {
        errors.push(e.to_string());
    }
    let mut leftover = 0u64;
    for key in SELF_TEST_KEYS {
        match t.exists(key).await {
            Ok(true) => leftover += 1,
            Ok(false) => {}
            Err(e) => {
                leftover += 1;
                errors.push(e.to_string());
            }
        }
    }
    // Released only if it is still ours (a run slower than the lock's TTL may have lost it).
    if t.compare_and_swap(SELF_TEST_LOCK, Some(nonce.as_bytes()), None, Expiry::Never)
        .await
        .is_err()
    {
        // Compare-and-swap is what failed (the compare_and_swap step says why, e.g. an ACL without
        // scripts): read and delete instead, which is wrong only if the lock expired and another run
        // took it in the moment between the two commands.
        match t.get(SELF_TEST_LOCK).await {
            Ok(Some(v)) if v == nonce.as_bytes() => {
                if let Err(e) = t.delete(&[SELF_TEST_LOCK]).await {
                    errors.push(e.to_string());
                }
            }
            Ok(_) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if leftover > 0 && errors.is_empty() {
        errors.push(format!("{leftover} self-test keys still present"));
    }
    report.leftover_keys = leftover;
    report.steps.push(SelfTestStep {
        name: "cleanup",
        ok: errors.is_empty(),
        micros: micros(started.elapsed()),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    });
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_self_test_key_is_under_the_scope() {
        for key in SELF_TEST_KEYS.iter().chain([&SELF_TEST_LOCK, &MISSING]) {
            assert!(key.starts_with(&format!("{SELF_TEST_SCOPE}:")), "{key}");
            crate::store::check_key(key).unwrap();
        }
        crate::store::check_key(READINESS_KEY).unwrap();
    }
}
