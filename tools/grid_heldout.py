#!/usr/bin/env python3
"""Held-out synthetic workloads: families with parameters and seeds that no policy constant was
chosen on, to check that a change measured on the grid carries over to workloads nobody looked at.

    python3 tools/grid_heldout.py            # -> target/grid/heldout/*.oracleGeneral and
                                             #    target/grid/heldout-points.csv
    cargo run --release --example grid -- --points target/grid/heldout-points.csv --sets all \\
        --policies cachet,lru,quick_cache --seeds 3 --out /tmp/heldout.csv

Run the second command on two builds (or with `tools/grid_cachet.sh --crate`'s copy) and compare
the CSVs point by point. The points are in the grid's "validation" set only because the grid
binary takes that name; they are in neither half. Against every other policy, as the grid's
sets are reported (about 2 minutes for the peers, 3 for the crates and OPT, on 2 cores):

    python3 tools/libcachesim_grid.py --points target/grid/heldout-points.csv \\
        --out target/grid/heldout-peers.csv
    cargo run --release --example grid -- --points target/grid/heldout-points.csv --sets all \\
        --policies cachet,moka,quick_cache,lru,opt --seeds 3 --out target/grid/heldout-rust.csv
    python3 tools/grid_report.py --points target/grid/heldout-points.csv \\
        --peers target/grid/heldout-peers.csv --rust target/grid/heldout-rust.csv

Families: a hot set that shifts by half (smaller and faster than shift-a), a hot set replaced
whole (larger and slower than shift-b), two Zipf workloads (0.7 over 50,000 keys, 0.9 over a
million), Zipf 0.9 with one-time scans, and two recency workloads drawn from an LRU stack model
(each request a new key with probability p, else the key at a Pareto-distributed depth of the
stack of the last 20,000 keys). Capacities 64 to 16,384, doubling.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grid as g  # noqa: E402

OUT = g.CONVERTED.parent / "heldout"
CAPACITIES = g._pow2(64, 16_384)

FAMILIES = (
    g.Synthetic("shift-c", "validation", "a hot set that shifts by half", "shift",
                dict(hot=5_000, s=0.8, requests=600_000, phase=50_000, step=2_500), 11, CAPACITIES),
    g.Synthetic("shift-d", "validation", "a hot set replaced whole", "shift",
                dict(hot=40_000, s=0.6, requests=1_000_000, phase=300_000, step=40_000), 12,
                CAPACITIES),
    g.Synthetic("zipf-0.7", "validation", "frequency (Zipf)", "zipf",
                dict(keys=50_000, s=0.7, requests=600_000), 13, CAPACITIES),
    g.Synthetic("zipf-0.9", "validation", "frequency (Zipf, a million keys)", "zipf",
                dict(keys=1_000_000, s=0.9, requests=1_000_000), 14, CAPACITIES),
    g.Synthetic("zipfscan-c", "validation", "Zipf 0.9 with one-time scans", "zipfscan",
                dict(keys=50_000, s=0.9, requests=600_000, period=20_000, scan=5_000,
                     scan_space=0), 15, CAPACITIES),
)

# (name, seed, Pareto shape of the reuse depth, probability of a new key)
STACKS = (("stack-a", 21, 1.0, 0.05), ("stack-b", 22, 0.7, 0.1))
STACK_REQUESTS = 300_000
STACK_DEPTH = 20_000


def stack_keys(seed: int, alpha: float, new_p: float) -> np.ndarray:
    """An LRU stack model: a new key with probability `new_p`, else the key at depth
    1 + Pareto(`alpha`) of the stack of the last `STACK_DEPTH` keys (moved to its top)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    depth = (rng.pareto(alpha, STACK_REQUESTS) + 1).astype(np.int64)
    fresh = rng.random(STACK_REQUESTS) < new_p
    stack: list[int] = []
    keys = np.empty(STACK_REQUESTS, dtype=np.uint64)
    nxt = 1
    for i in range(STACK_REQUESTS):
        if fresh[i] or not stack:
            k, nxt = nxt, nxt + 1
        else:
            k = stack.pop(-min(int(depth[i]), len(stack)))
        stack.append(k)
        if len(stack) > STACK_DEPTH:
            stack.pop(0)
        keys[i] = k
    return keys


def main() -> None:
    points = []
    for syn in FAMILIES:
        path = OUT / f"{syn.name}.oracleGeneral"
        distinct = g.write_oracle(g.generate(syn), path)
        print(f"{syn.name}: {syn.params['requests']} requests, {distinct} distinct", file=sys.stderr)
        points += [g.Point("validation", syn.name, c, path) for c in syn.capacities]
    for name, seed, alpha, new_p in STACKS:
        path = OUT / f"{name}.oracleGeneral"
        distinct = g.write_oracle(stack_keys(seed, alpha, new_p), path)
        print(f"{name}: {STACK_REQUESTS} requests, {distinct} distinct", file=sys.stderr)
        points += [g.Point("validation", name, c, path) for c in CAPACITIES]
    g.write_points(points, g.CONVERTED.parent / "heldout-points.csv")


if __name__ == "__main__":
    main()
