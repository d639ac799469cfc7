//! `backend_tests!` makes one test per scenario and backend: scenarios from another module or from
//! this one, the default or a given test attribute, setup statements whose bindings the fixture
//! uses, and fixtures by value or by reference. The generated tests are
//! `memory::counts_to_three`, `memory_with_setup::counts_to_three`,
//! `paused::expires_on_the_paused_clock` and `by_ref::reads_its_writes`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_core::{SetOptions, Store};
use cache_memory::MemoryStore;

/// A scenario defined in the calling module itself.
async fn expires_on_the_paused_clock(store: Arc<dyn Store>) {
    let ttl = Duration::from_secs(60);
    store.set("t", b"v", SetOptions::ttl(ttl)).await.unwrap();
    tokio::time::advance(ttl).await;
    assert_eq!(store.get("t").await.unwrap(), None);
}

cache_testing::backend_tests! {
    scenarios = common::{counts_to_three};

    // The default attribute (`#[tokio::test]`), no setup.
    memory => MemoryStore::new();

    // A given attribute, and setup statements whose bindings the fixture uses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    memory_with_setup {
        let root = MemoryStore::new();
        let scoped = root.with_prefix("scoped").unwrap();
    } => scoped;
}

cache_testing::backend_tests! {
    scenarios = { expires_on_the_paused_clock };

    #[tokio::test(start_paused = true)]
    paused => Arc::new(MemoryStore::new()) as Arc<dyn Store>;
}

cache_testing::backend_tests! {
    scenarios = common::{reads_its_writes};

    by_ref => &MemoryStore::new() as &dyn Store;
}
