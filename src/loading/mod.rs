//! Loading caches: a loader registered on the cache, and refresh-ahead. A front-end over
//! [`Cache`] and its loaders; nothing below it (cache, shard, policy, expiry) knows it exists.
//!
//! [`LoadingCache`] (blocking loader) and [`AsyncLoadingCache`] (a loader returning a future)
//! wrap a [`Cache`] whose misses they load with the registered loader, coalesced as in
//! [`Cache::get_or_try_load`]. With [`refresh_after`](crate::CacheBuilder::refresh_after) (or
//! [`refresh_early`](crate::CacheBuilder::refresh_early)) a hit on an entry close to its
//! deadline is answered at once while one background load refreshes it.

// Design notes
// - The age of an entry is read from its deadline, which the shard already checks on every
//   read: `refresh_after(r)` with `time_to_live(t)` refreshes an entry once it has less than
//   `t - r` left. No per-entry timestamp is kept, so refresh costs no memory.
// - One reader claims the refresh: a flag bit in the entry's access byte, set with a
//   `fetch_or` under the read lock, so the other readers of a hot key keep to the read lock
//   while the refresh runs. The claimer then registers the refresh under the write lock in the
//   shard's short list of refreshes in flight, which is the authority: at most one per key.
// - A refresh is a load like any other (a `Flight`): a caller that misses the key while it
//   runs (the entry expired meanwhile) joins it instead of loading again. A write or removal
//   of the key drops it from the list, so its late result is not stored.
// - Stale-if-error: a refresh that fails (error, panic, dropped future) stores nothing and
//   leaves the flag set, so the old value is served, without further refreshes, until its
//   deadline; then the key misses and loads normally.
// - Blocking refreshes run on a small pool of threads the cache owns (`refresh_threads`,
//   started on demand and ended when idle), with a bounded queue: when it is full a refresh is
//   skipped, never queued without bound. Async refreshes go to the spawn function given.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::ops::Deref;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::DefaultHashBuilder;
use crate::cache::{Cache, Hashed};
use crate::flight::{Flight, Leading, SharedError};

mod pool;

use pool::Pool;

/// A boxed, `Send` future: what an [`AsyncLoadingCache`]'s spawn function receives.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// When a hit triggers a refresh.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum RefreshRule {
    /// `refresh_after`: once the entry has at most this many ticks left.
    Window(u64),
    /// `refresh_early(beta)`: the XFetch rule, scaled by the measured load time.
    Early(f64),
}

/// What the loaders of both kinds share: the rule, and the measured load time.
struct Refresher {
    rule: Option<RefreshRule>,
    /// Load time, a moving average in microseconds (for `refresh_early`).
    load_micros: AtomicU64,
}

impl Refresher {
    fn new(rule: Option<RefreshRule>) -> Self {
        Refresher {
            rule,
            load_micros: AtomicU64::new(0),
        }
    }

    /// Whether an entry with `left` ticks (milliseconds) to live should be refreshed now.
    fn due(&self, left: u64) -> bool {
        match self.rule {
            None => false,
            Some(RefreshRule::Window(w)) => left <= w,
            Some(RefreshRule::Early(beta)) => {
                // XFetch (Vattani, Chierichetti and Lowenstein, VLDB 2015): refresh when
                // `delta * beta * -ln(u) >= left`, `u` uniform in (0, 1], `delta` the load
                // time. Early refreshes grow likelier as the deadline nears and as loads slow.
                let delta_ms = self.load_micros.load(Ordering::Relaxed) as f64 / 1000.0;
                // `-ln(u)` is at most 53 ln 2 (about 36.7) for the 53-bit `u` drawn here, so
                // an entry with more time left than that bound needs no random draw.
                let reach = delta_ms * beta;
                if reach <= 0.0 || reach * 36.8 < left as f64 {
                    return false;
                }
                reach * -uniform().ln() >= left as f64
            }
        }
    }

    /// Records a load's duration (a moving average weighing the latest by 1/8).
    fn observe(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let old = self.load_micros.load(Ordering::Relaxed);
        let new = if old == 0 {
            micros
        } else {
            old - old / 8 + micros / 8
        };
        self.load_micros.store(new, Ordering::Relaxed);
    }
}

/// A uniform sample in (0, 1], from a per-thread xorshift generator (statistical quality is
/// all XFetch needs).
fn uniform() -> f64 {
    use std::cell::Cell;
    use std::hash::BuildHasher;
    thread_local! {
        // Seeded from the standard library's per-process random hash keys.
        static STATE: Cell<u64> =
            Cell::new(std::collections::hash_map::RandomState::new().hash_one(0u8) | 1);
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    })
}

/// A background refresh registered in its shard. However it ends (stored, failed, panicked,
/// dropped unrun), its flight is settled and its registration removed.
struct RefreshJob<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    cache: Cache<K, V, S>,
    at: Hashed,
    key: K,
    flight: Arc<Flight<V>>,
    started: Instant,
    done: bool,
}

impl<K, V, S> RefreshJob<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    /// Registers a refresh of `key` (hashed to `at`), whose refresh this caller claimed;
    /// `None` if one is already running or the entry left.
    fn begin(cache: &Cache<K, V, S>, at: Hashed, key: &K) -> Option<Self> {
        let (key, flight) = cache.begin_refresh(at, key)?;
        Some(RefreshJob {
            cache: cache.clone(),
            at,
            key,
            flight,
            started: Instant::now(),
            done: false,
        })
    }

    fn finish(mut self, result: Result<V, SharedError>) {
        let g = self.flight.generation;
        // Until the refresh is unregistered, a panic (the weigher, a `Clone`) leaves through
        // `Drop`, which unregisters it and releases its waiters.
        match result {
            Ok(v) => {
                self.cache
                    .end_refresh(self.at, &self.key, g, Some(v.clone()));
                self.done = true;
                self.count(true);
                self.flight.complete(v);
            }
            Err(e) => {
                self.cache.end_refresh(self.at, &self.key, g, None);
                self.done = true;
                self.count(false);
                self.flight.fail(e);
            }
        }
    }

    fn count(&self, ok: bool) {
        if let Some(stats) = self.cache.shard_stats(self.at.shard) {
            stats.loaded(ok, self.started.elapsed());
        }
    }
}

impl<K, V, S> Drop for RefreshJob<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    fn drop(&mut self) {
        if !self.done {
            self.count(false);
            let _ = catch_unwind(AssertUnwindSafe(|| {
                let g = self.flight.generation;
                self.cache.end_refresh(self.at, &self.key, g, None)
            }));
            self.flight.abandon();
        }
    }
}

/// `Deref` to the wrapped cache, `Clone` (another handle) and `Debug`, for both loading caches
/// (each a `cache` and an `Arc`'d `loader` with a `refresher`).
macro_rules! handle_impls {
    ($name:ident) => {
        impl<K, V, E, S> Deref for $name<K, V, E, S> {
            type Target = Cache<K, V, S>;

            fn deref(&self) -> &Cache<K, V, S> {
                &self.cache
            }
        }

        impl<K, V, E, S> Clone for $name<K, V, E, S> {
            fn clone(&self) -> Self {
                $name {
                    cache: self.cache.clone(),
                    loader: Arc::clone(&self.loader),
                }
            }
        }

        impl<K, V, E, S> fmt::Debug for $name<K, V, E, S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("cache", &self.cache)
                    .field("refresh", &self.loader.refresher.rule)
                    .finish_non_exhaustive()
            }
        }
    };
}

type Load<K, V, E> = dyn Fn(&K) -> Result<V, E> + Send + Sync;

struct Blocking<K, V, E> {
    load: Box<Load<K, V, E>>,
    refresher: Refresher,
    pool: Pool,
}

/// A cache with a registered blocking loader: [`get`](Self::get) loads misses with it
/// (coalesced: one load per key at a time), and refreshes entries ahead of their deadline
/// in the background when [`refresh_after`](crate::CacheBuilder::refresh_after) or
/// [`refresh_early`](crate::CacheBuilder::refresh_early) is set.
///
/// Built with [`CacheBuilder::build_loading`](crate::CacheBuilder::build_loading). It
/// dereferences to the [`Cache`] it wraps, for every other operation (`insert`, `remove`,
/// `stats`...). Cloning gives another handle to the same cache.
///
/// ```
/// use std::time::Duration;
/// use cachet::{Cache, Clock, MockClock};
///
/// let time = MockClock::new();
/// let users = Cache::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(60))
///     .refresh_after(Duration::from_secs(45)) // refreshed in the background after 45 s
///     .clock(Clock::mock(&time))
///     .build_loading(|id: &u64| -> Result<String, std::io::Error> {
///         Ok(format!("user {id}")) // a database query
///     })
///     .unwrap();
/// assert_eq!(users.get(&7).unwrap(), "user 7"); // a miss: loaded now
/// time.advance(Duration::from_secs(50));
/// assert_eq!(users.get(&7).unwrap(), "user 7"); // served at once; a refresh reloads it
/// ```
pub struct LoadingCache<K, V, E, S = DefaultHashBuilder> {
    cache: Cache<K, V, S>,
    loader: Arc<Blocking<K, V, E>>,
}

impl<K, V, E, S> LoadingCache<K, V, E, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    pub(crate) fn new(
        cache: Cache<K, V, S>,
        load: Box<Load<K, V, E>>,
        rule: Option<RefreshRule>,
        threads: usize,
    ) -> Self {
        LoadingCache {
            cache,
            loader: Arc::new(Blocking {
                load,
                refresher: Refresher::new(rule),
                pool: Pool::new(threads),
            }),
        }
    }

    /// The value for `key`: from the cache, or loaded with the registered loader (one load per
    /// key at a time; waiters share its value or its error). A hit on an entry due for
    /// refresh returns the current value at once and starts one background refresh; if that
    /// refresh fails, the current value is served until its deadline.
    pub fn get(&self, key: &K) -> Result<V, Arc<E>> {
        let at = self.cache.hash(key);
        let due = |left| self.loader.refresher.due(left);
        if let Some((v, claimed)) = self.cache.get_refreshing(at, key, &due) {
            if claimed {
                self.refresh(at, key);
            }
            return Ok(v);
        }
        self.cache.try_load_missed(key, || {
            let started = Instant::now();
            let result = (self.loader.load)(key);
            self.loader.refresher.observe(started.elapsed());
            result
        })
    }

    fn refresh(&self, at: Hashed, key: &K) {
        let Some(job) = RefreshJob::begin(&self.cache, at, key) else {
            return;
        };
        let loader = Arc::clone(&self.loader);
        self.loader.pool.execute(Box::new(move || {
            let result = {
                let _leading = Leading::enter([&*job.flight]);
                (loader.load)(&job.key)
            };
            loader.refresher.observe(job.started.elapsed());
            job.finish(result.map_err(|e| Arc::new(e) as SharedError));
        }));
    }
}

handle_impls!(LoadingCache);

type AsyncLoad<K, V, E> = dyn Fn(K) -> BoxFuture<Result<V, E>> + Send + Sync;
type Spawn = dyn Fn(BoxFuture<()>) + Send + Sync;

struct Async<K, V, E> {
    load: Box<AsyncLoad<K, V, E>>,
    spawn: Box<Spawn>,
    refresher: Refresher,
}

/// A cache with a registered async loader: [`get`](Self::get) loads misses with it, and
/// background refreshes run on the executor given by the spawn function (with the `tokio`
/// feature, `CacheBuilder::build_tokio_loading` spawns on the
/// current tokio runtime). See [`LoadingCache`] for the rules.
///
/// Built with [`CacheBuilder::build_async_loading`](crate::CacheBuilder::build_async_loading).
///
/// ```
/// use std::time::Duration;
/// use cachet::Cache;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let products = Cache::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(60))
///     .refresh_after(Duration::from_secs(45))
///     .build_async_loading(
///         |refresh| { tokio::spawn(refresh); },
///         |id: u64| async move { Ok::<_, std::io::Error>(format!("product {id}")) },
///     )
///     .unwrap();
/// assert_eq!(products.get(&3).await.unwrap(), "product 3");
/// # }
/// ```
pub struct AsyncLoadingCache<K, V, E, S = DefaultHashBuilder> {
    cache: Cache<K, V, S>,
    loader: Arc<Async<K, V, E>>,
}

impl<K, V, E, S> AsyncLoadingCache<K, V, E, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    E: Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    pub(crate) fn new(
        cache: Cache<K, V, S>,
        load: Box<AsyncLoad<K, V, E>>,
        spawn: Box<Spawn>,
        rule: Option<RefreshRule>,
    ) -> Self {
        AsyncLoadingCache {
            cache,
            loader: Arc::new(Async {
                load,
                spawn,
                refresher: Refresher::new(rule),
            }),
        }
    }

    /// The value for `key`, as [`LoadingCache::get`], awaiting the loader on a miss.
    pub async fn get(&self, key: &K) -> Result<V, Arc<E>> {
        let at = self.cache.hash(key);
        let hit = {
            let due = |left| self.loader.refresher.due(left);
            self.cache.get_refreshing(at, key, &due)
        };
        if let Some((v, claimed)) = hit {
            if claimed {
                self.refresh(at, key);
            }
            return Ok(v);
        }
        let load = (self.loader.load)(key.clone());
        let loader = &self.loader;
        self.cache
            .try_load_missed_async(key, async move {
                let started = Instant::now();
                let result = load.await;
                loader.refresher.observe(started.elapsed());
                result
            })
            .await
    }

    fn refresh(&self, at: Hashed, key: &K) {
        let Some(job) = RefreshJob::begin(&self.cache, at, key) else {
            return;
        };
        let loader = Arc::clone(&self.loader);
        let load = (loader.load)(job.key.clone());
        (self.loader.spawn)(Box::pin(async move {
            let result = Leading::run(vec![job.flight.id()], load).await;
            loader.refresher.observe(job.started.elapsed());
            job.finish(result.map_err(|e| Arc::new(e) as SharedError));
        }));
    }
}

handle_impls!(AsyncLoadingCache);
