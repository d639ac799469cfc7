//! [`Striped`]: a counter that the runtime's threads update without writing a shared cache line.
//!
//! A plain `AtomicU64` counted on every call (a hit counter, the calls in flight) is one cache
//! line that every core writes in turn; each write then waits for the line to come over from the
//! core that wrote it last, which on a busy multi-threaded runtime costs more than the rest of a
//! near-cache hit. A `Striped` counter keeps [`CELLS`] cells, each on a cache line of its own;
//! a thread always adds to the same cell, and a reader adds the cells up. Reads are rarer than
//! writes (snapshots, `close`), so that is the side that pays.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Cells of a [`Striped`] counter: more than the threads of a small runtime, so that each thread
/// usually has a cell to itself (threads beyond share cells, which stays correct).
pub const CELLS: usize = 8;

/// One cell, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Cell(AtomicU64);

/// A counter split over [`CELLS`] cache lines; see the [module documentation](self).
#[derive(Debug, Default)]
pub struct Striped {
    cells: [Cell; CELLS],
}

impl Striped {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cell of the calling thread (fixed for the thread's life).
    fn cell() -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static CELL: usize = NEXT.fetch_add(1, Ordering::Relaxed) % CELLS;
        }
        CELL.with(|c| *c)
    }

    /// Adds `n` (a statistic: no ordering with other memory).
    #[inline]
    pub fn add(&self, n: u64) {
        self.cells[Self::cell()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one in the calling thread's cell and returns the cell, for [`Striped::leave`]: a
    /// gauge of things in progress (ordered with the caller's other memory accesses).
    pub fn enter(&self) -> usize {
        let cell = Self::cell();
        self.cells[cell].0.fetch_add(1, Ordering::AcqRel);
        cell
    }

    /// Takes back the one [`Striped::enter`] added in `cell`, from whichever thread.
    pub fn leave(&self, cell: usize) {
        self.cells[cell % CELLS].0.fetch_sub(1, Ordering::AcqRel);
    }

    /// The sum of the cells: exact when nothing changes it meanwhile; for a counter that only grows,
    /// between its values at the start and at the end of the read.
    pub fn sum(&self) -> u64 {
        self.cells
            .iter()
            .fold(0u64, |s, c| s.wrapping_add(c.0.load(Ordering::Acquire)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_from_many_threads_add_up() {
        let c = Striped::new();
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        c.add(1);
                    }
                    c.add(5);
                });
            }
        });
        assert_eq!(c.sum(), 12 * 1005);
    }

    #[test]
    fn a_gauge_entered_on_some_threads_is_left_on_others() {
        let gauge = Striped::new();
        // Entered on 12 threads (more than the cells), left on others.
        let cells: Vec<usize> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..12).map(|_| s.spawn(|| gauge.enter())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(gauge.sum(), 12);
        std::thread::scope(|s| {
            for cell in &cells[..5] {
                s.spawn(|| gauge.leave(*cell));
            }
        });
        assert_eq!(gauge.sum(), 7);
        for cell in &cells[5..] {
            gauge.leave(*cell);
        }
        assert_eq!(gauge.sum(), 0);
    }
}
