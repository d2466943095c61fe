//! `Cache::compute`: what each `Compute` does to the key and returns, what the listener hears,
//! expired entries, loads in flight, panics in the closure, atomicity under contention, and
//! weights.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use cachet::{Cache, Clock, Compute, MockClock, RemovalCause};

type Log = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

fn logged(time: Option<&MockClock>) -> (Cache<u64, u64>, Log) {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let mut b = Cache::builder()
        .max_capacity(100)
        .eviction_listener(move |k, v, cause| seen.lock().unwrap().push((k, v, cause)));
    if let Some(time) = time {
        b = b
            .time_to_live(Duration::from_secs(10))
            .clock(Clock::mock(time));
    }
    (b.build().unwrap(), log)
}

fn take(log: &Log) -> Vec<(u64, u64, RemovalCause)> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[test]
fn put_inserts_or_replaces() {
    let (cache, log) = logged(None);
    let mut seen = Vec::new();
    let r = cache.compute(&1, |v| {
        seen.push(v.copied());
        Compute::Put(10)
    });
    assert_eq!(r, Some(10));
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(take(&log), []);

    let r = cache.compute(&1, |v| {
        seen.push(v.copied());
        Compute::Put(v.unwrap() + 1)
    });
    assert_eq!(r, Some(11));
    assert_eq!(cache.get(&1), Some(11));
    assert_eq!(seen, [None, Some(10)]);
    assert_eq!(take(&log), [(1, 10, RemovalCause::Replaced)]);
    assert_eq!(cache.len(), 1);
    cache.validate().unwrap();
}

#[test]
fn remove_removes_and_reports_an_explicit_removal() {
    let (cache, log) = logged(None);
    cache.insert(1, 10);
    assert_eq!(cache.compute(&1, |_| Compute::Remove), None);
    assert_eq!(cache.get(&1), None);
    assert_eq!(take(&log), [(1, 10, RemovalCause::Explicit)]);
    // Removing an absent key: nothing to report.
    assert_eq!(cache.compute(&2, |_| Compute::Remove), None);
    assert_eq!(take(&log), []);
    assert!(cache.is_empty());
    cache.validate().unwrap();
}

#[test]
fn keep_changes_nothing() {
    let (cache, log) = logged(None);
    cache.insert(1, 10);
    let mut seen = None;
    assert_eq!(
        cache.compute(&1, |v| {
            seen = Some(v.copied());
            Compute::Keep
        }),
        Some(10)
    );
    assert_eq!(seen, Some(Some(10)));
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(cache.compute(&2, |_| Compute::Keep), None);
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.len(), 1);
    assert_eq!(take(&log), []);
}

#[test]
fn an_expired_entry_is_seen_as_absent() {
    let time = MockClock::new();
    let (cache, log) = logged(Some(&time));
    cache.insert(1, 10);
    cache.insert(2, 20);
    cache.insert(3, 30);
    time.advance(Duration::from_secs(10)); // all three are at their deadline

    let mut seen = Vec::new();
    let mut compute = |k, op: Compute<u64>| {
        cache.compute(&k, |v| {
            seen.push(v.copied());
            op
        })
    };
    assert_eq!(compute(1, Compute::Keep), None);
    assert_eq!(compute(2, Compute::Put(21)), Some(21));
    assert_eq!(compute(3, Compute::Remove), None);
    assert_eq!(seen, [None, None, None]);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(21));
    assert_eq!(cache.get(&3), None);
    // The expired values are reported as expired, never as replaced or removed.
    let mut removed = take(&log);
    removed.sort_unstable_by_key(|&(k, _, _)| k);
    assert_eq!(
        removed,
        [
            (1, 10, RemovalCause::Expired),
            (2, 20, RemovalCause::Expired),
            (3, 30, RemovalCause::Expired)
        ]
    );
    // The computed value has the configured lifetime, from now.
    time.advance(Duration::from_millis(9_999));
    assert_eq!(cache.get(&2), Some(21));
    time.advance(Duration::from_millis(1));
    assert_eq!(cache.get(&2), None);
    cache.validate().unwrap();
}

#[test]
fn compute_waits_for_a_load_in_flight() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let leader = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_or_load(&1, || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                42
            })
        })
    };
    started_rx.recv().unwrap();
    let computer = {
        let cache = cache.clone();
        thread::spawn(move || {
            let mut seen = None;
            let r = cache.compute(&1, |v| {
                seen = Some(v.copied());
                Compute::Put(v.copied().unwrap_or(0) + 1)
            });
            (seen, r)
        })
    };
    // `compute` is registered as a waiter of the load before the load is released.
    while cache.loaders_waiting(&1) != Some(1) {
        thread::yield_now();
    }
    release_tx.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 42);
    let (seen, r) = computer.join().unwrap();
    assert_eq!(seen, Some(Some(42)), "compute saw the loaded value");
    assert_eq!(r, Some(43));
    assert_eq!(cache.get(&1), Some(43));
    cache.validate().unwrap();
}

#[test]
fn compute_after_a_failed_load_sees_nothing() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let leader = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_or_load(&1, || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Err::<u64, _>("db down")
            })
        })
    };
    started_rx.recv().unwrap();
    let computer = {
        let cache = cache.clone();
        thread::spawn(move || {
            let mut seen = None;
            let r = cache.compute(&1, |v| {
                seen = Some(v.copied());
                Compute::Put(5)
            });
            (seen, r)
        })
    };
    while cache.loaders_waiting(&1) != Some(1) {
        thread::yield_now();
    }
    release_tx.send(()).unwrap();
    assert!(leader.join().unwrap().is_err());
    assert_eq!(computer.join().unwrap(), (Some(None), Some(5)));
    assert_eq!(cache.get(&1), Some(5));
}

#[test]
fn compute_over_a_cached_error_sees_nothing_and_ends_the_window() {
    let time = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .negative_ttl(Duration::from_secs(5))
        .clock(Clock::mock(&time))
        .build()
        .unwrap();
    let e = cache.get_or_load(&1, || Err::<u64, _>("not found"));
    assert!(e.is_err());
    // Keep leaves the negative entry; Put replaces it.
    let kept = cache.compute(&1, |v| {
        assert_eq!(v, None, "a negative entry holds no value");
        Compute::Keep
    });
    assert_eq!(kept, None);
    let cached = cache.get_or_load(&1, || -> Result<u64, &str> { panic!("cached error") });
    assert!(Arc::ptr_eq(&cached.unwrap_err(), e.as_ref().unwrap_err()));
    let mut seen = None;
    let r = cache.compute(&1, |v| {
        seen = Some(v.copied());
        Compute::Put(7)
    });
    assert_eq!((seen, r), (Some(None), Some(7)));
    let v = cache.get_or_load(&1, || -> Result<u64, &str> { panic!("a value is cached") });
    assert_eq!(v, Ok(7));
    cache.validate().unwrap();
}

#[test]
fn a_panicking_closure_changes_nothing() {
    let (cache, log) = logged(None);
    cache.insert(1, 10);
    let r = catch_unwind(AssertUnwindSafe(|| {
        cache.compute(&1, |_| -> Compute<u64> { panic!("closure bug") })
    }));
    assert!(r.is_err());
    let r = catch_unwind(AssertUnwindSafe(|| {
        cache.compute(&2, |_| -> Compute<u64> { panic!("closure bug") })
    }));
    assert!(r.is_err());
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.len(), 1);
    assert_eq!(take(&log), []);
    cache.validate().unwrap();
    // The cache (and the shard's lock) is still usable.
    assert_eq!(
        cache.compute(&1, |v| Compute::Put(v.unwrap() + 1)),
        Some(11)
    );
    cache.insert(2, 20);
    assert_eq!(cache.get(&2), Some(20));
}

#[test]
fn concurrent_increments_are_not_lost() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let start = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (cache, start) = (cache.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for _ in 0..1_000 {
                    cache.compute(&0, |n| Compute::Put(n.copied().unwrap_or(0) + 1));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(cache.get(&0), Some(4_000));
}

#[test]
fn the_weigher_weighs_computed_values() {
    let cache: Cache<u64, String> = Cache::builder()
        .max_capacity(100)
        .weigher(|_, v: &String| v.len() as u32)
        .build()
        .unwrap();
    cache.compute(&1, |_| Compute::Put("hello".to_string()));
    assert_eq!(cache.weighted_size(), 5);
    cache.compute(&2, |_| Compute::Put("abc".to_string()));
    assert_eq!(cache.weighted_size(), 8);
    cache.compute(&1, |_| Compute::Put("hi".to_string()));
    assert_eq!(cache.weighted_size(), 5);
    cache.compute(&2, |_| Compute::Keep);
    assert_eq!(cache.weighted_size(), 5);
    cache.compute(&1, |_| Compute::Remove);
    assert_eq!(cache.weighted_size(), 3);
    // Heavier than the capacity: not stored, and the previous value is gone.
    cache.compute(&2, |_| Compute::Put("x".repeat(101)));
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.weighted_size(), 0);
    cache.validate().unwrap();
}

#[test]
fn compute_returns_the_value_after_the_operation_even_when_a_put_is_refused() {
    let cache: Cache<u64, String> = Cache::builder()
        .max_capacity(100)
        .weigher(|_, v: &String| v.len() as u32)
        .build()
        .unwrap();
    cache.insert(2, "abc".to_string());
    let r = cache.compute(&2, |_| Compute::Put("x".repeat(101)));
    assert_eq!(cache.get(&2), None, "too heavy: not stored");
    assert_eq!(r, None, "the key's value after the operation");

    let zero: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .time_to_live(Duration::ZERO)
        .build()
        .unwrap();
    let r = zero.compute(&1, |_| Compute::Put(10));
    assert_eq!(zero.get(&1), None, "a zero lifetime stores nothing");
    assert_eq!(r, None);
}

#[test]
fn a_panicking_weigher_in_compute_changes_nothing() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .weigher(|_, v: &u64| {
            assert!(*v != 666, "the weigher refuses 666");
            1
        })
        .build()
        .unwrap();
    cache.insert(1, 10);
    for k in [1, 2] {
        let r = catch_unwind(AssertUnwindSafe(|| {
            cache.compute(&k, |_| Compute::Put(666))
        }));
        assert!(r.is_err(), "key {k}: the weigher panicked");
    }
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.weighted_size(), 1);
    cache.validate().unwrap();
    assert_eq!(cache.compute(&2, |_| Compute::Put(20)), Some(20));
}
