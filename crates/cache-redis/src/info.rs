//! Parsing of the Redis `INFO` reply into [`BackendStats`].
//!
//! `INFO` is `# Section` headers and `field:value` lines. Unknown fields are ignored and missing ones
//! stay `None`, so the parser works across Redis versions (and on Valkey, which keeps the names).

use std::collections::BTreeMap;

use cache_core::BackendStats;

/// The `field:value` pairs of an `INFO` reply (section headers and blank lines dropped).
pub fn fields(text: &str) -> BTreeMap<&str, &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .collect()
}

/// Parses an `INFO` reply into stats for the backend named `backend` (`redis`). The pool part is
/// left empty (the store fills it in).
///
/// ```
/// let stats = cache_redis::info::parse("redis", "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n");
/// assert_eq!(stats.version.as_deref(), Some("7.0.15"));
/// assert_eq!(stats.keys_per_db["db0"], 3);
/// ```
pub fn parse(backend: &str, text: &str) -> BackendStats {
    let f = fields(text);
    let num = |name: &str| f.get(name).and_then(|v| v.trim().parse::<u64>().ok());
    let mut stats = BackendStats::new(backend);
    stats.version = f.get("redis_version").map(|v| v.trim().to_owned());
    stats.uptime_secs = num("uptime_in_seconds");
    stats.used_memory_bytes = num("used_memory");
    stats.peak_memory_bytes = num("used_memory_peak");
    stats.connected_clients = num("connected_clients");
    stats.ops_per_sec = num("instantaneous_ops_per_sec");
    stats.keyspace_hits = num("keyspace_hits");
    stats.keyspace_misses = num("keyspace_misses");
    stats.expired_keys = num("expired_keys");
    stats.evicted_keys = num("evicted_keys");
    stats.keys_per_db = f
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix("db")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|(k, v)| {
            let keys = v
                .split(',')
                .find_map(|kv| kv.trim().strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some(((*k).to_owned(), keys))
        })
        .collect();
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `redis-server` 7.0.15 (`INFO`, trimmed of sections the parser does not read
    /// but keeping their shape).
    const CAPTURED: &str = "# Server\r\n\
redis_version:7.0.15\r\n\
redis_git_sha1:00000000\r\n\
redis_mode:standalone\r\n\
os:Linux 6.1.0 x86_64\r\n\
process_id:4242\r\n\
tcp_port:40123\r\n\
uptime_in_seconds:3725\r\n\
uptime_in_days:0\r\n\
\r\n\
# Clients\r\n\
connected_clients:7\r\n\
blocked_clients:0\r\n\
\r\n\
# Memory\r\n\
used_memory:1160512\r\n\
used_memory_human:1.11M\r\n\
used_memory_peak:1391776\r\n\
used_memory_peak_human:1.33M\r\n\
maxmemory_policy:noeviction\r\n\
\r\n\
# Stats\r\n\
total_connections_received:31\r\n\
total_commands_processed:1044\r\n\
instantaneous_ops_per_sec:12\r\n\
expired_keys:5\r\n\
evicted_keys:0\r\n\
keyspace_hits:300\r\n\
keyspace_misses:100\r\n\
\r\n\
# Replication\r\n\
role:master\r\n\
connected_slaves:0\r\n\
\r\n\
# Keyspace\r\n\
db0:keys=42,expires=3,avg_ttl=11913\r\n\
db3:keys=1,expires=0,avg_ttl=0\r\n";

    #[test]
    fn parses_a_captured_info_reply() {
        let s = parse("redis", CAPTURED);
        assert_eq!(s.backend, "redis");
        assert_eq!(s.version.as_deref(), Some("7.0.15"));
        assert_eq!(s.uptime_secs, Some(3725));
        assert_eq!(s.used_memory_bytes, Some(1_160_512));
        assert_eq!(s.peak_memory_bytes, Some(1_391_776));
        assert_eq!(s.connected_clients, Some(7));
        assert_eq!(s.ops_per_sec, Some(12));
        assert_eq!(s.keyspace_hits, Some(300));
        assert_eq!(s.keyspace_misses, Some(100));
        assert_eq!(s.hit_ratio(), Some(0.75));
        assert_eq!(s.expired_keys, Some(5));
        assert_eq!(s.evicted_keys, Some(0));
        assert_eq!(s.keys_per_db.len(), 2);
        assert_eq!(s.keys_per_db["db0"], 42);
        assert_eq!(s.keys_per_db["db3"], 1);
        assert!(s.pool.is_none());
    }

    #[test]
    fn missing_and_malformed_fields_stay_none() {
        let s = parse(
            "redis",
            "# Server\nredis_version:8.0.0\nused_memory:lots\ndbx:keys=1\n",
        );
        assert_eq!(s.version.as_deref(), Some("8.0.0"));
        assert_eq!(s.used_memory_bytes, None);
        assert_eq!(s.uptime_secs, None);
        assert!(s.keys_per_db.is_empty());
        assert_eq!(s.hit_ratio(), None);
    }
}
