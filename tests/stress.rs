//! Multi-threaded stress: four threads share one cache and mix every operation on overlapping
//! keys. The run is bounded by an operation count, never by time, and nothing about timing is
//! asserted.
//!
//! Values encode who wrote them: `v = key * 1_000_000 + version`, `version = thread * 250_000 + i`
//! where `i` is the writing thread's operation number. Thread `t` only writes (inserts, removes)
//! keys with `key % THREADS == t`, and it publishes `i` *before* inserting, so whenever any thread
//! reads a value it can check that
//!
//! - the value belongs to the key it asked for, and was written by that key's owner,
//! - the owner had already reached operation `i` (the value was really inserted, not invented),
//! - for the reader's own keys: the value is exactly the last one it inserted (no other thread
//!   writes them), and nothing is returned after the reader removed the key.
//!
//! Other threads' `retain` and `invalidate_all`, and evictions, may make an owned key disappear at
//! any time; that is always allowed. Periodically and at the end `validate()` must be Ok and the
//! weighted size within the capacity.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use cachet::{Cache, Equivalent};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

const THREADS: usize = 4;
const VERSIONS_PER_THREAD: u64 = 250_000;
const KEY_FACTOR: u64 = 1_000_000;

/// A key type the stress can run on, with the type it is looked up by.
trait StressKey: Hash + Eq + Clone + Debug + Send + Sync {
    type Query: ?Sized + Hash + Equivalent<Self>;
    fn make(n: u64) -> Self;
    fn number(&self) -> u64;
    fn query(&self) -> &Self::Query;
}

impl StressKey for u64 {
    type Query = u64;
    fn make(n: u64) -> Self {
        n
    }
    fn number(&self) -> u64 {
        *self
    }
    fn query(&self) -> &u64 {
        self
    }
}

/// Looked up by `&str`.
impl StressKey for String {
    type Query = str;
    fn make(n: u64) -> Self {
        format!("key-{n}")
    }
    fn number(&self) -> u64 {
        self.strip_prefix("key-").unwrap().parse().unwrap()
    }
    fn query(&self) -> &str {
        self.as_str()
    }
}

struct Plan {
    keys: u64,
    ops_per_thread: u64,
    /// Weight of a value, when the cache is weighted: must match the cache's weigher.
    weigh: Option<fn(u64) -> u32>,
}

struct Shared {
    /// Per thread: the highest operation number whose value it has started to insert.
    published: [AtomicU64; THREADS],
    /// Total retains, invalidations and full iterations, to check the mix really ran them.
    rare_ops: AtomicU64,
}

fn encode(key: u64, thread: usize, i: u64) -> u64 {
    assert!(i < VERSIONS_PER_THREAD);
    key * KEY_FACTOR + thread as u64 * VERSIONS_PER_THREAD + i
}

impl Plan {
    /// Panics unless `v` is a value some thread really inserted for `key`.
    fn check_value(&self, shared: &Shared, key: u64, v: u64, what: &str) {
        assert_eq!(
            v / KEY_FACTOR,
            key,
            "{what}: value {v} belongs to another key than {key}"
        );
        let version = v % KEY_FACTOR;
        let (thread, i) = (
            (version / VERSIONS_PER_THREAD) as usize,
            version % VERSIONS_PER_THREAD % HEAVY_OFFSET,
        );
        assert_eq!(
            thread,
            key as usize % THREADS,
            "{what}: {key} -> {v} written by a non-owner"
        );
        assert!(i >= 1, "{what}: {key} -> {v} was never inserted");
        let reached = shared.published[thread].load(Ordering::Acquire);
        assert!(
            i <= reached,
            "{what}: {key} -> {v} from the future (owner at {reached})"
        );
        if let Some(weigh) = self.weigh {
            assert!(weigh(v) < HEAVY, "{what}: a too-heavy value {v} was stored");
        }
    }
}

/// Weight given to values that must never be stored (heavier than any shard's share).
const HEAVY: u32 = 100_000;

fn check_whole<K: StressKey, S: BuildHasher>(cache: &Cache<K, u64, S>, plan: &Plan) {
    if let Err(e) = cache.validate() {
        panic!("validate: {e}");
    }
    let size = cache.weighted_size();
    assert!(
        size <= cache.capacity(),
        "weighted_size {size} > capacity {}",
        cache.capacity()
    );
    if plan.weigh.is_none() {
        assert!(cache.len() as u64 <= cache.capacity());
    }
}

fn worker<K: StressKey, S: BuildHasher + Send + Sync>(
    cache: &Cache<K, u64, S>,
    plan: &Plan,
    shared: &Shared,
    thread: usize,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    // For the keys this thread owns: the value it last inserted and has not removed since.
    let mut mine: HashMap<u64, u64> = HashMap::new();
    let pick = |rng: &mut SmallRng| -> u64 {
        if rng.random_bool(0.5) {
            rng.random_range(0..64)
        } else {
            rng.random_range(0..plan.keys)
        }
    };
    let check_own = |mine: &HashMap<u64, u64>, k: u64, got: Option<u64>, what: &str| {
        if k as usize % THREADS == thread
            && let Some(v) = got
        {
            assert_eq!(
                mine.get(&k),
                Some(&v),
                "{what}: thread {thread} reads {k} -> {v}, not what it last wrote"
            );
        }
    };
    for i in 1..=plan.ops_per_thread {
        let roll = rng.random_range(0..10_000u32);
        let n = pick(&mut rng);
        let key = K::make(n);
        match roll {
            0..4000 => {
                let got = cache.get(key.query());
                if let Some(v) = got {
                    plan.check_value(shared, n, v, "get");
                }
                check_own(&mine, n, got, "get");
            }
            4000..5000 => {
                let got = cache.peek(key.query());
                if let Some(v) = got {
                    plan.check_value(shared, n, v, "peek");
                }
                check_own(&mine, n, got, "peek");
            }
            5000..5500 => {
                let present = cache.contains_key(key.query());
                if present && n as usize % THREADS == thread {
                    assert!(
                        mine.contains_key(&n),
                        "contains_key: {n} was removed by its owner"
                    );
                }
            }
            5500..9000 => {
                // Write one of this thread's own keys.
                let n = n - n % THREADS as u64 + thread as u64;
                let heavy = plan.weigh.is_some() && rng.random_range(0..50u32) == 0;
                // Heavy values are encoded with a version the weigher recognises.
                let v = encode(n, thread, i) + if heavy { HEAVY_OFFSET } else { 0 };
                shared.published[thread].store(i, Ordering::Release);
                let old = cache.insert(K::make(n), v);
                if let Some(o) = old {
                    plan.check_value(shared, n, o, "insert");
                }
                check_own(&mine, n, old, "insert");
                if heavy {
                    mine.remove(&n);
                } else {
                    mine.insert(n, v);
                }
            }
            9000..9990 => {
                let n = n - n % THREADS as u64 + thread as u64;
                let got = cache.remove(K::make(n).query());
                if let Some(v) = got {
                    plan.check_value(shared, n, v, "remove");
                }
                check_own(&mine, n, got, "remove");
                mine.remove(&n);
            }
            9990..9995 => {
                shared.rare_ops.fetch_add(1, Ordering::Relaxed);
                let mut seen = HashSet::new();
                for (k, v) in cache.iter() {
                    let kn = k.number();
                    assert!(seen.insert(kn), "iter yielded {kn} twice");
                    plan.check_value(shared, kn, v, "iter");
                    check_own(&mine, kn, Some(v), "iter");
                }
                if plan.weigh.is_none() {
                    assert!(seen.len() as u64 <= cache.capacity());
                }
            }
            9995..9999 => {
                shared.rare_ops.fetch_add(1, Ordering::Relaxed);
                let drop_class = rng.random_range(0..16u64);
                cache.retain(|k, &v| {
                    let kn = k.number();
                    plan.check_value(shared, kn, v, "retain");
                    check_own(&mine, kn, Some(v), "retain");
                    kn % 16 != drop_class
                });
                mine.retain(|&k, _| k % 16 != drop_class);
            }
            _ => {
                shared.rare_ops.fetch_add(1, Ordering::Relaxed);
                cache.invalidate_all();
                mine.clear();
            }
        }
        if i % 256 == 0 {
            let size = cache.weighted_size();
            assert!(size <= cache.capacity(), "weighted_size {size} > capacity");
        }
        if i % 8192 == 0 {
            check_whole(cache, plan);
        }
    }
}

/// Added to the version of a value the weigher must find too heavy to store. Light versions are
/// `1..HEAVY_OFFSET` (`ops_per_thread` stays below it), heavy ones `HEAVY_OFFSET + i`, both within
/// the thread's `VERSIONS_PER_THREAD`.
const HEAVY_OFFSET: u64 = 125_000;

fn weigh_stress(v: u64) -> u32 {
    let i = v % KEY_FACTOR % VERSIONS_PER_THREAD;
    if i >= HEAVY_OFFSET {
        HEAVY
    } else {
        (v % 7) as u32 // 0..=6, zero counting as one
    }
}

fn run<K: StressKey, S: BuildHasher + Send + Sync>(cache: Cache<K, u64, S>, plan: Plan) {
    assert!(plan.ops_per_thread < HEAVY_OFFSET);
    let shared = Shared {
        published: std::array::from_fn(|_| AtomicU64::new(0)),
        rare_ops: AtomicU64::new(0),
    };
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (cache, plan, shared) = (&cache, &plan, &shared);
            s.spawn(move || worker(cache, plan, shared, t, 0x5EED + t as u64));
        }
    });
    assert!(
        shared.rare_ops.load(Ordering::Relaxed) > 0,
        "the mix ran no rare operation"
    );

    // Quiescent now: everything must agree exactly.
    check_whole(&cache, &plan);
    let pairs: Vec<(K, u64)> = cache.iter().collect();
    assert_eq!(pairs.len(), cache.len());
    let mut weight = 0;
    let mut seen = HashSet::new();
    for (k, v) in &pairs {
        assert!(seen.insert(k.number()), "iter yielded {k:?} twice");
        plan.check_value(&shared, k.number(), *v, "final iter");
        assert_eq!(cache.peek(k.query()), Some(*v));
        weight += plan.weigh.map_or(1, |w| u64::from(w(*v).max(1)));
    }
    assert_eq!(cache.weighted_size(), weight);
    assert!(
        !pairs.is_empty(),
        "the cache ended empty: the mix did not exercise much"
    );
    // The cache is still fully usable.
    cache.invalidate_all();
    assert!(cache.is_empty());
    cache.insert(K::make(7), 7 * KEY_FACTOR);
    assert_eq!(cache.get(K::make(7).query()), Some(7 * KEY_FACTOR));
    cache.validate().unwrap();
}

const OPS: u64 = 120_000;

#[test]
fn stress_count_bounded() {
    let cache = Cache::builder()
        .max_capacity(512)
        .shards(4)
        .build()
        .unwrap();
    run::<u64, _>(
        cache,
        Plan {
            keys: 2048,
            ops_per_thread: OPS,
            weigh: None,
        },
    );
}

/// A single shard: every thread contends on one lock.
#[test]
fn stress_single_shard() {
    let cache = Cache::new(300);
    assert_eq!(cache.shard_count(), 1);
    run::<u64, _>(
        cache,
        Plan {
            keys: 1024,
            ops_per_thread: OPS,
            weigh: None,
        },
    );
}

#[test]
fn stress_weighted() {
    let cache = Cache::builder()
        .max_capacity(2000)
        .shards(4)
        .weigher(|_k: &u64, v: &u64| weigh_stress(*v))
        .build()
        .unwrap();
    run::<u64, _>(
        cache,
        Plan {
            keys: 2048,
            ops_per_thread: OPS,
            weigh: Some(weigh_stress),
        },
    );
}

#[test]
fn stress_string_keys_looked_up_by_str() {
    let cache: Cache<String, u64> = Cache::builder()
        .max_capacity(400)
        .shards(2)
        .build()
        .unwrap();
    run::<String, _>(
        cache,
        Plan {
            keys: 1500,
            ops_per_thread: OPS / 2,
            weigh: None,
        },
    );
}

/// Handles are cloned into `'static` threads; all of them see one cache.
#[test]
fn cloned_handles_share_one_cache() {
    let cache: Cache<u64, u64> = Cache::new(10_000);
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                for k in 0..1000 {
                    cache.insert(t * 1000 + k, k);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(cache.len(), 4000);
    for t in 0..THREADS as u64 {
        for k in 0..1000 {
            assert_eq!(cache.get(&(t * 1000 + k)), Some(k));
        }
    }
    cache.validate().unwrap();
}
