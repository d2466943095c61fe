// Ghost entries that size the window, and protected, by marginal utility.
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
// The same question splits the main space: a main ghost remembers whether protected once held
// its entry. A miss on one says a larger protected would have kept it; a miss on one that was
// never protected, a larger probation (ARC's B2 and B1 lists, over a short reach).
//
// The reach is a share of the capacity, because the question is local; but a recency phase's keys
// come back after as many requests as the workload takes, whatever the cache's size, and in a
// small cache a share of it is a few dozen keys. So window ghosts reach at least
// `FLOOR_KEYS` (of the cache's, split among its shards as its capacity is), and one beyond the
// share counts for the share over its age: a hit a window larger by its age would have had,
// per unit of that growth, against one within the share. A far ghost then says no more than the
// average slope out to it, and the window's credit (`mod.rs`) still limits how often any ghost
// hit, near or far, may grow the window.
//
// The ghosts are a direct-mapped table of (hash, time) words over a hash-sampled subset of the
// keys: all keys are sampled while `d` is small, one in 2^k beyond, up to one in 8 for a
// count-bounded shard, whose table grows from there (`MAX_SAMPLE_BITS`). A collision
// overwrites; both sides lose alike.

/// Ghost slots (16 bytes each, a word per side) a shard fills before its keys are sampled.
const SAMPLED_FROM_SLOTS: usize = 1024;

/// The fewest keys (units of weight) the window ghosts of a cache reach: as many as a table
/// holds before it samples, so that a small cache's table is the one a shard of 10,240 entries
/// has (16 KiB). Taken from that bound, not tuned: floors of 600, 820, 1,024 and 1,200 keys
/// score within 0.03 of each other on every set's mean (`docs/policy-notes.md`).
const FLOOR_KEYS: f64 = SAMPLED_FROM_SLOTS as f64;

/// The floor reaches at most this many keys per unit of the shard's capacity, so that a tiny
/// cache's table costs at most 64 bytes per entry (a cache of 64 entries: 4 KiB, not 16), as its
/// sketch's table holds at most 4 times its capacity. A bound on memory: against no bound, the
/// grid's means move by less than 0.01, no point by more than 0.12.
const FLOOR_PER_UNIT: f64 = 4.0;

/// Most keys a sampled ghost stands for in a count-bounded shard, as a power of two: past one
/// in 8 its table grows with the shard instead (about 0.2 bytes per entry of capacity). A ghost
/// hit moves the window by its step times the keys it stands for, so the window's random walk
/// widens with the sampling; one in 8 keeps a shard of a million entries as steady as the
/// shards of 80,000 entries the grid measures. A weighted shard's reach is in weight, not
/// entries, so its table stays at `SAMPLED_FROM_SLOTS` and samples as thinly as it must.
const MAX_SAMPLE_BITS: u32 = 3;

/// The sampled keys' ghosts live at most this many per slot of the table, on average, before the
/// sampling thins: live ghosts are those of the last `depth` inserts and main evictions.
const LIVE_PER_SLOT: u64 = 1;

// A ghost's word: the key's hash but its lowest bit (bits 33 to 63), whether protected once held
// the entry (bit 32), the side's clock at half resolution (bits 1 to 31), whether it left the
// main space (bit 0). The hash's lowest bit needs no room: a sampled key's is zero, and an
// unsampled table picks the slot with it.
const HASH_SHIFT: u32 = 33;
const PROTECTED_BIT: u64 = 1 << 32;
const MAIN_BIT: u64 = 1;

pub(super) struct Ghosts {
    /// Pairs of words, a window ghost's then a main ghost's: each side's ghosts arrive at their
    /// own rate, and sharing words let the faster one (under churn nearly every insert leaves a
    /// rejected candidate) overwrite the other's before they aged out. A miss reads both words
    /// of its pair, in one cache line.
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
    /// How far back (in the window's clock) a window ghost counts.
    depth: u32,
    /// How far back (in the window's clock) a window ghost counts fully: beyond, it counts for
    /// this over its age.
    share_depth: u32,
    /// How far back (in the main space's clock) a main ghost counts.
    main_depth: u32,
}

/// A miss on a ghost within its reach.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) struct Hit {
    pub(super) side: Side,
    /// How much the hit counts for: 1, or less for a window ghost beyond the capacity's share
    /// (the share over its age).
    pub(super) weight: f64,
}

/// The side of the cache a ghost stands for: what a miss on its key says a larger share of
/// the cache would have done.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Side {
    /// A larger window would have hit.
    Window,
    /// A larger main space would have hit an entry that was never protected: a larger
    /// probation would have.
    Main,
    /// A larger main space would have hit an entry that protected once held: a larger
    /// protected would have.
    Protected,
}

impl Ghosts {
    /// Ghosts for a shard of `capacity`, `share` of the cache's. Window ghosts reach `reach`
    /// of the capacity, and at least `FLOOR_KEYS` times `share` (up to `FLOOR_PER_UNIT` times
    /// the capacity) all the same; main ghosts reach `main_mult` times `reach` of it. The table
    /// is sized for the window ghosts' reach: the main half holds more live ghosts, and loses
    /// more of them to collisions. `counted`: the shard is count-bounded (the capacity is in
    /// entries), and its table may grow past `SAMPLED_FROM_SLOTS` (`MAX_SAMPLE_BITS`).
    pub(super) fn new(
        capacity: u64,
        reach: f64,
        share: f64,
        main_mult: f64,
        counted: bool,
    ) -> Self {
        const MAX_DEPTH: u64 = u32::MAX as u64 >> 2;
        let share_depth = ((capacity as f64 * reach) as u64).clamp(1, MAX_DEPTH);
        let floor = (FLOOR_KEYS * share.clamp(0.0, 1.0)).min(FLOOR_PER_UNIT * capacity as f64);
        let depth = share_depth.max(floor as u64);
        // Up to `depth` live ghosts a side, thinned to fit the table.
        let live = depth;
        let mut sample_bits = 0;
        while (live >> sample_bits) > SAMPLED_FROM_SLOTS as u64 * LIVE_PER_SLOT
            && (sample_bits < MAX_SAMPLE_BITS || !counted)
        {
            sample_bits += 1;
        }
        let slots = ((live >> sample_bits) / LIVE_PER_SLOT)
            .max(16)
            .next_power_of_two() as usize;
        Ghosts {
            table: vec![0; 2 * slots],
            slot_mask: slots as u64 - 1,
            sample_mask: (1u64 << sample_bits) - 1,
            sample_bits,
            window_clock: 0,
            main_clock: 0,
            depth: depth as u32,
            share_depth: share_depth as u32,
            main_depth: ((share_depth as f64 * main_mult) as u64).clamp(1, MAX_DEPTH) as u32,
        }
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
        // A slot's two sides sit side by side: one cache line holds both.
        let s = ((x >> self.sample_bits) & self.slot_mask) as usize;
        Some(2 * s + usize::from(main))
    }

    /// A miss on `hash`, inserted with `weight`.
    #[inline]
    pub(super) fn on_miss(&mut self, hash: u32, weight: u32) -> Option<Hit> {
        self.window_clock = self.window_clock.wrapping_add(weight);
        let s = self.slot(hash, false)?;
        let (s, g) = {
            let m = s + 1;
            let (gw, gm) = (self.table[s], self.table[m]);
            // A key is in at most one: the later eviction wins.
            if gw >> HASH_SHIFT == u64::from(hash >> 1) && gw != 0 {
                (s, gw)
            } else if gm >> HASH_SHIFT == u64::from(hash >> 1) && gm != 0 {
                (m, gm)
            } else {
                return None;
            }
        };
        self.table[s] = 0;
        let main = g & MAIN_BIT != 0;
        let when = (g as u32) >> 1;
        let now = if main {
            self.main_clock
        } else {
            self.window_clock
        };
        let age = (now >> 1).wrapping_sub(when) & (u32::MAX >> 1);
        let depth = if main { self.main_depth } else { self.depth };
        if age >= depth >> 1 {
            return None;
        }
        let (side, weight) = if !main {
            let full = self.share_depth >> 1;
            let weight = if age < full {
                1.0
            } else {
                f64::from(full.max(1)) / f64::from(age.max(1))
            };
            (Side::Window, weight)
        } else if g & PROTECTED_BIT != 0 {
            (Side::Protected, 1.0)
        } else {
            (Side::Main, 1.0)
        };
        Some(Hit { side, weight })
    }

    /// An entry of `weight` leaves probation for protected: the main space's clock runs on all
    /// of probation's departures.
    #[inline]
    pub(super) fn on_promote(&mut self, weight: u32) {
        self.main_clock = self.main_clock.wrapping_add(weight);
    }

    /// An entry of `hash` and `weight` leaves the cache, and leaves a ghost for `side`.
    #[inline]
    pub(super) fn on_evict(&mut self, hash: u32, weight: u32, side: Side) {
        let main = side != Side::Window;
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
        self.table[s] = (u64::from(hash >> 1) << HASH_SHIFT)
            | if side == Side::Protected {
                PROTECTED_BIT
            } else {
                0
            }
            | u64::from((now >> 1) << 1)
            | if main { MAIN_BIT } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(hit: Option<Hit>) -> Option<Side> {
        hit.map(|h| h.side)
    }

    /// Records `hash` leaving the window, then `gap` other misses, then misses on `hash`.
    fn window_hit_after(g: &mut Ghosts, hash: u32, gap: u32) -> Option<Hit> {
        g.on_evict(hash, 1, Side::Window);
        for i in 0..gap {
            // Other keys, in other slots than `hash`'s.
            assert_eq!(side(g.on_miss(hash.wrapping_add(1 + i % 7), 1)), None);
        }
        g.on_miss(hash, 1)
    }

    /// The side of `window_hit_after`'s hit.
    fn window_ghost_after(g: &mut Ghosts, hash: u32, gap: u32) -> Option<Side> {
        side(window_hit_after(g, hash, gap))
    }

    /// The weight of `window_hit_after`'s hit (0 for none).
    fn window_weight_after(g: &mut Ghosts, hash: u32, gap: u32) -> f64 {
        window_hit_after(g, hash, gap).map_or(0.0, |h| h.weight)
    }

    /// Records `hash` leaving probation (never protected), then `departures` promotions, then
    /// misses on `hash`.
    fn main_ghost_after(g: &mut Ghosts, hash: u32, departures: u32) -> Option<Side> {
        g.on_evict(hash, 1, Side::Main);
        for _ in 0..departures {
            g.on_promote(1);
        }
        side(g.on_miss(hash, 1))
    }

    #[test]
    fn a_counted_shard_samples_at_most_one_key_in_eight() {
        // A reach of 100,000 entries: one key in 8 sampled, and a table for all of those.
        let counted = Ghosts::new(1_000_000, 0.1, 1.0, 2.0, true);
        assert_eq!(counted.sample_bits(), MAX_SAMPLE_BITS);
        assert!(counted.table.len() >= 2 * (100_000 >> MAX_SAMPLE_BITS));
        // In weight, the table stays small and the sampling thins instead.
        let weighted = Ghosts::new(1_000_000, 0.1, 1.0, 2.0, false);
        assert_eq!(weighted.sample_bits(), 7);
        assert!(weighted.table.len() <= 2 * SAMPLED_FROM_SLOTS);
        // A short reach samples every key either way.
        assert_eq!(Ghosts::new(10_000, 0.1, 0.0, 2.0, true).sample_bits(), 0);
        assert_eq!(Ghosts::new(10_000, 0.1, 0.0, 2.0, false).sample_bits(), 0);
    }

    #[test]
    fn window_ghosts_count_within_their_reach() {
        let mut g = Ghosts::new(100, 0.1, 0.0, 2.0, true);
        assert_eq!(g.sample_bits(), 0);
        assert_eq!(window_ghost_after(&mut g, 64, 4), Some(Side::Window));
        assert_eq!(window_ghost_after(&mut g, 64, 20), None);
        // At the edges: half-resolution clocks, so the reach is `depth` to within one insert.
        assert_eq!(window_ghost_after(&mut g, 64, 7), Some(Side::Window));
        assert_eq!(window_ghost_after(&mut g, 64, 10), None);
    }

    #[test]
    fn a_ghost_counts_once() {
        let mut g = Ghosts::new(100, 0.1, 0.0, 2.0, true);
        assert_eq!(window_ghost_after(&mut g, 64, 2), Some(Side::Window));
        assert_eq!(side(g.on_miss(64, 1)), None);
        g.on_evict(192, 1, Side::Main);
        assert_eq!(side(g.on_miss(192, 1)), Some(Side::Main));
        assert_eq!(side(g.on_miss(192, 1)), None);
    }

    #[test]
    fn a_main_ghost_says_whether_protected_once_held_its_entry() {
        let mut g = Ghosts::new(100, 0.1, 0.0, 2.0, true);
        g.on_evict(192, 1, Side::Protected);
        g.on_evict(193, 1, Side::Main);
        assert_eq!(side(g.on_miss(193, 1)), Some(Side::Main));
        assert_eq!(side(g.on_miss(192, 1)), Some(Side::Protected));
        // The hash's lowest bit is not stored: keys that differ only there sit in different
        // slots of an unsampled table, so neither answers for the other.
        g.on_evict(64, 1, Side::Window);
        assert_eq!(side(g.on_miss(65, 1)), None);
        assert_eq!(side(g.on_miss(64, 1)), Some(Side::Window));
    }

    #[test]
    fn main_ghosts_count_probation_departures() {
        let mut g = Ghosts::new(100, 0.1, 0.0, 2.0, true);
        assert_eq!(main_ghost_after(&mut g, 128, 15), Some(Side::Main));
        assert_eq!(main_ghost_after(&mut g, 128, 25), None);
    }

    #[test]
    fn a_small_cache_s_window_ghosts_reach_the_floor_and_count_less_beyond_the_share() {
        // A share of 10 keys, in a cache whose only shard this is: the window ghosts reach
        // `FLOOR_KEYS` all the same.
        let mut g = Ghosts::new(1_000, 0.01, 1.0, 2.0, true);
        assert_eq!(g.sample_bits(), 0);
        assert_eq!(window_weight_after(&mut g, 64, 4), 1.0);
        // Beyond the share, the share over the age (in half-resolution clock ticks: 5 / 50).
        let far = window_weight_after(&mut g, 64, 100);
        assert!((far - 0.1).abs() < 0.01, "{far}");
        let farther = window_weight_after(&mut g, 64, 1_000);
        assert!(farther > 0.0 && farther < 0.011, "{farther}");
        assert_eq!(window_weight_after(&mut g, 64, 1_100), 0.0);
        // Main ghosts keep their reach: twice the share, not twice the floor.
        assert_eq!(main_ghost_after(&mut g, 128, 25), None);
    }

    #[test]
    fn the_floor_is_split_among_shards_as_the_capacity_is() {
        // A shard with a quarter of the cache's capacity reaches a quarter of the floor.
        let mut g = Ghosts::new(100, 0.1, 0.25, 2.0, true);
        assert!(window_weight_after(&mut g, 64, 200) > 0.0);
        assert_eq!(window_weight_after(&mut g, 64, 300), 0.0);
        // A share already beyond the floor is the reach, every hit within it counting fully.
        let mut g = Ghosts::new(20_000, 0.1, 1.0, 2.0, true);
        assert_eq!(window_weight_after(&mut g, 64, 1_500), 1.0);
        assert_eq!(window_weight_after(&mut g, 64, 2_100), 0.0);
    }

    #[test]
    fn a_tiny_cache_s_floor_is_at_most_four_keys_per_entry() {
        // A cache of 16 entries: its reach's share rounds to one key, its floor to 64.
        let mut g = Ghosts::new(16, 0.1, 1.0, 2.0, true);
        assert!(g.table.len() <= 2 * 64);
        assert!(window_weight_after(&mut g, 64, 50) > 0.0);
        assert_eq!(window_weight_after(&mut g, 64, 70), 0.0);
        // A cache of nothing keeps a table of a few slots.
        assert!(Ghosts::new(0, 0.1, 1.0, 2.0, true).table.len() <= 32);
    }
}
