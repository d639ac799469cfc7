//! The one list of [`Store`](crate::Store) methods for types that hand every call to an inner store:
//! the `Arc<T>` / `Box<T>` impls (in [`crate::store`]) and [`Layered`](crate::layer::Layered).
//!
//! A method added to the trait is added here once. The only other hand-written forwarder is the
//! mockall `MockStore` of `cache-testing`, which must convert nested references to owned values for
//! mockall and therefore cannot use this list (see its documentation).

/// Implements [`Store`](crate::Store) for a type by handing every call to an inner store.
///
/// - `impl[...] for $ty`: the generics and the type;
/// - `inner: |this| expr`: how to reach the inner store from `self` (bound to `this`);
/// - `call: name`: a macro `name!(this, op, future)` that runs one call: [`direct_call`] awaits the
///   future, [`hooked_call`] runs it inside `Layered::around`. The `op` (a
///   [`crate::layer::Op`] expression) is only evaluated by macros that use it.
macro_rules! delegate_store {
    (
        impl[$($generics:tt)*] for $ty:ty;
        inner: |$this:ident| $inner:expr;
        call: $call:ident;
    ) => {
        const _: () = {
            use ::std::time::Duration;

            // Unused where `$call` discards the call's description (`direct_call`).
            #[allow(unused_imports)]
            use $crate::layer::{Method, Op, Target};
            use $crate::store::{
                BackendStats, CasOutcome, Expiry, KeyTtl, PoolStats, ScanCursor, ScanPage, SetOptions,
                Store,
            };
            use $crate::Result;

            #[$crate::async_trait]
            impl<$($generics)*> Store for $ty {
                fn prefix(&self) -> &str {
                    let $this = self;
                    $inner.prefix()
                }
                fn backend_name(&self) -> &'static str {
                    let $this = self;
                    $inner.backend_name()
                }
                fn ends_calls_at_deadline(&self) -> bool {
                    let $this = self;
                    $call!(@ends_at_deadline $this, $inner)
                }
                async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
                    let $this = self;
                    $call!($this, Op::new(Method::Get, Target::Key(key)), $inner.get(key))
                }
                async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
                    let $this = self;
                    $call!($this, Op::new(Method::GetMany, Target::Keys(keys)), $inner.get_many(keys))
                }
                async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
                    let $this = self;
                    $call!($this, Op::new(Method::GetEx, Target::Key(key)), $inner.get_ex(key, ttl))
                }
                async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
                    let $this = self;
                    $call!($this, Op::new(Method::Set, Target::Key(key)), $inner.set(key, value, opts))
                }
                async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::SetMany, Target::Entries(entries)),
                        $inner.set_many(entries, expiry)
                    )
                }
                async fn delete(&self, keys: &[&str]) -> Result<u64> {
                    let $this = self;
                    $call!($this, Op::new(Method::Delete, Target::Keys(keys)), $inner.delete(keys))
                }
                async fn exists(&self, key: &str) -> Result<bool> {
                    let $this = self;
                    $call!($this, Op::new(Method::Exists, Target::Key(key)), $inner.exists(key))
                }
                async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
                    let $this = self;
                    $call!($this, Op::new(Method::Expire, Target::Key(key)), $inner.expire(key, ttl))
                }
                async fn persist(&self, key: &str) -> Result<bool> {
                    let $this = self;
                    $call!($this, Op::new(Method::Persist, Target::Key(key)), $inner.persist(key))
                }
                async fn ttl(&self, key: &str) -> Result<KeyTtl> {
                    let $this = self;
                    $call!($this, Op::new(Method::Ttl, Target::Key(key)), $inner.ttl(key))
                }
                async fn incr_by(
                    &self,
                    key: &str,
                    delta: i64,
                    ttl_if_created: Option<Duration>,
                ) -> Result<i64> {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::IncrBy, Target::Key(key)),
                        $inner.incr_by(key, delta, ttl_if_created)
                    )
                }
                async fn compare_and_swap(
                    &self,
                    key: &str,
                    expected: Option<&[u8]>,
                    new: Option<&[u8]>,
                    expiry: Expiry,
                ) -> Result<CasOutcome> {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::CompareAndSwap, Target::Key(key)),
                        $inner.compare_and_swap(key, expected, new, expiry)
                    )
                }
                async fn scan(
                    &self,
                    pattern: &str,
                    cursor: ScanCursor,
                    count: u32,
                ) -> Result<ScanPage> {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::Scan, Target::Pattern(pattern)),
                        $inner.scan(pattern, cursor, count)
                    )
                }
                async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::Zadd, Target::Key(key)),
                        $inner.zadd(key, member, score)
                    )
                }
                async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
                    let $this = self;
                    $call!($this, Op::new(Method::Zrem, Target::Key(key)), $inner.zrem(key, members))
                }
                async fn zrange_by_score(
                    &self,
                    key: &str,
                    min: f64,
                    max: f64,
                    limit: Option<usize>,
                ) -> Result<Vec<(String, f64)>> {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::ZrangeByScore, Target::Key(key)),
                        $inner.zrange_by_score(key, min, max, limit)
                    )
                }
                async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::ZremRangeByScore, Target::Key(key)),
                        $inner.zrem_range_by_score(key, min, max)
                    )
                }
                async fn zcard(&self, key: &str) -> Result<u64> {
                    let $this = self;
                    $call!($this, Op::new(Method::Zcard, Target::Key(key)), $inner.zcard(key))
                }
                async fn ping(&self) -> Result<Duration> {
                    let $this = self;
                    $call!($this, Op::new(Method::Ping, Target::None), $inner.ping())
                }
                async fn flush_prefix(&self) -> Result<u64> {
                    let $this = self;
                    $call!($this, Op::new(Method::FlushPrefix, Target::None), $inner.flush_prefix())
                }
                async fn stats(&self) -> Result<Option<BackendStats>> {
                    let $this = self;
                    $call!($this, Op::new(Method::Stats, Target::None), $inner.stats())
                }
                async fn pool_stats(&self) -> Option<PoolStats> {
                    // Like `prefix()`: no I/O, so no hook.
                    let $this = self;
                    $inner.pool_stats().await
                }
                async fn close(&self) -> Result<()> {
                    let $this = self;
                    $call!($this, Op::new(Method::Close, Target::None), $inner.close())
                }
                async fn get_with_ttl(&self, key: &str) -> Result<Option<(Vec<u8>, KeyTtl)>> {
                    let $this = self;
                    $call!($this, Op::new(Method::GetWithTtl, Target::Key(key)), $inner.get_with_ttl(key))
                }
                async fn track_changes(
                    &self,
                    prefix: &str,
                    listener: ::std::sync::Weak<dyn $crate::tracking::InvalidationListener>,
                ) -> Result<()> {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::TrackChanges, Target::None),
                        $inner.track_changes(prefix, listener)
                    )
                }
            }
        };
    };
}

/// Runs a delegated call as it is: no description of the call is built.
macro_rules! direct_call {
    (@ends_at_deadline $this:ident, $inner:expr) => {
        $inner.ends_calls_at_deadline()
    };
    ($this:ident, $op:expr, $call:expr) => {
        $call.await
    };
}

/// Runs a delegated call inside `Layered::around`, which calls the hook before and after it.
macro_rules! hooked_call {
    // A hook may wait before a call (a gate, an injected delay) without looking at any deadline.
    (@ends_at_deadline $this:ident, $inner:expr) => {{
        let _ = $this;
        false
    }};
    ($this:ident, $op:expr, $call:expr) => {
        $this.around($op, $call).await
    };
}
