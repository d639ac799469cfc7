//! Output: readable text by default, one JSON document with `--json`; errors as one line on stderr.

use std::time::Duration;

use cachekit::store::BackendStats;
use cachekit::Session;
use indicatif::{ProgressBar, ProgressStyle};

/// Where and how results are printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Out {
    json: bool,
}

impl Out {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Prints a command's result: `value` with `--json`, `text` otherwise.
    pub(crate) fn report(&self, value: &serde_json::Value, text: &str) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }

    /// Prints a line of narration (text mode only).
    pub(crate) fn line(&self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    /// One readable error line on stderr (JSON on stdout as well with `--json`).
    pub(crate) fn error(&self, message: &str) {
        if self.json {
            println!("{}", serde_json::json!({"error": message}));
        }
        eprintln!("cachectl: error: {message}");
    }

    /// A progress bar on stderr, hidden with `--json` or when stderr is not a terminal.
    pub(crate) fn progress_bar(&self, message: &str) -> ProgressBar {
        if self.json {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix}: {pos} scanned, {msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

/// `1h 2m`, `3.2s`, `250ms`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
        match (h, m, s) {
            (0, m, 0) => format!("{m}m"),
            (0, m, s) => format!("{m}m {s}s"),
            (h, 0, _) => format!("{h}h"),
            (h, m, _) => format!("{h}h {m}m"),
        }
    }
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= MIB {
        format!("{:.1} MiB", n as f64 / MIB)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// The server part of `cachectl stats`.
pub(crate) fn stats_text(s: &BackendStats) -> String {
    let mut t = String::new();
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    if let Some(v) = &s.version {
        t.push_str(&format!("server version: {v}\n"));
    }
    if let Some(u) = s.uptime_secs {
        t.push_str(&format!(
            "uptime: {}\n",
            human_duration(Duration::from_secs(u))
        ));
    }
    if let Some(m) = s.used_memory_bytes {
        t.push_str(&format!(
            "memory: {} used, {} peak\n",
            bytes(m),
            s.peak_memory_bytes.map_or("-".into(), bytes)
        ));
    }
    t.push_str(&format!(
        "clients: {}  ops/sec: {}\n",
        opt(s.connected_clients),
        opt(s.ops_per_sec)
    ));
    t.push_str(&format!(
        "keyspace: {} hits, {} misses, hit ratio {}\n",
        opt(s.keyspace_hits),
        opt(s.keyspace_misses),
        s.hit_ratio()
            .map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0))
    ));
    t.push_str(&format!(
        "expired keys: {}  evicted keys: {}\n",
        opt(s.expired_keys),
        opt(s.evicted_keys)
    ));
    for (db, n) in &s.keys_per_db {
        t.push_str(&format!("keys in {db}: {n}\n"));
    }
    if let Some(p) = &s.pool {
        t.push_str(&format!(
            "pool: {} open / {} max, {} idle, {} in use, {} waits, {} timeouts\n",
            p.open, p.max_open, p.idle, p.in_use, p.waits, p.timeouts
        ));
    }
    for node in &s.nodes {
        t.push_str(&format!(
            "node {}: {} keys\n",
            node.backend,
            node.keys_per_db.values().sum::<u64>()
        ));
    }
    t
}

/// One line per session for `sessions list`.
pub(crate) fn session_line(s: &Session) -> String {
    format!(
        "{}  created {}  last access {}  expires {}  data {}",
        s.handle,
        s.created_at.to_rfc3339(),
        s.last_accessed.to_rfc3339(),
        s.expires_at().to_rfc3339(),
        serde_json::Value::Object((*s.data).clone())
    )
}

/// A session as JSON for `sessions list --json` (the handle, never a token).
pub(crate) fn session_json(s: &Session) -> serde_json::Value {
    serde_json::json!({
        "handle": s.handle.as_str(),
        "user_id": s.user_id,
        "created_at": s.created_at.to_rfc3339(),
        "last_accessed": s.last_accessed.to_rfc3339(),
        "expires_at": s.expires_at().to_rfc3339(),
        "absolute_deadline": s.absolute_deadline.to_rfc3339(),
        "idle_timeout_ms": s.idle_timeout.as_millis() as u64,
        "data": serde_json::Value::Object((*s.data).clone()),
    })
}
