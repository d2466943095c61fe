// Ghost entries that size the window by marginal utility.
//
// The question the window's size answers is: would `d` more units of window, or `d` more units
// of main space, have turned more misses into hits? Both can be read off the miss stream, which
// is all the policy sees (hits only bump the entry's `access` counter under the read lock):
// - An entry that leaves the window without being admitted (the filter rejected it, or the main
//   space was empty) would have stayed `d` more inserts in a window larger by `d`. A miss on it
//   within `d` inserts of its leaving is a hit a larger window would have had.
// - An entry evicted from the main space would have stayed longer in a main space larger by `d`.
//   Probation, where evictions happen, is a FIFO that entries leave by eviction or by promotion,
//   so its clock runs on both (all probation departures), and a main ghost counts for twice as
//   many of them as a window ghost counts inserts (`GHOST_MAIN_DEPTH`). A
//   miss on it within that reach is a hit a larger main space would have had.
// Moving `d` from one to the other trades these two counts, so each ghost hit nudges the window
// towards its side, and the window settles where both margins are equal (utility-based
// partitioning, as in Qureshi and Patt's UCP; ARC adapts on its ghost lists the same way, but
// over the whole cache's depth, which sends it to pure recency on loops). Both counts come from
// the same stretch of requests, so the workload's phases, which swamp the comparison of
// consecutive samples' hit ratios (see `mod.rs`), move both alike.
//
// The ghosts are a direct-mapped table of (hash, time) words over a hash-sampled subset of the
// keys, so a large shard keeps a fixed, small table: all keys are sampled while `d` is small, one
// in 2^k beyond. A collision overwrites; both sides lose alike.

/// Most ghost slots per shard: 8 bytes each.
const MAX_SLOTS: usize = 1024;

/// The sampled keys' ghosts live at most this many per slot of the table, on average, before the
/// sampling thins: live ghosts are those of the last `depth` inserts and main evictions.
const LIVE_PER_SLOT: u64 = 1;

pub(super) struct Ghosts {
    /// Window ghosts in the first half, main ghosts in the second: each side's ghosts arrive at
    /// their own rate, and sharing slots let the faster one (under churn nearly every insert
    /// leaves a rejected candidate) overwrite the other's before they aged out.
    table: Vec<u64>,
    slot_mask: u64,
    /// A key is sampled when these bits of its spread hash are zero.
    sample_mask: u64,
    /// Log2 of the sampling divisor.
    sample_bits: u32,
    /// Weight inserted so far: the window's clock.
    window_clock: u32,
    /// Weight that left probation so far (evicted or promoted): the main space's clock.
    main_clock: u32,
    /// How far back (in the window's clock) a window ghost counts: `near` or `far`.
    depth: u32,
    near: u32,
    /// The window ghosts' reach while the window is at its floor (see `reach_far`).
    far: u32,
    /// How far back (in the main space's clock) a main ghost counts.
    main_depth: u32,
}

/// What a miss found among the ghosts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Found {
    Nothing,
    /// A larger window would have hit.
    Window,
    /// A larger main space would have hit.
    Main,
}

impl Ghosts {
    /// `depth` is the window ghosts' reach (`far` while the window is at its floor); main
    /// ghosts reach `main_mult` times `depth`. The table is sized for `depth`: the main half
    /// holds more live ghosts, and loses more of them to collisions, as does the window's half
    /// while it reaches far.
    pub(super) fn new(depth: u64, far: u64, main_mult: f64) -> Self {
        let depth = depth.clamp(1, u64::from(u32::MAX >> 2));
        let far = far.clamp(depth, u64::from(u32::MAX >> 2)) as u32;
        // Up to `depth` live ghosts a side, thinned to fit the table.
        let live = depth;
        let mut sample_bits = 0;
        while (live >> sample_bits) > MAX_SLOTS as u64 * LIVE_PER_SLOT {
            sample_bits += 1;
        }
        let slots = ((live >> sample_bits) / LIVE_PER_SLOT)
            .max(16)
            .next_power_of_two()
            .min(MAX_SLOTS as u64 * 2) as usize;
        Ghosts {
            table: vec![0; 2 * slots],
            slot_mask: slots as u64 - 1,
            sample_mask: (1u64 << sample_bits) - 1,
            sample_bits,
            window_clock: 0,
            main_clock: 0,
            depth: depth as u32,
            near: depth as u32,
            far,
            main_depth: ((depth as f64 * main_mult) as u64).clamp(1, u64::from(u32::MAX >> 2))
                as u32,
        }
    }

    /// Whether window ghosts reach `far` instead of `depth` from now on. While the window is
    /// at its floor, a window ghost only sees reuse within `depth` inserts of arrival, so a
    /// workload whose reuse lies farther than that cannot pull the window back up, however much
    /// a larger window would gain: the window stays stuck at its floor (see `mod.rs`).
    pub(super) fn reach_far(&mut self, far: bool) {
        self.depth = if far { self.far } else { self.near };
    }

    /// How far back window ghosts count now.
    #[cfg(test)]
    pub(super) fn window_reach(&self) -> u32 {
        self.depth
    }

    /// Log2 of the sampling divisor: a ghost hit stands for this power of two of them.
    pub(super) fn sample_bits(&self) -> u32 {
        self.sample_bits
    }

    /// The slot of a sampled key's hash; `None` when the key is not sampled.
    #[inline]
    fn slot(&self, hash: u32, main: bool) -> Option<usize> {
        // The key's hash is uniform already: its low bits sample, the next ones pick the slot.
        let x = u64::from(hash);
        if x & self.sample_mask != 0 {
            return None;
        }
        let s = ((x >> self.sample_bits) & self.slot_mask) as usize;
        Some(if main {
            s + self.slot_mask as usize + 1
        } else {
            s
        })
    }

    /// A miss on `hash`, inserted with `weight`.
    #[inline]
    pub(super) fn on_miss(&mut self, hash: u32, weight: u32) -> Found {
        self.window_clock = self.window_clock.wrapping_add(weight);
        let Some(s) = self.slot(hash, false) else {
            return Found::Nothing;
        };
        let (s, g) = {
            let m = s + self.slot_mask as usize + 1;
            let (gw, gm) = (self.table[s], self.table[m]);
            // A key is in at most one: the later eviction wins.
            if (gw >> 32) as u32 == hash && gw != 0 {
                (s, gw)
            } else if (gm >> 32) as u32 == hash && gm != 0 {
                (m, gm)
            } else {
                return Found::Nothing;
            }
        };
        self.table[s] = 0;
        let main = g & 1 == 1;
        let when = (g as u32) >> 1;
        let now = if main {
            self.main_clock
        } else {
            self.window_clock
        };
        let age = (now >> 1).wrapping_sub(when) & (u32::MAX >> 1);
        let depth = if main { self.main_depth } else { self.depth };
        if age >= depth >> 1 {
            Found::Nothing
        } else if main {
            Found::Main
        } else {
            Found::Window
        }
    }

    /// An entry of `weight` leaves probation for protected: the main space's clock runs on all
    /// of probation's departures.
    #[inline]
    pub(super) fn on_promote(&mut self, weight: u32) {
        self.main_clock = self.main_clock.wrapping_add(weight);
    }

    /// An entry of `hash` and `weight` leaves the cache from the window (`main` false) or the
    /// main space.
    #[inline]
    pub(super) fn on_evict(&mut self, hash: u32, weight: u32, main: bool) {
        if main {
            self.main_clock = self.main_clock.wrapping_add(weight);
        }
        let Some(s) = self.slot(hash, main) else {
            return;
        };
        let now = if main {
            self.main_clock
        } else {
            self.window_clock
        };
        // Clocks are kept at half resolution so the side fits in the low bit.
        self.table[s] = (u64::from(hash) << 32) | u64::from((now >> 1) << 1) | u64::from(main);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records `hash` leaving the window, then `gap` other misses, then misses on `hash`.
    fn window_ghost_after(g: &mut Ghosts, hash: u32, gap: u32) -> Found {
        g.on_evict(hash, 1, false);
        for i in 0..gap {
            // Other keys, in other slots than `hash`'s.
            assert_eq!(g.on_miss(hash.wrapping_add(1 + i % 7), 1), Found::Nothing);
        }
        g.on_miss(hash, 1)
    }

    #[test]
    fn window_ghosts_reach_far_only_while_asked_to() {
        let mut g = Ghosts::new(10, 40, 2.0);
        assert_eq!(g.sample_bits(), 0);
        assert_eq!(window_ghost_after(&mut g, 64, 4), Found::Window);
        assert_eq!(window_ghost_after(&mut g, 64, 20), Found::Nothing);
        g.reach_far(true);
        assert_eq!(window_ghost_after(&mut g, 64, 20), Found::Window);
        assert_eq!(window_ghost_after(&mut g, 64, 60), Found::Nothing);
        g.reach_far(false);
        assert_eq!(window_ghost_after(&mut g, 64, 20), Found::Nothing);
        // At the edges: half-resolution clocks, so the reach is `depth` to within one insert.
        assert_eq!(window_ghost_after(&mut g, 64, 7), Found::Window);
        assert_eq!(window_ghost_after(&mut g, 64, 10), Found::Nothing);
    }

    #[test]
    fn a_ghost_counts_once() {
        let mut g = Ghosts::new(10, 40, 2.0);
        assert_eq!(window_ghost_after(&mut g, 64, 2), Found::Window);
        assert_eq!(g.on_miss(64, 1), Found::Nothing);
        g.on_evict(192, 1, true);
        assert_eq!(g.on_miss(192, 1), Found::Main);
        assert_eq!(g.on_miss(192, 1), Found::Nothing);
    }

    #[test]
    fn main_ghosts_count_probation_departures() {
        let mut g = Ghosts::new(10, 40, 2.0);
        g.on_evict(128, 1, true);
        for _ in 0..15 {
            g.on_promote(1);
        }
        assert_eq!(g.on_miss(128, 1), Found::Main);
        g.on_evict(128, 1, true);
        for _ in 0..25 {
            g.on_promote(1);
        }
        assert_eq!(g.on_miss(128, 1), Found::Nothing);
    }
}
