#!/usr/bin/env python3
"""The hit-ratio grid: which traces, which capacities, which half.

The grid is fixed data, written down here and in docs/grid.md:

- every shared trace (``$CACHET_TRACES``, else ``../shared/traces``) at the capacities of a
  doubling grid (see ``derive`` below), each trace in the tuning or the validation half;
- synthetic families generated deterministically from a seed, also split between the halves;
- the README's reference points ("shared"), reported as a third set.

``python3 tools/grid.py prepare`` decodes every trace it needs, generates the synthetic ones,
writes each as a libCacheSim oracleGeneral file (24-byte records: u32 time, u64 object id,
u32 size = 1, i64 index of the next request for the same object or -1) under
``target/grid/traces/`` and the list of points to ``target/grid/points.csv``
(``set,trace,capacity,path``). The Rust replays (``examples/grid.rs``) and the libCacheSim
replays (``tools/libcachesim_grid.py``) read that list, so both see the same requests.

Needs numpy (installed with libcachesim). Standard library otherwise.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import lzma
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GRID_DIR = ROOT / "target" / "grid"
CONVERTED = GRID_DIR / "traces"
POINTS_CSV = GRID_DIR / "points.csv"

SETS = ("tuning", "validation", "shared")

# A libCacheSim oracleGeneral record, packed little-endian.
ORACLE_DTYPE = np.dtype(
    [("time", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")], align=False
)
assert ORACLE_DTYPE.itemsize == 24


def traces_dir() -> Path:
    env = os.environ.get("CACHET_TRACES")
    return Path(env) if env else ROOT.parent / "shared" / "traces"


# --------------------------------------------------------------------------------------------
# The shared traces: file, format, half, shape, the README's counts, the grid's capacities and
# the README's reference points (capacity, LRU %, OPT %).
#
# The capacities follow one rule (applied by `cargo run --release --example grid -- --derive`,
# whose output is in docs/grid.md): powers of two from the first one at or above
# max(64, 0.1% of the distinct keys), doubling up to and including the first capacity where
# exact LRU reaches 95% of OPT's hit ratio, and never at or above the distinct-key count (there
# every policy holds everything).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shared:
    name: str
    file: str
    fmt: str  # arc | lirs | i32be | i64be
    half: str
    shape: str
    requests: int
    distinct: int
    capacities: tuple[int, ...]
    readme: tuple[tuple[int, float, float], ...]  # (capacity, LRU %, OPT %)


def _pow2(lo: int, hi: int) -> tuple[int, ...]:
    out, c = [], lo
    while c <= hi:
        out.append(c)
        c *= 2
    return tuple(out)


SHARED: tuple[Shared, ...] = (
    # ---- tuning half ----
    Shared("P3", "P3.lis.zst", "arc", "tuning", "disk/block, scan-heavy", 3_912_296, 762_543,
           _pow2(1_024, 524_288),
           ((20_000, 2.28, 21.95), (160_000, 51.58, 70.83))),
    Shared("OLTP", "OLTP.lis.zst", "arc", "tuning", "database, recency-friendly", 914_145, 186_880,
           _pow2(256, 65_536),
           ((250, 16.47, 38.47), (500, 23.45, 46.43), (1_000, 32.83, 53.62), (2_000, 42.47, 60.40))),
    Shared("gli", "gli.trace.gz", "lirs", "tuning", "loops and scans", 6_015, 2_529,
           _pow2(64, 2_048),
           ((250, 0.91, 17.71), (500, 0.95, 34.33), (1_000, 11.21, 53.15), (2_000, 57.41, 57.96))),
    Shared("scan", "scan.trace.gz", "lirs", "tuning", "scan", 50_025, 2_001,
           _pow2(64, 1_024),
           ((128, 0.0, 6.14), (256, 0.0, 12.28), (512, 0.0, 24.56), (768, 0.0, 36.85))),
    Shared("sprite", "sprite.trace.gz", "lirs", "tuning", "file system, recency", 133_996, 7_075,
           _pow2(64, 1_024),
           ((128, 27.37, 57.31), (256, 49.90, 75.07), (512, 78.94, 88.20), (768, 87.82, 91.95))),
    Shared("2_pools", "2_pools.trace.gz", "lirs", "tuning", "two pools, frequency", 100_000, 9_939,
           _pow2(64, 8_192),
           ((128, 26.86, 53.27), (256, 42.18, 58.09), (512, 51.22, 63.02), (768, 53.21, 66.23))),
    # ---- validation half ----
    # P12 (13.2 million requests) takes every other capacity of its doubling grid (4,096 to
    # 2,097,152): its full grid alone would cost more than the whole tuning half.
    Shared("P12", "P12.lis.zst", "arc", "validation", "disk/block", 13_208_930, 3_153_310,
           (4_096, 16_384, 65_536, 262_144, 1_048_576),
           ((20_000, 7.44, 24.05), (160_000, 36.03, 58.41))),
    Shared("scarab-recs", "scarab-recs.trace.xz", "i64be", "validation",
           "recommender database, recency-biased", 1_245_184, 258_368,
           _pow2(512, 131_072),
           ((25_000, 60.13, 74.79), (100_000, 75.91, 79.25))),
    Shared("cache2k-orm-busy", "cache2k-orm-busy.trace.xz", "i32be", "validation",
           "database (ORM objects), frequency", 5_000_000, 76_349,
           _pow2(128, 16_384),
           ((2_500, 82.19, 88.24), (10_000, 89.49, 94.41))),
    Shared("loop", "loop.trace.gz", "lirs", "validation", "a pure loop", 505_500, 1_011,
           _pow2(64, 512),
           ((256, 0.0, 25.27), (512, 0.0, 50.54), (768, 0.0, 75.81))),
    Shared("multi2", "multi2.trace.gz", "lirs", "validation", "mixed loops", 26_311, 5_684,
           _pow2(64, 4_096),
           ((128, 9.60, 37.97), (256, 24.54, 47.02), (512, 36.37, 53.85), (768, 38.77, 58.63))),
    Shared("cache2k-web07", "cache2k-web07.trace.xz", "i32be", "validation",
           "HTTP product pages, frequency", 76_118, 20_484,
           _pow2(64, 16_384),
           ((2_500, 57.18, 69.28), (10_000, 69.00, 73.09))),
)


# --------------------------------------------------------------------------------------------
# Synthetic families. Each is generated from its own seed with numpy's PCG64 (`Generator.random`
# and `Generator.integers`, whose streams numpy keeps stable); `prepare` checks the SHA-256 of
# the generated keys against `sha256` and fails on a mismatch, so a numpy that changed its
# streams is caught rather than silently measuring another workload.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Synthetic:
    name: str
    half: str
    shape: str
    kind: str  # zipf | zipfscan | shift | loop
    params: dict = field(hash=False)
    seed: int
    capacities: tuple[int, ...]
    sha256: str = ""


SYNTHETIC_REQUESTS = 1_000_000
"""Requests per synthetic trace (the loops are shorter): enough for the largest grid capacity
to turn over many times, cheap enough that a synthetic trace costs at most a quarter of P3."""

SYNTHETIC: tuple[Synthetic, ...] = (
    # ---- tuning half ----
    Synthetic("zipf-0.6", "tuning", "frequency (flat Zipf)", "zipf",
              dict(keys=100_000, s=0.6, requests=SYNTHETIC_REQUESTS), 601,
              _pow2(128, 65_536),
              sha256="ad4fad6a084056bd40e27af1c6fe9b76e2c8299c3356480bfab3d624c7727734"),
    Synthetic("zipf-1.0", "tuning", "frequency (Zipf)", "zipf",
              dict(keys=100_000, s=1.0, requests=SYNTHETIC_REQUESTS), 1001,
              _pow2(128, 65_536),
              sha256="e113c06a06b2a81835a17195052c247c852a579b33820ed7b885bb1fa71ab9bd"),
    Synthetic("zipfscan-a", "tuning", "Zipf 0.8 with periodic scans that partly repeat", "zipfscan",
              dict(keys=100_000, s=0.8, requests=SYNTHETIC_REQUESTS, period=40_000,
                   scan=10_000, scan_space=1_000_000), 801,
              _pow2(512, 262_144),
              sha256="184d55417623d902e66897fe5384aafd0cabaab802c2a22dc98134bef53dff71"),
    Synthetic("shift-a", "tuning", "a hot set that shifts by half", "shift",
              dict(hot=10_000, s=0.9, requests=SYNTHETIC_REQUESTS, phase=100_000, step=5_000), 901,
              _pow2(64, 8_192),
              sha256="623f3f0d47e828d434423af38fcc63dce8270eb3c9ec6c9212e2e81c23bb622a"),
    Synthetic("loop-1280", "tuning", "a loop 1.1x / 1.25x the cache", "loop",
              dict(length=1_280, requests=300_000), 0,
              (1_024, 1_164),
              sha256="6a9654831a62e0fd3a3e2777c8e18af28e2ce7bee9d6e9a93cf426a69500e59e"),
    # ---- validation half ----
    Synthetic("zipf-0.8", "validation", "frequency (Zipf)", "zipf",
              dict(keys=100_000, s=0.8, requests=SYNTHETIC_REQUESTS), 802,
              _pow2(128, 65_536),
              sha256="0c3a7d1ffc4a769e8b3a870a0ffbac8f1b89953f50aec3281352c37aaf496078"),
    Synthetic("zipf-1.2", "validation", "frequency (steep Zipf)", "zipf",
              dict(keys=100_000, s=1.2, requests=SYNTHETIC_REQUESTS), 1202,
              _pow2(64, 8_192),
              sha256="42599e13bf0eddfc05cff753c69117829f9679c552ecd32d5cbcdfe12bf0e4bb"),
    Synthetic("zipfscan-b", "validation", "Zipf 1.0 with periodic one-time scans", "zipfscan",
              dict(keys=200_000, s=1.0, requests=SYNTHETIC_REQUESTS, period=200_000,
                   scan=50_000, scan_space=0), 1002,
              _pow2(512, 131_072),
              sha256="3c56370e99603db4326e65e2d9762fa09cf8db0fe986715f529f511e12550968"),
    Synthetic("shift-b", "validation", "a hot set replaced whole", "shift",
              dict(hot=20_000, s=0.7, requests=SYNTHETIC_REQUESTS, phase=200_000, step=20_000), 702,
              _pow2(128, 16_384),
              sha256="e0f0d92262538f0f5592613a6860f3b8dd964644e544c7dd398999b2bab63072"),
    Synthetic("loop-10240", "validation", "a loop 1.1x / 1.25x the cache", "loop",
              dict(length=10_240, requests=300_000), 0,
              (8_192, 9_309),
              sha256="096c67cae46dc8ba312cbbb9e4baf485298fbe6d5711cad935aa356772f7c82a"),
)


def zipf_ranks(rng: np.random.Generator, n: int, s: float, count: int) -> np.ndarray:
    """`count` ranks in 1..=n drawn from Zipf(s) by inverting its CDF."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(count), side="right") + 1
    return np.minimum(ranks, n).astype(np.uint64)


def generate(syn: Synthetic) -> np.ndarray:
    """The key sequence of a synthetic trace (keys >= 1)."""
    p = syn.params
    rng = np.random.Generator(np.random.PCG64(syn.seed))
    if syn.kind == "zipf":
        return zipf_ranks(rng, p["keys"], p["s"], p["requests"])
    if syn.kind == "zipfscan":
        # `period` Zipf requests, then a scan of `scan` consecutive keys, again and again until
        # `requests`. Scan keys live above the Zipf keys; with `scan_space` > 0 each scan starts
        # at a random offset inside that many keys (scans overlap and partly repeat), with 0
        # every scan reads keys never seen before.
        zipf = zipf_ranks(rng, p["keys"], p["s"], p["requests"])
        out, z, base, fresh = [], 0, p["keys"] + 1, 0
        total = 0
        while total < p["requests"]:
            take = min(p["period"], p["requests"] - total)
            out.append(zipf[z:z + take])
            z += take
            total += take
            if total >= p["requests"]:
                break
            take = min(p["scan"], p["requests"] - total)
            if p["scan_space"] > 0:
                start = base + int(rng.integers(0, p["scan_space"] - p["scan"]))
            else:
                start = base + fresh
                fresh += p["scan"]
            out.append(np.arange(start, start + take, dtype=np.uint64))
            total += take
        return np.concatenate(out)
    if syn.kind == "shift":
        # A hot set of `hot` consecutive keys, Zipf(s) over it (its first key most popular);
        # every `phase` requests it moves up by `step` keys.
        ranks = zipf_ranks(rng, p["hot"], p["s"], p["requests"])
        phase = np.arange(p["requests"], dtype=np.uint64) // np.uint64(p["phase"])
        return ranks + phase * np.uint64(p["step"])
    if syn.kind == "loop":
        return (np.arange(p["requests"], dtype=np.uint64) % np.uint64(p["length"])) + 1
    raise ValueError(f"unknown synthetic kind {syn.kind}")


# --------------------------------------------------------------------------------------------
# Decoding the shared traces (formats of the traces README).
# --------------------------------------------------------------------------------------------


def decode(path: Path, fmt: str) -> np.ndarray:
    """The request keys of a shared trace file, as uint64."""
    if fmt == "arc":
        text = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
        fields = np.array(text.split(), dtype=np.int64).reshape(-1, 4)
        start, num = fields[:, 0], fields[:, 1]
        total = int(num.sum())
        # Each line expands to start, start+1, ..., start+num-1.
        line_of = np.repeat(np.arange(len(num)), num)
        first = np.cumsum(num) - num
        keys = start[line_of] + (np.arange(total) - first[line_of])
        return keys.astype(np.uint64)
    if fmt == "lirs":
        with gzip.open(path, "rb") as f:
            lines = [ln.strip() for ln in f.read().split(b"\n")]
        return np.array([int(ln) for ln in lines if ln and ln != b"*"], dtype=np.int64).astype(np.uint64)
    if fmt == "i32be":
        with lzma.open(path, "rb") as f:
            return np.frombuffer(f.read(), dtype=">u4").astype(np.uint64)
    if fmt == "i64be":
        with lzma.open(path, "rb") as f:
            return np.frombuffer(f.read(), dtype=">i8").view(np.uint64).astype(np.uint64)
    raise ValueError(f"unknown format {fmt}")


def write_oracle(keys: np.ndarray, path: Path) -> int:
    """Writes `keys` as an oracleGeneral file (object ids renumbered densely from 1 in order of
    first request, size 1, time = request index). Returns the distinct-key count."""
    n = len(keys)
    _, first_idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
    # Dense ids in order of first appearance: rank the unique keys by where they first occur.
    order = np.argsort(first_idx, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    ids = rank[inverse].astype(np.uint64) + 1
    # next[i]: index of the next request for the same id, -1 if none.
    by_id = np.argsort(ids, kind="stable")
    same = ids[by_id[1:]] == ids[by_id[:-1]]
    nxt = np.full(n, -1, dtype=np.int64)
    nxt[by_id[:-1][same]] = by_id[1:][same]
    rec = np.empty(n, dtype=ORACLE_DTYPE)
    rec["time"] = np.arange(n, dtype=np.uint32)
    rec["id"] = ids
    rec["size"] = 1
    rec["next"] = nxt
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    rec.tofile(tmp)
    tmp.replace(path)
    return len(order)


def oracle_path(name: str) -> Path:
    return CONVERTED / f"{name}.oracleGeneral"


def prepare_shared(t: Shared) -> Path:
    out = oracle_path(t.name)
    if out.exists() and out.stat().st_size == t.requests * ORACLE_DTYPE.itemsize:
        return out
    keys = decode(traces_dir() / t.file, t.fmt)
    distinct = write_oracle(keys, out)
    if (len(keys), distinct) != (t.requests, t.distinct):
        out.unlink()
        sys.exit(f"{t.name}: decoded {len(keys)} requests / {distinct} distinct, "
                 f"README says {t.requests} / {t.distinct}")
    print(f"converted {t.name}: {len(keys)} requests, {distinct} distinct -> {out}", file=sys.stderr)
    return out


def prepare_synthetic(s: Synthetic) -> Path:
    out = oracle_path(s.name)
    stamp = out.with_suffix(".sha256")
    if out.exists() and stamp.exists() and stamp.read_text().strip() == s.sha256:
        return out
    keys = generate(s)
    digest = hashlib.sha256(keys.astype("<u8").tobytes()).hexdigest()
    if s.sha256 and digest != s.sha256:
        sys.exit(f"{s.name}: generated keys hash to {digest}, the grid says {s.sha256}: "
                 "this numpy draws other numbers; the grid would not be the same workload")
    distinct = write_oracle(keys, out)
    stamp.write_text(digest + "\n")
    print(f"generated {s.name}: {len(keys)} requests, {distinct} distinct, sha256 {digest}",
          file=sys.stderr)
    return out


@dataclass(frozen=True)
class Point:
    set: str
    trace: str
    capacity: int
    path: Path


def points(sets=SETS) -> list[Point]:
    """Every point of the chosen sets (paths where `prepare` writes them)."""
    out = []
    for t in SHARED:
        if t.half in sets:
            out += [Point(t.half, t.name, c, oracle_path(t.name)) for c in t.capacities]
    for s in SYNTHETIC:
        if s.half in sets:
            out += [Point(s.half, s.name, c, oracle_path(s.name)) for c in s.capacities]
    if "shared" in sets:
        for t in SHARED:
            out += [Point("shared", t.name, c, oracle_path(t.name)) for c, _, _ in t.readme]
    return out


def readme_reference() -> dict[tuple[str, int], tuple[float, float]]:
    """(trace, capacity) -> (LRU %, OPT %) from the traces README."""
    return {(t.name, c): (lru, opt) for t in SHARED for c, lru, opt in t.readme}


def prepare(sets=SETS) -> list[Point]:
    pts = points(sets)
    needed = {p.trace for p in pts}
    for t in SHARED:
        if t.name in needed:
            prepare_shared(t)
    for s in SYNTHETIC:
        if s.name in needed:
            prepare_synthetic(s)
    # The list always holds the whole grid; only the traces of `sets` are made ready here.
    write_points(points(), POINTS_CSV)
    return pts


def write_points(pts: list[Point], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set", "trace", "capacity", "path"])
        for p in pts:
            w.writerow([p.set, p.trace, p.capacity, p.path])


def read_points(path: Path) -> list[Point]:
    with open(path, newline="") as f:
        return [Point(r["set"], r["trace"], int(r["capacity"]), Path(r["path"]))
                for r in csv.DictReader(f)]


def points_file(arg: str) -> Path:
    """An argparse type: the path of an existing points CSV (`--points`)."""
    path = Path(arg)
    if not path.exists():
        raise argparse.ArgumentTypeError(
            f"{path} does not exist (python3 tools/grid_heldout.py writes the held-out one)")
    return path


def parse_sets(arg: str) -> tuple[str, ...]:
    sets = tuple(s for s in arg.split(",") if s) if arg != "all" else SETS
    bad = [s for s in sets if s not in SETS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown set(s) {bad}; choose from {SETS} or all")
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="convert / generate the traces, write target/grid/points.csv")
    p.add_argument("--sets", type=parse_sets, default=SETS, help="tuning,validation,shared or all")
    sub.add_parser("list", help="print the grid (trace, half, shape, capacities)")
    args = ap.parse_args()
    if args.cmd == "prepare":
        pts = prepare(args.sets)
        print(f"{len(pts)} points over {len({p.trace for p in pts})} traces -> {POINTS_CSV}")
    elif args.cmd == "list":
        print("| half | trace | shape | capacities |")
        print("|---|---|---|---|")
        for half in ("tuning", "validation"):
            for t in SHARED:
                if t.half == half:
                    print(f"| {half} | {t.name} | {t.shape} | {', '.join(map(str, t.capacities))} |")
            for s in SYNTHETIC:
                if s.half == half:
                    print(f"| {half} | {s.name} | {s.shape} | {', '.join(map(str, s.capacities))} |")


if __name__ == "__main__":
    main()
