//! Health for services and operators, on any backend, at a cost that does not grow with the
//! keyspace:
//!
//! - [`liveness`]: one `PING`. For a liveness probe.
//! - [`readiness`]: `PING`, one `GET` of a fixed key, the pool state. For a readiness probe or a
//!   public `/health` endpoint.
//! - [`check`]: the report behind `cachectl health`: readiness, then the server's version and key
//!   counts (one `INFO`), and with [`HealthCheck::SelfTest`] the operations self-test
//!   ([`self_test`]: about 40 commands on fixed keys, deleted by name). The self-test is an
//!   operator's explicit action (`cachectl health --self-test`), never a probe: do not expose it on
//!   an unauthenticated endpoint.
//!
//! See [`cache_core::health`] for what each check sends.

use serde::Serialize;

pub use cache_core::health::{
    connectivity, liveness, readiness, self_test, Connectivity, Liveness, Readiness,
    SelfTestReport, SelfTestStep, READINESS_KEY,
};
use cache_core::Store;

/// How far [`check`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HealthCheck {
    /// [`readiness`] plus the server version and key counts: three commands on one server.
    #[default]
    Readiness,
    /// All of the above plus the operations [`self_test`] (about 40 commands; writes and deletes a
    /// fixed set of keys). An operator's action, not a probe.
    SelfTest,
}

/// Everything `cachectl health` reports.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Ready, and (when it ran) every self-test step passed.
    pub healthy: bool,
    /// The readiness check: ping, read, pool state.
    pub readiness: Readiness,
    /// The server version, when the backend reports one.
    pub server_version: Option<String>,
    /// The operations self-test, when asked for ([`HealthCheck::SelfTest`]) and the backend was
    /// ready.
    pub self_test: Option<SelfTestReport>,
    /// Keys per database as the backend reports them (cheap: no scan).
    pub keys: std::collections::BTreeMap<String, u64>,
}

/// Runs [`readiness`], then (when ready) one [`Store::stats`] for the version and key counts, and
/// the [`self_test`] when `depth` asks for it. Never fails: an unreachable backend is an unhealthy
/// report.
pub async fn check(store: &dyn Store, depth: HealthCheck) -> HealthReport {
    let readiness = readiness(store).await;
    let mut report = HealthReport {
        healthy: readiness.ready,
        readiness,
        server_version: None,
        self_test: None,
        keys: Default::default(),
    };
    if !report.healthy {
        return report;
    }
    if let Ok(Some(stats)) = store.stats().await {
        report.server_version = stats.version;
        report.keys = stats.keys_per_db;
    }
    if depth == HealthCheck::SelfTest {
        let self_test = self_test(store).await;
        report.healthy = self_test.passed();
        report.self_test = Some(self_test);
    }
    report
}

impl HealthReport {
    /// A readable multi-line report; `backend` describes the backend (without credentials).
    pub fn to_text(&self, backend: &str) -> String {
        let r = &self.readiness;
        let mut t = format!(
            "{}: {backend}\n",
            if self.healthy { "HEALTHY" } else { "UNHEALTHY" }
        );
        let ms = |us: u64| us as f64 / 1000.0;
        match (r.ready, r.ping_us, r.read_us) {
            (true, Some(ping), Some(read)) => t.push_str(&format!(
                "  ready: ping {:.2} ms, read {:.2} ms{}\n",
                ms(ping),
                ms(read),
                self.server_version
                    .as_deref()
                    .map(|v| format!(", server {v}"))
                    .unwrap_or_default()
            )),
            _ => t.push_str(&format!(
                "  not ready ({} failed): {}\n",
                r.failed_check.unwrap_or("check"),
                r.error.as_deref().unwrap_or("unknown error")
            )),
        }
        if let Some(pool) = &r.pool {
            t.push_str(&format!(
                "  pool: {} open of {}, {} in use, {} idle\n",
                pool.open, pool.max_open, pool.in_use, pool.idle
            ));
        }
        if let Some(st) = &self.self_test {
            t.push_str("  self-test:\n");
            for s in &st.steps {
                t.push_str(&format!(
                    "    {:<18} {:>4}  {:>7.2} ms{}\n",
                    s.name,
                    if s.ok { "ok" } else { "FAIL" },
                    ms(s.micros),
                    s.error
                        .as_deref()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default()
                ));
            }
        }
        for (db, n) in &self.keys {
            t.push_str(&format!("  keys in {db}: {n}\n"));
        }
        t.trim_end().to_owned()
    }
}
