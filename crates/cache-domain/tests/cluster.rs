//! The cache manager's Redis scenarios (`scenarios/`) on a real Redis Cluster (3 primaries, 3
//! replicas) started once for this test binary and shared by its tests, each under its own key
//! prefix: TTLs per family, bulk reads and writes across slots, single-flight, the cross-instance
//! lease, escaped pattern invalidation across primaries, version bumps, corrupt values, contention.

mod scenarios;

use scenarios::Target;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_with_its_default_ttl_and_the_overrides_on_cluster() {
    scenarios::every_family_with_its_default_ttl_and_the_overrides(&Target::cluster(
        "cd_every_family_with_its_de",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_with_100_callers_on_redis_on_cluster() {
    scenarios::single_flight_with_100_callers_on_redis(&Target::cluster(
        "cd_single_flight_with_100_c",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_makes_two_managers_load_once_on_cluster() {
    scenarios::the_lease_makes_two_managers_load_once(&Target::cluster(
        "cd_the_lease_makes_two_mana",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_invalidation_escapes_ids_on_redis_on_cluster() {
    scenarios::pattern_invalidation_escapes_ids_on_redis(&Target::cluster(
        "cd_pattern_invalidation_esc",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_bump_invalidates_a_family_across_managers_on_cluster() {
    scenarios::version_bump_invalidates_a_family_across_managers(&Target::cluster(
        "cd_version_bump_invalidates",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_values_on_redis_are_misses_and_deleted_on_cluster() {
    scenarios::corrupt_values_on_redis_are_misses_and_deleted(&Target::cluster(
        "cd_corrupt_values_on_redis_",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_status_updates_lose_nothing_under_contention_on_cluster() {
    scenarios::crawl_status_updates_lose_nothing_under_contention(&Target::cluster(
        "cd_crawl_status_updates_los",
    ))
    .await;
}
