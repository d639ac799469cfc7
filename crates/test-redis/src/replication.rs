//! Waiting for replication, so that a failover a test provokes loses nothing it checks afterwards.

use std::time::{Duration, Instant};

use crate::RedisServer;

impl RedisServer {
    /// Waits (up to 10 s, then panics) until a replica of this primary has everything the primary
    /// had written when this was called: its replication offset reached the primary's offset of
    /// that moment (a load that keeps writing keeps the current offsets apart).
    pub fn wait_replicated(&self) {
        let offsets = || {
            let info = self.cli(["INFO", "replication"]);
            let master: u64 = info
                .lines()
                .find_map(|l| l.trim().strip_prefix("master_repl_offset:"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let replica = info
                .lines()
                .filter(|l| l.starts_with("slave"))
                .filter_map(|l| l.split(',').find_map(|f| f.strip_prefix("offset=")))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .max();
            (master, replica, info)
        };
        let (target, _, _) = offsets();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, replica, info) = offsets();
            if replica.is_some_and(|r| r >= target) {
                return;
            }
            assert!(Instant::now() < deadline, "replica never caught up: {info}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
