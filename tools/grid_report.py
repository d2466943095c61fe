#!/usr/bin/env python3
"""Joins the grid's CSVs and reports cachet against every other policy, per set.

    python3 tools/grid_report.py [--peers target/grid/peers.csv] [--rust target/grid/rust.csv]
        [--cachet FILE] [--baseline FILE] [--sets tuning,validation,shared|all] [--summary]
        [--points FILE]

Inputs (all `trace,capacity,policy,hit,hit_min,hit_max,runs`, hit ratios in percent):
  --peers     libCacheSim's policies (tools/libcachesim_grid.py)
  --rust      the Rust crates and exact OPT (cargo run --release --example grid)
  --cachet    cachet's column from any build (tools/grid_cachet.sh); replaces the cachet rows of
              --rust, so a changed policy is compared without replaying the peers
  --baseline  another cachet column (e.g. main's) to show the change against, point by point
  --points    report on the points of this points CSV, as one set, instead of the grid's sets
              (the held-out families: tools/grid_heldout.py)

For each set (tuning, validation, shared) it prints: every point with cachet (mean over its
hasher seeds, min-max), the best other policy of the point and cachet's gap to it; the number of
points where cachet is more than 1.0 behind the best other; each policy's mean hit ratio and mean
fraction of OPT (OPT = Belady with bypass, the README's reference, from --rust; libCacheSim's
Belady never bypasses and is only a competitor-free sanity column); and cachet's mean lead over the
best single other policy (the one with the highest mean on that set). It also applies the
"more than 1.0 behind" count to every policy: each peer against the best of the other peers.

The `lru` crate and libCacheSim's LRU are both exact LRU: they are reported as one policy, LRU
(a warning is printed if they ever differ). Means are taken over the points where every policy
has a value; points missing a policy are listed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grid  # noqa: E402

NOT_COMPETING = {"Belady", "OPT", "cachet"}
BEHIND = 1.0  # the bar: no point more than this many points behind the best other


def read(path: Path) -> dict[tuple[str, int, str], tuple[float, float, float, int]]:
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {(r["trace"], int(r["capacity"]), r["policy"]):
                (float(r["hit"]), float(r["hit_min"]), float(r["hit_max"]), int(r["runs"]))
                for r in csv.DictReader(f)}


def load(args) -> tuple[dict, dict]:
    """(trace, capacity) -> {policy: (hit, min, max, runs)}, and the baseline cachet column."""
    table: dict[tuple[str, int], dict[str, tuple]] = {}
    sources = [(args.peers, None), (args.rust, None)]
    if args.cachet:
        sources.append((args.cachet, "cachet"))
    for path, only in sources:
        if not path.exists():
            print(f"warning: {path} does not exist", file=sys.stderr)
        for (trace, cap, policy), v in read(path).items():
            if only and policy != only:
                continue
            if args.cachet and path == args.rust and policy == "cachet":
                continue  # --cachet replaces it
            if policy == "lru":
                other = table.get((trace, cap), {}).get("LRU")
                if other and abs(other[0] - v[0]) > 1e-9:
                    print(f"warning: {trace}@{cap}: lru crate {v[0]:.4f} != libCacheSim LRU "
                          f"{other[0]:.4f}", file=sys.stderr)
                policy = "LRU"
            if policy == "LRU" and "LRU" in table.get((trace, cap), {}):
                other = table[(trace, cap)]["LRU"]
                if abs(other[0] - v[0]) > 1e-9:
                    print(f"warning: {trace}@{cap}: LRU values differ: {other[0]:.4f} vs {v[0]:.4f}",
                          file=sys.stderr)
            table.setdefault((trace, cap), {})[policy] = v
    baseline = {}
    if args.baseline:
        baseline = {(t, c): v for (t, c, p), v in read(args.baseline).items() if p == "cachet"}
    return table, baseline


def fmt_cachet(v: tuple) -> str:
    hit, lo, hi, runs = v
    return f"{hit:.2f} ({lo:.2f}-{hi:.2f})" if runs > 1 else f"{hit:.2f}"


def report_set(name: str, pts: list[tuple[str, int]], table: dict, baseline: dict,
               summary_only: bool) -> None:
    print(f"\n## {name}: {len(pts)} points\n")
    policies = sorted({p for pt in pts for p in table.get(pt, {})} - {"Belady", "OPT"})
    others = [p for p in policies if p not in NOT_COMPETING]
    complete, missing = [], []
    for pt in pts:
        row = table.get(pt, {})
        lack = [p for p in policies + ["OPT"] if p not in row]
        (missing if lack or "cachet" not in row else complete).append((pt, lack))
    complete = [pt for pt, _ in complete]
    if missing:
        print(f"{len(missing)} points lack a value and are left out of the means: " + "; ".join(
            f"{t}@{c} ({', '.join(lack) or 'cachet'})" for (t, c), lack in missing[:12])
            + (" ..." if len(missing) > 12 else ""))
        print()

    behind = []
    if not summary_only:
        head = "| trace | capacity | cachet (seeds min-max) | best other | its hit | gap | OPT | cachet / OPT |"
        rule = "|---|---:|---:|---|---:|---:|---:|---:|"
        if baseline:
            head += " baseline | change |"
            rule += "---:|---:|"
        print(head)
        print(rule)
    for pt in pts:
        row = table.get(pt, {})
        if "cachet" not in row:
            continue
        cands = [(row[p][0], p) for p in others if p in row]
        if not cands:
            continue
        best_hit, best = max(cands)
        c = row["cachet"]
        gap = c[0] - best_hit
        if gap < -BEHIND:
            behind.append((gap, pt, best))
        if summary_only:
            continue
        opt = row.get("OPT")
        frac = f"{c[0] / opt[0]:.3f}" if opt and opt[0] > 0 else "-"
        opt_s = f"{opt[0]:.2f}" if opt else "-"
        flag = " **" if gap < -BEHIND else ""
        line = (f"| {pt[0]} | {pt[1]} | {fmt_cachet(c)} | {best} | {best_hit:.2f} | "
                f"{gap:+.2f}{flag} | {opt_s} | {frac} |")
        if baseline:
            b = baseline.get(pt)
            line += f" {b[0]:.2f} | {c[0] - b[0]:+.2f} |" if b else " - | - |"
        print(line)

    print(f"\ncachet more than {BEHIND:.1f} behind the best other: {len(behind)} of "
          f"{sum(1 for pt in pts if 'cachet' in table.get(pt, {}))} points"
          + (": " + ", ".join(f"{t}@{c} {g:+.2f} ({b})" for g, (t, c), b in sorted(behind))
             if behind else ""))

    peers_behind(pts, table, others)

    if not complete:
        print("\n(no point has every policy: no means)")
        return
    n = len(complete)

    def mean(xs):
        xs = list(xs)
        return sum(xs) / len(xs)

    stats = []
    for p in policies:
        hit = mean(table[pt][p][0] for pt in complete)
        frac = mean(table[pt][p][0] / table[pt]["OPT"][0] if table[pt]["OPT"][0] > 0 else 1.0
                    for pt in complete)
        stats.append((hit, frac, p))
    stats.sort(reverse=True)
    opt_mean = mean(table[pt]["OPT"][0] for pt in complete)
    print(f"\nMeans over {n} points (OPT {opt_mean:.2f}):\n")
    print("| policy | mean hit % | mean fraction of OPT |")
    print("|---|---:|---:|")
    for hit, frac, p in stats:
        if p == "cachet":
            lo = mean(table[pt][p][1] for pt in complete)
            hi = mean(table[pt][p][2] for pt in complete)
            print(f"| **cachet** | **{hit:.2f}** (seed min/max {lo:.2f}-{hi:.2f}) | **{frac:.4f}** |")
        else:
            print(f"| {p} | {hit:.2f} | {frac:.4f} |")
    if any(p == "Belady" for pt in complete for p in table[pt]):
        bel = [pt for pt in complete if "Belady" in table[pt]]
        print(f"| (libCacheSim Belady, no bypass) | {mean(table[pt]['Belady'][0] for pt in bel):.2f} | "
              f"{mean(table[pt]['Belady'][0] / table[pt]['OPT'][0] if table[pt]['OPT'][0] > 0 else 1.0 for pt in bel):.4f} |")
    by = {p: (hit, frac) for hit, frac, p in stats}
    if "cachet" in by:
        best_hit, best_p = max((by[p][0], p) for p in others if p in by)
        best_frac, best_fp = max((by[p][1], p) for p in others if p in by)
        print(f"\ncachet's mean lead over the best single other policy ({best_p}): "
              f"{by['cachet'][0] - best_hit:+.2f} points of hit ratio; in fraction of OPT over "
              f"{best_fp}: {by['cachet'][1] - best_frac:+.4f}")
        if baseline:
            both = [pt for pt in complete if pt in baseline]
            if both:
                print(f"cachet against the baseline over {len(both)} points: "
                      f"{mean(table[pt]['cachet'][0] - baseline[pt][0] for pt in both):+.3f} mean")


def peers_behind(pts: list[tuple[str, int]], table: dict, others: list[str]) -> None:
    """The bar's first part applied to every policy: the points where it is more than BEHIND
    behind the best of the others. The peers are compared among themselves (cachet is not one
    of their others), cachet with all of them, so cachet's line is the count printed above."""
    print(f"\nEvery policy against the first part of the bar (more than {BEHIND:.1f} behind the "
          "best of the others; a peer's others are the other peers):\n")
    print("| policy | points | more than 1.0 behind | their sum |")
    print("|---|---:|---:|---:|")
    rows = []
    for p in others + ["cachet"]:
        n, gaps = 0, []
        for pt in pts:
            row = table.get(pt, {})
            rivals = [row[q][0] for q in others if q != p and q in row]
            if p not in row or not rivals:
                continue
            n += 1
            gap = row[p][0] - max(rivals)
            if gap < -BEHIND:
                gaps.append(gap)
        if n:
            rows.append((len(gaps), sum(gaps), n, p))
    for count, total, n, p in sorted(rows, key=lambda r: (r[0], -r[1])):
        print(f"| {p} | {n} | {count} | {total:.1f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=Path, default=grid.GRID_DIR / "peers.csv")
    ap.add_argument("--rust", type=Path, default=grid.GRID_DIR / "rust.csv")
    ap.add_argument("--cachet", type=Path, help="cachet's column from another build")
    ap.add_argument("--baseline", type=Path, help="a cachet column to compare against")
    ap.add_argument("--sets", type=grid.parse_sets, default=grid.SETS)
    ap.add_argument("--summary", action="store_true", help="no per-point table")
    ap.add_argument("--points", type=grid.points_file, help="report on the points of this points CSV")
    args = ap.parse_args()
    table, baseline = load(args)
    if args.points:
        pts = list(dict.fromkeys((p.trace, p.capacity) for p in grid.read_points(args.points)))
        report_set(args.points.stem, pts, table, baseline, args.summary)
        return 0
    for s in args.sets:
        pts = list(dict.fromkeys((p.trace, p.capacity) for p in grid.points((s,)) if p.set == s))
        report_set(s, pts, table, baseline, args.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
