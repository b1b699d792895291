#!/usr/bin/env bash
# End to end with Debian's containerd 1.6 on `ovlink snapshotter serve`: a PRIVATE containerd
# (own root, state, sockets and config.toml with a [proxy_plugins.ovlink] entry, CRI disabled;
# never the system one), checked with ctr:
#
#   sudo scripts/containerd-e2e.sh            (OVLINK_BIN=path, OVLINK_DRIVER=overlay|overlay2)
#
#  1. `ctr plugins ls` lists io.containerd.snapshotter.v1 ovlink ok
#  2. `ctr images import --snapshotter ovlink` of tests/fixtures/fx-layers.tar (4 layers); a
#     view of the image's top snapshot equals, entry by entry (type, mode, owner, size, content,
#     file mtime, link target, device numbers, capabilities, hardlink groups), the view
#     containerd's built-in overlayfs snapshotter gives of the same image
#  3. `ctr run --rm --snapshotter ovlink` prints the expected output
#  4. while a container runs, its rootfs is an overlay with exactly one lowerdir (legacy)
#  5. a file unchanged since the base layer is one inode in every image layer (legacy)
#  6. `ctr snapshots usage` of every committed snapshot equals `ovlink report`'s figures
#  7. a snapshotter restart (SIGTERM) keeps every snapshot, and `ctr run` works after it
#  8. SIGKILL of the snapshotter during an import, restart: no temp dirs, only complete
#     snapshots; import again, run
#  9. `ctr images rm --sync` + content and lease cleanup leaves no snapshot and no layer tree
# Prints `containerd-e2e: N passed, M failed`; exits non-zero on any failure. Everything it
# started is stopped, everything it mounted unmounted, at the end whatever happened.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
[ "$(id -u)" = 0 ] || { echo "containerd-e2e: run as root" >&2; exit 1; }
log() { printf '%s containerd-e2e: %s\n' "$(date +%T)" "$*" >&2; }

if ! command -v containerd >/dev/null 2>&1 || ! command -v ctr >/dev/null 2>&1; then
  log "installing containerd"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends containerd >/dev/null
fi
modprobe overlay 2>/dev/null || true
DRIVER=${OVLINK_DRIVER:-overlay}
OVLINK=${OVLINK_BIN:-$REPO/target/debug/ovlink}
[ -x "$OVLINK" ] || cargo build -q --bin ovlink
OVLINK=$(realpath "$OVLINK")
FIX=$REPO/tests/fixtures
W=$(mktemp -d "${E2E_TMP:-/var/tmp}/ovlink-ctr-e2e.XXXXXX")
SOCK=$W/ovlink.sock
OROOT=$W/ovlink
HOME_DIR=$OROOT/$DRIVER
IMG=docker.io/library/fx:layers
pass=0
fail=0
OVLINK_PID=
CTRD_PID=

cat >"$W/config.toml" <<TOML
version = 2
root = "$W/root"
state = "$W/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/containerd.sock"
[ttrpc]
  address = "$W/containerd.sock.ttrpc"
[debug]
  address = "$W/debug.sock"
[proxy_plugins]
  [proxy_plugins.ovlink]
    type = "snapshot"
    address = "$SOCK"
TOML
ctr() { command ctr --address "$W/containerd.sock" "$@"; }

start_ovlink() {
  "$OVLINK" --root "$OROOT" --driver "$DRIVER" snapshotter serve --socket "$SOCK" \
    >>"$W/ovlink.log" 2>&1 &
  OVLINK_PID=$!
  for _ in $(seq 200); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
  log "ovlink did not listen"; return 1
}
stop_ovlink() { # stop_ovlink SIGNAL
  [ -n "$OVLINK_PID" ] || return 0
  kill -"$1" "$OVLINK_PID" 2>/dev/null
  wait "$OVLINK_PID" 2>/dev/null
  OVLINK_PID=
}
cleanup() {
  for t in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s KILL "$t" >/dev/null 2>&1; done
  sleep 0.5
  for t in $(ctr tasks ls -q 2>/dev/null); do ctr tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $(ctr containers ls -q 2>/dev/null); do ctr containers delete "$c" >/dev/null 2>&1; done
  [ -n "$CTRD_PID" ] && { kill "$CTRD_PID" 2>/dev/null; wait "$CTRD_PID" 2>/dev/null; }
  # Shims of this containerd only (their command line names our private socket).
  for p in $(grep -l -a -F "$W/containerd.sock" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    [ "$p" != $$ ] && kill -9 "$p" 2>/dev/null
  done
  stop_ovlink TERM
  awk -v d="$W/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  [ "${E2E_KEEP:-0}" = 1 ] && log "kept $W" || rm -rf "$W"
}
trap cleanup EXIT

step() { # step NAME COMMAND... (in this shell, not a subshell: steps start and stop servers)
  local name=$1; shift
  if "$@" >"$W/step.out" 2>&1; then
    pass=$((pass + 1)); log "ok   $name: $(tail -1 "$W/step.out")"
  else
    fail=$((fail + 1)); log "FAIL $name"; tail -20 "$W/step.out" >&2
  fi
}

start_ovlink || exit 1
containerd --config "$W/config.toml" >"$W/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 200); do ctr version >/dev/null 2>&1 && break; sleep 0.05; done
log "$(containerd --version), ovlink --driver $DRIVER"

plugin_ok() { ctr plugins ls | awk '$1 == "io.containerd.snapshotter.v1" && $2 == "ovlink" { print; f = ($4 == "ok") } END { exit !f }'; }
step plugins-ls plugin_ok

import() { ctr images import --snapshotter ovlink "$FIX/fx-layers.tar" && committed 4; }
committed() { # committed N: exactly N committed snapshots, nothing else
  local n
  n=$(ctr snapshots --snapshotter ovlink ls | awk 'NR > 1 && $NF == "Committed"' | wc -l)
  [ "$n" = "$1" ] || { ctr snapshots --snapshotter ovlink ls; echo "expected $1 committed"; return 1; }
  echo "$n committed snapshots"
}
view_equals_overlayfs() {
  ctr images import --snapshotter overlayfs "$FIX/fx-layers.tar" >/dev/null || return 1
  local top s
  top=$(ctr snapshots --snapshotter ovlink ls | awk 'NR > 1 && $NF == "Committed" { k[$1] = 1; p[$2] = 1 }
    END { for (x in k) if (!(x in p)) print x }')
  [ "$(printf '%s\n' "$top" | grep -c .)" = 1 ] || { echo "no single top snapshot: $top"; return 1; }
  for s in ovlink overlayfs; do
    mkdir -p "$W/view-$s"
    # Mounted from what the View call itself answered: a bare view has no lease, and
    # containerd's GC may collect it at any moment (what the mount shows stays).
    ctr snapshots --snapshotter "$s" view --mounts "e2e-view-$s" "$top" >"$W/view-$s.mounts" || return 1
    python3 - "$W/view-$s.mounts" "$W/view-$s" <<'PY' || return 1
import json, subprocess, sys
for m in json.load(open(sys.argv[1])):
    g = lambda k: m.get(k, m.get(k.capitalize()))
    subprocess.run(["mount", "-t", g("type"), g("source"), sys.argv[2], "-o", ",".join(g("options") or [])], check=True)
PY
    python3 "$REPO/scripts/layout-manifest.py" "$W/view-$s" >"$W/view-$s.json" || return 1
  done
  local rc=0
  python3 "$REPO/scripts/layout-manifest.py" --compare "$W/view-ovlink.json" "$W/view-overlayfs.json" || rc=1
  # A bare view has no lease: containerd's GC may have collected it already (the mount
  # keeps what it shows); remove what is left.
  for s in ovlink overlayfs; do
    umount "$W/view-$s" || rc=1
    ctr snapshots --snapshotter "$s" rm "e2e-view-$s" 2>/dev/null || true
  done
  [ "$rc" = 0 ] || return 1
  echo "the view of $top equals overlayfs's: $(python3 -c 'import json,sys; print(sum(len(r["entries"]) for r in json.load(open(sys.argv[1]))["layers"]))' "$W/view-ovlink.json" 2>/dev/null || echo '?') entries"
}
step import import
step view-equals-overlayfs view_equals_overlayfs

run_output() {
  local out
  out=$(ctr run --rm --snapshotter ovlink "$IMG" "r$RANDOM" cat /app/hello.txt /app/keepme/n1 /etc/motd) || return 1
  [ "$out" = "$(printf 'hello\nnew\nagain')" ] || { echo "unexpected output: $out"; return 1; }
  echo "output as expected"
}
step run-output run_output

one_lowerdir() {
  ctr run -d --snapshotter ovlink "$IMG" running sleep 60 >/dev/null || return 1
  local target=$W/state/io.containerd.runtime.v2.task/default/running/rootfs line lowers
  for _ in $(seq 100); do
    line=$(awk -v t="$target" '$5 == t' /proc/self/mountinfo); [ -n "$line" ] && break; sleep 0.05
  done
  [ -n "$line" ] || { echo "no mount at $target"; return 1; }
  echo "$line" | grep -q ' - overlay ' || { echo "not an overlay: $line"; return 1; }
  lowers=$(echo "$line" | grep -o 'lowerdir=[^,]*' | head -1)
  local n; n=$(echo "${lowers#lowerdir=}" | tr ':' '\n' | wc -l)
  local want=1; [ "$DRIVER" = overlay2 ] && want=4
  [ "$n" = "$want" ] || { echo "$n lowerdirs: $lowers"; return 1; }
  echo "rootfs is one overlay mount with $n lowerdir(s)"
}
step rootfs-one-lowerdir one_lowerdir
layers_in_home() { "$OVLINK" --root "$OROOT" --driver "$DRIVER" report --json |
  python3 -c 'import json,sys; print(len(json.load(sys.stdin)["layers"]))'; }
stop_running() { # containerd's GC removes the container's snapshot from the backend soon after
  ctr tasks kill -s KILL running >/dev/null 2>&1; sleep 0.3
  ctr tasks delete running >/dev/null 2>&1; ctr containers delete running || return 1
  for _ in $(seq 100); do [ "$(layers_in_home)" = 4 ] && { echo "back to 4 layers"; return; }; sleep 0.1; done
  echo "the container's snapshot is still in the home: $(layers_in_home) layers"; return 1
}
step stop-running stop_running

shared_inode() {
  local inos n
  inos=$(for d in "$HOME_DIR"/*/root; do [ -e "$d/bin/busybox" ] && stat -c %i "$d/bin/busybox"; done)
  n=$(printf '%s\n' "$inos" | grep -c .)
  [ "$n" = 4 ] || { echo "bin/busybox in $n image layers"; return 1; }
  [ "$(printf '%s\n' "$inos" | sort -u | wc -l)" = 1 ] || { echo "inodes differ: $inos"; return 1; }
  echo "bin/busybox is inode $(printf '%s\n' "$inos" | head -1) in all 4 image layers"
}
[ "$DRIVER" = overlay ] && step shared-inode shared_inode

usage_equals_report() {
  local a b
  a=$(for k in $(ctr snapshots --snapshotter ovlink ls | awk 'NR > 1 && $NF == "Committed" { print $1 }'); do
        ctr snapshots --snapshotter ovlink usage -b "$k" | awk 'NR > 1 { print $2, $3 }'
      done | sort)
  b=$("$OVLINK" --root "$OROOT" --driver "$DRIVER" report --json |
      python3 -c 'import json,sys; [print(l["bytes_added"], l["inodes_added"]) for l in json.load(sys.stdin)["layers"]]' | sort)
  [ -n "$a" ] && [ "$a" = "$b" ] || { printf 'ctr:\n%s\nreport:\n%s\n' "$a" "$b"; return 1; }
  echo "bytes/inodes per snapshot: $(echo $a | tr '\n' ' ')"
}
step usage-equals-report usage_equals_report

reconnected() { # containerd redials a proxy plugin with a backoff of at most 3 s; a probe
  # snapshot reaches the snapshotter itself (`ls` may answer from containerd's own metadata)
  for _ in $(seq 150); do
    if ctr snapshots --snapshotter ovlink prepare e2e-probe >/dev/null 2>&1; then
      ctr snapshots --snapshotter ovlink rm e2e-probe; return
    fi
    sleep 0.1
  done
  echo "containerd did not reach the restarted snapshotter in 15 s"; return 1
}
restart_keeps() {
  local before after
  before=$(ctr snapshots --snapshotter ovlink ls | sort)
  stop_ovlink TERM
  start_ovlink && reconnected || return 1
  after=$(ctr snapshots --snapshotter ovlink ls | sort)
  [ "$before" = "$after" ] || { printf 'before:\n%s\nafter:\n%s\n' "$before" "$after"; return 1; }
  run_output
}
step restart-keeps-snapshots restart_keeps

kill_during_import() {
  ctr images rm --sync "$IMG" >/dev/null || return 1
  ctr images import --snapshotter ovlink "$FIX/fx-layers.tar" >/dev/null 2>&1 &
  local ipid=$!
  sleep "${E2E_KILL_AFTER:-0.3}"
  stop_ovlink KILL
  wait "$ipid"
  local irc=$?
  start_ovlink && reconnected || return 1
  grep -h "interrupted commit\|no snapshot names" "$W/ovlink.log" | tail -3
  echo "the killed import exited $irc"
  local tmps; tmps=$(ls -A "$HOME_DIR" | grep '^\.tmp' | grep -v '^\.tmp-remove-' || true)
  [ -z "$tmps" ] || { echo "temp dirs left: $tmps"; return 1; }
  ctr snapshots --snapshotter ovlink ls | awk 'NR > 1 && $NF != "Committed" { bad = 1 } END { exit bad }' ||
    { echo "uncommitted snapshots after the restart:"; ctr snapshots --snapshotter ovlink ls; return 1; }
  import && run_output
}
step sigkill-during-import kill_during_import

rm_leaves_nothing() {
  ctr images rm --sync "$IMG" >/dev/null || return 1
  for l in $(ctr leases ls -q); do ctr leases rm --sync "$l"; done
  ctr content ls -q | xargs -r ctr --address "$W/containerd.sock" content rm >/dev/null
  [ -z "$(ctr content ls -q)" ] || { echo "content left:"; ctr content ls; return 1; }
  local n; n=$(ctr snapshots --snapshotter ovlink ls | awk 'NR > 1' | wc -l)
  [ "$n" = 0 ] || { ctr snapshots --snapshotter ovlink ls; return 1; }
  local left
  for _ in $(seq 100); do left=$(ls -A "$HOME_DIR" | grep -v -e '^l$' -e '^\.owner$'); [ -z "$left" ] && break; sleep 0.1; done
  [ -z "$left" ] || { echo "left in $HOME_DIR: $left"; return 1; }
  echo "no snapshot, no layer tree in $HOME_DIR (its .owner record stays)"
}
step rm-leaves-nothing rm_leaves_nothing

echo "containerd-e2e ($DRIVER): $pass passed, $fail failed"
[ "$fail" = 0 ]
