//! Helpers shared by the comparison benchmarks in `benches/`.
//!
//! Every cache under test is wrapped in a small adapter implementing
//! [`BenchCache`], so a benchmark body is written once as a generic function
//! and monomorphised per cache (no dynamic dispatch inside the timed region).
//! All caches use their default configuration and default hasher, i.e. what a
//! user gets from `Cache::new(capacity)`; the exceptions are cachet's expiration variants
//! ([`CachetTtl`], [`CachetTti`]), which differ from [`Cachet`] only by a lifetime.

// Each bench target uses a different subset of these helpers.
#![allow(dead_code)]

use std::num::NonZeroUsize;
use std::time::Duration;

use criterion::Criterion;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::Zipf;

/// Fixed seed for every key stream, so all runs see identical workloads.
pub const SEED: u64 = 0x00C0_FFEE_CAC4_E7E5;

/// Criterion settings shared by all groups: the machine is small and noisy, so
/// keep each measurement short and let the number of samples stay low.
pub fn criterion_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

/// The operations the benchmarks need, implemented for every cache under test.
pub trait BenchCache: Send + Sync {
    /// Name used as the criterion function id.
    const NAME: &'static str;
    /// Whether the structure bounds its own size. `DashMap` does not, so the
    /// eviction benchmark removes the oldest key itself (FIFO emulation).
    const EVICTS: bool = true;

    fn with_capacity(capacity: usize) -> Self;
    fn get(&self, key: u64) -> Option<u64>;
    fn insert(&self, key: u64, value: u64);
    fn remove(&self, key: u64);
    fn len(&self) -> usize;
    /// Applies buffered writes so that `len` and lookups are up to date.
    fn sync(&self) {}
}

/// cachet configured through its builder: plain (the same cache `Cache::new` builds) and the
/// expiration variants. All have the same capacity and automatic shard count; the expiring ones
/// use the default (ticking) clock and a lifetime of an hour, so nothing expires during a
/// benchmark: what is measured is the cost of keeping and checking deadlines.
macro_rules! cachet_variant {
    ($(#[$doc:meta])* $ty:ident, $name:literal, |$b:ident| $configure:expr) => {
        $(#[$doc])*
        pub struct $ty(cachet::Cache<u64, u64>);

        impl BenchCache for $ty {
            const NAME: &'static str = $name;

            fn with_capacity(capacity: usize) -> Self {
                let $b = cachet::Cache::builder().max_capacity(capacity as u64);
                Self($configure.build().expect("valid configuration"))
            }
            #[inline]
            fn get(&self, key: u64) -> Option<u64> {
                self.0.get(&key)
            }
            #[inline]
            fn insert(&self, key: u64, value: u64) {
                self.0.insert(key, value);
            }
            fn remove(&self, _key: u64) {
                unreachable!("cachet evicts on its own")
            }
            fn len(&self) -> usize {
                self.0.len()
            }
        }
    };
}

cachet_variant!(
    /// cachet without expiration.
    Cachet,
    "cachet",
    |b| b
);

/// Lifetime of the expiration variants: far longer than any benchmark.
pub const BENCH_LIFETIME: Duration = Duration::from_secs(3600);

cachet_variant!(
    /// cachet with `time_to_live`: every entry has a deadline, every hit compares it with the
    /// clock.
    CachetTtl,
    "cachet_ttl",
    |b| b.time_to_live(BENCH_LIFETIME)
);

cachet_variant!(
    /// cachet with `record_stats`: every lookup also adds to a hit or miss counter.
    CachetStats,
    "cachet_stats",
    |b| b.record_stats()
);

cachet_variant!(
    /// cachet with `time_to_idle`: every hit also stores a new deadline.
    CachetTti,
    "cachet_tti",
    |b| b.time_to_idle(BENCH_LIFETIME)
);

pub struct QuickCache(quick_cache::sync::Cache<u64, u64>);

impl BenchCache for QuickCache {
    const NAME: &'static str = "quick_cache";

    fn with_capacity(capacity: usize) -> Self {
        Self(quick_cache::sync::Cache::new(capacity))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
    fn remove(&self, _key: u64) {
        unreachable!("quick_cache evicts on its own")
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

pub struct Moka(moka::sync::Cache<u64, u64>);

impl BenchCache for Moka {
    const NAME: &'static str = "moka";

    fn with_capacity(capacity: usize) -> Self {
        Self(moka::sync::Cache::new(capacity as u64))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
    fn remove(&self, _key: u64) {
        unreachable!("moka evicts on its own")
    }
    fn len(&self) -> usize {
        self.0.entry_count() as usize
    }
    fn sync(&self) {
        self.0.run_pending_tasks();
    }
}

/// Unbounded concurrent map: the "no eviction policy at all" baseline.
pub struct Dash(dashmap::DashMap<u64, u64>);

impl BenchCache for Dash {
    const NAME: &'static str = "dashmap";
    const EVICTS: bool = false;

    fn with_capacity(capacity: usize) -> Self {
        Self(dashmap::DashMap::with_capacity(capacity))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key).map(|v| *v)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
    #[inline]
    fn remove(&self, key: u64) {
        self.0.remove(&key);
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Classic single-lock LRU: `lru::LruCache` behind a `parking_lot::Mutex`.
pub struct MutexLru(Mutex<lru::LruCache<u64, u64>>);

impl BenchCache for MutexLru {
    const NAME: &'static str = "lru+mutex";

    fn with_capacity(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).expect("capacity must be non-zero");
        Self(Mutex::new(lru::LruCache::new(capacity)))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.lock().get(&key).copied()
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        self.0.lock().put(key, value);
    }
    fn remove(&self, _key: u64) {
        unreachable!("lru evicts on its own")
    }
    fn len(&self) -> usize {
        self.0.lock().len()
    }
}

/// Calls a generic bench function once per cache, in a fixed order, so that
/// all caches land side by side in the same criterion group.
///
/// `each_cache!(my_bench(&mut group, &keys))` expands to
/// `my_bench::<Cachet>(&mut group, &keys); my_bench::<QuickCache>(...); ...`.
#[allow(unused_macros)]
macro_rules! each_cache {
    ($f:ident ( $($arg:expr),* $(,)? )) => {{
        $f::<common::Cachet>($($arg),*);
        $f::<common::QuickCache>($($arg),*);
        $f::<common::Moka>($($arg),*);
        $f::<common::Dash>($($arg),*);
        $f::<common::MutexLru>($($arg),*);
    }};
}

/// Like [`each_cache!`] without cachet: for groups that list cachet's variants first, by hand.
#[allow(unused_macros)]
macro_rules! each_peer {
    ($f:ident ( $($arg:expr),* $(,)? )) => {{
        $f::<common::QuickCache>($($arg),*);
        $f::<common::Moka>($($arg),*);
        $f::<common::Dash>($($arg),*);
        $f::<common::MutexLru>($($arg),*);
    }};
}

/// `len` keys drawn from Zipf(`s`) over `0..n_keys`; key `0` is the most
/// popular one.
pub fn zipf_keys(n_keys: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let zipf = Zipf::new(n_keys as f64, s).expect("valid Zipf parameters");
    (0..len)
        .map(|_| {
            // Zipf samples ranks in 1..=n as floats.
            let rank: f64 = rng.sample(zipf);
            (rank as u64).clamp(1, n_keys) - 1
        })
        .collect()
}

/// `len` keys drawn uniformly from `range`.
pub fn uniform_keys(range: std::ops::Range<u64>, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(range.clone())).collect()
}

/// Inserts `key -> key` for every key in `keys`, then flushes buffered writes.
pub fn prefill<C: BenchCache>(cache: &C, keys: impl IntoIterator<Item = u64>) {
    for key in keys {
        cache.insert(key, key);
    }
    cache.sync();
}

/// How many of `keys` are currently present. Note that this performs real
/// lookups, so it also counts as accesses for the caches' policies.
pub fn count_resident<C: BenchCache>(cache: &C, keys: &[u64]) -> usize {
    keys.iter().filter(|&&k| cache.get(k).is_some()).count()
}

/// The median of `v` (sorted in place; the upper middle for an even length). For the examples
/// that time interleaved rounds.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The value after `--name` on a command line, if present and parseable.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}
