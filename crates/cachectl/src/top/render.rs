//! The text frame of `cachectl top`: a snapshot as lines of fixed-width columns, cut to the
//! terminal's width. Pure (no terminal access), so it is tested on its own and also serves the
//! non-terminal text output.

use std::fmt::Write as _;

use cachekit::fleet::{FleetView, InstanceReport};

use super::server::{NodeView, ServerView};
use super::Snapshot;

/// The lines of one frame, each at most `width` characters.
pub(crate) fn frame(s: &Snapshot, width: usize, max_commands: usize) -> Vec<String> {
    let mut lines = vec![header(s), String::new()];
    match (&s.server, &s.server_error) {
        (Some(server), _) => server_lines(server, max_commands, &mut lines),
        (None, Some(e)) => lines.push(format!("SERVER  error: {e}")),
        (None, None) => lines.push("SERVER  (no Redis server: in-memory backend)".to_owned()),
    }
    lines.push(String::new());
    match (&s.fleet, &s.fleet_error) {
        (Some(fleet), _) => fleet_lines(fleet, s.at_ms, &mut lines),
        (None, Some(e)) => lines.push(format!("FLEET  error: {e}")),
        (None, None) => {}
    }
    lines
        .into_iter()
        .map(|l| l.chars().take(width).collect())
        .collect()
}

fn header(s: &Snapshot) -> String {
    let secs = s.at_ms / 1000;
    format!(
        "cachectl top - {} - prefix {:?} - every {} - {:02}:{:02}:{:02} UTC - q: quit",
        s.backend,
        s.prefix,
        duration_text(s.interval_ms),
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

fn server_lines(server: &ServerView, max_commands: usize, lines: &mut Vec<String>) {
    lines.push(format!(
        "{:<24} {:>9} {:>8} {:>8} {:>10} {:>10} {:>5} {:>8} {:>8} {:>8} {:>10}",
        "SERVER",
        "ops/s",
        "hit%now",
        "hit%all",
        "memory",
        "rss",
        "frag",
        "evicted",
        "evict/s",
        "clients",
        "keys"
    ));
    let row = |n: &NodeView| {
        format!(
            "{:<24} {:>9} {:>8} {:>8} {:>10} {:>10} {:>5} {:>8} {:>8} {:>8} {:>10}",
            n.address,
            opt_f(n.ops_per_sec, 0),
            pct(n.hit_ratio),
            pct(n.hit_ratio_total),
            n.used_memory_bytes.map_or("-".into(), bytes),
            n.used_memory_rss_bytes.map_or("-".into(), bytes),
            opt_f(n.mem_fragmentation_ratio, 2),
            opt_u(n.evicted_keys),
            opt_f(n.evictions_per_sec, 1),
            opt_u(n.connected_clients),
            n.keys
        )
    };
    for n in &server.nodes {
        lines.push(row(n));
    }
    if server.nodes.len() > 1 {
        lines.push(row(&server.total));
    }
    lines.push(String::new());
    lines.push(format!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8} {:>8}",
        "COMMAND",
        "calls/s",
        "us/call",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "calls",
        "failed",
        "rejected"
    ));
    for c in server.total.commands.iter().take(max_commands) {
        lines.push(format!(
            "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8} {:>8}",
            c.name,
            opt_f(c.calls_per_sec, 1),
            opt_f(c.usec_per_call, 2),
            opt_f(c.latency_usec.p50, 1),
            opt_f(c.latency_usec.p99, 1),
            opt_f(c.latency_usec.p999, 1),
            c.calls,
            c.failed_calls,
            c.rejected_calls
        ));
    }
}

fn fleet_lines(fleet: &FleetView, now_ms: u64, lines: &mut Vec<String>) {
    let t = &fleet.totals;
    let mut title = format!("FLEET: {} live instance(s)", t.instances);
    if fleet.unreadable > 0 {
        let _ = write!(title, ", {} unreadable heartbeat(s)", fleet.unreadable);
    }
    lines.push(title);
    if fleet.instances.is_empty() {
        lines.push(
            "  no heartbeat under this prefix (instances publish with CACHE_FLEET_HEARTBEAT=5s)"
                .to_owned(),
        );
        return;
    }
    lines.push(format!(
        "{:<24} {:<16} {:>7} {:>8} {:>5} {:>9} {:>8} {:>8} {:>7} {:>8} {:>7} {:>9} {:>6}",
        "INSTANCE",
        "HOST",
        "PID",
        "VERSION",
        "AGE",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "timeouts",
        "hit%",
        "pool",
        "near%"
    ));
    for i in &fleet.instances {
        lines.push(instance_row(i, now_ms));
    }
    lines.push(format!(
        "{:<24} {:<16} {:>7} {:>8} {:>5} {:>9} {:>8} {:>8} {:>7} {:>8} {:>7} {:>9} {:>6}",
        "TOTAL",
        "",
        "",
        "",
        "",
        format!("{:.1}", t.calls_per_sec),
        opt_ms(t.p50_us),
        opt_ms(t.p99_us),
        t.recent_errors,
        t.recent_timeouts,
        pct(t.cache.recent_hit_ratio.or(t.cache.hit_ratio)),
        t.pool
            .map_or("-".into(), |p| format!("{}/{}", p.in_use, p.open)),
        "-"
    ));
    if !t.families.is_empty() {
        lines.push(String::new());
        lines.push(format!(
            "{:<24} {:>12} {:>12} {:>8} {:>8} {:>12}",
            "FAMILY", "hits", "misses", "hit%all", "hit%now", "store errors"
        ));
        for (name, f) in &t.families {
            lines.push(format!(
                "{:<24} {:>12} {:>12} {:>8} {:>8} {:>12}",
                name,
                f.hits,
                f.misses,
                pct(f.hit_ratio),
                pct(f.recent_hit_ratio),
                f.store_errors
            ));
        }
    }
}

fn instance_row(i: &InstanceReport, now_ms: u64) -> String {
    // The hit ratio of the latest window, or since start when the window had no read.
    let mut all = cachekit::fleet::FamilyReport::default();
    for f in i.families.values() {
        all.add(f);
    }
    let hit = all.recent_hit_ratio.or(all.hit_ratio);
    let (calls_per_sec, p50, p99, errors, timeouts) = match &i.store {
        Some(s) => (
            (s.window_ms > 0).then(|| s.recent_calls as f64 * 1000.0 / s.window_ms as f64),
            s.p50_us,
            s.p99_us,
            s.recent_errors.to_string(),
            s.recent_timeouts.to_string(),
        ),
        None => (None, None, None, "-".into(), "-".into()),
    };
    format!(
        "{:<24} {:<16} {:>7} {:>8} {:>5} {:>9} {:>8} {:>8} {:>7} {:>8} {:>7} {:>9} {:>6}",
        i.id,
        i.host,
        i.pid,
        i.version,
        duration_text(now_ms.saturating_sub(i.at_ms)),
        opt_f(calls_per_sec, 1),
        opt_ms(p50),
        opt_ms(p99),
        errors,
        timeouts,
        pct(hit),
        i.pool
            .map_or("-".into(), |p| format!("{}/{}", p.in_use, p.open)),
        pct(i.near_cache_hit_ratio)
    )
}

fn opt_f(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.decimals$}"))
}

fn opt_u(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn opt_ms(us: Option<u64>) -> String {
    us.map_or("-".into(), |us| format!("{:.2}", us as f64 / 1000.0))
}

fn pct(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let n = n as f64;
    if n >= KIB * KIB * KIB {
        format!("{:.1} GiB", n / (KIB * KIB * KIB))
    } else if n >= KIB * KIB {
        format!("{:.1} MiB", n / (KIB * KIB))
    } else {
        format!("{:.1} KiB", n / KIB)
    }
}

/// `250ms`, `3s`, `2m`.
fn duration_text(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 120_000 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            at_ms: 3_723_000,
            backend: "Redis at 127.0.0.1:6379".into(),
            prefix: "dev".into(),
            interval_ms: 1000,
            server: None,
            server_error: Some("connection refused".into()),
            fleet: Some(FleetView::default()),
            fleet_error: None,
        }
    }

    #[test]
    fn a_frame_names_the_backend_and_survives_errors() {
        let lines = frame(&snapshot(), 200, 10);
        assert!(lines[0].contains("Redis at 127.0.0.1:6379"), "{lines:?}");
        assert!(lines[0].contains("01:02:03 UTC"), "{lines:?}");
        assert!(lines
            .iter()
            .any(|l| l.contains("error: connection refused")));
        assert!(lines.iter().any(|l| l.contains("0 live instance")));
    }

    #[test]
    fn lines_are_cut_to_the_width() {
        let lines = frame(&snapshot(), 20, 10);
        assert!(lines.iter().all(|l| l.chars().count() <= 20));
    }

    #[test]
    fn numbers_are_readable() {
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(pct(Some(0.9512)), "95.1%");
        assert_eq!(pct(None), "-");
        assert_eq!(opt_ms(Some(1500)), "1.50");
        assert_eq!(duration_text(250), "250ms");
        assert_eq!(duration_text(15_000), "15s");
    }
}
