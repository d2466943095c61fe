//! The loader family on `Cache`: `get_or_load` and its bounded and async forms, for loaders of
//! every `Loaded` shape (and the batch loads in `batch.rs`). It drives the shard's in-flight loads through the cache and
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
// 3. A waiter wakes with the value, with "not found" or the shared error (if it can take them:
//    its loader's shape says "not found", its error type is the leader's), or with "abandoned":
//    the leader panicked or its future was dropped. Otherwise it starts again at step 1, so
//    exactly one of the waiters becomes the new leader and the others join it. A waiter is either a parked thread (a
//    condition variable) or a task (a waker); both wait on the same `Flight`, so blocking and
//    async callers coalesce with each other.
//
// A leader is represented by a `Lead` guard: whatever way it leaves (success, error, panic,
// a dropped future), its `Drop` settles the flight, so no waiter can hang.

mod batch;

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::{Duration, Instant};

use equivalent::Equivalent;

use crate::cache::{Cache, Hashed};
use crate::flight::{Flight, Leading, Outcome, SharedError, Wait, check_not_leading};
use crate::loaded::Loaded;
use crate::shard::Begin;

/// What a waiter does with a flight's outcome: a value, "not found" (`Ok(None)`) or an error
/// it can take, or start again.
enum Next<V, E> {
    Done(Result<Option<V>, Arc<E>>),
    /// Start again (lead or join a new load).
    Retry,
    /// The load ended with "not found" or an error this caller cannot take (its loader cannot
    /// say "not found", or fails with another type): drop that load's slot (it may be kept as
    /// a negative entry), then start again with its own loader.
    RetryOwn,
}

impl<V> Outcome<V> {
    /// What a caller that can take "not found" (`absent`) and errors of type `E` does.
    fn next<E>(self, absent: bool) -> Next<V, E>
    where
        E: Send + Sync + 'static,
    {
        match self {
            Outcome::Loaded(v) => Next::Done(Ok(Some(v))),
            Outcome::Failed(e) => match e.downcast::<E>() {
                Ok(e) => Next::Done(Err(e)),
                Err(_) => Next::RetryOwn,
            },
            Outcome::Missing if absent => Next::Done(Ok(None)),
            Outcome::Missing => Next::RetryOwn,
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
/// let waited = cache.get_or_load_timeout(&1, Duration::from_millis(10), || -> String { unreachable!() });
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

/// The leader of a load. However it leaves (value, "not found", error, panic, dropped future),
/// the flight is settled and the pending slot removed (or kept as a negative entry), so no
/// waiter hangs.
struct Lead<'a, K, V, S, Q: ?Sized>
where
    K: Hash + Eq,
    S: BuildHasher,
{
    cache: &'a Cache<K, V, S>,
    at: Hashed,
    key: &'a Q,
    flight: Arc<Flight<V>>,
    settled: bool,
    /// When the load started, if the cache records statistics.
    started: Option<Instant>,
}

impl<'a, K, V, S, Q> Lead<'a, K, V, S, Q>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
    Q: ?Sized + ToOwned<Owned = K>,
{
    fn new(cache: &'a Cache<K, V, S>, at: Hashed, key: &'a Q, flight: Arc<Flight<V>>) -> Self {
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

    /// Stores the value (unless superseded) or settles "not found" or the error, then wakes the
    /// waiters; returns what the leader's call returns.
    fn finish<L: Loaded<V>>(self, loaded: L) -> L::Output {
        L::join(self.settle(loaded.split().map_err(Arc::new)))
    }

    /// `finish` for an outcome already in one form (the error shared).
    fn settle<E>(mut self, result: Result<Option<V>, Arc<E>>) -> Result<Option<V>, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let g = self.flight.generation;
        // Until the slot is settled, a panic (the weigher, the key's `Eq`, a `Clone`) leaves
        // through `Drop`, which frees the key and hands the load to a waiter.
        match result {
            Ok(Some(v)) => {
                self.cache
                    .end_load(self.at, self.key.to_owned(), g, v.clone());
                let for_waiters = v.clone();
                self.settled = true;
                self.count(true);
                self.flight.complete(for_waiters);
                Ok(Some(v))
            }
            Ok(None) => {
                self.cache.fail_load(self.at, g);
                self.settled = true;
                self.count(true);
                self.flight.missing();
                Ok(None)
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
}

impl<K, V, S, Q> Lead<'_, K, V, S, Q>
where
    K: Hash + Eq,
    S: BuildHasher,
    Q: ?Sized,
{
    /// Counts the finished load, if the cache records statistics.
    fn count(&self, ok: bool) {
        if let Some(t) = self.started {
            self.cache.record_load(self.at.shard, ok, t.elapsed());
        }
    }
}

impl<K, V, S, Q> Drop for Lead<'_, K, V, S, Q>
where
    K: Hash + Eq,
    S: BuildHasher,
    Q: ?Sized,
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
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    /// Returns the value for `key`, loading it with `load` on a miss. Concurrent callers that
    /// miss the same key, blocking or async, wait for one load: exactly one `load` runs per key
    /// at a time, and every waiter receives its outcome (a clone of the value).
    ///
    /// `load` may return the value, an `Option` (`None`: not found), a `Result`, or a `Result`
    /// of an `Option`, and the call returns the same shape, with an error shared as an
    /// `Arc<E>` by every caller of that load (see [`Loaded`]). Only a value is stored; "not
    /// found" and errors are remembered only with [`negative_ttl`](crate::CacheBuilder::negative_ttl).
    /// The key may be borrowed (`&str` for a `Cache<String, _>`): it is turned into a `K` only
    /// to load it.
    ///
    /// The loaded value is stored unless an [`insert`](Self::insert) or
    /// [`remove`](Self::remove) of the key, a [`retain`](Self::retain) or an
    /// [`invalidate_all`](Self::invalidate_all) happened during the load (the waiters still
    /// receive it). `load` runs with no lock held and may use the cache, but not ask for the
    /// key it is loading.
    ///
    /// # Panics
    ///
    /// If the leading caller's `load` panics, the panic unwinds that caller only; one of the
    /// waiters then loads again with its own `load`. A `load` that asks this cache for the key
    /// it is loading panics with a message naming the recursive load (it would wait for itself
    /// forever).
    ///
    /// ```
    /// use cachet::Cache;
    ///
    /// let users: Cache<String, String> = Cache::new(1_000);
    /// let name = users.get_or_load("ada", || "Ada Lovelace".to_string()); // e.g. a query
    /// assert_eq!(name, "Ada Lovelace");
    /// assert_eq!(users.get("ada").as_deref(), Some("Ada Lovelace"));
    /// // A loader that can say "not found", and one that can fail:
    /// assert_eq!(users.get_or_load("nobody", || None), None);
    /// let row: Result<String, _> = users.get_or_load("bob", || Err::<String, _>("timeout"));
    /// assert_eq!(*row.unwrap_err(), "timeout");
    /// ```
    pub fn get_or_load<Q, L, F>(&self, key: &Q, load: F) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        L: Loaded<V>,
        F: FnOnce() -> L,
    {
        match self.load_blocking(key, None, true, load) {
            Ok(out) => out,
            Err(_) => unreachable!("no deadline was given"),
        }
    }

    /// [`get_or_load`](Self::get_or_load) for a caller that has just looked `key` up and
    /// missed: goes straight to leading or joining a load.
    pub(crate) fn load_missed<Q, L, F>(&self, key: &Q, load: F) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        L: Loaded<V>,
        F: FnOnce() -> L,
    {
        match self.load_blocking(key, None, false, load) {
            Ok(out) => out,
            Err(_) => unreachable!("no deadline was given"),
        }
    }

    /// Like [`get_or_load`](Self::get_or_load), but waits at most `timeout` for another
    /// caller's load of the key; the load carries on for the others. The bound is on waiting:
    /// a caller that becomes the leader runs `load` to the end.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if another caller's load of the key was still running after `timeout`.
    ///
    /// # Panics
    ///
    /// As [`get_or_load`](Self::get_or_load).
    pub fn get_or_load_timeout<Q, L, F>(
        &self,
        key: &Q,
        timeout: Duration,
        load: F,
    ) -> Result<L::Output, Timeout>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        L: Loaded<V>,
        F: FnOnce() -> L,
    {
        let deadline = Instant::now().checked_add(timeout);
        self.load_blocking(key, deadline, true, load)
            .map_err(|()| Timeout { waited: timeout })
    }

    /// The blocking loader: `Err(())` if `deadline` passed while waiting.
    fn load_blocking<Q, L, F>(
        &self,
        key: &Q,
        deadline: Option<Instant>,
        probe: bool,
        load: F,
    ) -> Result<L::Output, ()>
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        L: Loaded<V>,
        F: FnOnce() -> L,
    {
        // Hashed once, whatever the number of attempts.
        let at = self.hash(key);
        let mut load = Some(load);
        // Looked up once (a hit counted); a retry probes under the write lock.
        if probe {
            if let Some(v) = self.get_at(at, key) {
                return Ok(L::join(Ok(Some(v))));
            }
        }
        let mut first = true;
        loop {
            match self.begin_load(at, key, std::mem::take(&mut first)) {
                Begin::Hit(v) => return Ok(L::join(Ok(Some(v)))),
                Begin::Join(flight) | Begin::Remembered(flight) => {
                    check_not_leading(&flight);
                    let outcome = flight.wait(deadline).ok_or(())?;
                    match outcome.next::<L::Error>(L::ABSENT) {
                        Next::Done(result) => return Ok(L::join(result)),
                        Next::Retry => {}
                        Next::RetryOwn => self.abandon_load(at, flight.generation),
                    }
                }
                Begin::Lead(flight) => {
                    let load = load.take().expect("a caller leads at most once");
                    let lead = Lead::new(self, at, key, flight);
                    let loaded = {
                        let _leading = Leading::enter([&*lead.flight]);
                        load()
                    };
                    return Ok(lead.finish(loaded));
                }
            }
        }
    }

    /// Async [`get_or_load`](Self::get_or_load): `load` is a future, awaited only if this
    /// caller leads the load. Waiting needs no particular runtime. If the leading task's future
    /// is dropped mid-load, one of the waiters takes the load over; a waiting future may be
    /// dropped at any point. To bound the wait, wrap the call in your runtime's timeout.
    ///
    /// # Panics
    ///
    /// As [`get_or_load`](Self::get_or_load): a `load` that awaits this cache's load of the
    /// key it is loading, in the same task, panics.
    pub async fn get_or_load_async<Q, L, F>(&self, key: &Q, load: F) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        L: Loaded<V>,
        F: Future<Output = L>,
    {
        self.load_async(key, true, load).await
    }

    /// [`load_missed`](Self::load_missed), async.
    pub(crate) async fn load_missed_async<Q, L, F>(&self, key: &Q, load: F) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        L: Loaded<V>,
        F: Future<Output = L>,
    {
        self.load_async(key, false, load).await
    }

    async fn load_async<Q, L, F>(&self, key: &Q, probe: bool, load: F) -> L::Output
    where
        Q: ?Sized + Hash + Equivalent<K> + ToOwned<Owned = K>,
        L: Loaded<V>,
        F: Future<Output = L>,
    {
        // Hashed once, whatever the number of attempts.
        let at = self.hash(key);
        let mut load = Some(load);
        // Looked up once (a hit counted); a retry probes under the write lock.
        if probe {
            if let Some(v) = self.get_at(at, key) {
                return L::join(Ok(Some(v)));
            }
        }
        let mut first = true;
        loop {
            match self.begin_load(at, key, std::mem::take(&mut first)) {
                Begin::Hit(v) => return L::join(Ok(Some(v))),
                Begin::Join(flight) | Begin::Remembered(flight) => {
                    check_not_leading(&flight);
                    let wait = Wait::new(&flight);
                    match wait.await.next::<L::Error>(L::ABSENT) {
                        Next::Done(result) => return L::join(result),
                        Next::Retry => {}
                        Next::RetryOwn => self.abandon_load(at, flight.generation),
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
