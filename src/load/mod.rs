//! The loader family on `Cache`: `get_or_load` and its fallible, bounded and async forms (and
//! the batch loads in `batch.rs`). It drives the shard's in-flight loads through the cache and
//! waits on `Flight`s; the shard and the cache know nothing of it.
//
// In-flight loads: how a hundred concurrent misses on one key become one call to the loader.
//
// The protocol (all of it under the key's shard lock, so "miss, then lead or join" is one
// critical section):
//
// 1. A caller that misses takes the shard's write lock and probes the index once. A live entry:
//    it is a hit after all. A *pending slot* (a load in flight for the key, kept in the same
//    index as the entries, see `shard/inflight.rs`): it joins that load and waits on its
//    `Flight`. Nothing: it inserts a pending slot with a fresh `Flight` and a new generation,
//    and leads.
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

mod batch;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::{Cache, Hashed};
use crate::flight::{Flight, Leading, Outcome, SharedError, Wait, check_not_leading};
use crate::shard::Begin;

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
    at: Hashed,
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
    fn new(cache: &'a Cache<K, V, S>, at: Hashed, key: &'a K, flight: Arc<Flight<V>>) -> Self {
        let started = cache.shard_stats(at.shard).map(|_| Instant::now());
        Lead {
            cache,
            at,
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
                self.cache.end_load(self.at, self.key, g, Some(v.clone()));
                let for_waiters = v.clone();
                self.settled = true;
                self.count(true);
                self.flight.complete(for_waiters);
                Ok(v)
            }
            Err(e) => {
                self.cache.fail_load(self.at, g);
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
        self.cache.abandon_load(self.at, g);
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
        if let Some(t) = self.started {
            self.cache.record_load(self.at.shard, ok, t.elapsed());
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
            self.cache.abandon_load(self.at, self.flight.generation);
            self.flight.abandon();
        }
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
        let at = self.hash(key);
        let mut load = Some(load);
        // Looked up once (one hit or one miss counted); a retry probes under the write lock.
        if probe {
            if let Some(v) = self.get_at(at, key) {
                return Ok(v);
            }
        }
        let mut first = true;
        loop {
            match self.begin_load(at, key, std::mem::take(&mut first)) {
                Begin::Hit(v) => return Ok(v),
                Begin::Join(flight) | Begin::Remembered(flight) => {
                    check_not_leading(&flight);
                    let Some(outcome) = flight.wait(deadline) else {
                        return Err(Failure::Timeout);
                    };
                    match outcome.next() {
                        Next::Done(result) => return result.map_err(Failure::Failed),
                        Next::Missing | Next::Retry => {}
                        Next::RetryAfterForeignError => self.abandon_load(at, flight.generation),
                    }
                }
                Begin::Lead(flight) => {
                    let load = load.take().expect("a caller leads at most once");
                    let lead = Lead::new(self, at, key, flight);
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
        let at = self.hash(key);
        let mut load = Some(load);
        // Looked up once (one hit or one miss counted); a retry probes under the write lock.
        if probe {
            if let Some(v) = self.get_at(at, key) {
                return Ok(v);
            }
        }
        let mut first = true;
        loop {
            match self.begin_load(at, key, std::mem::take(&mut first)) {
                Begin::Hit(v) => return Ok(v),
                Begin::Join(flight) | Begin::Remembered(flight) => {
                    check_not_leading(&flight);
                    let wait = Wait::new(&flight);
                    match wait.await.next() {
                        Next::Done(result) => return result,
                        Next::Missing | Next::Retry => {}
                        Next::RetryAfterForeignError => self.abandon_load(at, flight.generation),
                    }
                }
                Begin::Lead(flight) => {
                    let load = load.take().expect("a caller leads at most once");
                    let lead = Lead::new(self, at, key, flight);
                    let loaded = Leading::run(vec![lead.flight.id()], load).await;
                    return lead.finish(loaded);
                }
            }
        }
    }
}
