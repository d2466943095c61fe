//! Batch loaders (`get_all_or_load` and friends): which keys reach the batch loader, how batch
//! and single-key loads coalesce, and what a failing or panicking batch leaves behind. Counts,
//! not timings: loaders park on channels, and the test waits for callers to be registered with
//! `loaders_waiting` instead of sleeping.

#[path = "common/loaders.rs"]
mod loaders;

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use cachet::{Cache, Clock, MockClock};
use loaders::{blocked_leader, until_waiting};

/// The key lists a batch loader was called with, in call order.
type Calls = Arc<Mutex<Vec<Vec<u64>>>>;

fn calls(log: &Calls) -> Vec<Vec<u64>> {
    log.lock().unwrap().clone()
}

fn sorted(mut keys: Vec<u64>) -> Vec<u64> {
    keys.sort_unstable();
    keys
}

/// A batch loader that records its calls in `log`, then answers with `answer`.
fn logged<R>(
    log: &Calls,
    mut answer: impl FnMut(&[u64]) -> R + Send + 'static,
) -> impl FnMut(&[u64]) -> R + Send + 'static {
    let log = Arc::clone(log);
    move |missing: &[u64]| {
        log.lock().unwrap().push(missing.to_vec());
        answer(missing)
    }
}

/// A batch loader that records its calls and finds every key, with value `k * 10`.
fn finds_all(log: &Calls) -> impl FnMut(&[u64]) -> Vec<(u64, u64)> + Send + 'static {
    logged(log, |missing| {
        missing.iter().map(|&k| (k, k * 10)).collect()
    })
}

/// None of `keys` is stored, and none is left in flight.
fn none_stored_nor_in_flight(cache: &Cache<u64, u64>, keys: &[u64]) {
    for &k in keys {
        assert_eq!(cache.get(&k), None, "key {k} not stored");
        assert_eq!(
            cache.loaders_waiting(&k),
            None,
            "key {k} not left in flight"
        );
    }
}

/// The whole contract at once: 100 keys, 30 cached, 20 in flight (single-key leaders parked in
/// their loaders), 50 missing. The batch loader is called once, with exactly the 50; the 20
/// joined keys get their leaders' values.
#[test]
fn batch_loads_exactly_the_keys_neither_cached_nor_in_flight() {
    let cache: Cache<u64, u64> = Cache::new(10_000);
    for k in 0..30 {
        cache.insert(k, 1_000 + k);
    }
    let leaders: Vec<_> = (30..50u64)
        .map(|k| {
            blocked_leader(&cache, move |c, gate| {
                c.get_or_load(&k, || {
                    gate();
                    5_000 + k
                })
            })
        })
        .collect();
    for k in 30..50 {
        assert_eq!(cache.loaders_waiting(&k), Some(0), "key {k} is in flight");
    }

    let log: Calls = Arc::default();
    let (called_tx, called_rx) = mpsc::channel();
    let batch = {
        let load = logged(&log, move |missing| {
            called_tx.send(()).unwrap();
            missing.iter().map(|&k| (k, 2_000 + k)).collect::<Vec<_>>()
        });
        let cache = cache.clone();
        thread::spawn(move || cache.get_all_or_load(&(0..100).collect::<Vec<u64>>(), load))
    };
    called_rx.recv().unwrap();
    // The batch has stored what it loaded and now waits on the first key it joined.
    until_waiting(&cache, &30, 1);
    for k in 50..100 {
        assert_eq!(
            cache.peek(&k),
            Some(2_000 + k),
            "key {k} loaded by the batch"
        );
    }
    for k in 31..50 {
        assert_eq!(
            cache.loaders_waiting(&k),
            Some(0),
            "key {k} still in flight"
        );
    }

    for (_, release) in &leaders {
        release.send(()).unwrap();
    }
    for (k, (leader, _)) in (30..50u64).zip(leaders) {
        assert_eq!(leader.join().unwrap(), 5_000 + k);
    }
    let got = batch.join().unwrap();

    let calls = calls(&log);
    assert_eq!(calls.len(), 1, "one call of the batch loader");
    assert_eq!(calls[0].len(), 50, "each key once: {:?}", calls[0]);
    assert_eq!(sorted(calls[0].clone()), (50..100).collect::<Vec<_>>());
    assert_eq!(got.len(), 100);
    for k in 0..100 {
        let expected = match k {
            0..30 => 1_000 + k,
            30..50 => 5_000 + k,
            _ => 2_000 + k,
        };
        assert_eq!(got[&k], expected, "key {k}");
        assert_eq!(cache.get(&k), Some(expected), "key {k} stored");
    }
    assert_eq!(cache.stats().loads_in_flight, 0);
    cache.validate().unwrap();
}

#[test]
fn keys_the_loader_does_not_return_are_absent_and_not_stored() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let got = cache.get_all_or_load(&[1, 2, 3, 4], |missing: &[u64]| {
        assert_eq!(missing, &[1, 2, 3, 4]);
        vec![(3, 30), (1, 10)] // in any order
    });
    assert_eq!(got, HashMap::from([(1, 10), (3, 30)]));
    none_stored_nor_in_flight(&cache, &[2, 4]);
    assert_eq!(cache.len(), 2);
    // Not found is not remembered: the next batch asks for them again.
    let got = cache.get_all_or_load(&[1, 2, 3, 4], |missing: &[u64]| {
        assert_eq!(missing, &[2, 4]);
        vec![(2, 20)]
    });
    assert_eq!(got, HashMap::from([(1, 10), (2, 20), (3, 30)]));
    cache.validate().unwrap();
}

#[test]
fn pairs_for_keys_not_asked_for_are_ignored() {
    let cache: Cache<u64, u64> = Cache::new(100);
    cache.insert(5, 50);
    let got = cache.get_all_or_load(&[1, 2, 5], |missing: &[u64]| {
        assert_eq!(missing, &[1, 2]);
        // 99 was not asked for, and 5 is cached: neither is taken from the answer.
        vec![(1, 10), (99, 990), (2, 20), (5, 555)]
    });
    assert_eq!(got, HashMap::from([(1, 10), (2, 20), (5, 50)]));
    assert_eq!(cache.get(&99), None);
    assert_eq!(cache.get(&5), Some(50));
    assert_eq!(cache.len(), 3);
    cache.validate().unwrap();
}

#[test]
fn duplicate_keys_are_answered_once_and_loaded_once() {
    let cache: Cache<u64, u64> = Cache::new(100);
    cache.insert(5, 50);
    let log: Calls = Arc::default();
    let got = cache.get_all_or_load(&[1, 2, 2, 5, 1, 3, 5, 3], finds_all(&log));
    assert_eq!(calls(&log), [vec![1, 2, 3]]);
    assert_eq!(got, HashMap::from([(1, 10), (2, 20), (3, 30), (5, 50)]));

    // A duplicated key the loader does not find: asked once, absent, nothing left in flight.
    let got = cache.get_all_or_load(&[7, 7, 8, 7], |missing: &[u64]| {
        assert_eq!(missing, &[7, 8]);
        vec![(8, 80)]
    });
    assert_eq!(got, HashMap::from([(8, 80)]));
    assert_eq!(cache.loaders_waiting(&7), None);
    assert_eq!(cache.get(&7), None);
    cache.validate().unwrap();
}

#[test]
fn no_call_to_the_loader_without_a_missing_key() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let never = |_: &[u64]| -> Vec<(u64, u64)> { panic!("nothing to load") };
    assert!(cache.get_all_or_load(&Vec::<u64>::new(), never).is_empty());
    cache.insert(1, 10);
    cache.insert(2, 20);
    assert_eq!(
        cache.get_all_or_load(&[2, 1, 2], never),
        HashMap::from([(1, 10), (2, 20)])
    );
    let r = cache.get_all_or_try_load(
        &Vec::<u64>::new(),
        |_: &[u64]| -> Result<Vec<(u64, u64)>, ()> { panic!("nothing to load") },
    );
    assert!(r.is_empty());
}

#[test]
fn a_failing_batch_gives_every_key_it_was_asked_for_the_same_error() {
    let cache: Cache<u64, u64> = Cache::new(100);
    cache.insert(1, 10);
    cache.insert(2, 20);
    let log: Calls = Arc::default();
    let got = cache.get_all_or_try_load(
        &[1, 2, 3, 4, 5],
        logged(&log, |_| Err::<Vec<(u64, u64)>, _>("db down")),
    );
    assert_eq!(calls(&log), [vec![3, 4, 5]]);
    assert_eq!(got.len(), 5);
    assert_eq!(got[&1], Ok(10));
    assert_eq!(got[&2], Ok(20));
    let e3 = got[&3].clone().unwrap_err();
    assert_eq!(*e3, "db down");
    for k in [4, 5] {
        let e = got[&k].clone().unwrap_err();
        assert!(Arc::ptr_eq(&e, &e3), "key {k} shares the one error");
    }
    none_stored_nor_in_flight(&cache, &[3, 4, 5]);
    assert_eq!(cache.len(), 2);
    // The next batch loads them afresh.
    let got = cache.get_all_or_try_load(&[3, 4], |missing: &[u64]| {
        assert_eq!(missing, &[3, 4]);
        Ok::<_, &str>(vec![(3, 30), (4, 40)])
    });
    assert_eq!(got, HashMap::from([(3, Ok(30)), (4, Ok(40))]));
    cache.validate().unwrap();
}

#[test]
fn a_key_joined_to_a_failing_single_key_load_gets_that_loads_error() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        c.get_or_load(&3, || {
            gate();
            Err::<u64, _>("leader failed")
        })
    });
    let batch = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_all_or_try_load(&[3, 4], |missing: &[u64]| {
                assert_eq!(missing, &[4]);
                Ok::<_, &str>(vec![(4, 40)])
            })
        })
    };
    until_waiting(&cache, &3, 1);
    release.send(()).unwrap();
    let leader_error = leader.join().unwrap().unwrap_err();
    let got = batch.join().unwrap();
    assert_eq!(got[&4], Ok(40));
    let e = got[&3].clone().unwrap_err();
    assert!(Arc::ptr_eq(&e, &leader_error));
    assert_eq!(cache.get(&3), None);
}

#[test]
fn a_single_key_waiter_gets_the_value_of_the_batch_that_leads_its_key() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (batch, release) = blocked_leader(&cache, |c, gate| {
        c.get_all_or_load(&[1, 2, 3], |missing: &[u64]| {
            gate();
            missing.iter().map(|&k| (k, k * 10)).collect::<Vec<_>>()
        })
    });
    let waiter = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_or_load(&2, || -> u64 { panic!("the batch is loading key 2") })
        })
    };
    until_waiting(&cache, &2, 1);
    release.send(()).unwrap();
    assert_eq!(
        batch.join().unwrap(),
        HashMap::from([(1, 10), (2, 20), (3, 30)])
    );
    assert_eq!(waiter.join().unwrap(), 20);
}

#[test]
fn a_single_key_waiter_loads_a_key_the_batch_did_not_find() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (batch, release) = blocked_leader(&cache, |c, gate| {
        c.get_all_or_load(&[1, 2, 3], |_: &[u64]| {
            gate();
            vec![(1, 10), (3, 30)]
        })
    });
    let loads = Arc::new(AtomicUsize::new(0));
    let waiter = {
        let (cache, loads) = (cache.clone(), Arc::clone(&loads));
        thread::spawn(move || {
            cache.get_or_load(&2, || {
                loads.fetch_add(1, Ordering::SeqCst);
                22
            })
        })
    };
    until_waiting(&cache, &2, 1);
    release.send(()).unwrap();
    assert_eq!(batch.join().unwrap(), HashMap::from([(1, 10), (3, 30)]));
    assert_eq!(
        waiter.join().unwrap(),
        22,
        "a single-key caller must get a value"
    );
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&2), Some(22));
}

#[test]
fn a_panicking_batch_hands_its_keys_to_their_waiters() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (batch, release) = blocked_leader(&cache, |c, gate| {
        catch_unwind(AssertUnwindSafe(|| {
            c.get_all_or_load(&[1, 2], |_: &[u64]| -> Vec<(u64, u64)> {
                gate();
                panic!("batch loader bug")
            })
        }))
    });
    let loads = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let waiters: Vec<_> = [1u64, 1, 1, 2]
        .into_iter()
        .map(|k| {
            let (cache, loads) = (cache.clone(), Arc::clone(&loads));
            thread::spawn(move || {
                let v = cache.get_or_load(&k, || {
                    loads[k as usize - 1].fetch_add(1, Ordering::SeqCst);
                    k * 11
                });
                (k, v)
            })
        })
        .collect();
    until_waiting(&cache, &1, 3);
    until_waiting(&cache, &2, 1);
    release.send(()).unwrap();
    assert!(
        batch.join().unwrap().is_err(),
        "the panic unwinds the batch"
    );
    for w in waiters {
        let (k, v) = w.join().unwrap();
        assert_eq!(v, k * 11);
    }
    assert_eq!(
        loads[0].load(Ordering::SeqCst),
        1,
        "one waiter of key 1 loads"
    );
    assert_eq!(
        loads[1].load(Ordering::SeqCst),
        1,
        "the waiter of key 2 loads"
    );
    assert_eq!(cache.get(&1), Some(11));
    assert_eq!(cache.get(&2), Some(22));
    cache.validate().unwrap();
}

#[test]
fn a_batch_reloads_a_joined_key_whose_leader_panicked() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (leader, release) = blocked_leader(&cache, |c, gate| {
        catch_unwind(AssertUnwindSafe(|| {
            c.get_or_load(&5, || -> u64 {
                gate();
                panic!("single-key loader bug")
            })
        }))
    });
    let log: Calls = Arc::default();
    let batch = {
        let (cache, load) = (cache.clone(), finds_all(&log));
        thread::spawn(move || cache.get_all_or_load(&[4, 5, 6], load))
    };
    until_waiting(&cache, &5, 1);
    assert_eq!(calls(&log), [vec![4, 6]], "key 5 is joined, not loaded");
    release.send(()).unwrap();
    assert!(leader.join().unwrap().is_err());
    assert_eq!(
        batch.join().unwrap(),
        HashMap::from([(4, 40), (5, 50), (6, 60)])
    );
    assert_eq!(
        calls(&log),
        [vec![4, 6], vec![5]],
        "called again for key 5 only"
    );
    assert_eq!(cache.get(&5), Some(50));
}

#[test]
fn a_batch_joins_the_keys_another_batch_leads() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (first, release) = blocked_leader(&cache, |c, gate| {
        c.get_all_or_load(&[1, 2], |missing: &[u64]| {
            assert_eq!(missing, &[1, 2]);
            gate();
            vec![(1, 100), (2, 200)]
        })
    });
    let log: Calls = Arc::default();
    let second = {
        let (cache, load) = (cache.clone(), finds_all(&log));
        thread::spawn(move || cache.get_all_or_load(&[2, 3, 1], load))
    };
    until_waiting(&cache, &2, 1);
    assert_eq!(calls(&log), [vec![3]]);
    release.send(()).unwrap();
    assert_eq!(first.join().unwrap(), HashMap::from([(1, 100), (2, 200)]));
    assert_eq!(
        second.join().unwrap(),
        HashMap::from([(1, 100), (2, 200), (3, 30)])
    );
    assert_eq!(calls(&log), [vec![3]]);
}

#[test]
fn a_batch_gets_a_cached_error_without_loading_the_key() {
    let time = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .negative_ttl(Duration::from_secs(5))
        .clock(Clock::mock(&time))
        .build()
        .unwrap();
    let first = cache.get_all_or_try_load(&[1, 2], |missing: &[u64]| {
        assert_eq!(missing, &[1, 2]);
        Err::<Vec<(u64, u64)>, _>("not found")
    });
    let e = first[&1].clone().unwrap_err();
    assert!(Arc::ptr_eq(&e, first[&2].as_ref().unwrap_err()));

    // Within the window: the failed keys get the error, only the new key is loaded.
    time.advance(Duration::from_millis(4_999));
    let log: Calls = Arc::default();
    let got = cache.get_all_or_try_load(&[1, 2, 3], logged(&log, |_| Ok::<_, &str>(vec![(3, 30)])));
    assert_eq!(calls(&log), [vec![3]]);
    assert_eq!(got[&3], Ok(30));
    for k in [1, 2] {
        assert!(Arc::ptr_eq(got[&k].as_ref().unwrap_err(), &e), "key {k}");
    }
    // A single-key caller with the same error type gets it too.
    let single = cache.get_or_load(&1, || -> Result<u64, &str> { panic!("cached error") });
    assert!(Arc::ptr_eq(&single.unwrap_err(), &e));

    // Once the window has passed, the keys are loaded again.
    time.advance(Duration::from_millis(1));
    let got = cache.get_all_or_try_load(&[1, 2, 3], |missing: &[u64]| {
        assert_eq!(missing, &[1, 2]);
        Ok::<_, &str>(vec![(1, 10), (2, 20)])
    });
    assert_eq!(got, HashMap::from([(1, Ok(10)), (2, Ok(20)), (3, Ok(30))]));
}

// ----- Async -----

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[test]
fn async_batch_futures_are_send() {
    let cache: Cache<u64, String> = Cache::new(10);
    let f = assert_send(
        cache.get_all_or_load_async(&[1, 2], |missing: Vec<u64>| async move {
            missing
                .into_iter()
                .map(|k| (k, k.to_string()))
                .collect::<Vec<_>>()
        }),
    );
    drop(f);
    let g = assert_send(
        cache.get_all_or_try_load_async(&[1, 2], |missing: Vec<u64>| async move {
            Ok::<_, std::io::Error>(
                missing
                    .into_iter()
                    .map(|k| (k, k.to_string()))
                    .collect::<Vec<_>>(),
            )
        }),
    );
    drop(g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_batch_answers_hits_joins_and_misses() {
    let cache: Cache<u64, u64> = Cache::new(100);
    cache.insert(1, 10);
    cache.insert(2, 20);
    // Key 3 is in flight: an async leader parked until released.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load_async(&3, async move {
                    started_tx.send(()).unwrap();
                    release_rx.await.unwrap();
                    33
                })
                .await
        })
    };
    started_rx.await.unwrap();
    let log: Calls = Arc::default();
    let batch = {
        let (cache, log) = (cache.clone(), Arc::clone(&log));
        // `tokio::spawn` needs the batch's future to be `Send`.
        tokio::spawn(async move {
            cache
                .get_all_or_load_async(&[1, 2, 3, 4, 5], move |missing: Vec<u64>| {
                    log.lock().unwrap().push(missing.clone());
                    async move { missing.into_iter().map(|k| (k, k * 10)).collect::<Vec<_>>() }
                })
                .await
        })
    };
    while cache.loaders_waiting(&3) != Some(1) {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls(&log), [vec![4, 5]]);
    release_tx.send(()).unwrap();
    assert_eq!(leader.await.unwrap(), 33);
    assert_eq!(
        batch.await.unwrap(),
        HashMap::from([(1, 10), (2, 20), (3, 33), (4, 40), (5, 50)])
    );
    assert_eq!(calls(&log), [vec![4, 5]]);
    assert_eq!(cache.get(&4), Some(40));
    cache.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_async_batch_hands_its_keys_over() {
    let cache: Cache<u64, u64> = Cache::new(100);
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let batch = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_all_or_load_async(&[1, 2], move |_: Vec<u64>| {
                    let started = started_tx.clone();
                    async move {
                        started.send(()).unwrap();
                        std::future::pending::<Vec<(u64, u64)>>().await // never returns
                    }
                })
                .await
        })
    };
    started_rx.recv().await.unwrap();
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get_or_load_async(&2, async { 22 }).await })
    };
    while cache.loaders_waiting(&2) != Some(1) {
        tokio::task::yield_now().await;
    }
    batch.abort(); // drops the batch's future while its loader runs
    assert!(batch.await.unwrap_err().is_cancelled());
    assert_eq!(waiter.await.unwrap(), 22);
    assert_eq!(cache.loaders_waiting(&1), None, "key 1 was freed");
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(22));
    assert_eq!(cache.stats().loads_in_flight, 0);
    cache.validate().unwrap();
}

// ----- Panics in user code before the batch loader runs -----

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// A key whose `Hash` panics for the value 13 while this thread has armed it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Trap(u64);

impl Hash for Trap {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if self.0 == 13 && ARMED.with(Cell::get) {
            panic!("hash of the trap key");
        }
        self.0.hash(state);
    }
}

#[test]
fn a_panicking_hash_mid_batch_leaves_no_key_in_flight() {
    let cache: Cache<Trap, u64> = Cache::new(100);
    ARMED.with(|a| a.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| {
        cache.get_all_or_load(&[Trap(1), Trap(2), Trap(13)], |_: &[Trap]| {
            Vec::<(Trap, u64)>::new()
        })
    }));
    ARMED.with(|a| a.set(false));
    assert!(r.is_err(), "the hash of Trap(13) panicked");
    for k in [1, 2] {
        assert_eq!(
            cache.loaders_waiting(&Trap(k)),
            None,
            "Trap({k}) left in flight"
        );
    }
    assert_eq!(cache.stats().loads_in_flight, 0);
    // The keys can be loaded (a caller that joined a stranded load would wait forever).
    let v = cache.get_or_load_timeout(&Trap(1), Duration::from_millis(50), || 1);
    assert_eq!(v, Ok(1));
    cache.validate().unwrap();
}
