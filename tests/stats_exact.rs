//! Statistics that add up: a loader call counts once, as a hit, a miss (it ran the load) or a
//! coalesced wait (it waited for another caller's load), and the sizes `stats` reports are the
//! ones `len` and `weighted_size` report.

#[path = "common/loaders.rs"]
mod loaders;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use cachet::{Cache, Clock, MockClock};
use loaders::{blocked_leader, until_waiting};

fn recording(capacity: u64) -> Cache<u64, u64> {
    Cache::builder()
        .max_capacity(capacity)
        .record_stats()
        .build()
        .unwrap()
}

const THREADS: u64 = 8;
const KEYS: u64 = 21;

/// Every key is led by one caller while the seven others wait on its load.
#[test]
fn coalesced_waiters_are_not_misses() {
    let cache = recording(1_000);
    for key in 0..KEYS {
        let (leader, release) = blocked_leader(&cache, move |c, gate| {
            c.get_or_load(&key, || {
                gate();
                key * 10
            })
        });
        let waiters: Vec<_> = (1..THREADS)
            .map(|_| {
                let cache = cache.clone();
                thread::spawn(move || {
                    cache.get_or_load(&key, || -> u64 { panic!("a waiter loaded") })
                })
            })
            .collect();
        until_waiting(&cache, &key, (THREADS - 1) as usize);
        release.send(()).unwrap();
        assert_eq!(leader.join().unwrap(), key * 10);
        for w in waiters {
            assert_eq!(w.join().unwrap(), key * 10);
        }
    }
    let s = cache.stats();
    assert_eq!((s.loads, s.inserts, s.hits), (KEYS, KEYS, 0));
    assert_eq!(s.misses, KEYS, "a waiter was counted as a miss");
    assert_eq!(s.coalesced, (THREADS - 1) * KEYS);
    assert_eq!(s.requests(), THREADS * KEYS);
}

/// Free-running callers: however they interleave, each call counts once and every miss is a
/// load.
#[test]
fn concurrent_loader_calls_each_count_once() {
    let cache = recording(1_000);
    let start = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, start) = (cache.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for key in 0..KEYS {
                    assert_eq!(cache.get_or_load(&key, || key + 1), key + 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = cache.stats();
    assert_eq!(s.loads, KEYS);
    assert_eq!(
        s.misses, s.loads,
        "misses {} but loads {}",
        s.misses, s.loads
    );
    assert_eq!(s.requests(), THREADS * KEYS);
}

/// Expired entries that nothing has removed yet count the same in `len`, `weighted_size` and
/// `stats().weighted_size`: all three report what is stored.
#[test]
fn the_sizes_agree_about_expired_entries() {
    let time = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000)
        .time_to_live(Duration::from_secs(10))
        .clock(Clock::mock(&time))
        .build()
        .unwrap();
    // The snapshot is taken first: the other two must not change what is stored.
    let sizes = || {
        let reported = cache.stats().weighted_size;
        (reported, cache.weighted_size(), cache.len() as u64)
    };
    let agree = |expected: u64| assert_eq!(sizes(), (expected, expected, expected));
    for k in 0..10 {
        cache.insert(k, k);
    }
    agree(10);
    time.advance(Duration::from_secs(11));
    let (reported, weighted, len) = sizes();
    assert!(
        reported == weighted && weighted == len,
        "{reported} / {weighted} / {len}"
    );
    cache.run_pending_maintenance();
    agree(0);
}
