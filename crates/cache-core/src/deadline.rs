//! One deadline per library call: a [`Deadline`] is the instant by which a whole manager call (a
//! session `create`, a cache `get`, ...) must have answered, shared by every store call under it.
//!
//! The managers run each public method's future inside [`scope`] (or [`scope_after`]), and cut it
//! at the deadline with their runtime's timer when the store does not end its calls there itself. A
//! store that can make use of the deadline reads it with [`current`] when a call starts: the Redis
//! store caps each attempt's response timeout and its retry budget by what is left, so a call late
//! in a multi-step operation gets the time that remains instead of a fresh bound of its own, and no
//! retry starts that could not finish in time.
//!
//! # Started on first use
//!
//! [`scope_after`] (and [`bound_after`]) take a budget instead of an instant: the deadline is set
//! the first time something under the scope asks for it ([`current`], or [`current_at`] from a
//! caller that has just read the clock), at that moment plus the budget, and every later question
//! in the same scope gets that same instant. A call that never asks (a hit on the in-memory store,
//! which never waits) reads no clock for its deadline; a call on Redis reads it once, when its
//! first store call starts, instead of once more at entry. What runs before the first question
//! is the library's own in-process work on the call's arguments (microseconds); a library call
//! that can *wait* before its first store call (a lock, another caller's load) asks for the
//! deadline before it waits, so that the wait counts.
//!
//! The scope is runtime-free: [`Scoped`] sets a thread-local for the duration of each poll of the
//! wrapped future (the way a task-local works), so [`current`] answers for code that runs *inside*
//! that poll, at any depth. A task spawned from inside the scope does not inherit it. Scopes nest:
//! the inner one sees the earlier of the two deadlines.
//!
//! ```
//! use std::time::Duration;
//! use cache_core::deadline::{self, Deadline};
//!
//! # futures_lite(async {
//! let d = Deadline::after(Duration::from_secs(2), "call_timeout");
//! let seen = deadline::scope(d, async { deadline::current() }).await;
//! assert_eq!(seen, Some(d));
//! assert_eq!(deadline::current(), None, "only inside the scope");
//! # });
//! # fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
//! #     // A minimal executor for this example: the future above never waits.
//! #     let waker = std::task::Waker::noop();
//! #     let mut cx = std::task::Context::from_waker(waker);
//! #     let mut f = std::pin::pin!(f);
//! #     loop {
//! #         if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
//! #     }
//! # }
//! ```

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::Error;

/// The instant by which one library call must have answered, and the setting that chose it (named
/// in the [`Error::Timeout`] a call gets when the deadline passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    setting: &'static str,
}

impl Deadline {
    /// The deadline `budget` from now; `setting` is the configuration name of `budget` (the
    /// environment variable a user would change), named in the timeout error.
    pub fn after(budget: Duration, setting: &'static str) -> Self {
        Self::after_from(Instant::now(), budget, setting)
    }

    /// The deadline `budget` after `start`: [`Deadline::after`] for a caller that has read the
    /// clock already (one clock read per call instead of two).
    pub fn after_from(start: Instant, budget: Duration, setting: &'static str) -> Self {
        Self {
            // A budget too large to add is as good as no deadline: a century from then.
            at: start
                .checked_add(budget)
                .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600)),
            setting,
        }
    }

    /// The deadline at `at`.
    pub fn at(at: Instant, setting: &'static str) -> Self {
        Self { at, setting }
    }

    /// The instant.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// The setting that chose this deadline.
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// Time left until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        if other.at < self.at {
            other
        } else {
            self
        }
    }

    /// The [`Error::Timeout`] of a call (`operation`, started at `started`) cut by this deadline.
    pub fn timeout_error(&self, operation: impl Into<String>, started: Instant) -> Error {
        Error::Timeout {
            operation: operation.into(),
            elapsed: started.elapsed(),
            setting: self.setting,
        }
    }
}

/// What a scope holds: a deadline, or a budget that starts when the deadline is first asked for
/// (see [Started on first use](self#started-on-first-use)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    At(Deadline),
    After {
        budget: Duration,
        setting: &'static str,
    },
}

impl Slot {
    /// The deadline, a pending budget started at `now`.
    fn start(self, now: Instant) -> Deadline {
        match self {
            Slot::At(d) => d,
            Slot::After { budget, setting } => Deadline::after_from(now, budget, setting),
        }
    }
}

thread_local! {
    static CURRENT: Cell<Option<Slot>> = const { Cell::new(None) };
}

/// The deadline of the library call being polled on this thread, if any (see the
/// [module documentation](self)). Under [`scope_after`] the first call sets it: now plus the
/// budget.
pub fn current() -> Option<Deadline> {
    current_with(Instant::now)
}

/// [`current`] for a caller that has just read the clock: a budget not started yet starts at
/// `now` (no second clock read).
pub fn current_at(now: Instant) -> Option<Deadline> {
    current_with(|| now)
}

fn current_with(now: impl FnOnce() -> Instant) -> Option<Deadline> {
    CURRENT.with(|c| match c.get()? {
        Slot::At(d) => Some(d),
        pending => {
            let d = pending.start(now());
            c.set(Some(Slot::At(d)));
            Some(d)
        }
    })
}

/// Runs `fut` with `deadline` as the [`current`] deadline (the earlier one, if an enclosing scope
/// has one already). It does not cut the future: the caller does that with its runtime's timer.
pub fn scope<F: Future>(deadline: Deadline, fut: F) -> Scoped<F> {
    Scoped {
        slot: Slot::At(deadline),
        inner: fut,
    }
}

/// [`scope`] with a deadline `budget` after the first time something under it asks for the
/// deadline ([`current`], [`current_at`]); `setting` names the budget's configuration, as in
/// [`Deadline::after`]. A call that never asks reads no clock for it. See
/// [Started on first use](self#started-on-first-use).
pub fn scope_after<F: Future>(budget: Duration, setting: &'static str, fut: F) -> Scoped<F> {
    Scoped {
        slot: Slot::After { budget, setting },
        inner: fut,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`scope`] and [`scope_after`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        slot: Slot,
        #[pin]
        inner: F,
    }
}

/// Restores the enclosing scope's slot when a poll ends, even by a panic.
struct Restore(Option<Slot>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let outer = CURRENT.with(Cell::get);
        let (effective, restore) = match outer {
            None => (*this.slot, None),
            Some(o) => {
                // Nested: the earlier deadline wins, so both must be instants. A pending one
                // starts now (one clock read, only when one is pending), and the enclosing
                // scope gets its started deadline back on the way out.
                let mut now = None;
                let mut start = |slot: Slot| match slot {
                    Slot::At(d) => d,
                    pending => pending.start(*now.get_or_insert_with(Instant::now)),
                };
                let outer = start(o);
                let own = start(*this.slot);
                *this.slot = Slot::At(own);
                (Slot::At(outer.min(own)), Some(Slot::At(outer)))
            }
        };
        CURRENT.with(|c| c.set(Some(effective)));
        let restore = Restore(restore);
        let out = this.inner.poll(cx);
        if matches!(this.slot, Slot::After { .. }) {
            // Alone on the thread (not nested): whatever started the budget during this poll
            // left the deadline in the thread-local; later polls must see the same instant.
            if let Some(started @ Slot::At(_)) = CURRENT.with(Cell::get) {
                *this.slot = started;
            }
        }
        drop(restore);
        out
    }
}

/// One library call bounded by its deadline: `fut` runs inside [`scope`]`(deadline, ..)`, and
/// when `timer` is given (a sleep of the runtime, ending at the deadline) it is also cut there:
/// once the timer fires before `fut` answers, the answer is `on_timeout()` (and `fut` is dropped
/// with the returned future). Without a timer (a store that ends its own calls at the deadline)
/// it is [`scope`].
///
/// A plain future, not an `async fn` of the caller: an `async fn` taking the call's future would
/// hold it twice (its argument, then the awaited scope), and moving a future that size is part of
/// every call's cost.
pub fn bound<F, T, G>(deadline: Deadline, timer: Option<T>, fut: F, on_timeout: G) -> Bound<F, T, G>
where
    F: Future,
    T: Future<Output = ()>,
    G: FnOnce() -> F::Output,
{
    bound_scoped(scope(deadline, fut), timer, on_timeout)
}

/// [`bound`] under [`scope_after`]: the deadline is `budget` after the first time something under
/// it asks for it. A `timer`, when given, is the runtime's sleep of `budget`, started with the
/// call; when it fires first the answer is `on_timeout(elapsed)`, `elapsed` counted from this
/// call (the only clock read here, and only with a timer). The managers' hot path: a call that
/// never asks for its deadline reads no clock for it.
pub fn bound_after<F, T, G>(
    budget: Duration,
    setting: &'static str,
    timer: Option<T>,
    fut: F,
    on_timeout: G,
) -> Bound<F, T, impl FnOnce() -> F::Output>
where
    F: Future,
    T: Future<Output = ()>,
    G: FnOnce(Duration) -> F::Output,
{
    let started = timer.is_some().then(Instant::now);
    bound_scoped(scope_after(budget, setting, fut), timer, move || {
        // Only a timer ends the call, and `started` was read with it.
        on_timeout(started.map_or(budget, |s| s.elapsed()))
    })
}

fn bound_scoped<F, T, G>(inner: Scoped<F>, timer: Option<T>, on_timeout: G) -> Bound<F, T, G>
where
    F: Future,
    T: Future<Output = ()>,
    G: FnOnce() -> F::Output,
{
    let state = match timer {
        None => BoundState::Untimed { inner },
        Some(timer) => BoundState::Timed {
            inner,
            timer,
            on_timeout: Some(on_timeout),
        },
    };
    Bound { state }
}

pin_project_lite::pin_project! {
    /// The future of [`bound`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Bound<F, T, G> {
        #[pin]
        state: BoundState<F, T, G>,
    }
}

pin_project_lite::pin_project! {
    #[project = BoundProj]
    enum BoundState<F, T, G> {
        // No timer of ours: the store ends its calls at the deadline.
        Untimed {
            #[pin]
            inner: Scoped<F>,
        },
        // Cut by the runtime's timer at the deadline; `on_timeout` is taken when it answers.
        Timed {
            #[pin]
            inner: Scoped<F>,
            #[pin]
            timer: T,
            on_timeout: Option<G>,
        },
    }
}

impl<F, T, G> Future for Bound<F, T, G>
where
    F: Future,
    T: Future<Output = ()>,
    G: FnOnce() -> F::Output,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project().state.project() {
            BoundProj::Untimed { inner } => inner.poll(cx),
            BoundProj::Timed {
                inner,
                timer,
                on_timeout,
            } => {
                // The call first: an answer ready at the deadline is still the answer.
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out);
                }
                match timer.poll(cx) {
                    // `None` only when polled again after answering, which the `Future` contract
                    // leaves open: it never answers again.
                    Poll::Ready(()) => match on_timeout.take() {
                        Some(answer) => Poll::Ready(answer()),
                        None => Poll::Pending,
                    },
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    /// Pending once, then ready: the scope must hold on every poll, not only the first.
    struct YieldOnce(bool);
    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    #[test]
    fn current_is_set_inside_the_scope_on_every_poll_and_only_there() {
        let d = Deadline::after(Duration::from_secs(5), "X");
        let (before, after) = block_on(scope(d, async {
            let before = current();
            YieldOnce(false).await;
            (before, current())
        }));
        assert_eq!(before, Some(d));
        assert_eq!(after, Some(d));
        assert_eq!(current(), None);
    }

    #[test]
    fn nested_scopes_see_the_earlier_deadline_and_restore_the_outer_one() {
        let long = Deadline::after(Duration::from_secs(50), "LONG");
        let short = Deadline::after(Duration::from_secs(1), "SHORT");
        let seen = block_on(scope(long, async {
            let inner_short = scope(short, async { current() }).await;
            let back = current();
            let inner_long = scope(long, async { current() });
            let inner_long = scope(short, inner_long).await;
            (inner_short, back, inner_long)
        }));
        assert_eq!(seen.0, Some(short));
        assert_eq!(seen.1, Some(long));
        assert_eq!(
            seen.2,
            Some(short),
            "an inner scope cannot extend the outer deadline"
        );
    }

    #[test]
    fn a_budget_starts_when_first_asked_and_keeps_that_instant_across_polls() {
        let budget = Duration::from_secs(5);
        let asked_at = Instant::now() + Duration::from_secs(3);
        let (first, again, later) = block_on(scope_after(budget, "X", async move {
            let first = current_at(asked_at);
            let again = current();
            YieldOnce(false).await;
            (first, again, current())
        }));
        let expected = Deadline::at(asked_at + budget, "X");
        assert_eq!(first, Some(expected), "started at the first question");
        assert_eq!(again, Some(expected), "not started again");
        assert_eq!(later, Some(expected), "the next poll sees the same instant");
        assert_eq!(current(), None);
    }

    #[test]
    fn a_budget_never_asked_for_is_never_started() {
        // Only observable from inside: a later question starts it then, not at the scope's
        // first poll.
        let budget = Duration::from_secs(5);
        let late = Instant::now() + Duration::from_secs(60);
        let seen = block_on(scope_after(budget, "X", async move {
            YieldOnce(false).await;
            YieldOnce(false).await;
            current_at(late)
        }));
        assert_eq!(seen, Some(Deadline::at(late + budget, "X")));
    }

    #[test]
    fn nested_budgets_start_together_and_the_enclosing_one_keeps_its_start() {
        let long = Duration::from_secs(50);
        let short = Duration::from_secs(1);
        let (inner, outer_after, outer_again) = block_on(scope_after(long, "LONG", async move {
            let inner = scope_after(short, "SHORT", async { current() }).await;
            let outer_after = current();
            YieldOnce(false).await;
            (inner, outer_after, current())
        }));
        let inner = inner.expect("inner deadline");
        let outer = outer_after.expect("outer deadline");
        assert_eq!(inner.setting(), "SHORT", "the earlier one wins");
        assert_eq!(outer.setting(), "LONG");
        assert_eq!(
            outer.instant() - inner.instant(),
            long - short,
            "both started at the inner scope's entry"
        );
        assert_eq!(
            outer_again,
            Some(outer),
            "the outer start survived the inner scope"
        );
    }

    #[test]
    fn a_budget_inside_a_deadline_cannot_extend_it() {
        let d = Deadline::after(Duration::from_secs(1), "OUTER");
        let seen = block_on(scope(
            d,
            scope_after(Duration::from_secs(60), "INNER", async { current() }),
        ));
        assert_eq!(seen, Some(d));
    }

    #[test]
    fn remaining_and_expiry() {
        let past = Deadline::at(Instant::now() - Duration::from_millis(1), "X");
        assert!(past.is_expired());
        assert_eq!(past.remaining(), Duration::ZERO);
        let future = Deadline::after(Duration::from_secs(60), "X");
        assert!(!future.is_expired());
        assert!(future.remaining() > Duration::from_secs(59));
        let huge = Deadline::after(Duration::MAX, "X");
        assert!(!huge.is_expired());
        let e = past.timeout_error("session create", Instant::now());
        assert!(e.is_transient());
        assert!(e.to_string().contains('X'), "{e}");
    }

    /// A timer that is never due (`Option<Never>` names the type of "no timer").
    type Never = std::future::Pending<()>;

    #[test]
    fn bound_without_a_timer_is_the_scope() {
        let d = Deadline::after(Duration::from_secs(5), "X");
        let seen = block_on(bound(
            d,
            None::<Never>,
            async {
                YieldOnce(false).await;
                current()
            },
            || panic!("no timer, no timeout"),
        ));
        assert_eq!(seen, Some(d));
        assert_eq!(current(), None);
    }

    #[test]
    fn bound_answers_on_timeout_when_the_timer_fires_first() {
        let d = Deadline::after(Duration::from_secs(5), "X");
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let flag = Flag(dropped.clone());
        let call = async move {
            let _flag = flag;
            std::future::pending::<&str>().await
        };
        let fut = bound(d, Some(YieldOnce(false)), call, || "timed out");
        assert_eq!(block_on(fut), "timed out");
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            "the call is dropped with it"
        );
    }

    #[test]
    fn bound_after_answers_with_the_time_since_the_call_when_the_timer_fires() {
        let budget = Duration::from_secs(60);
        let bound_at = Instant::now();
        let fut = bound_after(
            budget,
            "X",
            Some(YieldOnce(false)),
            std::future::pending::<Duration>(),
            |elapsed| elapsed,
        );
        let elapsed = block_on(fut);
        // Counted from the call (well under the budget this test never waited), not assumed.
        assert!(elapsed <= bound_at.elapsed(), "{elapsed:?}");
        // Without a timer nothing ends the call but the call.
        let answer = block_on(bound_after(
            budget,
            "X",
            None::<Never>,
            async { Duration::ZERO },
            |_| panic!("no timer, no timeout"),
        ));
        assert_eq!(answer, Duration::ZERO);
    }

    #[test]
    fn bound_prefers_the_answer_ready_at_the_deadline() {
        let d = Deadline::after(Duration::from_secs(5), "X");
        let answer = block_on(bound(
            d,
            Some(std::future::ready(())),
            async { "answer" },
            || "timed out",
        ));
        assert_eq!(answer, "answer");
    }
}
