//! Memory overhead per entry: cachet against its peers.
//!
//! A counting global allocator tracks live heap bytes. For each cache we
//! build it with capacity 1,000,000, insert 1,000,000 distinct `u64 -> u64`
//! entries, and report `(live bytes after - live bytes before) / len`, plus
//! the peak seen while filling. Each cache is dropped before the next one is
//! measured.
//!
//! cachet appears four times: without expiration, with `time_to_live` (a timer per entry), with
//! `time_to_idle`, and with both (a timer plus a time-to-live cap per entry);
//! the `vs cachet` column is each row's bytes per entry minus plain cachet's. The lifetimes are
//! an hour, so nothing expires while the cache fills.
//!
//! Run with `cargo run --release --example memory`.

#[path = "common/alloc.rs"]
mod alloc;

use std::num::NonZeroUsize;
use std::time::Duration;

const CAPACITY: usize = 1_000_000;
const ENTRIES: u64 = 1_000_000;
/// Lifetime of the expiring cachet rows: long enough that nothing expires during the fill.
const LIFETIME: Duration = Duration::from_secs(3600);

struct Row {
    name: &'static str,
    len: usize,
    bytes: usize,
    peak: usize,
}

/// Builds a cache with `build`, fills it with `insert`, and reads its length
/// with `len` (after `finish`, which flushes any buffered work) while the
/// cache is still alive. The cache is dropped before this returns.
fn measure<C>(
    name: &'static str,
    build: impl FnOnce() -> C,
    insert: impl Fn(&C, u64, u64),
    finish: impl FnOnce(&C),
    len: impl FnOnce(&C) -> usize,
) -> Row {
    let before = alloc::live();
    alloc::reset_peak();
    let cache = build();
    for key in 0..ENTRIES {
        insert(&cache, key, key);
    }
    finish(&cache);
    let after = alloc::live();
    let peak = alloc::peak();
    let len = len(&cache);
    drop(cache);
    Row {
        name,
        len,
        bytes: after.saturating_sub(before),
        peak: peak.saturating_sub(before),
    }
}

type Builder = cachet::CacheBuilder<u64, u64>;

/// A cachet row: the cache of `configure(builder)` at `CAPACITY` (`|b| b` is what `Cache::new`
/// builds).
fn cachet_row(name: &'static str, configure: fn(Builder) -> Builder) -> Row {
    measure(
        name,
        || {
            configure(cachet::Cache::<u64, u64>::builder().max_capacity(CAPACITY as u64))
                .build()
                .expect("valid configuration")
        },
        |c, k, v| {
            c.insert(k, v);
        },
        |_| {},
        |c| c.len(),
    )
}

fn main() {
    let rows = [
        cachet_row("cachet", |b| b),
        cachet_row("cachet+ttl", |b| b.time_to_live(LIFETIME)),
        cachet_row("cachet+tti", |b| b.time_to_idle(LIFETIME)),
        cachet_row("cachet+ttl+tti", |b| {
            b.time_to_live(LIFETIME).time_to_idle(LIFETIME)
        }),
        measure(
            "quick_cache",
            || quick_cache::sync::Cache::<u64, u64>::new(CAPACITY),
            |c, k, v| c.insert(k, v),
            |_| {},
            |c| c.len(),
        ),
        measure(
            "moka",
            || moka::sync::Cache::<u64, u64>::new(CAPACITY as u64),
            |c, k, v| c.insert(k, v),
            |c| c.run_pending_tasks(),
            |c| c.entry_count() as usize,
        ),
        measure(
            "dashmap (no eviction)",
            || dashmap::DashMap::<u64, u64>::with_capacity(CAPACITY),
            |c, k, v| {
                c.insert(k, v);
            },
            |_| {},
            |c| c.len(),
        ),
        measure(
            "lru + Mutex",
            || {
                let cap = NonZeroUsize::new(CAPACITY).expect("non-zero capacity");
                parking_lot::Mutex::new(lru::LruCache::<u64, u64>::new(cap))
            },
            |c, k, v| {
                c.lock().put(k, v);
            },
            |_| {},
            |c| c.lock().len(),
        ),
    ];

    println!(
        "capacity {CAPACITY}, {ENTRIES} distinct u64 -> u64 inserts (16 bytes of payload per entry)\n"
    );
    println!("| cache | len | live bytes | bytes/entry | peak bytes/entry | vs cachet |");
    println!("|---|---:|---:|---:|---:|---:|");
    let per = |row: &Row, bytes: usize| {
        if row.len == 0 {
            f64::NAN
        } else {
            bytes as f64 / row.len as f64
        }
    };
    let plain = per(&rows[0], rows[0].bytes);
    for row in &rows {
        let vs = if row.name.starts_with("cachet") {
            format!("{:+.1}", per(row, row.bytes) - plain)
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {vs} |",
            row.name,
            row.len,
            row.bytes,
            per(row, row.bytes),
            per(row, row.peak)
        );
    }
}
