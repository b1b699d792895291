#!/usr/bin/env bash
# The real comparison (issue 7): ovlink against Docker 20.10's built-in drivers and the plain
# tools, side by side in one run, interleaved repetitions, medians and ratios:
#
#   sudo scripts/bench-docker.sh                   # REPS=5 DIR=/var/tmp IMAGE=… OUT=bench-docker FS=ext4
#
# Everything is measured on a fresh filesystem made for the run (FS=ext4 or FS=xfs: a sparse
# 32 GiB image in DIR, loop-mounted, removed at the end), so that the figures repeat: on the
# machine's long-used root filesystem the same `tar -x` took 0.23 s or 5 s depending only on
# the directory it ran in. FS=here measures in DIR as it is.
#
# 1. image import: `docker load` into a private dockerd on the built-in legacy `overlay` driver
#    and one on `overlay2`, against `ovlink image import` of the same tarball (durable, the
#    default, and OVLINK_NO_FSYNC=1 as Docker does no fsync). The image: IMAGE if given, else a
#    Debian bookworm minbase (debootstrap, if it works here) plus python3.11, /usr/include and
#    perl from this host as 4 more layers (scripts/make-docker-save.py), else the generator's.
# 2. hardlink copy of the top layer's tree: `cp -al` against ovlink's copy (examples/
#    hardlink_copy), wall clock incl. process start, plus syscalls per entry (strace -c -f).
# 3. removing a layer: `ovlink layer rm --background`, `ovlink layer rm`, and `rm -rf` of a
#    `cp -al` copy of the same tree.
# 4. get/put: `ovlink mount`+`umount` of a container layer against `mount -t overlay`+`umount`
#    of the same dirs (all four as processes).
# 5. apply_diff peak RSS: `ovlink layer apply` of a generated 1 GiB layer (/usr/bin/time -v).
# 6. diff: `ovlink changes` of a 10-file change on generated 1k/10k/50k-entry images, native
#    and OVLINK_DIFF=naive.
# Prints Markdown tables and writes them with the raw samples to $OUT/. Needs root; installs
# docker.io, strace, time and debootstrap if missing. DIR must not be tmpfs.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=scripts/docker-lib.sh
. scripts/docker-lib.sh
REPS=${REPS:-5}
DIR=${DIR:-/var/tmp}
FS=${FS:-ext4}
case $FS in ext4 | xfs | here) ;; *) echo "bench-docker: FS must be ext4, xfs or here, not $FS" >&2; exit 2 ;; esac
OUT=${OUT:-$REPO/bench-docker}
T=${CARGO_TARGET_DIR:-$REPO/target}
[ "$(id -u)" = 0 ] || { echo "bench-docker: run as root" >&2; exit 1; }
log() { printf '%s bench-docker: %s\n' "$(date +%T)" "$*" >&2; }

need=()
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || need+=(docker.io)
command -v strace >/dev/null || need+=(strace)
[ -x /usr/bin/time ] || need+=(time)
command -v debootstrap >/dev/null || need+=(debootstrap)
install_missing "${need[@]}" || exit 1
modprobe overlay 2>/dev/null || true
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd

if [ -z "${OVLINK_BIN:-}" ]; then
  log "building (release)"
  cargo build --release --quiet --bin ovlink &&
    cargo build --release --quiet -p ovlink-fs --example hardlink_copy &&
    cargo build --release --quiet -p ovlink-image --example gen_image || exit 1
  OVLINK_BIN=$T/release/ovlink
fi
OV=$OVLINK_BIN
HC=$(dirname "$OV")/examples/hardlink_copy
GEN=$(dirname "$OV")/examples/gen_image
mkdir -p "$OUT"
OUTER=$(mktemp -d "$DIR/ovlink-bench-docker.XXXXXX")
W=$OUTER
DPIDS=()
cleanup() {
  for p in "${DPIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${DPIDS[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; done
  awk -v t="$OUTER" 'index($5, t "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
  rm -rf "$OUTER"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$FS" != here ]; then
  mkfs_fresh "$OUTER/fs.img" 32G "$FS" || exit 1
  mkdir "$OUTER/fs"
  mount -o loop "$OUTER/fs.img" "$OUTER/fs" || { log "cannot mount the fresh $FS"; exit 1; }
  W=$OUTER/fs
  log "work: a fresh $FS filesystem (32 GiB, sparse) loop-mounted on $W"
fi
chmod 711 "$W"

now() { date +%s%N; }
ms() { echo "scale=1; ($2 - $1) / 1000000" | bc; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
declare -A S # samples: S[key]="a b c"
add() { S[$1]="${S[$1]:-} $2"; }
med() { echo "${S[$1]}" | median; }

# --- the image -------------------------------------------------------------------------------
IMG=${IMAGE:-}
if [ -z "$IMG" ]; then
  ROOTFS=${DEBIAN_ROOTFS:-$DIR/ovlink-debian-rootfs}
  if [ ! -x "$ROOTFS/bin/sh" ]; then
    log "debootstrap --variant=minbase bookworm $ROOTFS"
    debootstrap --variant=minbase bookworm "$ROOTFS" http://deb.debian.org/debian >"$W/debootstrap.log" 2>&1 || rm -rf "$ROOTFS"
  fi
  if [ -x "$ROOTFS/bin/sh" ]; then
    mkdir -p "$W/l5/etc" && echo bench >"$W/l5/etc/ovlink-bench"
    layers=("$ROOTFS")
    for d in /usr/lib/python3.11 /usr/include /usr/share/perl; do [ -d "$d" ] && layers+=("$d=$d"); done
    layers+=("$W/l5,wh=/etc/motd")
    IMG=$W/debian.tar
    python3 scripts/make-docker-save.py "$IMG" ovlink/debian:bench "${layers[@]}" 2>>"$W/image.log" || exit 1
    LABEL="Debian bookworm minbase + host python3.11, /usr/include, perl + 1 small layer"
  else
    IMG=$W/gen.tar
    "$GEN" "$IMG" 10000 5 2>>"$W/image.log"
    LABEL="generated, 10,000 entries, 5 layers"
  fi
fi
LABEL=${LABEL:-$IMG}
ISIZE=$(stat -c %s "$IMG")
log "image: $LABEL ($ISIZE bytes)"

# --- 1. import: docker load (overlay, overlay2) vs ovlink ---------------------------------------
start_dockerd() { # DIR DRIVER
  local d=$1 ns=bench-$$-$2
  mkdir -p "$d/data" "$d/exec"
  "$DOCKERD" --storage-driver "$2" --data-root "$d/data" --exec-root "$d/exec" \
    --pidfile "$d/docker.pid" -H "unix://$d/docker.sock" --bridge none --iptables=false \
    --ip6tables=false --ip-masq=false --containerd-namespace "$ns" \
    --containerd-plugins-namespace "$ns-p" --log-level warn >"$d/dockerd.log" 2>&1 &
  DPIDS+=($!)
  for _ in $(seq 1 300); do "$DOCKER" -H "unix://$d/docker.sock" info >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "dockerd $2 did not start: $(tail -n 3 "$d/dockerd.log")"; return 1
}
start_dockerd "$W/d-overlay" overlay || exit 1
start_dockerd "$W/d-overlay2" overlay2 || exit 1
dk() { "$DOCKER" -H "unix://$W/d-$1/docker.sock" "${@:2}"; }
log "docker info: $(dk overlay info --format '{{.Driver}} {{.ServerVersion}}') / $(dk overlay2 info --format '{{.Driver}}')"
for i in $(seq 1 "$REPS"); do
  for who in overlay overlay2 ovlink ovlink-nofsync; do
    sync; echo 3 >/proc/sys/vm/drop_caches
    case $who in
      overlay | overlay2)
        t0=$(now); dk $who load -q -i "$IMG" >/dev/null || log "docker load ($who) failed"; t1=$(now)
        add "load-$who" "$(ms "$t0" "$t1")"
        dk $who rmi -f "$(dk $who images -q | head -n 1)" >/dev/null 2>&1 ;;
      ovlink | ovlink-nofsync)
        r=$W/ov-$i-$who
        if [ $who = ovlink ]; then env=(); else env=(OVLINK_NO_FSYNC=1); fi
        t0=$(now); env "${env[@]}" "$OV" --root "$r" image import "$IMG" --name bench >"$W/ids" 2>/dev/null || log "ovlink import failed"; t1=$(now)
        add "load-$who" "$(ms "$t0" "$t1")"
        if [ "$i" = 1 ] && [ $who = ovlink ]; then KEEP=$r; TOP=$(tail -n 1 "$W/ids"); else rm -rf "$r"; fi ;;
    esac
  done
  log "import rep $i/$REPS:$(for k in overlay overlay2 ovlink ovlink-nofsync; do printf ' %s=%s' $k "$(echo "${S[load-$k]}" | awk '{print $NF}')"; done)"
done

# --- 2. hardlink copy: cp -al vs ovlink ---------------------------------------------------------
SRC=$KEEP/overlay/$TOP/root
ENTRIES=$(find "$SRC" | wc -l)
DIRS=$(find "$SRC" -type d | wc -l)
for i in $(seq 1 "$REPS"); do
  sync
  t0=$(now); cp -al "$SRC" "$W/cp"; t1=$(now); add cpal "$(ms "$t0" "$t1")"; rm -rf "$W/cp"; sync
  t0=$(now); "$HC" "$SRC" "$W/hc" 2>/dev/null; t1=$(now); add hc "$(ms "$t0" "$t1")"; rm -rf "$W/hc"
done
sc() { strace -c -f -o "$W/strace.$1" "${@:2}" >/dev/null 2>&1; awk '/^------/ {n++} n == 2 && /total/ {print $4}' "$W/strace.$1"; }
SC_CP=$(sc cp cp -al "$SRC" "$W/cp"); rm -rf "$W/cp"
SC_HC=$(sc hc "$HC" "$SRC" "$W/hc"); rm -rf "$W/hc"
per() { echo "scale=2; $1 / $ENTRIES" | bc | sed 's/^\./0./'; }

# --- 3. remove: rm --background, rm, rm -rf ------------------------------------------------------
echo -n >"$W/empty.tar"; tar -cf "$W/empty.tar" -T /dev/null
for i in $(seq 1 "$REPS"); do
  for mode in bg sync; do
    "$OV" --root "$KEEP" layer apply "rm$i$mode" --parent "$TOP" "$W/empty.tar" >/dev/null
    sync
    if [ $mode = bg ]; then a=(--background); else a=(); fi
    t0=$(now); "$OV" --root "$KEEP" layer rm "${a[@]}" "rm$i$mode"; t1=$(now); add "rm-$mode" "$(ms "$t0" "$t1")"
    while ls -a "$KEEP/overlay" | grep -q '^\.tmp-remove-'; do sleep 0.1; done
  done
  cp -al "$SRC" "$W/rmrf"; sync
  t0=$(now); rm -rf "$W/rmrf"; t1=$(now); add rmrf "$(ms "$t0" "$t1")"
done

# --- 4. get/put vs bare mount --------------------------------------------------------------------
"$OV" --root "$KEEP" layer create-rw ctr --parent "$TOP"
C=$KEEP/overlay/ctr
mkdir -p "$W/bare/upper" "$W/bare/work" "$W/bare/merged"
for i in $(seq 1 $((REPS * 4))); do
  t0=$(now); "$OV" --root "$KEEP" mount ctr >/dev/null; t1=$(now); "$OV" --root "$KEEP" umount ctr; t2=$(now)
  add getput "$(ms "$t0" "$t2")"
  t0=$(now); mount -t overlay overlay -o "lowerdir=$SRC,upperdir=$W/bare/upper,workdir=$W/bare/work" "$W/bare/merged"; umount "$W/bare/merged"; t2=$(now)
  add bare "$(ms "$t0" "$t2")"
done

# --- 5. apply_diff peak RSS on a 1 GiB layer -----------------------------------------------------
python3 - "$W/big.tar" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    for i in range(16):
        ti = tarfile.TarInfo(f"big/f{i}"); ti.size = 64 << 20; ti.mode = 0o644
        with open("/dev/urandom", "rb") as f:
            t.addfile(ti, f)
PY
/usr/bin/time -v "$OV" --root "$W/rss" layer apply big "$W/big.tar" >/dev/null 2>"$W/rss.txt"
RSS_KB=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$W/rss.txt")
rm -rf "$W/big.tar" "$W/rss"

# --- 6. diff: 10-file change on 1k / 10k / 50k-entry images --------------------------------------
DIFFROWS=""
for n in 1000 10000 50000; do
  "$GEN" "$W/g$n.tar" "$n" 3 2>/dev/null
  r=$W/diff$n
  OVLINK_NO_FSYNC=1 "$OV" --root "$r" image import "$W/g$n.tar" --name g >/dev/null 2>&1
  cid=$("$OV" --root "$r" container create c --image g 2>/dev/null | tail -n 1)
  m=$("$OV" --root "$r" mount "$cid")
  for f in $(seq 1 10); do echo "change $f" >"$m/changed-$f"; done
  "$OV" --root "$r" umount "$cid"
  for i in $(seq 1 "$REPS"); do
    t0=$(now); "$OV" --root "$r" changes "$cid" >/dev/null; t1=$(now); add "diff-$n" "$(ms "$t0" "$t1")"
    t0=$(now); OVLINK_DIFF=naive "$OV" --root "$r" changes "$cid" >/dev/null; t1=$(now); add "naive-$n" "$(ms "$t0" "$t1")"
  done
  DIFFROWS="$DIFFROWS| $n | $(med diff-$n) ms | $(med naive-$n) ms |
"
  rm -rf "$r" "$W/g$n.tar"
done

# --- report ------------------------------------------------------------------------------------
LO=$(med load-overlay); L2=$(med load-overlay2); LV=$(med load-ovlink); LN=$(med load-ovlink-nofsync)
{
  echo "Image: $LABEL, $((ISIZE / 1048576)) MiB docker-save tarball; top layer $ENTRIES entries ($DIRS directories)."
  echo "$REPS interleaved repetitions, medians; $(nproc) CPUs, kernel $(uname -r), $(stat -f -c %T "$W") work dir ($([ "$FS" = here ] && echo "$DIR as it is" || echo "a fresh loop-mounted $FS")); $($DOCKERD --version)."
  echo
  echo "| import of the same tarball | median | ovlink / this |"
  echo "|---|---:|---:|"
  echo "| \`docker load\`, built-in \`overlay\` | $LO ms | $(ratio "$LV" "$LO")x |"
  echo "| \`docker load\`, built-in \`overlay2\` | $L2 ms | $(ratio "$LV" "$L2")x |"
  echo "| \`ovlink image import\` (durable: fdatasync of the files + fsync) | $LV ms | 1.00x |"
  echo "| \`ovlink image import\`, \`OVLINK_NO_FSYNC=1\` (no sync, as Docker) | $LN ms | $(ratio "$LV" "$LN")x |"
  echo
  echo "| hardlink copy of the top layer ($ENTRIES entries) | median | syscalls | per entry |"
  echo "|---|---:|---:|---:|"
  echo "| \`cp -al\` | $(med cpal) ms | $SC_CP | $(per "$SC_CP") |"
  echo "| ovlink \`copy_tree\` (\`examples/hardlink_copy\`) | $(med hc) ms | $SC_HC | $(per "$SC_HC") |"
  echo "| ratio cp -al / ovlink | $(ratio "$(med cpal)" "$(med hc)")x | $(ratio "$SC_CP" "$SC_HC")x | |"
  echo
  echo "| removing a layer of $ENTRIES entries (caller's wall clock) | median | rm -rf / this |"
  echo "|---|---:|---:|"
  echo "| \`rm -rf\` of a \`cp -al\` copy of the tree | $(med rmrf) ms | 1.00x |"
  echo "| \`ovlink layer rm\` (synchronous) | $(med rm-sync) ms | $(ratio "$(med rmrf)" "$(med rm-sync)")x |"
  echo "| \`ovlink layer rm --background\` | $(med rm-bg) ms | $(ratio "$(med rmrf)" "$(med rm-bg)")x |"
  echo
  echo "| get + put of a container layer ($((REPS * 4)) runs, processes) | median | ratio |"
  echo "|---|---:|---:|"
  echo "| \`mount -t overlay\` + \`umount\` | $(med bare) ms | 1.00x |"
  echo "| \`ovlink mount\` + \`ovlink umount\` | $(med getput) ms | $(ratio "$(med getput)" "$(med bare)")x |"
  echo
  echo "apply_diff of a 1 GiB layer (16 x 64 MiB files): peak RSS $((RSS_KB / 1024)) MiB (\`/usr/bin/time -v ovlink layer apply\`)."
  echo
  echo "| diff: 10 files changed, image entries | \`ovlink changes\` (native) | \`OVLINK_DIFF=naive\` |"
  echo "|---:|---:|---:|"
  printf '%s' "$DIFFROWS"
} | tee "$OUT/bench-docker.md"
for k in "${!S[@]}"; do echo "$k:${S[$k]}"; done | sort >"$OUT/samples.txt"
log "wrote $OUT/bench-docker.md and $OUT/samples.txt"
