// The eviction policy: an adaptive W-TinyLFU whose queues are run as second-chance FIFOs.
// The measurements behind its design and constants are in `docs/policy-notes.md`.
//
// Structure (Einziger, Friedman, Manes, "TinyLFU", and Caffeine's adaptive variant):
//
//   new entry -> [ window ] --candidate--> admission filter --> [ probation ] --hit--> [ protected ]
//                                          (frequency sketch)         ^                      |
//                                                                     +---- overflow --------+
//
// - The window is a small recency queue that every new entry enters; it lets bursts of new keys
//   prove themselves before facing the frequency filter. An entry read while in the window goes
//   straight to probation when it reaches the window's head: it has already shown reuse.
// - When the window overflows, its oldest entry (the candidate) competes with the oldest entry of
//   probation (the victim): the one the frequency sketch says was seen more often stays. This is
//   what makes the cache resist scans and keep the frequently used working set.
// - An entry of probation that was read since it entered is promoted to protected; protected
//   overflow is demoted back to probation.
// - Ghost entries resize the window (`ghost.rs`): a miss on a key that left the window recently
//   unadmitted moves it up, a miss on a key recently evicted from the main space moves it down,
//   so recency-friendly workloads get a large window and frequency-friendly ones a small one.
// - A window above half the capacity is a CLOCK of its own (read entries cycle back to its tail,
//   keeping half of their reads), up to 80% of the capacity; a cache whose shards filled with
//   many of their requests hitting starts that way (`CLOCK_*` below).
//
// Concurrency shapes the bookkeeping: readers hold only the shard's read lock, so a hit cannot
// reorder a queue or touch the sketch. It bumps the entry's `access` counter instead. Writers,
// when a queue's head comes up for eviction, look at the counter: an accessed entry gets a second
// chance (moved to the tail, or promoted) and its accesses are folded into the sketch. A FIFO with
// second chances approximates LRU (it is CLOCK), so the structure above keeps its hit ratio while
// reads stay free of policy work.

mod ghost;
mod sketch;
mod window;

use std::sync::Arc;

use crate::slab::{NIL, Queue, Slab, Token};
use ghost::{Found, Ghosts};
pub(crate) use sketch::FrequencySketch;
pub(crate) use window::SharedWindow;

/// Share of the capacity given to the main space (probation + protected) at start; the window
/// gets the rest, at least one unit. Caffeine's starting point: loops and scans want the
/// smallest window, and ghost sizing grows it where that pays.
const INITIAL_MAIN_PERCENT: f64 = 0.99;

/// Share of the main space reserved for protected entries (a segmented LRU's split).
const PROTECTED_PERCENT: f64 = 0.77;

/// A window above this share of the capacity marks a recency-friendly workload (the ghosts found
/// more window paying, see `ghost.rs`): admission then drops its margin to 0 and protected gets
/// `RECENCY_PROTECTED_PERCENT` of the main space. Loops and scans, where the margin matters (see
/// `ADMIT_MARGIN`), run the window at its minimum.
const RECENCY_WINDOW_PERCENT: f64 = 0.35;
/// Protected's share of the main space while the window is above `RECENCY_WINDOW_PERCENT`.
const RECENCY_PROTECTED_PERCENT: f64 = 0.84;

/// A window above this share of the capacity runs as a CLOCK: an entry read while in it goes
/// back to the window's tail when it reaches the head, keeping half of its reads for the next
/// pass, instead of moving to probation. Below it, the window is a FIFO whose read entries go
/// to probation (see `take_head`): with a small window that gains, but a large FIFO window
/// feeding a small main space evicts by insertion order.
const CLOCK_WINDOW_PERCENT: f64 = 0.5;
/// While the window is a CLOCK, a main ghost hit counts as this many window ghost hits: a CLOCK
/// window leaves a ghost for every entry its hand evicts, the main space only for the few
/// candidates admitted, so window ghosts outnumber main ghosts several times over at any window
/// share and would hold the window at its largest whatever it gains.
const CLOCK_MAIN_GHOST_WEIGHT: i32 = 4;
/// The largest share of the capacity the window is given, so that the main space keeps some
/// room and main ghosts keep arriving. The cache's window target may still run up to the whole
/// capacity: a target above this share is a reserve that main ghost hits must use up before
/// the window shrinks, which keeps a recency workload in CLOCK mode through short runs of them.
const MAX_WINDOW_PERCENT: f64 = 0.8;
/// A shard whose fill (the requests before its first eviction) hit at least this share of its
/// requests moves its share of the cache's window target to the whole capacity (`start_window`):
/// once every shard has, the cache starts as a CLOCK (a lone shard of eight moves the target by
/// an eighth). Otherwise the window starts at `1 - INITIAL_MAIN_PERCENT`. Scans and loops hit
/// almost nothing while the cache fills, frequency-heavy mixes up to about 40%, recency-heavy
/// traces 58% and more.
const CLOCK_START_HIT_PERCENT: f64 = 0.55;
// CLOCK_START_UNDONE: a CLOCK start is a bet on recency. The first time ghost sizing brings the
// cache's window back to half the capacity or below (out of CLOCK mode), the bet is lost and the
// window goes back to its initial share instead of starting its descent from 50%. The undo is
// armed only once the shards' votes have taken the target above 50%
// (`SharedWindow::lost_clock_start`): the first vote of an 8-shard cache moves it to 13.5% only.

/// Entries sampled (evenly over the slab) to estimate a shard's fill hit ratio.
const FILL_SAMPLE: usize = 1024;

/// A candidate must be seen this many times more than the victim to be admitted. The candidate's
/// latest access has just been counted, while the victim's next one has not happened yet, so a
/// plain `>` favours the candidate by one; on a loop larger than the cache that bias evicts
/// exactly the entries about to be reused.
const ADMIT_MARGIN: u8 = 1;

/// Candidates at least this frequent are admitted with probability 1/128 even when they lose
/// against the victim, so an attacker cannot pin the victim by making it look hot (Caffeine's
/// defence against hash-flooding the sketch). Below it, ties and losses are rejected outright.
const ADMIT_WARM_FREQUENCY: u8 = 6;

/// Most second chances given while looking for one victim. Each chance is paid for by an earlier
/// read, so the work is O(1) amortised; the bound caps the worst single eviction.
const MAX_SECOND_CHANCES: u32 = 64;

/// Misses of a shard between two nudges of the cache's window: nudging writes the line every
/// shard writes, so it is batched.
const NUDGE_EVERY: u64 = 16;

/// Ghost sizing: how far back a window ghost counts, as a fraction of the shard's capacity.
const GHOST_DEPTH: f64 = 0.10;
/// Ghost sizing in a small shard: its ghosts reach `SMALL_GHOST_DEPTH` of its capacity, up to
/// `SMALL_GHOST_REACH` entries (and never less than `GHOST_DEPTH`): at 10% a shard of 512
/// entries remembers too few departures for its ghost hits to find the margin. Large shards
/// keep 10% (more would sample their ghosts thinly), and so do the smallest, with a ramp between
/// (`SMALL_GHOST_FROM`).
const SMALL_GHOST_DEPTH: f64 = 0.25;
/// From this capacity a shard's ghosts reach half an entry further per entry of capacity above
/// it, once that is more than `GHOST_DEPTH` (from 320 entries), until it is `SMALL_GHOST_DEPTH`
/// (at twice this capacity).
const SMALL_GHOST_FROM: f64 = 256.0;
/// A window below this share of the shard's capacity (its starting share) is at its floor:
/// window ghosts then reach `FLOOR_GHOST_DEPTH` of the capacity (main ghosts keep theirs), so
/// reuse beyond the usual reach can still pull the window back up; from the floor, window ghosts
/// otherwise see only reuse close to an entry's arrival.
const FLOOR_WINDOW_PERCENT: f64 = 0.01;
/// How far back window ghosts reach while the window is at its floor.
const FLOOR_GHOST_DEPTH: f64 = 0.25;
/// The reach, in entries, up to which a shard's ghosts follow `SMALL_GHOST_DEPTH`.
const SMALL_GHOST_REACH: f64 = 512.0;
/// Ghost sizing: how far back a main-space ghost counts, as a multiple of `GHOST_DEPTH`, in
/// probation departures (evictions and promotions).
const GHOST_MAIN_DEPTH: f64 = 2.0;
/// Ghost sizing: the window's move per ghost hit, as a fraction of the shard's capacity (times
/// the sampling divisor, so the drift per request does not depend on the sampling).
const GHOST_STEP: f64 = 0.001;

pub(crate) struct Policy {
    sketch: FrequencySketch,
    capacity: u64,
    /// Target window weight, as a float so small steps accumulate.
    window_target: f64,
    window_max: u64,
    protected_max: u64,
    /// `ADMIT_MARGIN`, or 0 while the window is above `RECENCY_WINDOW_PERCENT`.
    admit_margin: u8,
    /// Whether the window is above `CLOCK_WINDOW_PERCENT`, and runs as a CLOCK.
    clock_window: bool,
    shared: ShardWindow,
    ghosts: Ghosts,
    /// The window's move per ghost hit.
    ghost_step: f64,
    /// Window ghost hits minus main ghost hits since the last nudge.
    ghost_net: i32,
    rng: u64,
}

/// This shard's side of the cache's [`SharedWindow`].
struct ShardWindow {
    window: Arc<SharedWindow>,
    /// This shard's capacity over the cache's: the share of the cache's window it applies.
    scale: f64,
    /// The cache's window (bits) this shard applied last; the initial one until it first moves.
    applied: u64,
    /// Misses since the last nudge.
    misses: u64,
    /// Whether this shard has evicted yet.
    started: bool,
}

/// How far back a window ghost of a shard of `capacity` counts, in inserted weight.
fn ghost_depth(capacity: u64) -> u64 {
    let cap = capacity as f64;
    let small = (cap * SMALL_GHOST_DEPTH)
        .min(SMALL_GHOST_REACH)
        .min((cap - SMALL_GHOST_FROM) * 0.5);
    (cap * GHOST_DEPTH).max(small) as u64
}

/// The share of requests that hit while `entries` filled a shard: the reads still pending on
/// every `step`-th entry (`step` so that at most `FILL_SAMPLE` are read), over those reads plus
/// one miss per entry read. An estimate, biased low: reads an entry had while in the (1%)
/// window were folded into the sketch when it moved on to probation, and reads past 15 are not
/// counted; updates of a resident key count as reads. `CLOCK_START_HIT_PERCENT` is a threshold
/// on this estimate. Returns the ratio and the number of entries read.
fn fill_hit_ratio<K, V>(entries: &[crate::slab::Entry<K, V>]) -> (f64, u64) {
    let step = entries.len().div_ceil(FILL_SAMPLE).max(1);
    let (mut hits, mut misses) = (0u64, 0u64);
    for e in entries.iter().step_by(step) {
        hits += u64::from(e.pending_access());
        misses += 1;
    }
    (hits as f64 / (hits + misses).max(1) as f64, misses)
}

/// The window's initial target for a cache (or shard) of `capacity`.
pub(crate) fn initial_window(capacity: u64) -> f64 {
    let main = (capacity as f64 * INITIAL_MAIN_PERCENT).floor();
    (capacity as f64 - main).max(1.0).min(capacity as f64)
}

impl Policy {
    pub(crate) fn new(
        capacity: u64,
        initial_entries: usize,
        seed: u64,
        window: Arc<SharedWindow>,
    ) -> Self {
        let scale = if capacity == window.capacity() {
            1.0 // exactly, so that a single shard's window is the cache's
        } else {
            capacity as f64 / window.capacity().max(1) as f64
        };
        let depth = ghost_depth(capacity);
        let far = depth.max((capacity as f64 * FLOOR_GHOST_DEPTH) as u64);
        let ghosts = Ghosts::new(depth, far, GHOST_MAIN_DEPTH);
        // In units of the cache's capacity, as `SharedWindow` keeps the window: a shard of an
        // eighth of the cache moves it by an eighth as much per ghost hit, so the cache's window
        // drifts per request as one shard's would alone.
        let ghost_step = capacity as f64 * GHOST_STEP * f64::from(1u32 << ghosts.sample_bits());
        let mut p = Policy {
            ghosts,
            ghost_step,
            ghost_net: 0,
            sketch: FrequencySketch::new(initial_entries, capacity),
            capacity,
            window_target: initial_window(capacity),
            window_max: 0,
            protected_max: 0,
            admit_margin: ADMIT_MARGIN,
            clock_window: false,
            shared: ShardWindow {
                applied: window.window_bits(),
                window,
                scale,
                misses: 0,
                started: false,
            },
            rng: seed | 1,
        };
        p.apply_window();
        p
    }

    /// The shard's capacity changed (`Cache::set_capacity`): its window keeps its share of
    /// the cache's window target, which stays in units of the cache's capacity at build time,
    /// and the queues are sized anew. Ghosts and frequencies carry over.
    pub(crate) fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
        let c = &mut self.shared;
        c.scale = capacity as f64 / c.window.capacity().max(1) as f64;
        self.window_target = f64::from_bits(c.applied) * c.scale;
        self.apply_window();
    }

    fn apply_window(&mut self) {
        let cap = self.capacity as f64;
        self.window_target = self.window_target.clamp(1.0_f64.min(cap), cap);
        // At least one entry, and at most 80% rounded down, so that a cache of two entries keeps
        // one for the main space (rounding 1.6 up left it none, and no main ghost ever came).
        let largest = (cap * MAX_WINDOW_PERCENT).floor().max(1.0_f64.min(cap));
        self.window_max = self.window_target.round().min(largest) as u64;
        self.clock_window = self.window_max as f64 > cap * CLOCK_WINDOW_PERCENT;
        let main = self.capacity - self.window_max;
        let (margin, protected) = if self.window_max as f64 > cap * RECENCY_WINDOW_PERCENT {
            (0, RECENCY_PROTECTED_PERCENT)
        } else {
            (ADMIT_MARGIN, PROTECTED_PERCENT)
        };
        self.admit_margin = margin;
        self.protected_max = (main as f64 * protected) as u64;
        self.ghosts
            .reach_far((self.window_max as f64) < cap * FLOOR_WINDOW_PERCENT);
    }

    /// A new key was inserted (a miss); `len` is the shard's entry count after the insert.
    pub(crate) fn on_insert(&mut self, hash: u32, weight: u32, len: usize) {
        self.sketch.ensure_capacity(len);
        self.sketch.increment(hash, 1);
        match self.ghosts.on_miss(hash, weight) {
            Found::Nothing => {}
            Found::Window => self.ghost_net += 1,
            Found::Main if self.clock_window => self.ghost_net -= CLOCK_MAIN_GHOST_WEIGHT,
            Found::Main => self.ghost_net -= 1,
        }
        self.shared.misses += 1;
        if self.shared.misses >= NUDGE_EVERY {
            self.nudge();
        }
    }

    /// Moves the cache's window by this shard's ghost hits since the last nudge, and applies
    /// the window it now has.
    #[cold]
    fn nudge(&mut self) {
        let c = &mut self.shared;
        c.misses = 0;
        if self.ghost_net != 0 {
            c.window.nudge(f64::from(self.ghost_net) * self.ghost_step);
            self.ghost_net = 0;
        }
        self.follow_window();
    }

    /// Applies the cache's window, as this shard's share of it, if it moved since last time.
    /// After a CLOCK start, the first time the window is found out of CLOCK mode again, it goes
    /// back to its initial share (`CLOCK_START_UNDONE`).
    fn follow_window(&mut self) {
        let c = &mut self.shared;
        let mut window = c.window.window_bits();
        if window == c.applied {
            return;
        }
        let cap = c.window.capacity();
        if c.window
            .lost_clock_start(cap as f64 * CLOCK_WINDOW_PERCENT, initial_window(cap))
        {
            window = c.window.window_bits();
        }
        c.applied = window;
        self.window_target = f64::from_bits(window) * c.scale;
        self.apply_window();
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: only used to break ties in admission, so quality needs are modest.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Moves the window's overflow into the main space while the main space has room for it
    /// (while the cache fills up, or after the window shrank). Called before evicting.
    pub(crate) fn fill_main<K, V>(&mut self, slab: &mut Slab<K, V>) {
        let main_max = self.capacity - self.window_max;
        let mut chances = MAX_SECOND_CHANCES;
        while slab.list(Queue::Window).weight > self.window_max {
            // The steady state: the main space is full and the eviction will decide.
            let main = slab.list(Queue::Probation).weight + slab.list(Queue::Protected).weight;
            if main >= main_max {
                break;
            }
            // `take_head` may give recently read heads a second chance: the entry it returns,
            // still at the window's head, is the one that must fit.
            let Some(c) = self.take_head(slab, Queue::Window, Queue::Probation, &mut chances)
            else {
                break; // every window entry had been read: all promoted
            };
            let main = slab.list(Queue::Probation).weight + slab.list(Queue::Protected).weight;
            if main + slab.weight(c) > main_max {
                break;
            }
            slab.move_to_tail(c, Queue::Probation);
        }
    }

    /// Picks the next entry to evict from a shard that is over capacity. May move entries between
    /// queues on the way. `None` only if the shard holds no entry at all.
    pub(crate) fn victim<K, V>(&mut self, slab: &mut Slab<K, V>) -> Option<Token> {
        let v = self.choose_victim(slab)?;
        let e = slab.get(v);
        let w = slab.weight(v) as u32;
        self.ghosts.on_evict(e.hash, w, e.queue != Queue::Window);
        Some(v)
    }

    fn choose_victim<K, V>(&mut self, slab: &mut Slab<K, V>) -> Option<Token> {
        if !self.shared.started {
            // The first eviction: misses before it found no ghosts (nothing had left), so the
            // first batch of nudges counts from here.
            self.shared.started = true;
            self.shared.misses = 0;
            self.start_window(slab);
        }
        let mut chances = MAX_SECOND_CHANCES;
        let window = slab.list(Queue::Window);
        if window.weight > self.window_max && window.head != NIL {
            // The window's oldest entry must earn its place in the main space against the main
            // space's best victim; the loser leaves. (If every window entry had been read, they
            // all went to probation, or back to the window's tail when it is a CLOCK, and the
            // main space gives the victim.)
            let retry = if self.clock_window {
                Queue::Window
            } else {
                Queue::Probation
            };
            if let Some(c) = self.take_head(slab, Queue::Window, retry, &mut chances) {
                let fc = self.sketch.frequency(slab.get(c).hash);
                if fc <= self.admit_margin {
                    // It cannot win whatever the victim: skip looking one up (one-hit wonders and
                    // scans, the common case under churn, then touch no main-space entry).
                    return Some(c);
                }
                let Some(v) = self.main_victim(slab, &mut chances) else {
                    return Some(c);
                };
                if self.admit(fc, slab.get(v).hash) {
                    slab.move_to_tail(c, Queue::Probation);
                    return Some(v);
                }
                return Some(c);
            }
        }
        if let Some(v) = self.main_victim(slab, &mut chances) {
            return Some(v);
        }
        self.take_head(slab, Queue::Window, Queue::Window, &mut chances)
    }

    /// At a shard's first eviction: if the fill hit often (`CLOCK_START_HIT_PERCENT`), this
    /// shard's share of the cache's window target goes to the whole capacity, so the cache starts
    /// as a CLOCK once its shards agree (each moves the target by its share), and ghost sizing
    /// takes it down from there if that loses.
    #[cold]
    fn start_window<K, V>(&mut self, slab: &Slab<K, V>) {
        if fill_hit_ratio(slab.entries()).0 < CLOCK_START_HIT_PERCENT {
            return;
        }
        let c = &self.shared;
        if !c.window.begin_clock_start() {
            return; // the cache's CLOCK start was already tried and undone
        }
        let from = initial_window(c.window.capacity());
        c.window
            .nudge((c.window.capacity() as f64 - from).max(0.0) * c.scale);
        self.follow_window();
    }

    /// Returns the head of `q` after giving accessed heads a second chance (moved to the tail of
    /// `retry`), folding their accesses into the sketch.
    ///
    /// For the window, `retry` is probation: an entry read while in the window has shown reuse at
    /// a short distance, and goes to the main space without facing the frequency filter (as in
    /// S3-FIFO's small-to-main promotion) rather than cycling back into the window as an LRU
    /// approximation would.
    ///
    /// A window that cycles into itself (a CLOCK window, or the last resort of an empty main
    /// space) takes only half of a head's reads, rounded up, and leaves the rest for the next
    /// pass: without new reads, an entry read `a` times survives about log2(a) passes instead of
    /// one, so a frequently read entry outlasts one read once. When the chances run out, the head returned has its
    /// reads taken in full, as in the other queues.
    ///
    /// `None` when `q` is empty, or becomes empty because every entry went to `retry`.
    fn take_head<K, V>(
        &mut self,
        slab: &mut Slab<K, V>,
        q: Queue,
        retry: Queue,
        chances: &mut u32,
    ) -> Option<Token> {
        let cycle = q == Queue::Window && retry == Queue::Window;
        loop {
            let t = slab.list(q).head;
            if t == NIL {
                return None;
            }
            let e = slab.get_mut(t);
            let a = if cycle {
                e.take_half_access()
            } else {
                e.take_access()
            };
            if a == 0 {
                return Some(t);
            }
            let h = e.hash;
            if *chances == 0 {
                // The reads a CLOCK pass left (none otherwise).
                let rest = e.take_access();
                self.sketch.increment(h, a + rest);
                return Some(t);
            }
            self.sketch.increment(h, a);
            *chances -= 1;
            slab.move_to_tail(t, retry);
        }
    }

    /// The oldest unaccessed entry of the main space, promoting accessed probation entries to
    /// protected on the way. `None` when the main space is empty.
    fn main_victim<K, V>(&mut self, slab: &mut Slab<K, V>, chances: &mut u32) -> Option<Token> {
        loop {
            if slab.list(Queue::Probation).head == NIL {
                if slab.list(Queue::Protected).head == NIL {
                    return None;
                }
                let p = self.take_head(slab, Queue::Protected, Queue::Protected, chances)?;
                slab.move_to_tail(p, Queue::Probation);
                continue;
            }
            let t = slab.list(Queue::Probation).head;
            let e = slab.get_mut(t);
            let a = e.take_access();
            if a == 0 {
                return Some(t);
            }
            let h = e.hash;
            self.sketch.increment(h, a);
            if *chances == 0 {
                return Some(t);
            }
            *chances -= 1;
            self.ghosts.on_promote(slab.weight(t) as u32);
            slab.move_to_tail(t, Queue::Protected);
            while slab.list(Queue::Protected).weight > self.protected_max {
                let Some(p) = self.take_head(slab, Queue::Protected, Queue::Protected, chances)
                else {
                    break;
                };
                slab.move_to_tail(p, Queue::Probation);
            }
        }
    }

    /// Whether a candidate of frequency `c` replaces `victim`.
    fn admit(&mut self, c: u8, victim: u32) -> bool {
        let v = self.sketch.frequency(victim);
        if c > v + self.admit_margin {
            true
        } else if c >= ADMIT_WARM_FREQUENCY {
            self.next_random() & 127 == 0
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_shards_remember_a_quarter_of_their_capacity_up_to_512_ghosts() {
        assert_eq!(ghost_depth(0), 0);
        // Up to 320 entries, 10%; then the reach ramps up to 25% at 512.
        assert_eq!(ghost_depth(100), 10);
        assert_eq!(ghost_depth(256), 25);
        assert_eq!(ghost_depth(320), 32);
        assert_eq!(ghost_depth(384), 64);
        assert_eq!(ghost_depth(512), 128);
        assert_eq!(ghost_depth(2_048), 512);
        // Between 2,048 and 5,120 entries the reach stays at 512, then 10% takes over.
        assert_eq!(ghost_depth(4_000), 512);
        assert_eq!(ghost_depth(5_120), 512);
        assert_eq!(ghost_depth(20_000), 2_000);
    }

    /// A one-shard policy of `capacity` and a slab holding `entries` window entries, the
    /// first `read` of them read `reads` times each.
    fn filled(capacity: u64, entries: u32, read: u32, reads: u32) -> (Policy, Slab<u32, u32>) {
        let window = Arc::new(SharedWindow::new(capacity, initial_window(capacity)));
        let p = Policy::new(capacity, 0, 7, window);
        let mut slab = Slab::new(false);
        for k in 0..entries {
            let t = slab.push(k, k, k.wrapping_mul(0x9E37_79B9), 1, Queue::Window);
            for _ in 0..if k < read { reads } else { 0 } {
                slab.get(t).touch();
            }
        }
        (p, slab)
    }

    #[test]
    fn the_fill_hit_ratio_counts_reads_against_one_miss_per_entry() {
        let (_, slab) = filled(100, 100, 50, 2);
        assert_eq!(fill_hit_ratio(slab.entries()), (0.5, 100));
        let (_, slab) = filled(100, 0, 0, 0);
        assert_eq!(fill_hit_ratio(slab.entries()), (0.0, 0));
        // Up to 1,024 entries all count; beyond, every `step`-th (10 of 10,000, so 1,000).
        let (_, slab) = filled(2_000, 1_024, 1_024, 1);
        assert_eq!(fill_hit_ratio(slab.entries()), (0.5, 1_024));
        let mut slab: Slab<u32, u32> = Slab::new(false);
        for k in 0..10_000u32 {
            let t = slab.push(k, k, k, 1, Queue::Window);
            // Only the sampled entries (every 10th) are read: 6 hits per sampled miss.
            if k % 10 == 0 {
                for _ in 0..6 {
                    slab.get(t).touch();
                }
            }
        }
        let (ratio, sampled) = fill_hit_ratio(slab.entries());
        assert_eq!(sampled, 1_000);
        assert!((ratio - 6.0 / 7.0).abs() < 1e-9);
    }

    #[test]
    fn a_shard_that_filled_with_many_hits_starts_as_a_clock() {
        // 100 entries read twice each while filling: 2 hits per miss, 67% > 55%.
        let (mut p, mut slab) = filled(100, 101, 101, 2);
        assert_eq!((p.window_max, p.clock_window), (1, false));
        p.victim(&mut slab).expect("an entry to evict");
        // The target went to the whole capacity; the window stops at 80%.
        assert_eq!(f64::from_bits(p.shared.window.window_bits()), 100.0);
        assert_eq!((p.window_max, p.clock_window), (80, true));
        assert_eq!(p.admit_margin, 0);
        // Main ghost hits take the target down; at half the capacity the start is undone and
        // the window goes back to 1%, once.
        let window = Arc::clone(&p.shared.window);
        window.nudge(-45.0);
        p.follow_window();
        assert_eq!((p.window_max, p.clock_window), (55, true));
        window.nudge(-5.0);
        p.follow_window();
        assert_eq!((p.window_max, p.clock_window), (1, false));
        window.nudge(59.0);
        p.follow_window();
        window.nudge(-20.0);
        p.follow_window();
        assert_eq!((p.window_max, p.clock_window), (40, false));

        // Half of them read once: 1 hit per 3 requests, under 55%; the window stays at 1%.
        let (mut p, mut slab) = filled(100, 101, 50, 1);
        p.victim(&mut slab).expect("an entry to evict");
        assert_eq!((p.window_max, p.clock_window), (1, false));
    }

    #[test]
    fn a_sharded_cache_starts_as_a_clock_once_its_shards_agree_and_is_undone_once() {
        // Four shards of 100 share one window of a cache of 400 (initial target 4).
        let window = Arc::new(SharedWindow::new(400, initial_window(400)));
        let mut shards: Vec<(Policy, Slab<u32, u32>)> = (0..4)
            .map(|_| {
                let (_, slab) = filled(100, 101, 101, 2);
                (Policy::new(100, 0, 7, Arc::clone(&window)), slab)
            })
            .collect();
        let target = || f64::from_bits(window.window_bits());
        // The first vote moves the target by a quarter of the way: no CLOCK yet, and another
        // shard following the target does not take it for a lost start.
        let (p, slab) = &mut shards[0];
        p.victim(slab).expect("an entry to evict");
        assert_eq!(target(), 4.0 + 396.0 / 4.0);
        let (p, _) = &mut shards[1];
        p.follow_window();
        assert_eq!((target(), p.window_max, p.clock_window), (103.0, 26, false));
        // The others vote: the whole capacity, each shard at 80%.
        for (p, slab) in &mut shards[1..] {
            p.victim(slab).expect("an entry to evict");
        }
        assert_eq!(target(), 400.0);
        for (p, _) in &mut shards {
            p.follow_window();
            assert_eq!((p.window_max, p.clock_window), (80, true));
        }
        // Back to half: undone, the target at its initial 4 (1 per shard).
        window.nudge(-200.0);
        for (p, _) in &mut shards {
            p.follow_window();
            assert_eq!((p.window_max, p.clock_window), (1, false));
        }
        assert_eq!(target(), 4.0);
    }

    #[test]
    fn a_window_above_half_the_capacity_cycles_read_entries_and_weighs_main_ghosts() {
        let (mut p, mut slab) = filled(100, 0, 0, 0);
        let window = Arc::clone(&p.shared.window);
        window.nudge(59.0); // 60%
        p.follow_window();
        assert_eq!((p.window_max, p.clock_window), (60, true));
        // 61 window entries, the oldest read 5 times: the CLOCK hand sends it back to the
        // window's tail with 2 reads left, and evicts the next one (never read).
        for k in 0..61u32 {
            let t = slab.push(k, k, k.wrapping_mul(0x9E37_79B9), 1, Queue::Window);
            if k == 0 {
                for _ in 0..5 {
                    slab.get(t).touch();
                }
            }
        }
        let v = p.victim(&mut slab).expect("an entry to evict");
        assert_eq!(slab.get(v).key, 1);
        let tail = slab.list(Queue::Window).tail;
        assert_eq!(slab.get(tail).key, 0);
        assert_eq!(slab.get(tail).pending_access(), 2);
        assert_eq!(slab.list(Queue::Probation).weight, 0);
        // A main ghost hit now counts 4 window ghost hits.
        let h = 0xABCD_0000;
        p.ghosts.on_evict(h, 1, true);
        p.on_insert(h, 1, 61);
        assert_eq!(p.ghost_net, -CLOCK_MAIN_GHOST_WEIGHT);

        // Below half, the same read head goes to probation instead.
        window.nudge(-20.0); // 40%
        p.follow_window();
        assert_eq!((p.window_max, p.clock_window), (40, false));
        let t = slab.list(Queue::Window).head;
        slab.get(t).touch();
        p.victim(&mut slab).expect("an entry to evict");
        assert_eq!(
            slab.get(slab.list(Queue::Probation).head).key,
            slab.get(t).key
        );
    }

    #[test]
    fn the_window_stops_at_80_percent_while_its_target_runs_to_the_capacity() {
        let (mut p, _) = filled(100, 0, 0, 0);
        let window = Arc::clone(&p.shared.window);
        window.nudge(1_000.0);
        p.follow_window();
        assert_eq!(f64::from_bits(window.window_bits()), 100.0);
        assert_eq!(p.window_max, 80);
        // Main ghost hits must use up the reserve above 80% before the window shrinks.
        window.nudge(-15.0);
        p.follow_window();
        assert_eq!(p.window_max, 80);
        window.nudge(-10.0);
        p.follow_window();
        assert_eq!(p.window_max, 75);
        // The smallest caches: the window is at least one entry, and a cache of two keeps one
        // for the main space.
        let (p, _) = filled(1, 0, 0, 0);
        assert_eq!(p.window_max, 1);
        let (mut p, _) = filled(2, 0, 0, 0);
        let window = Arc::clone(&p.shared.window);
        window.nudge(5.0);
        p.follow_window();
        assert_eq!((p.window_max, p.clock_window), (1, false));
    }

    #[test]
    fn window_ghosts_reach_a_quarter_of_the_capacity_while_the_window_is_at_its_floor() {
        let window = Arc::new(SharedWindow::new(20_000, initial_window(20_000)));
        let mut p = Policy::new(20_000, 0, 7, Arc::clone(&window));
        // The starting window (1%) is not the floor.
        assert_eq!(p.window_max, 200);
        assert_eq!(p.ghosts.window_reach(), 2_000);
        // Down to the floor, and the window ghosts reach far; back up, and they do not.
        window.nudge(-150.0);
        p.follow_window();
        assert_eq!(p.window_max, 50);
        assert_eq!(p.ghosts.window_reach(), 5_000);
        window.nudge(1_000.0);
        p.follow_window();
        assert_eq!(p.window_max, 1_050);
        assert_eq!(p.ghosts.window_reach(), 2_000);
    }
}
