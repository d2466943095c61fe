//! The `metrics` feature: the statistics, published through the `metrics` crate's facade. A
//! front-end: the builder points the cache's load hook at `record_load`; nothing in the core
//! imports it.

// Design notes
// - Counting stays in the cache's own per-shard counters (see `stats.rs`): going through the
//   facade on every hit would cost a recorder call per lookup. The counters are published as
//   absolute values when the service asks (`publish_metrics`), typically from the scrape path
//   of its exporter or a periodic task.
// - The one figure that cannot be rebuilt from counters, the distribution of load times, is
//   recorded into a histogram as each load finishes: loads are slow paths already.
// - Every figure carries a `cache` label: the builder's `name`, or `cachet-<n>` for the n-th
//   cache the process built, so that two unnamed caches never overwrite each other's figures.

use std::time::Duration;

use crate::cache::Cache;
use crate::listener::RemovalCause;

/// Records one finished load's time (called as the load ends, with statistics on).
pub(crate) fn record_load(label: &str, took: Duration, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    metrics::histogram!(
        "cachet_load_duration_seconds",
        "cache" => label.to_owned(),
        "result" => result
    )
    .record(took.as_secs_f64());
}

impl<K, V, S> Cache<K, V, S> {
    /// Publishes the cache's [`stats`](Cache::stats) through the `metrics` facade, labelled
    /// `cache = <name>`: the builder's [`name`](crate::CacheBuilder::name), or `cachet-<n>` for
    /// the n-th cache built in the process (give caches distinct names for stable labels):
    ///
    /// | metric | kind | |
    /// |---|---|---|
    /// | `cachet_hits_total`, `cachet_misses_total` | counter | lookups |
    /// | `cachet_coalesced_total` | counter | loader calls that waited for another's load |
    /// | `cachet_listener_panics_total` | counter | caught panics of the eviction listener |
    /// | `cachet_inserts_total` | counter | values stored |
    /// | `cachet_loads_total`, `cachet_load_failures_total` | counter | finished loads |
    /// | `cachet_removals_total` | counter | with a `cause` label: `evicted`, `expired`, `explicit`, `replaced` |
    /// | `cachet_hit_ratio` | gauge | 0 to 1 |
    /// | `cachet_weighted_size` | gauge | |
    /// | `cachet_loads_in_flight` | gauge | |
    /// | `cachet_load_duration_seconds` | histogram | recorded as each load ends, with a `result` label (`ok`, `error`) |
    ///
    /// Counters are published as absolute values, so call this whenever the exporter should see
    /// fresh figures (from its scrape handler, or a periodic task); the load histogram needs no
    /// call. Needs the builder's [`record_stats`](crate::CacheBuilder::record_stats) for all
    /// but the two size gauges.
    pub fn publish_metrics(&self) {
        let s = self.stats();
        let name = self.label().to_owned();
        let counters = [
            ("cachet_hits_total", s.hits),
            ("cachet_misses_total", s.misses),
            ("cachet_coalesced_total", s.coalesced),
            ("cachet_listener_panics_total", s.listener_panics),
            ("cachet_inserts_total", s.inserts),
            ("cachet_loads_total", s.loads),
            ("cachet_load_failures_total", s.load_failures),
        ];
        for (metric, value) in counters {
            metrics::counter!(metric, "cache" => name.clone()).absolute(value);
        }
        let causes = [
            (RemovalCause::Evicted, "evicted"),
            (RemovalCause::Expired, "expired"),
            (RemovalCause::Explicit, "explicit"),
            (RemovalCause::Replaced, "replaced"),
        ];
        for (cause, cause_label) in causes {
            metrics::counter!("cachet_removals_total", "cache" => name.clone(), "cause" => cause_label)
                .absolute(s.removals(cause));
        }
        metrics::gauge!("cachet_hit_ratio", "cache" => name.clone()).set(s.hit_ratio());
        metrics::gauge!("cachet_weighted_size", "cache" => name.clone())
            .set(s.weighted_size as f64);
        metrics::gauge!("cachet_loads_in_flight", "cache" => name).set(s.loads_in_flight as f64);
    }
}
