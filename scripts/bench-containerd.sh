#!/usr/bin/env bash
# Benchmark (never a test): one private containerd 1.6 with four snapshotters side by side,
# ovlink (legacy overlay layout), ovlink2 (ovlink's overlay2 layout), containerd's built-in
# overlayfs and native, measured interleaved in one run:
#   - `ctr images import --snapshotter S` of tests/fixtures/fx-layers.tar (4 layers, 4 MB) and of
#     a generated 4-layer image (/usr/include, /usr/share/locale, /usr/share/doc, /usr/lib/python3
#     of this machine: about 470 MB, 60,000 files), each followed by `ctr images rm --sync` and
#     content cleanup (not timed);
#   - `ctr run --rm S fx:layers true` start latency.
# Prints a markdown table of medians (and min-max). Uses the release binary.
#
#   sudo scripts/bench-containerd.sh [ROUNDS]        (default 3)
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROUNDS=${1:-3}
[ "$(id -u)" = 0 ] || { echo "bench-containerd: run as root" >&2; exit 1; }
command -v containerd >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq containerd >/dev/null; }
OVLINK=${OVLINK_BIN:-}
if [ -z "$OVLINK" ]; then cargo build --release -q --bin ovlink || exit 1; OVLINK=$REPO/target/release/ovlink; fi
OVLINK=$(realpath "$OVLINK")
W=$(mktemp -d "${BENCH_TMP:-/var/tmp}/ovlink-ctr-bench.XXXXXX")
PIDS=()
CTRD=
cleanup() {
  for t in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s KILL "$t" >/dev/null 2>&1; done
  [ -n "$CTRD" ] && { kill "$CTRD" 2>/dev/null; wait "$CTRD" 2>/dev/null; }
  for p in $(grep -l -a -F "$W/containerd.sock" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    [ "$p" != $$ ] && kill -9 "$p" 2>/dev/null
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  awk -v d="$W/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT
ctr() { command ctr --address "$W/containerd.sock" "$@"; }

echo "bench-containerd: generating the big image" >&2
python3 scripts/make-docker-save.py "$W/big.tar" big:4 \
  /usr/include=/usr/include /usr/share/locale=/usr/share/locale \
  /usr/share/doc=/usr/share/doc /usr/lib/python3=/usr/lib/python3 >/dev/null || exit 1

cat >"$W/config.toml" <<TOML
version = 2
root = "$W/root"
state = "$W/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/containerd.sock"
[ttrpc]
  address = "$W/containerd.sock.ttrpc"
[proxy_plugins]
  [proxy_plugins.ovlink]
    type = "snapshot"
    address = "$W/ovlink.sock"
  [proxy_plugins.ovlink2]
    type = "snapshot"
    address = "$W/ovlink2.sock"
TOML
"$OVLINK" --root "$W/o1" --driver overlay snapshotter serve --socket "$W/ovlink.sock" 2>"$W/o1.log" &
PIDS+=($!)
"$OVLINK" --root "$W/o2" --driver overlay2 snapshotter serve --socket "$W/ovlink2.sock" 2>"$W/o2.log" &
PIDS+=($!)
containerd --config "$W/config.toml" >"$W/containerd.log" 2>&1 &
CTRD=$!
for _ in $(seq 200); do ctr version >/dev/null 2>&1 && [ -S "$W/ovlink.sock" ] && [ -S "$W/ovlink2.sock" ] && break; sleep 0.05; done

SNAPS=(ovlink ovlink2 overlayfs native)
now() { date +%s.%N; }
record() { echo "$1 $2 $3" >>"$W/times"; } # what snapshotter seconds
clean_images() {
  ctr images ls -q | xargs -r ctr --address "$W/containerd.sock" images rm --sync >/dev/null
  for l in $(ctr leases ls -q); do ctr leases rm --sync "$l" >/dev/null; done
  ctr content ls -q | xargs -r ctr --address "$W/containerd.sock" content rm >/dev/null
  local s n
  for s in "${SNAPS[@]}"; do # nothing may be left to skip an unpack with
    for _ in $(seq 100); do
      n=$(ctr snapshots --snapshotter "$s" ls | awk 'NR > 1' | wc -l); [ "$n" = 0 ] && break; sleep 0.1
    done
    [ "$n" = 0 ] || { echo "bench-containerd: $n snapshots left in $s after cleanup" >&2; exit 1; }
  done
  [ -z "$(ctr content ls -q)" ] || { echo "bench-containerd: content left after cleanup" >&2; exit 1; }
}
timed_import() { # timed_import WHAT FILE SNAPSHOTTER
  local t0 t1
  t0=$(now)
  ctr images import --snapshotter "$3" "$2" >/dev/null || { echo "import $1 on $3 failed" >&2; return 1; }
  sync
  t1=$(now)
  record "import-$1" "$3" "$(echo "$t1 - $t0" | bc)"
}
for r in $(seq "$ROUNDS"); do
  echo "bench-containerd: round $r/$ROUNDS" >&2
  for s in "${SNAPS[@]}"; do
    clean_images; sync; echo 3 >/proc/sys/vm/drop_caches
    timed_import big "$W/big.tar" "$s"
    clean_images
    timed_import fx "$REPO/tests/fixtures/fx-layers.tar" "$s"
    for i in 1 2 3; do
      t0=$(now)
      ctr run --rm --snapshotter "$s" docker.io/library/fx:layers "b$r$i$s" true >/dev/null || echo "run on $s failed" >&2
      t1=$(now)
      record run-true "$s" "$(echo "$t1 - $t0" | bc)"
    done
  done
done
clean_images

python3 - "$W/times" "$ROUNDS" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    w, s, t = line.split()
    rows.setdefault(w, {}).setdefault(s, []).append(float(t))
snaps = ["ovlink", "ovlink2", "overlayfs", "native"]
names = {"import-big": "ctr images import, 4-layer 470 MB image",
         "import-fx": "ctr images import fx-layers.tar (4 layers, 4 MB)",
         "run-true": "ctr run --rm fx:layers true"}
print(f"| seconds, median (min-max), {sys.argv[2]} rounds interleaved | ovlink (legacy) | ovlink2 (overlay2) | overlayfs | native |")
print("|---|---|---|---|---|")
for w in ["import-big", "import-fx", "run-true"]:
    cells = []
    for s in snaps:
        v = rows.get(w, {}).get(s, [])
        cells.append(f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})" if v else "-")
    print(f"| {names[w]} | " + " | ".join(cells) + " |")
ov = {w: statistics.median(rows[w]["overlayfs"]) for w in rows if "overlayfs" in rows[w]}
for w in ["import-big", "import-fx", "run-true"]:
    if w in ov:
        r = [f"{s} {statistics.median(rows[w][s]) / ov[w]:.2f}x" for s in snaps if s in rows[w]]
        print(f"\n{names[w]} relative to overlayfs: " + ", ".join(r), end="")
print()
PY
