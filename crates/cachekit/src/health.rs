//! The health report behind `cachectl health`: connectivity, latency, the operations self-test and
//! key statistics, for any backend.

use serde::Serialize;

pub use cache_core::health::{connectivity, self_test, Connectivity, SelfTestReport, SelfTestStep};
use cache_core::Store;

/// Everything `cachectl health` reports.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Reachable and every self-test step passed.
    pub healthy: bool,
    /// Ping and version.
    pub connectivity: Connectivity,
    /// The operations self-test (absent when the backend was not reachable).
    pub self_test: Option<SelfTestReport>,
    /// Keys per database as the backend reports them (cheap: no scan).
    pub keys: std::collections::BTreeMap<String, u64>,
}

/// Runs the connectivity check, then (when reachable) the self-test and key statistics.
pub async fn check(store: &dyn Store) -> HealthReport {
    let connectivity = connectivity(store).await;
    if !connectivity.reachable {
        return HealthReport {
            healthy: false,
            connectivity,
            self_test: None,
            keys: Default::default(),
        };
    }
    let self_test = self_test(store).await;
    let keys = match store.stats().await {
        Ok(Some(stats)) => stats.keys_per_db,
        _ => Default::default(),
    };
    HealthReport {
        healthy: self_test.passed(),
        connectivity,
        self_test: Some(self_test),
        keys,
    }
}

impl HealthReport {
    /// A readable multi-line report.
    pub fn to_text(&self, backend: &str) -> String {
        let c = &self.connectivity;
        let mut t = format!(
            "{}: {backend}\n",
            if self.healthy { "HEALTHY" } else { "UNHEALTHY" }
        );
        match (c.reachable, c.rtt_us) {
            (true, Some(us)) => t.push_str(&format!(
                "  reachable, round trip {:.2} ms{}\n",
                us as f64 / 1000.0,
                c.server_version
                    .as_deref()
                    .map(|v| format!(", server {v}"))
                    .unwrap_or_default()
            )),
            _ => t.push_str(&format!(
                "  not reachable: {}\n",
                c.error.as_deref().unwrap_or("unknown error")
            )),
        }
        if let Some(st) = &self.self_test {
            t.push_str("  self-test:\n");
            for s in &st.steps {
                t.push_str(&format!(
                    "    {:<18} {:>4}  {:>7.2} ms{}\n",
                    s.name,
                    if s.ok { "ok" } else { "FAIL" },
                    s.micros as f64 / 1000.0,
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
