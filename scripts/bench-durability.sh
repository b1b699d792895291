#!/usr/bin/env bash
# What durability costs an image import, and what Docker does in the same time (issue 23):
#
#   sudo scripts/bench-durability.sh       # FS="ext4 xfs" REPS=3 SHAPES="10k 100k debian" OUT=bench-durability
#
# For every filesystem and image shape, interleaved repetitions of every contender, each on a
# fresh filesystem made for that one measurement (a sparse 16 GiB image, mkfs'ed with nothing
# left to initialise in the background, on a loop device with direct I/O so that what the
# filesystem writes reaches the disk as it would on a real one instead of waiting in the host's
# page cache for the final flush), with the caches dropped first:
#
#   ovlink-syncfs   `ovlink image import`, the default: one flush per layer
#   ovlink-files    `--sync files`: an fdatasync per file (the default before issue 23)
#   ovlink-none     `--sync none`: nothing synced (what Docker does)
#   docker-overlay  `docker load` into a private Docker 20.10 on its legacy `overlay` driver
#   docker-overlay2 `docker load` into one on `overlay2` (DOCKER=0 leaves both out)
#   floor           `tar -x` of the archive and of each layer tar, no hardlink copies, no sync
#
# The shapes: `10k` (generated, 10,000 entries, 5 layers), `100k` (generated, 100,000 entries,
# 3 layers), `debian` (Debian bookworm minbase from debootstrap plus this host's python3.11,
# /usr/include and perl as 3 more layers and one small layer; this host's /usr/lib,
# /usr/include, python3.11 and perl when debootstrap cannot run). Prints Markdown tables
# (medians, and each contender's ratio to ovlink-none and ovlink-syncfs's to docker-overlay2)
# and writes them with the raw samples to $OUT/. Needs root.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
# shellcheck source=scripts/docker-lib.sh
. scripts/docker-lib.sh
FSS=${FS:-ext4 xfs}
REPS=${REPS:-3}
SHAPES=${SHAPES:-10k 100k debian}
DOCKER=${DOCKER:-1}
DIR=${DIR:-/var/tmp}
OUT=${OUT:-$REPO/bench-durability}
T=${CARGO_TARGET_DIR:-$REPO/target}
[ "$(id -u)" = 0 ] || { echo "bench-durability: run as root" >&2; exit 1; }
log() { printf '%s bench-durability: %s\n' "$(date +%T)" "$*" >&2; }

need=()
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
command -v losetup >/dev/null || need+=(mount)
if [ "$DOCKER" = 1 ]; then
  { [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ]; } || need+=(docker.io)
  command -v debootstrap >/dev/null || need+=(debootstrap)
fi
install_missing "${need[@]}" || exit 1
modprobe overlay 2>/dev/null || true
DOCKERD=/usr/sbin/dockerd
DOCKER_BIN=/usr/bin/docker

if [ -z "${OVLINK_BIN:-}" ]; then
  log "building (release)"
  cargo build --release --quiet --bin ovlink || exit 1
  OVLINK_BIN=$T/release/ovlink
fi
OV=$OVLINK_BIN
mkdir -p "$OUT"
W=$(mktemp -d "$DIR/ovlink-bench-durability.XXXXXX")
MNT=$W/mnt
mkdir -p "$MNT"
DPID=""
LOOP=""
cleanup() {
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && while kill -0 "$DPID" 2>/dev/null; do sleep 0.2; done
  awk -v t="$W" 'index($5, t "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the images --------------------------------------------------------------------------------
declare -A IMG LABEL
for s in $SHAPES; do
  case $s in
    10k)
      IMG[$s]=$W/g10k.tar LABEL[$s]="generated, 10,000 entries, 5 layers"
      "$OV" image generate --entries 10000 --layers 5 -o "${IMG[$s]}" --root "$W/gen" >/dev/null || exit 1 ;;
    100k)
      IMG[$s]=$W/g100k.tar LABEL[$s]="generated, 100,000 entries, 3 layers"
      "$OV" image generate --entries 100000 --layers 3 -o "${IMG[$s]}" --root "$W/gen" >/dev/null || exit 1 ;;
    debian)
      IMG[$s]=$W/debian.tar
      ROOTFS=${DEBIAN_ROOTFS:-$DIR/ovlink-debian-rootfs}
      if [ ! -x "$ROOTFS/bin/sh" ] && command -v debootstrap >/dev/null; then
        log "debootstrap --variant=minbase bookworm $ROOTFS"
        debootstrap --variant=minbase bookworm "$ROOTFS" http://deb.debian.org/debian >"$W/debootstrap.log" 2>&1 || rm -rf "$ROOTFS"
      fi
      mkdir -p "$W/l5/etc" && echo bench >"$W/l5/etc/ovlink-bench"
      if [ -x "$ROOTFS/bin/sh" ]; then
        layers=("$ROOTFS")
        LABEL[$s]="Debian bookworm minbase + python3.11, /usr/include, perl + 1 small layer"
      else
        layers=("/usr/lib/x86_64-linux-gnu=/usr/lib/x86_64-linux-gnu")
        LABEL[$s]="this host's /usr/lib/x86_64-linux-gnu + python3.11, /usr/include, perl + 1 small layer (no debootstrap)"
      fi
      for d in /usr/lib/python3.11 /usr/include /usr/share/perl; do [ -d "$d" ] && layers+=("$d=$d"); done
      layers+=("$W/l5,wh=/etc/motd")
      python3 scripts/make-docker-save.py "${IMG[$s]}" ovlink/debian:bench "${layers[@]}" 2>>"$W/image.log" || exit 1 ;;
    *) log "unknown shape $s (10k, 100k, debian)"; exit 2 ;;
  esac
  LABEL[$s]="${LABEL[$s]}, $(($(stat -c %s "${IMG[$s]}") / 1048576)) MiB"
  log "image $s: ${LABEL[$s]}"
done

# --- one measurement: a fresh filesystem, the caches dropped, the contender timed ------------
fresh_fs() { # FS: a fresh FS on a direct-I/O loop device, mounted on $MNT
  rm -f "$W/fs.img"
  mkfs_fresh "$W/fs.img" 16G "$1" || exit 1
  LOOP=$(losetup -f --show --direct-io=on "$W/fs.img") || { log "losetup failed"; exit 1; }
  mount "$LOOP" "$MNT" || { log "cannot mount $LOOP"; exit 1; }
}
drop_fs() {
  if [ -n "$DPID" ]; then
    kill "$DPID" 2>/dev/null
    while kill -0 "$DPID" 2>/dev/null; do sleep 0.2; done
    DPID=""
  fi
  awk -v t="$MNT" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  losetup -d "$LOOP" 2>/dev/null
  LOOP=""
  rm -f "$W/fs.img"
}
start_dockerd() { # DRIVER: a private dockerd with its root on the fresh filesystem
  local d=$MNT/docker ns=durability-$$-$1
  mkdir -p "$d/data" "$d/exec"
  "$DOCKERD" --storage-driver "$1" --data-root "$d/data" --exec-root "$d/exec" \
    --pidfile "$d/docker.pid" -H "unix://$d/docker.sock" --bridge none --iptables=false \
    --ip6tables=false --ip-masq=false --containerd-namespace "$ns" \
    --containerd-plugins-namespace "$ns-p" --log-level warn >"$W/dockerd.log" 2>&1 &
  DPID=$!
  for _ in $(seq 1 300); do "$DOCKER_BIN" -H "unix://$d/docker.sock" info >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "dockerd $1 did not start: $(tail -n 3 "$W/dockerd.log")"
  return 1
}
floor() { # IMG: tar -x of the archive, then of each layer tar into its own directory
  local x=$MNT/floor
  mkdir -p "$x/archive"
  tar -xf "$1" -C "$x/archive" || return 1
  local n=0
  while read -r l; do
    n=$((n + 1))
    mkdir -p "$x/l$n"
    tar -xf "$x/archive/$l" -C "$x/l$n" || return 1
  done < <(python3 -c 'import json,sys; [print(l) for l in json.load(open(sys.argv[1]))[0]["Layers"]]' "$x/archive/manifest.json")
}
measure() { # FS SHAPE CONTENDER: prints seconds
  local fs=$1 img=${IMG[$2]} who=$3 t0 t1 ok=1
  fresh_fs "$fs"
  case $who in docker-*) start_dockerd "${who#docker-}" || { drop_fs; echo NaN; return; } ;; esac
  sync
  echo 3 >/proc/sys/vm/drop_caches
  t0=$(date +%s%N)
  case $who in
    ovlink-*) "$OV" image import --root "$MNT/ovlink" --sync "${who#ovlink-}" "$img" >/dev/null 2>"$W/err" || ok=0 ;;
    docker-*) "$DOCKER_BIN" -H "unix://$MNT/docker/docker.sock" load -q -i "$img" >/dev/null 2>"$W/err" || ok=0 ;;
    floor) floor "$img" 2>"$W/err" || ok=0 ;;
  esac
  t1=$(date +%s%N)
  drop_fs
  if [ $ok = 1 ]; then
    echo "scale=3; ($t1 - $t0) / 1000000000" | bc | sed 's/^\./0./'
  else
    log "$who on $fs/$2 failed: $(tail -n 3 "$W/err")"
    echo NaN
  fi
}

median() { tr ' ' '\n' | grep -v '^$' | grep -v NaN | sort -n | awk '{v[NR]=$1} END {if (NR == 0) print "NaN"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { if [ "$1" = NaN ] || [ "$2" = NaN ]; then echo "n/a"; else echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; fi; }

WHO="ovlink-syncfs ovlink-files ovlink-none floor"
[ "$DOCKER" = 1 ] && WHO="ovlink-syncfs ovlink-files ovlink-none docker-overlay docker-overlay2 floor"
declare -A S
RAW=$OUT/raw.txt
: >"$RAW"
for fs in $FSS; do
  for s in $SHAPES; do
    for r in $(seq 1 "$REPS"); do
      for who in $WHO; do
        v=$(measure "$fs" "$s" "$who")
        S[$fs/$s/$who]="${S[$fs/$s/$who]:-} $v"
        echo "$fs $s $who $r $v" >>"$RAW"
        log "$fs $s $who #$r: $v s"
      done
    done
  done
done

{
  echo "# Durability: what an image import costs, $(date -u +%F)"
  echo
  echo "$REPS interleaved repetitions, medians, seconds; each measurement on a fresh filesystem"
  echo "(16 GiB sparse image, loop device with direct I/O), caches dropped; $(nproc) CPUs, kernel $(uname -r)."
  [ "$DOCKER" = 1 ] && echo "docker: $($DOCKERD --version)."
  echo
  for fs in $FSS; do
    echo "## $fs"
    echo
    printf '| image |'
    for who in $WHO; do printf ' %s |' "$who"; done
    printf ' syncfs / none | files / none |'
    [ "$DOCKER" = 1 ] && printf ' syncfs / docker overlay2 |'
    echo
    printf '|---|'
    for who in $WHO; do printf -- '---:|'; done
    printf -- '---:|---:|'
    [ "$DOCKER" = 1 ] && printf -- '---:|'
    echo
    for s in $SHAPES; do
      declare -A M=()
      for who in $WHO; do M[$who]=$(echo "${S[$fs/$s/$who]}" | median); done
      printf '| %s |' "${LABEL[$s]}"
      for who in $WHO; do printf ' %s |' "${M[$who]}"; done
      printf ' %s | %s |' "$(ratio "${M[ovlink-syncfs]}" "${M[ovlink-none]}")" "$(ratio "${M[ovlink-files]}" "${M[ovlink-none]}")"
      [ "$DOCKER" = 1 ] && printf ' %s |' "$(ratio "${M[ovlink-syncfs]}" "${M[docker-overlay2]}")"
      echo
    done
    echo
  done
} | tee "$OUT/durability.md"
