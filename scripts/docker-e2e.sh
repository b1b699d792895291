#!/usr/bin/env bash
# A real Docker Engine (Debian's docker.io, 20.10) on ovlink's graphdriver plugin, checked with
# Docker's own commands, next to a second private dockerd on the built-in legacy `overlay`
# driver as the reference:
#
#   sudo scripts/docker-e2e.sh
#
# Installs docker.io if missing, builds ovlink (release), starts `ovlink plugin serve` under a
# unique plugin name and two private daemons (own --data-root, --exec-root, --pidfile, -H socket
# and containerd namespaces under one temp dir, --bridge none --iptables=false), then:
# load fx-layers.tar, run, `docker diff` == tests/fixtures/fx-container.diff, commit, save, load
# into the overlay daemon, compare `docker export` of a container from each; `ovlink container
# commit` + `ovlink image save` (the CLI on its own root, the run's layout) loaded and run by
# both daemons; rm, rmi, and check
# that the plugin's home is empty and nothing is mounted; then scripts/docker-e2e-life.sh (sourced)
# checks sizes (ps -s, system df -v), docker cp, classic and BuildKit builds, a commit's digest,
# a 200 MB commit, --live-restore, plugin restarts (SIGTERM, SIGKILL) under a running container,
# a SIGKILL during docker load, parallel runs/loads/rmi, and --userns-remap=default on a third
# daemon. All daemons and plugins are stopped at the end whatever happened. Prints
# `docker-e2e: N passed, M failed` and the timings plugin vs built-in overlay (load, builds,
# 200 MB commit and load, run); exits non-zero on any failure.
#
# Environment: OVLINK_BIN (use this ovlink binary instead of building one), E2E_KEEP=1 (keep
# the temp dir), E2E_TMP (parent of the temp dir, default /var/tmp; must not be overlay/tmpfs),
# E2E_LAYOUTS (the plugin's layouts to run, one after the other; default "overlay overlay2").
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "docker-e2e: must run as root (it starts dockerd and mounts overlayfs)" >&2
  exit 1
fi

# One run per layout of the plugin (each a fresh set of daemons), the built-in `overlay`
# driver as the reference every time.
if [ -z "${E2E_LAYOUT:-}" ]; then
  rc=0
  for layout in ${E2E_LAYOUTS:-overlay overlay2}; do
    E2E_LAYOUT=$layout "$0" "$@" || rc=1
  done
  exit $rc
fi
LAYOUT=$E2E_LAYOUT

log() { printf '%s docker-e2e[%s]: %s\n' "$(date +%T)" "$LAYOUT" "$*" >&2; }

# --- prerequisites ----------------------------------------------------------------------------
need=()
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || need+=(docker.io)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package may have started the system's docker; our daemons are private, but stop it so
  # nothing else mounts or holds containerd's default namespace while we run.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl stop docker.service docker.socket >/dev/null 2>&1 || true
  fi
fi
modprobe overlay 2>/dev/null || true
DOCKER_BIN=/usr/bin/docker # not whatever `docker` comes first in PATH: the 20.10 client
DOCKERD=/usr/sbin/dockerd
log "$($DOCKERD --version)"

if [ -n "${OVLINK_BIN:-}" ]; then
  OVLINK=$OVLINK_BIN
else
  log "building ovlink (release)"
  cargo build --release --quiet --bin ovlink || { echo "docker-e2e: 0 passed, 1 failed"; exit 1; }
  OVLINK=${CARGO_TARGET_DIR:-$REPO/target}/release/ovlink
fi

FIX=$REPO/tests/fixtures
T=$(mktemp -d "${E2E_TMP:-/var/tmp}/ovlink-e2e.XXXXXX")
chmod 711 "$T"
NAME=ovlink-e2e-$$
SOCK=/run/docker/plugins/$NAME.sock
A=$T/a # dockerd on the plugin
B=$T/b # dockerd on the built-in overlay driver
HOME_A=$A/data/$NAME
mkdir -p "$A" "$B"

PASS=0
FAIL=0
FAILED=()
pass() { PASS=$((PASS + 1)); log "PASS $1"; }
fail() { FAIL=$((FAIL + 1)); FAILED+=("$1"); log "FAIL $1${2:+: $2}"; }
# step NAME CMD...: runs CMD, output to $T/steps/NAME.log; pass/fail by exit status.
mkdir -p "$T/steps"
step() {
  local name=$1
  shift
  if "$@" >"$T/steps/$name.log" 2>&1; then
    pass "$name"
  else
    fail "$name" "$(tail -n 5 "$T/steps/$name.log" | tr '\n' ' ')"
    return 1
  fi
}
da() { "$DOCKER_BIN" -H "unix://$A/docker.sock" "$@"; }
db() { "$DOCKER_BIN" -H "unix://$B/docker.sock" "$@"; }

PLUGIN_PID=
# shellcheck source=scripts/docker-lib.sh
. "$REPO/scripts/docker-lib.sh"
cleanup() {
  local rc=$?
  set +e
  stop_pid "$(daemon_pid "$A")" "dockerd (plugin)"
  stop_pid "$(daemon_pid "$B")" "dockerd (overlay)"
  [ -n "${C:-}" ] && stop_pid "$(daemon_pid "$C")" "dockerd (userns)"
  stop_pid "$PLUGIN_PID" "ovlink plugin"
  stop_pid "${PLUGIN2_PID:-}" "ovlink plugin (userns)"
  [ -n "${SOCK2:-}" ] && rm -f "$SOCK2" "${SOCK2%.sock}.init.json"
  # Anything still mounted below the temp dir (a failed run) is detached, deepest first.
  awk -v t="$T" '$5 == t || index($5, t "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -f "$SOCK" "${SOCK%.sock}.init.json"
  if [ "${E2E_KEEP:-0}" = 1 ] || [ "$FAIL" -gt 0 ]; then
    log "logs and state kept in $T"
  else
    rm -rf "$T"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- start the plugin and the daemons ----------------------------------------------------------
start_plugin() {
  "$OVLINK" --driver "$LAYOUT" plugin serve --name "$NAME" >>"$T/plugin.log" 2>&1 &
  PLUGIN_PID=$!
  for _ in $(seq 1 100); do
    [ -S "$SOCK" ] && return 0
    sleep 0.1
  done
  return 1
}

step plugin-starts start_plugin || { log "$(cat "$T/plugin.log")"; }
step socket-mode-0600 test "$(stat -c %a "$SOCK" 2>/dev/null)" = 600
# The reference: Docker's built-in driver of the same layout (E2E_REF overrides).
REF=${E2E_REF:-$LAYOUT}
if ! step dockerd-on-plugin start_dockerd "$A" "$NAME" || ! step dockerd-on-builtin start_dockerd "$B" "$REF"; then
  echo "docker-e2e[$LAYOUT]: $PASS passed, $FAIL failed"
  exit 1
fi
step info-driver-plugin driver_is "$A" "$NAME"
step info-driver-builtin driver_is "$B" "$REF"
da info --format '{{json .DriverStatus}}' >"$T/info-a.json" 2>&1

# --- load and run, timed side by side ----------------------------------------------------------
TIMES=$T/times.txt
: >"$TIMES"
step load-plugin timed load-plugin da load -i "$FIX/fx-layers.tar"
step load-overlay timed load-overlay db load -i "$FIX/fx-layers.tar"
check_hello() { # check_hello DOCKERFN
  local out
  out=$("$1" run --rm --network none fx:layers cat /app/hello.txt /app/keepme/n1 /etc/motd) || return 1
  [ "$out" = "$(printf 'hello\nnew\nagain')" ] || { echo "unexpected output: $out"; return 1; }
}
step run-output-plugin check_hello da
step run-output-overlay check_hello db
for i in 1 2 3; do
  timed run-plugin da run --rm --network none fx:layers true >>"$T/steps/run-timing.log" 2>&1
  timed run-overlay db run --rm --network none fx:layers true >>"$T/steps/run-timing.log" 2>&1
done

# The image's files as the container sees them, on both daemons (stat of every path).
STAT_CMD='find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o -print0 | xargs -0 stat -c "%n|%f|%u|%g|%s|%h|%t,%T|%N" | sort'
image_view() { "$1" run --rm --network none fx:layers sh -c "$STAT_CMD"; }
# Path, raw mode (type and permissions), owner, size (not for directories), device, link
# target; not the link count: ovlink also hardlinks symlinks and special files across layers.
view_fields() { awk -F'|' -v OFS='|' '{ if ($2 ~ /^4/) $5 = "-"; $6 = ""; print }' "$1"; }
same_image_view() {
  image_view da >"$T/view-a.txt" && image_view db >"$T/view-b.txt" || return 1
  diff <(view_fields "$T/view-a.txt") <(view_fields "$T/view-b.txt") && wc -l <"$T/view-a.txt"
}
step image-view-same same_image_view

# --- docker diff of the fixture scenario --------------------------------------------------------
SCENARIO='echo changed > /app/hello.txt; rm /app/big.bin; rm -rf /opt/moved; mkdir -p /opt/moved && echo fresh > /opt/moved/x; echo newfile > /root/new; rm /bin/ls; ln -s /etc/motd /root/motdlink; mkdir /app/empty/sub'
step scenario-run-plugin da run --network none --name fxc fx:layers sh -c "$SCENARIO"
step scenario-run-overlay db run --network none --name fxc fx:layers sh -c "$SCENARIO"
diff_is_fixture() { # diff_is_fixture DOCKERFN
  "$1" diff fxc >"$T/diff-$1.txt" || return 1
  diff <(sort "$FIX/fx-container.diff") <(sort "$T/diff-$1.txt")
}
step docker-diff-plugin diff_is_fixture da
step docker-diff-overlay diff_is_fixture db

# --- commit, save, load into the overlay daemon, export both, compare ---------------------------
step commit-plugin da commit fxc fx:committed
check_committed() {
  local out
  out=$(da run --rm --network none fx:committed sh -c 'cat /app/hello.txt /opt/moved/x /root/new; readlink /root/motdlink; test ! -e /bin/ls && test ! -e /app/big.bin && test -d /app/empty/sub && echo ok') || return 1
  [ "$out" = "$(printf 'changed\nfresh\nnewfile\n/etc/motd\nok')" ] || { echo "unexpected: $out"; return 1; }
}
step run-committed-plugin check_committed
step save-plugin da save -o "$T/committed.tar" fx:committed
step load-saved-into-overlay db load -i "$T/committed.tar"
export_of() { # export_of DOCKERFN OUT
  "$1" rm -f fxe >/dev/null 2>&1
  "$1" create --name fxe fx:committed true >/dev/null && "$1" export -o "$2" fxe
}
compare_exports() {
  export_of da "$T/export-plugin.tar" && export_of db "$T/export-overlay.tar" || return 1
  python3 - "$T/export-plugin.tar" "$T/export-overlay.tar" <<'PY'
import hashlib, sys, tarfile

def manifest(path):
    out = {}
    with tarfile.open(path) as t:
        for m in t:
            kind = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir",
                    tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char",
                    tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo"}.get(m.type, repr(m.type))
            e = {"type": kind, "mode": oct(m.mode), "uid": m.uid, "gid": m.gid}
            if kind == "file":
                h = hashlib.sha256()
                f = t.extractfile(m)
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                e["size"], e["sha256"] = m.size, h.hexdigest()
            elif kind in ("symlink", "hardlink"):
                e["target"] = m.linkname
            elif kind in ("char", "block"):
                e["dev"] = (m.devmajor, m.devminor)
            out[m.name.rstrip("/")] = e
    return out

a, b = manifest(sys.argv[1]), manifest(sys.argv[2])
bad = 0
for p in sorted(set(a) | set(b)):
    if a.get(p) != b.get(p):
        bad += 1
        if bad <= 30:
            print(f"{p}: plugin={a.get(p)} overlay={b.get(p)}")
print(f"{len(a)} entries from the plugin's daemon, {len(b)} from the overlay daemon, {bad} differ")
sys.exit(1 if bad else 0)
PY
}
step export-same compare_exports

# --- ovlink's own commit and save, loaded and run by both daemons -------------------------------
# The command line on its own root (no daemon), with this run's layout (so overlay2 in the
# overlay2 run): import the fixture, the fixture scenario in the mounted container (chroot,
# the image's own shell), `changes` == the fixture's diff, `container commit`, `image save`;
# then `docker load` of that tar into each daemon, and `docker run` of it shows the committed
# files.
CLI_ROOT=$T/cli
ov() { "$OVLINK" --root "$CLI_ROOT" --driver "$LAYOUT" "$@"; }
cli_commit_save() {
  local cid m
  ov image import "$FIX/fx-layers.tar" || return 1
  cid=$(ov container create fxcli --image fx:layers) || return 1
  m=$(ov mount "$cid") || return 1
  chroot "$m" /bin/sh -c "$SCENARIO" || { ov umount "$cid"; return 1; }
  ov umount "$cid" || return 1
  ov changes "$cid" >"$T/cli-changes.txt" || return 1
  diff <(sort "$FIX/fx-container.diff") <(sort "$T/cli-changes.txt") || return 1
  ov container commit fxcli --name ovlink-cli:committed || return 1
  ov image save ovlink-cli:committed -o "$T/cli-committed.tar"
}
check_cli_committed() { # check_cli_committed DOCKERFN
  local out
  out=$("$1" run --rm --network none ovlink-cli:committed sh -c 'cat /app/hello.txt /opt/moved/x /root/new; readlink /root/motdlink; test ! -e /bin/ls && test ! -e /app/big.bin && test -d /app/empty/sub && echo ok') || return 1
  [ "$out" = "$(printf 'changed\nfresh\nnewfile\n/etc/motd\nok')" ] || { echo "unexpected: $out"; return 1; }
}
if step cli-commit-save cli_commit_save; then
  step cli-load-overlay db load -i "$T/cli-committed.tar"
  step cli-run-overlay check_cli_committed db
  step cli-load-plugin da load -i "$T/cli-committed.tar"
  step cli-run-plugin check_cli_committed da
fi

home_empty() { # (overlay2 keeps its l/ directory of short links, empty)
  local left
  left=$(ls -A "$HOME_A" | grep -vx l)
  [ ! -d "$HOME_A/l" ] || [ -z "$(ls -A "$HOME_A/l")" ] || left="$left l/: $(ls -A "$HOME_A/l")"
  [ -z "$left" ] || { echo "left in $HOME_A:"; echo "$left"; return 1; }
}
nothing_mounted_in_home() {
  ! awk -v t="$HOME_A" 'index($5, t) == 1 {print $5; found=1} END {exit !found}' /proc/self/mountinfo
}

# --- the daemon's lifecycle, builds, sizes, userns (scripts/docker-e2e-life.sh) -------------------
# shellcheck source=scripts/docker-e2e-life.sh
. "$REPO/scripts/docker-e2e-life.sh"

# --- rm, rmi, and nothing left --------------------------------------------------------------------
rm_all() {
  local c
  c=$(da ps -aq)
  [ -z "$c" ] || da rm -f $c
}
rmi_all() { # every image, children before parents (rmi refuses a parent first)
  local i round
  for round in 1 2 3 4 5 6; do
    i=$(da images -aq | sort -u)
    [ -z "$i" ] && return 0
    for img in $i; do da rmi -f "$img" >/dev/null 2>&1; done
  done
  da images -a
  [ -z "$(da images -aq)" ]
}
step rm-plugin rm_all
step rmi-plugin rmi_all
# BuildKit keeps its own references to layers (its cache) until pruned.
step builder-prune-plugin da builder prune -af
step home-empty home_empty
step nothing-mounted nothing_mounted_in_home

# --- stop everything ------------------------------------------------------------------------------
stop_all() {
  stop_pid "$(daemon_pid "$A")" "dockerd (plugin)"
  stop_pid "$(daemon_pid "$B")" "dockerd (overlay)"
  local pid=$PLUGIN_PID
  kill -TERM "$pid" && wait "$pid"
  local rc=$?
  PLUGIN_PID=
  [ $rc = 0 ] || { echo "plugin exited with $rc"; return 1; }
  [ ! -e "$SOCK" ] || { echo "socket left behind"; return 1; }
  # No overlay mount left (dockerd's own bind mount of a data root it restarted with
  # --live-restore is dockerd's business, and removed by the cleanup below).
  ! awk -v t="$T" 'index($5, t) == 1 { for (i = 7; i < NF; i++) if ($i == "-") { if ($(i+1) == "overlay") { print $5; found=1 } break } } END {exit !found}' /proc/self/mountinfo
}
step stop-clean stop_all

# --- timings -----------------------------------------------------------------------------------
report_times() {
  python3 - "$TIMES" "$LAYOUT" "$REF" <<'PY'
import sys, collections
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    k, v = line.split()
    t[k].append(float(v))
def show(k):
    v = t.get(k, [])
    return ", ".join(f"{x:.2f}" for x in v) + (f" (median {sorted(v)[len(v)//2]:.2f})" if len(v) > 1 else "") if v else "-"
print(f"timings in seconds             plugin (ovlink, {sys.argv[2]:<8})      built-in {sys.argv[3]}")
rows = [("docker load fx-layers.tar", "load"), ("docker load 200 MB image", "load200"),
        ("build, classic builder", "build-bk0"), ("build, BuildKit", "build-bk1"),
        ("commit of a 200 MB change", "commit200"), ("docker run --rm fx true", "run")]
for label, k in rows:
    print(f"{label:<30} {show(k + '-plugin'):<30} {show(k + '-overlay')}")
PY
}
report_times | tee "$T/timings.txt" >&2 || true

if ((FAIL)); then
  log "failed steps: ${FAILED[*]} (logs in $T/steps, $A/dockerd.log, $T/plugin.log)"
fi
echo "docker-e2e[$LAYOUT]: $PASS passed, $FAIL failed"
((FAIL == 0))
