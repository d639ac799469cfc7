//! The cache manager's scenarios (`scenarios/`) on a real Redis Cluster (3 primaries, 3 replicas)
//! started once for this test binary and shared by its tests, each under its own key prefix: TTLs
//! per family, bulk reads and writes across slots, single-flight, the cross-instance lease, escaped
//! pattern invalidation across primaries, version bumps, corrupt values, contention.

#[macro_use]
mod scenarios;

use scenarios::Target;

backend_tests!(Target::cluster);
