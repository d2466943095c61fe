//! Weighted caches: `max_capacity` is one bound on the sum of the weights, whatever the shard
//! count. Any entry up to the whole capacity can be stored (evicting others, from any shard), an
//! entry heavier than that is refused, and the sum never exceeds the capacity once an insert
//! returns.

use std::sync::{Arc, Mutex};

use cachet::{Cache, RemovalCause};

/// A cache whose values are their own weights.
fn weighted(capacity: u64, shards: usize) -> Cache<u64, u32> {
    Cache::builder()
        .max_capacity(capacity)
        .weigher(|_, w: &u32| *w)
        .shards(shards)
        .build()
        .unwrap()
}

type Log = Arc<Mutex<Vec<(u64, u32, RemovalCause)>>>;

fn logged(capacity: u64, shards: usize) -> (Cache<u64, u32>, Log) {
    let log = Log::default();
    let sink = Arc::clone(&log);
    let cache = Cache::builder()
        .max_capacity(capacity)
        .weigher(|_, w: &u32| *w)
        .shards(shards)
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)))
        .build()
        .unwrap();
    (cache, log)
}

/// The sum of the weights of the entries an iteration sees.
fn summed(cache: &Cache<u64, u32>) -> u64 {
    cache.iter().map(|(_, w)| u64::from(w)).sum()
}

const SHARD_COUNTS: [usize; 5] = [1, 2, 16, 64, 256];

#[test]
fn an_entry_of_most_of_the_capacity_is_stored_whatever_the_shard_count() {
    for shards in SHARD_COUNTS {
        let cache = weighted(100_000, shards);
        assert_eq!(cache.insert(1, 60_000), None);
        assert_eq!(cache.get(&1), Some(60_000), "{shards} shards");
        assert_eq!(cache.weighted_size(), 60_000, "{shards} shards");
        cache.validate().unwrap();
    }
}

#[test]
fn an_entry_of_the_whole_capacity_is_stored_whatever_the_shard_count() {
    for shards in SHARD_COUNTS {
        let cache = weighted(4_096, shards);
        cache.insert(1_000, 4_096);
        assert_eq!(cache.get(&1_000), Some(4_096), "{shards} shards");
        assert_eq!(cache.weighted_size(), 4_096, "{shards} shards");
        assert_eq!(summed(&cache), 4_096);
        cache.validate().unwrap();
    }
}

/// The README's weighted example, with the shard counts of a 2-core and a 64-core machine: a
/// 33 MiB value fits a 256 MiB cache on both.
#[test]
fn a_large_value_fits_a_large_cache_on_any_machine() {
    const MIB: u32 = 1 << 20;
    for shards in [8, 256] {
        let cache = weighted(256 * u64::from(MIB), shards);
        cache.insert(1, 33 * MIB);
        cache.insert(2, 2 * MIB);
        assert_eq!(cache.get(&1), Some(33 * MIB), "{shards} shards");
        assert_eq!(cache.get(&2), Some(2 * MIB), "{shards} shards");
    }
}

#[test]
fn the_same_large_entries_are_stored_with_1_and_256_shards() {
    // 90% of the capacity: the shards claim freely until a sixteenth is left.
    let weights = [30_000, 5_000, 25_000, 1_000, 20_000, 9_000];
    let stored = |shards| {
        let cache = weighted(100_000, shards);
        for (k, &w) in weights.iter().enumerate() {
            cache.insert(k as u64, w);
        }
        cache.validate().unwrap();
        let mut keys: Vec<u64> = cache.iter().map(|(k, _)| k).collect();
        keys.sort_unstable();
        keys
    };
    let all: Vec<u64> = (0..weights.len() as u64).collect();
    assert_eq!(stored(1), all);
    assert_eq!(stored(256), all);
}

#[test]
fn an_entry_heavier_than_the_capacity_is_refused_and_replaces_the_old_value() {
    for shards in SHARD_COUNTS {
        let (cache, log) = logged(1_000, shards);
        cache.insert(1, 10);
        assert_eq!(cache.insert(1, 1_001), Some(10));
        assert_eq!(cache.get(&1), None);
        assert_eq!(
            *log.lock().unwrap(),
            [
                (1, 10, RemovalCause::Replaced),
                (1, 1_001, RemovalCause::Evicted)
            ]
        );
        cache.validate().unwrap();
    }
}

/// The sum of the weights never exceeds the capacity once an insert has returned, with entries
/// of every size up to the capacity arriving in any shard.
#[test]
fn the_bound_holds_across_shards_after_every_insert() {
    for shards in [1, 16, 256] {
        let (cache, log) = logged(10_000, shards);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut inserted = 0u64;
        for k in 0..3_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly light entries, now and then one of up to the whole capacity.
            let w = if x % 50 == 0 {
                (x >> 20) % 10_000 + 1
            } else {
                (x >> 20) % 40 + 1
            } as u32;
            cache.insert(k % 1_500, w);
            inserted += 1;
            assert!(
                cache.weighted_size() <= 10_000,
                "{shards} shards: {} after insert {inserted}",
                cache.weighted_size()
            );
        }
        assert!(summed(&cache) <= 10_000);
        cache.validate().unwrap();
        // Every entry inserted is either still there or was reported.
        let reported = log.lock().unwrap().len() as u64;
        assert_eq!(cache.len() as u64 + reported, inserted, "{shards} shards");
    }
}

/// Room made for a large entry in other shards goes back to them once it leaves: the cache
/// fills to its capacity again with light entries.
#[test]
fn room_lent_to_a_large_entry_is_given_back_when_it_leaves() {
    let cache = weighted(4_096, 256);
    for k in 0..50_000 {
        cache.insert(k, 1);
    }
    assert_eq!(cache.weighted_size(), 4_096);
    cache.insert(1_000_000, 3_000);
    assert_eq!(cache.get(&1_000_000), Some(3_000));
    assert_eq!(cache.weighted_size(), 4_096);
    assert_eq!(cache.remove(&1_000_000), Some(3_000));
    for k in 100_000..150_000 {
        cache.insert(k, 1);
    }
    assert_eq!(cache.weighted_size(), 4_096);
    assert_eq!(summed(&cache), 4_096);
    cache.validate().unwrap();
}

/// Loads and `compute` store through the same path as `insert`.
#[test]
fn loaded_and_computed_entries_may_be_large_too() {
    let cache = weighted(100_000, 256);
    assert_eq!(cache.get_or_load(&1, || 70_000), 70_000);
    assert_eq!(cache.get(&1), Some(70_000));
    cache.compute(&2, |_| cachet::Compute::Put(20_000));
    assert_eq!(cache.get(&2), Some(20_000));
    assert!(cache.weighted_size() <= 100_000);
    cache.validate().unwrap();
}

/// A count-bounded cache with more shards than entries of capacity (some shards have no share
/// of it) still stores an entry whichever shard its key falls in.
#[test]
fn a_tiny_count_bounded_cache_with_many_shards_stores_any_key() {
    for k in 0..64u64 {
        let cache: Cache<u64, u64> = Cache::builder().max_capacity(3).shards(16).build().unwrap();
        cache.insert(k, k);
        assert_eq!(cache.get(&k), Some(k), "key {k}");
        cache.validate().unwrap();
    }
}

/// The shards of a weighted cache fill it as one shard would: nothing is evicted while the
/// weights fit (up to the sixteenth kept free for the shards below their even share).
#[test]
fn a_weighted_cache_evicts_nothing_until_it_is_nearly_full() {
    for shards in SHARD_COUNTS {
        let (cache, log) = logged(16_000, shards);
        for k in 0..15_000 {
            cache.insert(k, 1);
        }
        assert_eq!(cache.len(), 15_000, "{shards} shards");
        assert!(
            log.lock().unwrap().is_empty(),
            "{shards} shards evicted early"
        );
        cache.validate().unwrap();
    }
}

/// Threads inserting entries of every size into a weighted cache: the bound holds once they
/// are done, and the capacity is all accounted for.
#[test]
fn concurrent_large_and_small_inserts_keep_the_bound() {
    let cache = weighted(20_000, 64);
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for k in 0..2_000u64 {
                    let w = if k % 97 == 0 {
                        5_000 + (k as u32 % 7) * 1_000
                    } else {
                        (k % 30 + 1) as u32
                    };
                    cache.insert(t * 1_000_000 + k, w);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(cache.weighted_size() <= 20_000, "{}", cache.weighted_size());
    assert!(summed(&cache) <= 20_000);
    cache.validate().unwrap();
}
