//! The load generator: `C` tasks on one tokio runtime calling one client as fast as it answers
//! for a fixed time, each call timed into a [`Histogram`]; and the schedule that interleaves the
//! clients round by round so that drift of the machine (other processes, CPU frequency, the
//! server's memory growing) spreads evenly over all of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hist::Histogram;
use crate::workload::Rng;

/// One benchmarked client: `op` performs one operation chosen from the random number `r`.
///
/// Implementations are called through generics, so the loop around `op` is compiled per client
/// and costs every client the same.
pub trait Client: Send + Sync + 'static {
    /// One operation; `r` picks the operation and the key.
    fn op(&self, r: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// What one round of one client measured.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Operations completed (successful or not).
    pub ops: u64,
    /// Operations that returned an error.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Wall time from the start of the round until its last task finished.
    pub elapsed: Duration,
    /// Latency of the timed operations (every one, or a sample: see [`Timing`]).
    pub hist: Histogram,
    /// CPU time the Redis server spent during the rounds (`INFO cpu` delta), when measured.
    pub server_cpu: Option<Duration>,
    /// CPU time this process spent during the rounds (all its threads), when measured.
    pub client_cpu: Option<Duration>,
    /// ops/s of each absorbed round, in the order of the rounds (empty for a single round).
    pub rounds: Vec<f64>,
}

impl Measured {
    /// Adds another round's figures to these.
    pub fn absorb(&mut self, other: Measured) {
        if other.rounds.is_empty() {
            self.rounds.push(other.ops_per_s());
        } else {
            self.rounds.extend_from_slice(&other.rounds);
        }
        self.ops += other.ops;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.hist.merge(&other.hist);
        self.server_cpu = match (self.server_cpu, other.server_cpu) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.client_cpu = match (self.client_cpu, other.client_cpu) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    /// This process's CPU time per operation, microseconds, when measured.
    pub fn client_us_per_op(&self) -> Option<f64> {
        let cpu = self.client_cpu?;
        (self.ops > 0).then(|| cpu.as_secs_f64() * 1e6 / self.ops as f64)
    }

    /// Server CPU time per operation, microseconds, when measured.
    pub fn server_us_per_op(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.ops > 0).then(|| cpu.as_secs_f64() * 1e6 / self.ops as f64)
    }

    /// Operations per second over the measured time.
    pub fn ops_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }
}

/// How many of a client's calls are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Every call (clients that make a round trip: 20 µs and more per call).
    Every,
    /// One call in [`Timing::SAMPLED_EVERY`] (in-process clients, and near clients, most of
    /// whose calls are in-process hits). Two reads of the clock
    /// (`clock_gettime` through the vDSO, which orders the pipeline around its time-stamp read)
    /// were about half of a `memory` call's measured time when every call was timed (0.46 against
    /// 0.22 µs at C=1): that work is the harness's, not the client's. Every call counts in the
    /// throughput either way.
    Sampled,
}

impl Timing {
    /// The stride of [`Timing::Sampled`].
    pub const SAMPLED_EVERY: u64 = 16;

    fn every(self) -> u64 {
        match self {
            Timing::Every => 1,
            Timing::Sampled => Self::SAMPLED_EVERY,
        }
    }
}

/// Runs `concurrency` tasks calling `client` until `duration` has passed; every task finishes the
/// operation it is in. Calls are timed as `timing` says, and a task checks the round's end after
/// each timed call. Fails only when a task panics.
pub async fn run_round<C: Client>(
    client: Arc<C>,
    concurrency: usize,
    duration: Duration,
    seed: u64,
    timing: Timing,
) -> anyhow::Result<Measured> {
    let every = timing.every();
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|t| {
            let client = Arc::clone(&client);
            let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(t as u64));
            tokio::spawn(async move {
                let mut m = Measured::default();
                loop {
                    // The op picked for timing does not depend on its outcome, so the timed
                    // calls are a fair sample of all of them.
                    let t0 = (m.ops % every == 0).then(Instant::now);
                    let res = client.op(rng.next_u64()).await;
                    m.ops += 1;
                    if let Err(e) = res {
                        m.errors += 1;
                        if m.first_error.is_none() {
                            m.first_error = Some(format!("{e:#}"));
                        }
                    }
                    if let Some(t0) = t0 {
                        let t1 = Instant::now();
                        m.hist.record_duration(t1 - t0);
                        if t1 >= deadline {
                            m.elapsed = t1 - start;
                            return m;
                        }
                    }
                }
            })
        })
        .collect();
    let mut total = Measured::default();
    let mut longest = Duration::ZERO;
    for task in tasks {
        let m = task
            .await
            .map_err(|e| anyhow::anyhow!("a load task failed: {e}"))?;
        longest = longest.max(m.elapsed);
        total.absorb(m);
    }
    total.elapsed = longest;
    // One round: the per-task figures absorbed above are not rounds.
    total.rounds.clear();
    Ok(total)
}

/// A boxed future of one round, so that clients of different types fit one schedule.
pub type RoundFuture = Pin<Box<dyn Future<Output = anyhow::Result<Measured>> + Send>>;

/// A client in the schedule: its name and how to run one round of it.
pub struct Entry {
    /// The client's name in the results (`raw`, `store`, ...).
    pub name: &'static str,
    /// Runs one round: `(concurrency, duration, seed)`.
    pub run: Box<dyn Fn(usize, Duration, u64) -> RoundFuture + Send + Sync>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("name", &self.name).finish()
    }
}

impl Entry {
    /// Wraps a client that makes round trips: every call is timed.
    pub fn new<C: Client>(name: &'static str, client: C) -> Entry {
        Self::timed(name, client, Timing::Every)
    }

    /// Wraps a client whose calls are in process (or mostly: the near clients' hits): one call
    /// in [`Timing::SAMPLED_EVERY`] is timed.
    pub fn in_process<C: Client>(name: &'static str, client: C) -> Entry {
        Self::timed(name, client, Timing::Sampled)
    }

    fn timed<C: Client>(name: &'static str, client: C, timing: Timing) -> Entry {
        let client = Arc::new(client);
        Entry {
            name,
            run: Box::new(move |c, d, seed| {
                Box::pin(run_round(Arc::clone(&client), c, d, seed, timing))
            }),
        }
    }
}

/// How long and how often each (client, concurrency) cell runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Concurrency levels, in order.
    pub concurrency: &'static [usize],
    /// Measured rounds per cell, in [`round_order`] (an even count balances every pair of clients).
    pub rounds: usize,
    /// Length of one measured round.
    pub round: Duration,
    /// Length of the unmeasured warm-up round each client gets at each concurrency level.
    pub warmup: Duration,
}

impl Plan {
    /// The wall time the plan takes with `clients` clients (not counting setup).
    pub fn estimate(&self, clients: usize) -> Duration {
        let per_level = self.warmup + self.round * self.rounds as u32;
        per_level * (clients * self.concurrency.len()) as u32
    }
}

/// One (client, concurrency) cell of the results.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Client name.
    pub client: &'static str,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// Everything measured over all rounds.
    pub measured: Measured,
}

/// Reads the CPU time the server has used so far (for Redis: `used_cpu_sys + used_cpu_user` of
/// `INFO cpu`), so that a round's delta divided by its operations is the server CPU per operation.
pub trait CpuProbe: Send + Sync {
    /// The server's CPU time since it started.
    fn cpu(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<Duration>> + Send + '_>>;
}

/// The order in which the `n` clients run in round `round`: rounds go in pairs, the first of a
/// pair runs the schedule order rotated by two clients per pair, the second runs that same order
/// backwards. The rotation spreads drift over all clients; the reversal makes each client of any
/// pair (`store` and `raw`, say) run before the other in exactly one round of each pair, so that
/// whatever the client run just before leaves behind (a busier allocator, a server still flushing
/// replies, a core another tenant just took) and any steady drift fall on both sides of the pair's
/// median instead of always on the one run second.
pub fn round_order(n: usize, round: usize) -> impl Iterator<Item = usize> {
    let rotation = round - round % 2;
    (0..n).map(move |k| {
        let k = if round % 2 == 1 { n - 1 - k } else { k };
        (k + rotation) % n
    })
}

/// Runs the plan: for each concurrency level, a warm-up round per client, then `rounds` rounds in
/// which every client runs once, in [`round_order`]. With a `probe`, every
/// measured round also records the server CPU it cost. `progress` is told about each finished
/// round.
pub async fn run_plan(
    entries: &[Entry],
    plan: &Plan,
    probe: Option<&dyn CpuProbe>,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> anyhow::Result<Vec<Cell>> {
    let mut cells = Vec::new();
    let mut seed = 1u64;
    for &c in plan.concurrency {
        for e in entries {
            seed += 1;
            (e.run)(c, plan.warmup, seed).await?;
        }
        let mut acc: Vec<Measured> = entries.iter().map(|_| Measured::default()).collect();
        for round in 0..plan.rounds {
            for i in round_order(entries.len(), round) {
                seed += 1;
                let before = match probe {
                    Some(p) => Some(p.cpu().await?),
                    None => None,
                };
                let client_before = crate::env::process_cpu();
                let mut m = (entries[i].run)(c, plan.round, seed).await?;
                m.client_cpu = client_before
                    .zip(crate::env::process_cpu())
                    .map(|(b, a)| a.saturating_sub(b));
                if let (Some(p), Some(before)) = (probe, before) {
                    m.server_cpu = Some(p.cpu().await?.saturating_sub(before));
                }
                acc[i].absorb(m);
                progress(entries[i].name, c, round);
            }
        }
        for (e, m) in entries.iter().zip(acc) {
            cells.push(Cell {
                client: e.name,
                concurrency: c,
                measured: m,
            });
        }
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counting(AtomicU64);

    impl Client for Counting {
        async fn op(&self, r: u64) -> anyhow::Result<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
            if r % 10 == 0 {
                anyhow::bail!("every tenth fails");
            }
            Ok(())
        }
    }

    #[test]
    fn every_round_runs_each_client_once_and_each_of_two_clients_runs_first_half_the_time() {
        let n = 16;
        let rounds = 10;
        // (a, b) -> rounds in which a ran before b.
        let mut first = std::collections::HashMap::<(usize, usize), usize>::new();
        for round in 0..rounds {
            let order: Vec<usize> = round_order(n, round).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..n).collect::<Vec<_>>(),
                "round {round}: {order:?}"
            );
            for (i, &a) in order.iter().enumerate() {
                for &b in &order[i + 1..] {
                    *first.entry((a, b)).or_default() += 1;
                }
            }
        }
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                assert_eq!(
                    first.get(&(a, b)),
                    Some(&(rounds / 2)),
                    "clients {a} and {b}"
                );
            }
        }
        // The rotation moves the first client on.
        let starts: Vec<usize> = (0..rounds)
            .map(|r| round_order(n, r).next().unwrap())
            .collect();
        assert_eq!(starts, [0, 15, 2, 1, 4, 3, 6, 5, 8, 7]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rounds_count_every_operation_and_error() {
        let client = Arc::new(Counting(AtomicU64::new(0)));
        let m = run_round(
            Arc::clone(&client),
            4,
            Duration::from_millis(30),
            7,
            Timing::Every,
        )
        .await
        .unwrap();
        assert_eq!(m.ops, client.0.load(Ordering::Relaxed));
        assert_eq!(m.hist.count(), m.ops);
        assert!(m.errors > 0 && m.errors < m.ops, "{m:?}");
        assert_eq!(m.first_error.as_deref(), Some("every tenth fails"));
        assert!(m.elapsed >= Duration::from_millis(30));
        assert!(
            m.rounds.is_empty(),
            "one round, not one per task: {:?}",
            m.rounds
        );
        assert!(m.ops_per_s() > 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sampled_rounds_count_every_operation_and_time_one_in_sixteen() {
        let client = Arc::new(Counting(AtomicU64::new(0)));
        let tasks = 4;
        let m = run_round(
            Arc::clone(&client),
            tasks,
            Duration::from_millis(30),
            7,
            Timing::Sampled,
        )
        .await
        .unwrap();
        assert_eq!(m.ops, client.0.load(Ordering::Relaxed));
        assert!(m.errors > 0, "{m:?}");
        // Each task times its calls 0, 16, 32, ... and stops after a timed call past the end: it
        // made 16k + 1 calls and timed k + 1 of them.
        let every = Timing::SAMPLED_EVERY;
        assert_eq!((m.ops - tasks as u64) % every, 0, "{m:?}");
        assert_eq!(
            m.hist.count(),
            (m.ops - tasks as u64) / every + tasks as u64
        );
        assert!(m.elapsed >= Duration::from_millis(30));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_plan_measures_every_cell() {
        let entries = [
            Entry::new("a", Counting(AtomicU64::new(0))),
            Entry::new("b", Counting(AtomicU64::new(0))),
        ];
        let plan = Plan {
            concurrency: &[1, 3],
            rounds: 2,
            round: Duration::from_millis(5),
            warmup: Duration::from_millis(1),
        };
        let mut rounds = 0;
        let cells = run_plan(&entries, &plan, None, &mut |_, _, _| rounds += 1)
            .await
            .unwrap();
        assert_eq!(rounds, 2 * 2 * 2);
        let names: Vec<_> = cells.iter().map(|c| (c.client, c.concurrency)).collect();
        assert_eq!(names, [("a", 1), ("b", 1), ("a", 3), ("b", 3)]);
        assert!(cells.iter().all(|c| c.measured.ops > 0));
        // Each cell keeps the ops/s of each of its rounds, for the paired ratios of the report.
        assert!(cells
            .iter()
            .all(|c| c.measured.rounds.len() == 2 && c.measured.rounds.iter().all(|r| *r > 0.0)));
    }
}
