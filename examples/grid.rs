//! Hit ratios on the evaluation grid (`docs/grid.md`), written as CSV for `tools/grid_report.py`.
//!
//! ```text
//! python3 tools/grid.py prepare          # writes target/grid/points.csv and the traces it names
//! cargo run --release --example grid -- [--points FILE] [--sets tuning,validation,shared|all]
//!     [--traces NAME,...] [--capacities N,...] [--policies cachet,moka,quick_cache,lru,opt]
//!     [--seeds N] [--threads N] [--cores N | --shards N] [--out FILE] [--resume] [--derive]
//!     [--segments N]
//! ```
//!
//! Replays every (trace, capacity) point of the chosen sets (default: all) through each policy,
//! with the replay model of `examples/hit_ratio.rs`: for each key, `if cache.get(&k).is_none() {
//! miss; cache.insert(k, k) }`, count-bounded, each cache in its default configuration. cachet
//! runs `--seeds` times (default 3) with the fixed hasher seeds 1, 2, ... (those of
//! `hit_ratio --seeded`); moka and quick_cache as many times with their own random hashers (their
//! hit ratios move with the hasher too: moka's on multi2 at 1,024 entries by 0.7 points from one
//! run to the next), so every crate's figure is a mean over the same number of runs; `lru` is the
//! `lru` crate (once: LRU does not depend on the hash); `opt` is Belady's OPT with bypass (the
//! traces README's reference).
//!
//! cachet's default shard count follows the machine's cores; `--cores N` gives each cachet
//! replay the shard count its default would have on a machine with N cores instead (four shards
//! per core, shards of at least 4,096 entries), to check that a figure does not depend on it;
//! `--shards N` gives every cachet replay N shards (the builder's `shards`).
//!
//! The shared traces are read from their original files (`$CACHET_TRACES`, else
//! `../shared/traces`), so their figures equal `hit_ratio`'s; the synthetic ones from the
//! oracleGeneral files that `tools/grid.py prepare` writes.
//!
//! Output (`--out`, default `target/grid/rust.csv`): `trace,capacity,policy,hit,hit_min,hit_max,runs`,
//! hit ratios in percent, the mean over runs in `hit`. Rows already in the file for other
//! (trace, capacity, policy) triples are kept, so the file can collect several runs (one per set,
//! or cachet alone after a change); with `--resume`, points already in it are not replayed again.
//!
//! `--capacities` keeps only those capacities of the chosen traces' points.
//!
//! `--segments N` prints, instead of the CSV, each chosen policy's hit ratio per `N` requests at
//! every chosen point, one row per segment: where in a trace a policy gains or loses (a shift of
//! the hot set, a phase of a block trace). cachet runs once, with hasher seed 1 (`--seeds` is
//! not used); `opt` has no figure per segment and is left out.
//!
//! `--derive` prints, instead, exact LRU and OPT on the doubling capacity grid of each trace: from
//! the first power of two at or above max(64, 0.1% of the distinct keys), doubling up to and
//! including the first capacity where LRU reaches 95% of OPT, below the distinct-key count. That
//! is how the grid's capacities were chosen.

#[path = "common/traces.rs"]
mod traces;

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use traces::{Trace, percent};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether the hit ratio depends on the hasher: these run once per seed (as in
    /// `hit_ratio`).
    fn is_randomized(self) -> bool {
        matches!(self, Policy::Cachet | Policy::Moka | Policy::QuickCache)
    }

    /// The name in the CSV's `policy` column.
    fn name(self) -> &'static str {
        match self {
            Policy::Cachet => "cachet",
            Policy::Moka => "moka",
            Policy::QuickCache => "quick_cache",
            Policy::Lru => "lru",
            Policy::Opt => "OPT",
        }
    }
}

struct Args {
    points: PathBuf,
    sets: Vec<String>,
    traces: Vec<String>,
    /// Keep only these capacities (empty: all).
    capacities: Vec<usize>,
    policies: Vec<Policy>,
    seeds: u64,
    threads: usize,
    /// Replay cachet with the shard count of a machine with this many cores.
    cores: Option<usize>,
    /// Replay cachet with this many shards.
    shards: Option<usize>,
    out: PathBuf,
    resume: bool,
    derive: bool,
    /// Print hit ratios per this many requests instead of the CSV.
    segments: Option<usize>,
}

const USAGE: &str = "usage: grid [--points FILE] [--sets tuning,validation,shared|all] \
[--traces NAME,...] [--capacities N,...] [--policies cachet,moka,quick_cache,lru,opt] \
[--seeds N] [--threads N] [--cores N | --shards N] [--out FILE] [--resume] [--derive] \
[--segments N]";

const SETS: [&str; 3] = ["tuning", "validation", "shared"];

fn parse_args() -> Result<Args, String> {
    let grid_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/grid");
    let mut args = Args {
        points: grid_dir.join("points.csv"),
        sets: SETS.iter().map(|s| s.to_string()).collect(),
        traces: Vec::new(),
        capacities: Vec::new(),
        policies: vec![
            Policy::Cachet,
            Policy::Moka,
            Policy::QuickCache,
            Policy::Lru,
            Policy::Opt,
        ],
        seeds: 3,
        threads: 2,
        cores: None,
        shards: None,
        out: grid_dir.join("rust.csv"),
        resume: false,
        derive: false,
        segments: None,
    };
    let list = |v: String| -> Vec<String> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |s: String| -> Result<u64, String> {
            s.replace('_', "")
                .parse()
                .map_err(|_| format!("{flag}: not a number: {s:?}"))
        };
        match flag.as_str() {
            "--points" => args.points = value()?.into(),
            "--sets" => {
                let v = value()?;
                args.sets = if v == "all" {
                    SETS.iter().map(|s| s.to_string()).collect()
                } else {
                    list(v)
                };
                if let Some(bad) = args.sets.iter().find(|s| !SETS.contains(&s.as_str())) {
                    return Err(format!("unknown set {bad:?}: choose from {SETS:?} or all"));
                }
            }
            "--traces" => args.traces = list(value()?),
            "--capacities" => {
                args.capacities = list(value()?)
                    .into_iter()
                    .map(|c| number(c).map(|c| c as usize))
                    .collect::<Result<_, _>>()?;
            }
            "--policies" => {
                let mut ps = list(value()?)
                    .iter()
                    .map(|p| Policy::parse(p).ok_or_else(|| format!("unknown policy {p:?}")))
                    .collect::<Result<Vec<_>, _>>()?;
                ps.sort();
                ps.dedup();
                args.policies = ps;
            }
            "--seeds" => args.seeds = number(value()?)?,
            "--threads" => args.threads = number(value()?)? as usize,
            "--cores" => args.cores = Some(number(value()?)?.clamp(1, 1 << 16) as usize),
            "--shards" => args.shards = Some(number(value()?)?.clamp(1, 1 << 16) as usize),
            "--out" => args.out = value()?.into(),
            "--resume" => args.resume = true,
            "--derive" => args.derive = true,
            "--segments" => args.segments = Some(number(value()?)? as usize),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.seeds == 0 || args.threads == 0 {
        return Err("--seeds and --threads must be positive".into());
    }
    if args.segments == Some(0) {
        return Err("--segments must be positive".into());
    }
    if args.segments.is_some() && args.derive {
        return Err("--segments and --derive each print their own table: choose one".into());
    }
    Ok(args)
}

/// One trace of the grid and the capacities chosen for it.
struct GridTrace {
    name: String,
    path: PathBuf,
    capacities: BTreeSet<usize>,
}

/// Reads `points.csv` (`set,trace,capacity,path`), keeping the chosen sets and traces, grouped
/// by trace in file order with each capacity once.
fn read_points(args: &Args) -> Result<Vec<GridTrace>, Box<dyn Error>> {
    let file = fs::File::open(&args.points).map_err(|e| {
        format!(
            "{}: {e} (run `python3 tools/grid.py prepare` first)",
            args.points.display()
        )
    })?;
    let mut out: Vec<GridTrace> = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate().skip(1) {
        let line = line?;
        let fields: Vec<&str> = line.splitn(4, ',').collect();
        let [set, trace, capacity, path] = fields[..] else {
            return Err(format!("{}:{}: expected 4 fields", args.points.display(), i + 1).into());
        };
        if !args.sets.iter().any(|s| s == set)
            || !(args.traces.is_empty() || args.traces.iter().any(|t| t == trace))
        {
            continue;
        }
        let capacity: usize = capacity.parse()?;
        if !(args.capacities.is_empty() || args.capacities.contains(&capacity)) {
            continue;
        }
        match out.iter_mut().find(|t| t.name == trace) {
            Some(t) => {
                t.capacities.insert(capacity);
            }
            None => out.push(GridTrace {
                name: trace.to_string(),
                path: path.into(),
                capacities: BTreeSet::from([capacity]),
            }),
        }
    }
    Ok(out)
}

/// The object ids of an oracleGeneral file: 24-byte little-endian records (u32 time, u64 id,
/// u32 size, i64 next access), the id at offset 4.
fn read_oracle(path: &Path) -> std::io::Result<Vec<u64>> {
    let mut raw = Vec::new();
    fs::File::open(path)?.read_to_end(&mut raw)?;
    if raw.len() % 24 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: not a whole number of 24-byte records", path.display()),
        ));
    }
    Ok(raw
        .chunks_exact(24)
        .map(|r| u64::from_le_bytes(r[4..12].try_into().expect("8 bytes")))
        .collect())
}

/// Loads a grid trace: a shared trace from its original file (the keys `hit_ratio` replays),
/// any other from its oracleGeneral file.
fn load(t: &GridTrace) -> Result<Trace, String> {
    match traces::reference(&t.name) {
        Some(r) => {
            let path = traces::traces_dir().join(r.file);
            Trace::load(&path).map_err(|e| format!("{}: {e}", path.display()))
        }
        None => read_oracle(&t.path)
            .map(|keys| Trace::from_keys(t.name.clone(), keys))
            .map_err(|e| {
                format!(
                    "{}: {e} (run `python3 tools/grid.py prepare`)",
                    t.path.display()
                )
            }),
    }
}

/// Replays `keys` through a cache given as its `get` and `insert`; returns the hit count of
/// every `segment` requests (the last segment may be shorter).
fn replay(
    keys: &[u64],
    segment: usize,
    mut get: impl FnMut(u64) -> bool,
    mut insert: impl FnMut(u64),
) -> Vec<u64> {
    keys.chunks(segment.max(1))
        .map(|chunk| {
            let mut hits = 0;
            for &k in chunk {
                if get(k) {
                    hits += 1;
                } else {
                    insert(k);
                }
            }
            hits
        })
        .collect()
}

/// The shard count cachet's default gives a count-bounded cache of `capacity` on a machine with
/// `cores` cores: four per core, but no shard under 4,096 entries (the crate's
/// `config::default_shards`, which reads this machine's core count).
fn default_shards(capacity: usize, cores: usize) -> usize {
    let by_cores = cores.saturating_mul(4).next_power_of_two();
    let by_capacity = (capacity / 4096).max(1);
    let by_capacity = 1usize << by_capacity.ilog2();
    by_cores.min(by_capacity)
}

/// Hits of one replay. moka applies its pending maintenance after every insert so that it is
/// strictly count-bounded like the others (see `replay_moka` in `examples/hit_ratio.rs`).
fn hits(trace: &Trace, policy: Policy, capacity: usize, seed: u64, args: &Args) -> u64 {
    match policy {
        Policy::Cachet => traces::replay_cachet(
            &trace.keys,
            capacity,
            cachet_shards(capacity, args),
            Some(seed),
        ),
        Policy::Opt => trace.opt_hits(capacity),
        _ => segment_hits(trace, policy, capacity, seed, args, trace.len())
            .map_or(0, |h| h.iter().sum()),
    }
}

/// cachet's shard count for a replay at `capacity` (`None`: the builder's default).
fn cachet_shards(capacity: usize, args: &Args) -> Option<usize> {
    let by_cores = args.cores.map(|c| default_shards(capacity, c));
    args.shards.or(by_cores)
}

/// Hits of one replay per `segment` requests; `None` for OPT, which has no figure per segment.
fn segment_hits(
    trace: &Trace,
    policy: Policy,
    capacity: usize,
    seed: u64,
    args: &Args,
    segment: usize,
) -> Option<Vec<u64>> {
    let keys = &trace.keys;
    Some(match policy {
        Policy::Cachet => traces::replay_cachet_segments(
            keys,
            capacity,
            cachet_shards(capacity, args),
            seed,
            segment,
        ),
        Policy::Moka => {
            let cache = moka::sync::Cache::<u64, u64>::new(capacity as u64);
            replay(
                keys,
                segment,
                |k| cache.get(&k).is_some(),
                |k| {
                    cache.insert(k, k);
                    cache.run_pending_tasks();
                },
            )
        }
        Policy::QuickCache => {
            let cache = quick_cache::sync::Cache::<u64, u64>::new(capacity);
            replay(
                keys,
                segment,
                |k| cache.get(&k).is_some(),
                |k| cache.insert(k, k),
            )
        }
        Policy::Lru => {
            let mut cache = lru::LruCache::<u64, ()>::new(
                std::num::NonZeroUsize::new(capacity).expect("positive capacity"),
            );
            let cache = std::cell::RefCell::new(&mut cache);
            replay(
                keys,
                segment,
                |k| cache.borrow_mut().get(&k).is_some(),
                |k| {
                    cache.borrow_mut().put(k, ());
                },
            )
        }
        Policy::Opt => return None,
    })
}

/// One CSV row: the hit ratios (%) of every run of a (trace, capacity, policy).
#[derive(Clone)]
struct Row {
    runs: Vec<f64>,
}

impl Row {
    fn csv(&self) -> String {
        let n = self.runs.len() as f64;
        let mean = self.runs.iter().sum::<f64>() / n;
        let min = self.runs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{mean:.4},{min:.4},{max:.4},{}", self.runs.len())
    }
}

type Key = (String, usize, String);

/// The rows of an existing output file, as their CSV tails (`hit,hit_min,hit_max,runs`).
fn read_existing(path: &Path) -> BTreeMap<Key, String> {
    let Ok(text) = fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(4, ',').collect();
            let [trace, cap, policy, rest] = f[..] else {
                return None;
            };
            Some((
                (trace.to_string(), cap.parse().ok()?, policy.to_string()),
                rest.to_string(),
            ))
        })
        .collect()
}

fn write_all(path: &Path, rows: &BTreeMap<Key, String>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("csv.tmp");
    let mut f = std::io::BufWriter::new(fs::File::create(&tmp)?);
    writeln!(f, "trace,capacity,policy,hit,hit_min,hit_max,runs")?;
    for ((trace, cap, policy), rest) in rows {
        writeln!(f, "{trace},{cap},{policy},{rest}")?;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    fs::rename(tmp, path)
}

/// Replays the missing (capacity, policy, seed) jobs of one trace on `threads` workers, the
/// slowest first (moka, then the largest capacities).
fn run_trace(trace: &Trace, jobs: &[(usize, Policy)], args: &Args) -> Vec<Row> {
    if jobs.iter().any(|&(_, p)| p == Policy::Opt) {
        trace.next_use();
    }
    let mut work: Vec<(usize, u64)> = Vec::new();
    for (j, &(_, p)) in jobs.iter().enumerate() {
        let runs = if p.is_randomized() { args.seeds } else { 1 };
        work.extend((1..=runs).map(|seed| (j, seed)));
    }
    work.sort_by_key(|&(j, _)| {
        let (cap, p) = jobs[j];
        (p != Policy::Moka, std::cmp::Reverse(cap))
    });
    let results: Vec<Mutex<Vec<(u64, f64)>>> =
        jobs.iter().map(|_| Mutex::new(Vec::new())).collect();
    let queue = Mutex::new(work.into_iter());
    std::thread::scope(|s| {
        for _ in 0..args.threads {
            s.spawn(|| {
                loop {
                    let Some((j, seed)) = queue.lock().unwrap().next() else {
                        break;
                    };
                    let (cap, p) = jobs[j];
                    let h = hits(trace, p, cap, seed, args);
                    results[j]
                        .lock()
                        .unwrap()
                        .push((seed, percent(h, trace.len())));
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            let mut runs = m.into_inner().unwrap();
            runs.sort_by_key(|&(seed, _)| seed);
            Row {
                runs: runs.into_iter().map(|(_, r)| r).collect(),
            }
        })
        .collect()
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let grid = read_points(args)?;
    if grid.is_empty() {
        return Err("no point matches --sets / --traces".into());
    }
    let mut rows = read_existing(&args.out);
    let total = Instant::now();
    for t in &grid {
        let mut jobs: Vec<(usize, Policy)> = Vec::new();
        for &cap in &t.capacities {
            for &p in &args.policies {
                let key = (t.name.clone(), cap, p.name().to_string());
                if !(args.resume && rows.contains_key(&key)) {
                    jobs.push((cap, p));
                }
            }
        }
        if jobs.is_empty() {
            eprintln!("{}: all points already in {}", t.name, args.out.display());
            continue;
        }
        let t0 = Instant::now();
        let trace = load(t)?;
        let results = run_trace(&trace, &jobs, args);
        for (&(cap, p), row) in jobs.iter().zip(&results) {
            rows.insert((t.name.clone(), cap, p.name().to_string()), row.csv());
        }
        write_all(&args.out, &rows)?;
        eprintln!(
            "{}: {} requests, {} replays in {:.1?}",
            t.name,
            trace.len(),
            jobs.len(),
            t0.elapsed()
        );
    }
    eprintln!(
        "total {:.1?}; wrote {}",
        total.elapsed(),
        args.out.display()
    );
    Ok(())
}

/// `--segments`: each chosen policy's hit ratio per `segment` requests at every chosen point,
/// the policies of a point replayed side by side (one thread each).
fn segments(args: &Args, segment: usize) -> Result<(), Box<dyn Error>> {
    let grid = read_points(args)?;
    if grid.is_empty() {
        return Err("no point matches --sets / --traces / --capacities".into());
    }
    let policies: Vec<Policy> = args
        .policies
        .iter()
        .copied()
        .filter(|&p| p != Policy::Opt)
        .collect();
    if policies.is_empty() {
        return Err("--segments: opt has no figure per segment; choose another policy".into());
    }
    for t in &grid {
        let trace = load(t)?;
        for &cap in &t.capacities {
            let per: Vec<Vec<u64>> = std::thread::scope(|s| {
                let running: Vec<_> = policies
                    .iter()
                    .map(|&p| {
                        let trace = &trace;
                        s.spawn(move || segment_hits(trace, p, cap, 1, args, segment))
                    })
                    .collect();
                running
                    .into_iter()
                    .map(|h| h.join().expect("replay thread").unwrap_or_default())
                    .collect()
            });
            println!(
                "\n{} at {cap}: hit ratio (%) per {segment} requests (cachet: hasher seed 1)\n",
                t.name
            );
            let names: Vec<&str> = policies.iter().map(|p| p.name()).collect();
            println!("| requests from | {} |", names.join(" | "));
            println!("|---:|{}", "---:|".repeat(names.len()));
            for (i, chunk) in trace.keys.chunks(segment).enumerate() {
                let cells: Vec<String> = per
                    .iter()
                    .map(|h| format!("{:.2}", percent(h[i], chunk.len())))
                    .collect();
                println!("| {} | {} |", i * segment, cells.join(" | "));
            }
            let whole: Vec<String> = per
                .iter()
                .map(|h| format!("{:.2}", percent(h.iter().sum(), trace.len())))
                .collect();
            println!("| whole trace | {} |", whole.join(" | "));
        }
    }
    Ok(())
}

/// `--derive`: exact LRU and OPT at doubling capacities, the rule that chose the grid.
fn derive(args: &Args) -> Result<(), Box<dyn Error>> {
    println!("| trace | distinct | capacity | LRU | OPT | LRU / OPT |");
    println!("|---|---:|---:|---:|---:|---:|");
    for t in read_points(args)? {
        let trace = load(&t)?;
        let distinct = trace.distinct();
        let mut cap = distinct.div_ceil(1000).max(64).next_power_of_two();
        while cap < distinct {
            let lru = percent(trace.lru_hits(cap), trace.len());
            let opt = percent(trace.opt_hits(cap), trace.len());
            let share = if opt > 0.0 { lru / opt } else { 1.0 };
            println!(
                "| {} | {distinct} | {cap} | {lru:.2} | {opt:.2} | {share:.3} |",
                t.name
            );
            if share >= 0.95 {
                break;
            }
            cap *= 2;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = if args.derive {
        derive(&args)
    } else if let Some(segment) = args.segments {
        segments(&args, segment)
    } else {
        run(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
