//! Single-threaded latency of a hit and of an insert with eviction, cachet (plain and with a
//! time-to-live) beside quick_cache, in interleaved rounds.
//!
//! `cargo run --release --example latency -- [--rounds 9] [--ops 4000000]`
//!
//! The same two operations as `benches/single_thread.rs` (`get_hit`: 100,000 resident keys,
//! lookups from Zipf(0.99); `insert_evict`: a cache full at 100,000, every insert a new key), but
//! measured the way `examples/throughput.rs` measures throughput: every round builds each cache
//! afresh and times it once, in a rotating order, so the noise of a small shared machine falls on
//! all of them alike. Prints the median nanoseconds per operation over the rounds and the median
//! of the per-round ratios, which is steadier than the ratio of two criterion medians taken a
//! minute apart. The targets: a hit at most quick_cache's, an insert at most 1.2x quick_cache's;
//! with a time-to-live, a hit at most 1.25x and an insert at most 1.3x cachet's without.

#[path = "../benches/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{BenchCache, arg, median};

const KEYS: u64 = 100_000;
const STREAM_LEN: usize = 1 << 16;

/// Nanoseconds per hit. Not inlined, so each cache's loop is compiled alike, on its own.
#[inline(never)]
fn get_hit<C: BenchCache>(keys: &[u64], ops: usize) -> f64 {
    let cache = C::with_capacity(2 * KEYS as usize);
    common::prefill(&cache, 0..KEYS);
    let started = Instant::now();
    for i in 0..ops {
        black_box(cache.get(black_box(keys[i & (STREAM_LEN - 1)])));
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

/// Nanoseconds per insert of a new key into a full cache.
#[inline(never)]
fn insert_evict<C: BenchCache>(ops: usize) -> f64 {
    let cache = C::with_capacity(KEYS as usize);
    common::prefill(&cache, 0..KEYS);
    // Warm up into the steady state (the first evictions touch a freshly filled cache).
    for k in KEYS..2 * KEYS {
        cache.insert(k, k);
    }
    let started = Instant::now();
    for k in 2 * KEYS..2 * KEYS + ops as u64 {
        cache.insert(black_box(k), k);
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

const NAMES: [&str; 3] = ["cachet", "cachet_ttl", "quick_cache"];

fn run(which: usize, op: &str, keys: &[u64], ops: usize) -> f64 {
    match (op, which) {
        ("get", 0) => get_hit::<common::Cachet>(keys, ops),
        ("get", 1) => get_hit::<common::CachetTtl>(keys, ops),
        ("get", _) => get_hit::<common::QuickCache>(keys, ops),
        (_, 0) => insert_evict::<common::Cachet>(ops / 4),
        (_, 1) => insert_evict::<common::CachetTtl>(ops / 4),
        _ => insert_evict::<common::QuickCache>(ops / 4),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: latency [--rounds 9] [--ops N]");
        return;
    }
    let rounds: usize = arg(&args, "--rounds").unwrap_or(9).max(1);
    let ops: usize = arg(&args, "--ops").unwrap_or(4_000_000).max(4);
    let keys = common::zipf_keys(KEYS, 0.99, STREAM_LEN, common::SEED);
    println!(
        "| operation | cachet | cachet + ttl | quick_cache | ttl / cachet | cachet / quick_cache |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (op, label) in [
        ("get", "get, hit (ns)"),
        ("insert", "insert with eviction (ns)"),
    ] {
        let mut ns: [Vec<f64>; 3] = Default::default();
        let (mut ttl_ratio, mut qc_ratio) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let mut this = [0.0; 3];
            for i in 0..NAMES.len() {
                let which = (i + r) % NAMES.len();
                this[which] = run(which, op, &keys, ops);
                ns[which].push(this[which]);
            }
            ttl_ratio.push(this[1] / this[0]);
            qc_ratio.push(this[0] / this[2]);
        }
        let m: Vec<f64> = ns.iter_mut().map(|v| median(v)).collect();
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            m[0],
            m[1],
            m[2],
            median(&mut ttl_ratio),
            median(&mut qc_ratio)
        );
    }
    eprintln!(
        "medians of {rounds} interleaved rounds ({ops} hits, {} inserts per cache per round); \
         ratios are medians of the per-round ratios ({:?})",
        ops / 4,
        NAMES
    );
}
