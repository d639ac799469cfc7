//! `scan` and `flush_prefix`: `SCAN` pages under the store's prefix, on one server or across every
//! primary of a cluster, and `SCAN` + batched `UNLINK` for `flush_prefix`.
//!
//! A plain `SCAN` on a cluster reaches one node (redis-rs has no cluster-wide scan). So the store
//! lists the primaries, scans each in turn by address, and encodes the node list, the position in it
//! and the node's own cursor in the opaque [`ScanCursor`] ([`ClusterScan`]).

use cache_core::keys::glob_escape;
use cache_core::{Error, Result, ScanCursor, ScanPage};

use crate::cluster;
use crate::retry::Idempotency;
use crate::route::Target;
use crate::store::RedisStore;

impl RedisStore {
    /// One page of keys matching `pattern` (relative to the prefix).
    pub(crate) async fn scan_page(
        &self,
        pattern: &str,
        cursor: ScanCursor,
        count: u32,
    ) -> Result<ScanPage> {
        let full_pattern = self.full_pattern(pattern);
        if !self.is_cluster() {
            let (next, keys) = self
                .scan_on(Target::Auto, cursor.as_backend(), &full_pattern, count)
                .await?;
            return Ok(ScanPage {
                keys: self.relative_keys(keys),
                next: (next != "0").then(|| ScanCursor::from_backend(next)),
            });
        }
        let mut state = if cursor.is_start() {
            let nodes = self.topology().await?;
            ClusterScan {
                nodes: cluster::primaries(&nodes)
                    .into_iter()
                    .map(|n| (n.host.clone(), n.port))
                    .collect(),
                index: 0,
                cursor: "0".to_owned(),
            }
        } else {
            ClusterScan::decode(cursor.as_backend())?
        };
        let (host, port) = state.nodes[state.index].clone();
        let (next, keys) = self
            .scan_on(
                Target::Node { host: &host, port },
                &state.cursor,
                &full_pattern,
                count,
            )
            .await?;
        let next = if next != "0" {
            state.cursor = next;
            Some(state.encode())
        } else if state.index + 1 < state.nodes.len() {
            state.index += 1;
            state.cursor = "0".to_owned();
            Some(state.encode())
        } else {
            None
        };
        Ok(ScanPage {
            keys: self.relative_keys(keys),
            next,
        })
    }

    /// Deletes every key under the (non-empty) prefix: `SCAN` + batched `UNLINK` on the server, or
    /// on every primary in turn (each holds only the keys of its own slots).
    pub(crate) async fn flush_keys(&self) -> Result<u64> {
        let pattern = format!("{}:*", glob_escape(&self.prefix));
        if !self.is_cluster() {
            return self.flush_on(Target::Auto, &pattern).await;
        }
        let nodes = self.topology().await?;
        let mut deleted = 0u64;
        for node in cluster::primaries(&nodes) {
            let target = Target::Node {
                host: &node.host,
                port: node.port,
            };
            deleted += self.flush_on(target, &pattern).await?;
        }
        Ok(deleted)
    }

    /// `SCAN` + batched `UNLINK` of every key matching the full `pattern` on `target`.
    async fn flush_on(&self, target: Target<'_>, pattern: &str) -> Result<u64> {
        let mut cursor = String::from("0");
        let mut deleted = 0u64;
        loop {
            let (next, keys) = self
                .scan_on(target, &cursor, pattern, self.scan_count)
                .await?;
            deleted += self.unlink(None, &keys).await?;
            if next == "0" {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// One `SCAN` on `target` with a full (prefixed, escaped) pattern; returns the next cursor and
    /// full keys (keys that are not UTF-8 are skipped with a warning).
    async fn scan_on(
        &self,
        target: Target<'_>,
        cursor: &str,
        full_pattern: &str,
        count: u32,
    ) -> Result<(String, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(if cursor.is_empty() { "0" } else { cursor })
            .arg("MATCH")
            .arg(full_pattern)
            .arg("COUNT")
            .arg(count.max(1));
        let (next, keys): (String, Vec<Vec<u8>>) = self
            .query_at("SCAN", None, target, Idempotency::Repeatable, &cmd)
            .await?;
        let keys = keys
            .into_iter()
            .filter_map(|k| match String::from_utf8(k) {
                Ok(k) => Some(k),
                Err(e) => {
                    tracing::warn!(target: "cache_redis", key = ?String::from_utf8_lossy(e.as_bytes()), "skipping a key that is not UTF-8");
                    None
                }
            })
            .collect();
        Ok((next, keys))
    }

    /// The full pattern of a relative one: the glob-escaped prefix in front.
    fn full_pattern(&self, pattern: &str) -> String {
        if self.prefix.is_empty() {
            pattern.to_owned()
        } else {
            format!("{}:{pattern}", glob_escape(&self.prefix))
        }
    }
}

/// Where a cluster scan is: the primaries at the start of the scan, the one being scanned, and its
/// `SCAN` cursor. Encoded as `c1|{index}|{cursor}|{addr},{addr},...` in the opaque [`ScanCursor`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClusterScan {
    nodes: Vec<(String, u16)>,
    index: usize,
    cursor: String,
}

impl ClusterScan {
    fn encode(&self) -> ScanCursor {
        let nodes: Vec<String> = self.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        ScanCursor::from_backend(format!(
            "c1|{}|{}|{}",
            self.index,
            self.cursor,
            nodes.join(",")
        ))
    }

    fn decode(cursor: &str) -> Result<ClusterScan> {
        let bad = || {
            Error::invalid_input(format!(
                "{cursor:?} is not a scan cursor of a Redis Cluster store (pass back what \
                 ScanPage::next returned, or ScanCursor::start())"
            ))
        };
        let mut parts = cursor.splitn(4, '|');
        if parts.next() != Some("c1") {
            return Err(bad());
        }
        let index: usize = parts.next().and_then(|i| i.parse().ok()).ok_or_else(bad)?;
        let cursor = parts.next().filter(|c| !c.is_empty()).ok_or_else(bad)?;
        if !cursor.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let nodes = parts
            .next()
            .ok_or_else(bad)?
            .split(',')
            .map(|a| {
                let (h, p) = a.rsplit_once(':')?;
                Some((h.to_owned(), p.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        if index >= nodes.len() {
            return Err(bad());
        }
        Ok(ClusterScan {
            nodes,
            index,
            cursor: cursor.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_cursor_round_trips_and_rejects_garbage() {
        let s = ClusterScan {
            nodes: vec![("127.0.0.1".into(), 1), ("::1".into(), 2)],
            index: 1,
            cursor: "1234".into(),
        };
        let c = s.encode();
        assert_eq!(ClusterScan::decode(c.as_backend()).unwrap(), s);
        for bad in [
            "",
            "0",
            "c1|5|0|h:1",
            "c1|0|x|h:1",
            "c1|0|0|h",
            "c2|0|0|h:1",
        ] {
            assert!(ClusterScan::decode(bad).is_err(), "{bad:?}");
        }
    }
}
