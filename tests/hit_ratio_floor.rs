//! Hit-ratio regression floors for `cachet` on real traces.
//!
//! Each test replays one trace through `cachet::Cache::new(capacity)` (default configuration)
//! with the model used by `examples/hit_ratio.rs`: for each key, `if cache.get(&k).is_none() {
//! cache.insert(k, k) }`, and checks the mean hit ratio of replays with the fixed hasher seeds in
//! [`SEEDS`] against the floors in [`FLOORS`]. Before that, it checks the harness itself: the
//! trace parses to the reference request / distinct-key counts, and the exact LRU simulator
//! reproduces the reference LRU column to the second decimal.
//!
//! The traces are read in place from `$CACHET_TRACES`, else from `../shared/traces` beside the
//! crate (the README in that folder describes them). Where a trace is absent, its test prints one
//! line saying so and passes, so the suite passes on a clone without traces; with
//! `CACHET_REQUIRE_TRACES=1` (implied by `CI=true`) an absent trace is a failure instead.
//! The whole file takes about a minute in a debug build on 2 cores (P3 at 160,000, 5 x 3.9M
//! requests, is most of it: ~55 s; OLTP, 4 x 914k requests, ~20 s; scarab-recs, 1.2M requests,
//! ~3-5 s; the small traces a few seconds together) and ~10 s in release.

#[path = "../examples/common/traces.rs"]
mod traces;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Once;

use traces::{Trace, percent};

/// One regression floor: cachet's hit ratio (%) on `trace` at `capacity` must be at least `floor`.
struct Floor {
    trace: &'static str,
    capacity: usize,
    floor: f64,
}

const fn floor(trace: &'static str, capacity: usize, floor: f64) -> Floor {
    Floor {
        trace,
        capacity,
        floor,
    }
}

/// All floors, in one place, one for every reference row of the traces checked here: the better
/// of moka and quick_cache minus half a point (the peer columns of the hit-ratio table in
/// `docs/benchmarks.md`), raised to a published or absolute target where that is higher (OLTP,
/// scarab-recs; sprite and multi2 at least LRU). The comments give cachet's measured means over
/// [`SEEDS`].
const FLOORS: &[Floor] = &[
    // OLTP: W-TinyLFU with hill climbing scores 24.73 / 33.70 / 39.95 / 46.07 (BitFaster.Caching
    // PR #191, quoted in the traces README); the targets are those figures rounded down to 0.1.
    // Measured 25.29 / 33.72 / 40.72 / 46.67: OLTP at 500 is the thinnest row of all.
    floor("OLTP", 250, 24.7),
    floor("OLTP", 500, 33.7),
    floor("OLTP", 1_000, 39.9),
    floor("OLTP", 2_000, 46.0),
    // loop: a pure loop over 1,011 keys, LRU scores 0 and OPT 25.27 / 50.54 / 75.81; the floors
    // are moka - 0.5 (24.67 / 50.02 / 75.24).
    // Measured 25.17 / 50.14 / 75.61.
    floor("loop", 256, 24.67),
    floor("loop", 512, 50.02),
    floor("loop", 768, 75.24),
    // gli: moka or quick_cache - 0.5. Measured 16.81 / 33.22 / 49.59 / 57.96. At 2,000 its fill
    // hits 52% of its requests, just under the policy's CLOCK start (55%), which would cost it
    // 0.8 there.
    floor("gli", 250, 15.52),
    floor("gli", 500, 31.48),
    floor("gli", 1_000, 48.24),
    floor("gli", 2_000, 57.46),
    // 2_pools: moka or quick_cache - 0.5. Measured 49.95 / 50.65 / 52.01 / 53.30.
    floor("2_pools", 128, 49.36),
    floor("2_pools", 256, 50.17),
    floor("2_pools", 512, 51.52),
    floor("2_pools", 768, 52.76),
    // multi2: moka or quick_cache - 0.5 (all above LRU). Measured 31.66 / 39.95 / 49.83 /
    // 54.30.
    floor("multi2", 128, 29.61),
    floor("multi2", 256, 37.79),
    floor("multi2", 512, 49.62),
    floor("multi2", 768, 53.71),
    // scan: moka or quick_cache - 0.5 (LRU 0). Measured 6.02 / 12.20 / 24.48 / 36.72.
    floor("scan", 128, 5.45),
    floor("scan", 256, 11.4),
    floor("scan", 512, 23.62),
    floor("scan", 768, 36.07),
    // sprite (recency-friendly): moka - 0.5 at 128 and 256, LRU at 512 and 768, whichever is
    // higher. Measured over SEEDS with the CLOCK window and start (8 seeds: 768 from 87.93 to
    // 88.07): the test prints them. The start puts 256 at risk (its fill hits
    // 73%; the 4x main ghosts bring the window back down, and the start is undone).
    floor("sprite", 128, 36.04),
    floor("sprite", 256, 55.16),
    floor("sprite", 512, 78.94),
    floor("sprite", 768, 87.82),
    // P3 at 160,000: the better of moka and quick_cache minus half a point (quick_cache 53.80,
    // so 53.30). Its seeds spread over 1.8 points; measured 53.68 over SEEDS
    // (53.84 over 16 seeds), with the far-reaching window ghosts at the window's floor.
    floor("P3", 160_000, 53.3),
    // scarab-recs (recency-biased, frequency hurts): LRU 75.91, ARC 76.09 (Caffeine's issue
    // tracker, #106), OPT 79.25 at 100,000; the floor is 75. Measured 75.75.
    floor("scarab-recs", 100_000, 75.0),
    // cache2k-web07: quick_cache - 0.5. Measured 58.90 / 69.13.
    floor("cache2k-web07", 2_500, 58.79),
    floor("cache2k-web07", 10_000, 68.67),
];

/// Replays per floor, each with its own fixed hasher seed. The policy's decisions depend on the
/// hash (shard split, sketch collisions, admission ties), and single replays were seen to spread by
/// up to 3 points (OLTP @ 500: 30.3-33.6). Fixed seeds make the check deterministic, so it can
/// neither flake nor pass by luck; the floors apply to the mean over the seeds.
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

/// Where traces are looked for, as the skip and failure messages say it.
const LOOKUP: &str =
    "traces are looked for in $CACHET_TRACES, then in ../shared/traces beside the crate";

/// Whether an absent trace fails its test instead of skipping it: `CACHET_REQUIRE_TRACES` or
/// `CI` set to anything but empty, `0` or `false` (`.ci/run` sets the first).
fn traces_required() -> bool {
    let set = |name| std::env::var(name).is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    set("CACHET_REQUIRE_TRACES") || set("CI")
}

/// The path of the trace file `file`, or `None` when it is absent and absence is allowed. The
/// first skip of a run prints one line saying where traces are looked for and how to run them;
/// it goes to the process's stderr directly, past the harness's capture, so a passing run shows
/// it.
fn trace_path(file: &str) -> Option<PathBuf> {
    let dir = traces::traces_dir();
    let path = dir.join(file);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        !traces_required(),
        "trace {} not found ({LOOKUP}); CACHET_REQUIRE_TRACES or CI makes that a failure",
        path.display()
    );
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        // One write, so that the line is not interleaved with the harness's output.
        let line = format!(
            "hit_ratio_floor: trace floors SKIPPED, {file} not in {} ({LOOKUP}); \
             run them with CACHET_TRACES=<traces folder> cargo test --test hit_ratio_floor\n",
            dir.display()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    });
    None
}

/// Loads `name`, checks the harness against the reference table, then checks every floor of
/// `name`. Skips (see [`trace_path`]) when the trace is absent.
fn check_trace(name: &str) {
    let started = std::time::Instant::now();
    let reference = traces::reference(name).expect("trace is in the reference table");
    let Some(path) = trace_path(reference.file) else {
        return;
    };
    let trace = Trace::load(&path)
        .unwrap_or_else(|e| panic!("cannot load trace {name} from {}: {e}", path.display()));

    // The harness: parser counts and the exact LRU simulator against the reference table.
    assert_eq!(
        (trace.len(), trace.distinct()),
        (reference.requests, reference.distinct),
        "{name}: parsed (requests, distinct keys) differ from the reference table"
    );
    for (&capacity, &expected) in reference.capacities.iter().zip(reference.lru) {
        let lru = percent(trace.lru_hits(capacity), trace.len());
        assert_eq!(
            format!("{lru:.2}"),
            format!("{expected:.2}"),
            "{name} @ {capacity}: LRU simulator disagrees with the reference table (harness bug)"
        );
    }

    let checked = started.elapsed();

    // cachet against the floors, on the mean over the fixed seeds.
    let mut failures = Vec::new();
    for f in FLOORS.iter().filter(|f| f.trace == name) {
        let runs: Vec<f64> = SEEDS
            .iter()
            .map(|&seed| {
                percent(
                    traces::replay_cachet(&trace.keys, f.capacity, None, Some(seed)),
                    trace.len(),
                )
            })
            .collect();
        let ratio = runs.iter().sum::<f64>() / runs.len() as f64;
        // Compare at the table's precision (two decimals): a floor copied from the reference
        // table's rounded LRU value is met by a policy that ties LRU.
        let ok = (ratio * 100.0).round() >= (f.floor * 100.0).round();
        let runs: Vec<String> = runs.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "{name} @ {}: cachet {ratio:.2}% (runs {}; floor {:.2}%) {}",
            f.capacity,
            runs.join(", "),
            f.floor,
            if ok { "ok" } else { "BELOW FLOOR" }
        );
        if !ok {
            failures.push(format!(
                "{name} @ {}: cachet {ratio:.2}% < floor {:.2}%",
                f.capacity, f.floor
            ));
        }
    }
    println!(
        "{name}: load + harness check {checked:.2?}, total {:.2?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "hit ratio below floor:\n  {}",
        failures.join("\n  ")
    );
}

#[test]
fn floors_table_is_consistent() {
    for f in FLOORS {
        let r = traces::reference(f.trace).expect("floor names a reference trace");
        let i = r.capacities.iter().position(|&c| c == f.capacity);
        if let Some(i) = i {
            assert!(
                f.floor <= r.opt[i],
                "{} @ {}: floor above OPT",
                f.trace,
                f.capacity
            );
        }
        assert!(f.capacity > 0 && f.floor > 0.0 && f.floor < 100.0);
    }
}

#[test]
fn oltp() {
    check_trace("OLTP");
}

#[test]
fn loop_trace() {
    check_trace("loop");
}

#[test]
fn gli() {
    check_trace("gli");
}

#[test]
fn multi2() {
    check_trace("multi2");
}

#[test]
fn sprite() {
    check_trace("sprite");
}

#[test]
fn scan() {
    check_trace("scan");
}

#[test]
fn two_pools() {
    check_trace("2_pools");
}

#[test]
fn web07() {
    check_trace("cache2k-web07");
}

#[test]
fn p3() {
    check_trace("P3");
}

#[test]
fn scarab_recs() {
    check_trace("scarab-recs");
}
