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
            use ::std::future::Future;
            use ::std::pin::Pin;
            use ::std::time::Duration;

            // Unused where `$call` discards the call's description (`direct_call`).
            #[allow(unused_imports)]
            use $crate::layer::{Method, Op, Target};
            use $crate::store::{
                BackendStats, Bytes, CasOutcome, Expiry, KeyTtl, PoolStats, ScanCursor, ScanPage, SetOptions,
                Store,
            };
            use $crate::Result;

            /// The future of a [`Store`] method as `async_trait` declares it.
            type Fut<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

            // The methods are written in the form `#[async_trait]` gives the trait's `async fn`s
            // (a boxed future, one lifetime per reference), not as `async fn`s: a direct
            // delegation then hands back the inner store's boxed future as it is, instead of
            // boxing a second future around it (an allocation and a free more per call, and
            // on glibc's allocator a lock shared by the runtime's threads).
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
                fn get<'s, 'a, 'f>(&'s self, key: &'a str) -> Fut<'f, Result<Option<Bytes>>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::Get, Target::Key(key)), $inner.get(key))
                }
                fn get_many<'s, 'a, 'b, 'f>(
                    &'s self,
                    keys: &'a [&'b str],
                ) -> Fut<'f, Result<Vec<Option<Bytes>>>>
                where
                    's: 'f,
                    'a: 'f,
                    'b: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::GetMany, Target::Keys(keys)),
                        $inner.get_many(keys)
                    )
                }
                fn get_ex<'s, 'a, 'f>(
                    &'s self,
                    key: &'a str,
                    ttl: Duration,
                ) -> Fut<'f, Result<Option<Bytes>>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::GetEx, Target::Key(key)), $inner.get_ex(key, ttl))
                }
                fn set<'s, 'a, 'b, 'f>(
                    &'s self,
                    key: &'a str,
                    value: &'b [u8],
                    opts: SetOptions,
                ) -> Fut<'f, Result<bool>>
                where
                    's: 'f,
                    'a: 'f,
                    'b: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::Set, Target::Key(key)),
                        $inner.set(key, value, opts)
                    )
                }
                fn set_many<'s, 'a, 'b, 'c, 'f>(
                    &'s self,
                    entries: &'a [(&'b str, &'c [u8])],
                    expiry: Expiry,
                ) -> Fut<'f, Result<()>>
                where
                    's: 'f,
                    'a: 'f,
                    'b: 'f,
                    'c: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::SetMany, Target::Entries(entries)),
                        $inner.set_many(entries, expiry)
                    )
                }
                fn delete<'s, 'a, 'b, 'f>(&'s self, keys: &'a [&'b str]) -> Fut<'f, Result<u64>>
                where
                    's: 'f,
                    'a: 'f,
                    'b: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::Delete, Target::Keys(keys)), $inner.delete(keys))
                }
                fn exists<'s, 'a, 'f>(&'s self, key: &'a str) -> Fut<'f, Result<bool>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::Exists, Target::Key(key)), $inner.exists(key))
                }
                fn expire<'s, 'a, 'f>(
                    &'s self,
                    key: &'a str,
                    ttl: Duration,
                ) -> Fut<'f, Result<bool>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::Expire, Target::Key(key)),
                        $inner.expire(key, ttl)
                    )
                }
                fn persist<'s, 'a, 'f>(&'s self, key: &'a str) -> Fut<'f, Result<bool>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::Persist, Target::Key(key)), $inner.persist(key))
                }
                fn ttl<'s, 'a, 'f>(&'s self, key: &'a str) -> Fut<'f, Result<KeyTtl>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::Ttl, Target::Key(key)), $inner.ttl(key))
                }
                fn incr_by<'s, 'a, 'f>(
                    &'s self,
                    key: &'a str,
                    delta: i64,
                    ttl_if_created: Option<Duration>,
                ) -> Fut<'f, Result<i64>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::IncrBy, Target::Key(key)),
                        $inner.incr_by(key, delta, ttl_if_created)
                    )
                }
                fn compare_and_swap<'s, 'a, 'b, 'c, 'f>(
                    &'s self,
                    key: &'a str,
                    expected: Option<&'b [u8]>,
                    new: Option<&'c [u8]>,
                    expiry: Expiry,
                ) -> Fut<'f, Result<CasOutcome>>
                where
                    's: 'f,
                    'a: 'f,
                    'b: 'f,
                    'c: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::CompareAndSwap, Target::Key(key)),
                        $inner.compare_and_swap(key, expected, new, expiry)
                    )
                }
                fn scan<'s, 'a, 'f>(
                    &'s self,
                    pattern: &'a str,
                    cursor: ScanCursor,
                    count: u32,
                ) -> Fut<'f, Result<ScanPage>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::Scan, Target::Pattern(pattern)),
                        $inner.scan(pattern, cursor, count)
                    )
                }
                fn zadd<'s, 'a, 'b, 'f>(
                    &'s self,
                    key: &'a str,
                    member: &'b str,
                    score: f64,
                ) -> Fut<'f, Result<bool>>
                where
                    's: 'f,
                    'a: 'f,
                    'b: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::Zadd, Target::Key(key)),
                        $inner.zadd(key, member, score)
                    )
                }
                fn zrem<'s, 'a, 'b, 'c, 'f>(
                    &'s self,
                    key: &'a str,
                    members: &'b [&'c str],
                ) -> Fut<'f, Result<u64>>
                where
                    's: 'f,
                    'a: 'f,
                    'b: 'f,
                    'c: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::Zrem, Target::Key(key)),
                        $inner.zrem(key, members)
                    )
                }
                fn zrange_by_score<'s, 'a, 'f>(
                    &'s self,
                    key: &'a str,
                    min: f64,
                    max: f64,
                    limit: Option<usize>,
                ) -> Fut<'f, Result<Vec<(String, f64)>>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::ZrangeByScore, Target::Key(key)),
                        $inner.zrange_by_score(key, min, max, limit)
                    )
                }
                fn zrem_range_by_score<'s, 'a, 'f>(
                    &'s self,
                    key: &'a str,
                    min: f64,
                    max: f64,
                ) -> Fut<'f, Result<u64>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::ZremRangeByScore, Target::Key(key)),
                        $inner.zrem_range_by_score(key, min, max)
                    )
                }
                fn zcard<'s, 'a, 'f>(&'s self, key: &'a str) -> Fut<'f, Result<u64>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::Zcard, Target::Key(key)), $inner.zcard(key))
                }
                fn ping<'s, 'f>(&'s self) -> Fut<'f, Result<Duration>>
                where
                    's: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::Ping, Target::None), $inner.ping())
                }
                fn flush_prefix<'s, 'f>(&'s self) -> Fut<'f, Result<u64>>
                where
                    's: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::FlushPrefix, Target::None), $inner.flush_prefix())
                }
                fn stats<'s, 'f>(&'s self) -> Fut<'f, Result<Option<BackendStats>>>
                where
                    's: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::Stats, Target::None), $inner.stats())
                }
                fn pool_stats<'s, 'f>(&'s self) -> Fut<'f, Option<PoolStats>>
                where
                    's: 'f,
                    Self: 'f,
                {
                    // Like `prefix()`: no I/O, so no hook.
                    let $this = self;
                    $inner.pool_stats()
                }
                fn close<'s, 'f>(&'s self) -> Fut<'f, Result<()>>
                where
                    's: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!($this, Op::new(Method::Close, Target::None), $inner.close())
                }
                fn get_with_ttl<'s, 'a, 'f>(
                    &'s self,
                    key: &'a str,
                ) -> Fut<'f, Result<Option<(Bytes, KeyTtl)>>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
                    let $this = self;
                    $call!(
                        $this,
                        Op::new(Method::GetWithTtl, Target::Key(key)),
                        $inner.get_with_ttl(key)
                    )
                }
                fn track_changes<'s, 'a, 'f>(
                    &'s self,
                    prefix: &'a str,
                    listener: ::std::sync::Weak<dyn $crate::tracking::InvalidationListener>,
                ) -> Fut<'f, Result<()>>
                where
                    's: 'f,
                    'a: 'f,
                    Self: 'f,
                {
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

/// Runs a delegated call as it is: the inner store's future is the call's, and no description of
/// the call is built.
macro_rules! direct_call {
    (@ends_at_deadline $this:ident, $inner:expr) => {
        $inner.ends_calls_at_deadline()
    };
    ($this:ident, $op:expr, $call:expr) => {
        $call
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
        Box::pin(async move { $this.around($op, $call).await })
    };
}
