#!/bin/bash
# moby's own graphdriver benchmarks (daemon/graphdriver/graphtest of Docker 20.10: DiffApply100,
# DiffBase, DiffSmallUpper, Diff20Layers, Read20Layers, Exists, GetEmpty) against Docker's built-in
# overlay and overlay2 drivers and against `ovlink plugin serve` through dockerd's own plugin
# adapter, interleaved in one run, medians. Root (mounts); private plugin sockets only.
#
#   sudo scripts/bench-graphtest.sh                    # ROUNDS=5; OUT=/tmp/bench-graphtest
#   BASE_BIN=/tmp/ovlink-old sudo -E scripts/bench-graphtest.sh   # adds that binary's plugin
#
# Needs Go and Debian's golang-github-docker-docker-dev, golang-github-vbatts-tar-split-dev,
# golang-github-gotestyourself-gotest.tools-dev (apt-get install). Debian's package lacks moby's
# quota and plugin/v2 packages, which graphtest's imports need: two stand-ins are written to a
# private GOPATH (no quotas; a v2 plugin type nothing here uses). The harness is
# scripts/graphtest/graphbench_test.go.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-/tmp/bench-graphtest}
BENCH=${BENCH:-'^Benchmark(DiffApply100|DiffBase|DiffSmallUpper|Diff20Layers|Read20Layers|Exists|GetEmpty)$'}
BIN=${BIN:-$REPO/target/release/ovlink}
DIR=${DIR:-/var/tmp}
[ "$(id -u)" = 0 ] || { echo "run as root (the drivers mount)" >&2; exit 1; }
[ -x "$BIN" ] || cargo build --release --bin ovlink
mkdir -p "$OUT"
GP=$OUT/gopath
mkdir -p "$GP/src/github.com/docker/docker/plugin/v2" "$GP/src/github.com/docker/docker/quota" "$GP/src/gotest.tools"
cat > "$GP/src/github.com/docker/docker/plugin/v2/plugin.go" <<'GO'
// Stand-in for moby's plugin/v2 (not in Debian's package): graphdriver/plugin.go only
// type-asserts *v2.Plugin to read PropagatedMount; v1 plugins never are one.
package v2

import (
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/pkg/plugins"
)

type Plugin struct{ PluginObj types.Plugin }

func (p *Plugin) Name() string               { return p.PluginObj.Name }
func (p *Plugin) ScopedPath(s string) string { return s }
func (p *Plugin) IsV1() bool                 { return false }
func (p *Plugin) Client() *plugins.Client    { return nil }
GO
cat > "$GP/src/github.com/docker/docker/quota/quota.go" <<'GO'
// Stand-in for moby's quota package (not in Debian's package): no project quotas, which is
// what overlay2 reports on a filesystem without them.
package quota

import "errors"

var ErrQuotaNotSupported = errors.New("filesystem does not support, or has not enabled quotas")

type Quota struct{ Size uint64 }
type Control struct{}

func NewControl(string) (*Control, error)      { return nil, ErrQuotaNotSupported }
func (*Control) SetQuota(string, Quota) error  { return ErrQuotaNotSupported }
func (*Control) GetQuota(string, *Quota) error { return ErrQuotaNotSupported }
GO
ln -sfn /usr/share/gocode/src/gotest.tools "$GP/src/gotest.tools/v3"
ln -sfn "$REPO/scripts/graphtest" "$GP/src/graphtest_bench"
(cd "$GP/src/graphtest_bench" && GO111MODULE=off GOPATH="$GP:/usr/share/gocode" go test -c -o "$OUT/graphbench.test" .)

# Plugins: name=binary:env
declare -A PLUG
PLUG[ovlink]="$BIN:"
PLUG[ovlink-nosync]="$BIN:OVLINK_SYNC=none"
if [ -n "${BASE_BIN:-}" ]; then PLUG[ovlink-base]="$BASE_BIN:"; fi
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
for n in "${!PLUG[@]}"; do
	b=${PLUG[$n]%%:*}; e=${PLUG[$n]#*:}
	rm -f "$OUT/$n.sock" "$OUT/$n.init.json"
	env $e "$b" --driver overlay plugin serve --name "$n" --socket "$OUT/$n.sock" 2>"$OUT/$n.log" &
	PIDS+=($!)
done
for n in "${!PLUG[@]}"; do
	for _ in $(seq 100); do [ -S "$OUT/$n.sock" ] && break; sleep 0.1; done
done
DRIVERS=(overlay overlay2)
for n in $(printf '%s\n' "${!PLUG[@]}" | sort); do DRIVERS+=("plugin:$n:$OUT/$n.sock"); done
: > "$OUT/raw.txt"
for r in $(seq "$ROUNDS"); do
	for d in "${DRIVERS[@]}"; do
		label=${d#plugin:}; label=${label%%:*}
		TMPDIR=$DIR GRAPHTEST_DRIVER=$d "$OUT/graphbench.test" -test.run '^$' -test.bench "$BENCH" 2>&1 |
			awk -v l="$label" -v r="$r" '/^Benchmark/ { sub(/-[0-9]+$/, "", $1); print r, l, $1, $3 }' | tee -a "$OUT/raw.txt"
	done
done
python3 - "$OUT/raw.txt" <<'PY' | tee "$OUT/table.md"
import sys, statistics, collections
v = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r, d, b, ns = line.split()
    v[(b, d)].append(float(ns))
drivers = sorted({d for _, d in v}, key=lambda d: ["ovlink-base", "ovlink", "ovlink-nosync", "overlay", "overlay2"].index(d) if d in ["ovlink-base", "ovlink", "ovlink-nosync", "overlay", "overlay2"] else 9)
benches = sorted({b for b, _ in v})
fmt = lambda ns: f"{ns/1e6:.2f} ms" if ns >= 1e5 else f"{ns/1e3:.1f} µs"
print("| benchmark (median ns/op, n) | " + " | ".join(drivers) + " | ovlink / overlay |")
print("|---|" + "---:|" * (len(drivers) + 1))
for b in benches:
    med = {d: statistics.median(v[(b, d)]) for d in drivers if v.get((b, d))}
    cells = [f"{fmt(med[d])} ({len(v[(b, d)])})" if d in med else "-" for d in drivers]
    ratio = f"{med['ovlink']/med['overlay']:.2f}x" if 'ovlink' in med and 'overlay' in med else "-"
    print(f"| {b.removeprefix('Benchmark')} | " + " | ".join(cells) + f" | {ratio} |")
PY
