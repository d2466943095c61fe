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
//! scarab-recs, 1.2M requests, ~3-5 s; 72 s in all) and ~10 s in release.

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

/// All floors, in one place.
const FLOORS: &[Floor] = &[
    // OLTP: W-TinyLFU with hill climbing scores 24.73 / 33.70 / 39.95 / 46.07 (BitFaster.Caching
    // PR #191, quoted in the traces README); the targets are those figures rounded down to 0.1.
    // Measured (mean over SEEDS, with the small-shard sketch floor): 25.29 / 33.75 / 40.74 /
    // 46.53.
    floor("OLTP", 250, 24.7),
    floor("OLTP", 500, 33.7),
    floor("OLTP", 1_000, 39.9),
    floor("OLTP", 2_000, 46.0),
    // loop: a pure loop over 1,011 keys, LRU scores 0 and OPT 50.54 / 75.81 (README); a
    // scan-resistant policy must keep most of a fixed subset: 40 and 60 leave room below OPT.
    floor("loop", 512, 40.0),
    floor("loop", 768, 60.0),
    // gli at 250: the better of moka and quick_cache minus half a point (README table: moka
    // 16.02, so 15.52). Measured 16.81 over SEEDS (14.87 before the small-shard sketch floor).
    floor("gli", 250, 15.52),
    // gli at 2,000: moka's 57.96 (OPT) minus half a point. Its fill hits 52% of its requests,
    // just under the policy's CLOCK start (55%); in CLOCK mode it scores 57.19. Measured 57.96.
    floor("gli", 2_000, 57.46),
    // multi2: at least LRU, README LRU column.
    floor("multi2", 128, 9.60),
    floor("multi2", 256, 24.54),
    floor("multi2", 512, 36.37),
    floor("multi2", 768, 38.77),
    // sprite (recency-friendly): at least LRU, README LRU column; at 256 the better of moka
    // and quick_cache minus half a point (moka 55.66, so 55.16), which is the higher bar there
    // and the one the CLOCK start puts at risk (its fill hits 73%; the 4x main ghosts bring
    // the window back down). Measured over SEEDS with the CLOCK window and start: 55.49 /
    // 79.55 / 88.00 at 256 / 512 / 768 (8 seeds: 55.49 / 79.51 / 87.99, 768 from 87.91).
    floor("sprite", 128, 27.37),
    floor("sprite", 256, 55.16),
    floor("sprite", 512, 78.94),
    floor("sprite", 768, 87.82),
    // P3 at 160,000: the better of moka and quick_cache minus half a point (README table:
    // quick_cache 53.80, so 53.30). Its seeds spread over 1.8 points; measured 53.50 over SEEDS
    // (53.74 over 16 seeds), with the far-reaching window ghosts at the window's floor.
    floor("P3", 160_000, 53.3),
    // scarab-recs (recency-biased, frequency hurts): README LRU 75.91, ARC 76.09, OPT 79.25 at
    // 100,000 (caffeine issue #106); the target asks for LRU-level minus ~1 point. Measured
    // 75.62 over SEEDS.
    floor("scarab-recs", 100_000, 75.0),
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
fn p3() {
    check_trace("P3");
}

#[test]
fn scarab_recs() {
    check_trace("scarab-recs");
}
