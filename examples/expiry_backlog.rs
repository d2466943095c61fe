//! An expired backlog and a trickle of traffic: is the memory given back, and what does the
//! unluckiest operation pay for it?
//!
//! `cargo run --release --example expiry_backlog -- [--entries 1000000] [--ops 1000] [--shards N]
//! [--value-bytes 0] [--rounds 3]`
//!
//! Each phase builds a `Cache<u64, u64>` with a mock clock, `max_capacity` twice `--entries` (so
//! nothing is evicted for size), `time_to_live` of 1 s and an eviction listener that counts
//! removals by cause; fills it with `--entries` entries; records `len()` and the live heap bytes
//! (a counting global allocator, `examples/common/alloc.rs`); moves the clock 2 s, past every
//! deadline; then performs `--ops` operations one at a time, timing each with `Instant::now()`:
//!
//! - phase `insert`: inserts of fresh keys (each also expires a bounded batch in its own shard
//!   and helps one other shard);
//! - phase `get miss`: lookups of keys never inserted (each miss expires a bounded batch in its
//!   shard).
//!
//! After the trickle it reads the listener's count of expired entries *before* calling `len()`
//! (which runs maintenance itself), so "reclaimed by the trickle" is the trickle's work alone;
//! then `len()`, and the live bytes again. Latencies include delivering the removals to the
//! listener. For scale, the same number of operations is then timed again on the drained cache
//! ("p50 quiet": what the operation costs without a backlog, `Instant::now()` included). `--value-bytes N` stores a boxed `N`-byte slice instead of a `u64`, to separate the
//! entries' own heap memory from the cache's tables (which keep their capacity).
//!
//! Single operations of tens of microseconds are at the mercy of the scheduler on a small shared
//! machine: one preemption turns the maximum into milliseconds. So each phase runs `--rounds`
//! times on a fresh cache, with a latency row per round; noise only ever adds time, so the
//! lowest maximum over the rounds is the best estimate of the work an operation is given.

#[path = "common/alloc.rs"]
mod alloc;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cachet::{Cache, Clock, MockClock, RemovalCause};

const TTL: Duration = Duration::from_secs(1);
const ADVANCE: Duration = Duration::from_secs(2);

struct Args {
    entries: u64,
    ops: usize,
    shards: Option<usize>,
    value_bytes: usize,
    rounds: usize,
}

#[derive(Clone, Copy)]
enum Trickle {
    Insert,
    GetMiss,
}

impl Trickle {
    fn label(self) -> &'static str {
        match self {
            Trickle::Insert => "insert",
            Trickle::GetMiss => "get miss",
        }
    }
}

/// What one phase saw.
struct Report {
    trickle: Trickle,
    shards: usize,
    fill: Duration,
    len_before: usize,
    bytes_before: usize,
    /// Entries reported `Expired` by the end of the trickle, before `len()`.
    reclaimed_by_trickle: u64,
    /// The operation (1-based) after which every filled entry had been reported expired.
    drained_at: Option<usize>,
    bytes_after_trickle: usize,
    len_after: usize,
    /// Time `len()` took: the maintenance left over after the trickle.
    len_time: Duration,
    reclaimed_total: u64,
    bytes_after_len: usize,
    evicted: u64,
    /// Sorted per-operation latencies.
    latencies: Vec<Duration>,
    /// Index of the slowest operation.
    worst_at: usize,
    trickle_total: Duration,
    /// Sorted latencies of the same number of operations on the drained cache.
    quiet: Vec<Duration>,
}

fn run<V, F>(args: &Args, trickle: Trickle, make: F) -> Report
where
    V: Clone + Send + Sync + 'static,
    F: Fn(u64) -> V,
{
    // Allocated before the baseline, so they count in every reading alike.
    let mut latencies = Vec::with_capacity(args.ops);
    let mut quiet = Vec::with_capacity(args.ops);
    let expired = Arc::new(AtomicU64::new(0));
    let evicted = Arc::new(AtomicU64::new(0));
    let time = MockClock::new();
    let base = alloc::live();

    let (exp, evi) = (Arc::clone(&expired), Arc::clone(&evicted));
    let mut builder = Cache::<u64, V>::builder()
        .max_capacity(args.entries.saturating_mul(2).max(1))
        .time_to_live(TTL)
        .clock(Clock::mock(&time))
        .eviction_listener(move |_k, _v, cause| {
            let counter = match cause {
                RemovalCause::Expired => &exp,
                _ => &evi,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    if let Some(n) = args.shards {
        builder = builder.shards(n);
    }
    let cache = builder.build().expect("valid configuration");

    let started = Instant::now();
    for k in 0..args.entries {
        cache.insert(k, make(k));
    }
    let fill = started.elapsed();
    let len_before = cache.len();
    let bytes_before = alloc::live().saturating_sub(base);
    assert_eq!(
        expired.load(Ordering::Relaxed),
        0,
        "expired during the fill"
    );

    time.advance(ADVANCE);

    // Operation `i` of the trickle, timed: a fresh key each time.
    let op = |i: u64| {
        let key = args.entries + i;
        match trickle {
            Trickle::Insert => {
                let value = make(key);
                let t = Instant::now();
                black_box(cache.insert(key, value));
                t.elapsed()
            }
            Trickle::GetMiss => {
                let key = (1 << 40) + key;
                let t = Instant::now();
                black_box(cache.get(&key));
                t.elapsed()
            }
        }
    };

    let mut drained_at = None;
    let trickle_started = Instant::now();
    for i in 0..args.ops {
        latencies.push(op(i as u64));
        if drained_at.is_none() && expired.load(Ordering::Relaxed) >= len_before as u64 {
            drained_at = Some(i + 1);
        }
    }
    let trickle_total = trickle_started.elapsed();

    // Before `len()`, which runs maintenance itself.
    let reclaimed_by_trickle = expired.load(Ordering::Relaxed);
    let bytes_after_trickle = alloc::live().saturating_sub(base);
    let t = Instant::now();
    let len_after = cache.len();
    let len_time = t.elapsed();
    let reclaimed_total = expired.load(Ordering::Relaxed);
    let bytes_after_len = alloc::live().saturating_sub(base);
    for i in args.ops..2 * args.ops {
        quiet.push(op(i as u64));
    }
    quiet.sort_unstable();
    let shards = cache.shard_count();
    drop(cache);

    let worst_at = latencies
        .iter()
        .enumerate()
        .max_by_key(|&(_, d)| *d)
        .map_or(0, |(i, _)| i);
    latencies.sort_unstable();
    Report {
        trickle,
        shards,
        fill,
        len_before,
        bytes_before,
        reclaimed_by_trickle,
        drained_at,
        bytes_after_trickle,
        len_after,
        len_time,
        reclaimed_total,
        bytes_after_len,
        evicted: evicted.load(Ordering::Relaxed),
        latencies,
        worst_at,
        trickle_total,
        quiet,
    }
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn mib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    match args.get(i + 1).map(|s| s.parse()) {
        Some(Ok(v)) => Some(v),
        _ => {
            eprintln!("{name} needs a number");
            std::process::exit(2);
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: expiry_backlog [--entries 1000000] [--ops 1000] [--shards N] [--value-bytes 0] \
             [--rounds 3]"
        );
        return;
    }
    let args = Args {
        entries: arg(&argv, "--entries").unwrap_or(1_000_000),
        ops: arg(&argv, "--ops").unwrap_or(1_000),
        shards: arg(&argv, "--shards"),
        value_bytes: arg(&argv, "--value-bytes").unwrap_or(0),
        rounds: arg(&argv, "--rounds").unwrap_or(3).max(1),
    };

    // Rounds outermost, so that a noisy stretch falls on both phases.
    let reports: Vec<Report> = (0..args.rounds)
        .flat_map(|_| [Trickle::Insert, Trickle::GetMiss])
        .map(|trickle| {
            if args.value_bytes == 0 {
                run(&args, trickle, |k| k)
            } else {
                let n = args.value_bytes;
                run(&args, trickle, move |k| vec![k as u8; n].into_boxed_slice())
            }
        })
        .collect();

    let value = if args.value_bytes == 0 {
        "u64".to_string()
    } else {
        format!("Box<[u8]> of {} bytes", args.value_bytes)
    };
    println!(
        "{} entries (u64 -> {value}), time_to_live {TTL:?}, mock clock moved {ADVANCE:?}, \
         then {} operations one at a time\n",
        args.entries, args.ops
    );
    println!(
        "| trickle | shards | len before | live MiB before | reclaimed by trickle | drained after op \
         | trickle ns per expired entry | live MiB after trickle | len() after \
         | live MiB after len() | len() took ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // The first round; the others differ only by the hasher's seed.
    for r in &reports[..2] {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {:.2} |",
            r.trickle.label(),
            r.shards,
            r.len_before,
            mib(r.bytes_before),
            r.reclaimed_by_trickle,
            r.drained_at
                .map_or_else(|| "not drained".to_string(), |i| i.to_string()),
            r.trickle_total.as_secs_f64() * 1e9 / (r.reclaimed_by_trickle.max(1) as f64),
            mib(r.bytes_after_trickle),
            r.len_after,
            mib(r.bytes_after_len),
            r.len_time.as_secs_f64() * 1e3,
        );
    }
    println!();
    println!(
        "| trickle | round | p50 us | p99 us | p99.9 us | max us | max / p50 | slowest op # \
         | trickle total ms | p50 quiet ns | max / p50 quiet |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (n, r) in reports.iter().enumerate() {
        let max = r.latencies.last().copied().unwrap_or_default();
        let p50 = quantile(&r.latencies, 0.5);
        let quiet = quantile(&r.quiet, 0.5);
        let ratio = |d: Duration| max.as_secs_f64() / d.as_secs_f64().max(1e-9);
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1}x | {} | {:.2} | {} | {:.0}x |",
            r.trickle.label(),
            n / 2 + 1,
            us(p50),
            us(quantile(&r.latencies, 0.99)),
            us(quantile(&r.latencies, 0.999)),
            us(max),
            ratio(p50),
            r.worst_at + 1,
            r.trickle_total.as_secs_f64() * 1e3,
            quiet.as_nanos(),
            ratio(quiet),
        );
    }
    println!();
    for phase in 0..2 {
        let best = reports
            .iter()
            .skip(phase)
            .step_by(2)
            .filter_map(|r| r.latencies.last())
            .min()
            .copied()
            .unwrap_or_default();
        println!(
            "{}: slowest single operation, lowest over {} rounds: {} us",
            reports[phase].trickle.label(),
            args.rounds,
            us(best)
        );
    }
    for r in &reports {
        if r.evicted != 0 || r.reclaimed_total != r.len_before as u64 {
            eprintln!(
                "note: {}: {} expired in all (filled {}), {} removed for other causes",
                r.trickle.label(),
                r.reclaimed_total,
                r.len_before,
                r.evicted
            );
        }
    }
    eprintln!(
        "fill took {:.0} ms / {:.0} ms; the live bytes count the cache's tables, which keep \
         their capacity when entries leave",
        reports[0].fill.as_secs_f64() * 1e3,
        reports[1].fill.as_secs_f64() * 1e3
    );
}
