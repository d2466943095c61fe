//! Hit-ratio comparison on real traces (see `../shared/traces/README.md`) and synthetic Zipf.
//!
//! ```text
//! cargo run --release --example hit_ratio -- [--trace NAME_OR_PATH ...] [--capacity N ...]
//!     [--zipf N_KEYS,EXPONENT,REQUESTS] [--seed N] [--policies cachet,moka,quick_cache,lru,opt]
//!     [--shards N] [--threads N] [--runs N] [--seeded] [--plot DIR] [--check] [--all]
//!     [--segments N]
//! ```
//!
//! With no trace selected (or with `--all`), every trace of the README runs at the README's
//! capacities. `--capacity` overrides the capacities. `--check` verifies the parsers (request and
//! distinct-key counts) and the LRU / OPT simulators against the README's reference values and
//! exits non-zero on any mismatch. Trace names resolve in `$CACHET_TRACES`, or by default in
//! `<crate>/../shared/traces`.
//!
//! Replay model, identical for every cache: for each key, `if cache.get(&k).is_none() { miss;
//! cache.insert(k, k) }`, count-bounded at the given capacity, each cache in its default
//! configuration. Prints a markdown table of hit ratios (%) on stdout, timings on stderr.
//!
//! `--plot DIR` also draws each trace's row of the table as an SVG chart, `DIR/<trace>.svg`
//! (`DIR/zipf-<N_KEYS>-<EXPONENT>.svg` for `--zipf`): hit ratio (%) against capacity, one line per
//! policy, the same means as the table; the capacity axis is logarithmic when the capacities span
//! more than 10x.

#[path = "common/traces.rs"]
mod traces;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use traces::{REFERENCE, Trace, percent};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Cachet,
    Moka,
    QuickCache,
    Lru,
    Opt,
}

impl Policy {
    const ALL: [Policy; 5] = [
        Policy::Cachet,
        Policy::Moka,
        Policy::QuickCache,
        Policy::Lru,
        Policy::Opt,
    ];

    fn parse(s: &str) -> Option<Policy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cachet" => Some(Policy::Cachet),
            "moka" => Some(Policy::Moka),
            "quick_cache" | "quick-cache" | "quickcache" => Some(Policy::QuickCache),
            "lru" => Some(Policy::Lru),
            "opt" | "belady" => Some(Policy::Opt),
            _ => None,
        }
    }

    /// Whether the result depends on a random seed (hasher, sampling): these run `--runs` times.
    fn is_randomized(self) -> bool {
        matches!(self, Policy::Cachet | Policy::Moka | Policy::QuickCache)
    }

    /// Rough relative cost of one replay, cheapest last (used only to order jobs).
    fn cost_rank(self) -> u8 {
        match self {
            Policy::Moka => 0,
            Policy::Cachet | Policy::QuickCache => 1,
            Policy::Opt => 2,
            Policy::Lru => 3,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Policy::Cachet => "cachet",
            Policy::Moka => "moka",
            Policy::QuickCache => "quick_cache",
            Policy::Lru => "LRU",
            Policy::Opt => "OPT",
        }
    }

    /// Line colour in `--plot` charts.
    fn color(self) -> RGBColor {
        match self {
            Policy::Cachet => RGBColor(214, 39, 40),
            Policy::Moka => RGBColor(31, 119, 180),
            Policy::QuickCache => RGBColor(44, 160, 44),
            Policy::Lru => RGBColor(150, 150, 150),
            Policy::Opt => BLACK,
        }
    }
}

struct Args {
    traces: Vec<String>,
    capacities: Vec<usize>,
    zipf: Vec<(u64, f64, usize)>,
    seed: u64,
    policies: Vec<Policy>,
    run: RunOptions,
    /// `--plot`: folder for one SVG chart per trace.
    plot: Option<PathBuf>,
    check: bool,
    all: bool,
    /// `--segments`: instead of the table, cachet's hit ratio per `N` requests, one line per run
    /// (seeded as with `--seeded`). Only cachet runs: `--policies` and `--plot` do not apply.
    segments: Option<usize>,
}

/// How replays are run.
struct RunOptions {
    /// `--shards`: passed to cachet's builder; `None` uses `Cache::new` (the builder default).
    shards: Option<usize>,
    /// `--threads`: worker threads replaying different (capacity, policy) pairs at once.
    threads: usize,
    /// `--runs`: replays of each seeded policy (cachet, moka, quick_cache: their hashers are
    /// randomly seeded, so results vary run to run); the table shows the mean and range.
    runs: usize,
    /// `--seeded`: cachet's run `r` uses a fixed hasher seeded with `r + 1` (the seeds of
    /// `tests/hit_ratio_floor.rs`), so its column is exactly reproducible. moka and quick_cache
    /// keep their own random seeding.
    seeded: bool,
}

const USAGE: &str = "usage: hit_ratio [--trace NAME_OR_PATH ...] [--capacity N ...] \
[--zipf N_KEYS,EXPONENT,REQUESTS] [--seed N] [--policies cachet,moka,quick_cache,lru,opt] \
[--shards N] [--threads N] [--runs N] [--seeded] [--plot DIR] [--check] [--all] [--segments N]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        traces: Vec::new(),
        capacities: Vec::new(),
        zipf: Vec::new(),
        seed: 42,
        policies: Policy::ALL.to_vec(),
        run: RunOptions {
            shards: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            runs: 1,
            seeded: false,
        },
        plot: None,
        check: false,
        all: false,
        segments: None,
    };
    let mut it = std::env::args().skip(1);
    fn value(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
        it.next().ok_or_else(|| format!("{flag} needs a value"))
    }
    fn number<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T, String> {
        s.trim()
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{flag}: not a number: {s:?}"))
    }
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut take = |flag: &str| match &inline {
            Some(v) => Ok(v.clone()),
            None => value(&mut it, flag),
        };
        match flag.as_str() {
            "--trace" | "-t" => {
                let v = take("--trace")?;
                args.traces
                    .extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
            }
            "--capacity" | "-c" => {
                let v = take("--capacity")?;
                for c in v.split(',').filter(|s| !s.is_empty()) {
                    args.capacities.push(number(c, "--capacity")?);
                }
            }
            "--zipf" => {
                let v = take("--zipf")?;
                let parts: Vec<&str> = v.split(',').collect();
                if parts.len() != 3 {
                    return Err("--zipf expects N_KEYS,EXPONENT,REQUESTS".into());
                }
                args.zipf.push((
                    number(parts[0], "--zipf")?,
                    number(parts[1], "--zipf")?,
                    number(parts[2], "--zipf")?,
                ));
            }
            "--seed" => args.seed = number(&take("--seed")?, "--seed")?,
            "--policies" | "-p" => {
                let v = take("--policies")?;
                let mut policies = Vec::new();
                for p in v.split(',').filter(|s| !s.is_empty()) {
                    let p = Policy::parse(p).ok_or_else(|| format!("unknown policy {p:?}"))?;
                    if !policies.contains(&p) {
                        policies.push(p);
                    }
                }
                // Columns always come in the canonical order.
                args.policies = Policy::ALL
                    .into_iter()
                    .filter(|p| policies.contains(p))
                    .collect();
            }
            "--shards" => args.run.shards = Some(number(&take("--shards")?, "--shards")?),
            "--runs" => args.run.runs = number(&take("--runs")?, "--runs")?,
            "--seeded" => args.run.seeded = true,
            "--threads" => args.run.threads = number(&take("--threads")?, "--threads")?,
            "--plot" => args.plot = Some(take("--plot")?.into()),
            "--check" => args.check = true,
            "--all" => args.all = true,
            "--segments" => args.segments = Some(number(&take("--segments")?, "--segments")?),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.run.threads == 0 || args.run.runs == 0 {
        return Err("--threads and --runs must be positive".into());
    }
    if args.capacities.contains(&0) {
        return Err("--capacity must be positive".into());
    }
    if args.segments == Some(0) {
        return Err("--segments must be positive".into());
    }
    if args.segments.is_some() && (args.plot.is_some() || args.check) {
        return Err(
            "--segments prints no table: it does not combine with --plot or --check".into(),
        );
    }
    Ok(args)
}

/// Replays through `moka::sync::Cache::new(capacity)`.
///
/// moka buffers reads and writes and applies them (admission, eviction, frequency sketch) in
/// batches: inline once 64 operations are pending, or after a timer. Left alone, the cache can
/// therefore hold up to ~64 entries more than its capacity, which inflates its hit ratio at small
/// capacities (+50% room at 128 entries) and makes results depend on timing. moka documents
/// `run_pending_tasks()` as the way to bring the cache to a settled state (its own tests call it
/// before checking `entry_count`), so we call it after every insert: the cache is then strictly
/// count-bounded like the others, and the replay is deterministic up to moka's random hasher.
/// Hits need no call: pending reads only reorder/record frequency and are applied with the next
/// insert's maintenance, in order. Measured effect of the per-insert call: OLTP@250 21.0% instead
/// of 22.7%, sprite@128 36.7% instead of 39.8% (the unsynced figures count the overshoot), for a
/// replay at most ~1.5x slower (OLTP@250 0.82 s vs 0.57 s; no measurable cost at 100k entries).
fn replay_moka(keys: &[u64], capacity: usize) -> u64 {
    let cache: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(capacity as u64);
    let mut hits = 0;
    for &k in keys {
        if cache.get(&k).is_none() {
            cache.insert(k, k);
            cache.run_pending_tasks();
        } else {
            hits += 1;
        }
    }
    hits
}

/// Replays through `quick_cache::sync::Cache::new(capacity)` (its shards are sized from it).
fn replay_quick_cache(keys: &[u64], capacity: usize) -> u64 {
    let cache: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(capacity);
    let mut hits = 0;
    for &k in keys {
        if cache.get(&k).is_none() {
            cache.insert(k, k);
        } else {
            hits += 1;
        }
    }
    hits
}

fn run_one(trace: &Trace, policy: Policy, capacity: usize, opts: &RunOptions, run: usize) -> u64 {
    match policy {
        Policy::Cachet => {
            let seed = opts.seeded.then_some(run as u64 + 1);
            traces::replay_cachet(&trace.keys, capacity, opts.shards, seed)
        }
        Policy::Moka => replay_moka(&trace.keys, capacity),
        Policy::QuickCache => replay_quick_cache(&trace.keys, capacity),
        Policy::Lru => trace.lru_hits(capacity),
        Policy::Opt => trace.opt_hits(capacity),
    }
}

/// Results of one trace: `ratio[capacity index][policy index]` holds the hit ratio (%) of each
/// run, and `time[policy index]` the replay time of that policy summed over capacities and runs.
struct TraceResult {
    ratio: Vec<Vec<Vec<f64>>>,
    time: Vec<Duration>,
}

/// Runs every (capacity, policy) pair of one trace on a small thread pool, `runs` times for the
/// policies whose result depends on a random seed. Results are stored by job index, so the output
/// does not depend on scheduling; each replay is single-threaded.
fn run_trace(
    trace: &Trace,
    capacities: &[usize],
    policies: &[Policy],
    opts: &RunOptions,
) -> TraceResult {
    if policies.contains(&Policy::Opt) {
        trace.next_use(); // build once, before the workers share it
    }
    let mut jobs: Vec<(usize, usize, usize)> = Vec::new();
    for c in 0..capacities.len() {
        for (p, policy) in policies.iter().enumerate() {
            let runs = if policy.is_randomized() { opts.runs } else { 1 };
            jobs.extend((0..runs).map(|r| (c, p, r)));
        }
    }
    // Start the slowest replays first (moka, then the concurrent caches, largest capacity first)
    // so that the last job to finish is a short one.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&j| {
        let (c, p, _) = jobs[j];
        (policies[p].cost_rank(), std::cmp::Reverse(capacities[c]))
    });
    let results: Vec<Mutex<(f64, Duration)>> = jobs
        .iter()
        .map(|_| Mutex::new((f64::NAN, Duration::ZERO)))
        .collect();
    // Pending jobs (in start order) and whether a moka replay is running. Two moka caches
    // replayed at the same time in one process slow each other down ~3x (measured on OLTP:
    // 3.3 s one after the other, 10.7 s side by side), so moka jobs run one at a time and the
    // other workers take the next non-moka job meanwhile.
    let queue = Mutex::new((order, false));
    let workers = opts.threads.min(jobs.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut holds_moka = false;
                loop {
                    let j = {
                        let mut q = queue.lock().unwrap();
                        let (pending, moka_busy) = &mut *q;
                        if holds_moka {
                            *moka_busy = false;
                            holds_moka = false;
                        }
                        let is_moka = |j: usize| policies[jobs[j].1] == Policy::Moka;
                        // If only moka jobs are left and one is running, its worker drains them.
                        let Some(pos) = pending.iter().position(|&j| !(*moka_busy && is_moka(j)))
                        else {
                            break;
                        };
                        let j = pending.remove(pos);
                        if is_moka(j) {
                            *moka_busy = true;
                            holds_moka = true;
                        }
                        j
                    };
                    let (c, p, r) = jobs[j];
                    let t0 = Instant::now();
                    let hits = run_one(trace, policies[p], capacities[c], opts, r);
                    *results[j].lock().unwrap() = (percent(hits, trace.len()), t0.elapsed());
                }
            });
        }
    });
    let mut ratio = vec![vec![Vec::new(); policies.len()]; capacities.len()];
    let mut time = vec![Duration::ZERO; policies.len()];
    for (&(c, p, _), m) in jobs.iter().zip(results) {
        let (r, d) = m.into_inner().unwrap();
        ratio[c][p].push(r);
        time[p] += d;
    }
    TraceResult { ratio, time }
}

fn mean(runs: &[f64]) -> f64 {
    runs.iter().sum::<f64>() / runs.len() as f64
}

/// Formats the runs of one cell: the mean, plus the range when there are several runs.
fn cell(runs: &[f64]) -> String {
    let mean = mean(runs);
    if runs.len() == 1 {
        format!("{mean:.2}")
    } else {
        let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{mean:.2} ({min:.2}-{max:.2})")
    }
}

/// A workload to run: a loaded trace plus its capacities.
enum Source {
    File(String),
    Zipf(u64, f64, usize),
}

fn load_source(src: &Source, seed: u64) -> Result<Trace, String> {
    match src {
        Source::File(name) => {
            let path = traces::resolve(name);
            Trace::load(&path).map_err(|e| format!("{}: {e}", path.display()))
        }
        &Source::Zipf(n, s, count) => Ok(Trace::from_keys(
            format!("zipf(n={n}, s={s})"),
            traces::zipf_keys(n, s, count, seed),
        )),
    }
}

fn capacities_for(src: &Source, trace: &Trace, args: &Args) -> Result<Vec<usize>, String> {
    if !args.capacities.is_empty() {
        return Ok(args.capacities.clone());
    }
    match src {
        Source::File(name) => traces::reference(name)
            .or_else(|| traces::reference(&trace.name))
            .map(|r| r.capacities.to_vec())
            .ok_or_else(|| format!("{name}: not in the README table; give --capacity")),
        &Source::Zipf(n, _, _) => Ok([n as usize / 100, n as usize / 10]
            .into_iter()
            .filter(|&c| c > 0)
            .collect()),
    }
}

/// File name (without `.svg`) of a source's chart: the trace's name in lower case, or
/// `zipf-<N_KEYS>-<EXPONENT>`.
fn plot_name(src: &Source, trace: &Trace) -> String {
    match src {
        Source::File(_) => {
            let file = Path::new(&trace.name).file_name().and_then(|f| f.to_str());
            let stem = file.and_then(|f| f.split('.').next()).unwrap_or("trace");
            stem.to_ascii_lowercase()
        }
        Source::Zipf(n, s, _) => format!("zipf-{n}-{s}"),
    }
}

/// Draws one trace's hit ratios (`ratio[capacity][policy]`, runs averaged as in the table) as an
/// SVG line chart at `path`: one line per policy against capacity; beyond a 10x span, the capacity
/// axis is logarithmic with a tick at each capacity.
fn plot(
    path: &Path,
    title: &str,
    capacities: &[usize],
    policies: &[Policy],
    ratio: &[Vec<Vec<f64>>],
) -> Result<(), Box<dyn Error>> {
    let mut order: Vec<usize> = (0..capacities.len()).collect();
    order.sort_by_key(|&c| capacities[c]);
    let lines: Vec<(Policy, Vec<(f64, f64)>)> = policies
        .iter()
        .enumerate()
        .map(|(p, &policy)| {
            let points = order
                .iter()
                .map(|&c| (capacities[c] as f64, mean(&ratio[c][p])));
            (policy, points.collect())
        })
        .collect();
    let mut ticks: Vec<f64> = order.iter().map(|&c| capacities[c] as f64).collect();
    ticks.dedup();
    let (lo, hi) = (ticks[0], ticks[ticks.len() - 1]);
    let top = lines
        .iter()
        .flat_map(|(_, l)| l)
        .fold(0.0, |m, &(_, y)| y.max(m));
    let y = 0.0..((top / 10.0).floor() * 10.0 + 10.0).min(100.0);
    if hi > 10.0 * lo {
        let x = (lo / 1.1..hi * 1.1).log_scale().with_key_points(ticks);
        draw_chart(path, title, x, "capacity (entries, log scale)", y, &lines)
    } else {
        let pad = (hi - lo).max(1.0) * 0.04;
        draw_chart(
            path,
            title,
            lo - pad..hi + pad,
            "capacity (entries)",
            y,
            &lines,
        )
    }
}

/// [`plot`]'s drawing, generic over the capacity axis (linear or logarithmic).
fn draw_chart<X>(
    path: &Path,
    title: &str,
    x: X,
    x_desc: &str,
    y: std::ops::Range<f64>,
    lines: &[(Policy, Vec<(f64, f64)>)],
) -> Result<(), Box<dyn Error>>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("hit ratio (%)")
        .max_light_lines(1)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (policy, points) in lines {
        let width = if *policy == Policy::Cachet { 3 } else { 2 };
        let style = policy.color().stroke_width(width);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style.filled()).point_size(3))?
            .label(policy.header())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .draw()?;
    root.present()?;
    Ok(())
}

fn print_header(policies: &[Policy]) {
    let mut line = String::from("| trace | capacity |");
    let mut rule = String::from("|---|---:|");
    for p in policies {
        line += &format!(" {} |", p.header());
        rule += "---:|";
    }
    println!("{line}\n{rule}");
}

/// `--segments N`: for each trace and capacity, cachet's `--runs` replays with the fixed hasher
/// seeds 1, 2, ... (as `--seeded`; run in parallel, up to `--threads` at a time), each printed
/// as its whole hit ratio and then its hit ratio (%) over every `n` requests in turn. The
/// segments where runs part ways show what a seed-sensitive row depends on.
fn run_segments(args: &Args, sources: &[Source], n: usize) -> Result<(), String> {
    for src in sources {
        let trace = load_source(src, args.seed)?;
        for capacity in capacities_for(src, &trace, args)? {
            println!(
                "{} @ {capacity}, hit ratio (%) per {n} requests:",
                trace.name
            );
            let runs: Vec<u64> = (1..=args.run.runs as u64).collect();
            for batch in runs.chunks(args.run.threads) {
                let results: Vec<Vec<u64>> = std::thread::scope(|s| {
                    let handles: Vec<_> = batch
                        .iter()
                        .map(|&seed| {
                            let keys = &trace.keys;
                            let shards = args.run.shards;
                            s.spawn(move || {
                                traces::replay_cachet_segments(keys, capacity, shards, seed, n)
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("replay thread"))
                        .collect()
                });
                for (seed, segs) in batch.iter().zip(results) {
                    let total = percent(segs.iter().sum(), trace.len());
                    let cells: Vec<String> = segs
                        .iter()
                        .zip(trace.keys.chunks(n))
                        .map(|(&h, chunk)| format!("{:.1}", percent(h, chunk.len())))
                        .collect();
                    println!("seed {seed:>2} {total:6.2} | {}", cells.join(" "));
                }
            }
        }
    }
    Ok(())
}

fn run_table(args: &Args, sources: &[Source]) -> Result<(), String> {
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    print_header(&args.policies);
    let total = Instant::now();
    for src in sources {
        let t0 = Instant::now();
        let trace = load_source(src, args.seed)?;
        let capacities = capacities_for(src, &trace, args)?;
        let loaded = t0.elapsed();
        let t1 = Instant::now();
        let result = run_trace(&trace, &capacities, &args.policies, &args.run);
        for (cap, row) in capacities.iter().zip(&result.ratio) {
            let mut line = format!("| {} | {cap} |", trace.name);
            for runs in row {
                line += &format!(" {} |", cell(runs));
            }
            println!("{line}");
        }
        let per_policy: Vec<String> = args
            .policies
            .iter()
            .zip(&result.time)
            .map(|(p, d)| format!("{} {:.2?}", p.header(), d))
            .collect();
        eprintln!(
            "{}: {} requests, {} distinct; load {:.2?}, simulate {:.2?} (replay time per policy, \
             summed over capacities: {})",
            trace.name,
            trace.len(),
            trace.distinct(),
            loaded,
            t1.elapsed(),
            per_policy.join(", ")
        );
        if let Some(dir) = &args.plot {
            let path = dir.join(format!("{}.svg", plot_name(src, &trace)));
            let runs = match args.run.runs {
                1 => String::new(),
                n => format!(", mean of {n} runs"),
            };
            let title = format!(
                "{}: {} requests, {} distinct keys{runs}",
                trace.name,
                trace.len(),
                trace.distinct()
            );
            plot(&path, &title, &capacities, &args.policies, &result.ratio)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    eprintln!("total {:.2?}", total.elapsed());
    Ok(())
}

/// `--check`: parser counts and LRU / OPT against the README, plus a cross-check of the LRU
/// simulator against the `lru` crate on the smaller traces.
fn run_check(args: &Args) -> Result<bool, String> {
    let selected: Vec<&traces::TraceRef> = if args.traces.is_empty() {
        REFERENCE.iter().collect()
    } else {
        args.traces
            .iter()
            .map(|t| traces::reference(t).ok_or_else(|| format!("{t}: not in the README table")))
            .collect::<Result<_, _>>()?
    };
    let mut ok = true;
    println!("| trace | requests | distinct | capacity | LRU | ref | OPT | ref | status |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in selected {
        let t0 = Instant::now();
        let path = traces::traces_dir().join(r.file);
        let trace = Trace::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let counts_ok = trace.len() == r.requests && trace.distinct() == r.distinct;
        let result = run_trace(&trace, r.capacities, &[Policy::Lru, Policy::Opt], &args.run);
        for (i, row) in result.ratio.iter().enumerate() {
            let (lru, opt) = (cell(&row[0]), cell(&row[1]));
            let (lru_ref, opt_ref) = (format!("{:.2}", r.lru[i]), format!("{:.2}", r.opt[i]));
            let mut status = Vec::new();
            if !counts_ok {
                status.push(format!("COUNTS (want {} / {})", r.requests, r.distinct));
            }
            if lru != lru_ref {
                status.push("LRU MISMATCH".to_string());
            }
            if opt != opt_ref {
                status.push("OPT MISMATCH".to_string());
            }
            // Independent cross-check of the LRU simulator (the crate is slower; small traces).
            if trace.len() <= 1_000_000 {
                let cap = std::num::NonZeroUsize::new(r.capacities[i]).unwrap();
                let mut lru_crate = lru::LruCache::new(cap);
                let mut hits = 0u64;
                for &k in &trace.keys {
                    if lru_crate.get(&k).is_some() {
                        hits += 1;
                    } else {
                        lru_crate.put(k, ());
                    }
                }
                if hits != trace.lru_hits(r.capacities[i]) {
                    status.push("LRU != lru crate".to_string());
                }
            }
            ok &= status.is_empty();
            println!(
                "| {} | {} | {} | {} | {lru} | {lru_ref} | {opt} | {opt_ref} | {} |",
                r.name,
                trace.len(),
                trace.distinct(),
                r.capacities[i],
                if status.is_empty() {
                    "ok".to_string()
                } else {
                    status.join(", ")
                }
            );
        }
        eprintln!("{}: checked in {:.2?}", r.name, t0.elapsed());
    }
    println!(
        "\n{}",
        if ok {
            "all counts, LRU and OPT values match the README"
        } else {
            "MISMATCHES found"
        }
    );
    Ok(ok)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        return match run_check(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let mut sources: Vec<Source> = Vec::new();
    if args.all || (args.traces.is_empty() && args.zipf.is_empty()) {
        sources.extend(REFERENCE.iter().map(|r| Source::File(r.name.to_string())));
    }
    sources.extend(
        args.traces
            .iter()
            .filter(|t| !(args.all && traces::reference(t).is_some()))
            .map(|t| Source::File(t.clone())),
    );
    sources.extend(args.zipf.iter().map(|&(n, s, c)| Source::Zipf(n, s, c)));
    let run = match args.segments {
        Some(n) => run_segments(&args, &sources, n),
        None => run_table(&args, &sources),
    };
    match run {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
