//! Multi-threaded throughput, cachet against its peers.
//!
//! Keys are drawn from Zipf(0.99) over `CACHET_BENCH_KEYS` keys (default
//! 100,000); every cache has capacity 100,000 and is pre-filled with keys
//! `0..min(keys, capacity)` before measuring. Two workloads:
//! - `mt_get_or_insert`: every operation is a `get`; on a miss the key is
//!   inserted (read-mostly once the cache is warm).
//! - `mt_get90_insert10`: 90% `get`, 10% `insert` (pre-decided per operation).
//!
//! Each thread replays its own pre-generated operation stream (different seed
//! per thread), generated outside the timed region. Throughput is reported in
//! elements (= operations, summed over all threads) per second; read the
//! `thrpt` line. Criterion's `time` line is the wall time of one round in which
//! every thread performs one operation, so it is not a per-operation latency.
//!
//! Thread counts come from `CACHET_BENCH_THREADS` (comma separated, default
//! `1,2`). Run with e.g. `CACHET_BENCH_THREADS=1,2,4 cargo bench --bench
//! multi_thread`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};

#[macro_use]
mod common;

use common::BenchCache;

const CAPACITY: u64 = 100_000;
const DEFAULT_KEYS: u64 = 100_000;
/// Per-thread stream length (a power of two).
const STREAM_LEN: usize = 1 << 18;
const MASK: usize = STREAM_LEN - 1;
/// Set in a stream entry when the operation is an insert.
const INSERT_FLAG: u64 = 1 << 63;

#[derive(Clone, Copy)]
enum Workload {
    /// `get`, and `insert` on a miss.
    GetOrInsert,
    /// Entries carrying `INSERT_FLAG` are inserts, the others plain gets.
    Mixed,
}

fn thread_counts() -> Vec<usize> {
    let spec = std::env::var("CACHET_BENCH_THREADS").unwrap_or_else(|_| "1,2".to_owned());
    let counts: Vec<usize> = spec
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad thread count {s:?} in CACHET_BENCH_THREADS"))
        })
        .filter(|&n| n > 0)
        .collect();
    assert!(
        !counts.is_empty(),
        "CACHET_BENCH_THREADS lists no thread count"
    );
    counts
}

fn key_space() -> u64 {
    std::env::var("CACHET_BENCH_KEYS")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .expect("CACHET_BENCH_KEYS must be a number")
        })
        .unwrap_or(DEFAULT_KEYS)
}

/// One stream per thread. With `insert_percent > 0`, that fraction of the
/// entries carries `INSERT_FLAG`.
fn streams(threads: usize, keys: u64, insert_percent: u32, seed: u64) -> Vec<Vec<u64>> {
    (0..threads as u64)
        .map(|t| {
            let stream_seed = seed.wrapping_add(t.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut stream = common::zipf_keys(keys, 0.99, STREAM_LEN, stream_seed);
            let ops = common::uniform_keys(0..100, STREAM_LEN, !stream_seed);
            for (key, op) in stream.iter_mut().zip(ops) {
                if op < u64::from(insert_percent) {
                    *key |= INSERT_FLAG;
                }
            }
            stream
        })
        .collect()
}

#[inline]
fn run_ops<C: BenchCache>(cache: &C, stream: &[u64], start: usize, ops: u64, workload: Workload) {
    for i in 0..ops as usize {
        let entry = stream[start.wrapping_add(i) & MASK];
        match workload {
            Workload::GetOrInsert => {
                if cache.get(entry).is_none() {
                    cache.insert(entry, entry);
                }
            }
            Workload::Mixed => {
                let key = entry & !INSERT_FLAG;
                if entry & INSERT_FLAG != 0 {
                    cache.insert(key, key);
                } else {
                    black_box(cache.get(key));
                }
            }
        }
    }
}

fn throughput<C: BenchCache>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    threads: usize,
    keys: u64,
    streams: &[Vec<u64>],
    workload: Workload,
) {
    let cache = C::with_capacity(CAPACITY as usize);
    common::prefill(&cache, 0..keys.min(CAPACITY));
    // Where the next measurement starts reading each stream, so successive
    // samples do not replay the same prefix.
    let mut offset = 0usize;
    group.throughput(Throughput::Elements(threads as u64));
    group.bench_function(BenchmarkId::new(C::NAME, threads), |b| {
        // One iteration = one operation on every thread.
        b.iter_custom(|iters| {
            let barrier = Barrier::new(threads + 1);
            let start_at = offset;
            offset = offset.wrapping_add(iters as usize);
            let started = std::thread::scope(|s| {
                for stream in &streams[..threads] {
                    let (cache, barrier) = (&cache, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        run_ops(cache, stream, start_at, iters, workload);
                    });
                }
                barrier.wait();
                Instant::now()
            });
            // `scope` returns only after every worker has finished.
            started.elapsed().max(Duration::from_nanos(1))
        })
    });
}

fn bench_workload(c: &mut Criterion, name: &str, insert_percent: u32, workload: Workload) {
    let counts = thread_counts();
    let keys = key_space();
    let max_threads = counts.iter().copied().max().unwrap_or(1);
    let streams = streams(max_threads, keys, insert_percent, common::SEED);
    let mut group = c.benchmark_group(name);
    for &threads in &counts {
        each_cache!(throughput(&mut group, threads, keys, &streams, workload));
    }
    group.finish();
}

fn bench_get_or_insert(c: &mut Criterion) {
    bench_workload(c, "mt_get_or_insert", 0, Workload::GetOrInsert);
}

fn bench_get90_insert10(c: &mut Criterion) {
    bench_workload(c, "mt_get90_insert10", 10, Workload::Mixed);
}

criterion_group! {
    name = benches;
    config = common::criterion_config();
    targets = bench_get_or_insert, bench_get90_insert10
}
criterion_main!(benches);
