#![cfg(cachet_loom)]
//! Loom models of the in-flight load protocol (`src/loader.rs`): a leader completes, fails,
//! panics or is cancelled while waiters join and leave.
//!
//! Run with
//!
//! ```text
//! RUSTFLAGS="--cfg cachet_loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom
//! ```
//!
//! Under `cfg(cachet_loom)` the shard lock and a flight's mutex and condition variable are loom's
//! (`src/sync.rs`), so loom explores every interleaving of their operations, and reports a
//! waiter that would park forever as a deadlock. Nothing else in the cache is modelled.
//!
//! The preemption bound is set here, in code: [`PREEMPTIONS`], applied by [`model`]. The
//! `LOOM_MAX_PREEMPTIONS` environment variable, if set, overrides it (for a deeper run by
//! hand); CI does not set it. At 3 the twelve models run about 2,400 executions in well under a
//! second; every model also passes at 10 (about five minutes on two cores, nearly all of it in
//! the three-thread models).
//!
//! Only this test target is meant to be built with `--cfg cachet_loom`: elsewhere (the other tests,
//! the unit tests) the cache's locks would be used outside a loom model, which loom refuses.
//!
//! Each model uses a tiny cache (`Cache::new(16)`: one shard, no expiration, so no clock is
//! read and no ticker thread starts) and the main loom thread plus one or two spawned ones.
//! Loads never time out here: a timed wait cannot be modelled (see `src/sync.rs`).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use cachet::Cache;
use loom::future::block_on;
use loom::thread;

/// Preemptions loom explores per execution, unless `LOOM_MAX_PREEMPTIONS` says otherwise.
const PREEMPTIONS: usize = 3;

/// Runs `f` under loom with the bound above.
fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTIONS);
    }
    builder.check(f);
}

fn cache() -> Cache<u32, u32> {
    Cache::new(16)
}

/// Runs `f` on a new loom thread with a clone of `cache`.
fn on_thread<T: Send + 'static>(
    cache: &Cache<u32, u32>,
    f: impl FnOnce(Cache<u32, u32>) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let cache = cache.clone();
    thread::spawn(move || f(cache))
}

/// Ends a model: key 1 holds `stored`, no load is left in flight, and the shard is consistent.
fn settled(cache: &Cache<u32, u32>, stored: Option<u32>) {
    assert_eq!(cache.peek(&1), stored, "what key 1 holds at the end");
    assert_eq!(
        cache.stats().loads_in_flight,
        0,
        "a pending slot was left behind"
    );
    cache.validate().unwrap();
}

/// Counts the loader calls of one model (the count is read only after every thread joined).
#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

impl Calls {
    fn count(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// A loader that counts its call and returns `value`.
    fn load<T>(&self, value: T) -> impl FnOnce() -> T + Send + 'static
    where
        T: Send + 'static,
    {
        let calls = self.clone();
        move || {
            calls.count();
            value
        }
    }

    /// [`load`](Self::load) as a future.
    fn load_async<T>(&self, value: T) -> impl Future<Output = T> + Send + 'static
    where
        T: Send + 'static,
    {
        let load = self.load(value);
        async move { load() }
    }
}

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// An async load of key 1, polled once so that it leads with its loader pending; the model then
/// completes it or drops it.
fn leading<'a>(
    cache: &'a Cache<u32, u32>,
    load: impl Future<Output = u32> + 'a,
) -> Pin<Box<impl Future<Output = u32> + 'a>> {
    let mut leader = Box::pin(cache.get_or_load_async(&1, load));
    assert!(
        poll_once(leader.as_mut()).is_pending(),
        "it leads, its load in progress"
    );
    leader
}

/// Pending on its first poll, ready on the next: a load that is in progress until polled again.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// (a) Two callers miss the same key: one leads, the other joins (or hits, if the load is
/// already stored). Both get the leader's value, the loader runs once, the value is stored.
#[test]
fn leader_completes_while_a_waiter_joins() {
    model(|| {
        let (cache, calls) = (cache(), Calls::default());
        let load = calls.load(20);
        let other = on_thread(&cache, move |c| c.get_or_load(&1, load));
        let mine = cache.get_or_load(&1, calls.load(10));
        let theirs = other.join().unwrap();
        assert_eq!(mine, theirs, "both callers get the one loaded value");
        assert_eq!(calls.get(), 1, "one load for both callers");
        settled(&cache, Some(mine));
    });
}

/// (a') An async caller waits on a blocking leader's load, parked on its waker (loom's
/// `block_on` sleeps until woken): the leader's completion wakes it, or it hits the stored
/// value; it never sleeps forever.
#[test]
fn async_waiter_is_woken_when_the_leader_completes() {
    model(|| {
        let (cache, calls) = (cache(), Calls::default());
        let load = calls.load_async(20);
        let other = on_thread(&cache, move |c| block_on(c.get_or_load_async(&1, load)));
        let mine = cache.get_or_load(&1, calls.load(10));
        let theirs = other.join().unwrap();
        assert_eq!(mine, theirs, "both callers get the one loaded value");
        assert_eq!(calls.get(), 1, "one load for both callers");
        settled(&cache, Some(mine));
    });
}

/// (a'') One leader, two waiters (three threads): all three get the one loaded value.
#[test]
fn leader_completes_while_two_waiters_join() {
    model(|| {
        let (cache, calls) = (cache(), Calls::default());
        let [b, c] = [20, 30].map(|v| {
            let load = calls.load(v);
            on_thread(&cache, move |c| c.get_or_load(&1, load))
        });
        let a = cache.get_or_load(&1, calls.load(10));
        let (b, c) = (b.join().unwrap(), c.join().unwrap());
        assert!(a == b && b == c, "{a} {b} {c}");
        assert_eq!(calls.get(), 1);
        settled(&cache, Some(a));
    });
}

/// (b) The leader's load fails. A caller that joined gets the same error (the same `Arc`); a
/// caller that arrived after the failure leads a fresh load, which fails with its own error.
/// Nothing is stored.
#[test]
fn leader_fails_while_a_waiter_joins() {
    model(|| {
        let (cache, calls) = (cache(), Calls::default());
        let load = calls.load(Err::<u32, _>("theirs"));
        let other = on_thread(&cache, move |c| c.get_or_load(&1, load));
        let mine = cache
            .get_or_load(&1, calls.load(Err::<u32, _>("mine")))
            .unwrap_err();
        let theirs = other.join().unwrap().unwrap_err();
        match calls.get() {
            1 => assert!(
                Arc::ptr_eq(&mine, &theirs),
                "a waiter shares the leader's error"
            ),
            2 => {
                // One after the other: each led its own load.
                assert_eq!((*mine, *theirs), ("mine", "theirs"));
            }
            n => panic!("{n} loads for two callers"),
        }
        settled(&cache, None); // a failed load stores nothing
    });
}

/// (b') The leader fails with an error type the waiter cannot receive: the waiter is released
/// (not stuck, not handed a wrong type) and loads again itself.
#[test]
fn leader_fails_with_another_error_type() {
    model(|| {
        let (cache, calls) = (cache(), Calls::default());
        let load = calls.load(Ok::<u32, u8>(20));
        let other = on_thread(&cache, move |c| c.get_or_load(&1, load));
        let mine = cache.get_or_load(&1, calls.load(Err::<u32, _>("mine")));
        let theirs = other.join().unwrap();
        assert_eq!(
            theirs,
            Ok(20),
            "the other caller always ends with its own value"
        );
        match mine {
            // It joined (or hit) the other caller's successful load.
            Ok(v) => assert_eq!((v, calls.get()), (20, 1)),
            Err(e) => assert_eq!((*e, calls.get()), ("mine", 2)),
        }
        settled(&cache, Some(20));
    });
}

/// (c) The leader's loader panics. The panic unwinds the leader only; the other caller never
/// hangs: it joined and was released to load again, or led from the start, or came after the
/// panic and led. Either way it ends with the value it loaded itself, and that value is stored.
#[test]
fn leader_panics_while_a_waiter_joins() {
    model(|| {
        let (cache, calls) = (cache(), Calls::default());
        let load = calls.load(20);
        let other = on_thread(&cache, move |c| c.get_or_load(&1, load));
        let mine = catch_unwind(AssertUnwindSafe(|| {
            cache.get_or_load(&1, || -> u32 {
                calls.count();
                // `resume_unwind`, not `panic!`: no panic hook, so no noise per execution.
                resume_unwind(Box::new("loader panicked"))
            })
        }));
        let theirs = other.join().unwrap();
        assert_eq!(theirs, 20, "the survivor has its own value");
        match mine {
            Ok(v) => {
                assert_eq!(
                    v, 20,
                    "a caller that did not panic got the survivor's value"
                );
                assert_eq!(calls.get(), 1);
            }
            Err(_) => assert_eq!(calls.get(), 2),
        }
        settled(&cache, Some(20));
    });
}

/// (c') The leader panics while two others wait (three threads): the survivors agree on one
/// value, loaded once: exactly one of them takes the load over and the other joins it (or
/// hits it).
#[test]
fn leader_panics_while_two_waiters_join() {
    model(|| {
        let (cache, loads) = (cache(), Calls::default());
        let [b, c] = [20, 30].map(|v| {
            let load = loads.load(v);
            on_thread(&cache, move |c| c.get_or_load(&1, load))
        });
        let a = catch_unwind(AssertUnwindSafe(|| {
            cache.get_or_load(&1, || -> u32 { resume_unwind(Box::new("loader panicked")) })
        }));
        let (b, c) = (b.join().unwrap(), c.join().unwrap());
        assert_eq!(b, c, "the survivors share one load");
        assert_eq!(loads.get(), 1, "one successful load");
        if let Ok(a) = a {
            assert_eq!(a, b);
        }
        settled(&cache, Some(b));
    });
}

/// (d) An async leader is cancelled: its future is polled once (so it holds the load, its
/// loader pending) before the other thread starts, then dropped while that thread misses,
/// joins or waits. The blocking caller never hangs and ends with the value it loaded itself.
#[test]
fn async_leader_cancelled_while_a_waiter_waits() {
    model(|| {
        let (cache, calls) = (cache(), Calls::default());
        let counted = calls.clone();
        let leader = leading(&cache, async move {
            counted.count();
            std::future::pending::<u32>().await
        });
        assert_eq!(cache.loaders_waiting(&1), Some(0));
        let load = calls.load(20);
        let other = on_thread(&cache, move |c| c.get_or_load(&1, load));
        drop(leader);
        assert_eq!(other.join().unwrap(), 20);
        assert_eq!(calls.get(), 2, "the cancelled load, then the waiter's own");
        settled(&cache, Some(20));
    });
}

/// (d') As (d), with an async waiter parked on its waker: the cancelled leader's drop wakes it
/// and it takes the load over.
#[test]
fn async_leader_cancelled_while_an_async_waiter_sleeps() {
    model(|| {
        let cache = cache();
        let leader = leading(&cache, std::future::pending::<u32>());
        let other = on_thread(&cache, |c| block_on(c.get_or_load_async(&1, async { 20 })));
        drop(leader);
        assert_eq!(other.join().unwrap(), 20);
        settled(&cache, Some(20));
    });
}

/// (e) A waiter leaves: an async caller joins a load in flight (polled once, its waker
/// registered) and is dropped while the leader completes. The leader does not hang on the
/// departed waiter and its value is stored.
#[test]
fn async_waiter_leaves_while_the_leader_completes() {
    model(|| {
        let (cache, calls) = (cache(), Calls::default());
        let counted = calls.clone();
        let mut leader = leading(&cache, async move {
            counted.count();
            YieldOnce(false).await;
            10
        });
        let load = calls.load_async(20);
        let waiter = on_thread(&cache, move |c| {
            let mut waiter = Box::pin(c.get_or_load_async(&1, load));
            // Joined (pending), or the load was already stored (a hit).
            let polled = poll_once(waiter.as_mut());
            drop(waiter);
            polled
        });
        assert_eq!(poll_once(leader.as_mut()), Poll::Ready(10));
        let polled = waiter.join().unwrap();
        assert!(
            matches!(polled, Poll::Pending | Poll::Ready(10)),
            "{polled:?}"
        );
        assert_eq!(calls.get(), 1, "the waiter never loads");
        settled(&cache, Some(10));
    });
}

/// (e') A waiter leaves while another stays (three threads): the one that stays, parked on its
/// waker, is still woken with the leader's value.
#[test]
fn async_waiter_leaves_while_another_sleeps() {
    model(|| {
        let cache = cache();
        let mut leader = leading(&cache, async {
            YieldOnce(false).await;
            10
        });
        let leaving = on_thread(&cache, |c| {
            let mut waiter = Box::pin(c.get_or_load_async(&1, async { 20 }));
            poll_once(waiter.as_mut())
        });
        let staying = on_thread(&cache, |c| block_on(c.get_or_load_async(&1, async { 30 })));
        assert_eq!(poll_once(leader.as_mut()), Poll::Ready(10));
        let left = leaving.join().unwrap();
        assert!(matches!(left, Poll::Pending | Poll::Ready(10)), "{left:?}");
        assert_eq!(staying.join().unwrap(), 10);
        settled(&cache, Some(10));
    });
}

/// (f) An `insert` of the key races a load. Whenever it lands (before the miss, during the
/// load, after it is stored), the inserted value is what stays: a leader that finishes after
/// the insert returns its value to its caller but does not overwrite the insert.
#[test]
fn insert_during_a_load_is_not_overwritten() {
    model(|| {
        let cache = cache();
        let writer = on_thread(&cache, |c| {
            c.insert(1, 20);
        });
        let loaded = cache.get_or_load(&1, || 10);
        writer.join().unwrap();
        assert!(loaded == 10 || loaded == 20, "{loaded}");
        settled(&cache, Some(20)); // the insert stays
    });
}
