//! Single-threaded latency of the basic operations, cachet against its peers.
//!
//! Groups (each contains cachet, quick_cache, moka, dashmap and lru+mutex):
//! - `get_hit`: 100,000 resident keys (capacity 200,000 so that no cache has
//!   any reason to evict), lookups drawn from Zipf(0.99) over those keys.
//! - `get_miss`: same pre-filled caches, lookups of keys that were never
//!   inserted (uniform over a disjoint range).
//! - `insert_evict`: cache full at capacity 100,000; every insert is a new,
//!   never-seen key, so every insert forces one eviction (or an admission
//!   rejection). dashmap does not evict, so it is measured as insert + remove
//!   of the oldest key (a FIFO with a perfect, free policy). moka buffers
//!   writes and applies them in batches; its number is what `insert()` costs
//!   a caller, with the amortised maintenance included.
//!
//! cachet is measured three ways, one after the other at the head of each group, so that one
//! run compares them under the same conditions: `cachet` (no expiration), `cachet_ttl`
//! (`time_to_live` of an hour with the default ticking clock: every entry has a deadline and
//! every hit checks it) and, for `get_hit`, `cachet_tti` (`time_to_idle` of an hour: every hit
//! also stores a new deadline). Nothing expires during a run. The targets: a hit with
//! expiration at most 1.25x one without, an insert with eviction at most 1.3x.
//!
//! `cachet_stats` in `get_hit` is `get` with `record_stats` (target: at most 1.1x `get`).
//!
//! `cachet_get_or_load` in `get_hit` is `get_or_load` on the same hits (target: at most 1.1x
//! `get`).
//!
//! Run with `cargo bench --bench single_thread` (only cachet's rows:
//! `cargo bench --bench single_thread -- cachet`).

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

#[macro_use]
mod common;

use common::BenchCache;

/// Number of distinct resident keys for the lookup benchmarks.
const KEYS: u64 = 100_000;
/// Capacity for the eviction benchmark.
const EVICT_CAPACITY: u64 = 100_000;
/// Length of the pre-generated lookup streams (a power of two).
const STREAM_LEN: usize = 1 << 16;
const MASK: usize = STREAM_LEN - 1;

fn get_hit<C: BenchCache>(group: &mut BenchmarkGroup<'_, WallTime>, keys: &[u64]) {
    let cache = C::with_capacity(2 * KEYS as usize);
    common::prefill(&cache, 0..KEYS);
    let resident = common::count_resident(&cache, keys);
    if resident != keys.len() {
        eprintln!(
            "warning: {}: only {resident}/{} lookups hit after pre-fill (len {})",
            C::NAME,
            keys.len(),
            cache.len()
        );
    }
    let mut i = 0usize;
    group.bench_function(C::NAME, |b| {
        b.iter(|| {
            let key = keys[i & MASK];
            i = i.wrapping_add(1);
            black_box(cache.get(black_box(key)))
        })
    });
}

/// `get_or_load` on a hit, beside a plain `get` hit on the same keys in the same run (target: at
/// most 1.1x).
fn get_or_load_hit(group: &mut BenchmarkGroup<'_, WallTime>, keys: &[u64]) {
    let cache = cachet::Cache::<u64, u64>::new(2 * KEYS);
    for k in 0..KEYS {
        cache.insert(k, k);
    }
    let mut i = 0usize;
    group.bench_function("cachet_get_or_load", |b| {
        b.iter(|| {
            let key = keys[i & MASK];
            i = i.wrapping_add(1);
            black_box(cache.get_or_load(&black_box(key), || -> u64 {
                unreachable!("every key is resident")
            }))
        })
    });
}

fn get_miss<C: BenchCache>(group: &mut BenchmarkGroup<'_, WallTime>, keys: &[u64]) {
    let cache = C::with_capacity(2 * KEYS as usize);
    common::prefill(&cache, 0..KEYS);
    let mut i = 0usize;
    group.bench_function(C::NAME, |b| {
        b.iter(|| {
            let key = keys[i & MASK];
            i = i.wrapping_add(1);
            black_box(cache.get(black_box(key)))
        })
    });
}

fn insert_evict<C: BenchCache>(group: &mut BenchmarkGroup<'_, WallTime>) {
    let cache = C::with_capacity(EVICT_CAPACITY as usize);
    common::prefill(&cache, 0..EVICT_CAPACITY);
    // The next never-seen key; shared by warm-up and all samples.
    let mut next = EVICT_CAPACITY;
    group.bench_function(C::NAME, |b| {
        b.iter(|| {
            let key = black_box(next);
            next += 1;
            cache.insert(key, key);
            if !C::EVICTS {
                cache.remove(key - EVICT_CAPACITY);
            }
        })
    });
    cache.sync();
    let len = cache.len() as u64;
    if len > EVICT_CAPACITY + EVICT_CAPACITY / 10 {
        eprintln!(
            "warning: {}: len {len} exceeds capacity {EVICT_CAPACITY}",
            C::NAME
        );
    }
}

fn bench_get_hit(c: &mut Criterion) {
    let keys = common::zipf_keys(KEYS, 0.99, STREAM_LEN, common::SEED);
    let mut group = c.benchmark_group("get_hit");
    group.throughput(Throughput::Elements(1));
    get_hit::<common::Cachet>(&mut group, &keys);
    get_hit::<common::CachetStats>(&mut group, &keys);
    get_or_load_hit(&mut group, &keys);
    get_hit::<common::CachetTtl>(&mut group, &keys);
    get_hit::<common::CachetTti>(&mut group, &keys);
    each_peer!(get_hit(&mut group, &keys));
    group.finish();
}

fn bench_get_miss(c: &mut Criterion) {
    // Disjoint from the resident keys 0..KEYS.
    let keys = common::uniform_keys(1 << 40..1 << 41, STREAM_LEN, common::SEED + 1);
    let mut group = c.benchmark_group("get_miss");
    group.throughput(Throughput::Elements(1));
    get_miss::<common::Cachet>(&mut group, &keys);
    get_miss::<common::CachetTtl>(&mut group, &keys);
    each_peer!(get_miss(&mut group, &keys));
    group.finish();
}

fn bench_insert_evict(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_evict");
    group.throughput(Throughput::Elements(1));
    insert_evict::<common::Cachet>(&mut group);
    insert_evict::<common::CachetTtl>(&mut group);
    each_peer!(insert_evict(&mut group));
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = bench_get_hit, bench_get_miss, bench_insert_evict
}
criterion_main!(benches);
