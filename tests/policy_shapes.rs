//! Workload shapes the eviction policy must handle, replayed through the public API on synthetic
//! keys (no trace needed), with fixed hasher seeds so that each run is exactly repeatable.

#[path = "../examples/common/traces.rs"]
mod traces;

use cachet::Cache;
use traces::SeededState;

/// Hit ratio of `passes` passes over keys `0..keys` through a one-shard cache of `capacity`,
/// inserting on every miss.
fn loop_hit_ratio(capacity: u64, keys: u64, passes: u64, seed: u64) -> f64 {
    let cache: Cache<u64, u64, SeededState> = Cache::builder()
        .max_capacity(capacity)
        .shards(1)
        .hasher(SeededState(seed))
        .build()
        .expect("valid configuration");
    let mut hits = 0u64;
    for _ in 0..passes {
        for k in 0..keys {
            if cache.get(&k).is_some() {
                hits += 1;
            } else {
                cache.insert(k, k);
            }
        }
    }
    hits as f64 / (passes * keys) as f64
}

/// A loop a few percent larger than the cache: LRU hits nothing, the best possible keeps all but
/// the overrun. The keys the window lets go come back within the window ghosts' reach, yet the
/// window must not grow for them (it can never hold the loop): it has no hits of its own, so it
/// earns no credit for its ghosts.
#[test]
fn a_loop_slightly_larger_than_the_cache_keeps_most_of_it() {
    for (capacity, seed) in [(1_200, 1), (1_220, 2), (1_240, 3)] {
        let best = capacity as f64 / 1_280.0;
        let ratio = loop_hit_ratio(capacity, 1_280, 100, seed);
        assert!(
            ratio > best - 0.07,
            "capacity {capacity}: hit ratio {ratio:.3}, best {best:.3}"
        );
    }
}
