// The window's target and protected's share, one of each per cache, shared by all of its shards.
//
// Ghost hits (`ghost.rs`) decide in each shard whether the window should grow or shrink, and
// whether protected's share of the main space should; the shards then move one cache-wide target
// and one cache-wide share, and every shard applies them to its own capacity. A large cache's
// shards each see a fraction of the traffic: states of their own would be independent random
// walks, each moved by a fraction of the evidence, so the cache would adapt slower the more
// shards it has, and its hit ratio would depend on the machine's core count.
//
// The shards never take each other's locks, and reads do not touch it: a shard adds up its ghost
// hits under its write lock and adds their net here every `NUDGE_EVERY` misses, one
// `fetch_update` on one cache line; it then compares the target with the one it applied last.
//
// With one shard this is exactly a per-shard state: the window target is kept in units of the
// cache's capacity, which is the shard's, and scaled by exactly 1.0.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use super::shift::{Counts, ShiftDetector, Verdict};

pub(crate) struct SharedWindow {
    /// The cache's capacity (sum of the shards').
    capacity: u64,
    /// The window's target, in units of the cache's capacity, as `f64` bits.
    window: CachePadded<AtomicU64>,
    /// Protected's share of the main space, as `f64` bits.
    protected: CachePadded<AtomicU64>,
    /// Moves the target at once when the hot set is replaced (`shift.rs`).
    shift: CachePadded<Mutex<ShiftDetector>>,
}

impl SharedWindow {
    /// `window` is the initial target, in units of `capacity`; `protected` protected's initial
    /// share of the main space.
    pub(crate) fn new(capacity: u64, window: f64, protected: f64) -> Self {
        SharedWindow {
            capacity,
            window: CachePadded::new(AtomicU64::new(window.to_bits())),
            protected: CachePadded::new(AtomicU64::new(protected.to_bits())),
            shift: CachePadded::new(Mutex::new(ShiftDetector::new(capacity))),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The current window target (units of the cache's capacity), as bits.
    #[inline]
    pub(crate) fn window_bits(&self) -> u64 {
        self.window.load(Ordering::Relaxed)
    }

    /// Protected's current share of the main space.
    #[inline]
    pub(crate) fn protected(&self) -> f64 {
        f64::from_bits(self.protected.load(Ordering::Relaxed))
    }

    /// Moves protected's share by `delta`, within 0..=1, and returns the share it leaves.
    pub(crate) fn move_protected(&self, delta: f64) -> f64 {
        let moved = |p: u64| (f64::from_bits(p) + delta).clamp(0.0, 1.0);
        match self
            .protected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(moved(p).to_bits())
            }) {
            Ok(old) | Err(old) => moved(old),
        }
    }

    /// Adds a shard's `counts` to the shift detector, `entries` being how many entries the cache
    /// holds, and moves the target if the detector says so. `false` (nothing taken) if another
    /// shard is reporting: the caller keeps its counts for its next report.
    pub(crate) fn report(&self, counts: Counts, entries: u64) -> bool {
        let Some(mut shift) = self.shift.try_lock() else {
            return false;
        };
        let target = f64::from_bits(self.window_bits());
        let verdict = shift.report(counts, entries, target);
        drop(shift);
        match verdict {
            Some(Verdict::Jump(to)) => self.move_window(|w| w.max(to)),
            Some(Verdict::Back(to)) => self.move_window(|w| w.min(to)),
            None => {}
        }
        true
    }

    /// Moves the window by `delta` (units of the cache's capacity), within the capacity, and
    /// no farther than `lo` when moving down or `hi` when moving up: a target already beyond
    /// that bound stays where it is.
    pub(crate) fn nudge(&self, delta: f64, lo: f64, hi: f64) {
        self.move_window(|w| {
            if delta > 0.0 {
                (w + delta).min(hi.max(w))
            } else {
                (w + delta).max(lo.min(w))
            }
        });
    }

    /// Replaces the window's target `w` with `moved(w)`, kept within the capacity (and at least
    /// one unit when the capacity has one).
    fn move_window(&self, moved: impl Fn(f64) -> f64) {
        let cap = self.capacity as f64;
        let _ = self
            .window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(
                    moved(f64::from_bits(w))
                        .clamp(1.0_f64.min(cap), cap)
                        .to_bits(),
                )
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nudges_stay_within_the_capacity() {
        let w = SharedWindow::new(100, 1.0, 0.8);
        let free = (f64::NEG_INFINITY, f64::INFINITY);
        w.nudge(-5.0, free.0, free.1);
        assert_eq!(f64::from_bits(w.window_bits()), 1.0);
        w.nudge(30.5, free.0, free.1);
        assert_eq!(f64::from_bits(w.window_bits()), 31.5);
        w.nudge(1e9, free.0, free.1);
        assert_eq!(f64::from_bits(w.window_bits()), 100.0);
        assert_eq!(w.capacity(), 100);
    }

    #[test]
    fn nudges_stop_at_their_bound_and_never_push_past_it() {
        let w = SharedWindow::new(100, 10.0, 0.8);
        w.nudge(30.0, 0.0, 25.0);
        assert_eq!(f64::from_bits(w.window_bits()), 25.0);
        // Already above the next bound: moving up leaves it, moving down is free to it.
        w.nudge(5.0, 0.0, 20.0);
        assert_eq!(f64::from_bits(w.window_bits()), 25.0);
        w.nudge(-30.0, 15.0, 40.0);
        assert_eq!(f64::from_bits(w.window_bits()), 15.0);
        w.nudge(-1.0, 20.0, 40.0);
        assert_eq!(f64::from_bits(w.window_bits()), 15.0);
    }

    #[test]
    fn protected_moves_within_its_bounds() {
        let w = SharedWindow::new(100, 1.0, 0.8);
        assert_eq!(w.move_protected(0.15), 0.8 + 0.15);
        assert_eq!(w.move_protected(0.5), 1.0);
        assert_eq!(w.protected(), 1.0);
        assert_eq!(w.move_protected(-3.0), 0.0);
        assert_eq!(w.protected(), 0.0);
    }

    #[test]
    fn a_report_takes_counts_unless_another_shard_is_reporting() {
        let w = SharedWindow::new(10_000, 30.0, 0.8);
        let counts = Counts {
            requests: 100,
            misses: 10,
            returns: 0,
        };
        let held = w.shift.lock();
        assert!(!w.report(counts, 10_000));
        drop(held);
        assert!(w.report(counts, 10_000));
        assert_eq!(f64::from_bits(w.window_bits()), 30.0);
    }

    #[test]
    fn a_shift_moves_the_target_and_a_judged_jump_brings_it_back() {
        let w = SharedWindow::new(1_000, 3.0, 0.8);
        let slice = |miss: u64, returns: u64| Counts {
            requests: 512,
            misses: miss,
            returns,
        };
        // Settle at a miss ratio of 1/8, then a shift to 3/4 with returns.
        for _ in 0..64 {
            assert!(w.report(slice(64, 0), 1_000));
        }
        assert_eq!(f64::from_bits(w.window_bits()), 3.0);
        w.report(slice(384, 20), 1_000);
        assert_eq!(f64::from_bits(w.window_bits()), 800.0);
        // The ghosts move it meanwhile; after a turnover at the old ratio it goes back to
        // where it jumped from.
        w.nudge(-50.0, f64::NEG_INFINITY, f64::INFINITY);
        let mut slices = 0;
        while f64::from_bits(w.window_bits()) > 3.0 {
            w.report(slice(64, 0), 1_000);
            slices += 1;
            assert!(slices <= 16, "never went back");
        }
        assert_eq!(f64::from_bits(w.window_bits()), 3.0);
    }

    #[test]
    fn a_cache_of_capacity_zero_keeps_a_window_of_zero() {
        let w = SharedWindow::new(0, 0.0, 0.8);
        w.nudge(3.0, 0.0, 10.0);
        assert_eq!(f64::from_bits(w.window_bits()), 0.0);
    }
}
