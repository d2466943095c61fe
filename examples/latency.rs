//! Single-threaded latency of a hit and of an insert with eviction, cachet (plain and with a
//! time-to-live) beside quick_cache, in interleaved rounds.
//!
//! ```text
//! cargo run --release --example latency -- [--rounds 9] [--ops 4000000] [--only OP] [--cache NAME]
//! ```
//!
//! Three operations, each on a cache of 100,000 entries:
//! - `get`: a hit. 100,000 resident keys, lookups drawn from Zipf(0.99) (`--ops` of them).
//! - `insert`: an insert with eviction into a cold cache: filled with 100,000 keys and never
//!   read, warmed up with 100,000 more inserts, then `--ops / 4` new keys are timed.
//! - `warm_insert`: an insert with eviction into a warm cache: filled with 100,000 keys, then
//!   1,000,000 reads drawn from Zipf(0.99) over them, then `--ops / 4` new keys are timed. The
//!   reads leave the entries with recorded accesses, which the policy folds in as it evicts: the
//!   case a real workload meets, and the dearer one.
//!
//! Every round builds each cache afresh and times it once, in a rotating order, so the noise of
//! a small shared machine falls on all of them alike. Prints the median nanoseconds per operation
//! over the rounds and the median of the per-round ratios, which is steadier than the ratio of two
//! medians taken a minute apart.
//!
//! `--only OP` runs one operation and `--cache NAME` (`cachet`, `cachet_ttl`, `quick_cache`) one
//! cache. The timed loops are the functions named `measured_*`, so one cache's instructions per
//! operation can be counted with callgrind, deterministically:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*measured*' target/release/examples/latency \
//!     --only warm_insert --cache cachet --rounds 1 --ops 4000000
//! ```
//!
//! (The totals divided by the timed operations, `--ops / 4` for inserts, are per operation.)

#[path = "../benches/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;

use std::hint::black_box;
use std::ops::Range;
use std::time::Instant;

use common::{BenchCache, arg, median};

/// Entries in every cache, and resident keys for the hits.
const KEYS: u64 = 100_000;
/// Reads that warm the cache before `warm_insert` times its inserts.
const WARM_READS: usize = 1_000_000;
const STREAM_LEN: usize = 1 << 16;

/// Nanoseconds per hit. Not inlined, so each cache's loop is compiled alike, on its own.
#[inline(never)]
fn measured_get<C: BenchCache>(cache: &C, keys: &[u64], ops: usize) -> f64 {
    let started = Instant::now();
    for i in 0..ops {
        black_box(cache.get(black_box(keys[i & (STREAM_LEN - 1)])));
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

/// Nanoseconds per insert of a new key from `keys` into a full cache.
#[inline(never)]
fn measured_insert<C: BenchCache>(cache: &C, keys: Range<u64>) -> f64 {
    let ops = keys.end - keys.start;
    let started = Instant::now();
    for k in keys {
        cache.insert(black_box(k), k);
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}

fn get_hit<C: BenchCache>(keys: &[u64], ops: usize) -> f64 {
    let cache = C::with_capacity(2 * KEYS as usize);
    common::prefill(&cache, 0..KEYS);
    measured_get(&cache, keys, ops)
}

/// A cache that was filled and never read.
fn insert_cold<C: BenchCache>(ops: usize) -> f64 {
    let cache = C::with_capacity(KEYS as usize);
    common::prefill(&cache, 0..KEYS);
    // Into the steady state (the first evictions touch a freshly filled cache).
    for k in KEYS..2 * KEYS {
        cache.insert(k, k);
    }
    measured_insert(&cache, 2 * KEYS..2 * KEYS + ops as u64)
}

/// A cache that was filled, then read from a skewed distribution.
fn insert_warm<C: BenchCache>(reads: &[u64], ops: usize) -> f64 {
    let cache = C::with_capacity(KEYS as usize);
    common::prefill(&cache, 0..KEYS);
    for &k in reads {
        black_box(cache.get(k));
    }
    measured_insert(&cache, KEYS..KEYS + ops as u64)
}

const NAMES: [&str; 3] = ["cachet", "cachet_ttl", "quick_cache"];
const OPS: [(&str, &str); 3] = [
    ("get", "get, hit (ns)"),
    ("insert", "insert with eviction, cold cache (ns)"),
    ("warm_insert", "insert with eviction, warm cache (ns)"),
];

/// The workloads' keys, drawn once.
struct Keys {
    hits: Vec<u64>,
    warm: Vec<u64>,
}

fn run(which: usize, op: &str, keys: &Keys, ops: usize) -> f64 {
    match (op, which) {
        ("get", 0) => get_hit::<common::Cachet>(&keys.hits, ops),
        ("get", 1) => get_hit::<common::CachetTtl>(&keys.hits, ops),
        ("get", _) => get_hit::<common::QuickCache>(&keys.hits, ops),
        ("insert", 0) => insert_cold::<common::Cachet>(ops / 4),
        ("insert", 1) => insert_cold::<common::CachetTtl>(ops / 4),
        ("insert", _) => insert_cold::<common::QuickCache>(ops / 4),
        (_, 0) => insert_warm::<common::Cachet>(&keys.warm, ops / 4),
        (_, 1) => insert_warm::<common::CachetTtl>(&keys.warm, ops / 4),
        _ => insert_warm::<common::QuickCache>(&keys.warm, ops / 4),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: latency [--rounds 9] [--ops N] [--only get|insert|warm_insert] \
             [--cache cachet|cachet_ttl|quick_cache]"
        );
        return;
    }
    let rounds: usize = arg(&args, "--rounds").unwrap_or(9).max(1);
    let ops: usize = arg(&args, "--ops").unwrap_or(4_000_000).max(4);
    let only: Option<String> = arg(&args, "--only");
    let cache: Option<String> = arg(&args, "--cache");
    if only
        .as_ref()
        .is_some_and(|o| !OPS.iter().any(|(op, _)| op == o))
    {
        eprintln!("--only: one of get, insert, warm_insert");
        std::process::exit(2);
    }
    let caches: Vec<usize> = match &cache {
        Some(c) => match NAMES.iter().position(|n| n == c) {
            Some(i) => vec![i],
            None => {
                eprintln!("--cache: one of {NAMES:?}");
                std::process::exit(2);
            }
        },
        None => (0..NAMES.len()).collect(),
    };
    let keys = Keys {
        hits: common::zipf_keys(KEYS, 0.99, STREAM_LEN, common::SEED),
        warm: common::zipf_keys(KEYS, 0.99, WARM_READS, common::SEED + 1),
    };
    println!(
        "| operation | cachet | cachet + ttl | quick_cache | ttl / cachet | cachet / quick_cache |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (op, label) in OPS {
        if only.as_deref().is_some_and(|o| o != op) {
            continue;
        }
        let mut ns: [Vec<f64>; 3] = Default::default();
        let (mut ttl_ratio, mut qc_ratio) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let mut this = [f64::NAN; 3];
            for i in 0..caches.len() {
                let which = caches[(i + r) % caches.len()];
                this[which] = run(which, op, &keys, ops);
                ns[which].push(this[which]);
            }
            ttl_ratio.push(this[1] / this[0]);
            qc_ratio.push(this[0] / this[2]);
        }
        let m: Vec<f64> = ns
            .iter_mut()
            .map(|v| if v.is_empty() { f64::NAN } else { median(v) })
            .collect();
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
