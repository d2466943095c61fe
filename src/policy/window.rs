// The window's target, one per cache, shared by all of its shards.
//
// Ghost sizing (`ghost.rs`) decides in each shard whether the window should grow or shrink; the
// shards then move one cache-wide target, and every shard applies it as the same share of its own
// capacity. A large cache's shards each see an eighth of the traffic: windows of their own would
// be independent random walks.
//
// The shards never take each other's locks, and reads do not touch it:
// - A shard counts its ghost hits in its own policy (under its write lock) and every
//   `NUDGE_EVERY` misses adds their net to the shared target: one `fetch_update` on one cache
//   line per 16 misses of a shard.
// - Each shard compares the target with the value it last applied when it nudges, and resizes
//   its window when it changed.
//
// With one shard this is exactly a per-shard window: the target is kept in units of the cache's
// capacity, which is the shard's, and scaled by exactly 1.0.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

pub(crate) struct SharedWindow {
    /// The cache's capacity (sum of the shards').
    capacity: u64,
    /// The window's target, in units of the cache's capacity, as `f64` bits.
    window: CachePadded<AtomicU64>,
    /// Where the cache is in its CLOCK start (`Policy::start_window`): `NO_START`, `BEGUN` (a
    /// shard voted for it), `ARMED` (the target reached CLOCK mode) or `UNDONE`. Written three
    /// times at most.
    clock_start: AtomicU8,
}

const NO_START: u8 = 0;
const BEGUN: u8 = 1;
const ARMED: u8 = 2;
const UNDONE: u8 = 3;

impl SharedWindow {
    /// `window` is the initial target, in units of `capacity`.
    pub(crate) fn new(capacity: u64, window: f64) -> Self {
        SharedWindow {
            capacity,
            window: CachePadded::new(AtomicU64::new(window.to_bits())),
            clock_start: AtomicU8::new(NO_START),
        }
    }

    /// A shard voted for a CLOCK start and moved the target up by its share (see
    /// `lost_clock_start`). Returns `false`, and the shard must not move the target, once a
    /// CLOCK start was undone: a shard that fills late does not start it again.
    pub(crate) fn begin_clock_start(&self) -> bool {
        let _ = self.clock_start.compare_exchange(
            NO_START,
            BEGUN,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.clock_start.load(Ordering::Relaxed) != UNDONE
    }

    /// Follows a CLOCK start with the target's moves. Once the shards' votes have taken the
    /// target above `clock` (the CLOCK mode's threshold), the first time it is back at or below
    /// it the start was a losing bet: the target goes back to `initial`, where it would have been
    /// without the start, and this returns `true` (to one caller). Otherwise `false`. (While the
    /// votes are still coming in, a target below `clock` is no verdict: with 8 shards, the first
    /// vote alone moves it to 13.5%.)
    pub(crate) fn lost_clock_start(&self, clock: f64, initial: f64) -> bool {
        let state = self.clock_start.load(Ordering::Relaxed);
        if state != BEGUN && state != ARMED {
            return false;
        }
        let above = f64::from_bits(self.window_bits()) > clock;
        if state == BEGUN {
            if above {
                let _ = self.clock_start.compare_exchange(
                    BEGUN,
                    ARMED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            return false;
        }
        if above
            || self
                .clock_start
                .compare_exchange(ARMED, UNDONE, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        // A racing nudge is lost: this happens once per cache.
        self.window.store(initial.to_bits(), Ordering::Relaxed);
        true
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The current window target (units of the cache's capacity), as bits.
    #[inline]
    pub(crate) fn window_bits(&self) -> u64 {
        self.window.load(Ordering::Relaxed)
    }

    /// Moves the window by `delta` (units of the cache's capacity), within the capacity.
    pub(crate) fn nudge(&self, delta: f64) {
        let cap = self.capacity as f64;
        let _ = self
            .window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(
                    (f64::from_bits(w) + delta)
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
        let w = SharedWindow::new(100, 1.0);
        w.nudge(-5.0);
        assert_eq!(f64::from_bits(w.window_bits()), 1.0);
        w.nudge(30.5);
        assert_eq!(f64::from_bits(w.window_bits()), 31.5);
        w.nudge(1e9);
        assert_eq!(f64::from_bits(w.window_bits()), 100.0);
        assert_eq!(w.capacity(), 100);
    }

    #[test]
    fn a_clock_start_is_undone_once_when_the_target_falls_back() {
        let w = SharedWindow::new(100, 1.0);
        // No start, no undo.
        w.nudge(29.0); // 30
        assert!(!w.lost_clock_start(50.0, 1.0));
        // A first vote: below the threshold, but no verdict before the target has been above.
        assert!(w.begin_clock_start());
        w.nudge(10.0); // 40
        assert!(!w.lost_clock_start(50.0, 1.0));
        assert_eq!(f64::from_bits(w.window_bits()), 40.0);
        assert!(w.begin_clock_start());
        w.nudge(60.0); // 100
        assert!(!w.lost_clock_start(50.0, 1.0));
        w.nudge(-50.0); // 50: back at the threshold
        assert!(w.lost_clock_start(50.0, 1.0));
        assert_eq!(f64::from_bits(w.window_bits()), 1.0);
        // Once only: later moves of the target are ghost sizing's, and a late vote is refused.
        assert!(!w.begin_clock_start());
        w.nudge(70.0);
        assert!(!w.lost_clock_start(50.0, 1.0));
        w.nudge(-40.0);
        assert!(!w.lost_clock_start(50.0, 1.0));
        assert_eq!(f64::from_bits(w.window_bits()), 31.0);
    }

    #[test]
    fn a_cache_of_capacity_zero_keeps_a_window_of_zero() {
        let w = SharedWindow::new(0, 0.0);
        w.nudge(3.0);
        assert_eq!(f64::from_bits(w.window_bits()), 0.0);
    }
}
