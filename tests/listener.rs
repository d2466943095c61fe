//! The eviction listener: one notification per entry that leaves, with the right cause, delivered
//! outside the shard lock, robust to a panicking listener.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, OnceLock};

use cachet::{Cache, RemovalCause};

type Log = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

fn logged(capacity: u64, shards: usize) -> (Cache<u64, u64>, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let cache = Cache::builder()
        .max_capacity(capacity)
        .shards(shards)
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)))
        .build()
        .unwrap();
    (cache, log)
}

fn take(log: &Log) -> Vec<(u64, u64, RemovalCause)> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[test]
fn each_cause_is_reported() {
    let (cache, log) = logged(100, 1);
    cache.insert(1, 10);
    assert!(take(&log).is_empty(), "a plain insert removes nothing");
    assert_eq!(cache.insert(1, 11), Some(10));
    assert_eq!(take(&log), [(1, 10, RemovalCause::Replaced)]);
    assert_eq!(cache.remove(&1), Some(11));
    assert_eq!(take(&log), [(1, 11, RemovalCause::Explicit)]);
    assert_eq!(cache.remove(&1), None);
    assert!(take(&log).is_empty());

    for k in 0..5 {
        cache.insert(k, k);
    }
    cache.retain(|k, _| k % 2 == 0);
    let mut got = take(&log);
    got.sort_by_key(|&(k, v, _)| (k, v));
    assert_eq!(
        got,
        [
            (1, 1, RemovalCause::Explicit),
            (3, 3, RemovalCause::Explicit)
        ]
    );
    cache.invalidate_all();
    let mut got = take(&log);
    got.sort_by_key(|&(k, v, _)| (k, v));
    assert_eq!(
        got,
        [0, 2, 4].map(|k| (k, k, RemovalCause::Explicit)).to_vec()
    );
}

#[test]
fn evictions_are_reported_as_evicted() {
    let (cache, log) = logged(10, 1);
    for k in 0..50 {
        cache.insert(k, k);
    }
    let got = take(&log);
    assert_eq!(got.len(), 40, "50 inserted, 10 kept");
    assert!(
        got.iter()
            .all(|&(k, v, c)| k == v && c == RemovalCause::Evicted)
    );
    for (k, _, _) in &got {
        assert!(!cache.contains_key(k), "{k} reported evicted but present");
    }
}

#[test]
fn too_heavy_entries_are_evicted_and_replace_the_old_value() {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(10)
        .weigher(|_, v| *v as u32)
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((k, v, cause)))
        .build()
        .unwrap();
    cache.insert(1, 3);
    assert_eq!(cache.insert(1, 50), Some(3));
    assert_eq!(
        take(&log),
        [
            (1, 3, RemovalCause::Replaced),
            (1, 50, RemovalCause::Evicted)
        ]
    );
    assert_eq!(cache.insert(2, 11), None);
    assert_eq!(take(&log), [(2, 11, RemovalCause::Evicted)]);
    assert!(cache.is_empty());
}

/// Every value ever inserted is, at the end, either in the cache or reported exactly once.
fn check_accounting(cache: &Cache<u64, u64>, log: &Log, inserted: &[u64]) {
    let mut live: HashMap<u64, u32> = inserted.iter().map(|&v| (v, 0)).collect();
    for (k, v, cause) in take(log) {
        let n = live
            .get_mut(&v)
            .unwrap_or_else(|| panic!("reported value {v} was never inserted"));
        *n += 1;
        assert_eq!(
            *n, 1,
            "value {v} (key {k}) reported twice, last as {cause:?}"
        );
        assert_eq!(v >> 32, k, "value {v} reported under the wrong key {k}");
    }
    for (k, v) in cache.iter() {
        let n = live.get_mut(&v).expect("cached value was inserted");
        assert_eq!(
            *n, 0,
            "value {v} of key {k} is cached but was reported removed"
        );
        *n = 1;
    }
    let lost: Vec<_> = live
        .iter()
        .filter(|&(_, &n)| n == 0)
        .map(|(v, _)| v)
        .collect();
    assert!(
        lost.is_empty(),
        "values neither cached nor reported: {lost:?}"
    );
}

fn random_ops(cache: &Cache<u64, u64>, seed: u64, ops: u64, keys: u64) -> Vec<u64> {
    let mut x = seed | 1;
    let mut inserted = Vec::new();
    for i in 0..ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = x % keys;
        match (x >> 32) % 16 {
            0..=8 => {
                // Values are unique and carry their key in the high half.
                let v = (k << 32) | (seed.wrapping_mul(1_000_003) + i) & 0xFFFF_FFFF;
                inserted.push(v);
                cache.insert(k, v);
            }
            9..=12 => {
                let _ = cache.get(&k);
            }
            13 | 14 => {
                let _ = cache.remove(&k);
            }
            _ if i % 97 == 0 => cache.retain(|k, _| k % 3 != 0),
            _ if i % 251 == 0 => cache.invalidate_all(),
            _ => {}
        }
    }
    inserted
}

#[test]
fn every_entry_is_reported_exactly_once() {
    for (seed, capacity, shards) in [(1, 1, 1), (2, 7, 1), (3, 50, 2), (4, 200, 4), (5, 0, 1)] {
        let (cache, log) = logged(capacity, shards);
        let inserted = random_ops(&cache, seed, 20_000, 300);
        check_accounting(&cache, &log, &inserted);
        cache.validate().unwrap();
    }
}

#[test]
fn every_entry_is_reported_exactly_once_across_threads() {
    let (cache, log) = logged(64, 4);
    let inserted: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=4u64)
            .map(|t| {
                let cache = cache.clone();
                s.spawn(move || random_ops(&cache, t, 30_000, 500))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    check_accounting(&cache, &log, &inserted);
    cache.validate().unwrap();
}

#[test]
fn the_listener_may_call_back_into_the_cache() {
    // Runs after the shard lock is released: touching the same shard must not deadlock.
    let slot: Arc<OnceLock<Cache<u64, u64>>> = Arc::default();
    let inner = Arc::clone(&slot);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(4)
        .shards(1)
        .eviction_listener(move |k, _, cause| {
            if let Some(c) = inner.get() {
                let _ = c.get(&k);
                if cause == RemovalCause::Evicted && k < 1_000 {
                    c.insert(k + 1_000, 0); // may evict again, recursively reported
                }
            }
        })
        .build()
        .unwrap();
    slot.set(cache.clone()).ok().unwrap();
    for k in 0..20 {
        cache.insert(k, k);
    }
    cache.remove(&19);
    cache.invalidate_all();
    assert!(cache.is_empty());
    cache.validate().unwrap();
}

#[test]
fn a_panicking_listener_loses_no_notification_and_no_entry() {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .eviction_listener(move |k, v, cause| {
            sink.lock().unwrap().push((k, v, cause));
            if k % 2 == 1 {
                panic!("listener refuses odd key {k}");
            }
        })
        .build()
        .unwrap();
    for k in 0..10 {
        cache.insert(k, k);
    }
    cache.invalidate_all(); // the listener's panics stay with the listener
    assert_eq!(cache.stats().listener_panics, 5);
    let mut got: Vec<u64> = take(&log).into_iter().map(|(k, _, _)| k).collect();
    got.sort();
    assert_eq!(
        got,
        (0..10).collect::<Vec<_>>(),
        "every entry still reported"
    );
    assert!(cache.is_empty());
    cache.validate().unwrap();

    // A replacement whose notification panics still replaced the value, and says so.
    cache.insert(1, 1);
    assert_eq!(cache.insert(1, 2), Some(1));
    assert_eq!(cache.stats().listener_panics, 6);
    assert_eq!(cache.get(&1), Some(2));
    cache.insert(2, 2);
    assert_eq!(cache.get(&2), Some(2), "the cache still works");
    cache.validate().unwrap();
}

#[test]
fn entries_removed_before_a_retain_predicate_panics_are_reported() {
    let (cache, log) = logged(100, 1);
    for k in 0..10 {
        cache.insert(k, k);
    }
    let mut calls = 0;
    let result = catch_unwind(AssertUnwindSafe(|| {
        cache.retain(|_, _| {
            calls += 1;
            assert!(calls <= 5, "predicate gives up");
            false
        })
    }));
    assert!(result.is_err());
    let reported: Vec<u64> = take(&log).into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(
        reported.len(),
        5,
        "the five removed before the panic: {reported:?}"
    );
    for k in &reported {
        assert!(!cache.contains_key(k));
    }
    assert_eq!(cache.len(), 5);
    cache.validate().unwrap();
}

#[test]
fn a_panicking_listener_stops_neither_invalidate_all_nor_retain_across_shards() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(4_000)
        .shards(4)
        .eviction_listener(|k, _, _| assert!(k % 7 != 3, "listener refuses {k}"))
        .build()
        .unwrap();
    for k in 0..1_000 {
        cache.insert(k, k);
    }
    cache.retain(|k, _| k % 2 == 0);
    assert!(
        cache.iter().all(|(k, _)| k % 2 == 0),
        "every shard was visited"
    );
    assert_eq!(cache.len(), 500);
    let refused_odd = (0..1_000).filter(|k| k % 2 == 1 && k % 7 == 3).count() as u64;
    assert_eq!(cache.stats().listener_panics, refused_odd);
    cache.invalidate_all();
    assert!(cache.is_empty(), "every shard was cleared");
    let refused = (0..1_000).filter(|k| k % 7 == 3).count() as u64;
    assert_eq!(cache.stats().listener_panics, refused);
    cache.validate().unwrap();
}
