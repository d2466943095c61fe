// The eviction policy: W-TinyLFU whose window is sized by ghost entries. `docs/policy.md`
// explains it on one page; `docs/policy-notes.md` records what was measured to choose it.
//
//   new entry -> [ window ] --candidate--> admission filter --> [ probation ] --read--> [ protected ]
//                    |                     (frequency sketch)         ^                      |
//                    +--- read while in the window -------------------+<---- overflow -------+
//
// - Every new entry enters the window, a FIFO of recent arrivals. An entry read while in it goes
//   on to probation when it reaches the window's head: it has shown reuse.
// - An unread entry at the window's head (the candidate) competes with the oldest unread entry of
//   probation (the victim): the one the frequency sketch has seen more often stays, the other
//   leaves the cache. This is what resists scans and keeps the frequently used working set.
// - An entry read while in probation is promoted to protected; protected's overflow goes back to
//   probation. Together they are the main space.
// - Ghosts (`ghost.rs`) size the window: a miss on a key the window let go a short while ago
//   moves the window up, a miss on a key the main space let go moves it down, so the window
//   settles where one more unit of space is worth as much on either side (`window.rs` shares
//   the target between a cache's shards).
// - One exception (`shift.rs`): when the miss ratio jumps and the new keys come back, the hot
//   set was replaced, and the window's target jumps to its largest size until the new set is in.
//
// Concurrency shapes the bookkeeping: readers hold only the shard's read lock, so a hit cannot
// reorder a queue or touch the sketch. It bumps the entry's `access` counter instead. Writers,
// when a queue's head comes up for eviction, look at the counter: an accessed entry gets a second
// chance (moved on, or promoted) and its accesses are folded into the sketch. A FIFO with second
// chances approximates LRU (it is CLOCK), so the structure keeps its hit ratio while reads stay
// free of policy work.

mod ghost;
mod shift;
mod sketch;
mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::slab::{NIL, Queue, Slab, Token};
use ghost::{Ghosts, Hit, Side};
use shift::Counts;
pub(crate) use sketch::FrequencySketch;
pub(crate) use window::SharedWindow;

/// The largest share of the capacity the window may take, so that the main space keeps room
/// for main ghosts to keep arriving and bring the window back down. Tuned.
const MAX_WINDOW: f64 = 0.8;

/// Protected's share of the main space at start: the segmented LRU's usual 80% (not tuned).
/// Main ghosts move it from there (`Policy::resize_protected`).
const PROTECTED: f64 = 0.8;

/// A candidate must have been seen more than this many times more often than the victim to be
/// admitted. Its latest access has just been counted, the victim's next one has not happened
/// yet, so a plain `>` favours the candidate by one; on a loop larger than the cache that bias
/// evicts exactly the entries about to be reused. Tuned.
const ADMIT_MARGIN: u8 = 1;

/// Candidates at least this frequent are admitted with probability 1/128 even when they lose,
/// so that an attacker cannot pin a victim by making it look hot: Caffeine's defence against
/// hash flooding of the sketch, with Caffeine's values (not tuned).
const ADMIT_WARM_FREQUENCY: u8 = 6;
const ADMIT_WARM_ODDS_MASK: u64 = 127;

/// How far back a window ghost counts, as a share of the shard's capacity, in inserts: the
/// window would have held the key had it been larger by this much. Short, because the question
/// is local (is one more unit worth it here?); long enough to see a recency phase whose keys
/// come back from beyond a small window. (A loop that overruns the cache by less than this
/// sends its keys back within it too: the window's credit, `Policy::window_credit`, is what
/// keeps such ghosts from growing a window that cannot hold the loop.) Tuned.
const GHOST_REACH: f64 = 0.1;

/// How far back a main ghost counts, as a multiple of `GHOST_REACH`, in departures from
/// probation (evictions and promotions): the main space turns over more slowly than the window,
/// and a ghost of it needs a longer memory to be seen at all. Tuned.
const MAIN_GHOST_REACH: f64 = 2.0;

/// The window's move per ghost hit, as a share of the step base (`step_base`), times the ghost
/// table's sampling divisor, so that the drift per request does not depend on the sampling.
/// Protected's share moves by as much of the main space. Tuned: faster steps follow phases sooner
/// and wander more on steady workloads.
const GHOST_STEP: f64 = 0.001;

/// The capacity `GHOST_STEP` is a share of, for a cache of `capacity`: the capacity up to
/// 4,096, then 4,096 up to 32,768, then an eighth of the capacity. Part of the step's tuning:
/// `GHOST_STEP` was chosen on the grid with these steps (those of one shard of a cache split in
/// at most eight shards of at least 4,096 entries), and a large cache loses with larger ones
/// (P12 at 65,536 entries, 3 points at eight times the step) and with smaller ones (P3 at
/// 160,000, 4 points at a quarter). Taken from the cache's capacity, not a shard's, so that the
/// shard count, which follows the machine's cores, does not change the hit ratio.
fn step_base(capacity: u64) -> f64 {
    let c = capacity as f64;
    c.min(4096.0).max(c / 8.0)
}

/// Most second chances given while looking for one victim. Each is paid for by an earlier read,
/// so the work is O(1) amortised; the bound caps the worst single eviction.
const MAX_SECOND_CHANCES: u32 = 64;

/// Most entries a promotion sends back from protected to probation (an eviction sends one), so
/// that a fall in protected's target costs no single eviction more than this.
const MAX_DEMOTIONS: u32 = 2;

/// Misses of a shard between two moves of the cache's window: a move writes the cache line every
/// shard reads, so it is batched.
const NUDGE_EVERY: u32 = 16;

pub(crate) struct Policy {
    sketch: FrequencySketch,
    ghosts: Ghosts,
    capacity: u64,
    /// Most weight the window holds before its head must leave it.
    window_max: u64,
    /// Most weight protected holds before its head goes back to probation.
    protected_max: u64,
    /// Protected's share of the main space, moved by main ghosts: the cache's
    /// (`SharedWindow::protected`) as this shard applied it last.
    protected_share: f64,
    /// Recent evictions from the main space of entries never protected and of entries protected
    /// once: how fast each kind of main ghost is made. Halved when they sum to the capacity.
    main_departures: [f64; 2],
    shared: Arc<SharedWindow>,
    /// This shard's capacity over the cache's: the share of the cache's window it applies
    /// (exactly 1.0 for a single shard).
    scale: f64,
    /// The cache's window target (bits) this shard applied last.
    applied: u64,
    /// The window's move per ghost hit, in units of the cache's capacity.
    ghost_step: f64,
    /// Window ghost hits (each counting for its weight) minus main ghost hits since the last
    /// nudge.
    ghost_net: f64,
    /// Protected's moves since the last nudge, not yet added to the cache's share.
    protected_pending: f64,
    /// Window ghost hits the window has earned with its own hits, and may still count: a
    /// window ghost hit without credit is ignored. Each entry read while in the window earns
    /// `credit_per_read`, the ghosts' reach over the window's size, so the ghosts grow the
    /// window only while they hit no more often per unit of reach than the window hits per unit
    /// of its size: a larger window is worth no more per unit than this one, as on any concave
    /// hit-ratio curve. A loop slightly larger than the cache, whose curve is flat until the
    /// whole loop fits, sends its keys back within the reach but is never read in the window,
    /// so its ghosts move nothing.
    window_credit: f64,
    /// The credit one window hit earns (see `window_credit`), per sampled ghost.
    credit_per_read: f64,
    /// Misses since the last nudge.
    misses: u32,
    /// Weight this shard has still to evict before its ghost hits move the window by a full
    /// step (`Policy::nudge`), out of `warmup`.
    warmup_left: u64,
    /// The weight evicted by the time a ghost hit moves the window by a full step: as much as
    /// the main ghosts reach.
    warmup: u64,
    rng: u64,
    /// The shard's hit counter (`ShardState::hits`) when this shard last reported.
    hits_seen: u32,
    /// Requests, misses and window ghost hits not yet reported to the shift detector.
    unreported: Counts,
}

/// The next state of a xorshift64 generator (Marsaglia's 13, 7, 17), from a nonzero `x`.
#[inline]
fn xorshift64(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The state a cache of `capacity` shares between its shards, as it starts.
pub(crate) fn shared_window(capacity: u64) -> SharedWindow {
    SharedWindow::new(capacity, initial_window(capacity), PROTECTED)
}

/// The window's initial target for a cache of `capacity`: the share of the capacity one ghost
/// hit moves it by (`GHOST_STEP`), and at least one unit. Not tuned of its own: the ghosts move
/// it where they find evidence; where they find none (a loop, or keys that come back from
/// beyond both ghosts' reach) it stays where it started, and there the smallest window loses
/// least.
pub(crate) fn initial_window(capacity: u64) -> f64 {
    let c = capacity as f64;
    (c * GHOST_STEP).max(1.0).min(c)
}

impl Policy {
    /// A policy for a shard of `capacity`, expecting `initial_entries`; `counted` when the shard
    /// is count-bounded (its capacity is in entries, not weight).
    pub(crate) fn new(
        capacity: u64,
        initial_entries: usize,
        seed: u64,
        window: Arc<SharedWindow>,
        counted: bool,
    ) -> Self {
        let scale = if capacity == window.capacity() {
            1.0 // exactly, so that a single shard's window is the cache's
        } else {
            capacity as f64 / window.capacity().max(1) as f64
        };
        let ghosts = Ghosts::new(capacity, GHOST_REACH, scale, MAIN_GHOST_REACH, counted);
        let warmup = (capacity as f64 * GHOST_REACH * MAIN_GHOST_REACH) as u64;
        // In units of the cache's capacity, the same for every shard: each ghost hit, from
        // whichever shard, moves the cache's target by one step, so the target drifts per
        // request as it would with one shard.
        let ghost_step =
            step_base(window.capacity()) * GHOST_STEP * f64::from(1u32 << ghosts.sample_bits());
        let mut p = Policy {
            sketch: FrequencySketch::new(initial_entries, capacity),
            ghosts,
            capacity,
            window_max: 0,
            protected_max: 0,
            protected_share: window.protected(),
            main_departures: [0.0; 2],
            applied: window.window_bits(),
            shared: window,
            scale,
            ghost_step,
            ghost_net: 0.0,
            protected_pending: 0.0,
            window_credit: 0.0,
            credit_per_read: 0.0,
            misses: 0,
            warmup_left: warmup,
            warmup,
            rng: seed | 1,
            hits_seen: 0,
            unreported: Counts::default(),
        };
        p.apply();
        p
    }

    /// The shard's capacity changed (`Cache::set_capacity`): its window keeps its share of the
    /// cache's window target, which stays in units of the cache's capacity at build time, and the
    /// queues are sized anew. Ghosts and frequencies carry over.
    pub(crate) fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
        self.scale = capacity as f64 / self.shared.capacity().max(1) as f64;
        self.apply();
    }

    /// Sizes the window and protected from the cache's window target last read.
    fn apply(&mut self) {
        let cap = self.capacity as f64;
        let target = f64::from_bits(self.applied) * self.scale;
        // At least one unit, and at most `MAX_WINDOW` rounded down, so that a cache of two keeps
        // one unit for the main space.
        let largest = (cap * MAX_WINDOW).floor().max(1.0_f64.min(cap));
        self.window_max = target.round().clamp(1.0_f64.min(cap), largest) as u64;
        // A sampled ghost hit stands for 2^k of them.
        self.credit_per_read = cap * GHOST_REACH
            / self.window_max.max(1) as f64
            / f64::from(1u32 << self.ghosts.sample_bits());
        self.apply_protected();
    }

    /// The weight the main space holds: what the window leaves of the capacity.
    fn main_space(&self) -> u64 {
        self.capacity - self.window_max
    }

    /// Sizes protected from its share of the main space.
    fn apply_protected(&mut self) {
        self.protected_max = (self.main_space() as f64 * self.protected_share) as u64;
    }

    /// A main ghost hit: grows protected (`Side::Protected`) or probation (`Side::Main`) by the
    /// window's step, scaled as ARC scales its own: by how many more ghosts the other side
    /// makes (`main_departures`), so that a side whose entries rarely leave is not outvoted for
    /// being rare.
    fn resize_protected(&mut self, side: Side) {
        let [never, once] = self.main_departures;
        let step = if side == Side::Protected {
            self.ghost_step * (never / once.max(1.0)).max(1.0)
        } else {
            -self.ghost_step * (once / never.max(1.0)).max(1.0)
        };
        // A share of the cache's main space, which this shard's is its share of. Applied here at
        // once, and to the cache's share with the next nudge (it is a write to the line every
        // shard reads).
        let main = self.main_space().max(1) as f64 / self.scale.max(f64::MIN_POSITIVE);
        let share = (self.protected_share + step / main).clamp(0.0, 1.0);
        self.protected_pending += share - self.protected_share;
        self.protected_share = share;
        self.apply_protected();
    }

    /// A new key (a miss) of `hash` and `weight` arrives in the shard of `slab`, before its
    /// entry joins the window's tail: it is counted in the sketch and looked up among the
    /// ghosts. `hits` is the shard's hit counter, which readers increment (wrapping). Returns
    /// whether the entry is to be marked rare (`Entry::mark_rare`).
    #[inline]
    pub(crate) fn on_new_key<K, V>(
        &mut self,
        slab: &Slab<K, V>,
        hits: &AtomicU32,
        hash: u32,
        weight: u32,
    ) -> bool {
        self.sketch.ensure_capacity(slab.len() + 1);
        // A key seen at most `ADMIT_MARGIN` times will lose at the window's head unless read by
        // then: no need to look up its frequency again there (one cache miss less per eviction
        // under churn).
        let rare = self.sketch.increment(hash, 1) <= ADMIT_MARGIN;
        match self.ghosts.on_miss(hash, weight) {
            None => {}
            Some(Hit {
                side: Side::Window,
                weight: counts,
            }) => {
                // A sampled ghost stands for 2^k keys.
                self.unreported.returns += 1 << self.ghosts.sample_bits();
                // Each hit spends a whole unit of credit, however little it counts for: a far
                // ghost may not grow the window more often than a near one.
                if self.window_credit >= 1.0 {
                    self.window_credit -= 1.0;
                    self.ghost_net += counts;
                }
                // Else: not vouched for by the window's own hits, ignored.
            }
            Some(Hit { side, .. }) => {
                self.ghost_net -= 1.0;
                self.resize_protected(side);
            }
        }
        self.misses += 1;
        if self.misses >= NUDGE_EVERY {
            self.nudge(
                slab.list(Queue::Window).weight + u64::from(weight),
                slab.len() as u64 + 1,
                hits.load(Ordering::Relaxed),
            );
        }
        rare
    }

    /// Moves the cache's window by this shard's ghost hits since the last nudge, and applies
    /// the window the cache now has. `window` is the weight this shard's window holds.
    ///
    /// Two things keep the ghosts' votes to what they measured:
    /// - A ghost hit says that a window larger (or smaller) by up to the ghosts' reach would
    ///   have hit; nothing about one farther off. The window follows a rising target one insert
    ///   at a time, so a burst of votes could run the target far ahead of the window they were
    ///   cast on, and the main entries displaced on the way would drive it back as far: a shard
    ///   moves the target no farther than one reach from the window it holds.
    /// - Until a shard has evicted as much as the main ghosts reach, fewer ghosts exist than a
    ///   hit could come from, and the first fill stocked the main space without the filter:
    ///   the step grows with the share of that weight evicted so far.
    ///
    /// It also reports the shard's requests to the shift detector (`shift.rs`), `entries` being
    /// how many entries the shard holds and `hits` its hit counter.
    #[cold]
    fn nudge(&mut self, window: u64, entries: u64, hits: u32) {
        let new_hits = hits.wrapping_sub(self.hits_seen);
        self.hits_seen = hits;
        self.unreported.add(Counts {
            requests: u64::from(new_hits) + u64::from(self.misses),
            misses: u64::from(self.misses),
            returns: 0,
        });
        self.misses = 0;
        let cache_entries = if self.scale > 0.0 {
            (entries as f64 / self.scale) as u64
        } else {
            entries
        };
        if self.shared.report(self.unreported, cache_entries) {
            self.unreported = Counts::default();
        }
        if self.ghost_net != 0.0 {
            let mut delta = self.ghost_net * self.ghost_step;
            if self.warmup_left > 0 {
                delta *= 1.0 - self.warmup_left as f64 / self.warmup as f64;
            }
            let (lo, hi) = if self.scale > 0.0 {
                let reach = self.capacity as f64 * GHOST_REACH;
                let window = window as f64;
                ((window - reach) / self.scale, (window + reach) / self.scale)
            } else {
                (f64::NEG_INFINITY, f64::INFINITY)
            };
            self.shared.nudge(delta, lo, hi);
            self.ghost_net = 0.0;
        }
        let protected = if self.protected_pending != 0.0 {
            let p = self.shared.move_protected(self.protected_pending);
            self.protected_pending = 0.0;
            p
        } else {
            self.shared.protected()
        };
        let now = self.shared.window_bits();
        if now != self.applied {
            self.applied = now;
            self.protected_share = protected;
            self.apply();
        } else if protected != self.protected_share {
            self.protected_share = protected;
            self.apply_protected();
        }
    }

    fn next_random(&mut self) -> u64 {
        // Only used for the warm admissions, so quality needs are modest.
        self.rng = xorshift64(self.rng);
        self.rng
    }

    fn main_weight<K, V>(slab: &Slab<K, V>) -> u64 {
        slab.list(Queue::Probation).weight + slab.list(Queue::Protected).weight
    }

    /// Moves the window's overflow into the main space while the main space has room for it
    /// (while the cache fills up, or after the window shrank). Called before evicting.
    #[inline]
    pub(crate) fn fill_main<K, V>(&mut self, slab: &mut Slab<K, V>) {
        self.fill_main_for(slab, 0);
    }

    /// `fill_main` before an entry of weight `incoming` joins the window's tail: the window
    /// counts it as if it were there.
    #[inline]
    pub(crate) fn fill_main_for<K, V>(&mut self, slab: &mut Slab<K, V>, incoming: u64) {
        if slab.list(Queue::Window).weight + incoming > self.window_max
            && Self::main_weight(slab) < self.main_space()
        {
            self.fill_main_slow(slab, incoming);
        }
    }

    #[cold]
    fn fill_main_slow<K, V>(&mut self, slab: &mut Slab<K, V>, incoming: u64) {
        let main_max = self.main_space();
        let mut chances = MAX_SECOND_CHANCES;
        while slab.list(Queue::Window).weight + incoming > self.window_max
            && Self::main_weight(slab) < main_max
        {
            // `take_head` may give read heads their promotion: the entry it returns, still at
            // the window's head, is the one that must fit.
            let Some(c) = self.take_head(slab, Queue::Window, Queue::Probation, &mut chances)
            else {
                break;
            };
            if Self::main_weight(slab) + slab.weight(c) > main_max {
                break;
            }
            slab.move_to_tail(c, Queue::Probation);
        }
    }

    /// Picks the next entry to evict from a shard that is over capacity. May move entries between
    /// queues on the way. `None` only if the shard holds no entry at all.
    #[inline]
    pub(crate) fn victim<K, V>(&mut self, slab: &mut Slab<K, V>) -> Option<Token> {
        self.victim_for(slab, 0)
    }

    /// `victim` before an entry of weight `incoming` joins the window's tail (a full shard
    /// then gives the victim's slot to the new entry): the window counts it as if it were
    /// there. Its head is an older entry, unless every entry older than the new one was read
    /// and moved on, where the new entry would have been the candidate: then the main space
    /// gives the victim instead.
    pub(crate) fn victim_for<K, V>(
        &mut self,
        slab: &mut Slab<K, V>,
        incoming: u64,
    ) -> Option<Token> {
        let mut chances = MAX_SECOND_CHANCES;
        // After protected's target fell, every eviction sends one entry back, so that
        // protected drains even while nothing is promoted (after a shift, the keys that died
        // there are read no more, and the new ones lose to probation's victims).
        if slab.list(Queue::Protected).weight > self.protected_max {
            self.demote(slab, &mut chances);
        }
        let v = self.choose_victim(slab, incoming, &mut chances)?;
        let w = slab.weight(v) as u32;
        self.warmup_left = self.warmup_left.saturating_sub(u64::from(w));
        let e = slab.get_mut(v);
        let side = if e.queue == Queue::Window {
            Side::Window
        } else {
            let protected = e.was_protected();
            let d = &mut self.main_departures;
            d[usize::from(protected)] += f64::from(w);
            if d[0] + d[1] > self.capacity as f64 {
                d[0] /= 2.0;
                d[1] /= 2.0;
            }
            if protected {
                Side::Protected
            } else {
                Side::Main
            }
        };
        self.ghosts.on_evict(e.hash, w, side);
        Some(v)
    }

    fn choose_victim<K, V>(
        &mut self,
        slab: &mut Slab<K, V>,
        incoming: u64,
        chances: &mut u32,
    ) -> Option<Token> {
        let window = slab.list(Queue::Window);
        if window.weight + incoming > self.window_max && window.head != NIL {
            // The window's oldest unread entry must earn its place against the main space's
            // victim; the loser leaves. (If every window entry had been read, they all went on
            // to probation, and the main space gives the victim.)
            if let Some(c) = self.take_head(slab, Queue::Window, Queue::Probation, chances) {
                // A candidate seen at most `ADMIT_MARGIN` times cannot win whatever the victim:
                // it leaves without a look at one (one-hit wonders and scans, the common case
                // under churn, then touch no main-space entry). Marked so when it came in, it
                // still is: its count can only have been halved since.
                if slab.get_mut(c).is_rare() {
                    return Some(c);
                }
                let fc = self.sketch.frequency(slab.get(c).hash);
                if fc <= ADMIT_MARGIN {
                    return Some(c);
                }
                let Some(v) = self.main_victim(slab, chances) else {
                    return Some(c);
                };
                if self.admit(fc, slab.get(v).hash) {
                    slab.move_to_tail(c, Queue::Probation);
                    return Some(v);
                }
                return Some(c);
            }
        }
        if let Some(v) = self.main_victim(slab, chances) {
            return Some(v);
        }
        // No main space to take from (a cache of one unit): the window cycles into itself.
        self.take_head(slab, Queue::Window, Queue::Window, chances)
    }

    /// Returns the head of `from` after giving read heads a second chance (moved to the tail of
    /// `retry`), folding their reads into the sketch. A queue that cycles into itself takes half
    /// of a head's reads, rounded up, and leaves the rest for the next pass, so that an entry
    /// read `a` times outlasts about log2(a) passes without new reads. When the chances run out,
    /// the head is returned with all its reads taken. `None` when `from` is, or becomes, empty.
    ///
    /// The common case, an unread head, is answered inline: it is returned as it is (there are
    /// no reads to take from it).
    #[inline(always)]
    fn take_head<K, V>(
        &mut self,
        slab: &mut Slab<K, V>,
        from: Queue,
        retry: Queue,
        chances: &mut u32,
    ) -> Option<Token> {
        let t = slab.list(from).head;
        if t == NIL {
            return None;
        }
        if !slab.get(t).was_read() {
            return Some(t);
        }
        self.take_read_head(slab, from, retry, chances)
    }

    /// `take_head` once the head was read.
    #[inline(never)]
    fn take_read_head<K, V>(
        &mut self,
        slab: &mut Slab<K, V>,
        from: Queue,
        retry: Queue,
        chances: &mut u32,
    ) -> Option<Token> {
        let cycle = from == retry;
        loop {
            let t = slab.list(from).head;
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
                let rest = e.take_access();
                self.sketch.increment(h, a + rest);
                return Some(t);
            }
            self.sketch.increment(h, a);
            *chances -= 1;
            if from == Queue::Window && !cycle {
                // A window hit: it earns the window credit for a ghost hit.
                self.window_credit += self.credit_per_read;
            }
            slab.move_to_tail(t, retry);
        }
    }

    /// The oldest unread entry of the main space, promoting read probation entries to protected
    /// on the way. `None` when the main space is empty. An unread probation head, the common
    /// case, is answered inline.
    #[inline(always)]
    fn main_victim<K, V>(&mut self, slab: &mut Slab<K, V>, chances: &mut u32) -> Option<Token> {
        let t = slab.list(Queue::Probation).head;
        if t != NIL && !slab.get(t).was_read() {
            return Some(t);
        }
        self.main_victim_slow(slab, chances)
    }

    /// `main_victim` once probation is empty or its head was read.
    #[inline(never)]
    fn main_victim_slow<K, V>(
        &mut self,
        slab: &mut Slab<K, V>,
        chances: &mut u32,
    ) -> Option<Token> {
        loop {
            let t = slab.list(Queue::Probation).head;
            if t == NIL {
                // Everything is protected: its oldest entry goes back to probation.
                let p = self.take_head(slab, Queue::Protected, Queue::Protected, chances)?;
                slab.move_to_tail(p, Queue::Probation);
                continue;
            }
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
            slab.get_mut(t).mark_protected();
            slab.move_to_tail(t, Queue::Protected);
            // After protected's target fell, it shrinks over the next promotions and
            // evictions, not at once.
            for _ in 0..MAX_DEMOTIONS {
                if slab.list(Queue::Protected).weight <= self.protected_max
                    || !self.demote(slab, chances)
                {
                    break;
                }
            }
        }
    }

    /// Sends protected's oldest unread entry back to probation (after second chances for the
    /// read ones). `false` when protected is, or becomes, empty.
    #[cold]
    fn demote<K, V>(&mut self, slab: &mut Slab<K, V>, chances: &mut u32) -> bool {
        match self.take_head(slab, Queue::Protected, Queue::Protected, chances) {
            Some(p) => {
                slab.move_to_tail(p, Queue::Probation);
                true
            }
            None => false,
        }
    }

    /// Whether a candidate of frequency `c` replaces `victim`.
    #[inline]
    fn admit(&mut self, c: u8, victim: u32) -> bool {
        let v = self.sketch.frequency(victim);
        if c > v + ADMIT_MARGIN {
            true
        } else if c >= ADMIT_WARM_FREQUENCY {
            self.next_random() & ADMIT_WARM_ODDS_MASK == 0
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests;
