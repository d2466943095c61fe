// The shift detector: one per cache, beside the window's target (`window.rs`).
//
// The ghosts move the window a step per hit, which follows a workload that drifts but not one
// whose hot set is replaced at once: the window the old phase chose is small, the new keys lose
// their duels to entries nobody reads any more, and the window grows back one step per ghost hit
// while the hit ratio stays down. The detector sees such a shift in two figures, over the last
// period of requests:
//
// - the miss ratio rose well above its long-run average (`RISE_FACTOR` times it, and by
//   `RISE_POINTS` or more): something changed;
// - at least `RETURNS` of the misses of the latest quarter period (the slice that shows the
//   rise) were on keys the window had let go shortly before (window ghost hits, counted or not
//   against the window's credit): the new keys are being reused, and a larger window would have
//   kept them. A scan, or any burst of keys read once, misses as much but sends nothing back.
//
// On a shift the window's target jumps to the largest window, so that the new hot set is held
// by recency while the frequency sketch learns it. After one turnover (as many misses as the
// cache holds entries, and a whole period), the jump is undone if the miss ratio is no longer
// risen: the new hot set is loaded and the filter can guard it. If it is still risen, the phase
// is one a large window serves, and the target stays for the ghosts to move from there.
//
// The miss ratio is measured over the events the policy records: misses, and reads that raise
// an entry's access count (`Entry::touch`). A read of an entry whose count is at its maximum
// (15 reads since the policy last looked at it) writes nothing, so readers of a hot entry pay
// no store for the detector; the detector compares the ratio with its own average, so what it
// leaves out it leaves out of both. Readers count in their shard (`ShardState::hit`), writers
// their misses; a shard adds its counts here with every nudge (`Policy::nudge`), skipping a turn
// if another shard holds the lock, so no thread ever waits on the detector.

use super::MAX_WINDOW;

/// The miss ratio of a period must exceed its long-run average by this factor to count as a
/// rise. Tuned, with `RISE_POINTS`: the points alone fire on ordinary phases of caches that
/// miss often (P3 and P12 at 65,536 entries), the factor alone on some that hit often
/// (cache2k-orm-busy at 16,384).
const RISE_FACTOR: f64 = 1.5;

/// ... and by this much (a fraction of the requests). Tuned, with `RISE_FACTOR`.
const RISE_POINTS: f64 = 0.15;

/// The share of a slice's misses that must be window ghost hits for a rise to be a shift.
/// Tuned: half as much fires on some of P12's bursts, where a large window loses; twice as
/// much misses the shifts that come while the window is already large.
const RETURNS: f64 = 0.02;

/// A period lasts as many requests as half the entries the cache holds. Tuned: a whole
/// capacity's worth sees a shift too late to save the turnover after it.
const PERIOD_SHARE: f64 = 0.5;

/// The fewest requests in a period, so that a small cache measures its miss ratio to within
/// about a point (the standard error of a ratio over n requests is at most 0.5 / sqrt(n)).
/// Tuned as a bound on noise: 1,024 fires on a small cache's ordinary phases (sprite at 128
/// entries), 4,096 sees the shifts of a small cache late.
const MIN_PERIOD: u64 = 2048;

/// A period is measured in this many slices, and judged at the end of each slice over the last
/// period: a shift is seen a slice after it shows, not a whole period. (Not tuned: the cost of
/// a finer resolution is the ring below.)
const SLICES: usize = 4;

/// The long-run average is a moving average over about this many periods (eight capacities'
/// worth of requests); no jump is made before the detector has seen as many. Chosen once, not
/// tuned.
const AVERAGE_PERIODS: u32 = 16;

/// Counts a shard has not yet added to the detector.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub(crate) struct Counts {
    /// Misses and recorded reads (see the module's notes).
    pub(crate) requests: u64,
    /// Misses (new keys inserted).
    pub(crate) misses: u64,
    /// Window ghost hits among the misses (each sampled ghost standing for as many keys as it
    /// samples).
    pub(crate) returns: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, other: Counts) {
        self.requests += other.requests;
        self.misses += other.misses;
        self.returns += other.returns;
    }

    /// Misses over requests, within 0..=1 (the readers' counts are racy and may fall short);
    /// 0 for no requests.
    fn miss_ratio(&self) -> f64 {
        self.misses.min(self.requests) as f64 / self.requests.max(1) as f64
    }
}

/// A jump not yet judged: the target it replaced, and the misses left before it is.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Jump {
    from: f64,
    misses_left: u64,
    /// Slices before the period judged is entirely after the jump.
    slices_left: usize,
}

/// What the detector decided at the end of a slice: a new window target, in units of the
/// cache's capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// A shift: the target becomes at least this.
    Jump(f64),
    /// A jump judged over: the target, if larger, goes back to this.
    Back(f64),
}

#[derive(Debug)]
pub(crate) struct ShiftDetector {
    /// The cache's capacity (the window target's unit).
    capacity: f64,
    /// Counts of the slice in progress.
    slice: Counts,
    /// The last `SLICES` slices (a ring; `next` is the oldest).
    slices: [Counts; SLICES],
    next: usize,
    /// The long-run miss ratio; `None` before the first period ends.
    average: Option<f64>,
    /// Slices seen, up to `AVERAGE_PERIODS * SLICES`.
    seen: u32,
    jump: Option<Jump>,
}

impl ShiftDetector {
    pub(crate) fn new(capacity: u64) -> Self {
        ShiftDetector {
            capacity: capacity as f64,
            slice: Counts::default(),
            slices: [Counts::default(); SLICES],
            next: 0,
            average: None,
            seen: 0,
            jump: None,
        }
    }

    /// Adds a shard's `counts`; `entries` is how many entries the cache holds, `target` the
    /// window's current target. At the end of a slice, returns what the target should become,
    /// if it should move.
    pub(crate) fn report(&mut self, counts: Counts, entries: u64, target: f64) -> Option<Verdict> {
        self.slice.add(counts);
        let length = ((entries as f64 * PERIOD_SHARE) as u64).max(MIN_PERIOD);
        if self.slice.requests * (SLICES as u64) < length {
            return None;
        }
        let slice = std::mem::take(&mut self.slice);
        self.slices[self.next] = slice;
        self.next = (self.next + 1) % SLICES;
        let mut period = Counts::default();
        for s in &self.slices {
            period.add(*s);
        }
        let ratio = period.miss_ratio();
        let mut verdict = None;
        let risen = self
            .average
            .is_some_and(|a| ratio > a * RISE_FACTOR && ratio > a + RISE_POINTS);
        if let Some(jump) = &mut self.jump {
            jump.misses_left = jump.misses_left.saturating_sub(slice.misses);
            jump.slices_left = jump.slices_left.saturating_sub(1);
            if jump.misses_left == 0 && jump.slices_left == 0 {
                if !risen && target > jump.from {
                    verdict = Some(Verdict::Back(jump.from));
                }
                self.jump = None;
            }
        } else if risen
            && self.seen >= AVERAGE_PERIODS * SLICES as u32
            && slice.returns as f64 >= RETURNS * slice.misses as f64
        {
            let to = self.capacity * MAX_WINDOW;
            if target < to {
                verdict = Some(Verdict::Jump(to));
                self.jump = Some(Jump {
                    from: target,
                    misses_left: entries.max(1),
                    slices_left: SLICES,
                });
            }
        }
        let slice_ratio = slice.miss_ratio();
        self.average = Some(match self.average {
            None => slice_ratio,
            Some(a) => a + (slice_ratio - a) / (f64::from(AVERAGE_PERIODS) * SLICES as f64),
        });
        self.seen = (self.seen + 1).min(AVERAGE_PERIODS * SLICES as u32);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: u64 = 10_000;
    /// A slice of a full cache of `CAP`: a quarter of half of it.
    const SLICE: u64 = CAP / 2 / SLICES as u64;

    /// `requests` at miss ratio `miss`, `returns` of the misses window ghost hits.
    fn counts(requests: u64, miss: f64, returns: f64) -> Counts {
        let misses = (requests as f64 * miss) as u64;
        Counts {
            requests,
            misses,
            returns: (misses as f64 * returns) as u64,
        }
    }

    /// One slice of a full cache of `CAP`.
    fn slice(d: &mut ShiftDetector, miss: f64, returns: f64, target: f64) -> Option<Verdict> {
        d.report(counts(SLICE, miss, returns), CAP, target)
    }

    /// A detector past its warm-up, at a steady miss ratio of `miss`.
    fn settled(miss: f64) -> ShiftDetector {
        let mut d = ShiftDetector::new(CAP);
        for _ in 0..AVERAGE_PERIODS as usize * SLICES {
            assert_eq!(slice(&mut d, miss, 0.0, 30.0), None);
        }
        d
    }

    #[test]
    fn a_steady_miss_ratio_never_moves_the_window() {
        let mut d = settled(0.3);
        for _ in 0..1_000 {
            assert_eq!(slice(&mut d, 0.3, 0.5, 30.0), None);
        }
    }

    #[test]
    fn a_rise_of_returning_keys_jumps_to_the_largest_window() {
        let mut d = settled(0.1);
        // The first slice of the shift raises the period's ratio to 0.225: not yet 1.5x and
        // +0.15 together (0.25); the second does.
        assert_eq!(slice(&mut d, 0.6, 0.05, 30.0), None);
        assert_eq!(
            slice(&mut d, 0.6, 0.05, 30.0),
            Some(Verdict::Jump(CAP as f64 * MAX_WINDOW))
        );
        // One jump at a time.
        assert_eq!(slice(&mut d, 0.6, 0.05, 30.0), None);
    }

    #[test]
    fn a_window_already_large_is_left_where_it_is() {
        let mut d = settled(0.1);
        for _ in 0..SLICES {
            assert_eq!(slice(&mut d, 0.6, 0.05, CAP as f64 * 0.9), None);
        }
    }

    #[test]
    fn a_rise_of_keys_that_never_return_is_a_scan_not_a_shift() {
        let mut d = settled(0.1);
        for _ in 0..4 * SLICES {
            assert_eq!(slice(&mut d, 1.0, 0.0, 30.0), None);
        }
        let mut d = settled(0.1);
        for _ in 0..4 * SLICES {
            assert_eq!(slice(&mut d, 1.0, RETURNS / 2.0, 30.0), None);
        }
    }

    #[test]
    fn a_rise_must_be_large_both_in_ratio_and_in_points() {
        // Twice the average, but by only 0.1.
        let mut d = settled(0.1);
        for _ in 0..4 * SLICES {
            assert_eq!(slice(&mut d, 0.2, 0.5, 30.0), None);
        }
        // By 0.2, but only 1.33 times the average.
        let mut d = settled(0.6);
        for _ in 0..4 * SLICES {
            assert_eq!(slice(&mut d, 0.8, 0.5, 30.0), None);
        }
    }

    #[test]
    fn nothing_moves_before_the_average_has_settled() {
        let mut d = ShiftDetector::new(CAP);
        for _ in 0..SLICES {
            assert_eq!(slice(&mut d, 0.1, 0.1, 30.0), None);
        }
        for _ in 0..4 * SLICES {
            assert_eq!(slice(&mut d, 0.9, 0.5, 30.0), None);
        }
    }

    #[test]
    fn the_jump_is_undone_after_a_turnover_once_the_ratio_is_back() {
        let mut d = settled(0.1);
        let top = CAP as f64 * MAX_WINDOW;
        slice(&mut d, 0.6, 0.05, 30.0);
        assert_eq!(slice(&mut d, 0.6, 0.05, 30.0), Some(Verdict::Jump(top)));
        // Back to the old ratio at once: judged only after a turnover (10,000 misses, 80
        // slices of 125).
        let mut misses = 0;
        let mut verdict = None;
        while verdict.is_none() {
            assert!(misses < 2 * CAP, "never judged");
            verdict = slice(&mut d, 0.1, 0.0, top);
            misses += SLICE / 10;
        }
        assert_eq!(verdict, Some(Verdict::Back(30.0)));
        assert_eq!(misses, CAP);
    }

    #[test]
    fn a_small_cache_judges_its_jump_on_a_whole_period_after_it() {
        // 100 entries: a turnover is less than a slice's misses, but the period judged must
        // not include the slices of the rise.
        let mut d = ShiftDetector::new(100);
        let mut at = |miss: f64, returns: f64, target: f64| {
            d.report(
                counts(MIN_PERIOD / SLICES as u64, miss, returns),
                100,
                target,
            )
        };
        for _ in 0..AVERAGE_PERIODS as usize * SLICES {
            assert_eq!(at(0.1, 0.0, 1.0), None);
        }
        assert_eq!(at(0.9, 0.1, 1.0), Some(Verdict::Jump(80.0)));
        for _ in 0..SLICES - 1 {
            assert_eq!(at(0.1, 0.0, 80.0), None);
        }
        assert_eq!(at(0.1, 0.0, 80.0), Some(Verdict::Back(1.0)));
    }

    #[test]
    fn a_lasting_rise_keeps_the_large_window() {
        let mut d = settled(0.1);
        let top = CAP as f64 * MAX_WINDOW;
        slice(&mut d, 0.6, 0.05, 30.0);
        assert_eq!(slice(&mut d, 0.6, 0.05, 30.0), Some(Verdict::Jump(top)));
        for _ in 0..100 {
            assert_eq!(slice(&mut d, 0.6, 0.0, top), None);
        }
    }

    #[test]
    fn a_target_the_ghosts_took_lower_is_not_raised_back() {
        let mut d = settled(0.1);
        slice(&mut d, 0.6, 0.05, 30.0);
        assert!(slice(&mut d, 0.6, 0.05, 30.0).is_some());
        for _ in 0..100 {
            // The ghosts brought the target below where it jumped from.
            assert_eq!(slice(&mut d, 0.1, 0.0, 20.0), None);
        }
    }

    #[test]
    fn periods_follow_the_entries_and_never_fall_below_the_floor() {
        let mut d = ShiftDetector::new(CAP);
        let one = |requests| counts(requests, 0.5, 0.0);
        // A slice of a cache of a million entries is 125,000 requests.
        assert_eq!(d.report(one(124_998), 1_000_000, 1.0), None);
        assert_eq!(d.seen, 0);
        assert_eq!(d.report(one(2), 1_000_000, 1.0), None);
        assert_eq!((d.seen, d.average), (1, Some(0.5)));
        // An empty cache's slice is the floor's quarter.
        assert_eq!(d.report(one(MIN_PERIOD / 4 - 1), 0, 1.0), None);
        assert_eq!(d.seen, 1);
        assert_eq!(d.report(one(1), 0, 1.0), None);
        assert_eq!(d.seen, 2);
    }

    #[test]
    fn counts_that_disagree_or_a_cache_of_nothing_stay_in_bounds() {
        let mut d = ShiftDetector::new(0);
        for _ in 0..AVERAGE_PERIODS as usize * SLICES * 2 {
            // More misses than requests (the readers' counts are racy): read as all misses.
            let c = Counts {
                requests: MIN_PERIOD,
                misses: 2 * MIN_PERIOD,
                returns: 3 * MIN_PERIOD,
            };
            assert_eq!(d.report(c, 0, 0.0), None);
            assert!(d.average.is_some_and(|a| (0.0..=1.0).contains(&a)));
        }
    }
}
