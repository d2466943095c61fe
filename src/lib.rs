//! # cachet
//!
//! A concurrent, size-bounded, in-process cache for answering hot reads from memory instead of a
//! round-trip to a database or another service.
//!
//! ```
//! use cachet::Cache;
//!
//! let cache: Cache<u64, String> = Cache::new(10_000);
//! cache.insert(1, "one".to_string());
//! assert_eq!(cache.get(&1).as_deref(), Some("one"));
//! assert_eq!(cache.get(&2), None);
//! ```
//!
//! ## Eviction policy
//!
//! cachet uses **W-TinyLFU** (Einziger, Friedman and Manes, *TinyLFU: A Highly Efficient Cache
//! Admission Policy*, 2017) whose window and protected queue are sized by ghost entries. Every
//! shard has three queues:
//!
//! - a **window** that every new entry enters, so a burst of new keys can prove itself;
//! - a **probation** queue, fed by the window's oldest entries when they win admission (or were
//!   read while in the window);
//! - a **protected** queue (80% of the main space at start) for probation entries that were read
//!   again.
//!
//! When the window overflows, its oldest unread entry competes with probation's oldest: a
//! count-min sketch of 4-bit counters, aged by halving, estimates how often each was seen
//! recently, and the newcomer is admitted only if it was seen more often by a margin of one. This
//! filter is what makes the cache resist scans and keep the popular working set.
//!
//! One mechanism adapts the policy to the workload: **ghost entries** (hashes of recently
//! departed keys) size the window. A miss on a key that recently left the window unadmitted grows
//! it, as long as the window's own hits vouch for it (a loop just larger than the cache does
//! not); a miss on a key recently evicted from the main space shrinks it. A recency-friendly
//! workload gets a large window (up to 80%, behaving close to LRU), a frequency- or
//! loop-dominated one a small window. The same ghosts split the main space: a miss on a key
//! evicted after protected once held it grows protected, a miss on one never protected grows
//! probation, so a hot set that moves does not leave its dead keys in protected. The policy has
//! 12 tuned constants; `docs/policy.md` explains
//! each on one page, and `examples/hit_ratio.rs` replays real traces beside moka, quick_cache,
//! LRU and the optimum.
//!
//! ## Concurrency
//!
//! The cache is split into shards, each a hash index, a dense slab of entries and the policy
//! state behind one `parking_lot::RwLock`. A key is hashed once; the hash picks the shard.
//!
//! - A **hit** takes the shard's read lock, bumps the entry's access counter (a relaxed atomic,
//!   no longer written once it saturates), clones the value and leaves. No queue is reordered
//!   and no buffer is filled, so there is nothing to drain later: the window is sized from
//!   misses alone, so a hit counts nothing else (unless statistics are on).
//! - **Policy work happens on writes**, under the write lock: the queues are run as second-chance
//!   FIFOs (CLOCK), and an entry's accesses are folded into the frequency sketch when it comes up
//!   for eviction. There is no background thread and no maintenance call to make.
//! - A count-bounded cache gives each shard an even share of its capacity. A **weighted** cache's
//!   shards claim their capacity from one budget as they fill, so `max_capacity` bounds the sum
//!   of all weights whatever the shard count, and an entry may weigh up to all of it (the other
//!   shards then make room).
//!
//! ## Removal notifications
//!
//! [`CacheBuilder::eviction_listener`] is told of every entry that leaves, once, with a
//! [`RemovalCause`]. Removals are collected while a shard is locked and delivered by the thread
//! that caused them once the lock is released, so a listener never runs under a cache lock. A
//! panicking listener never reaches a caller: its panics are caught and counted
//! ([`CacheStats::listener_panics`]). Inspection (`len`, `is_empty`, `weighted_size`, `stats`,
//! `Debug`) runs no user code at all.
//!
//! ## Loading
//!
//! [`Cache::get_or_load`] (and its async, bounded and batch forms, the [`Entry`] API and the
//! [`LoadingCache`]s) runs one load per key at a time, whoever asks; a loader returns a value,
//! an `Option` or a `Result` ([`Loaded`]). A loader that asks the cache for the key it is
//! loading, on the same thread or in the same task, is reported by a panic naming the
//! recursive load instead of waiting for itself forever.
//!
//! ## Expiration
//!
//! [`CacheBuilder::time_to_live`], [`CacheBuilder::time_to_idle`], [`CacheBuilder::expiry`] and
//! [`Cache::insert_with_ttl`] give entries deadlines, in whole milliseconds of the cache's
//! [`Clock`]. An entry is invisible from its deadline on, whether or not it has been removed.
//! Removal is proactive and bounded: each shard files its entries in a hierarchical **timer
//! wheel** (six levels of 64 slots, from 1 ms to 12-day slots), and every write ends by removing
//! at most 1,024 due entries of its shard, then helps one other shard whose work is due if its
//! lock is free; a read that misses does the same for its own shard. A backlog is therefore
//! worked off by ordinary traffic at O(1) amortised cost per operation (an entry is moved at
//! most five times between levels before it expires), and no operation pays for more than one
//! batch. [`Cache::run_pending_maintenance`] removes everything that is due at once, for an idle
//! cache, but is never required.
//!
//! Time-to-idle is recorded by readers under the read lock: they store the new deadline in the
//! entry's atomic deadline word and the wheel refiles the entry lazily when its old slot comes
//! due. The default clock, [`Clock::ticking`], is a shared thread that advances an atomic
//! millisecond counter, so a hit on an expiring cache costs one extra atomic load; the reasons
//! and the measurements are in the `clock` module's notes. [`MockClock`] drives tests.
//!
//! ## Memory
//!
//! Per entry, with `K` and `V` the key and value types:
//!
//! `size_of::<K>() + size_of::<V>() + 16` bytes in the slab (hash, deadline word, two 24-bit
//! list links, an access counter and a queue tag, rounded up to the entry's alignment), plus 5
//! bytes per index bucket (the index keeps between 7/16 and 7/8 of its buckets full), plus 4 to
//! 8 bytes of frequency sketch (a shard below 4,096 entries sizes its sketch for up to 4 times its
//! capacity, at most 16 KiB: sharper counts for small caches), plus 4 bytes of weight when a
//! weigher is set, plus the ghost table (16 KiB per shard, 64 bytes per entry of capacity in a
//! cache below 256 entries, or 0.2 to 0.4 bytes per entry of a count-bounded shard of more than
//! about 80,000 entries). For `u64 -> u64`
//! that is 32 + 6..11 + 4..8, about 45 bytes; `examples/memory.rs` measures it.
//!
//! Expiration adds 6 bytes per entry (two 24-bit timer-wheel links; the deadline word is part
//! of the entry, where a `u64 -> u64` entry had padding), plus 4 bytes when reads can extend a
//! deadline that a time-to-live bounds (time-to-idle or an [`Expiry`] together with a
//! time-to-live or `insert_with_ttl`), and about 1.6 KB per shard. A cache that never gives an
//! entry a deadline allocates none of it.
//!
//! The 24-bit links cap a shard at [`MAX_ENTRIES_PER_SHARD`] (about 16.7 million) entries; a
//! count-bounded cache gets enough shards for its capacity (see [`CacheBuilder::shards`]).
//!
//! ## Feature flags
//!
//! - `metrics`: `Cache::publish_metrics` publishes the [statistics](Cache::stats) through the
//!   [`metrics`](https://docs.rs/metrics) facade, and loads record their latency into a
//!   histogram, so a service's existing exporter (Prometheus or other) picks them up.
//! - `tokio`: `CacheBuilder::build_tokio_loading`, an [`AsyncLoadingCache`] whose background
//!   refreshes are spawned on the current tokio runtime (otherwise, give
//!   [`build_async_loading`](CacheBuilder::build_async_loading) any spawn function).
//! - `redis`: the `tiered` module, cachet in front of Redis: a shared second tier, fleet-wide
//!   stampede protection and invalidation across instances (needs Rust 1.88; brings in the
//!   `redis`, `tokio`, `serde` and `rmp-serde` crates).
//!
//! The default build depends only on `hashbrown`, `parking_lot`, `crossbeam-utils` and
//! `equivalent`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The data path: `cache` (the handle) -> `shard` (one lock's worth of state) -> `slab` (the
// entries), `policy` (eviction) and `expiry` (deadlines and the timer wheel). `config` is what a
// cache is built from; `flight` is the in-flight load state machine the shards hold. The
// front-ends sit on top and only the front-ends know each other: `builder` makes caches,
// `load` adds the loader methods to `Cache`, `loading` the loading caches, `metrics_export`
// publishes statistics.

mod builder;
mod cache;
mod clock;
mod config;
mod error;
mod expiry;
mod flight;
mod listener;
mod load;
mod loaded;
mod loading;
#[cfg(feature = "metrics")]
mod metrics_export;
mod policy;
mod shard;
mod slab;
mod stats;
mod sync;
#[cfg(feature = "redis")]
pub mod tiered;

pub use builder::{CacheBuilder, MAX_REFRESH_THREADS};
pub use cache::{Cache, Compute, Entry, Iter};
pub use clock::{Clock, MockClock};
pub use config::{MAX_ENTRIES_PER_SHARD, MAX_SHARDS};
pub use equivalent::Equivalent;
pub use error::BuildError;
pub use expiry::Expiry;
pub use listener::RemovalCause;
pub use load::Timeout;
pub use loaded::Loaded;
pub use loading::{AsyncLoadingCache, BoxFuture, LoadingCache};
pub use stats::CacheStats;

/// The default hasher: `foldhash`, randomly seeded for each cache, so that keys chosen by an
/// outsider cannot be aimed at one shard or one index slot (hash flooding).
pub type DefaultHashBuilder = hashbrown::DefaultHashBuilder;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The migration guide's examples (every cachet entry of its tables), run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../docs/migration.md")]
struct MigrationDoctests;
