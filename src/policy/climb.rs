// The window hill climber, one per cache, fed by all of its shards. With ghost sizing (the
// default, see `mod.rs`) only its shared window is used: shards `nudge` it by their ghost hits
// every `CLIMB_CHECK_EVERY` misses and apply it as below.
//
// Each shard used to run its own climber on its own hit ratio. A large cache's shards then each
// see an eighth of the traffic; their moves are independent random walks (see the notes in
// `mod.rs`), and the step decay freezes each shard's window wherever its walk left it. Here the
// shards report to one climber and every shard applies the window it decides, as the same share
// of its own capacity.
//
// The shards never take each other's locks, and reads stay as they were:
// - A shard counts its misses in its own policy (under its write lock, as before) and every
//   `CLIMB_CHECK_EVERY` misses adds them, and the hits its `HitCounter` gathered since its last
//   report, to two shared atomics: two `fetch_add`s on one cache line per 16 misses of a shard.
// - The report that completes a sample decides the step. Whoever sees a complete sample takes
//   `decide` by `try_lock` (never blocking: if another shard is deciding, this report is counted
//   and the shard goes on), re-checks under it, and publishes the new window as a fraction of
//   the cache's capacity in an atomic.
// - Each shard compares that atomic with the value it last applied when it reports, and resizes
//   its window when it changed: a relaxed load of a line that changes once per sample.
//
// With one shard this is the per-shard climber step for step: the same checks, sample
// boundaries, hit counts and window targets (the window is kept in units of the cache's
// capacity, which is the shard's, and scaled by exactly 1.0).
//
// The sample is `CLIMB_SAMPLE_FACTOR` times the cache's capacity divided by the shard count, up
// to `CLIMB_SAMPLE_SHARDS`: as many requests per sample as one shard's climber got, so the
// climber decides (up to) shards-times more often than each shard's did, and all windows move
// together. Measured on the multi-shard reference rows (mean of 8 seeded runs; per-shard climber
// -> cache-wide with a sample of 0.5 / 0.125 / 0.0625 x the cache's capacity, i.e. dividing by
// 1 / 4 / 8 on an 8-shard cache):
//   P3@20,000 (4 shards)    10.07 -> 8.90 / 10.10 / 10.10   (0.125 and 0.0625: both the minimum)
//   P3@160,000 (8)          50.59 -> 50.45 / 51.28 / 50.48
//   P12@20,000 (4)          12.84 -> 12.66 / 12.56 / 12.56
//   P12@160,000 (8)         43.68 -> 42.61 / 44.59 / 42.61  (0.0625: one seed at 36.97)
//   scarab-recs@25,000 (4)  61.09 -> 61.49 / 61.61 / 61.61
//   scarab-recs@100,000 (8) 75.16 -> 75.61 / 75.46 / 75.78
//   orm-busy@10,000 (2)     90.47 -> 90.66 / 90.61 / 90.61
//   web07@10,000 (2)        69.09 -> 69.12 / 68.94 / 68.94
// Sharing alone (0.5 x the cache) decides as often as each shard used to, on samples with
// shards-times the requests, and loses on P3@20k and P12@160k: the samples' swings are the
// workload's phases, not sampling error (see `mod.rs`), so larger samples buy nothing, while
// more frequent decisions (one per shard capacity of requests) track the phases better. Eight
// times (0.0625 on 8 shards) is too often: the step decays to nothing before the phases that
// matter, and P12@160k swings by 8 points between seeds. So the divisor stops at 4.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
// `parking_lot`'s directly rather than `crate::sync`'s: this lock takes no part in the load
// protocol that `tests/loom.rs` models (like the hit stripes), and is only ever tried.
use parking_lot::Mutex;

use super::{CLIMB_MIN_SAMPLE, CLIMB_SAMPLE_FACTOR, CLIMB_STEP_DECAY, CLIMB_STEP_PERCENT};

/// Most shards the sample is divided by (see the header).
const CLIMB_SAMPLE_SHARDS: usize = 4;

pub(crate) struct Climber {
    /// The cache's capacity (sum of the shards').
    capacity: u64,
    sample_size: u64,
    shared: CachePadded<Shared>,
    decide: Mutex<Decision>,
}

struct Shared {
    /// Requests reported so far by the shards that have started (are full): hits and misses.
    hits: AtomicU64,
    misses: AtomicU64,
    /// `hits` and `misses` when the current sample started (written under `decide`).
    sample_hits: AtomicU64,
    sample_misses: AtomicU64,
    /// The window's target, in units of the cache's capacity, as `f64` bits.
    window: AtomicU64,
}

struct Decision {
    previous_rate: f64,
    /// Next step, in units of the cache's capacity; signed: the direction of the last move.
    step: f64,
    /// The window's target, in units of the cache's capacity (as `Shared::window`).
    window: f64,
}

impl Climber {
    /// `window` is the initial target, in units of `capacity`; `shards` the cache's shard count.
    pub(crate) fn new(capacity: u64, window: f64, shards: usize) -> Self {
        let divisor = shards.clamp(1, CLIMB_SAMPLE_SHARDS) as f64;
        let sample = (capacity as f64 * CLIMB_SAMPLE_FACTOR / divisor) as u64;
        Climber {
            capacity,
            sample_size: sample.max(CLIMB_MIN_SAMPLE),
            shared: CachePadded::new(Shared {
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                sample_hits: AtomicU64::new(0),
                sample_misses: AtomicU64::new(0),
                window: AtomicU64::new(window.to_bits()),
            }),
            decide: Mutex::new(Decision {
                previous_rate: 0.0,
                step: capacity as f64 * CLIMB_STEP_PERCENT,
                window,
            }),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The current window target (units of the cache's capacity), as bits.
    #[inline]
    pub(crate) fn window_bits(&self) -> u64 {
        self.shared.window.load(Ordering::Relaxed)
    }

    /// Moves the window by `delta` (units of the cache's capacity), within the capacity.
    pub(crate) fn nudge(&self, delta: f64) {
        let cap = self.capacity as f64;
        let _ = self
            .shared
            .window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(
                    (f64::from_bits(w) + delta)
                        .clamp(1.0_f64.min(cap), cap)
                        .to_bits(),
                )
            });
    }

    /// A started shard reports `hits` and `misses` since its last report; the report that
    /// completes a sample may move the window.
    pub(crate) fn report(&self, hits: u64, misses: u64) {
        let s = &*self.shared;
        let h = s.hits.fetch_add(hits, Ordering::Relaxed).wrapping_add(hits);
        let m = s
            .misses
            .fetch_add(misses, Ordering::Relaxed)
            .wrapping_add(misses);
        let requests = h
            .wrapping_sub(s.sample_hits.load(Ordering::Relaxed))
            .wrapping_add(m.wrapping_sub(s.sample_misses.load(Ordering::Relaxed)));
        if requests >= self.sample_size {
            self.climb();
        }
    }

    #[cold]
    fn climb(&self) {
        let Some(mut d) = self.decide.try_lock() else {
            return; // another shard is deciding on this sample
        };
        let s = &*self.shared;
        let h = s.hits.load(Ordering::Relaxed);
        let m = s.misses.load(Ordering::Relaxed);
        let sample_hits = h.wrapping_sub(s.sample_hits.load(Ordering::Relaxed));
        let requests =
            sample_hits.wrapping_add(m.wrapping_sub(s.sample_misses.load(Ordering::Relaxed)));
        if requests < self.sample_size {
            return; // decided meanwhile
        }
        s.sample_hits.store(h, Ordering::Relaxed);
        s.sample_misses.store(m, Ordering::Relaxed);
        let rate = sample_hits as f64 / requests as f64;
        let change = rate - d.previous_rate;
        if change == 0.0 {
            // No information (typically no hits at all, as under pure churn): hold still rather
            // than drift. Drifting to a full window would also make every eviction touch the
            // coldest entry instead of one inserted moments ago.
            return;
        }
        let amount = if change > 0.0 { d.step } else { -d.step };
        d.step = CLIMB_STEP_DECAY * amount;
        d.previous_rate = rate;
        let cap = self.capacity as f64;
        d.window = (d.window + amount).clamp(1.0_f64.min(cap), cap);
        s.window.store(d.window.to_bits(), Ordering::Relaxed);
    }
}
