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
//
// Concurrency shapes the bookkeeping: readers hold only the shard's read lock, so a hit cannot
// reorder a queue or touch the sketch. It bumps the entry's `access` counter instead. Writers,
// when a queue's head comes up for eviction, look at the counter: an accessed entry gets a second
// chance (moved on, or promoted) and its accesses are folded into the sketch. A FIFO with second
// chances approximates LRU (it is CLOCK), so the structure keeps its hit ratio while reads stay
// free of policy work.

mod ghost;
mod sketch;
mod window;

use std::sync::Arc;

use crate::slab::{NIL, Queue, Slab, Token};
use ghost::{Found, Ghosts};
pub(crate) use sketch::FrequencySketch;
pub(crate) use window::SharedWindow;

/// The window's share of the capacity at start: Caffeine's starting point (not tuned here).
/// Loops and scans want the smallest window, and the ghosts grow it where a larger one pays.
const INITIAL_WINDOW: f64 = 0.01;

/// The largest share of the capacity the window may take, so that the main space keeps room
/// for main ghosts to keep arriving and bring the window back down. Tuned.
const MAX_WINDOW: f64 = 0.8;

/// Share of the main space kept for protected entries (read again while in probation). The
/// segmented LRU's usual 80% rounded to what the tuning grid preferred; smaller shares follow a
/// shifting hot set faster and lose on steady frequency-skewed workloads. Tuned.
const PROTECTED: f64 = 0.77;

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
/// is local (is one more unit worth it here?); a ghost that came back from farther than the
/// distance by which a loop overruns the cache would keep growing a window that cannot hold the
/// loop. Tuned.
const GHOST_REACH: f64 = 0.05;

/// How far back a main ghost counts, as a multiple of `GHOST_REACH`, in departures from
/// probation (evictions and promotions): the main space turns over more slowly than the window,
/// and a ghost of it needs a longer memory to be seen at all. Tuned.
const MAIN_GHOST_REACH: f64 = 2.0;

/// The window's move per ghost hit, as a share of the shard's capacity (times the ghost table's
/// sampling divisor, so that the drift per request does not depend on the sampling). Tuned:
/// faster steps follow phases sooner and wander more on steady workloads.
const GHOST_STEP: f64 = 0.001;

/// Most second chances given while looking for one victim. Each is paid for by an earlier read,
/// so the work is O(1) amortised; the bound caps the worst single eviction.
const MAX_SECOND_CHANCES: u32 = 64;

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
    shared: Arc<SharedWindow>,
    /// This shard's capacity over the cache's: the share of the cache's window it applies
    /// (exactly 1.0 for a single shard).
    scale: f64,
    /// The cache's window target (bits) this shard applied last.
    applied: u64,
    /// The window's move per ghost hit, in units of the cache's capacity.
    ghost_step: f64,
    /// Window ghost hits minus main ghost hits since the last nudge.
    ghost_net: i32,
    /// Misses since the last nudge.
    misses: u32,
    rng: u64,
}

/// The window's initial target for a cache (or shard) of `capacity`: at least one unit.
pub(crate) fn initial_window(capacity: u64) -> f64 {
    let c = capacity as f64;
    (c * INITIAL_WINDOW).max(1.0).min(c)
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
        let ghosts = Ghosts::new((capacity as f64 * GHOST_REACH) as u64, MAIN_GHOST_REACH);
        // In units of the cache's capacity: a shard of an eighth of the cache moves the shared
        // target by an eighth as much per ghost hit, so the target drifts per request as one
        // shard's would alone.
        let ghost_step = capacity as f64 * GHOST_STEP * f64::from(1u32 << ghosts.sample_bits());
        let mut p = Policy {
            sketch: FrequencySketch::new(initial_entries, capacity),
            ghosts,
            capacity,
            window_max: 0,
            protected_max: 0,
            applied: window.window_bits(),
            shared: window,
            scale,
            ghost_step,
            ghost_net: 0,
            misses: 0,
            rng: seed | 1,
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
        self.protected_max = ((self.capacity - self.window_max) as f64 * PROTECTED) as u64;
    }

    /// A new key was inserted (a miss) as entry `t`, at the window's tail.
    #[inline]
    pub(crate) fn on_insert<K, V>(&mut self, slab: &mut Slab<K, V>, t: Token) {
        self.sketch.ensure_capacity(slab.len());
        let weight = slab.weight(t) as u32;
        let e = slab.get_mut(t);
        let hash = e.hash;
        if self.sketch.increment(hash, 1) <= ADMIT_MARGIN {
            // It will lose at the window's head unless read by then: no need to look up its
            // frequency again there (one cache miss less per eviction under churn).
            e.mark_rare();
        }
        match self.ghosts.on_miss(hash, weight) {
            Found::Nothing => {}
            Found::Window => self.ghost_net += 1,
            Found::Main => self.ghost_net -= 1,
        }
        self.misses += 1;
        if self.misses >= NUDGE_EVERY {
            self.nudge();
        }
    }

    /// Moves the cache's window by this shard's ghost hits since the last nudge, and applies
    /// the window the cache now has.
    #[cold]
    fn nudge(&mut self) {
        self.misses = 0;
        if self.ghost_net != 0 {
            self.shared
                .nudge(f64::from(self.ghost_net) * self.ghost_step);
            self.ghost_net = 0;
        }
        let now = self.shared.window_bits();
        if now != self.applied {
            self.applied = now;
            self.apply();
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: only used for the warm admissions, so quality needs are modest.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn main_weight<K, V>(slab: &Slab<K, V>) -> u64 {
        slab.list(Queue::Probation).weight + slab.list(Queue::Protected).weight
    }

    /// Moves the window's overflow into the main space while the main space has room for it
    /// (while the cache fills up, or after the window shrank). Called before evicting.
    #[inline]
    pub(crate) fn fill_main<K, V>(&mut self, slab: &mut Slab<K, V>) {
        if slab.list(Queue::Window).weight > self.window_max
            && Self::main_weight(slab) < self.capacity - self.window_max
        {
            self.fill_main_slow(slab);
        }
    }

    #[cold]
    fn fill_main_slow<K, V>(&mut self, slab: &mut Slab<K, V>) {
        let main_max = self.capacity - self.window_max;
        let mut chances = MAX_SECOND_CHANCES;
        while slab.list(Queue::Window).weight > self.window_max
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
    pub(crate) fn victim<K, V>(&mut self, slab: &mut Slab<K, V>) -> Option<Token> {
        let v = self.choose_victim(slab)?;
        let e = slab.get(v);
        let w = slab.weight(v) as u32;
        self.ghosts.on_evict(e.hash, w, e.queue != Queue::Window);
        Some(v)
    }

    fn choose_victim<K, V>(&mut self, slab: &mut Slab<K, V>) -> Option<Token> {
        let mut chances = MAX_SECOND_CHANCES;
        let window = slab.list(Queue::Window);
        if window.weight > self.window_max && window.head != NIL {
            // The window's oldest unread entry must earn its place against the main space's
            // victim; the loser leaves. (If every window entry had been read, they all went on
            // to probation, and the main space gives the victim.)
            if let Some(c) = self.take_head(slab, Queue::Window, Queue::Probation, &mut chances) {
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
        // No main space to take from (a cache of one unit): the window cycles into itself.
        self.take_head(slab, Queue::Window, Queue::Window, &mut chances)
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
mod tests {
    use super::*;

    /// One shard driven the way `shard.rs` drives it, over a slab without an index (lookups
    /// scan it: the tests' caches are small).
    struct Sim {
        p: Policy,
        slab: Slab<u32, u32>,
        capacity: u64,
    }

    fn hash(k: u32) -> u32 {
        k.wrapping_mul(0x9E37_79B9).rotate_left(7) ^ 0x5bd1_e995
    }

    impl Sim {
        fn new(capacity: u64) -> Sim {
            let window = Arc::new(SharedWindow::new(capacity, initial_window(capacity)));
            Sim {
                p: Policy::new(capacity, 0, 7, window),
                slab: Slab::new(false),
                capacity,
            }
        }

        fn find(&self, k: u32) -> Option<Token> {
            self.slab
                .entries()
                .iter()
                .position(|e| e.key == k)
                .map(|t| t as Token)
        }

        /// A read: `true` on a hit.
        fn get(&self, k: u32) -> bool {
            self.find(k).map(|t| self.slab.get(t).touch()).is_some()
        }

        fn insert(&mut self, k: u32) {
            let t = self.slab.push(k, k, hash(k), 1, Queue::Window);
            self.p.on_insert(&mut self.slab, t);
            self.p.fill_main(&mut self.slab);
            while self.slab.len() as u64 > self.capacity {
                let v = self.p.victim(&mut self.slab).expect("an entry to evict");
                self.slab.remove(v);
            }
        }

        /// The cache's replay model: a read, and an insert on a miss. `true` on a hit.
        fn request(&mut self, k: u32) -> bool {
            self.get(k) || {
                self.insert(k);
                false
            }
        }

        fn queue_of(&self, k: u32) -> Option<Queue> {
            self.find(k).map(|t| self.slab.get(t).queue)
        }
    }

    #[test]
    fn the_window_starts_at_one_percent_and_at_least_one_unit() {
        assert_eq!(initial_window(1_000), 10.0);
        assert_eq!(initial_window(50), 1.0);
        assert_eq!(initial_window(0), 0.0);
        let s = Sim::new(1_000);
        assert_eq!((s.p.window_max, s.p.protected_max), (10, 762));
    }

    #[test]
    fn a_key_seen_once_does_not_displace_the_working_set() {
        let mut s = Sim::new(100);
        for _ in 0..3 {
            for k in 0..100 {
                s.request(k);
            }
        }
        // A scan of new keys, each seen once: every one leaves again.
        for k in 1_000..1_200 {
            s.insert(k);
        }
        let resident = (0..100).filter(|&k| s.find(k).is_some()).count();
        assert!(resident >= 98, "{resident} of the working set left");
    }

    #[test]
    fn a_candidate_seen_often_enough_replaces_the_victim() {
        let mut s = Sim::new(100);
        for k in 0..100 {
            s.insert(k);
        }
        // Each miss counts the key once more: it is admitted once seen more often than the
        // victim (seen once) plus the margin, on its third miss.
        let mut admitted_after = None;
        for attempt in 1..=5 {
            s.insert(500);
            s.insert(600); // pushes 500 to the window's head
            if s.queue_of(500).is_some() {
                admitted_after = Some(attempt);
                break;
            }
        }
        assert_eq!(admitted_after, Some(3));
        assert_eq!(s.queue_of(500), Some(Queue::Probation));
    }

    #[test]
    fn an_entry_read_in_the_window_goes_on_without_facing_the_filter() {
        let mut s = Sim::new(100);
        for k in 0..100 {
            s.insert(k);
        }
        s.insert(500);
        assert!(s.get(500));
        s.insert(600);
        // Seen once, it would have lost to any victim; read in the window, it was promoted, and
        // the next one at the window's head, seen once and unread, left instead.
        assert_eq!(s.queue_of(500), Some(Queue::Probation));
        assert_eq!(s.queue_of(600), None);
    }

    #[test]
    fn a_rare_candidate_leaves_without_a_look_at_the_victim() {
        let mut s = Sim::new(100);
        for k in 0..100 {
            s.insert(k);
        }
        s.insert(1_000);
        let t = s.find(1_000).expect("resident");
        assert!(s.slab.get_mut(t).is_rare());
        assert_eq!(s.slab.get(t).queue, Queue::Window);
        // The next insert makes it the candidate: it leaves, and no main entry was visited
        // (the probation head still has the read it was given).
        let head = s.slab.list(Queue::Probation).head;
        s.slab.get(head).touch();
        s.insert(1_001);
        assert_eq!(s.find(1_000), None);
        assert_eq!(
            s.slab
                .get(s.slab.list(Queue::Probation).head)
                .pending_access(),
            1
        );
        // A key the sketch has seen before is not rare.
        s.p.sketch.increment(hash(2_000), 1);
        s.insert(2_000);
        let t = s.find(2_000).expect("resident");
        assert!(!s.slab.get_mut(t).is_rare());
    }

    #[test]
    fn read_probation_entries_are_protected_until_protected_overflows() {
        let mut s = Sim::new(10); // window 1, protected at most 6 of the main space's 9
        for k in 0..10 {
            s.insert(k);
        }
        for k in 0..9 {
            assert!(s.get(k));
        }
        // Looking for a victim promotes every read probation entry; protected's overflow goes
        // back to probation, where the first one demoted is the victim (its read was taken).
        let mut chances = MAX_SECOND_CHANCES;
        let v =
            s.p.main_victim(&mut s.slab, &mut chances)
                .expect("a victim");
        assert_eq!(s.slab.get(v).key, 0);
        let protected: Vec<u32> = (0..9)
            .filter(|&k| s.queue_of(k) == Some(Queue::Protected))
            .collect();
        assert_eq!(protected, [3, 4, 5, 6, 7, 8]);
        assert_eq!(s.slab.list(Queue::Probation).len, 3);
        assert_eq!(chances, MAX_SECOND_CHANCES - 9);
    }

    #[test]
    fn window_ghosts_grow_the_window_and_main_ghosts_shrink_it() {
        let mut s = Sim::new(10_000);
        assert_eq!(s.p.window_max, 100);
        let step = s.p.ghost_step;
        // Keys the window let go, missed again soon after: NUDGE_EVERY window ghost hits.
        for k in 0..NUDGE_EVERY {
            s.p.ghosts.on_evict(hash(k), 1, false);
        }
        for k in 0..NUDGE_EVERY {
            s.insert(k);
        }
        let grown = 100.0 + f64::from(NUDGE_EVERY) * step;
        assert_eq!(f64::from_bits(s.p.shared.window_bits()), grown);
        assert_eq!(s.p.window_max, grown.round() as u64);
        // Keys the main space let go: the window comes back down.
        for k in 100..100 + NUDGE_EVERY {
            s.p.ghosts.on_evict(hash(k), 1, true);
        }
        for k in 100..100 + NUDGE_EVERY {
            s.insert(k);
        }
        assert_eq!(f64::from_bits(s.p.shared.window_bits()), 100.0);
        assert_eq!(s.p.window_max, 100);
    }

    #[test]
    fn the_window_stays_between_one_unit_and_its_largest_share() {
        let mut s = Sim::new(100);
        s.p.shared.nudge(1e9);
        s.p.nudge();
        assert_eq!((s.p.window_max, s.p.protected_max), (80, 15));
        s.p.shared.nudge(-1e9);
        s.p.nudge();
        assert_eq!(s.p.window_max, 1);
        // A cache of two keeps a unit for the main space; a cache of one is all window.
        let mut s = Sim::new(2);
        s.p.shared.nudge(5.0);
        s.p.nudge();
        assert_eq!(s.p.window_max, 1);
        let mut s = Sim::new(1);
        for k in 0..3 {
            s.request(k);
        }
        assert_eq!(s.slab.len(), 1);
        assert_eq!(s.queue_of(2), Some(Queue::Window));
    }

    #[test]
    fn a_shard_applies_its_share_of_the_cache_window() {
        let window = Arc::new(SharedWindow::new(400, initial_window(400)));
        let mut p = Policy::new(100, 0, 7, Arc::clone(&window));
        assert_eq!(p.window_max, 1);
        window.nudge(36.0); // 40 of 400
        p.nudge();
        assert_eq!(p.window_max, 10);
    }

    #[test]
    fn a_new_capacity_keeps_the_window_share_and_resizes_the_queues() {
        let window = Arc::new(SharedWindow::new(1_000, initial_window(1_000)));
        let mut p = Policy::new(1_000, 0, 7, Arc::clone(&window));
        window.nudge(190.0); // 20% of the cache
        p.nudge();
        assert_eq!((p.window_max, p.protected_max), (200, 616));
        p.set_capacity(500);
        assert_eq!((p.window_max, p.protected_max), (100, 308));
        p.set_capacity(0);
        assert_eq!((p.window_max, p.protected_max), (0, 0));
    }

    #[test]
    fn a_loop_slightly_larger_than_the_cache_keeps_most_of_it() {
        // LRU hits nothing here, and the best possible is about 90%: the window must stay
        // small, however often the keys it lets go come back.
        let mut s = Sim::new(200);
        let mut hits = 0;
        for _ in 0..40 {
            for k in 0..220 {
                hits += u32::from(s.request(k));
            }
        }
        let ratio = f64::from(hits) / (40.0 * 220.0);
        assert!(ratio > 0.8, "hit ratio {ratio:.3}");
        assert!(s.p.window_max <= 10, "window {}", s.p.window_max);
    }
}
