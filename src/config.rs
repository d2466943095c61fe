//! The validated configuration a cache is built from: the builder checks the user's options and
//! produces a `Config`; the cache consumes it. It knows nothing of the builder's API, the loaders
//! or the loading caches. Also home of the limits and tuning that size a cache into shards.

use std::sync::Arc;

use crate::clock::Clock;
use crate::expiry::ExpireConfig;
use crate::listener::Listener;
use crate::stats::LoadHook;

/// Below this capacity per shard, the cache is not split further. Each shard runs its own policy,
/// so a shard must be large enough for frequencies and the window to mean something, and every
/// cache of up to 8,191 entries is a single shard. Sharding a large cache moves its hit ratio by
/// up to a few points either way: the shards share one window (nudged by each shard's ghost
/// hits), but each has its own queues and sketch (see the notes in `policy/mod.rs`).
pub(crate) const MIN_SHARD_CAPACITY: u64 = 4096;

/// Shards per hardware thread when the shard count is picked automatically: enough that two
/// threads rarely want the same shard's write lock at once.
pub(crate) const SHARDS_PER_THREAD: usize = 4;

/// The most shards a cache may have. Past this, shards only cost memory.
pub const MAX_SHARDS: usize = 1024;

/// The most entries one shard holds, whatever its share of the capacity (about 16.7 million):
/// the policy's links are 24 bits. See [`CacheBuilder::shards`](crate::CacheBuilder::shards).
pub const MAX_ENTRIES_PER_SHARD: usize = crate::slab::MAX_ENTRIES;

pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// Everything a cache is built from, already validated.
pub(crate) struct Config<K, V, S> {
    /// The bound: most entries, or most total weight with a weigher.
    pub(crate) capacity: u64,
    /// The shard count: a power of two, at most `MAX_SHARDS`.
    pub(crate) shards: usize,
    pub(crate) hasher: S,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) listener: Option<Listener<K, V>>,
    /// Entries to allocate room for up front, over all shards (a hint).
    pub(crate) initial_capacity: usize,
    pub(crate) expire: ExpireConfig<K, V>,
    pub(crate) clock: Clock,
    pub(crate) record_stats: bool,
    pub(crate) name: Option<Arc<str>>,
    /// How long a failed or empty load is remembered, in clock ticks (`None`: not at all).
    pub(crate) negative_ttl: Option<u64>,
    /// Told of every finished load's time, with statistics on.
    pub(crate) on_load: Option<LoadHook>,
}

/// The shard count picked when none is given. A count-bounded cache gets at least enough shards
/// for its capacity to fit [`MAX_ENTRIES_PER_SHARD`] entries per shard.
pub(crate) fn default_shards(capacity: u64, weighted: bool) -> usize {
    let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
    let by_threads = threads
        .saturating_mul(SHARDS_PER_THREAD)
        .next_power_of_two();
    let by_capacity = (capacity / MIN_SHARD_CAPACITY).max(1);
    // Largest power of two not above `by_capacity`.
    let by_capacity = 1usize << (63 - by_capacity.leading_zeros()).min(usize::BITS - 1);
    let needed = if weighted {
        1
    } else {
        let per_shard = MAX_ENTRIES_PER_SHARD as u64;
        usize::try_from(capacity.div_ceil(per_shard)).map_or(MAX_SHARDS, |n| {
            n.checked_next_power_of_two().unwrap_or(MAX_SHARDS)
        })
    };
    by_threads.min(by_capacity).max(needed).min(MAX_SHARDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_caches_are_one_shard() {
        for cap in [0, 1, 10, 100, 1000, MIN_SHARD_CAPACITY * 2 - 1] {
            assert_eq!(default_shards(cap, false), 1, "capacity {cap}");
            assert_eq!(default_shards(cap, true), 1, "capacity {cap}");
        }
    }

    #[test]
    fn shard_count_is_a_power_of_two_within_bounds() {
        for cap in [5_000, 100_000, 1_000_000, u64::MAX] {
            for weighted in [false, true] {
                let n = default_shards(cap, weighted);
                assert!(n.is_power_of_two() && n <= MAX_SHARDS, "{cap} -> {n}");
                assert!(cap / n as u64 >= MIN_SHARD_CAPACITY, "{cap} -> {n}");
            }
        }
    }

    #[test]
    fn a_large_count_capacity_gets_shards_enough_to_hold_it() {
        let per_shard = MAX_ENTRIES_PER_SHARD as u64;
        for (cap, at_least) in [
            (per_shard, 1),
            (per_shard + 1, 2),
            (per_shard * 100, 128),
            (per_shard * MAX_SHARDS as u64, MAX_SHARDS),
            (u64::MAX, MAX_SHARDS),
        ] {
            let n = default_shards(cap, false);
            assert!(n >= at_least && n <= MAX_SHARDS, "{cap} -> {n}");
            assert!(
                cap.div_ceil(n as u64) <= per_shard || n == MAX_SHARDS,
                "{cap} -> {n}"
            );
        }
        // A weight says nothing about the entry count: no minimum.
        assert!(default_shards(per_shard * 100, true) <= 64);
    }
}
