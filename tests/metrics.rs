#![cfg(feature = "metrics")]
//! The `metrics` feature: what `publish_metrics` and the load histogram hand to the `metrics`
//! facade, captured with `metrics-util`'s `DebuggingRecorder` installed as a thread-local
//! recorder (so tests running in parallel never see each other's figures). Loads whose samples
//! are checked run on the test thread: the histogram is recorded by the thread that led the load.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, mpsc};
use std::task::{Context, Waker};
use std::thread;
use std::time::Duration;

use cachet::{Cache, Clock, MockClock};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

type Labels = Vec<(String, String)>;
type Id = (MetricKind, String, Labels);

/// Everything a recorder received, by kind, name and (sorted) labels.
struct Captured(BTreeMap<Id, DebugValue>);

/// Runs `f` with a fresh `DebuggingRecorder` as this thread's recorder, then snapshots it.
fn capture<T>(f: impl FnOnce() -> T) -> (T, Captured) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = metrics::with_local_recorder(&recorder, f);
    let mut map = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let mut labels: Labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        let previous = map.insert((kind, key.name().to_owned(), labels), value);
        assert!(previous.is_none(), "a metric was reported twice");
    }
    (out, Captured(map))
}

fn id(kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Id {
    let mut labels: Labels = labels
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    labels.sort();
    (kind, name.to_owned(), labels)
}

impl Captured {
    fn get(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> &DebugValue {
        let id = id(kind, name, labels);
        self.0
            .get(&id)
            .unwrap_or_else(|| panic!("{id:?} was not published; got {:?}", self.0.keys()))
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.get(MetricKind::Counter, name, labels) {
            DebugValue::Counter(n) => *n,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.get(MetricKind::Gauge, name, labels) {
            DebugValue::Gauge(x) => x.0,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.get(MetricKind::Histogram, name, labels) {
            DebugValue::Histogram(xs) => xs.iter().map(|x| x.0).collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn ids(&self) -> BTreeSet<Id> {
        self.0.keys().cloned().collect()
    }
}

/// The ids `publish_metrics` publishes for a cache labelled `cache`.
fn published_ids(cache: &str) -> BTreeSet<Id> {
    let l = [("cache", cache)];
    let mut ids: BTreeSet<Id> = [
        "cachet_hits_total",
        "cachet_misses_total",
        "cachet_coalesced_total",
        "cachet_listener_panics_total",
        "cachet_inserts_total",
        "cachet_loads_total",
        "cachet_load_failures_total",
    ]
    .into_iter()
    .map(|name| id(MetricKind::Counter, name, &l))
    .collect();
    for cause in ["evicted", "expired", "explicit", "replaced"] {
        ids.insert(id(
            MetricKind::Counter,
            "cachet_removals_total",
            &[("cache", cache), ("cause", cause)],
        ));
    }
    for name in [
        "cachet_hit_ratio",
        "cachet_weighted_size",
        "cachet_loads_in_flight",
    ] {
        ids.insert(id(MetricKind::Gauge, name, &l));
    }
    ids
}

fn load_histogram_ids(cache: &str) -> BTreeSet<Id> {
    ["ok", "error"]
        .into_iter()
        .map(|result| {
            id(
                MetricKind::Histogram,
                "cachet_load_duration_seconds",
                &[("cache", cache), ("result", result)],
            )
        })
        .collect()
}

#[test]
fn publish_metrics_publishes_every_figure_labelled_with_the_cache_name() {
    let time = MockClock::new();
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(4)
        .shards(1)
        .clock(Clock::mock(&time))
        .record_stats()
        .name("products")
        .build()
        .unwrap();
    let ((), got) = capture(|| {
        cache.insert(1, 1);
        cache.insert(1, 2); // replaced: 1
        assert_eq!(cache.get(&1), Some(2));
        assert_eq!(cache.get(&1), Some(2)); // hits: 2
        assert_eq!(cache.get(&9), None); // misses: 1
        assert_eq!(cache.get_or_load(&3, || 3), 3); // misses: 2, loads: 1
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            cache.get_or_load(&5, || -> u64 { panic!("loader panics") })
        }));
        assert!(panicked.is_err()); // misses: 3, load failures: 1
        cache.insert_with_ttl(7, 7, Duration::from_millis(1));
        time.advance(Duration::from_millis(1));
        cache.run_pending_maintenance(); // expired: 1
        assert_eq!(cache.remove(&3), Some(3)); // explicit: 1
        for k in 10..14 {
            cache.insert(k, k); // five entries for four places: evicted: 1
        }
        cache.publish_metrics();
    });
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.inserts), (2, 3, 8));
    assert_eq!(
        (s.evicted, s.expired, s.invalidated, s.replaced),
        (1, 1, 1, 1)
    );

    let mut expected = published_ids("products");
    expected.extend(load_histogram_ids("products"));
    assert_eq!(
        got.ids(),
        expected,
        "exactly these figures, all labelled products"
    );

    let l = [("cache", "products")];
    assert_eq!(got.counter("cachet_hits_total", &l), 2);
    assert_eq!(got.counter("cachet_misses_total", &l), 3);
    assert_eq!(got.counter("cachet_inserts_total", &l), 8);
    assert_eq!(got.counter("cachet_loads_total", &l), 1);
    assert_eq!(got.counter("cachet_load_failures_total", &l), 1);
    for cause in ["evicted", "expired", "explicit", "replaced"] {
        let labels = [("cache", "products"), ("cause", cause)];
        assert_eq!(got.counter("cachet_removals_total", &labels), 1, "{cause}");
    }
    assert_eq!(got.gauge("cachet_hit_ratio", &l), 2.0 / 5.0);
    assert_eq!(got.gauge("cachet_weighted_size", &l), 4.0);
    assert_eq!(got.gauge("cachet_loads_in_flight", &l), 0.0);
}

#[test]
fn removal_counters_are_published_per_cause() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(10)
        .shards(1)
        .record_stats()
        .name("products")
        .build()
        .unwrap();
    for k in 0..10 {
        cache.insert(k, k); // exactly full: nothing evicted
    }
    for k in 0..3 {
        assert_eq!(cache.insert(k, k + 1), Some(k)); // replaced: 3
    }
    assert_eq!(cache.remove(&3), Some(3));
    assert_eq!(cache.remove(&4), Some(4));
    cache.retain(|k, _| *k != 5); // explicit: 3
    cache.insert_with_ttl(20, 20, Duration::ZERO); // expired at once: 1
    for k in 100..105 {
        cache.insert(k, k); // 7 + 5 entries for 10 places: evicted: 2
    }
    let ((), got) = capture(|| cache.publish_metrics());
    let per_cause = |cause| {
        got.counter(
            "cachet_removals_total",
            &[("cache", "products"), ("cause", cause)],
        )
    };
    assert_eq!(per_cause("evicted"), 2);
    assert_eq!(per_cause("expired"), 1);
    assert_eq!(per_cause("explicit"), 3);
    assert_eq!(per_cause("replaced"), 3);
    let l = [("cache", "products")];
    assert_eq!(got.counter("cachet_inserts_total", &l), 19);
    assert_eq!(got.gauge("cachet_weighted_size", &l), 10.0);
    assert_eq!(cache.len(), 10, "19 inserts: 10 live, 9 removed");
}

#[test]
fn the_load_histogram_gets_one_sample_per_finished_load_by_result() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .record_stats()
        .name("products")
        .build()
        .unwrap();
    let ((), got) = capture(|| {
        assert_eq!(cache.get_or_load(&1, || 1), 1);
        assert_eq!(cache.get_or_load(&2, || 2), 2);
        assert_eq!(cache.get_or_load(&2, || -> u64 { unreachable!() }), 2); // a hit: no load
        let err = cache.get_or_load(&3, || Err::<u64, _>("down"));
        assert_eq!(err, Err(Arc::new("down")));
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            cache.get_or_load(&4, || -> u64 { panic!("loader panics") })
        }));
        assert!(panicked.is_err());
        // An async leader dropped mid-load.
        let mut fut = Box::pin(cache.get_or_load_async(&5, std::future::pending::<u64>()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        drop(fut);
    });
    // No publish_metrics call: the histogram is all there is.
    assert_eq!(got.ids(), load_histogram_ids("products"));
    let ok = got.histogram(
        "cachet_load_duration_seconds",
        &[("cache", "products"), ("result", "ok")],
    );
    let error = got.histogram(
        "cachet_load_duration_seconds",
        &[("cache", "products"), ("result", "error")],
    );
    assert_eq!(ok.len(), 2, "{ok:?}");
    assert_eq!(error.len(), 3, "{error:?}");
    let s = cache.stats();
    assert_eq!((s.loads, s.load_failures), (2, 3));
    // The samples are the loads' times, the ones the statistics sum.
    let max = ok.iter().chain(&error).copied().fold(0.0, f64::max);
    assert!(ok.iter().chain(&error).all(|&x| x >= 0.0));
    assert_eq!(max, s.max_load_time.as_secs_f64());
}

#[test]
fn an_unnamed_cache_is_labelled_cachet_and_its_number() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .record_stats()
        .build()
        .unwrap();
    let ((), got) = capture(|| {
        assert_eq!(cache.get_or_load(&1, || 1), 1);
        assert_eq!(cache.get(&1), Some(1));
        cache.publish_metrics();
    });
    // Numbered in the order the process built its caches: find this one's number.
    let label = got
        .ids()
        .into_iter()
        .find(|(_, name, _)| name == "cachet_hits_total")
        .map(|(_, _, labels)| labels[0].1.clone())
        .expect("hits published");
    let n = label.strip_prefix("cachet-").expect("labelled cachet-<n>");
    assert!(n.parse::<u64>().is_ok_and(|n| n >= 1), "{label}");
    let mut expected = published_ids(&label);
    expected.insert(id(
        MetricKind::Histogram,
        "cachet_load_duration_seconds",
        &[("cache", &label), ("result", "ok")],
    ));
    assert_eq!(got.ids(), expected);
    let l = [("cache", label.as_str())];
    assert_eq!(got.counter("cachet_hits_total", &l), 1);
    assert_eq!(got.counter("cachet_misses_total", &l), 1);
    assert_eq!(got.counter("cachet_loads_total", &l), 1);
    assert_eq!(got.gauge("cachet_hit_ratio", &l), 0.5);
}

#[test]
fn without_record_stats_only_the_size_gauges_move_and_no_load_is_timed() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .weigher(|_, v| *v as u32)
        .name("plain")
        .build()
        .unwrap();
    // A load in flight on another thread, held there until released.
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let leader = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_or_load(&99, || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                1
            })
        })
    };
    started_rx.recv().unwrap();
    let ((), got) = capture(|| {
        cache.insert(1, 3);
        cache.insert(2, 4);
        cache.insert(2, 5);
        assert_eq!(cache.get(&1), Some(3));
        assert_eq!(cache.get(&7), None);
        assert_eq!(cache.get_or_load(&8, || 2), 2);
        cache.remove(&1);
        cache.publish_metrics();
    });
    release_tx.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 1);
    assert_eq!(got.ids(), published_ids("plain"), "no load was timed");
    for (kind, name, labels) in got.ids() {
        if kind == MetricKind::Counter {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(got.counter(&name, &labels), 0, "{name} {labels:?}");
        }
    }
    let l = [("cache", "plain")];
    assert_eq!(got.gauge("cachet_weighted_size", &l), 7.0);
    assert_eq!(got.gauge("cachet_loads_in_flight", &l), 1.0);
    assert_eq!(
        got.gauge("cachet_hit_ratio", &l),
        1.0,
        "nothing was counted"
    );
}

#[test]
fn counters_are_published_as_absolute_values() {
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(100)
        .record_stats()
        .name("products")
        .build()
        .unwrap();
    cache.insert(1, 1);
    let l = [("cache", "products")];
    let ((), got) = capture(|| {
        for _ in 0..3 {
            cache.get(&1);
        }
        cache.publish_metrics();
        cache.publish_metrics(); // the same figures again: not added twice
    });
    assert_eq!(got.counter("cachet_hits_total", &l), 3);
    assert_eq!(got.counter("cachet_inserts_total", &l), 1);
    let ((), got) = capture(|| {
        cache.get(&1);
        cache.get(&2);
        cache.publish_metrics();
    });
    assert_eq!(
        got.counter("cachet_hits_total", &l),
        4,
        "totals since creation"
    );
    assert_eq!(got.counter("cachet_misses_total", &l), 1);
    assert_eq!(got.gauge("cachet_hit_ratio", &l), 0.8);
}

#[test]
fn two_caches_publish_apart_by_name() {
    let build = |name: &str| -> Cache<u64, u64> {
        Cache::builder()
            .max_capacity(100)
            .record_stats()
            .name(name)
            .build()
            .unwrap()
    };
    let (products, users) = (build("products"), build("users"));
    let ((), got) = capture(|| {
        products.insert(1, 1);
        products.get(&1);
        users.get(&1);
        users.get(&2);
        products.publish_metrics();
        users.publish_metrics();
    });
    let mut expected = published_ids("products");
    expected.extend(published_ids("users"));
    assert_eq!(got.ids(), expected);
    let p = [("cache", "products")];
    let u = [("cache", "users")];
    assert_eq!(got.counter("cachet_hits_total", &p), 1);
    assert_eq!(got.counter("cachet_misses_total", &p), 0);
    assert_eq!(got.counter("cachet_hits_total", &u), 0);
    assert_eq!(got.counter("cachet_misses_total", &u), 2);
    assert_eq!(got.gauge("cachet_weighted_size", &p), 1.0);
    assert_eq!(got.gauge("cachet_weighted_size", &u), 0.0);
}
