#!/usr/bin/env bash
# Runs the ovlink fuzz targets (fuzz/): apply_layer (the tar applier) and import (image
# import through a real OverlayDriver into a throw-away home; needs root), each for
# SECONDS (default 60), one after the other or both at once with PARALLEL=1.
#
#   scripts/fuzz.sh [SECONDS]
#
# New inputs go to $FUZZ_WORK/corpus/<target> (default /tmp/ovlink-fuzz), which starts from
# the corpus earlier runs found (fuzz/corpus-found/<target>.tar.zst, unpacked) plus the seeds
# in fuzz/corpus/<target>; crashes go to $FUZZ_WORK/artifacts/<target>; logs to
# $FUZZ_WORK/<target>.log. To keep what a run found, minimize and pack it (the inputs are
# tars full of zero padding: 4-9 MB minimized, ~60 KB packed):
#   fuzz/target/x86_64-unknown-linux-gnu/release/<target> -merge=1 MIN fuzz/corpus/<target> $FUZZ_WORK/corpus/<target>
#   (cd MIN && tar --sort=name --mtime=@0 --owner=0 --group=0 -cf - . | zstd -19 -c) > fuzz/corpus-found/<target>.tar.zst
# Stable Rust works: cargo-fuzz's nightly flags are allowed with RUSTC_BOOTSTRAP=1.
set -euo pipefail
secs=${1:-60}
here=$(cd "$(dirname "$0")/.." && pwd)
work=${FUZZ_WORK:-/tmp/ovlink-fuzz}
export RUSTC_BOOTSTRAP=1
# Layer durability is not what is fuzzed; fsync per input only slows the loop down.
export OVLINK_NO_FSYNC=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd "$here/fuzz"
python3 seeds.py "$here/fuzz" >/dev/null 2>&1 || true
cargo fuzz build -O
run() {
  local t=$1
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  if [ -f "$here/fuzz/corpus-found/$t.tar.zst" ]; then
    zstd -dqc "$here/fuzz/corpus-found/$t.tar.zst" | tar -xf - -C "$work/corpus/$t"
  fi
  nice -n 19 cargo fuzz run -O "$t" "$work/corpus/$t" "$here/fuzz/corpus/$t" -- \
    -max_total_time="$secs" -max_len=65536 -timeout=20 -rss_limit_mb=2048 \
    -artifact_prefix="$work/artifacts/$t/" -print_final_stats=1 >"$work/$t.log" 2>&1
  echo "$t: $(grep -E 'stat::number_of_executed_units' "$work/$t.log" || true) \
$(ls "$work/artifacts/$t" | wc -l) artifacts"
}
if [ "${PARALLEL:-0}" = 1 ]; then
  run apply_layer & run import & wait
else
  run apply_layer
  run import
fi
# The import target keeps one throw-away home per fuzzing process (emptied after every
# input); a crashed apply_layer input keeps its sandbox for inspection. Remove the homes.
rm -rf "${TMPDIR:-/tmp}"/ovlink-fuzz-import-*
