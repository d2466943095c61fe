//! Request-coalescing loaders: counts, not timings. Loaders block on barriers or channels
//! instead of sleeping, so every interleaving asserted here is forced, not hoped for.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use cachet::Cache;

/// Spins (yielding) until `n` callers wait on the load in flight for `key`.
fn until_waiting(cache: &Cache<u64, u64>, key: u64, n: usize) {
    while cache.loaders_waiting(&key) != Some(n) {
        thread::yield_now();
    }
}

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

/// Starts a leader: `lead` runs on its own thread with a clone of `cache` and a `gate` that its
/// loader must call. Returns once the loader has reached the gate; the loader then stays there,
/// in flight, until the returned sender releases it.
fn blocked_leader<T: Send + 'static>(
    cache: &Cache<u64, u64>,
    lead: impl FnOnce(Cache<u64, u64>, &dyn Fn()) -> T + Send + 'static,
) -> (thread::JoinHandle<T>, mpsc::Sender<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let cache = cache.clone();
    let leader = thread::spawn(move || {
        let gate = || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        };
        lead(cache, &gate)
    });
    started_rx.recv().unwrap();
    (leader, release_tx)
}

#[test]
fn sixty_four_threads_one_load() {
    let cache: Cache<u64, u64> = Cache::new(1_000);
    let loads = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Barrier::new(2));
    let handles = spawn_callers(&cache, 7, 64, &loads, &gate);
    // Every other caller has joined the load before it completes.
    until_waiting(&cache, 7, 63);
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
        c.get_or_try_load(&1, || {
            gate();
            Err::<u64, _>("db down")
        })
    });
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_or_try_load(&1, || -> Result<u64, &str> {
                panic!("a waiter must not load")
            })
        })
    };
    until_waiting(&cache, 1, 1);
    release_tx.send(()).unwrap();
    let a = leader.join().unwrap().unwrap_err();
    let b = waiter.join().unwrap().unwrap_err();
    assert!(Arc::ptr_eq(&a, &b), "the same error is shared");
    assert_eq!(*a, "db down");
    assert_eq!(cache.get(&1), None);
    // The next caller loads afresh.
    assert_eq!(cache.get_or_try_load(&1, || Ok::<_, &str>(5)), Ok(5));
}

#[test]
fn leader_panic_hands_the_load_to_a_waiter() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release_tx) = blocked_leader(&cache, |c, gate| {
        catch_unwind(AssertUnwindSafe(|| {
            c.get_or_load(&1, || {
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
    until_waiting(&cache, 1, 4);
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
        .get_or_load_timeout(&1, Duration::from_millis(10), || {
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
    let g = cache.get_or_try_load_async(&1, async { Ok::<_, std::io::Error>(String::new()) });
    assert_send(&g);
}
