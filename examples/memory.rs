//! Memory overhead per entry: cachet against its peers.
//!
//! A counting global allocator tracks live heap bytes. For each cache we
//! build it with capacity 1,000,000, insert 1,000,000 distinct `u64 -> u64`
//! entries, and report `(live bytes after - live bytes before) / len`, plus
//! the peak seen while filling. Each cache is dropped before the next one is
//! measured.
//!
//! Run with `cargo run --release --example memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Forwards every request to [`System`] and counts the bytes currently live.
struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

impl CountingAlloc {
    fn grew(bytes: usize) {
        let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK.fetch_max(live, Ordering::Relaxed);
    }

    fn shrank(bytes: usize) {
        LIVE.fetch_sub(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards the caller's arguments unchanged to `System`,
// which upholds the `GlobalAlloc` contract; the only extra work is updating
// atomic counters, which neither allocates nor touches the returned memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller guarantees `layout` has non-zero size, exactly as
        // `System.alloc` requires.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as `alloc`, forwarded unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` was returned by this allocator
        // (hence by `System`) with this same `layout`.
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence
        // from `System`) with `layout`, and that `new_size` is valid for it.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            // On failure the old block stays allocated and the count is unchanged.
            Self::shrank(layout.size());
            Self::grew(new_size);
        }
        new_ptr
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const CAPACITY: usize = 1_000_000;
const ENTRIES: u64 = 1_000_000;

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
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let cache = build();
    for key in 0..ENTRIES {
        insert(&cache, key, key);
    }
    finish(&cache);
    let after = LIVE.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    let len = len(&cache);
    drop(cache);
    Row {
        name,
        len,
        bytes: after.saturating_sub(before),
        peak: peak.saturating_sub(before),
    }
}

fn main() {
    let rows = [
        measure(
            "cachet",
            || cachet::Cache::<u64, u64>::new(CAPACITY as u64),
            |c, k, v| {
                c.insert(k, v);
            },
            |_| {},
            |c| c.len(),
        ),
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
    println!("| cache | len | live bytes | bytes/entry | peak bytes/entry |");
    println!("|---|---:|---:|---:|---:|");
    for row in &rows {
        let per = |bytes: usize| {
            if row.len == 0 {
                f64::NAN
            } else {
                bytes as f64 / row.len as f64
            }
        };
        println!(
            "| {} | {} | {} | {:.1} | {:.1} |",
            row.name,
            row.len,
            row.bytes,
            per(row.bytes),
            per(row.peak)
        );
    }
}
