// Hit counting for the hill climber, without a shared write on the read path.
//
// A hit holds only the shard's read lock, so the count must be an atomic that many threads write.
// One counter per shard, even a plain racy store beside the lock word, cost 37% of two-thread read
// throughput: the cache line changes hands once more per hit. So each shard has a few counters on
// their own cache lines, and a thread always writes the one its thread-local stripe number picks.
// Two threads collide only when they share a stripe; lost updates are then possible and harmless
// (the count steers a heuristic). The writer sums the stripes only when it needs a sample.
//
// Cheaper still, a thread counts hits in a thread-local cell and adds them to a stripe in batches
// of `BATCH`. The batch lands in the shard of the hit that completes it, not spread over the shards
// (or the caches: the cell is per thread, not per cache) its hits came from. Since that hit is a
// uniform pick among the thread's hits, each shard's count is right in expectation: a shard that
// gets a tenth of a thread's hits completes a tenth of its batches. A shard's sample holds
// thousands of hits, so the rounding is noise the climber already tolerates.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

/// Counters per shard. Four covers the common case of a few threads hammering the same hot shard;
/// each costs one cache line per shard.
pub(crate) const STRIPES: usize = 4;

pub(crate) struct HitCounter {
    stripes: [CachePadded<AtomicU64>; STRIPES],
}

/// Hits a thread counts locally before adding them to a stripe (a power of two, so that 2^32
/// is a multiple of it and the wrapping count keeps batches whole).
const BATCH: u32 = 16;
const _: () = assert!(BATCH.is_power_of_two());

/// Hands out stripe numbers to threads, round robin.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    static PENDING: Cell<u32> = const { Cell::new(0) };
}

/// This thread's stripe number, below `STRIPES`.
#[inline]
pub(crate) fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v < STRIPES {
            v
        } else {
            let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(v);
            v
        }
    })
}

impl HitCounter {
    pub(crate) fn new() -> Self {
        HitCounter {
            stripes: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
        }
    }

    /// Counts one hit (read lock held, or no lock at all).
    #[inline]
    pub(crate) fn record(&self) {
        // A free-running count: every `BATCH`-th hit (a power of two: one test) adds the batch.
        let pending = PENDING.with(|p| {
            let n = p.get().wrapping_add(1);
            p.set(n);
            n
        });
        if pending % BATCH == 0 {
            self.add(u64::from(BATCH));
        }
    }

    #[cold]
    fn add(&self, n: u64) {
        let c = &self.stripes[stripe() % STRIPES];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Hits so far, summed over the stripes.
    pub(crate) fn total(&self) -> u64 {
        self.stripes
            .iter()
            .fold(0u64, |acc, c| acc.wrapping_add(c.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_from_many_threads() {
        let counter = HitCounter::new();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counter.record();
                    }
                });
            }
        });
        // Each thread adds whole batches (its last, partial batch stays pending); threads may
        // share a stripe and lose racing updates, but never gain any.
        let total = counter.total();
        assert!(total % u64::from(BATCH) == 0 && total <= 3000, "{total}");
        assert!(
            total >= 1000 / u64::from(BATCH) * u64::from(BATCH),
            "{total}"
        );
        for _ in 0..BATCH {
            counter.record();
        }
        assert_eq!(counter.total(), total + u64::from(BATCH));
    }
}
