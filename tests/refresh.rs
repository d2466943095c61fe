//! Loading caches and refresh-ahead: build validation, stale-then-fresh, one refresh per key,
//! stale-if-error, refreshes joined by loaders, writes that supersede a refresh, and the XFetch
//! rule's extremes. Time is a `MockClock`; loaders park on channels the test controls, so "the
//! refresh is running" and "the refresh has ended" are facts, not hopes.
//!
//! Knowing when a background refresh has *ended* (it stores nothing when it fails) uses a
//! marker: with `refresh_threads(1)` refreshes run one after another, so once the refresh of
//! a second key, queued behind the first, has started, the first one is over.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use cachet::{
    AsyncLoadingCache, BuildError, Cache, CacheBuilder, Clock, LoadingCache, MAX_REFRESH_THREADS,
    MockClock,
};

const TTL: Duration = Duration::from_secs(60);
const AFTER: Duration = Duration::from_secs(45);
const NONE: u64 = u64::MAX;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Spins (yielding) until `cond` holds; a generous real-time bound turns a hang into a failure.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < secs(30), "never happened: {what}");
        thread::yield_now();
    }
}

// ----- Build validation -----

fn loader(k: &u64) -> Result<u64, String> {
    Ok(*k)
}

fn builder() -> CacheBuilder<u64, u64> {
    Cache::builder().max_capacity(100)
}

#[test]
fn build_rejects_a_refresh_without_a_loader() {
    let b = builder().time_to_live(TTL).refresh_after(AFTER);
    assert_eq!(b.build().err(), Some(BuildError::RefreshNeedsLoader));
    let b = builder().time_to_live(TTL).refresh_early(1.0);
    assert_eq!(b.build().err(), Some(BuildError::RefreshNeedsLoader));
}

#[test]
fn refresh_after_needs_a_longer_time_to_live() {
    let err = |b: CacheBuilder<u64, u64>| b.build_loading(loader).err();
    assert_eq!(
        err(builder().refresh_after(AFTER)),
        Some(BuildError::RefreshNeedsTtl)
    );
    // A time-to-idle is not a time-to-live.
    assert_eq!(
        err(builder().time_to_idle(TTL).refresh_after(AFTER)),
        Some(BuildError::RefreshNeedsTtl)
    );
    for after in [
        TTL,
        TTL + Duration::from_millis(1),
        Duration::ZERO,
        Duration::from_micros(999), // under a millisecond: zero ticks
    ] {
        assert_eq!(
            err(builder().time_to_live(TTL).refresh_after(after)),
            Some(BuildError::InvalidRefreshAfter {
                refresh_after: after,
                time_to_live: TTL
            }),
            "refresh_after({after:?})"
        );
    }
    // A lifetime over the 12.4-day cap is kept as the cap: the message names the cap.
    let day = Duration::from_secs(24 * 3600);
    let e = err(builder().time_to_live(20 * day).refresh_after(15 * day)).unwrap();
    let msg = e.to_string();
    assert!(msg.contains("capped") && msg.contains("12.4 days"), "{msg}");
    assert!(
        err(builder().time_to_live(20 * day).refresh_after(12 * day)).is_none(),
        "a refresh within the cap is accepted"
    );
    assert!(
        builder()
            .time_to_live(TTL)
            .refresh_after(TTL - Duration::from_millis(1))
            .build_loading(loader)
            .is_ok()
    );
    // The async builder applies the same rules.
    let b = builder().time_to_live(TTL).refresh_after(TTL);
    let r = b.build_async_loading(|_| {}, |k: &u64| std::future::ready(Ok::<_, String>(*k)));
    assert!(matches!(
        r.err(),
        Some(BuildError::InvalidRefreshAfter { .. })
    ));
}

#[test]
fn refresh_threads_must_be_within_bounds() {
    let err = |n| builder().refresh_threads(n).build_loading(loader).err();
    assert_eq!(err(0), Some(BuildError::InvalidRefreshThreads(0)));
    assert_eq!(
        err(MAX_REFRESH_THREADS + 1),
        Some(BuildError::InvalidRefreshThreads(MAX_REFRESH_THREADS + 1))
    );
    assert_eq!(err(1), None);
    assert_eq!(err(MAX_REFRESH_THREADS), None);
}

#[test]
fn refresh_early_needs_a_positive_finite_factor() {
    for beta in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let r = builder()
            .time_to_live(TTL)
            .refresh_early(beta)
            .build_loading(loader);
        assert_eq!(
            r.err(),
            Some(BuildError::InvalidRefreshEarly),
            "beta {beta}"
        );
    }
    // No time-to-live needed: XFetch works from any deadline.
    assert!(builder().refresh_early(1.0).build_loading(loader).is_ok());
}

#[cfg(feature = "tokio")]
#[test]
fn build_tokio_loading_needs_a_runtime() {
    let r = builder().build_tokio_loading(|k: &u64| std::future::ready(Ok::<_, String>(*k)));
    assert_eq!(r.err(), Some(BuildError::NoTokioRuntime));
}

// ----- A blocking loader the test controls -----

/// The loader's state: per-key call counts, and keys whose loads park, fail or panic.
struct Source {
    calls: Mutex<std::collections::HashMap<u64, u64>>,
    called: mpsc::Sender<(u64, u64)>,
    block: AtomicU64,
    release: Mutex<mpsc::Receiver<()>>,
    fail: AtomicU64,
    panic: AtomicU64,
}

struct Harness {
    time: MockClock,
    src: Arc<Source>,
    called: mpsc::Receiver<(u64, u64)>,
    release: mpsc::Sender<()>,
}

impl Harness {
    /// The next loader call, as (key, the key's call number).
    fn called(&self) -> (u64, u64) {
        self.called
            .recv_timeout(secs(30))
            .expect("the loader was not called")
    }

    fn no_call_pending(&self) {
        assert_eq!(
            self.called.try_recv().ok(),
            None,
            "an unexpected loader call"
        );
    }

    fn calls(&self, k: u64) -> u64 {
        self.src.calls.lock().unwrap().get(&k).copied().unwrap_or(0)
    }

    fn release(&self) {
        self.release.send(()).unwrap();
    }

    /// Loads of `key` from now on park in the loader until [`release`](Self::release)
    /// (`NONE`: no key).
    fn block(&self, key: u64) {
        self.src.block.store(key, Ordering::SeqCst);
    }

    /// Loads of `key` from now on fail (`NONE`: no key).
    fn fail(&self, key: u64) {
        self.src.fail.store(key, Ordering::SeqCst);
    }

    /// Loads of `key` from now on panic (`NONE`: no key).
    fn panic(&self, key: u64) {
        self.src.panic.store(key, Ordering::SeqCst);
    }

    /// Loads each of `keys` into `cache` (a miss, and the key's first loader call).
    fn load_first(&self, cache: &Loading, keys: &[u64]) {
        for &k in keys {
            assert_eq!(cache.get(&k), Ok(k * 1000 + 1));
            assert_eq!(self.called(), (k, 1));
        }
    }

    /// Moves the clock to 50 s, past `AFTER` for entries loaded at 0 s: a hit on `key` returns
    /// its first value at once and starts its refresh, the key's second loader call.
    fn start_refresh(&self, cache: &Loading, key: u64) {
        self.time.advance(secs(50));
        assert_eq!(cache.get(&key), Ok(key * 1000 + 1));
        assert_eq!(self.called(), (key, 2));
    }

    /// The marker (see the module docs), for a cache with one refresh thread whose refresh of
    /// another key was started: key 8's refresh, queued behind it, starts and is stored, so the
    /// earlier refresh has ended.
    fn after_the_running_refresh(&self, cache: &Loading) {
        assert_eq!(cache.get(&8), Ok(8001));
        assert_eq!(self.called(), (8, 2), "the earlier refresh has ended");
        eventually("8 refreshed", || cache.cache().peek(&8) == Some(8002));
    }
}

type Loading = LoadingCache<u64, u64, Result<u64, String>>;

/// A loading cache (mock clock, TTL 60 s, refresh after 45 s, further options from
/// `configure`) whose loader returns `key * 1000 + n` on the key's `n`th call.
fn loading(
    configure: impl FnOnce(CacheBuilder<u64, u64>) -> CacheBuilder<u64, u64>,
) -> (Loading, Harness) {
    let time = MockClock::new();
    let (called_tx, called) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let src = Arc::new(Source {
        calls: Mutex::default(),
        called: called_tx,
        block: AtomicU64::new(NONE),
        release: Mutex::new(release_rx),
        fail: AtomicU64::new(NONE),
        panic: AtomicU64::new(NONE),
    });
    let s = Arc::clone(&src);
    let b = builder()
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .clock(Clock::mock(&time));
    let cache = configure(b)
        .build_loading(move |&k: &u64| -> Result<u64, String> {
            let n = {
                let mut calls = s.calls.lock().unwrap();
                let n = calls.entry(k).or_default();
                *n += 1;
                *n
            };
            s.called.send((k, n)).unwrap();
            if s.block.load(Ordering::SeqCst) == k {
                s.release.lock().unwrap().recv().unwrap();
            }
            assert!(
                s.panic.load(Ordering::SeqCst) != k,
                "load {n} of {k} panics"
            );
            if s.fail.load(Ordering::SeqCst) == k {
                return Err(format!("load {n} of {k} failed"));
            }
            Ok(k * 1000 + n)
        })
        .unwrap();
    let h = Harness {
        time,
        src,
        called,
        release,
    };
    (cache, h)
}

#[test]
fn a_due_entry_is_served_stale_then_fresh_by_one_background_refresh() {
    let (cache, h) = loading(|b| b);
    h.load_first(&cache, &[7]); // a miss: loaded now

    h.time.advance(secs(44));
    for _ in 0..100 {
        assert_eq!(cache.get(&7), Ok(7001));
    }
    h.no_call_pending();

    h.block(7);
    h.time.advance(secs(6)); // 50 s: older than 45 s
    assert_eq!(cache.get(&7), Ok(7001), "the old value, at once");
    assert_eq!(h.called(), (7, 2), "one background refresh");
    // The refresh is parked in the loader: readers on four threads get the old value, and
    // start no second refresh.
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..250 {
                    assert_eq!(cache.get(&7), Ok(7001));
                }
            });
        }
    });
    assert_eq!(cache.cache().peek(&7), Some(7001));
    assert_eq!(h.calls(7), 2);

    h.release();
    eventually("the refreshed value is stored", || {
        cache.cache().peek(&7) == Some(7002)
    });
    assert_eq!(cache.get(&7), Ok(7002));
    assert_eq!(h.calls(7), 2);
    h.no_call_pending();

    // The refresh stored the value at 50 s: it lives to 110 s, past the old 60 s deadline.
    h.time.advance(secs(50)); // 100 s
    assert_eq!(cache.cache().peek(&7), Some(7002));
    // It is due again (10 s left): the next hit refreshes it again.
    h.block(NONE);
    assert_eq!(cache.get(&7), Ok(7002));
    assert_eq!(h.called(), (7, 3));
    eventually("the second refresh is stored", || {
        cache.cache().peek(&7) == Some(7003)
    });
    h.time.advance(secs(10)); // 110 s: the deadline of 7002, not of 7003
    assert_eq!(cache.get(&7), Ok(7003));
    assert_eq!(h.calls(7), 3);
}

#[test]
fn a_failed_refresh_serves_the_old_value_until_its_deadline() {
    let (cache, h) = loading(|b| b.refresh_threads(1));
    h.load_first(&cache, &[7, 8]);
    h.fail(7);
    h.start_refresh(&cache, 7);
    h.after_the_running_refresh(&cache);

    // Stale-if-error: the old value, and no further refresh before the deadline.
    for step in [0, 5_000, 4_999] {
        h.time.advance(Duration::from_millis(step)); // up to 59.999 s
        for _ in 0..100 {
            assert_eq!(cache.get(&7), Ok(7001), "the error is not served");
        }
    }
    h.no_call_pending();
    assert_eq!(h.calls(7), 2);

    // From the deadline on, a miss: loaded normally.
    h.fail(NONE);
    h.time.advance(Duration::from_millis(1)); // 60 s
    assert_eq!(cache.get(&7), Ok(7003));
    assert_eq!(h.called(), (7, 3));
    assert_eq!(cache.get(&7), Ok(7003));
    assert_eq!(h.calls(7), 3);
    cache.cache().validate().unwrap();
}

#[test]
fn a_panicking_refresh_serves_the_old_value_until_its_deadline() {
    let (cache, h) = loading(|b| b.refresh_threads(1));
    h.load_first(&cache, &[7, 8]);
    h.panic(7);
    h.start_refresh(&cache, 7);
    // The refresh thread survived the panic and runs 8's refresh.
    h.after_the_running_refresh(&cache);

    h.time.advance(Duration::from_millis(9_999)); // 59.999 s
    for _ in 0..100 {
        assert_eq!(cache.get(&7), Ok(7001));
    }
    h.no_call_pending();

    h.panic(NONE);
    h.time.advance(Duration::from_millis(1)); // 60 s
    assert_eq!(cache.get(&7), Ok(7003));
    assert_eq!(h.calls(7), 3);
    cache.cache().validate().unwrap();
}

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_caller_that_misses_during_a_refresh_joins_it() {
    let (cache, h) = loading(|b| b);
    h.load_first(&cache, &[7]);
    h.block(7);
    h.start_refresh(&cache, 7); // the refresh, parked
    h.time.advance(secs(15)); // 65 s: the entry has expired, its refresh still runs
    assert_eq!(cache.cache().peek(&7), None);

    // Forced interleavings first: a bounded blocking wait on the refresh times out (a caller
    // that loaded instead would call its loader), and an async caller polled once is waiting.
    let r = cache
        .cache()
        .get_or_load_timeout(&7, Duration::from_millis(20), || -> u64 {
            panic!("joins the refresh")
        });
    assert!(r.is_err(), "waited on the refresh");
    let mut joined = pin!(
        cache
            .cache()
            .get_or_load_async(&7, async { panic!("joins the refresh") as u64 })
    );
    assert!(poll_once(joined.as_mut()).is_pending());

    // Callers on other threads: `get_or_load` on the wrapped cache, and the loading cache's
    // own `get`. (A refresh's waiters cannot be counted from outside, so these two may also
    // arrive after it ended; they then hit its value. Either way, nobody loads.)
    let (arrived_tx, arrived) = mpsc::channel();
    let single = {
        let (cache, arrived) = (cache.clone(), arrived_tx.clone());
        thread::spawn(move || {
            arrived.send(()).unwrap();
            cache
                .cache()
                .get_or_load(&7, || -> u64 { panic!("joins the refresh") })
        })
    };
    let getter = {
        let cache = cache.clone();
        thread::spawn(move || {
            arrived_tx.send(()).unwrap();
            cache.get(&7)
        })
    };
    arrived.recv().unwrap();
    arrived.recv().unwrap();
    for _ in 0..1_000 {
        thread::yield_now(); // lets them reach the wait; not needed for correctness
    }
    h.release();
    assert_eq!(single.join().unwrap(), 7002);
    assert_eq!(getter.join().unwrap(), Ok(7002));
    let mut polled = Poll::Pending;
    eventually("the async caller is answered", || {
        polled = poll_once(joined.as_mut());
        polled.is_ready()
    });
    assert_eq!(polled, Poll::Ready(7002));
    assert_eq!(h.calls(7), 2, "only the refresh loaded");
    // The refresh stored its value at 65 s.
    assert_eq!(cache.get(&7), Ok(7002));
    h.time.advance(secs(44));
    assert_eq!(cache.cache().peek(&7), Some(7002));
    cache.cache().validate().unwrap();
}

#[test]
fn a_failed_refresh_gives_its_error_to_the_callers_that_joined_it() {
    let (cache, h) = loading(|b| b);
    h.load_first(&cache, &[7]);
    h.block(7);
    h.fail(7);
    h.start_refresh(&cache, 7);
    h.time.advance(secs(15)); // expired
    // An infallible caller cannot receive the refresh's error: it loads itself once the
    // refresh has failed.
    let single = {
        let cache = cache.clone();
        thread::spawn(move || cache.cache().get_or_load(&7, || 70))
    };
    // A caller with the loader's error type, joined before the refresh fails, gets its error.
    let mut async_get = pin!(
        cache
            .cache()
            .get_or_load_async(&7, async { Err::<u64, String>("joins the refresh".into()) })
    );
    assert!(poll_once(async_get.as_mut()).is_pending());
    h.release();
    let mut polled = Poll::Pending;
    eventually("the async caller is answered", || {
        polled = poll_once(async_get.as_mut());
        polled.is_ready()
    });
    match polled {
        Poll::Ready(Err(e)) => assert_eq!(*e, "load 2 of 7 failed"),
        other => panic!("expected the refresh's error, got {other:?}"),
    }
    assert_eq!(single.join().unwrap(), 70);
    assert_eq!(h.calls(7), 2);
}

#[test]
fn an_insert_during_a_refresh_keeps_the_refreshed_value_out() {
    let (cache, h) = loading(|b| b.refresh_threads(1));
    h.load_first(&cache, &[7, 8]);
    h.block(7);
    h.start_refresh(&cache, 7);

    assert_eq!(cache.cache().insert(7, 555), Some(7001)); // e.g. the application wrote the row
    h.release();
    h.after_the_running_refresh(&cache);
    assert_eq!(
        cache.cache().peek(&7),
        Some(555),
        "the late refresh did not overwrite the insert"
    );
    assert_eq!(cache.get(&7), Ok(555));

    // The inserted value has its own life (from 50 s to 110 s) and is refreshed in its turn.
    h.block(NONE);
    h.time.advance(secs(44)); // 94 s: 16 s left, not due
    assert_eq!(cache.get(&7), Ok(555));
    h.no_call_pending();
    h.time.advance(secs(2)); // 96 s: 14 s left
    assert_eq!(cache.get(&7), Ok(555));
    assert_eq!(h.called(), (7, 3));
    eventually("7 refreshed", || cache.cache().peek(&7) == Some(7003));
    cache.cache().validate().unwrap();
}

#[test]
fn a_remove_during_a_refresh_keeps_the_refreshed_value_out() {
    let (cache, h) = loading(|b| b.refresh_threads(1));
    h.load_first(&cache, &[7, 8]);
    h.block(7);
    h.start_refresh(&cache, 7);

    assert_eq!(cache.cache().remove(&7), Some(7001));
    h.release();
    h.after_the_running_refresh(&cache);
    assert_eq!(cache.cache().peek(&7), None, "the removal was not undone");
    // The next get is a miss, loaded in the caller.
    h.block(NONE);
    assert_eq!(cache.get(&7), Ok(7003));
    assert_eq!(h.called(), (7, 3));
    cache.cache().validate().unwrap();
}

#[test]
fn a_refresh_in_flight_counts_as_a_load_in_flight() {
    let (cache, h) = loading(|b| b.record_stats());
    h.load_first(&cache, &[7]);
    h.block(7);
    h.start_refresh(&cache, 7);
    let during = cache.cache().stats();
    h.release();
    eventually("7 refreshed", || cache.cache().peek(&7) == Some(7002));
    eventually("the refresh is counted", || {
        cache.cache().stats().loads == 2
    });
    assert_eq!(during.loads_in_flight, 1, "the refresh was running");
    assert_eq!(cache.cache().stats().loads_in_flight, 0);
}

#[test]
fn a_loading_cache_miss_counts_one_miss() {
    let (cache, h) = loading(|b| b.record_stats());
    h.load_first(&cache, &[7]);
    assert_eq!(cache.get(&7), Ok(7001));
    let s = cache.cache().stats();
    assert_eq!((s.hits, s.misses, s.loads, s.inserts), (1, 1, 1, 1));
}

#[tokio::test(flavor = "current_thread")]
async fn an_async_loading_cache_miss_counts_one_miss() {
    let (_src, _called, load) = async_source();
    let cache = builder()
        .record_stats()
        .build_async_loading(|_| {}, load)
        .unwrap();
    assert_eq!(cache.get(&7).await, Ok(7001));
    assert_eq!(cache.get(&7).await, Ok(7001));
    let s = cache.cache().stats();
    assert_eq!((s.hits, s.misses, s.loads, s.inserts), (1, 1, 1, 1));
}

#[test]
fn a_panicking_weigher_on_a_refreshed_value_does_not_strand_the_key() {
    let (cache, h) = loading(|b| {
        b.refresh_threads(1).weigher(|_, v: &u64| {
            assert!(*v != 7002, "the weigher refuses 7002");
            1
        })
    });
    h.load_first(&cache, &[7, 8]);
    h.start_refresh(&cache, 7); // its refresh returns 7002: the weigher panics
    h.after_the_running_refresh(&cache);
    assert_eq!(cache.cache().peek(&7), Some(7001));
    // At the deadline the key must load normally (a stranded refresh would be joined forever:
    // the bounded wait shows it as a timeout).
    h.time.advance(secs(10));
    assert_eq!(
        cache
            .cache()
            .get_or_load_timeout(&7, Duration::from_secs(2), || 70),
        Ok(70)
    );
}

// ----- XFetch (`refresh_early`) -----

/// A loading cache with `refresh_early(1.0)` whose loader takes at least 5 ms (it spins: the
/// rule needs a measured load time) and counts its calls.
fn early() -> (Loading, MockClock, Arc<AtomicUsize>) {
    let time = MockClock::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let cache = builder()
        .time_to_live(TTL)
        .refresh_early(1.0)
        .clock(Clock::mock(&time))
        .build_loading(move |&k: &u64| -> Result<u64, String> {
            let n = c.fetch_add(1, Ordering::SeqCst) as u64 + 1;
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(5) {
                std::hint::spin_loop();
            }
            Ok(k * 1000 + n)
        })
        .unwrap();
    (cache, time, calls)
}

#[test]
fn refresh_early_never_refreshes_an_entry_far_from_its_deadline() {
    let (cache, time, calls) = early();
    assert_eq!(cache.get(&7), Ok(7001));
    // With a load of milliseconds, a deadline seconds away is out of the rule's reach
    // (-ln(u) is at most about 37 for a 53-bit u).
    for _ in 0..3 {
        for _ in 0..1_000 {
            assert_eq!(cache.get(&7), Ok(7001));
        }
        time.advance(secs(19)); // 0, 19 and 38 s: 22 s or more left
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn refresh_early_refreshes_an_entry_at_its_deadline() {
    let (cache, time, calls) = early();
    assert_eq!(cache.get(&7), Ok(7001));
    time.advance(TTL - Duration::from_millis(1)); // 1 ms left, loads take 5 ms or more
    // Each hit refreshes with probability exp(-1 / 5) or more, about 0.8.
    for _ in 0..1_000 {
        assert!(matches!(cache.get(&7), Ok(7001 | 7002)));
    }
    eventually("7 refreshed", || cache.cache().peek(&7) == Some(7002));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
}

#[test]
fn refresh_early_never_refreshes_before_a_load_was_measured() {
    let (cache, time, calls) = early();
    cache.cache().insert(7, 1); // inserted, not loaded: no load time known yet
    time.advance(TTL - Duration::from_millis(1));
    for _ in 0..1_000 {
        assert_eq!(cache.get(&7), Ok(1));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ----- AsyncLoadingCache -----

/// The async loader's state: its calls, and a gate its loads wait at while `block` is set.
struct AsyncSource {
    calls: AtomicU64,
    called: tokio::sync::mpsc::UnboundedSender<u64>,
    block: AtomicBool,
    fail: AtomicBool,
    gate: tokio::sync::Semaphore,
}

type AsyncLoad = Box<
    dyn Fn(&u64) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send>>
        + Send
        + Sync,
>;

fn async_source() -> (
    Arc<AsyncSource>,
    tokio::sync::mpsc::UnboundedReceiver<u64>,
    AsyncLoad,
) {
    let (called, rx) = tokio::sync::mpsc::unbounded_channel();
    let src = Arc::new(AsyncSource {
        calls: AtomicU64::new(0),
        called,
        block: AtomicBool::new(false),
        fail: AtomicBool::new(false),
        gate: tokio::sync::Semaphore::new(0),
    });
    let s = Arc::clone(&src);
    let load: AsyncLoad = Box::new(move |k: &u64| {
        let (s, k) = (Arc::clone(&s), *k);
        Box::pin(async move {
            let n = s.calls.fetch_add(1, Ordering::SeqCst) + 1;
            s.called.send(n).unwrap();
            if s.block.load(Ordering::SeqCst) {
                s.gate.acquire().await.unwrap().forget();
            }
            if s.fail.load(Ordering::SeqCst) {
                return Err(format!("load {n} failed"));
            }
            Ok(k * 1000 + n)
        })
    });
    (src, rx, load)
}

async fn next_call(rx: &mut tokio::sync::mpsc::UnboundedReceiver<u64>) -> u64 {
    tokio::time::timeout(secs(30), rx.recv())
        .await
        .expect("the loader was not called")
        .unwrap()
}

async fn eventually_async(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < secs(30), "never happened: {what}");
        tokio::task::yield_now().await;
    }
}

fn async_builder(time: &MockClock) -> CacheBuilder<u64, u64> {
    builder()
        .time_to_live(TTL)
        .refresh_after(AFTER)
        .clock(Clock::mock(time))
}

/// Miss, hits, then a refresh: stale at once, fresh once it is done, exactly one refresh.
async fn stale_then_fresh(
    cache: AsyncLoadingCache<u64, u64, Result<u64, String>>,
    time: MockClock,
    src: Arc<AsyncSource>,
    mut called: tokio::sync::mpsc::UnboundedReceiver<u64>,
) {
    assert_eq!(cache.get(&7).await, Ok(7001));
    assert_eq!(next_call(&mut called).await, 1);
    time.advance(secs(44));
    for _ in 0..10 {
        assert_eq!(cache.get(&7).await, Ok(7001));
    }
    src.block.store(true, Ordering::SeqCst);
    time.advance(secs(6)); // 50 s
    assert_eq!(cache.get(&7).await, Ok(7001), "the old value, at once");
    assert_eq!(next_call(&mut called).await, 2, "one refresh, spawned");
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    assert_eq!(cache.get(&7).await, Ok(7001));
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    assert_eq!(src.calls.load(Ordering::SeqCst), 2, "no second refresh");
    src.gate.add_permits(1);
    eventually_async("the refreshed value is stored", || {
        cache.cache().peek(&7) == Some(7002)
    })
    .await;
    assert_eq!(cache.get(&7).await, Ok(7002));
    time.advance(secs(50)); // 100 s: the refresh (at 50 s) renewed the deadline to 110 s
    assert_eq!(cache.cache().peek(&7), Some(7002));
    assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    assert!(called.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_loading_cache_refreshes_on_the_spawn_function() {
    let time = MockClock::new();
    let (src, called, load) = async_source();
    let spawned = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&spawned);
    let cache = async_builder(&time)
        .build_async_loading(
            move |refresh| {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(refresh);
            },
            load,
        )
        .unwrap();
    stale_then_fresh(cache, time, src, called).await;
    assert_eq!(spawned.load(Ordering::SeqCst), 1);
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_loading_cache_refreshes_on_the_current_runtime() {
    let time = MockClock::new();
    let (src, called, load) = async_source();
    let cache = async_builder(&time).build_tokio_loading(load).unwrap();
    stale_then_fresh(cache, time, src, called).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_misses_are_coalesced_and_failed_refreshes_serve_stale() {
    let time = MockClock::new();
    let (src, mut called, load) = async_source();
    // The spawn function keeps the refreshes' handles, so the test can await their end.
    let refreshes = Arc::new(Mutex::new(Vec::new()));
    let handles = Arc::clone(&refreshes);
    let cache = async_builder(&time)
        .build_async_loading(
            move |refresh| handles.lock().unwrap().push(tokio::spawn(refresh)),
            load,
        )
        .unwrap();
    // Concurrent misses: one load.
    src.block.store(true, Ordering::SeqCst);
    let getters: Vec<_> = (0..8)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get(&7).await })
        })
        .collect();
    assert_eq!(next_call(&mut called).await, 1);
    while cache.cache().loaders_waiting(&7) != Some(7) {
        tokio::task::yield_now().await;
    }
    src.block.store(false, Ordering::SeqCst);
    src.gate.add_permits(1);
    for g in getters {
        assert_eq!(g.await.unwrap(), Ok(7001));
    }
    // A failing refresh: the old value until the deadline, then a normal load.
    src.fail.store(true, Ordering::SeqCst);
    time.advance(secs(50));
    assert_eq!(cache.get(&7).await, Ok(7001));
    assert_eq!(next_call(&mut called).await, 2);
    let refresh = refreshes
        .lock()
        .unwrap()
        .pop()
        .expect("one refresh spawned");
    refresh.await.unwrap(); // it has failed
    assert!(refreshes.lock().unwrap().is_empty());
    time.advance(Duration::from_millis(9_999));
    for _ in 0..100 {
        assert_eq!(cache.get(&7).await, Ok(7001));
    }
    assert_eq!(src.calls.load(Ordering::SeqCst), 2);
    src.fail.store(false, Ordering::SeqCst);
    time.advance(Duration::from_millis(1));
    assert_eq!(cache.get(&7).await, Ok(7003));
    assert_eq!(src.calls.load(Ordering::SeqCst), 3);
    assert!(refreshes.lock().unwrap().is_empty(), "no other refresh");
}

#[tokio::test(flavor = "current_thread")]
async fn a_refresh_the_executor_drops_leaves_the_old_value() {
    let time = MockClock::new();
    let (src, _called, load) = async_source();
    let spawned = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&spawned);
    let cache = async_builder(&time)
        .build_async_loading(
            move |refresh| {
                s.fetch_add(1, Ordering::SeqCst);
                drop(refresh); // e.g. a runtime shutting down
            },
            load,
        )
        .unwrap();
    assert_eq!(cache.get(&7).await, Ok(7001));
    time.advance(secs(50));
    for _ in 0..100 {
        assert_eq!(cache.get(&7).await, Ok(7001));
    }
    assert_eq!(spawned.load(Ordering::SeqCst), 1, "one refresh handed over");
    assert_eq!(src.calls.load(Ordering::SeqCst), 1, "and never run");
    time.advance(secs(10)); // 60 s: the deadline
    assert_eq!(cache.get(&7).await, Ok(7002));
    assert_eq!(cache.cache().loaders_waiting(&7), None);
    cache.cache().validate().unwrap();
}

#[test]
fn async_loading_cache_futures_are_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let (_src, _called, load) = async_source();
    let cache = builder().build_async_loading(|_| {}, load).unwrap();
    drop(assert_send(cache.get(&1)));
}
