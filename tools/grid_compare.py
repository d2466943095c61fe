#!/usr/bin/env python3
"""cachet's grid CSV against the best other policy of every point, without replaying the peers.

    python3 tools/grid_compare.py NEW.csv [BASE.csv] [--verbose]

NEW.csv (and BASE.csv) are written by tools/grid_cachet.sh. The best other policy of each point
is read from the point-by-point tables of docs/grid.md (the peers' columns there do not depend on
cachet), the best single other policy's mean of each set from the table in docs/policy.md. Per
set it prints cachet's mean (mean of the per-point seed minima and maxima), its lead over that
policy, the points more than 1.0 behind the best other (and those within 0.01 of it, where the
tables' rounding can decide the count), and with BASE.csv the change of the mean (--verbose: the
points that moved most). tools/grid_report.py prints the full report instead, but
needs the peers' CSVs from tools/libcachesim_grid.py.
"""
import csv
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def best_others():
    """{(set, trace, capacity): (policy, hit)} from docs/grid.md's point-by-point tables."""
    text = (ROOT / "docs/grid.md").read_text().split("## Point by point", 1)[1]
    best, current = {}, None
    for line in text.splitlines():
        m = re.match(r"### (\w+):", line)
        if m:
            current = m.group(1)
            continue
        if current and line.startswith("| ") and not line.startswith(("| trace", "|---")):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            try:
                best[(current, cells[0], int(cells[1]))] = (cells[3], float(cells[4]))
            except (IndexError, ValueError):
                pass
    return best


def best_single_means():
    """{set: (policy, mean)} from the results table of docs/policy.md."""
    means = {}
    for line in (ROOT / "docs/policy.md").read_text().splitlines():
        m = re.match(r"\| (tuning|validation|shared)\b[^|]*\| \d+ \| [^|]+\| (\S+) ([\d.]+) \|", line)
        if m:
            means[m.group(1)] = (m.group(2), float(m.group(3)))
    return means


def load(path):
    rows = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["policy"] == "cachet":
                rows[(r["trace"], int(r["capacity"]))] = r
    return rows


def main(argv):
    verbose = "--verbose" in argv or "-v" in argv
    paths = [a for a in argv if not a.startswith("-")]
    if not paths:
        sys.exit(__doc__)
    new = load(paths[0])
    base = load(paths[1]) if len(paths) > 1 else {}
    best, singles = best_others(), best_single_means()
    for s in ("tuning", "validation", "shared"):
        points = [(t, c) for (ss, t, c) in best if ss == s and (t, c) in new]
        if not points:
            continue

        def mean(rows, key, pts=points):
            return sum(float(rows[p][key]) for p in pts) / len(pts)

        line = f"{s}: {len(points)} points, mean {mean(new, 'hit'):.2f} "
        line += f"({mean(new, 'hit_min'):.2f}-{mean(new, 'hit_max'):.2f})"
        if s in singles:
            line += f", lead {mean(new, 'hit') - singles[s][1]:+.2f} over {singles[s][0]}"
        common = [p for p in points if p in base]
        if common:
            line += f", {mean(new, 'hit', common) - mean(base, 'hit', common):+.2f} against base"
        print(line)
        gaps = sorted((float(new[p]["hit"]) - best[(s,) + p][1], p) for p in points)
        behind = [(g, p) for g, p in gaps if g < -1.0]
        print(f"  more than 1.0 behind the best other: {len(behind)}, summing {sum(g for g, _ in behind):.2f}")
        if behind:
            print("   ", " ".join(f"{t}@{c} {g:+.1f}" for g, (t, c) in behind))
        # The best others in docs/grid.md are rounded to 0.01: within that of the threshold,
        # the count may differ from grid_report.py's, which reads the peers' full figures.
        edge = [(g, p) for g, p in gaps if -1.01 <= g <= -0.99]
        if edge:
            print(
                "  within 0.01 of 1.0 behind (the count may differ from grid_report.py's):",
                " ".join(f"{t}@{c} {g:+.3f}" for g, (t, c) in edge),
            )
        if verbose and common:
            moves = sorted((float(new[p]["hit"]) - float(base[p]["hit"]), p) for p in common)
            print("  down most:", " ".join(f"{t}@{c} {g:+.2f}" for g, (t, c) in moves[:6]))
            print("  up most:  ", " ".join(f"{t}@{c} {g:+.2f}" for g, (t, c) in moves[-6:]))


if __name__ == "__main__":
    main(sys.argv[1:])
