//! Hit-ratio regression floors for `cachet` on real traces (see `../shared/traces/README.md`).
//!
//! Each test replays one trace through `cachet::Cache::new(capacity)` (default configuration)
//! with the model used by `examples/hit_ratio.rs`: for each key, `if cache.get(&k).is_none() {
//! cache.insert(k, k) }`, and checks the mean hit ratio of replays with the fixed hasher seeds in [`SEEDS`] against the floors
//! in [`FLOORS`]. Before that,
//! it checks the harness itself: the trace parses to the README's request / distinct-key counts
//! and the exact LRU simulator reproduces the README's LRU column to the second decimal.
//!
//! The traces are read from `$CACHET_TRACES` or `<crate>/../shared/traces`; a missing folder is a
//! failure, not a skip. The whole file takes about a minute in a debug build on 2 cores (P3 at
//! 160,000, 5 x 3.9M requests, is most of it: ~55 s; OLTP, 4 x 914k requests, ~20 s;
//! scarab-recs, 1.2M requests, ~3-5 s; the small traces a few seconds together) and ~10 s in
//! release.

#[path = "../examples/common/traces.rs"]
mod traces;

use traces::{Trace, percent};

/// One regression floor: cachet's hit ratio (%) on `trace` at `capacity` must be at least `floor`,
/// issue 2's bar there (every floor of the issue is met; one the policy did not meet yet sat
/// about a point under its measured level, with the gap printed, until session 9 met the last).
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

/// All floors, in one place. Issue 2's bar on every reference row of the traces checked here:
/// the better of moka and quick_cache minus half a point (README hit table, peer columns), raised
/// to the issue's own floors where those are higher (OLTP, loop, scarab-recs; sprite and multi2
/// at least LRU). Measured means over SEEDS (session 9) in the comments.
const FLOORS: &[Floor] = &[
    // OLTP: W-TinyLFU with hill climbing scores 24.73 / 33.70 / 39.95 / 46.07 (BitFaster.Caching
    // PR #191, quoted in the traces README); the targets are those figures rounded down to 0.1.
    // Measured 25.29 / 33.72 / 40.72 / 46.67: OLTP at 500 is the thinnest row of all.
    floor("OLTP", 250, 24.7),
    floor("OLTP", 500, 33.7),
    floor("OLTP", 1_000, 39.9),
    floor("OLTP", 2_000, 46.0),
    // loop: a pure loop over 1,011 keys, LRU scores 0 and OPT 25.27 / 50.54 / 75.81. The issue
    // asks for 40 and 60 at 512 and 768; moka - 0.5 is higher (24.67 / 50.02 / 75.24).
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
    // 88.07; 86.51 before them): the test prints them. The start puts 256 at risk (its fill hits
    // 73%; the 4x main ghosts bring the window back down, and the start is undone).
    floor("sprite", 128, 36.04),
    floor("sprite", 256, 55.16),
    floor("sprite", 512, 78.94),
    floor("sprite", 768, 87.82),
    // P3 at 160,000: the better of moka and quick_cache minus half a point (README table:
    // quick_cache 53.80, so 53.30). Its seeds spread over 1.8 points; measured 53.68 over SEEDS
    // (53.84 over 16 seeds), with the far-reaching window ghosts at the window's floor.
    floor("P3", 160_000, 53.3),
    // scarab-recs (recency-biased, frequency hurts): README LRU 75.91, ARC 76.09, OPT 79.25 at
    // 100,000 (caffeine issue #106); the issue asks for 75. Measured 75.75.
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

/// Loads `name`, checks the harness against the README, then checks every floor of `name`.
fn check_trace(name: &str) {
    let started = std::time::Instant::now();
    let reference = traces::reference(name).expect("trace is in the README table");
    let path = traces::traces_dir().join(reference.file);
    let trace = Trace::load(&path).unwrap_or_else(|e| {
        panic!(
            "cannot load trace {name} from {}: {e}\n\
             The traces folder ../shared/traces (or $CACHET_TRACES) must be present.",
            path.display()
        )
    });

    // The harness: parser counts and the exact LRU simulator against the README.
    assert_eq!(
        (trace.len(), trace.distinct()),
        (reference.requests, reference.distinct),
        "{name}: parsed (requests, distinct keys) differ from the README"
    );
    for (&capacity, &expected) in reference.capacities.iter().zip(reference.lru) {
        let lru = percent(trace.lru_hits(capacity), trace.len());
        assert_eq!(
            format!("{lru:.2}"),
            format!("{expected:.2}"),
            "{name} @ {capacity}: LRU simulator disagrees with the README (harness bug)"
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
        // Compare at the table's precision (two decimals): a floor copied from the README's
        // rounded LRU value is met by a policy that ties LRU.
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
        let r = traces::reference(f.trace).expect("floor names a README trace");
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
