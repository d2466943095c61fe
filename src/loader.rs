// In-flight loads: how a hundred concurrent misses on one key become one call to the loader.
//
// The protocol (all of it under the key's shard lock, so "miss, then lead or join" is one
// critical section):
//
// 1. A caller that misses takes the shard's write lock and probes the index once. A live entry:
//    it is a hit after all. A *pending slot* (a load in flight for the key, kept in the same
//    index as the entries, see `shard.rs`): it joins that load and waits on its `Flight`. Nothing:
//    it inserts a pending slot with a fresh `Flight` and a new generation, and leads.
// 2. The leader runs the loader with no lock held. Then, under the write lock, it replaces its
//    pending slot by the loaded entry, but only if the slot is still there with its generation:
//    an `insert`, `remove`, `invalidate_all` or `retain` in the meantime dropped the slot, and a
//    late leader must not overwrite what they did (a `remove` after a database update must not be
//    undone by a load that read the old row). Either way it then publishes the outcome to its
//    waiters, after the lock is released.
// 3. A waiter wakes with the value, with the shared error (if its error type is the leader's),
//    or with "abandoned": the leader panicked, its future was dropped, or its error has a type
//    this waiter cannot receive. It then starts again at step 1, so exactly one of the waiters
//    becomes the new leader and the others join it. A waiter is either a parked thread (a
//    condition variable) or a task (a waker); both wait on the same `Flight`, so blocking and
//    async callers coalesce with each other.
//
// A leader is represented by a `Lead` guard: whatever way it leaves (success, error, panic,
// a dropped future), its `Drop` settles the flight, so no waiter can hang.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::shard::Begin;
use crate::sync::{Condvar, Mutex};

/// A loader's error, type-erased so that callers with different error types can share a
/// flight; each waiter downcasts it to its own type.
pub(crate) type SharedError = Arc<dyn Any + Send + Sync>;

/// One load in flight.
pub(crate) struct Flight<V> {
    pub(crate) generation: u64,
    state: Mutex<State<V>>,
    parked: Condvar,
    /// Callers that have joined this load (for tests: lets them force interleavings without
    /// sleeping).
    waiting: std::sync::atomic::AtomicUsize,
}

enum State<V> {
    Running {
        wakers: Vec<Waker>,
    },
    Done(V),
    Failed(SharedError),
    /// A batch loader did not return this key.
    Missing,
    Abandoned,
}

thread_local! {
    /// The flights whose loaders run on this thread's stack, innermost last (by address). A
    /// blocking loader runs inside its leader's call, and an async leader's loader future is
    /// polled inside the leader's own poll: a load that joins one of these flights from there
    /// would wait for the very frame that has to finish it.
    static LEADING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The panic message of a recursive load.
const RECURSIVE_LOAD: &str = "cachet: recursive load: a loader asked its own cache for the key it \
     is loading (through a loader method, compute or a loading cache's get), which would wait for \
     its own result forever";

/// Marks flights as led by the code that runs while it lives (on this thread).
pub(crate) struct Leading {
    marked: usize,
}

impl Leading {
    pub(crate) fn enter<'a, V: 'a>(flights: impl IntoIterator<Item = &'a Flight<V>>) -> Self {
        LEADING.with(|l| {
            let mut l = l.borrow_mut();
            let before = l.len();
            l.extend(flights.into_iter().map(Flight::id));
            Leading {
                marked: l.len() - before,
            }
        })
    }

    /// Runs `fut`, polling it with `flights` marked as led.
    pub(crate) async fn run<F: Future>(ids: Vec<usize>, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            let _leading = LEADING.with(|l| {
                let mut l = l.borrow_mut();
                l.extend_from_slice(&ids);
                Leading { marked: ids.len() }
            });
            fut.as_mut().poll(cx)
        })
        .await
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        LEADING.with(|l| {
            let mut l = l.borrow_mut();
            let keep = l.len() - self.marked;
            l.truncate(keep);
        });
    }
}

/// Panics if `flight` is led by a loader running on this thread's stack: joining it would
/// wait forever.
pub(crate) fn check_not_leading<V>(flight: &Flight<V>) {
    let id = flight.id();
    if LEADING.with(|l| l.borrow().contains(&id)) {
        panic!("{RECURSIVE_LOAD}");
    }
}

/// How a flight ended, as seen by a waiter.
pub(crate) enum Outcome<V> {
    Loaded(V),
    Failed(SharedError),
    /// A batch loader did not return the key: "not found" to a batch, start again to a
    /// single-key caller (whose loader must produce a value).
    Missing,
    /// Start again: lead a new load or join one.
    Abandoned,
}

/// What a waiter does with a flight's outcome.
enum Next<V, E> {
    Done(Result<V, Arc<E>>),
    /// The key is not in the batch loader's answer.
    Missing,
    /// Start again (lead or join a new load).
    Retry,
    /// The load failed with an error of another type than this caller's: drop that failed
    /// load's slot (it may be kept as a negative entry), then start again.
    RetryAfterForeignError,
}

impl<V> Outcome<V> {
    fn next<E>(self) -> Next<V, E>
    where
        E: Send + Sync + 'static,
    {
        match self {
            Outcome::Loaded(v) => Next::Done(Ok(v)),
            Outcome::Failed(e) => match e.downcast::<E>() {
                Ok(e) => Next::Done(Err(e)),
                Err(_) => Next::RetryAfterForeignError,
            },
            Outcome::Missing => Next::Missing,
            Outcome::Abandoned => Next::Retry,
        }
    }
}

impl<V> Flight<V> {
    pub(crate) fn new(generation: u64) -> Self {
        Flight {
            generation,
            state: Mutex::new(State::Running { wakers: Vec::new() }),
            parked: Condvar::new(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Publishes the outcome and wakes every waiter. Only the first call has an effect.
    fn settle(&self, outcome: State<V>) {
        let wakers = {
            let mut state = self.state.lock();
            match &mut *state {
                State::Running { wakers } => {
                    let wakers = std::mem::take(wakers);
                    *state = outcome;
                    wakers
                }
                _ => return,
            }
        };
        self.parked.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn complete(&self, value: V) {
        self.settle(State::Done(value));
    }

    pub(crate) fn fail(&self, error: SharedError) {
        self.settle(State::Failed(error));
    }

    pub(crate) fn abandon(&self) {
        self.settle(State::Abandoned);
    }

    /// This flight's identity while it lives (its address).
    pub(crate) fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Whether the flight has ended (however it ended).
    pub(crate) fn is_settled(&self) -> bool {
        !matches!(*self.state.lock(), State::Running { .. })
    }

    fn missing(&self) {
        self.settle(State::Missing);
    }
}

impl<V: Clone> Flight<V> {
    fn outcome(state: &State<V>) -> Option<Outcome<V>> {
        match state {
            State::Running { .. } => None,
            State::Done(v) => Some(Outcome::Loaded(v.clone())),
            State::Failed(e) => Some(Outcome::Failed(Arc::clone(e))),
            State::Missing => Some(Outcome::Missing),
            State::Abandoned => Some(Outcome::Abandoned),
        }
    }

    /// Parks the calling thread until the flight ends, or until `deadline` (then `None`).
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<Outcome<V>> {
        let mut state = self.state.lock();
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        loop {
            if let Some(outcome) = Self::outcome(&state) {
                return Some(outcome);
            }
            match deadline {
                None => self.parked.wait(&mut state),
                Some(d) => {
                    if self.parked.wait_until(&mut state, d).timed_out() {
                        return Self::outcome(&state);
                    }
                }
            }
        }
    }

    /// Polls for the end of the flight, registering the task's waker while it runs.
    pub(crate) fn poll(
        &self,
        cx: &mut Context<'_>,
        registered: &mut Option<usize>,
    ) -> Poll<Outcome<V>> {
        let mut state = self.state.lock();
        match &mut *state {
            State::Running { wakers } => {
                match registered {
                    Some(i) if wakers[*i].will_wake(cx.waker()) => {}
                    Some(i) => wakers[*i] = cx.waker().clone(),
                    None => {
                        *registered = Some(wakers.len());
                        wakers.push(cx.waker().clone());
                        self.waiting
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Poll::Pending
            }
            other => Poll::Ready(Self::outcome(other).expect("not running")),
        }
    }
}

/// A waiter's bounded wait ended before the load did; the load carries on for the others.
/// Returned by [`Cache::get_or_load_timeout`].
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use cachet::Cache;
///
/// let cache: Cache<u64, String> = Cache::new(100);
/// let (started, wait_for_start) = mpsc::channel();
/// let (release, wait_for_release) = mpsc::channel::<()>();
/// let slow = {
///     let cache = cache.clone();
///     std::thread::spawn(move || {
///         cache.get_or_load(&1, || {
///             started.send(()).unwrap();
///             wait_for_release.recv().unwrap(); // a slow query
///             "loaded".to_string()
///         })
///     })
/// };
/// wait_for_start.recv().unwrap();
/// let waited = cache.get_or_load_timeout(&1, Duration::from_millis(10), || unreachable!());
/// let timeout = waited.unwrap_err();
/// assert_eq!(timeout.waited(), Duration::from_millis(10));
/// assert!(timeout.to_string().contains("gave up"));
/// release.send(()).unwrap();
/// assert_eq!(slow.join().unwrap(), "loaded"); // the load carried on
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    waited: Duration,
}

impl Timeout {
    /// How long the caller waited.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up after {:?} waiting for another caller's load of this key",
            self.waited
        )
    }
}

impl std::error::Error for Timeout {}

/// Why a blocking load ended without a value.
enum Failure<E> {
    Failed(Arc<E>),
    Timeout,
}

/// The leader of a load. However it leaves (value, error, panic, dropped future), the flight is
/// settled and the pending slot removed, so no waiter hangs.
struct Lead<'a, K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    cache: &'a Cache<K, V, S>,
    shard: usize,
    hash: u32,
    key: &'a K,
    flight: Arc<Flight<V>>,
    settled: bool,
    /// When the load started, if the cache records statistics.
    started: Option<Instant>,
}

impl<'a, K, V, S> Lead<'a, K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    fn new(
        cache: &'a Cache<K, V, S>,
        shard: usize,
        hash: u32,
        key: &'a K,
        flight: Arc<Flight<V>>,
    ) -> Self {
        let started = cache.shard_stats(shard).map(|_| Instant::now());
        Lead {
            cache,
            shard,
            hash,
            key,
            flight,
            settled: false,
            started,
        }
    }

    fn finish<E>(self, result: Result<V, E>) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        self.finish_shared(result.map_err(Arc::new))
    }

    /// Stores the value (unless superseded) or settles the failure, then wakes the waiters.
    fn finish_shared<E>(mut self, result: Result<V, Arc<E>>) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let g = self.flight.generation;
        // Until the slot is settled, a panic (the weigher, a `Clone`) leaves through `Drop`,
        // which frees the key and hands the load to a waiter.
        match result {
            Ok(v) => {
                self.cache
                    .end_load(self.shard, self.hash, self.key, g, Some(v.clone()));
                let for_waiters = v.clone();
                self.settled = true;
                self.count(true);
                self.flight.complete(for_waiters);
                Ok(v)
            }
            Err(e) => {
                self.cache.fail_load(self.shard, self.hash, g);
                self.settled = true;
                self.count(false);
                self.flight.fail(Arc::clone(&e) as SharedError);
                Err(e)
            }
        }
    }

    /// A batch loader did not return this key: nothing is stored; waiters are told.
    fn finish_missing(mut self) {
        let g = self.flight.generation;
        self.cache.abandon_load(self.shard, self.hash, g);
        self.settled = true;
        self.count(true);
        self.flight.missing();
    }
}

impl<K, V, S> Lead<'_, K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    /// Counts the finished load, if the cache records statistics.
    fn count(&self, ok: bool) {
        if let (Some(stats), Some(t)) = (self.cache.shard_stats(self.shard), self.started) {
            let took = t.elapsed();
            stats.loaded(ok, took);
            #[cfg(feature = "metrics")]
            crate::metrics_export::record_load(self.cache, took, ok);
        }
    }
}

impl<K, V, S> Drop for Lead<'_, K, V, S>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    fn drop(&mut self) {
        if !self.settled {
            self.count(false);
            // The loader (or the completion: the weigher, the key's `Eq` or a `Clone`)
            // panicked, or the future was dropped: free the key for a new leader. The slot is
            // found by its generation, so this runs no user code and cannot panic.
            self.cache
                .abandon_load(self.shard, self.hash, self.flight.generation);
            self.flight.abandon();
        }
    }
}

/// Waits on a flight from an async task.
struct Wait<'a, V> {
    flight: &'a Flight<V>,
    registered: Option<usize>,
}

impl<V: Clone> Future for Wait<'_, V> {
    type Output = Outcome<V>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<V>> {
        let this = &mut *self;
        this.flight.poll(cx, &mut this.registered)
    }
}

/// Loaders: one load per key at a time, whoever asks.
impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Returns the value for `key`, loading it with `load` on a miss. Concurrent callers that
    /// miss the same key, blocking or async, wait for one load: exactly one `load` runs per key
    /// at a time, and every waiter receives its value (a clone).
    ///
    /// If the leading caller's `load` panics, the panic unwinds that caller only; one of the
    /// waiters then loads again with its own `load`. The loaded value is stored unless an
    /// [`insert`](Self::insert) or [`remove`](Self::remove) of the key, a
    /// [`retain`](Self::retain) or an [`invalidate_all`](Self::invalidate_all) happened during
    /// the load (the waiters still receive it). `load` runs with no lock held and may use the
    /// cache, but not ask for the key it is loading (that panics: it would wait for itself).
    ///
    /// ```
    /// use cachet::Cache;
    ///
    /// let cache: Cache<u64, String> = Cache::new(1_000);
    /// let name = cache.get_or_load(&42, || "Ada".to_string()); // e.g. a database query
    /// assert_eq!(name, "Ada");
    /// assert_eq!(cache.get(&42).as_deref(), Some("Ada"));
    /// ```
    pub fn get_or_load<F>(&self, key: &K, load: F) -> V
    where
        F: FnOnce() -> V,
    {
        match self.load_blocking(key, None, true, || Ok::<V, Infallible>(load())) {
            Ok(v) => v,
            Err(Failure::Failed(e)) => match *e {},
            Err(Failure::Timeout) => unreachable!("no deadline was given"),
        }
    }

    /// Like [`get_or_load`](Self::get_or_load), for a fallible `load`. When it fails, the
    /// leading caller and every caller waiting on that load get the same error, shared as an
    /// `Arc<E>`; nothing is stored, and the next caller starts a fresh load. (A waiter whose
    /// error type differs from the leader's cannot receive its error: it loads again itself.)
    pub fn get_or_try_load<F, E>(&self, key: &K, load: F) -> Result<V, Arc<E>>
    where
        F: FnOnce() -> Result<V, E>,
        E: Send + Sync + 'static,
    {
        match self.load_blocking(key, None, true, load) {
            Ok(v) => Ok(v),
            Err(Failure::Failed(e)) => Err(e),
            Err(Failure::Timeout) => unreachable!("no deadline was given"),
        }
    }

    /// [`get_or_try_load`](Self::get_or_try_load) for a caller that has just looked `key` up
    /// and missed (and counted that miss): goes straight to leading or joining a load.
    pub(crate) fn try_load_missed<F, E>(&self, key: &K, load: F) -> Result<V, Arc<E>>
    where
        F: FnOnce() -> Result<V, E>,
        E: Send + Sync + 'static,
    {
        match self.load_blocking(key, None, false, load) {
            Ok(v) => Ok(v),
            Err(Failure::Failed(e)) => Err(e),
            Err(Failure::Timeout) => unreachable!("no deadline was given"),
        }
    }

    /// Like [`get_or_load`](Self::get_or_load), but waits at most `timeout` for another
    /// caller's load of the key; the load carries on for the others. The bound is on waiting:
    /// a caller that becomes the leader runs `load` to the end.
    pub fn get_or_load_timeout<F>(&self, key: &K, timeout: Duration, load: F) -> Result<V, Timeout>
    where
        F: FnOnce() -> V,
    {
        let deadline = Instant::now().checked_add(timeout);
        match self.load_blocking(key, deadline, true, || Ok::<V, Infallible>(load())) {
            Ok(v) => Ok(v),
            Err(Failure::Failed(e)) => match *e {},
            Err(Failure::Timeout) => Err(Timeout { waited: timeout }),
        }
    }

    fn load_blocking<F, E>(
        &self,
        key: &K,
        deadline: Option<Instant>,
        probe: bool,
        load: F,
    ) -> Result<V, Failure<E>>
    where
        F: FnOnce() -> Result<V, E>,
        E: Send + Sync + 'static,
    {
        // Hashed once, whatever the number of attempts.
        let (i, h) = self.hash(key);
        let mut load = Some(load);
        // Looked up once (one hit or one miss counted); a retry probes under the write lock.
        if probe {
            if let Some(v) = self.get_at(i, h, key) {
                return Ok(v);
            }
        }
        let mut first = true;
        loop {
            match self.begin_load(i, h, key, std::mem::take(&mut first)) {
                Begin::Hit(v) => return Ok(v),
                Begin::Join(flight) | Begin::Remembered(flight) => {
                    check_not_leading(&flight);
                    let Some(outcome) = flight.wait(deadline) else {
                        return Err(Failure::Timeout);
                    };
                    match outcome.next() {
                        Next::Done(result) => return result.map_err(Failure::Failed),
                        Next::Missing | Next::Retry => {}
                        Next::RetryAfterForeignError => self.abandon_load(i, h, flight.generation),
                    }
                }
                Begin::Lead(flight) => {
                    let load = load.take().expect("a caller leads at most once");
                    let lead = Lead::new(self, i, h, key, flight);
                    let loaded = {
                        let _leading = Leading::enter([&*lead.flight]);
                        load()
                    };
                    return lead.finish(loaded).map_err(Failure::Failed);
                }
            }
        }
    }

    /// Async [`get_or_load`](Self::get_or_load): `load` is a future, awaited only if this
    /// caller leads the load. Waiting needs no particular runtime. If the leading task's future
    /// is dropped mid-load, one of the waiters takes the load over; a waiting future may be
    /// dropped at any point. To bound the wait, wrap the call in your runtime's timeout.
    pub async fn get_or_load_async<F>(&self, key: &K, load: F) -> V
    where
        F: Future<Output = V>,
    {
        let load = async move { Ok::<V, Infallible>(load.await) };
        match self.get_or_try_load_async(key, load).await {
            Ok(v) => v,
            Err(e) => match *e {},
        }
    }

    /// Async [`get_or_try_load`](Self::get_or_try_load).
    pub async fn get_or_try_load_async<F, E>(&self, key: &K, load: F) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        self.load_async(key, true, load).await
    }

    /// [`try_load_missed`](Self::try_load_missed), async.
    pub(crate) async fn try_load_missed_async<F, E>(&self, key: &K, load: F) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        self.load_async(key, false, load).await
    }

    async fn load_async<F, E>(&self, key: &K, probe: bool, load: F) -> Result<V, Arc<E>>
    where
        F: Future<Output = Result<V, E>>,
        E: Send + Sync + 'static,
    {
        // Hashed once, whatever the number of attempts.
        let (i, h) = self.hash(key);
        let mut load = Some(load);
        // Looked up once (one hit or one miss counted); a retry probes under the write lock.
        if probe {
            if let Some(v) = self.get_at(i, h, key) {
                return Ok(v);
            }
        }
        let mut first = true;
        loop {
            match self.begin_load(i, h, key, std::mem::take(&mut first)) {
                Begin::Hit(v) => return Ok(v),
                Begin::Join(flight) | Begin::Remembered(flight) => {
                    check_not_leading(&flight);
                    let wait = Wait {
                        flight: &flight,
                        registered: None,
                    };
                    match wait.await.next() {
                        Next::Done(result) => return result,
                        Next::Missing | Next::Retry => {}
                        Next::RetryAfterForeignError => self.abandon_load(i, h, flight.generation),
                    }
                }
                Begin::Lead(flight) => {
                    let load = load.take().expect("a caller leads at most once");
                    let lead = Lead::new(self, i, h, key, flight);
                    let loaded = Leading::run(vec![lead.flight.id()], load).await;
                    return lead.finish(loaded);
                }
            }
        }
    }
}

/// One round of a batch: the keys this caller leads (to pass to its batch loader) and the
/// loads in flight it joined.
struct Round<K, V> {
    lead_keys: Vec<K>,
    /// Per led key: its shard, hash and flight.
    leads: Vec<(usize, u32, Arc<Flight<V>>)>,
    joins: Vec<Joined<K, V>>,
}

/// A load a batch joined: the key, its shard and hash, and the flight.
type Joined<K, V> = (K, usize, u32, Arc<Flight<V>>);

/// What a batch returns: per key, its value or its load's error.
type BatchResult<K, V, E> = HashMap<K, Result<V, Arc<E>>>;

/// A batch whose loader cannot fail: every result is a value.
fn infallible<K: Hash + Eq, V>(results: BatchResult<K, V, Infallible>) -> HashMap<K, V> {
    results
        .into_iter()
        .map(|(k, r)| match r {
            Ok(v) => (k, v),
            Err(e) => match *e {},
        })
        .collect()
}

/// Batch loaders: many keys, one call for all the misses.
impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Returns the values for `keys`, loading all the missing ones with one call to `load`
    /// (one `IN (...)` query instead of one query per key).
    ///
    /// Keys found in the cache are answered from it. Keys whose load is already in flight
    /// (another caller's [`get_or_load`](Self::get_or_load) or batch) join that load. All the
    /// others go to one call of `load`, which returns the pairs it found, in any order. A key
    /// `load` does not return is absent from the result (and nothing is stored for it); pairs
    /// for keys it was not asked for are ignored. `load` is called again only if a load this
    /// caller joined was abandoned (its leader panicked or was cancelled), for those keys.
    ///
    /// Every key is led by this caller before it waits on others, so two batches that share
    /// keys never wait on each other in a cycle. Duplicate keys are answered once.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use cachet::Cache;
    ///
    /// let cache: Cache<u64, String> = Cache::new(1_000);
    /// cache.insert(1, "cached".to_string());
    /// let found = cache.get_all_or_load([1, 2, 3], |missing: &[u64]| {
    ///     assert_eq!(missing, &[2, 3]); // one query for both, e.g. `WHERE id IN (2, 3)`
    ///     missing.iter().filter(|&&id| id != 3).map(|&id| (id, format!("row {id}"))).collect::<Vec<_>>()
    /// });
    /// assert_eq!(found.len(), 2); // key 3 was not found
    /// assert_eq!(found[&2], "row 2");
    /// assert_eq!(cache.get(&2).as_deref(), Some("row 2"));
    /// ```
    pub fn get_all_or_load<I, F, R>(&self, keys: I, mut load: F) -> HashMap<K, V>
    where
        I: IntoIterator<Item = K>,
        F: FnMut(&[K]) -> R,
        R: IntoIterator<Item = (K, V)>,
    {
        infallible(self.get_all_or_try_load(keys, |missing| Ok::<R, Infallible>(load(missing))))
    }

    /// Like [`get_all_or_load`](Self::get_all_or_load), for a fallible batch loader. Each key
    /// gets its value or the error of the load that covered it: when `load` fails, every key
    /// it was asked for gets that error (shared, `Arc<E>`), as do the other callers waiting on
    /// those keys; a key that joined another caller's failed load gets that load's error.
    pub fn get_all_or_try_load<I, F, R, E>(&self, keys: I, mut load: F) -> BatchResult<K, V, E>
    where
        I: IntoIterator<Item = K>,
        F: FnMut(&[K]) -> Result<R, E>,
        R: IntoIterator<Item = (K, V)>,
        E: Send + Sync + 'static,
    {
        let mut out = HashMap::new();
        let mut todo: Vec<K> = keys.into_iter().collect();
        let mut first = true;
        while !todo.is_empty() {
            let round = self.begin_round(todo, std::mem::take(&mut first), &mut out);
            if !round.lead_keys.is_empty() {
                let leads = self.leads(&round);
                let result = {
                    let _leading = Leading::enter(round.leads.iter().map(|l| &*l.2));
                    load(&round.lead_keys)
                };
                Self::finish_round(leads, result, &mut out);
            }
            todo = Vec::new();
            for join in round.joins {
                check_not_leading(&join.3);
                let outcome = join.3.wait(None).expect("no deadline was given");
                self.joined(join, outcome, &mut out, &mut todo);
            }
        }
        out
    }

    /// Async [`get_all_or_load`](Self::get_all_or_load): `load` gets the missing keys (owned)
    /// and returns a future.
    pub async fn get_all_or_load_async<I, F, Fut, R>(&self, keys: I, mut load: F) -> HashMap<K, V>
    where
        I: IntoIterator<Item = K>,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = R>,
        R: IntoIterator<Item = (K, V)>,
    {
        let load = |missing| {
            let fut = load(missing);
            async move { Ok::<R, Infallible>(fut.await) }
        };
        infallible(self.get_all_or_try_load_async(keys, load).await)
    }

    /// Async [`get_all_or_try_load`](Self::get_all_or_try_load). If this future is dropped
    /// while its loader runs, the loads it led are handed to their waiters.
    pub async fn get_all_or_try_load_async<I, F, Fut, R, E>(
        &self,
        keys: I,
        mut load: F,
    ) -> BatchResult<K, V, E>
    where
        I: IntoIterator<Item = K>,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<R, E>>,
        R: IntoIterator<Item = (K, V)>,
        E: Send + Sync + 'static,
    {
        let mut out = HashMap::new();
        let mut todo: Vec<K> = keys.into_iter().collect();
        let mut first = true;
        while !todo.is_empty() {
            let round = self.begin_round(todo, std::mem::take(&mut first), &mut out);
            if !round.lead_keys.is_empty() {
                let leads = self.leads(&round);
                let ids = round.leads.iter().map(|l| l.2.id()).collect();
                let result = Leading::run(ids, load(round.lead_keys.clone())).await;
                Self::finish_round(leads, result, &mut out);
            }
            todo = Vec::new();
            for join in round.joins {
                check_not_leading(&join.3);
                let wait = Wait {
                    flight: &join.3,
                    registered: None,
                };
                let outcome = wait.await;
                self.joined(join, outcome, &mut out, &mut todo);
            }
        }
        out
    }

    /// Sorts `keys` into hits (straight into `out`), loads to join and loads to lead. `first`:
    /// the batch's first round, whose lookups the statistics count (a later round retries keys
    /// whose loads were abandoned, already counted).
    fn begin_round<E>(
        &self,
        keys: Vec<K>,
        first: bool,
        out: &mut BatchResult<K, V, E>,
    ) -> Round<K, V> {
        let mut round = Round {
            lead_keys: Vec::new(),
            leads: Vec::new(),
            joins: Vec::new(),
        };
        let sorted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for k in keys {
                if out.contains_key(&k) {
                    continue; // a duplicate
                }
                let (i, h) = self.hash(&k);
                if first {
                    if let Some(v) = self.get_at(i, h, &k) {
                        out.insert(k, Ok(v));
                        continue;
                    }
                }
                match self.begin_load(i, h, &k, first) {
                    Begin::Hit(v) => {
                        out.insert(k, Ok(v));
                    }
                    Begin::Join(flight) | Begin::Remembered(flight) => {
                        round.joins.push((k, i, h, flight))
                    }
                    Begin::Lead(flight) => {
                        round.lead_keys.push(k);
                        round.leads.push((i, h, flight));
                    }
                }
            }
        }));
        if let Err(panic) = sorted {
            // User code (a hash, `Eq`, a `Clone`) panicked part-way: the loads this round
            // registered would never be settled, so free them before unwinding.
            drop(self.leads(&round));
            std::panic::resume_unwind(panic);
        }
        round
    }

    /// The guards of the loads a round leads (dropped unsettled, they hand the loads over).
    fn leads<'a>(&'a self, round: &'a Round<K, V>) -> Vec<Lead<'a, K, V, S>> {
        round
            .lead_keys
            .iter()
            .zip(&round.leads)
            .map(|(k, (i, h, f))| Lead::new(self, *i, *h, k, Arc::clone(f)))
            .collect()
    }

    /// Settles every load a round led with the batch loader's answer.
    fn finish_round<R, E>(
        leads: Vec<Lead<'_, K, V, S>>,
        result: Result<R, E>,
        out: &mut BatchResult<K, V, E>,
    ) where
        R: IntoIterator<Item = (K, V)>,
        E: Send + Sync + 'static,
    {
        match result {
            Ok(found) => {
                let mut found: HashMap<K, V> = found.into_iter().collect();
                for lead in leads {
                    let key = lead.key.clone();
                    match found.remove(&key) {
                        Some(v) => {
                            let v = lead.finish_shared::<E>(Ok(v));
                            out.insert(key, v);
                        }
                        None => lead.finish_missing(),
                    }
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for lead in leads {
                    let key = lead.key.clone();
                    out.insert(key, lead.finish_shared(Err(Arc::clone(&e))));
                }
            }
        }
    }

    /// Handles the outcome of a load a batch joined: an answer, "not found", or a retry.
    fn joined<E>(
        &self,
        (k, i, h, flight): Joined<K, V>,
        outcome: Outcome<V>,
        out: &mut BatchResult<K, V, E>,
        todo: &mut Vec<K>,
    ) where
        E: Send + Sync + 'static,
    {
        match outcome.next::<E>() {
            Next::Done(r) => {
                out.insert(k, r);
            }
            Next::Missing => {}
            Next::Retry => todo.push(k),
            Next::RetryAfterForeignError => {
                self.abandon_load(i, h, flight.generation);
                todo.push(k);
            }
        }
    }
}
