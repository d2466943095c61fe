//! Loading caches: a loader registered on the cache, and refresh-ahead. A front-end over
//! [`Cache`] and its loaders; nothing below it (cache, shard, policy, expiry) knows it exists.
//!
//! [`LoadingCache`] (blocking loader) and [`AsyncLoadingCache`] (a loader returning a future)
//! wrap a [`Cache`] whose misses they load with the registered loader, coalesced as in
//! [`Cache::get_or_load`]. With [`refresh_after`](crate::CacheBuilder::refresh_after) (or
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
//   deadline; then the key misses and loads normally. A refresh whose loader finds nothing
//   (`None`) removes the key: the value it replaced no longer exists.
// - Files: this one holds what both kinds share (the refresh rule and jobs); `blocking.rs`
//   the `LoadingCache`, `asynchronous.rs` the `AsyncLoadingCache`, `pool.rs` the threads
//   blocking refreshes run on.
// - Blocking refreshes run on a small pool of threads the cache owns (`refresh_threads`,
//   started on demand and ended when idle), with a bounded queue: when it is full a refresh is
//   skipped, never queued without bound. Async refreshes go to the spawn function given.

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use equivalent::Equivalent;

use crate::cache::{Cache, Hashed};
use crate::flight::{Flight, SharedError};

mod asynchronous;
mod blocking;
mod pool;

pub use asynchronous::AsyncLoadingCache;
pub use blocking::LoadingCache;

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

/// A background refresh registered in its shard. However it ends (stored, removed, failed,
/// panicked, dropped unrun), its flight is settled and its registration removed.
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
    /// Registers a refresh of `key` (hashed to `at`), whose entry is present; `None` if a
    /// refresh of it is already running or the entry left.
    fn begin<Q>(cache: &Cache<K, V, S>, at: Hashed, key: &Q) -> Option<Self>
    where
        Q: ?Sized + Equivalent<K>,
    {
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

    /// Ends the refresh with its loader's outcome: a value is stored, "not found" removes the
    /// key, an error leaves the current value to be served (stale-if-error). Returns the
    /// outcome, for a caller that waits for it.
    fn finish<E>(mut self, result: Result<Option<V>, Arc<E>>) -> Result<Option<V>, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let g = self.flight.generation;
        // Until the refresh is unregistered, a panic (the weigher, a `Clone`) leaves through
        // `Drop`, which unregisters it and releases its waiters.
        match &result {
            Ok(Some(v)) => {
                self.cache
                    .end_refresh(self.at, &self.key, g, Some(v.clone()));
                self.done = true;
                self.count(true);
                self.flight.complete(v.clone());
            }
            Ok(None) => {
                self.cache.end_refresh(self.at, &self.key, g, None);
                self.done = true;
                self.count(true);
                self.flight.missing();
            }
            Err(e) => {
                self.cache.abandon_refresh(self.at, g);
                self.done = true;
                self.count(false);
                self.flight.fail(Arc::clone(e) as SharedError);
            }
        }
        result
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
            self.cache.abandon_refresh(self.at, self.flight.generation);
            self.flight.abandon();
        }
    }
}

/// `Clone` (another handle to the same cache and loader) and `Debug`, for both loading caches
/// (each a `cache` and an `Arc`'d `loader` with a `refresher`).
macro_rules! handle_impls {
    ($name:ident) => {
        impl<K, V, L, S> Clone for $name<K, V, L, S> {
            fn clone(&self) -> Self {
                $name {
                    cache: self.cache.clone(),
                    loader: Arc::clone(&self.loader),
                }
            }
        }

        impl<K, V, L, S> std::fmt::Debug for $name<K, V, L, S> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("cache", &self.cache)
                    .field("refresh", &self.loader.refresher.rule)
                    .finish_non_exhaustive()
            }
        }
    };
}
use handle_impls;
