//! One operation in a loop, for counting instructions and cache misses under callgrind.
//!
//! ```text
//! cargo build --release --example op_loop
//! valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*measured*' \
//!     target/release/examples/op_loop insert cachet_ttl
//! ```
//!
//! `op_loop <insert|update|get|miss> <cachet|cachet_ttl|cachet_tti|quick_cache>`. `insert`:
//! 1,000,000 new keys into a cache full at 100,000 (warmed up with 200,000 inserts first);
//! `update`: 1,000,000 inserts of resident keys (a new value each) into a cache with room for twice
//! them; `get`: 1,000,000 hits; keys uniform over 100,000 resident ones (`miss`: over 100,000
//! absent ones). Only the measured loop (`measured_*`) is collected, so the totals divided by
//! 1,000,000 are per operation. Wall-clock belongs to `examples/latency.rs`; callgrind's counts are
//! deterministic (up to the per-cache random hash seed, a few instructions either way), which makes
//! them the tool for A/B comparisons on a noisy machine.

#[path = "../benches/common/mod.rs"]
#[macro_use]
#[allow(unused_macros)]
mod common;

use std::hint::black_box;

use common::BenchCache;

const KEYS: u64 = 100_000;
const OPS: u64 = 1_000_000;

#[inline(never)]
fn fill<C: BenchCache>(cache: &C, keys: std::ops::Range<u64>) {
    for k in keys {
        cache.insert(black_box(k), k);
    }
}

#[inline(never)]
fn measured_insert<C: BenchCache>(cache: &C, keys: std::ops::Range<u64>) {
    for k in keys {
        cache.insert(black_box(k), k);
    }
}

#[inline(never)]
fn measured_update<C: BenchCache>(cache: &C, keys: &[u64]) {
    for &k in keys {
        cache.insert(black_box(k), k + 1);
    }
}

#[inline(never)]
fn measured_get<C: BenchCache>(cache: &C, keys: &[u64]) -> u64 {
    let mut sum = 0;
    for &k in keys {
        sum += black_box(cache.get(black_box(k))).unwrap_or(0);
    }
    sum
}

fn run<C: BenchCache>(op: &str) {
    if op == "insert" {
        let cache = C::with_capacity(KEYS as usize);
        fill(&cache, 0..2 * KEYS);
        measured_insert(&cache, 2 * KEYS..2 * KEYS + OPS);
        println!("{} inserts, {} resident", OPS, cache.len());
    } else {
        let cache = C::with_capacity(2 * KEYS as usize);
        fill(&cache, 0..KEYS);
        let range = if op == "miss" {
            KEYS..2 * KEYS
        } else {
            0..KEYS
        };
        let keys = common::uniform_keys(range, OPS as usize, common::SEED);
        if op == "update" {
            measured_update(&cache, &keys);
            println!("{} updates, {} resident", keys.len(), cache.len());
        } else {
            let sum = measured_get(&cache, &keys);
            println!("{} gets, checksum {sum}", keys.len());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (op, cache) = match args.as_slice() {
        [op, cache] if ["insert", "get", "miss", "update"].contains(&op.as_str()) => {
            (op.as_str(), cache.as_str())
        }
        _ => {
            eprintln!(
                "usage: op_loop <insert|update|get|miss> <cachet|cachet_ttl|cachet_tti|quick_cache>"
            );
            std::process::exit(2);
        }
    };
    match cache {
        "cachet" => run::<common::Cachet>(op),
        "cachet_ttl" => run::<common::CachetTtl>(op),
        "cachet_tti" => run::<common::CachetTti>(op),
        "quick_cache" => run::<common::QuickCache>(op),
        other => {
            eprintln!("unknown cache {other:?}");
            std::process::exit(2);
        }
    }
}
