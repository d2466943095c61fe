//! Trace loading and reference simulators shared by `examples/hit_ratio.rs` and
//! `tests/hit_ratio_floor.rs` (included with `#[path = ...] mod traces;`).
//!
//! The trace files are read in place from `$CACHET_TRACES`, else from `../shared/traces` beside
//! the crate (see the README there).
//! This module provides:
//! - [`load_keys`] / [`Trace::load`]: decode a trace file into its key sequence;
//! - [`zipf_keys`]: a seeded synthetic Zipf request stream;
//! - [`Trace::lru_hits`]: an exact count-bounded LRU (insert on every miss), O(1) per request;
//! - [`Trace::opt_hits`]: Belady's OPT with bypass, O(log n) per request;
//! - [`REFERENCE`]: the README's table (request/distinct counts, LRU and OPT hit ratios).

#![allow(dead_code)]

use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Reference data for one trace file, transcribed from the traces folder's README.
pub struct TraceRef {
    /// Short name used on the command line (the file name without its extensions).
    pub name: &'static str,
    pub file: &'static str,
    pub requests: usize,
    pub distinct: usize,
    pub capacities: &'static [usize],
    /// LRU hit ratio (%) at each capacity.
    pub lru: &'static [f64],
    /// OPT (Belady with bypass) hit ratio (%) at each capacity.
    pub opt: &'static [f64],
}

/// The README's "Files" and "Reference hit ratios" tables.
pub const REFERENCE: &[TraceRef] = &[
    TraceRef {
        name: "OLTP",
        file: "OLTP.lis.zst",
        requests: 914_145,
        distinct: 186_880,
        capacities: &[250, 500, 1_000, 2_000],
        lru: &[16.47, 23.45, 32.83, 42.47],
        opt: &[38.47, 46.43, 53.62, 60.40],
    },
    TraceRef {
        name: "P3",
        file: "P3.lis.zst",
        requests: 3_912_296,
        distinct: 762_543,
        capacities: &[20_000, 160_000],
        lru: &[2.28, 51.58],
        opt: &[21.95, 70.83],
    },
    TraceRef {
        name: "P12",
        file: "P12.lis.zst",
        requests: 13_208_930,
        distinct: 3_153_310,
        capacities: &[20_000, 160_000],
        lru: &[7.44, 36.03],
        opt: &[24.05, 58.41],
    },
    TraceRef {
        name: "loop",
        file: "loop.trace.gz",
        requests: 505_500,
        distinct: 1_011,
        capacities: &[256, 512, 768],
        lru: &[0.0, 0.0, 0.0],
        opt: &[25.27, 50.54, 75.81],
    },
    TraceRef {
        name: "gli",
        file: "gli.trace.gz",
        requests: 6_015,
        distinct: 2_529,
        capacities: &[250, 500, 1_000, 2_000],
        lru: &[0.91, 0.95, 11.21, 57.41],
        opt: &[17.71, 34.33, 53.15, 57.96],
    },
    TraceRef {
        name: "2_pools",
        file: "2_pools.trace.gz",
        requests: 100_000,
        distinct: 9_939,
        capacities: &[128, 256, 512, 768],
        lru: &[26.86, 42.18, 51.22, 53.21],
        opt: &[53.27, 58.09, 63.02, 66.23],
    },
    TraceRef {
        name: "multi2",
        file: "multi2.trace.gz",
        requests: 26_311,
        distinct: 5_684,
        capacities: &[128, 256, 512, 768],
        lru: &[9.60, 24.54, 36.37, 38.77],
        opt: &[37.97, 47.02, 53.85, 58.63],
    },
    TraceRef {
        name: "scan",
        file: "scan.trace.gz",
        requests: 50_025,
        distinct: 2_001,
        capacities: &[128, 256, 512, 768],
        lru: &[0.0, 0.0, 0.0, 0.0],
        opt: &[6.14, 12.28, 24.56, 36.85],
    },
    TraceRef {
        name: "sprite",
        file: "sprite.trace.gz",
        requests: 133_996,
        distinct: 7_075,
        capacities: &[128, 256, 512, 768],
        lru: &[27.37, 49.90, 78.94, 87.82],
        opt: &[57.31, 75.07, 88.20, 91.95],
    },
    TraceRef {
        name: "scarab-recs",
        file: "scarab-recs.trace.xz",
        requests: 1_245_184,
        distinct: 258_368,
        capacities: &[25_000, 100_000],
        lru: &[60.13, 75.91],
        opt: &[74.79, 79.25],
    },
    TraceRef {
        name: "cache2k-orm-busy",
        file: "cache2k-orm-busy.trace.xz",
        requests: 5_000_000,
        distinct: 76_349,
        capacities: &[2_500, 10_000],
        lru: &[82.19, 89.49],
        opt: &[88.24, 94.41],
    },
    TraceRef {
        name: "cache2k-web07",
        file: "cache2k-web07.trace.xz",
        requests: 76_118,
        distinct: 20_484,
        capacities: &[2_500, 10_000],
        lru: &[57.18, 69.00],
        opt: &[69.28, 73.09],
    },
];

/// Looks up the reference row for a short name (`OLTP`) or a file name (`OLTP.lis.zst`).
pub fn reference(name_or_file: &str) -> Option<&'static TraceRef> {
    let base = Path::new(name_or_file)
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or(name_or_file);
    REFERENCE
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(base) || r.file == base)
}

/// The folder holding the trace files: `$CACHET_TRACES` if set, else `<crate>/../shared/traces`.
pub fn traces_dir() -> PathBuf {
    match std::env::var_os("CACHET_TRACES") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces")),
    }
}

/// Resolves a trace name (`OLTP`), a file name (`OLTP.lis.zst`) or a path to a file path.
pub fn resolve(name_or_path: &str) -> PathBuf {
    let as_path = Path::new(name_or_path);
    if as_path.is_file() {
        return as_path.to_path_buf();
    }
    match reference(name_or_path) {
        Some(r) => traces_dir().join(r.file),
        None => traces_dir().join(name_or_path),
    }
}

/// The on-disk formats described in the traces README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `start num ignore reqno` per line, zstd-compressed; expands to `start..start+num`.
    ArcZstd,
    /// One integer per line (`*` lines are markers), gzip-compressed.
    LirsGzip,
    /// Big-endian 32-bit integers, xz-compressed.
    Int32BeXz,
    /// Big-endian 64-bit integers, xz-compressed.
    Int64BeXz,
}

impl Format {
    /// Detects the format from the file name.
    pub fn detect(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?;
        if name.ends_with(".lis.zst") {
            Some(Format::ArcZstd)
        } else if name.ends_with(".trace.gz") {
            Some(Format::LirsGzip)
        } else if name.ends_with(".trace.xz") && name.starts_with("cache2k-") {
            Some(Format::Int32BeXz)
        } else if name.ends_with(".trace.xz") && name.starts_with("scarab-") {
            Some(Format::Int64BeXz)
        } else {
            None
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Decodes a trace file into its request key sequence.
pub fn load_keys(path: &Path) -> io::Result<Vec<u64>> {
    let format = Format::detect(path).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("unknown trace format (by file name): {}", path.display()),
        )
    })?;
    let file = File::open(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot open trace {}: {e} (set CACHET_TRACES to the traces folder)",
                path.display()
            ),
        )
    })?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut raw = Vec::new();
    match format {
        Format::ArcZstd => {
            let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut reader)
                .map_err(|e| invalid(format!("zstd: {e}")))?;
            dec.read_to_end(&mut raw)?;
            parse_arc(&raw)
        }
        Format::LirsGzip => {
            flate2::read::MultiGzDecoder::new(reader).read_to_end(&mut raw)?;
            parse_lirs(&raw)
        }
        Format::Int32BeXz => {
            lzma_rs::xz_decompress(&mut reader, &mut raw)
                .map_err(|e| invalid(format!("xz: {e:?}")))?;
            if raw.len() % 4 != 0 {
                return Err(invalid("int32 trace length is not a multiple of 4"));
            }
            Ok(raw
                .chunks_exact(4)
                .map(|c| u64::from(u32::from_be_bytes(c.try_into().unwrap())))
                .collect())
        }
        Format::Int64BeXz => {
            lzma_rs::xz_decompress(&mut reader, &mut raw)
                .map_err(|e| invalid(format!("xz: {e:?}")))?;
            if raw.len() % 8 != 0 {
                return Err(invalid("int64 trace length is not a multiple of 8"));
            }
            Ok(raw
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
                .collect())
        }
    }
}

fn parse_u64(field: &[u8], line_no: usize) -> io::Result<u64> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| {
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<i64>().ok().map(|v| v as u64))
        })
        .ok_or_else(|| {
            invalid(format!(
                "line {line_no}: not an integer: {:?}",
                String::from_utf8_lossy(field)
            ))
        })
}

fn parse_arc(text: &[u8]) -> io::Result<Vec<u64>> {
    let mut keys = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let mut fields = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let Some(start) = fields.next() else { continue };
        let start = parse_u64(start, i + 1)?;
        let num = match fields.next() {
            Some(f) => parse_u64(f, i + 1)?,
            None => return Err(invalid(format!("line {}: missing block count", i + 1))),
        };
        keys.extend(start..start + num);
    }
    Ok(keys)
}

fn parse_lirs(text: &[u8]) -> io::Result<Vec<u64>> {
    let mut keys = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() || line == b"*" {
            continue;
        }
        keys.push(parse_u64(line, i + 1)?);
    }
    Ok(keys)
}

/// A seeded Zipf request stream over keys `1..=n_keys` (key 1 is the most popular).
pub fn zipf_keys(n_keys: u64, exponent: f64, count: usize, seed: u64) -> Vec<u64> {
    use rand::{RngExt, SeedableRng};
    let dist = rand_distr::Zipf::new(n_keys as f64, exponent).expect("invalid Zipf parameters");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count).map(|_| rng.sample(dist) as u64).collect()
}

/// Sentinel for "never requested again".
const NEVER: u32 = u32::MAX;
/// Sentinel for "no node" in the LRU list.
const NIL: u32 = u32::MAX;

/// A request stream plus the derived data the simulators need.
pub struct Trace {
    pub name: String,
    /// The requested keys, in order.
    pub keys: Vec<u64>,
    /// `keys` renumbered densely: `ids[i]` in `0..distinct`.
    ids: Vec<u32>,
    distinct: usize,
    /// `next_use[i]`: index of the next request for `keys[i]`, or `NEVER`. Built on first use.
    next_use: OnceLock<Vec<u32>>,
}

impl Trace {
    /// Loads a trace file (see [`load_keys`]).
    pub fn load(path: &Path) -> io::Result<Trace> {
        let keys = load_keys(path)?;
        let name = path
            .file_name()
            .and_then(|s| s.to_str())
            .and_then(|f| REFERENCE.iter().find(|r| r.file == f).map(|r| r.name))
            .map(str::to_owned)
            .unwrap_or_else(|| path.display().to_string());
        Ok(Trace::from_keys(name, keys))
    }

    /// Wraps an in-memory key sequence.
    pub fn from_keys(name: impl Into<String>, keys: Vec<u64>) -> Trace {
        assert!(
            keys.len() < NEVER as usize,
            "trace too long for 32-bit indices"
        );
        let mut dense: HashMap<u64, u32> = HashMap::with_capacity(keys.len() / 4);
        let ids = keys
            .iter()
            .map(|&k| {
                let next = dense.len() as u32;
                *dense.entry(k).or_insert(next)
            })
            .collect();
        Trace {
            name: name.into(),
            distinct: dense.len(),
            keys,
            ids,
            next_use: OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn distinct(&self) -> usize {
        self.distinct
    }

    /// Hits of an exact LRU holding at most `capacity` keys that admits every missed key.
    pub fn lru_hits(&self, capacity: usize) -> u64 {
        if capacity == 0 {
            return 0;
        }
        // Intrusive doubly-linked list over dense ids: head = most recent, tail = least recent.
        let n = self.distinct;
        let mut prev = vec![NIL; n];
        let mut next = vec![NIL; n];
        let mut resident = vec![false; n];
        let (mut head, mut tail) = (NIL, NIL);
        let mut len = 0usize;
        let mut hits = 0u64;
        for &id in &self.ids {
            let i = id as usize;
            if resident[i] {
                hits += 1;
                if head == id {
                    continue;
                }
                // Unlink (it is not the head, so prev[i] != NIL).
                let (p, nx) = (prev[i], next[i]);
                next[p as usize] = nx;
                if nx == NIL {
                    tail = p;
                } else {
                    prev[nx as usize] = p;
                }
            } else {
                if len == capacity {
                    // Evict the tail.
                    let t = tail as usize;
                    resident[t] = false;
                    tail = prev[t];
                    if tail == NIL {
                        head = NIL;
                    } else {
                        next[tail as usize] = NIL;
                    }
                } else {
                    len += 1;
                }
                resident[i] = true;
            }
            // Push to the front.
            prev[i] = NIL;
            next[i] = head;
            if head != NIL {
                prev[head as usize] = id;
            }
            head = id;
            if tail == NIL {
                tail = id;
            }
        }
        hits
    }

    /// The next-use index of every request (computed once, then cached).
    pub fn next_use(&self) -> &[u32] {
        self.next_use.get_or_init(|| {
            let mut last = vec![NEVER; self.distinct];
            let mut next_use = vec![NEVER; self.ids.len()];
            for (i, &id) in self.ids.iter().enumerate().rev() {
                next_use[i] = last[id as usize];
                last[id as usize] = i as u32;
            }
            next_use
        })
    }

    /// Hits of Belady's OPT with bypass, holding at most `capacity` keys: on a miss with the cache
    /// full, a key whose next use is farther than every resident's is not admitted; otherwise the
    /// resident with the farthest next use is evicted.
    pub fn opt_hits(&self, capacity: usize) -> u64 {
        if capacity == 0 {
            return 0;
        }
        let next_use = self.next_use();
        // `due[id]`: the next-use index of a resident key, `None` if not resident.
        let mut due: Vec<Option<u32>> = vec![None; self.distinct];
        // Max-heap of (next use, id) with lazy deletion: an entry is live iff `due[id]` equals it.
        // Finite next-use values are unique request indices, so a stale entry never matches again;
        // a resident with NEVER is never requested again, so it cannot be re-admitted either.
        let mut heap: BinaryHeap<(u32, u32)> = BinaryHeap::with_capacity(capacity * 2);
        let mut len = 0usize;
        let mut hits = 0u64;
        for (i, &id) in self.ids.iter().enumerate() {
            let nu = next_use[i];
            let slot = &mut due[id as usize];
            if slot.is_some() {
                hits += 1;
                *slot = Some(nu);
                heap.push((nu, id));
            } else if len < capacity {
                len += 1;
                *slot = Some(nu);
                heap.push((nu, id));
            } else {
                // Drop stale entries until the top is the live farthest resident.
                while let Some(&(top_nu, top_id)) = heap.peek() {
                    if due[top_id as usize] == Some(top_nu) {
                        break;
                    }
                    heap.pop();
                }
                let &(far_nu, far_id) = heap.peek().expect("full cache has a resident");
                if nu >= far_nu {
                    // Bypass: the newcomer is needed no sooner than any resident.
                    continue;
                }
                heap.pop();
                due[far_id as usize] = None;
                due[id as usize] = Some(nu);
                heap.push((nu, id));
            }
            // Keep the heap from growing without bound on long traces: rebuild from live entries.
            if heap.len() > capacity * 8 + 1024 {
                heap.retain(|&(v, k)| due[k as usize] == Some(v));
            }
        }
        hits
    }
}

/// Hit ratio in percent.
pub fn percent(hits: u64, requests: usize) -> f64 {
    if requests == 0 {
        0.0
    } else {
        hits as f64 * 100.0 / requests as f64
    }
}

/// Replays `keys` through `cache` (insert on every miss) and returns the hit count.
fn replay_keys<S: std::hash::BuildHasher>(cache: &cachet::Cache<u64, u64, S>, keys: &[u64]) -> u64 {
    let mut hits = 0;
    for &k in keys {
        if cache.get(&k).is_none() {
            let _ = cache.insert(k, k);
        } else {
            hits += 1;
        }
    }
    hits
}

/// The builder every cachet replay starts from: `capacity`, and `shards` if given.
fn replay_builder(capacity: usize, shards: Option<usize>) -> cachet::CacheBuilder<u64, u64> {
    let builder = cachet::Cache::<u64, u64>::builder().max_capacity(capacity as u64);
    match shards {
        Some(n) => builder.shards(n),
        None => builder,
    }
}

/// Like [`replay_cachet`] with a fixed hasher `seed`, but returns the hits of every `segment`
/// requests in turn (the last segment may be shorter): where a policy's runs part ways over a
/// trace. Runs on the calling thread; the totals equal `replay_cachet`'s for the same seed.
pub fn replay_cachet_segments(
    keys: &[u64],
    capacity: usize,
    shards: Option<usize>,
    seed: u64,
    segment: usize,
) -> Vec<u64> {
    let cache = replay_builder(capacity, shards)
        .hasher(SeededState(seed))
        .build()
        .expect("valid configuration");
    keys.chunks(segment.max(1))
        .map(|chunk| replay_keys(&cache, chunk))
        .collect()
}

/// Replays `keys` through cachet (insert on every miss) and returns the hit count: default
/// configuration, or `shards` passed to the builder, and a fixed hasher seed when `seed` is given.
/// Used by `examples/hit_ratio.rs` and `tests/hit_ratio_floor.rs`, so their figures agree exactly.
pub fn replay_cachet(
    keys: &[u64],
    capacity: usize,
    shards: Option<usize>,
    seed: Option<u64>,
) -> u64 {
    let builder = replay_builder(capacity, shards);
    match seed {
        None => replay_keys(&builder.build().expect("valid configuration"), keys),
        // A fresh thread per replay, so that no replay can see per-thread state another one left
        // (cachet keeps none; the thread costs nothing next to a replay).
        Some(seed) => std::thread::scope(|s| {
            s.spawn(|| {
                let cache = builder
                    .hasher(SeededState(seed))
                    .build()
                    .expect("valid configuration");
                replay_keys(&cache, keys)
            })
            .join()
            .expect("replay thread")
        }),
    }
}

/// A seeded hasher for reproducible cachet replays. cachet's default hasher is randomly seeded per
/// cache (what production wants); with this one a replay is exactly repeatable.
#[derive(Clone)]
pub struct SeededState(pub u64);

pub struct SeededHasher(u64);

impl std::hash::BuildHasher for SeededState {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

impl std::hash::Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        // splitmix64 over the running state: every output bit depends on every input bit.
        let mut z = (self.0 ^ n).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        self.0 = z ^ (z >> 31);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
