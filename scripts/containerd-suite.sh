#!/usr/bin/env bash
# containerd's own snapshotter conformance suite (snapshots/testsuite, containerd 1.6 as
# Debian 12 ships it) against `ovlink snapshotter serve`, through containerd's proxy client,
# for both layouts. Offline: Debian's golang-go builds tests/containerd-suite in GOPATH mode
# against /usr/share/gocode. Fails if any case fails or fewer cases ran than expected.
#
#   sudo scripts/containerd-suite.sh [path/to/ovlink]     (default: target/debug/ovlink)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "containerd-suite.sh: run as root (the suite mounts)" >&2; exit 1; }

need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/containerd/containerd/snapshots/testsuite ] ||
  need+=(golang-github-containerd-containerd-dev)
if ((${#need[@]})); then
  echo "containerd-suite.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

bin=${1:-target/debug/ovlink}
[ -x "$bin" ] || cargo build -q --bin ovlink
bin=$(realpath "$bin")

work=$(mktemp -d "${OVLINK_TEST_TMP:-/var/tmp}/ovlink-suite.XXXXXX")
cleanup() {
  # Unmount only what the suite left under our own directory, deepest first.
  awk -v d="$work/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/gopath" "$work/gocache" "$work/tmp"
GO111MODULE=off GOPATH="$work/gopath:/usr/share/gocode" GOCACHE="$work/gocache" GOFLAGS= \
  go test -c -o "$work/suite.test" ./tests/containerd-suite

# The suite's cases; Rename is skipped by the suite itself ("still fails on some kernels").
expected=20
status=0
for driver in overlay overlay2; do
  log="$work/$driver.log"
  set +e
  TMPDIR="$work/tmp" OVLINK_BIN="$bin" OVLINK_DRIVER="$driver" \
    timeout 900 "$work/suite.test" -test.v -test.parallel 2 >"$log" 2>&1
  rc=$?
  set -e
  pass=$(grep -cE '^    --- PASS: ' "$log" || true)
  fail=$(grep -cE '^    --- FAIL: ' "$log" || true)
  echo "containerd conformance suite on --driver $driver: $pass passed, $fail failed (go test exit $rc)"
  grep -E '^    --- (PASS|FAIL|SKIP): ' "$log" | sed 's/^    /  /' | sort
  if [ "$rc" != 0 ] || [ "$fail" != 0 ] || [ "$pass" -lt "$expected" ]; then
    echo "containerd-suite.sh: FAILED on $driver; the log:" >&2
    grep -vE 'helpers_unix.go:[0-9]+: unmount' "$log" | tail -80 >&2
    status=1
  fi
done
exit $status
