//! # cache-testing
//!
//! Everything tests need to hold code to the [`cache_core::Store`] contract, in one place:
//!
//! - [`conformance`]: the suite every backend must pass ([`conformance::run_all`]), split by topic;
//! - [`MockStore`]: a mockall mock of the trait, for the layers above it that need a store to fail
//!   in a chosen way or to check exactly which calls are made (the facade re-exports it as
//!   `cachekit::MockStore` with its `mock` feature);
//! - [`backend_tests!`]: one list of scenarios, instantiated as a test per scenario and backend;
//! - [`hooks`]: store hooks that stage a fault at a chosen call ([`hooks::AfterCalls`]);
//! - [`env`](mod@env): the environment variables a configuration reader asks for, recorded, for property
//!   tests of configuration ([`env::variables_read`]).
//!
//! Use it as a dev-dependency. A store that only sometimes fails, pauses or is timed is a real store
//! wrapped in [`cache_core::layer::Layered`], not a mock.
//!
//! # Running the conformance suite on a backend
//!
//! ```
//! use cache_memory::MemoryStore;
//! use cache_testing::conformance::{run_all, Capabilities};
//!
//! #[tokio::test]
//! async fn memory_store_passes_the_suite() {
//!     // Three stores over one backend: the store under test, another prefix, no prefix.
//!     let root = MemoryStore::new();
//!     let store = root.with_prefix("conformance_a").unwrap();
//!     let other = root.with_prefix("conformance_b").unwrap();
//!     let unprefixed = root.with_prefix("").unwrap();
//!     run_all(&store, &other, &unprefixed, &Capabilities::new()).await;
//! }
//! # fn main() {}
//! ```
//!
//! # Writing a scenario once and running it on every backend
//!
//! Write the scenario as an `async fn` over a generic store (or over a manager built on one), then
//! let [`backend_tests!`] make the tests:
//!
//! ```
//! # use cache_memory::MemoryStore;
//! mod common {
//!     // Usually `tests/common/mod.rs`.
//!     use cache_core::Store;
//!
//!     pub async fn counts_to_three<S: Store>(store: S) {
//!         for _ in 0..3 {
//!             store.incr_by("n", 1, None).await.unwrap();
//!         }
//!         assert_eq!(store.get("n").await.unwrap().as_deref(), Some(&b"3"[..]));
//!     }
//! }
//!
//! cache_testing::backend_tests! {
//!     scenarios = common::{counts_to_three};
//!
//!     #[tokio::test(start_paused = true)]
//!     memory => MemoryStore::new();
//!
//!     // Setup statements run first; the fixture may use what they bind.
//!     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!     memory_prefixed {
//!         let root = MemoryStore::new();
//!     } => root.with_prefix("app").unwrap();
//! }
//! // Tests: memory::counts_to_three, memory_prefixed::counts_to_three.
//! # fn main() {}
//! ```
//!
//! The macro's documentation has the full syntax and what it expands to.

mod backend_tests;
pub mod conformance;
pub mod env;
pub mod hooks;
mod mock;

pub use mock::{MockStore, MockStoreCalls};
