//! Health checks that work on any [`Store`]: connectivity and the operations self-test.
//!
//! The self-test exercises every operation family of the trait under a dedicated key space
//! (`__selftest-{nonce}:`, inside the store's own prefix) and deletes that key space afterwards, even
//! when a step fails. Nothing outside it is read or written.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::{CasOutcome, Expiry, KeyTtl, SetOptions, Store, StoreExt};
use crate::Error;

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

/// Pings the store and reads its version. Never fails: an unreachable backend is an answer.
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
            out.rtt_us = Some(rtt.as_micros() as u64);
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
    /// The key space the test used (relative to the store prefix; removed afterwards).
    pub scope: String,
    /// Every step, in order; the last one is the cleanup.
    pub steps: Vec<SelfTestStep>,
    /// Keys still present under the test scope after the cleanup (0 when it worked).
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

/// The first segment of the self-test key space.
pub const SELF_TEST_SCOPE: &str = "__selftest";

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

/// Exercises every operation family (strings, batches, TTLs, counters, compare-and-swap, scan, sorted
/// sets, ping) under `__selftest-{nonce}:` and removes those keys afterwards, even when a step fails.
/// Each step reports separately. Never fails: failures are in the report.
pub async fn self_test(t: &dyn Store) -> SelfTestReport {
    let nonce = {
        // Not security relevant: only needs to differ between concurrent self-tests.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id())
    };
    let scope = format!("{SELF_TEST_SCOPE}-{nonce:016x}");
    let k = |name: &str| format!("{scope}:{name}");
    let mut report = SelfTestReport {
        scope: scope.clone(),
        steps: Vec::new(),
        leftover_keys: 0,
    };
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
        let key = k("str");
        check(
            t.set(&key, b"v1", SetOptions::ttl(ttl))
                .await
                .map_err(e2s)?,
            "SET did not write",
        )?;
        check(
            t.get(&key).await.map_err(e2s)?.as_deref() == Some(&b"v1"[..]),
            "GET did not read back what SET wrote",
        )?;
        check(
            !t.set(&key, b"v2", SetOptions::ttl(ttl).if_absent())
                .await
                .map_err(e2s)?,
            "SET NX overwrote an existing key",
        )?;
        check(t.exists(&key).await.map_err(e2s)?, "EXISTS missed the key")?;
        Ok(())
    });
    step!("batch", {
        let (b1, b2, missing) = (k("b1"), k("b2"), k("missing"));
        t.set_many(&[(&b1, b"1"), (&b2, b"2")], Expiry::In(ttl))
            .await
            .map_err(e2s)?;
        let got = t.get_many(&[&b1, &missing, &b2]).await.map_err(e2s)?;
        check(
            got == vec![Some(b"1".to_vec()), None, Some(b"2".to_vec())],
            "batch get did not return the batch set in order",
        )?;
        check(
            t.delete(&[&b1, &b2, &missing]).await.map_err(e2s)? == 2,
            "delete did not count 2 deleted keys",
        )?;
        Ok(())
    });
    step!("ttl", {
        let key = k("t");
        t.set(&key, b"x", SetOptions::new()).await.map_err(e2s)?;
        check(
            t.ttl(&key).await.map_err(e2s)? == KeyTtl::Persistent,
            "TTL of a key without expiry",
        )?;
        check(t.expire(&key, ttl).await.map_err(e2s)?, "EXPIRE")?;
        check(
            matches!(t.ttl(&key).await.map_err(e2s)?, KeyTtl::ExpiresIn(d) if d <= ttl),
            "TTL after EXPIRE",
        )?;
        check(t.persist(&key).await.map_err(e2s)?, "PERSIST")?;
        check(
            t.get_ex(&key, ttl).await.map_err(e2s)?.as_deref() == Some(&b"x"[..]),
            "GETEX value",
        )?;
        check(
            t.ttl(&key).await.map_err(e2s)?.remaining().is_some(),
            "GETEX did not set a TTL",
        )?;
        Ok(())
    });
    step!("incr_by", {
        let key = k("n");
        check(
            t.incr_by(&key, 5, Some(ttl)).await.map_err(e2s)? == 5,
            "INCRBY on a new key",
        )?;
        check(
            t.incr_by(&key, -2, None).await.map_err(e2s)? == 3,
            "INCRBY on an existing key",
        )?;
        check(
            t.ttl(&key).await.map_err(e2s)?.remaining().is_some(),
            "the counter did not get its TTL",
        )?;
        Ok(())
    });
    step!("compare_and_swap", {
        let key = k("cas");
        check(
            t.compare_and_swap(&key, None, Some(b"a"), Expiry::In(ttl))
                .await
                .map_err(e2s)?
                == CasOutcome::Swapped,
            "CAS from missing",
        )?;
        check(
            t.compare_and_swap(&key, Some(b"zzz"), Some(b"b"), Expiry::Keep)
                .await
                .map_err(e2s)?
                == CasOutcome::Conflict {
                    current: Some(b"a".to_vec()),
                },
            "CAS conflict did not report the current value",
        )?;
        check(
            t.compare_and_swap(&key, Some(b"a"), None, Expiry::Never)
                .await
                .map_err(e2s)?
                == CasOutcome::Swapped,
            "CAS delete",
        )?;
        Ok(())
    });
    step!("sorted_set", {
        let key = k("z");
        check(t.zadd(&key, "m1", 1.0).await.map_err(e2s)?, "ZADD new")?;
        t.zadd(&key, "m2", 2.0).await.map_err(e2s)?;
        t.expire(&key, ttl).await.map_err(e2s)?;
        let range = t
            .zrange_by_score(&key, f64::NEG_INFINITY, f64::INFINITY, Some(10))
            .await
            .map_err(e2s)?;
        check(
            range == vec![("m1".to_owned(), 1.0), ("m2".to_owned(), 2.0)],
            "ZRANGEBYSCORE",
        )?;
        check(t.zcard(&key).await.map_err(e2s)? == 2, "ZCARD")?;
        check(
            t.zrem_range_by_score(&key, 0.0, 1.5).await.map_err(e2s)? == 1,
            "ZREMRANGEBYSCORE",
        )?;
        check(t.zrem(&key, &["m2"]).await.map_err(e2s)? == 1, "ZREM")?;
        Ok(())
    });
    step!("scan", {
        let key = k("scan:1");
        t.set(&key, b"1", SetOptions::ttl(ttl)).await.map_err(e2s)?;
        let keys = t
            .scan_all(&format!("{scope}:scan:*"), 100)
            .await
            .map_err(e2s)?;
        check(keys == vec![key.clone()], "SCAN under the test scope")?;
        Ok(())
    });

    // Cleanup always runs, whatever failed above.
    let started = Instant::now();
    let pattern = format!("{scope}:*");
    let cleanup = t.delete_matching(&pattern, 500, &|_, _| {}).await;
    let leftover = t.count_matching(&pattern, 500).await;
    report.leftover_keys = leftover.as_ref().copied().unwrap_or(u64::MAX);
    report.steps.push(SelfTestStep {
        name: "cleanup",
        ok: cleanup.is_ok() && matches!(leftover, Ok(0)),
        micros: started.elapsed().as_micros() as u64,
        error: match (cleanup, leftover) {
            (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
            (Ok(_), Ok(n)) if n > 0 => Some(format!("{n} keys left under the test scope")),
            _ => None,
        },
    });
    report
}
