#![cfg(feature = "metrics")]
//! Every cache publishes under a `cache` label of its own, so two caches never overwrite each
//! other's figures: a named cache under its name, an unnamed one under a label the cache was
//! given when it was built.

use std::collections::BTreeSet;

use cachet::Cache;
use metrics_util::debugging::DebuggingRecorder;

/// The `cache` labels of the `cachet_weighted_size` gauges `f` publishes.
fn labels_published(f: impl FnOnce()) -> BTreeSet<String> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, f);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "cachet_weighted_size")
        .flat_map(|(key, ..)| {
            key.key()
                .labels()
                .filter(|l| l.key() == "cache")
                .map(|l| l.value().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn two_unnamed_caches_publish_under_distinct_labels() {
    let a: Cache<u64, u64> = Cache::new(10);
    let b: Cache<u64, u64> = Cache::new(10);
    let labels = labels_published(|| {
        a.publish_metrics();
        b.publish_metrics();
    });
    assert_eq!(labels.len(), 2, "both caches published under {labels:?}");
}

#[test]
fn a_named_cache_publishes_under_its_name() {
    let users: Cache<u64, u64> = Cache::builder()
        .max_capacity(10)
        .name("users")
        .build()
        .unwrap();
    let labels = labels_published(|| users.publish_metrics());
    assert_eq!(labels, BTreeSet::from(["users".to_owned()]));
}
