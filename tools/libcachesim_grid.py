#!/usr/bin/env python3
"""Replays the grid through libCacheSim's implementations of the published policies.

    pip install libcachesim            # Python bindings of libCacheSim (PyPI)
    python3 tools/libcachesim_grid.py [--sets tuning,validation,shared|all] [--traces A,B]
        [--policies ARC,LIRS,...] [--jobs 2] [--out target/grid/peers.csv] [--resume] [--check]
        [--points FILE]

Prepares the traces (see tools/grid.py), then replays each (trace, capacity) point of the chosen
sets through every policy: a count-bounded cache (every object has size 1), each policy in
libCacheSim's default configuration, the hit ratio in percent. Writes
`trace,capacity,policy,hit,hit_min,hit_max,runs` rows to --out (one run each, min = max = hit:
libCacheSim is deterministic, except LeCaR and Cacheus, which draw random numbers from a global
generator that starts every replay in the same state here), keeping the rows it does not recompute; with --resume, points already
in the file are skipped. The file is rewritten after every replay, so an interrupted run keeps
what it finished.

--points FILE replays the points of a points CSV (`set,trace,capacity,path`, as
tools/grid_heldout.py writes for the held-out families) instead of the grid's sets; their
traces must already be prepared.

--check replays LRU and Belady at the README's reference points only and compares them with the
README: LRU must match to the second decimal (the command exits 1 otherwise). libCacheSim's Belady
evicts the resident with the farthest next use but always admits the missed object; the README's
OPT does not admit a newcomer needed later than every resident ("bypass"), so Belady can be lower
than OPT; the difference is printed. The check also runs as part of any run that includes the
`shared` set.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grid  # noqa: E402

import libcachesim as lcs  # noqa: E402

# CSV name -> libCacheSim class. Belady is the clairvoyant bound, not a competitor.
POLICIES = {
    "ARC": lcs.ARC,
    "LIRS": lcs.LIRS,
    "S3-FIFO": lcs.S3FIFO,
    "SIEVE": lcs.Sieve,
    "2Q": lcs.TwoQ,
    "W-TinyLFU": lcs.WTinyLFU,
    "LeCaR": lcs.LeCaR,
    "Cacheus": lcs.Cacheus,
    "LRU": lcs.LRU,
    "Belady": lcs.Belady,
}
# Relative cost per request (measured on OLTP), to start a trace's slowest replays first.
COST = {"Cacheus": 4, "LIRS": 2, "S3-FIFO": 2, "W-TinyLFU": 1.5, "2Q": 1.2}

# Initial hash-table size (2^20 buckets; libCacheSim grows it as needed). It is fixed because
# LeCaR's and Cacheus's results depend on it; the default (2^24) makes small replays slow.
HASHPOWER = 20

HEADER = ["trace", "capacity", "policy", "hit", "hit_min", "hit_max", "runs"]

def replay(job: tuple[str, str, int, str]) -> tuple[str, int, str, float, float]:
    """Runs in a worker: (trace, path, capacity, policy) -> (..., hit %, seconds)."""
    trace, path, capacity, policy = job
    reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
    t0 = time.perf_counter()
    cache = POLICIES[policy](capacity, hashpower=HASHPOWER)
    miss_ratio, _ = cache.process_trace(reader)
    return trace, capacity, policy, 100.0 * (1.0 - miss_ratio), time.perf_counter() - t0


def read_csv(path: Path) -> dict[tuple[str, int, str], list[str]]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {(r["trace"], int(r["capacity"]), r["policy"]): [r[h] for h in HEADER[3:]]
                for r in csv.DictReader(f)}


def write_csv(path: Path, rows: dict[tuple[str, int, str], list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for (trace, cap, policy), rest in sorted(rows.items()):
            w.writerow([trace, cap, policy, *rest])
    tmp.replace(path)


def run_jobs(jobs: list[tuple[str, str, int, str]], n_jobs: int, out: Path | None,
             rows: dict) -> dict[tuple[str, int, str], float]:
    """Replays `jobs` on `n_jobs` processes; records each result in `rows` (and `out`)."""
    # Smallest traces first, so that whole traces (every policy at every point) are done early
    # and the report has complete points while the largest traces still run.
    sizes = {p: Path(p).stat().st_size for _, p, _, _ in jobs}
    jobs = sorted(jobs, key=lambda j: (sizes[j[1]], j[0], -COST.get(j[3], 1.0), -j[2]))
    results = {}
    t0 = time.perf_counter()
    # One process per replay: LeCaR and Cacheus draw from libCacheSim's global random generator,
    # which cannot be seeded from Python; a fresh fork starts each replay from the same state,
    # so their results do not depend on which replays ran before in the same process.
    with mp.get_context("fork").Pool(n_jobs, maxtasksperchild=1) as pool:
        for i, (trace, cap, policy, hit, secs) in enumerate(pool.imap_unordered(replay, jobs), 1):
            results[(trace, cap, policy)] = hit
            rows[(trace, cap, policy)] = [f"{hit:.4f}", f"{hit:.4f}", f"{hit:.4f}", "1"]
            if out is not None:
                write_csv(out, rows)
            print(f"[{i}/{len(jobs)} {time.perf_counter() - t0:7.1f}s] {trace}@{cap} {policy}: "
                  f"{hit:.2f} ({secs:.1f}s)", file=sys.stderr)
    return results


def check(results: dict[tuple[str, int, str], float]) -> bool:
    """LRU and Belady against the README's LRU and OPT; True if every LRU matches."""
    ok = True
    print("| trace | capacity | LRU | README LRU | Belady | README OPT | Belady - OPT | status |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for (trace, cap), (lru_ref, opt_ref) in grid.readme_reference().items():
        lru = results.get((trace, cap, "LRU"))
        bel = results.get((trace, cap, "Belady"))
        if lru is None:
            continue
        match = f"{lru:.2f}" == f"{lru_ref:.2f}"
        ok &= match
        bel_s = f"{bel:.2f}" if bel is not None else "-"
        diff = f"{bel - opt_ref:+.2f}" if bel is not None else "-"
        print(f"| {trace} | {cap} | {lru:.2f} | {lru_ref:.2f} | {bel_s} | {opt_ref:.2f} | {diff} | "
              f"{'ok' if match else 'LRU MISMATCH'} |")
    print("all LRU values match the README" if ok else "LRU MISMATCH against the README")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=grid.parse_sets, default=grid.SETS)
    ap.add_argument("--traces", default="", help="only these traces (comma-separated)")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--out", type=Path, default=grid.GRID_DIR / "peers.csv")
    ap.add_argument("--resume", action="store_true", help="skip points already in --out")
    ap.add_argument("--check", action="store_true",
                    help="only LRU and Belady at the README points, compared with the README")
    ap.add_argument("--points", type=grid.points_file,
                    help="replay the points of this points CSV instead of the grid's sets")
    args = ap.parse_args()
    if args.points and args.check:
        ap.error("--points and --check: choose one")

    policies = [p for p in args.policies.split(",") if p]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        ap.error(f"unknown policies {unknown}; known: {list(POLICIES)}")
    sets = ("shared",) if args.check else args.sets
    if args.check:
        policies = ["LRU", "Belady"]
    if args.points:
        sets = ()
        pts = grid.read_points(args.points)
        absent = sorted({str(p.path) for p in pts if not p.path.exists()})
        if absent:
            print(f"error: traces not prepared: {', '.join(absent)}", file=sys.stderr)
            return 2
    else:
        pts = grid.prepare(sets)
    only = {t for t in args.traces.split(",") if t}
    pts = [p for p in pts if not only or p.trace in only]

    rows = read_csv(args.out)
    want, seen = [], set()
    for p in pts:
        for pol in policies:
            key = (p.trace, p.capacity, pol)
            if key in seen or (args.resume and key in rows):
                continue
            seen.add(key)
            want.append((p.trace, str(p.path), p.capacity, pol))
    print(f"{len(want)} replays on {args.jobs} processes", file=sys.stderr)
    results = run_jobs(want, args.jobs, None if args.check else args.out, rows)
    if "shared" in sets:
        # Complete the check with rows already in the file (a --resume run replays nothing).
        for (trace, cap, pol), rest in rows.items():
            results.setdefault((trace, cap, pol), float(rest[0]))
        if not check(results):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
