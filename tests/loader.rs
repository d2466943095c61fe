//! Request-coalescing loaders: counts, not timings. Loaders block on barriers or channels
//! instead of sleeping, so every interleaving asserted here is forced, not hoped for.

#[path = "common/loaders.rs"]
mod loaders;

use std::cell::Cell;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use cachet::{Cache, Clock, MockClock};
use loaders::{blocked_leader, until_waiting};

/// `n` callers of `get_or_load(key)`; the leader's loader blocks on `gate`.
fn spawn_callers(
    cache: &Cache<u64, u64>,
    key: u64,
    n: usize,
    loads: &Arc<AtomicUsize>,
    gate: &Arc<Barrier>,
) -> Vec<thread::JoinHandle<u64>> {
    (0..n)
        .map(|_| {
            let (cache, loads, gate) = (cache.clone(), Arc::clone(loads), Arc::clone(gate));
            thread::spawn(move || {
                cache.get_or_load(&key, || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    gate.wait(); // released once all callers have been spawned
                    key * 10
                })
            })
        })
        .collect()
}

#[test]
fn sixty_four_threads_one_load() {
    let cache: Cache<u64, u64> = Cache::new(1_000);
    let loads = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Barrier::new(2));
    let handles = spawn_callers(&cache, 7, 64, &loads, &gate);
    // Every other caller has joined the load before it completes.
    until_waiting(&cache, &7, 63);
    gate.wait();
    for h in handles {
        assert_eq!(h.join().unwrap(), 70);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&7), Some(70));
    cache.validate().unwrap();
}

#[test]
fn distinct_keys_each_load_once() {
    let cache: Cache<u64, u64> = Cache::new(10_000);
    let loads = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (cache, loads, start) = (cache.clone(), Arc::clone(&loads), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                for k in 0..100u64 {
                    let v = cache.get_or_load(&k, || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        k + 1
                    });
                    assert_eq!(v, k + 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 100);
}

#[test]
fn error_is_shared_with_waiters_and_not_cached() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release_tx) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            Err::<u64, _>("db down")
        })
    });
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_or_load(&1, || -> Result<u64, &str> {
                panic!("a waiter must not load")
            })
        })
    };
    until_waiting(&cache, &1, 1);
    release_tx.send(()).unwrap();
    let a = leader.join().unwrap().unwrap_err();
    let b = waiter.join().unwrap().unwrap_err();
    assert!(Arc::ptr_eq(&a, &b), "the same error is shared");
    assert_eq!(*a, "db down");
    assert_eq!(cache.get(&1), None);
    // The next caller loads afresh.
    assert_eq!(cache.get_or_load(&1, || Ok::<_, &str>(5)), Ok(5));
}

#[test]
fn leader_panic_hands_the_load_to_a_waiter() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release_tx) = blocked_leader(&cache, |c, gate| {
        catch_unwind(AssertUnwindSafe(|| {
            c.get_or_load(&1, || -> u64 {
                gate();
                panic!("loader bug")
            })
        }))
    });
    let loads = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let (cache, loads) = (cache.clone(), Arc::clone(&loads));
            thread::spawn(move || {
                cache.get_or_load(&1, || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    11
                })
            })
        })
        .collect();
    until_waiting(&cache, &1, 4);
    release_tx.send(()).unwrap();
    assert!(
        leader.join().unwrap().is_err(),
        "the panic unwinds the leader"
    );
    for w in waiters {
        assert_eq!(w.join().unwrap(), 11);
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "exactly one waiter reloads"
    );
    cache.validate().unwrap();
}

#[test]
fn waiter_timeout_leaves_the_load_running() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release_tx) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            3
        })
    });
    let err = cache
        .get_or_load_timeout(&1, Duration::from_millis(10), || -> u64 {
            unreachable!("leader is loading")
        })
        .unwrap_err();
    assert_eq!(err.waited(), Duration::from_millis(10));
    release_tx.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 3);
    assert_eq!(cache.get(&1), Some(3));
}

#[test]
fn a_remove_during_the_load_keeps_the_stale_value_out() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release_tx) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            100 // read before the row changed
        })
    });
    assert_eq!(cache.remove(&1), None); // the row changed: invalidate
    release_tx.send(()).unwrap();
    assert_eq!(
        leader.join().unwrap(),
        100,
        "the leader still gets its value"
    );
    assert_eq!(cache.get(&1), None, "but it is not stored");
    cache.validate().unwrap();
}

#[test]
fn an_insert_during_the_load_wins() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release_tx) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            1
        })
    });
    cache.insert(1, 2);
    release_tx.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 1);
    assert_eq!(cache.get(&1), Some(2));
    cache.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_tasks_one_load() {
    let cache: Cache<u64, u64> = Cache::new(1_000);
    let loads = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (cache, loads, mut rx) = (cache.clone(), Arc::clone(&loads), rx.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load_async(&9, async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        rx.wait_for(|open| *open).await.unwrap();
                        90
                    })
                    .await
            })
        })
        .collect();
    while cache.loaders_waiting(&9) != Some(999) {
        tokio::task::yield_now().await;
    }
    tx.send(true).unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 90);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_async_leader_hands_over() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load_async(&1, async move {
                    started_tx.send(()).unwrap();
                    std::future::pending::<u64>().await // never finishes on its own
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_load_async(&1, async { 5 }).await })
    };
    while cache.loaders_waiting(&1) != Some(1) {
        tokio::task::yield_now().await;
    }
    leader.abort(); // drops the leader's future mid-load
    assert!(leader.await.unwrap_err().is_cancelled());
    assert_eq!(waiter.await.unwrap(), 5);
    assert_eq!(cache.get(&1), Some(5));
    cache.validate().unwrap();
}

#[test]
fn async_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let cache: Cache<u64, String> = Cache::new(10);
    let f = cache.get_or_load_async(&1, async { String::new() });
    assert_send(&f);
    let g = cache.get_or_load_async(&1, async { Ok::<_, std::io::Error>(String::new()) });
    assert_send(&g);
}

// ----- Negative caching (`cache_errors_for`) -----

/// A cache that remembers failed loads for 5 s of a mock clock.
fn negative_cache() -> (Cache<u64, u64>, MockClock) {
    let time = MockClock::new();
    let cache = Cache::builder()
        .max_capacity(100)
        .negative_ttl(Duration::from_secs(5))
        .clock(Clock::mock(&time))
        .record_stats()
        .build()
        .unwrap();
    (cache, time)
}

/// A fallible loader that counts its calls and fails with `"not found"`.
fn not_found(loads: &AtomicUsize) -> impl FnOnce() -> Result<u64, &'static str> + '_ {
    || {
        loads.fetch_add(1, Ordering::SeqCst);
        Err("not found")
    }
}

#[test]
fn a_failed_load_is_served_for_the_window_then_loaded_again() {
    let (cache, time) = negative_cache();
    let loads = AtomicUsize::new(0);
    let first = cache.get_or_load(&1, not_found(&loads)).unwrap_err();
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(*first, "not found");
    // A negative entry is neither a value nor a load in flight.
    assert_eq!(cache.stats().loads_in_flight, 0);
    assert_eq!(
        cache.loaders_waiting(&1),
        None,
        "a kept error is not a load in flight"
    );
    assert_eq!(cache.get(&1), None);
    assert!(!cache.contains_key(&1));
    assert_eq!(cache.len(), 0);

    // Within the window: the same error, and no call to the loader.
    let second = cache.get_or_load(&1, not_found(&loads)).unwrap_err();
    assert!(Arc::ptr_eq(&first, &second));
    time.advance(Duration::from_millis(4_999));
    let third = cache.get_or_load(&1, not_found(&loads)).unwrap_err();
    assert!(Arc::ptr_eq(&first, &third));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().loads_in_flight, 0);

    // 5 s after the failure, the next caller loads again (and opens a new window).
    time.advance(Duration::from_millis(1));
    let fourth = cache.get_or_load(&1, not_found(&loads)).unwrap_err();
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    assert!(!Arc::ptr_eq(&first, &fourth), "a new load, a new error");
    let fifth = cache.get_or_load(&1, not_found(&loads)).unwrap_err();
    assert!(Arc::ptr_eq(&fourth, &fifth));
    assert_eq!(loads.load(Ordering::SeqCst), 2);

    let stats = cache.stats();
    assert_eq!((stats.loads, stats.load_failures), (0, 2));
    cache.validate().unwrap();
}

#[test]
fn a_write_or_removal_ends_the_error_window() {
    let (cache, _time) = negative_cache();
    let loads = AtomicUsize::new(0);
    for k in [1, 2, 3] {
        cache.get_or_load(&k, not_found(&loads)).unwrap_err();
    }
    assert_eq!(loads.load(Ordering::SeqCst), 3);

    // insert: the value is served, the loader is not called.
    cache.insert(1, 10);
    let v = cache.get_or_load(&1, || -> Result<u64, &str> { panic!("a value is cached") });
    assert_eq!(v, Ok(10));
    // remove: nothing to return, but the next caller loads.
    assert_eq!(cache.remove(&2), None);
    assert_eq!(cache.get_or_load(&2, || Ok::<_, &str>(20)), Ok(20));
    // invalidate_all: likewise.
    cache.invalidate_all();
    assert_eq!(cache.get_or_load(&3, || Ok::<_, &str>(30)), Ok(30));
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    cache.validate().unwrap();
}

#[test]
fn a_caller_that_cannot_receive_the_cached_error_loads_itself() {
    let (cache, _time) = negative_cache();
    let loads = AtomicUsize::new(0);
    cache.get_or_load(&1, not_found(&loads)).unwrap_err();
    cache.get_or_load(&2, not_found(&loads)).unwrap_err();
    // An infallible caller within the window loads, and its value is stored.
    assert_eq!(cache.get_or_load(&1, || 11), 11);
    assert_eq!(cache.get(&1), Some(11));
    // So does a caller with another error type.
    assert_eq!(cache.get_or_load(&2, || Ok::<_, String>(22)), Ok(22));
    assert_eq!(cache.get(&2), Some(22));
    assert_eq!(cache.stats().loads_in_flight, 0);
    cache.validate().unwrap();
}

#[test]
fn waiters_of_a_load_that_fails_get_the_error_that_is_then_cached() {
    let (cache, _time) = negative_cache();
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&1, || {
            gate();
            Err::<u64, _>("not found")
        })
    });
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_or_load(&1, || -> Result<u64, &str> { panic!("joins the leader") })
        })
    };
    until_waiting(&cache, &1, 1);
    assert_eq!(cache.stats().loads_in_flight, 1);
    release.send(()).unwrap();
    let a = leader.join().unwrap().unwrap_err();
    let b = waiter.join().unwrap().unwrap_err();
    assert!(Arc::ptr_eq(&a, &b));
    let c = cache.get_or_load(&1, || -> Result<u64, &str> { panic!("cached error") });
    assert!(Arc::ptr_eq(&a, &c.unwrap_err()));
    assert_eq!(cache.stats().loads_in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_caller_gets_the_cached_error() {
    let (cache, time) = negative_cache();
    let loads = AtomicUsize::new(0);
    let first = cache
        .get_or_load_async(&1, async {
            loads.fetch_add(1, Ordering::SeqCst);
            Err::<u64, _>("not found")
        })
        .await
        .unwrap_err();
    let second = cache
        .get_or_load_async(&1, async { Err::<u64, _>("must not run") })
        .await
        .unwrap_err();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    time.advance(Duration::from_secs(5));
    let v = cache
        .get_or_load_async(&1, async { Ok::<_, &str>(10) })
        .await;
    assert_eq!(v, Ok(10));
}

// ----- Panics in user code around a load -----

thread_local! {
    /// Per test thread, so that parallel tests do not arm each other's traps.
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn armed() -> bool {
    ARMED.with(Cell::get)
}

fn with_armed<R>(f: impl FnOnce() -> R) -> R {
    ARMED.with(|a| a.set(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    ARMED.with(|a| a.set(false));
    r.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[test]
fn a_panicking_weigher_on_a_loaded_value_frees_the_key() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(1_000)
        .weigher(|_, v: &u64| {
            assert!(*v != 666, "the weigher refuses 666");
            1
        })
        .build()
        .unwrap();
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        catch_unwind(AssertUnwindSafe(|| {
            c.get_or_load(&1, || {
                gate();
                666
            })
        }))
    });
    // A waiter with a bound on its wait, so that the bug shows as a timeout, not a hang.
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_or_load_timeout(&1, Duration::from_secs(2), || 7))
    };
    until_waiting(&cache, &1, 1);
    release.send(()).unwrap();
    assert!(
        leader.join().unwrap().is_err(),
        "the weigher's panic reaches the leader"
    );
    assert_eq!(
        waiter.join().unwrap(),
        Ok(7),
        "the waiter takes the load over"
    );
    assert_eq!(cache.get(&1), Some(7));
    assert_eq!(cache.loaders_waiting(&1), None);
    assert_eq!(cache.stats().loads_in_flight, 0);
    cache.validate().unwrap();
}

/// A key whose `Clone` panics while the thread has armed it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CloneTrap(u64);

impl Clone for CloneTrap {
    fn clone(&self) -> Self {
        assert!(!armed(), "clone of the trap key");
        CloneTrap(self.0)
    }
}

#[test]
fn a_panicking_key_clone_when_a_load_starts_leaves_the_cache_intact() {
    let cache: Cache<CloneTrap, u64> = Cache::new(100);
    cache.insert(CloneTrap(2), 20);
    let r = catch_unwind(AssertUnwindSafe(|| {
        with_armed(|| cache.get_or_load(&CloneTrap(1), || 10))
    }));
    assert!(r.is_err(), "the key's clone panicked");
    cache.validate().unwrap();
    assert_eq!(cache.loaders_waiting(&CloneTrap(1)), None);
    assert_eq!(cache.get(&CloneTrap(2)), Some(20));
    assert_eq!(cache.get_or_load(&CloneTrap(1), || 10), 10);
    assert_eq!(cache.len(), 2);
    cache.validate().unwrap();
}
