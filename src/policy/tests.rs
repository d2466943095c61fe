// The policy's unit tests.
use super::*;

/// One shard driven the way `shard/` drives it, over a slab without an index (lookups
/// scan it: the tests' caches are small).
struct Sim {
    p: Policy,
    slab: Slab<u32, u32>,
    capacity: u64,
    /// Hits, as `ShardState::hits` counts them.
    hits: AtomicU32,
}

fn hash(k: u32) -> u32 {
    k.wrapping_mul(0x9E37_79B9).rotate_left(7) ^ 0x5bd1_e995
}

impl Sim {
    fn new(capacity: u64) -> Sim {
        Sim::with_window(capacity, initial_window(capacity))
    }

    /// A shard of `capacity` whose window starts at `window` (units) instead of the initial one.
    fn with_window(capacity: u64, window: f64) -> Sim {
        Sim::shard_of(
            capacity,
            Arc::new(SharedWindow::new(capacity, window, PROTECTED)),
        )
    }

    /// A shard of `capacity` of the cache whose shared state is `window`.
    fn shard_of(capacity: u64, window: Arc<SharedWindow>) -> Sim {
        Sim {
            p: Policy::new(capacity, 0, 7, window, true),
            slab: Slab::new(false),
            capacity,
            hits: AtomicU32::new(0),
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
        let touched = self.find(k).map(|t| self.slab.get(t).touch());
        if touched == Some(true) {
            self.hits
                .store(self.hits.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        touched.is_some()
    }

    fn insert(&mut self, k: u32) {
        let rare = self.p.on_new_key(&self.slab, &self.hits, hash(k), 1);
        let t = self.slab.push(k, k, hash(k), 1, Queue::Window);
        if rare {
            self.slab.get_mut(t).mark_rare();
        }
        self.p.fill_main(&mut self.slab);
        while self.slab.len() as u64 > self.capacity {
            let v = self.p.victim(&mut self.slab).expect("an entry to evict");
            self.slab.remove(v);
        }
    }

    /// The shard's next move of the cache's window, whatever the count of misses since the last.
    fn nudge(&mut self) {
        self.p.nudge(
            self.slab.list(Queue::Window).weight,
            self.slab.len() as u64,
            self.hits.load(Ordering::Relaxed),
        );
    }

    /// The cache's replay model: a read, and an insert on a miss. `true` on a hit.
    fn request(&mut self, k: u32) -> bool {
        self.get(k) || {
            self.insert(k);
            false
        }
    }

    /// A cache of `capacity` filled with keys `0..capacity`, the first `reads` of them read once.
    fn full(capacity: u32, reads: u32) -> Sim {
        let mut s = Sim::new(u64::from(capacity));
        for k in 0..capacity {
            s.insert(k);
        }
        for k in 0..reads {
            assert!(s.get(k));
        }
        s
    }

    /// `Sim::full(100, MAX_SECOND_CHANCES)` after one victim search, which promotes the read
    /// entries, as many as its second chances allow.
    fn with_protected() -> Sim {
        let mut s = Sim::full(100, MAX_SECOND_CHANCES);
        let mut chances = MAX_SECOND_CHANCES;
        s.p.main_victim(&mut s.slab, &mut chances)
            .expect("a victim");
        assert_eq!(
            s.slab.list(Queue::Protected).len,
            MAX_SECOND_CHANCES as usize
        );
        s
    }

    /// Sets protected's share of the main space, and sizes protected from it.
    fn set_protected_share(&mut self, share: f64) {
        self.p.protected_share = share;
        self.p.apply_protected();
    }

    fn queue_of(&self, k: u32) -> Option<Queue> {
        self.find(k).map(|t| self.slab.get(t).queue)
    }
}

#[test]
fn the_window_starts_at_one_ghost_step_of_the_capacity_and_at_least_one_unit() {
    assert_eq!(initial_window(160_000), 160.0);
    assert_eq!(initial_window(10_000), 10.0);
    assert_eq!(initial_window(1_000), 1.0);
    assert_eq!(initial_window(999), 1.0);
    assert_eq!(initial_window(50), 1.0);
    assert_eq!(initial_window(0), 0.0);
    let s = Sim::new(4_000);
    assert_eq!((s.p.window_max, s.p.protected_max), (4, 3_196));
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
    let mut s = Sim::full(100, 0);
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
    let mut s = Sim::full(100, 0);
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
    let mut s = Sim::full(100, 0);
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
    let mut s = Sim::full(10, 9); // window 1, protected at most 7 of the main space's 9
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
    assert_eq!(protected, [2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(s.slab.list(Queue::Probation).len, 2);
    assert_eq!(chances, MAX_SECOND_CHANCES - 9);
}

#[test]
fn window_ghosts_grow_the_window_and_main_ghosts_shrink_it() {
    let mut s = Sim::with_window(10_000, 100.0);
    assert_eq!(s.p.window_max, 100);
    // As if the shard had evicted as much as the main ghosts reach (see the warm-up's test).
    s.p.warmup_left = 0;
    let step = s.p.ghost_step;
    let ghost_hits = |s: &mut Sim, keys: std::ops::Range<u32>, side: Side| {
        for k in keys.clone() {
            s.p.ghosts.on_evict(hash(k), 1, side);
        }
        for k in keys {
            s.insert(k);
        }
        s.nudge();
    };
    // Keys the window let go, missed again soon after: without hits of its own the window has
    // earned no credit for them, and stays.
    ghost_hits(&mut s, 0..NUDGE_EVERY, Side::Window);
    assert_eq!(f64::from_bits(s.p.shared.window_bits()), 100.0);
    // Two entries read in the window earn it the reach over its size each: 1,000 / 100.
    for k in [500, 501] {
        s.insert(k);
        assert!(s.get(k));
    }
    for k in 600..700 {
        s.insert(k);
    }
    assert_eq!(s.queue_of(500), Some(Queue::Probation));
    assert!(
        (s.p.window_credit - 20.0).abs() < 1e-9,
        "{}",
        s.p.window_credit
    );
    // Now each window ghost hit grows the window by a step.
    ghost_hits(&mut s, 1_000..1_000 + NUDGE_EVERY, Side::Window);
    let grown = 100.0 + f64::from(NUDGE_EVERY) * step;
    assert_eq!(f64::from_bits(s.p.shared.window_bits()), grown);
    assert_eq!(s.p.window_max, grown.round() as u64);
    assert!(
        (s.p.window_credit - 4.0).abs() < 1e-9,
        "{}",
        s.p.window_credit
    );
    // Keys the main space let go: the window comes back down.
    ghost_hits(&mut s, 2_000..2_000 + NUDGE_EVERY, Side::Main);
    assert_eq!(f64::from_bits(s.p.shared.window_bits()), 100.0);
    assert_eq!(s.p.window_max, 100);
}

#[test]
fn a_far_window_ghost_spends_a_whole_credit_and_moves_the_window_by_its_weight() {
    // A cache of 1,000: window ghosts count fully within 100 inserts, and reach 1,024.
    let mut s = Sim::with_window(1_000, 10.0);
    s.p.warmup_left = 0;
    let step = s.p.ghost_step;
    s.p.window_credit = 1.5;
    s.p.ghosts.on_evict(hash(1), 1, Side::Window);
    for k in 10..610 {
        s.insert(k);
    }
    s.nudge();
    assert_eq!(f64::from_bits(s.p.shared.window_bits()), 10.0);
    // 601 inserts later: it counts for the share over its age, 50 / 300 in the ghosts'
    // half-resolution clock.
    s.insert(1);
    s.nudge();
    let moved = f64::from_bits(s.p.shared.window_bits()) - 10.0;
    assert!((moved - step / 6.0).abs() < 1e-9, "{moved} against {step}");
    assert!((s.p.window_credit - 0.5).abs() < 1e-9);
    // Half a credit left: the next far hit is not vouched for, and moves nothing.
    s.p.ghosts.on_evict(hash(2), 1, Side::Window);
    for k in 1_000..1_400 {
        s.insert(k);
    }
    s.nudge();
    let before = s.p.shared.window_bits();
    s.insert(2);
    s.nudge();
    assert_eq!(s.p.shared.window_bits(), before);
}

#[test]
fn main_ghosts_move_protected_as_arc_moves_its_target() {
    let mut s = Sim::new(10_000);
    let main = (10_000 - s.p.window_max) as f64;
    let step = s.p.ghost_step / main;
    let near = |a: f64, b: f64| (a - b).abs() < 1e-12;
    // Before any departure, each kind of main ghost moves the share one step its way.
    s.p.ghosts.on_evict(hash(1), 1, Side::Main);
    s.insert(1);
    assert!(near(s.p.protected_share, PROTECTED - step));
    s.p.ghosts.on_evict(hash(2), 1, Side::Protected);
    s.insert(2);
    assert!(near(s.p.protected_share, PROTECTED));
    // Three never-protected departures for each once-protected one: a protected ghost is
    // rarer, and weighs three steps; a probation ghost still one.
    s.p.main_departures = [30.0, 10.0];
    s.p.ghosts.on_evict(hash(3), 1, Side::Protected);
    s.insert(3);
    assert!(near(s.p.protected_share, PROTECTED + 3.0 * step));
    s.p.ghosts.on_evict(hash(4), 1, Side::Main);
    s.insert(4);
    assert!(near(s.p.protected_share, PROTECTED + 2.0 * step));
    // A window ghost leaves protected alone.
    s.p.ghosts.on_evict(hash(5), 1, Side::Window);
    s.insert(5);
    assert!(near(s.p.protected_share, PROTECTED + 2.0 * step));
}

#[test]
fn an_entry_protected_once_leaves_a_ghost_that_grows_protected() {
    let mut s = Sim::full(10, 9); // window 1, protected at most 7 of the main space's 9
    // Promotes 0 to 8; protected's overflow sends 0 and 1 back, and 0 is the victim.
    let v = s.p.victim(&mut s.slab).expect("a victim");
    assert_eq!(s.slab.get(v).key, 0);
    assert!(s.slab.get_mut(v).was_protected());
    assert_eq!(s.p.main_departures, [0.0, 1.0]);
    s.slab.remove(v);
    let before = s.p.protected_share;
    s.insert(0);
    assert!(s.p.protected_share > before);
    // Unread, never promoted: a probation ghost.
    let mut s = Sim::full(10, 0);
    let v = s.p.victim(&mut s.slab).expect("a victim");
    assert_eq!(s.slab.get(v).key, 0);
    assert!(!s.slab.get_mut(v).was_protected());
    assert_eq!(s.p.main_departures, [1.0, 0.0]);
    s.slab.remove(v);
    let before = s.p.protected_share;
    s.insert(0);
    assert!(s.p.protected_share < before);
}

#[test]
fn a_fall_in_protected_share_demotes_at_most_two_entries_per_promotion() {
    let mut s = Sim::with_protected();
    let promoted = s.slab.list(Queue::Protected).len;
    s.set_protected_share(0.0);
    assert_eq!(s.p.protected_max, 0);
    // The next promotion sends two back: protected shrinks by one.
    let head = s.slab.list(Queue::Probation).head;
    let k = s.slab.get(head).key;
    assert!(s.get(k));
    let mut chances = MAX_SECOND_CHANCES;
    s.p.main_victim(&mut s.slab, &mut chances)
        .expect("a victim");
    assert_eq!(s.slab.list(Queue::Protected).len, promoted - 1);
}

#[test]
fn a_fall_in_protected_share_demotes_one_entry_per_eviction() {
    let mut s = Sim::with_protected();
    let promoted = s.slab.list(Queue::Protected).len;
    let oldest = s.slab.get(s.slab.list(Queue::Protected).head).key;
    s.set_protected_share(0.0);
    // New keys seen once promote nothing; each eviction they cause sends protected's oldest
    // entry back to probation's tail.
    for (i, k) in (1_000..1_010).enumerate() {
        s.insert(k);
        assert_eq!(s.slab.list(Queue::Protected).len, promoted - 1 - i);
    }
    assert_eq!(s.queue_of(oldest), Some(Queue::Probation));
    // Within target, evictions leave protected alone.
    s.set_protected_share(1.0);
    let left = s.slab.list(Queue::Protected).len;
    for k in 2_000..2_010 {
        s.insert(k);
    }
    assert_eq!(s.slab.list(Queue::Protected).len, left);
}

/// No bound on a move of the shared target.
const FREE: (f64, f64) = (f64::NEG_INFINITY, f64::INFINITY);

/// Window ghost hits on `keys` (fewer than `NUDGE_EVERY`), vouched for by the window's credit,
/// then the shard's nudge.
fn credited_window_ghost_hits(s: &mut Sim, keys: std::ops::Range<u32>) {
    assert!(keys.len() < NUDGE_EVERY as usize);
    for k in keys.clone() {
        s.p.ghosts.on_evict(hash(k), 1, Side::Window);
    }
    s.p.window_credit = 1e9;
    s.p.misses = 0;
    for k in keys {
        s.insert(k);
    }
    s.nudge();
}

/// How far the cache's window target moves on `credited_window_ghost_hits`.
fn window_move(s: &mut Sim, keys: std::ops::Range<u32>) -> f64 {
    let before = f64::from_bits(s.p.shared.window_bits());
    credited_window_ghost_hits(s, keys);
    f64::from_bits(s.p.shared.window_bits()) - before
}

#[test]
fn ghost_hits_move_the_window_by_the_share_of_the_warm_up_evicted() {
    let mut s = Sim::new(10_000);
    let hits = NUDGE_EVERY - 1;
    let full = f64::from(hits) * s.p.ghost_step;
    // The main ghosts reach 20% of the capacity: 2,000 evictions. Before the first, nothing.
    assert_eq!(s.p.warmup_left, 2_000);
    assert_eq!(window_move(&mut s, 0..hits), 0.0);
    // Once a quarter of it has been evicted, a quarter of a step per hit.
    for k in 10_000..20_470 {
        s.insert(k);
    }
    let moved = window_move(&mut s, 1_000..1_000 + hits);
    assert_eq!(s.p.warmup_left, 1_500);
    assert!((moved - full / 4.0).abs() < 1e-9, "{moved} against {full}");
    // From then on, full steps.
    for k in 20_470..22_000 {
        s.insert(k);
    }
    let moved = window_move(&mut s, 2_000..2_000 + hits);
    assert_eq!(s.p.warmup_left, 0);
    assert!((moved - full).abs() < 1e-9, "{moved} against {full}");
}

#[test]
fn ghost_hits_move_the_target_no_farther_than_one_reach_from_the_window() {
    let mut s = Sim::full(1_000, 0);
    s.p.warmup_left = 0;
    assert_eq!(s.slab.list(Queue::Window).weight, 1);
    // Hits worth far more than one reach (100 entries): the target stops 100 past the window.
    s.p.ghost_step = 50.0;
    let hits = NUDGE_EVERY - 1;
    credited_window_ghost_hits(&mut s, 5_000..5_000 + hits);
    assert_eq!(s.slab.list(Queue::Window).weight, 1);
    assert_eq!(f64::from_bits(s.p.shared.window_bits()), 101.0);
    // The window grows towards it one insert at a time, and the target waits for it.
    credited_window_ghost_hits(&mut s, 6_000..6_000 + hits);
    let held = s.slab.list(Queue::Window).weight;
    assert_eq!(held, 1 + u64::from(hits));
    assert_eq!(
        f64::from_bits(s.p.shared.window_bits()),
        held as f64 + 100.0
    );
    // Without the bound, the same hits would have taken it to 80% of the cache and beyond.
    assert!(f64::from(2 * hits) * s.p.ghost_step > 800.0);
}

#[test]
fn the_window_stays_between_one_unit_and_its_largest_share() {
    let mut s = Sim::new(100);
    s.p.shared.nudge(1e9, FREE.0, FREE.1);
    s.nudge();
    assert_eq!((s.p.window_max, s.p.protected_max), (80, 16));
    s.p.shared.nudge(-1e9, FREE.0, FREE.1);
    s.nudge();
    assert_eq!(s.p.window_max, 1);
    // A cache of two keeps a unit for the main space; a cache of one is all window.
    let mut s = Sim::new(2);
    s.p.shared.nudge(5.0, FREE.0, FREE.1);
    s.nudge();
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
    let window = Arc::new(SharedWindow::new(400, initial_window(400), PROTECTED));
    let mut p = Policy::new(100, 0, 7, Arc::clone(&window), true);
    assert_eq!(p.window_max, 1);
    window.nudge(40.0 - initial_window(400), FREE.0, FREE.1); // 40 of 400
    p.nudge(0, 0, 0);
    assert_eq!(p.window_max, 10);
}

#[test]
fn a_new_capacity_keeps_the_window_share_and_resizes_the_queues() {
    let window = Arc::new(SharedWindow::new(1_000, initial_window(1_000), PROTECTED));
    let mut p = Policy::new(1_000, 0, 7, Arc::clone(&window), true);
    window.nudge(200.0 - initial_window(1_000), FREE.0, FREE.1); // 20% of the cache
    p.nudge(0, 0, 0);
    assert_eq!((p.window_max, p.protected_max), (200, 640));
    p.set_capacity(500);
    assert_eq!((p.window_max, p.protected_max), (100, 320));
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

#[test]
fn the_step_follows_the_cache_not_its_shard_count() {
    assert_eq!(step_base(1_000), 1_000.0);
    assert_eq!(step_base(4_096), 4_096.0);
    assert_eq!(step_base(20_000), 4_096.0);
    assert_eq!(step_base(32_768), 4_096.0);
    assert_eq!(step_base(160_000), 20_000.0);
    // A cache of 160,000 split in 8 or 32 shards moves its window by the same step per ghost
    // hit, whichever shard it comes from (a sampled hit stands for 2^k of them).
    let per_hit = |shards: u64| {
        let window = Arc::new(shared_window(160_000));
        let p = Policy::new(160_000 / shards, 0, 7, window, true);
        p.ghost_step / f64::from(1u32 << p.ghosts.sample_bits())
    };
    assert_eq!(per_hit(8), 20.0);
    assert_eq!(per_hit(32), 20.0);
    assert_eq!(per_hit(1), 20.0);
}

#[test]
fn a_main_ghost_in_one_shard_moves_protected_in_every_shard() {
    let window = Arc::new(shared_window(2_000));
    let mut a = Sim::shard_of(1_000, Arc::clone(&window));
    let mut b = Policy::new(1_000, 0, 9, Arc::clone(&window), true);
    // A miss on the ghost of a probation entry: probation grows, in this shard at once and in
    // the whole cache with the shard's next nudge.
    a.p.ghosts.on_evict(hash(1), 1, Side::Main);
    a.insert(1);
    let share = a.p.protected_share;
    assert!(share < PROTECTED);
    assert_eq!(window.protected(), PROTECTED);
    a.p.nudge(a.p.window_max, 0, 0);
    assert_eq!(window.protected(), share);
    // The step is a share of the cache's main space, of which each shard holds half.
    let main = (2_000 - 2 * a.p.window_max) as f64;
    assert!((PROTECTED - share - a.p.ghost_step / main).abs() < 1e-12);
    // The other shard applies it when it next looks at the cache's state.
    b.nudge(b.window_max, 0, 0);
    assert_eq!(b.protected_share, share);
    assert_eq!(
        b.protected_max,
        ((1_000 - b.window_max) as f64 * share) as u64
    );
}

/// A small deterministic generator for the replays below (xorshift64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = xorshift64(self.0);
        (self.0 % u64::from(n)) as u32
    }

    /// A key of a hot set of `n` keys, the lower ones more often (the smaller of two draws).
    fn skewed(&mut self, n: u32) -> u32 {
        self.below(n).min(self.below(n))
    }
}

/// A cache of 1,000 after 200,000 requests to a skewed hot set of 2,000 keys.
fn warm() -> (Sim, Rng) {
    let mut s = Sim::new(1_000);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..200_000 {
        s.request(rng.skewed(2_000));
    }
    (s, rng)
}

fn target(s: &Sim) -> f64 {
    f64::from_bits(s.p.shared.window_bits())
}

#[test]
fn a_hot_set_replaced_at_once_gets_the_largest_window_then_its_old_one() {
    let (mut s, mut rng) = warm();
    let before = target(&s);
    assert!(before < 200.0, "{before}");
    let mut jumped = None;
    for i in 0..100_000 {
        s.request(10_000 + rng.skewed(2_000));
        if jumped.is_none() && target(&s) >= 800.0 {
            jumped = Some(i);
        }
    }
    // Seen within a few periods (2,048 requests each).
    let jumped = jumped.expect("the shift was not seen");
    assert!(jumped < 8_192, "seen after {jumped} requests");
    // Back once the new set is loaded and the miss ratio is down again.
    let after = target(&s);
    assert!(after < 400.0, "{after}");
}

#[test]
fn a_scan_is_not_a_shift() {
    let (mut s, _) = warm();
    let before = target(&s);
    for k in 0..50_000 {
        s.request(100_000 + k);
        assert!(target(&s) <= before.max(200.0), "{}", target(&s));
    }
    // The hot set survived it.
    let hits = (0..100).filter(|&k| s.get(k)).count();
    assert!(hits > 80, "{hits}");
}
