//! A weighted cache's capacity, shared by its shards: the `Budget` they claim from and give
//! back to, and the shard's side of lending capacity to another shard for a large entry.
//
// A weighted cache's `max_capacity` is one bound on the sum of all weights, whatever the shard
// count: an entry may weigh up to all of it. So a weighted shard's capacity is not a fixed
// share: it is what the shard has claimed from the budget, which starts with all of it. A shard
// that needs room claims it before it evicts, and gives back what it holds beyond its weight
// after every write, so shards evict only once the cache as a whole is full, as one shard would.
// The part of a claim above the shard's even share (`base`) is only granted while a sixteenth of
// the cache is still free: near full, capacity flows back to the shards that gave it up instead
// of drifting to whichever shards write most. An entry larger than what its shard can claim is
// made room for by the other shards, which lend it capacity (`Cache::lend`). Capacity moves under
// the shards' locks and through the budget's counter, never counted twice: the shards'
// capacities and the free budget sum to at most `max_capacity`, so the weights do too.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::Now;
use crate::listener::Removed;

use super::ShardState;

/// The capacity of a weighted cache that no shard holds.
pub(crate) struct Budget {
    free: AtomicU64,
    /// The cache's `max_capacity` (changed by `Cache::set_capacity`, with every shard locked).
    total: AtomicU64,
}

impl Budget {
    pub(crate) fn new(total: u64) -> Self {
        Budget {
            free: AtomicU64::new(total),
            total: AtomicU64::new(total),
        }
    }

    /// The cache's `max_capacity`.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Sets the cache's capacity to `total`, the shards now holding `held` of it (every shard
    /// locked, so nothing claims or gives back meanwhile).
    pub(crate) fn reset(&self, total: u64, held: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.free.store(total - held, Ordering::Relaxed);
    }

    /// Capacity no shard holds.
    #[cfg(any(test, feature = "_test-hooks"))]
    pub(crate) fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Takes up to `want` for a shard `below_base` short of its even share: that part freely,
    /// the rest only down to a sixteenth of the total left free. Returns what was taken.
    fn claim(&self, want: u64, below_base: u64) -> u64 {
        let reserve = self.total() / 16;
        let mut free = self.free.load(Ordering::Relaxed);
        loop {
            let owed = want.min(below_base).min(free);
            let extra = (want - owed).min(free.saturating_sub(owed).saturating_sub(reserve));
            let take = owed + extra;
            if take == 0 {
                return 0;
            }
            match self.free.compare_exchange_weak(
                free,
                free - take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(now) => free = now,
            }
        }
    }

    fn give_back(&self, n: u64) {
        self.free.fetch_add(n, Ordering::Relaxed);
    }
}

impl<K, V> ShardState<K, V> {
    /// The heaviest entry this shard may store: the cache's whole capacity when weighted.
    #[inline]
    pub(super) fn limit(&self) -> u64 {
        self.budget.as_ref().map_or(self.capacity, |b| b.total())
    }

    /// Claims from the budget the capacity this shard lacks (`weight - capacity`). Returns
    /// whether an entry of weight `written` still does not fit: then the rest is recorded as
    /// the shortfall, for the other shards to lend, and nothing is evicted.
    #[cold]
    pub(super) fn claim(&mut self, written: u32) -> bool {
        let Some(b) = &self.budget else { return false };
        let lacking = self.weight - self.capacity;
        let below_base = self.base.saturating_sub(self.capacity);
        // An entry larger than the shard could otherwise hold takes all the free capacity.
        let large = u64::from(written) > self.capacity + below_base;
        self.capacity += b.claim(lacking, if large { lacking } else { below_base });
        if large && u64::from(written) > self.capacity {
            self.shortfall = self.weight - self.capacity;
            return true;
        }
        false
    }

    /// After a write of a weighted shard: gives back the capacity it holds beyond its weight.
    #[inline]
    pub(crate) fn give_back_spare(&mut self) {
        if let (true, Some(b)) = (self.capacity > self.weight, &self.budget) {
            b.give_back(self.capacity - self.weight);
            self.capacity = self.weight;
        }
    }

    /// The room the last insert still needs from the other shards, cleared by reading it (in
    /// the insert's critical section: the shard is over its capacity until it receives it).
    #[inline]
    pub(crate) fn take_shortfall(&mut self) -> u64 {
        std::mem::take(&mut self.shortfall)
    }

    /// Lends up to `want` of this shard's capacity to another shard, evicting what no longer
    /// fits (to `removed`). Returns what was lent.
    pub(crate) fn lend(&mut self, want: u64, time: &Now<'_>, removed: &mut Removed<K, V>) -> u64 {
        let now = self.tick_if_timed(time);
        let lent = want.min(self.capacity);
        self.capacity -= lent;
        self.policy.fill_main(&mut self.slab);
        self.evict_to_capacity(now, removed);
        lent
    }

    /// Receives capacity other shards lent for this shard's shortfall, then evicts whatever
    /// still does not fit.
    pub(crate) fn receive(&mut self, lent: u64, time: &Now<'_>, removed: &mut Removed<K, V>) {
        let now = self.tick_if_timed(time);
        self.capacity += lent;
        self.policy.fill_main(&mut self.slab);
        self.evict_to_capacity(now, removed);
    }
}

impl<K, V> ShardState<K, V> {
    /// The cache's capacity changed: this shard's even share is now `base`. A count-bounded
    /// shard's capacity becomes it; a weighted shard keeps what it holds, up to `limit` (what
    /// the cache can still give it). Evicts down to the new capacity; returns the capacity the
    /// shard holds.
    pub(crate) fn set_capacity(
        &mut self,
        base: u64,
        limit: u64,
        time: &Now<'_>,
        removed: &mut Removed<K, V>,
    ) -> u64 {
        self.base = base;
        self.capacity = if self.budget.is_some() {
            self.capacity.min(limit)
        } else {
            base
        };
        self.max_entries = self.entries_for(base);
        self.policy.set_capacity(base);
        let now = self.tick_if_timed(time);
        self.policy.fill_main(&mut self.slab);
        self.evict_to_capacity(now, removed);
        self.capacity
    }
}
