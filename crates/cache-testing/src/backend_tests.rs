//! [`backend_tests!`](crate::backend_tests): one list of scenarios, instantiated as tests on every
//! backend. See the macro's documentation.

/// Instantiates a list of scenarios as one test per scenario and backend.
///
/// A scenario is an `async fn(fixture)` returning `()` that panics on failure, written once against
/// whatever the fixture is (a store, `&CacheManager<S>`, `&SessionManager<S>` with `S: Store`). For
/// each backend the macro makes a module named after it holding one test per scenario, named after
/// the scenario (`memory::lifecycle`, `redis::lifecycle`), which builds the backend's fixture and
/// runs the scenario on it.
///
/// ```
/// # use cache_memory::MemoryStore;
/// # use cache_core::Store;
/// # // Stand-ins for the test harness, so that this example compiles without Redis.
/// # struct RedisServer;
/// # impl RedisServer { fn start() -> Self { RedisServer } }
/// # async fn connect(_: &RedisServer) -> MemoryStore { MemoryStore::new() }
/// # struct Manager<S>(S);
/// # fn manager<S: Store>(store: S) -> Manager<S> { Manager(store) }
/// mod common {
///     # use super::Manager;
///     # use cache_core::Store;
///     // Usually `tests/common/mod.rs`: scenarios written once, generic over the store.
///     pub async fn lifecycle<S: Store>(m: &Manager<S>) { /* ... */ }
///     pub async fn no_resurrection<S: Store>(m: &Manager<S>) { /* ... */ }
/// }
///
/// cache_testing::backend_tests! {
///     // Paths are relative to the module that calls the macro; `scenarios = { a, b };` names
///     // functions of that module itself.
///     scenarios = common::{lifecycle, no_resurrection};
///
///     // One entry per backend: the test attribute(s) (default `#[tokio::test]`), the module name,
///     // optional setup statements in braces, and after `=>` the fixture expression the scenarios
///     // receive. Setup and fixture run inside the async test, so both may `.await`; what the setup
///     // binds (a server, a guard) lives until the scenario has finished.
///     #[tokio::test(start_paused = true)]
///     memory => &manager(MemoryStore::new());
///
///     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
///     redis {
///         let server = RedisServer::start();
///         let manager = manager(connect(&server).await);
///     } => &manager;
/// }
/// # fn main() {}
/// ```
///
/// expands to
///
/// ```text
/// mod memory {
///     use super::*;
///     #[tokio::test(start_paused = true)]
///     async fn lifecycle() {
///         super::common::lifecycle(&manager(MemoryStore::new())).await;
///     }
///     // ... one test per scenario
/// }
/// mod redis {
///     use super::*;
///     #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
///     async fn lifecycle() {
///         let server = RedisServer::start();
///         let manager = manager(connect(&server).await);
///         super::common::lifecycle(&manager).await;
///     }
///     // ...
/// }
/// ```
///
/// The generated modules `use super::*`, so the helpers the fixture calls are those of the calling
/// module. Call the macro once per list of scenarios; two lists that need different fixtures on the
/// same backend take two calls with different module names (`memory`, `memory_races`).
#[macro_export]
macro_rules! backend_tests {
    // Entry: the scenarios, with or without a module path, then the backends.
    (scenarios = $($path:ident ::)+ { $($name:ident),* $(,)? }; $($backends:tt)*) => {
        $crate::backend_tests!(
            @backends
            [use super::$($path)::+ as __scenarios;] __scenarios [$($name)*]
            $($backends)*
        );
    };
    (scenarios = { $($name:ident),* $(,)? }; $($backends:tt)*) => {
        $crate::backend_tests!(@backends [] super [$($name)*] $($backends)*);
    };

    // One backend at a time: with test attributes, or with the default `#[tokio::test]`.
    (@backends $use:tt $via:tt $names:tt) => {};
    (
        @backends $use:tt $via:tt $names:tt
        $(#[$attr:meta])+
        $backend:ident $({ $($setup:tt)* })? => $fixture:expr;
        $($rest:tt)*
    ) => {
        $crate::backend_tests!(
            @module $use $via $names [$(#[$attr])+] $backend [$($($setup)*)?] [$fixture]
        );
        $crate::backend_tests!(@backends $use $via $names $($rest)*);
    };
    (
        @backends $use:tt $via:tt $names:tt
        $backend:ident $({ $($setup:tt)* })? => $fixture:expr;
        $($rest:tt)*
    ) => {
        $crate::backend_tests!(
            @module $use $via $names [#[tokio::test]] $backend [$($($setup)*)?] [$fixture]
        );
        $crate::backend_tests!(@backends $use $via $names $($rest)*);
    };

    // The module of one backend.
    (@module [$($use:tt)*] $via:tt $names:tt $attrs:tt $backend:ident $setup:tt $fixture:tt) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $($use)*
            $crate::backend_tests!(@tests $via $names $attrs $setup $fixture);
        }
    };

    // One test per scenario.
    (@tests $via:tt [] $attrs:tt $setup:tt $fixture:tt) => {};
    (
        @tests $via:tt [$name:ident $($more:ident)*]
        [$($attr:tt)*] [$($setup:tt)*] [$fixture:expr]
    ) => {
        $($attr)*
        async fn $name() {
            $($setup)*
            $via::$name($fixture).await;
        }
        $crate::backend_tests!(@tests $via [$($more)*] [$($attr)*] [$($setup)*] [$fixture]);
    };
}
