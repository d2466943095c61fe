//! The tiered cache's statistics: counted on the paths that leave the process (an L1 hit
//! counts nothing here), summed when a snapshot is taken.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::CacheStats;

/// A snapshot of a [`TieredCache`](super::TieredCache)'s statistics.
///
/// The in-process tier's own figures (hits, misses, evictions) are in `l1`, when its builder
/// has [`record_stats`](crate::CacheBuilder::record_stats).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TieredStats {
    /// Values found in Redis after an L1 miss.
    pub l2_hits: u64,
    /// L1 misses that Redis could not answer either (absent, or not decodable).
    pub l2_misses: u64,
    /// Redis commands that failed (connection lost, server error, a value that did not decode).
    pub l2_errors: u64,
    /// Redis commands that took longer than the command timeout.
    pub l2_timeouts: u64,
    /// Round trips to Redis for reads, writes and [`sync_invalidations`] (heartbeats and
    /// connecting are not counted).
    ///
    /// [`sync_invalidations`]: super::TieredCache::sync_invalidations
    pub round_trips: u64,
    /// Loader runs (the database queries this instance made).
    pub loads: u64,
    /// Keys named by invalidation messages from Redis.
    pub invalidations_received: u64,
    /// Times the in-process tier was emptied: on losing the invalidation bus, on getting it
    /// back, and on a `FLUSHALL` / `FLUSHDB`.
    pub flushes: u64,
    /// Times an L1 miss found another instance loading the key (its lease taken) and waited.
    pub lease_waits: u64,
    /// Times this instance gave up waiting for another's lease and loaded the key itself.
    pub lease_timeouts: u64,
    /// Connections established to Redis (the first one included).
    pub connects: u64,
    /// Time spent without a trusted invalidation bus (reads then bypass L1 and, while Redis is
    /// unreachable, go straight to the loader), the time before the first connection included.
    pub time_degraded: Duration,
    /// Whether the invalidation bus is up now.
    pub connected: bool,
    /// The in-process tier's statistics.
    pub l1: CacheStats,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) l2_hits: AtomicU64,
    pub(super) l2_misses: AtomicU64,
    pub(super) l2_errors: AtomicU64,
    pub(super) l2_timeouts: AtomicU64,
    pub(super) round_trips: AtomicU64,
    pub(super) loads: AtomicU64,
    pub(super) invalidations: AtomicU64,
    pub(super) flushes: AtomicU64,
    pub(super) lease_waits: AtomicU64,
    pub(super) lease_timeouts: AtomicU64,
    pub(super) connects: AtomicU64,
    degraded: Mutex<Degraded>,
}

#[derive(Default)]
struct Degraded {
    /// Completed degraded periods.
    total: Duration,
    /// The start of the current one, if degraded now.
    since: Option<Instant>,
}

/// Adds one to a counter. Sequentially consistent, so that a snapshot that sees a count also
/// sees what was done before it was counted (the L1 removal before an invalidation's count).
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

impl Counters {
    pub(super) fn new() -> Self {
        let counters = Counters::default();
        counters.degraded.lock().since = Some(Instant::now());
        counters
    }

    pub(super) fn went_down(&self) {
        let mut d = self.degraded.lock();
        d.since.get_or_insert_with(Instant::now);
    }

    pub(super) fn came_up(&self) {
        let mut d = self.degraded.lock();
        if let Some(since) = d.since.take() {
            d.total += since.elapsed();
        }
    }

    pub(super) fn snapshot(&self, connected: bool, l1: CacheStats) -> TieredStats {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        let time_degraded = {
            let d = self.degraded.lock();
            d.total + d.since.map_or(Duration::ZERO, |s| s.elapsed())
        };
        TieredStats {
            l2_hits: get(&self.l2_hits),
            l2_misses: get(&self.l2_misses),
            l2_errors: get(&self.l2_errors),
            l2_timeouts: get(&self.l2_timeouts),
            round_trips: get(&self.round_trips),
            loads: get(&self.loads),
            invalidations_received: get(&self.invalidations),
            flushes: get(&self.flushes),
            lease_waits: get(&self.lease_waits),
            lease_timeouts: get(&self.lease_timeouts),
            connects: get(&self.connects),
            time_degraded,
            connected,
            l1,
        }
    }
}

#[cfg(feature = "metrics")]
impl TieredStats {
    /// Publishes the snapshot through the `metrics` facade under the label `cache = name`.
    pub(super) fn publish(&self, name: &str) {
        let counters = [
            ("cachet_l2_hits_total", self.l2_hits),
            ("cachet_l2_misses_total", self.l2_misses),
            ("cachet_l2_errors_total", self.l2_errors),
            ("cachet_l2_timeouts_total", self.l2_timeouts),
            ("cachet_l2_round_trips_total", self.round_trips),
            ("cachet_l2_loads_total", self.loads),
            ("cachet_l2_invalidations_total", self.invalidations_received),
            ("cachet_l2_flushes_total", self.flushes),
            ("cachet_l2_lease_waits_total", self.lease_waits),
            ("cachet_l2_lease_timeouts_total", self.lease_timeouts),
            ("cachet_l2_connects_total", self.connects),
        ];
        for (metric, value) in counters {
            metrics::counter!(metric, "cache" => name.to_owned()).absolute(value);
        }
        metrics::gauge!("cachet_l2_degraded_seconds", "cache" => name.to_owned())
            .set(self.time_degraded.as_secs_f64());
        metrics::gauge!("cachet_l2_connected", "cache" => name.to_owned()).set(if self.connected {
            1.0
        } else {
            0.0
        });
    }
}
