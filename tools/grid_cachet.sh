#!/usr/bin/env bash
# cachet's column of the grid, for one build of the crate: writes a CSV that
# tools/grid_report.py takes as --cachet (the peers are not replayed again).
#
#   tools/grid_cachet.sh [--sets tuning|validation|shared|all|A,B] [--seeds N] [--threads N]
#                        [--out FILE] [--crate DIR] [--traces A,B]
#
# Defaults: --sets tuning, --seeds 3 (hasher seeds 1..N), --threads 2,
# --out target/grid/cachet.csv (relative to this repository). The file is started afresh, so it
# never mixes rows of two builds.
#
# --crate DIR measures the crate in DIR (another worktree, with its uncommitted changes) instead
# of this one: its tracked and untracked files are copied to target/grid/crate/ (DIR is only
# read), this repository's examples/grid.rs is laid over them, and the copy is built with its own
# target directory, target/grid/cargo-target/ (seeded from target/release/ the first time, so only
# cachet and the example compile).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
sets=tuning seeds=3 threads=2 out="$repo/target/grid/cachet.csv" crate="" traces=""
while [ $# -gt 0 ]; do
    case "$1" in
        --sets) sets=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --out) out=$(realpath -m "$2"); shift 2 ;;
        --crate) crate=$(realpath "$2"); shift 2 ;;
        --traces) traces=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

python3 "$repo/tools/grid.py" prepare --sets "$sets" >&2

if [ -z "$crate" ] || [ "$crate" = "$repo" ]; then
    (cd "$repo" && cargo build --release --example grid)
    bin="$repo/target/release/examples/grid"
    label="$(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- src || echo +changes)"
else
    copy="$repo/target/grid/crate"
    rm -rf "$copy"
    mkdir -p "$copy"
    (cd "$crate" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy")
    cp "$repo/examples/grid.rs" "$copy/examples/grid.rs"
    export CARGO_TARGET_DIR="$repo/target/grid/cargo-target"
    if [ ! -d "$CARGO_TARGET_DIR/release" ]; then
        mkdir -p "$CARGO_TARGET_DIR"
        cp -r --reflink=auto "$repo/target/release" "$CARGO_TARGET_DIR/release"
    fi
    (cd "$copy" && cargo build --release --example grid)
    bin="$CARGO_TARGET_DIR/release/examples/grid"
    label="$crate@$(git -C "$crate" rev-parse --short HEAD)$(git -C "$crate" diff --quiet HEAD -- src || echo +changes)"
fi

rm -f "$out"
args=(--points "$repo/target/grid/points.csv" --sets "$sets" --policies cachet
      --seeds "$seeds" --threads "$threads" --out "$out")
[ -n "$traces" ] && args+=(--traces "$traces")
"$bin" "${args[@]}"
echo "cachet column of $label -> $out" >&2
echo "report: python3 $repo/tools/grid_report.py --sets $sets --cachet $out" >&2
