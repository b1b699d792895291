#!/usr/bin/env bash
# The same image through real engines, interleaved in one run: four private Docker 20.10
# daemons, two on ovlink's graphdriver plugin (the legacy overlay layout and overlay2) and two on
# Docker's built-in `overlay` and `overlay2` drivers. Per repetition and daemon, in turn:
#
#   docker load  tests/fixtures/fx-layers.tar (or IMAGE=FILE with IMAGE_REF=name:tag)
#   docker run --rm … true   (start latency: create the layer pair, mount, exec; 3 runs)
#   docker commit            of a container that changed one file
#   docker build             (classic builder, DOCKER_BUILDKIT=0) of a five-step Dockerfile
#   docker rmi               of everything the repetition made
#
#   sudo scripts/bench-engines.sh                 # REPS=3
#   sudo REPS=5 OUT=/tmp/be scripts/bench-engines.sh
#
# Prints a Markdown table of medians with the ratio plugin / built-in of the same layout, and
# writes $OUT/engines.md and $OUT/times.txt (every sample). Daemons are private (own data-root,
# exec-root, socket, containerd namespaces under one temp dir, no networking) and stopped on the
# way out whatever happened; helpers shared with scripts/docker-e2e.sh are in docker-lib.sh.
# Not done: containerd with ovlink's snapshotter (it does not exist yet).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
REPS=${REPS:-3}
OUT=${OUT:-bench-engines-out}
IMAGE=${IMAGE:-$REPO/tests/fixtures/fx-layers.tar}
IMAGE_REF=${IMAGE_REF:-fx:layers}

if [ "$(id -u)" != 0 ]; then
  echo "bench-engines: must run as root (it starts dockerd)" >&2
  exit 1
fi
log() { printf '%s bench-engines: %s\n' "$(date +%T)" "$*" >&2; }
DOCKER_BIN=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
[ -x "$DOCKERD" ] && [ -x "$DOCKER_BIN" ] || { log "needs docker.io (apt-get install docker.io)"; exit 1; }
# shellcheck source=scripts/docker-lib.sh
. "$REPO/scripts/docker-lib.sh"
modprobe overlay 2>/dev/null || true

if [ -n "${OVLINK_BIN:-}" ]; then
  OVLINK=$OVLINK_BIN
else
  cargo build --release --quiet --bin ovlink || exit 1
  OVLINK=${CARGO_TARGET_DIR:-$REPO/target}/release/ovlink
fi
mkdir -p "$OUT"
T=$(mktemp -d "${BENCH_TMP:-/var/tmp}/ovlink-engines.XXXXXX")
chmod 711 "$T"
TIMES=$T/times.txt
: >"$TIMES"
# name driver-for-dockerd plugin-layout (empty: built-in)
ENGINES="plugin-overlay plugin-overlay2 builtin-overlay builtin-overlay2"
PIDS=()
cleanup() {
  local e
  set +e
  for e in $ENGINES; do stop_pid "$(daemon_pid "$T/$e")" "dockerd $e"; done
  for p in "${PIDS[@]}"; do stop_pid "$p" "ovlink plugin"; done
  rm -f /run/docker/plugins/ovlink-bench-$$-*.sock /run/docker/plugins/ovlink-bench-$$-*.init.json
  awk -v t="$T" '$5 == t || index($5, t "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  cp "$TIMES" "$OUT/times.txt" 2>/dev/null
  [ "${BENCH_KEEP:-0}" = 1 ] && log "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for e in $ENGINES; do
  case $e in
    plugin-*)
      layout=${e#plugin-}
      name=ovlink-bench-$$-$layout
      "$OVLINK" --driver "$layout" plugin serve --name "$name" >>"$T/$e-plugin.log" 2>&1 &
      PIDS+=($!)
      for _ in $(seq 1 100); do [ -S "/run/docker/plugins/$name.sock" ] && break; sleep 0.1; done
      drv=$name
      ;;
    builtin-*) drv=${e#builtin-} ;;
  esac
  start_dockerd "$T/$e" "$drv" || { log "dockerd $e did not start"; exit 1; }
  driver_is "$T/$e" "$drv" || { log "dockerd $e is not on $drv"; exit 1; }
  log "dockerd $e on $drv"
done

mkdir -p "$T/ctx"
cat >"$T/ctx/Dockerfile" <<EOF
FROM $IMAGE_REF
RUN echo one >/step1
RUN mkdir -p /opt/app && echo two >/opt/app/step2
RUN cp /etc/motd /opt/app/motd 2>/dev/null || echo none >/opt/app/motd
RUN rm -f /step1 && echo three >/step3
RUN ls -R /opt >/opt/listing
EOF

fail=0
for rep in $(seq 1 "$REPS"); do
  for e in $ENGINES; do
    d() { "$DOCKER_BIN" -H "unix://$T/$e/docker.sock" "$@"; }
    log "repetition $rep/$REPS on $e"
    sync
    timed "load $e" d load -q -i "$IMAGE" >/dev/null || fail=1
    for _ in 1 2 3; do
      timed "run $e" d run --rm --network none "$IMAGE_REF" true || fail=1
    done
    d run --network none --name "c$rep" "$IMAGE_REF" sh -c 'echo changed >/committed' || fail=1
    timed "commit $e" d commit "c$rep" "committed:$rep" >/dev/null || fail=1
    d rm "c$rep" >/dev/null
    DOCKER_BUILDKIT=0 timed "build $e" d build -q --network none -t "built:$rep" "$T/ctx" >/dev/null || fail=1
    timed "rmi $e" d rmi -f "built:$rep" "committed:$rep" "$IMAGE_REF" >/dev/null || fail=1
    d image prune -f >/dev/null 2>&1
  done
done

python3 - "$TIMES" "$REPS" <<'PY' | tee "$OUT/engines.md"
import sys, collections, statistics
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    op, eng, v = line.split()
    t[(op, eng)].append(float(v) * 1000)
med = lambda op, eng: statistics.median(t[(op, eng)]) if t.get((op, eng)) else None
f = lambda v: "-" if v is None else f"{v:.0f} ms"
r = lambda a, b: "-" if a is None or not b else f"{a / b:.2f}x"
print(f"Docker 20.10, {sys.argv[2]} interleaved repetitions, medians (run: 3 per repetition).\n")
print("| operation | plugin, overlay | built-in overlay | plugin / built-in | plugin, overlay2 | built-in overlay2 | plugin / built-in |")
print("|---|---:|---:|---:|---:|---:|---:|")
labels = {"load": "docker load", "run": "docker run --rm … true", "commit": "docker commit",
          "build": "docker build, classic, 5 steps", "rmi": "docker rmi"}
for op, label in labels.items():
    a, b = med(op, "plugin-overlay"), med(op, "builtin-overlay")
    c, d = med(op, "plugin-overlay2"), med(op, "builtin-overlay2")
    print(f"| {label} | {f(a)} | {f(b)} | {r(a, b)} | {f(c)} | {f(d)} | {r(c, d)} |")
PY
[ "$fail" = 0 ] || { log "some docker command failed (see the daemons' logs: BENCH_KEEP=1)"; exit 1; }
