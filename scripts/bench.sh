#!/bin/sh
# Benchmarks: `ovlink bench` (overlay vs overlay2 side by side, medians and ratios) plus the
# plain-tool baseline: `cp -al` of the same top-layer tree that ovlink's hardlink copy copies.
#
#   sudo scripts/bench.sh                         # generated image, ~10,000 entries, 5 layers
#   sudo IMAGE=busybox.tar scripts/bench.sh       # any `docker save` tarball
#   sudo REPS=5 ENTRIES=20000 LAYERS=8 OUT=bench-out DIR=/var/tmp scripts/bench.sh
#
# Writes $OUT/bench.md (the table, with the cp -al rows appended), $OUT/bench.json and
# $OUT/bench.svg (the chart).
# Needs root (overlay mounts); DIR must not be tmpfs. Cleans up after itself.
set -eu

REPS=${REPS:-5}
ENTRIES=${ENTRIES:-10000}
LAYERS=${LAYERS:-5}
OUT=${OUT:-bench-out}
DIR=${DIR:-${TMPDIR:-/tmp}}
BIN=${OVLINK:-}
T=${CARGO_TARGET_DIR:-target}

cd "$(dirname "$0")/.."
if [ -z "$BIN" ]; then
    cargo build --release --quiet
    BIN=$T/release/ovlink
fi
mkdir -p "$OUT"

if [ -n "${IMAGE:-}" ]; then
    "$BIN" bench --image "$IMAGE" --reps "$REPS" --dir "$DIR" \
        --markdown "$OUT/bench.md" --json "$OUT/bench.json" --svg "$OUT/bench.svg"
    img=$IMAGE
else
    "$BIN" bench --entries "$ENTRIES" --layers "$LAYERS" --reps "$REPS" --dir "$DIR" \
        --markdown "$OUT/bench.md" --json "$OUT/bench.json" --svg "$OUT/bench.svg" --write-image "$OUT/image.tar"
    img=$OUT/image.tar
fi

# The cp -al baseline: import with the legacy layout, then copy the top layer's root/ with
# cp -al and with ovlink's own hardlink copy (the example binary), REPS times each.
root=$(mktemp -d "$DIR/ovlink-cpal.XXXXXX")
cleanup() {
    "$BIN" --root "$root" layer ls >/dev/null 2>&1 || true
    grep -o " $root[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$root"
}
trap cleanup EXIT INT TERM
top=$("$BIN" --root "$root" image import "$img" --name cpal 2>/dev/null | tail -n 1)
src=$root/overlay/$top/root
entries=$(find "$src" | wc -l)

cargo build --release --quiet -p ovlink-fs --example hardlink_copy 2>/dev/null || true
hc=$T/release/examples/hardlink_copy

now_ms() { date +%s%N | awk '{printf "%.1f", $1 / 1000000}'; }
median() { sort -n | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2}'; }

cpal=""
ovl=""
i=0
while [ "$i" -lt "$REPS" ]; do
    sync
    t0=$(now_ms); cp -al "$src" "$root/cp-$i"; t1=$(now_ms)
    cpal="$cpal $(echo "$t1 - $t0" | bc)"
    rm -rf "$root/cp-$i"
    if [ -x "$hc" ]; then
        sync
        t0=$(now_ms); "$hc" "$src" "$root/hc-$i" 2>/dev/null; t1=$(now_ms)
        ovl="$ovl $(echo "$t1 - $t0" | bc)"
        rm -rf "$root/hc-$i"
    fi
    i=$((i + 1))
done
cpal_m=$(echo "$cpal" | tr ' ' '\n' | grep . | median)
{
    echo
    echo "Plain-tool baseline on the same top-layer tree ($entries entries, $REPS runs, medians, wall clock incl. process start):"
    echo
    echo "| tool | time |"
    echo "|---|---:|"
    echo "| \`cp -al\` | $cpal_m ms |"
    if [ -n "$ovl" ]; then
        ovl_m=$(echo "$ovl" | tr ' ' '\n' | grep . | median)
        echo "| ovlink hardlink copy (\`examples/hardlink_copy\`) | $ovl_m ms |"
    fi
} | tee -a "$OUT/bench.md"
echo "wrote $OUT/bench.md and $OUT/bench.json"
