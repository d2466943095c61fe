//! Read-mostly throughput of cachet beside its peers, in interleaved rounds.
//!
//! `cargo run --release --example throughput -- [--threads 1,2] [--rounds 7] [--ops 2000000]`
//!
//! Zipf(0.99) over 100,000 keys, capacity 100,000, caches filled first; each thread replays its own
//! pre-generated stream. Two workloads: every operation a `get` with an `insert` on a miss, and
//! 90% `get` / 10% `insert`. Every round runs every cache once, in a rotating order, so background
//! noise on a small machine falls on all of them alike; the table shows the median over rounds
//! of total operations per second, and each cache's ratio to quick_cache's median.
//! (`benches/multi_thread.rs` measures the same with criterion; on 2 noisy cores its two-thread
//! figures swing by tens of percent from run to run, hence this example.)

#[path = "../benches/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{BenchCache, arg, median};

const KEYS: u64 = 100_000;
const CAPACITY: usize = 100_000;
const STREAM_LEN: usize = 1 << 18;
const INSERT_FLAG: u64 = 1 << 63;

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    GetOrInsert,
    Mixed,
}

fn streams(threads: usize, insert_percent: u64) -> Vec<Vec<u64>> {
    (0..threads as u64)
        .map(|t| {
            let seed = common::SEED.wrapping_add(t.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut s = common::zipf_keys(KEYS, 0.99, STREAM_LEN, seed);
            let ops = common::uniform_keys(0..100, STREAM_LEN, !seed);
            for (k, op) in s.iter_mut().zip(ops) {
                if op < insert_percent {
                    *k |= INSERT_FLAG;
                }
            }
            s
        })
        .collect()
}

/// Millions of operations per second for one cache, one round.
fn round<C: BenchCache>(streams: &[Vec<u64>], ops: usize, workload: Workload) -> f64 {
    let cache = C::with_capacity(CAPACITY);
    common::prefill(&cache, 0..KEYS);
    let barrier = std::sync::Barrier::new(streams.len());
    let started = Instant::now();
    std::thread::scope(|s| {
        for stream in streams {
            let (cache, barrier) = (&cache, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..ops {
                    let e = stream[i & (STREAM_LEN - 1)];
                    let k = e & !INSERT_FLAG;
                    if workload == Workload::GetOrInsert || e & INSERT_FLAG == 0 {
                        if black_box(cache.get(k)).is_none() && workload == Workload::GetOrInsert {
                            cache.insert(k, k);
                        }
                    } else {
                        cache.insert(k, k);
                    }
                }
            });
        }
    });
    (ops * streams.len()) as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: throughput [--threads 1,2] [--rounds 7] [--ops N per thread]");
        return;
    }
    let threads: Vec<usize> = arg::<String>(&args, "--threads")
        .unwrap_or_else(|| "1,2".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .collect();
    let rounds: usize = arg(&args, "--rounds").unwrap_or(7).max(1);
    let ops: usize = arg(&args, "--ops").unwrap_or(2_000_000);
    const NAMES: [&str; 5] = ["cachet", "quick_cache", "moka", "dashmap", "lru+mutex"];
    println!(
        "| workload | threads | cachet | quick_cache | moka | dashmap | lru+mutex | cachet / quick_cache |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (workload, label, insert_percent) in [
        (Workload::GetOrInsert, "get, insert on miss", 0),
        (Workload::Mixed, "90% get / 10% insert", 10),
    ] {
        for &t in &threads {
            let streams = streams(t, insert_percent);
            let mut results: [Vec<f64>; 5] = Default::default();
            for r in 0..rounds {
                for i in 0..NAMES.len() {
                    let which = (i + r) % NAMES.len();
                    // moka is ~20x slower: fewer operations keep a round short.
                    let n = if which == 2 { ops / 20 } else { ops };
                    let mops = match which {
                        0 => round::<common::Cachet>(&streams, n, workload),
                        1 => round::<common::QuickCache>(&streams, n, workload),
                        2 => round::<common::Moka>(&streams, n, workload),
                        3 => round::<common::Dash>(&streams, n, workload),
                        _ => round::<common::MutexLru>(&streams, n, workload),
                    };
                    results[which].push(mops);
                }
            }
            let m: Vec<f64> = results.iter_mut().map(|v| median(v)).collect();
            println!(
                "| {label} | {t} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2} |",
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[0] / m[1]
            );
        }
    }
    eprintln!("Mops/s, median of {rounds} interleaved rounds, {ops} operations per thread");
}
