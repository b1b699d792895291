#!/usr/bin/env bash
# The release binary for old systems: one static x86_64 executable that runs on glibc 2.17
# (CentOS/RHEL 7) and any kernel from 3.2 (glibc's floor; ovlink itself needs overlayfs, i.e.
# upstream 3.18 or CentOS/RHEL 7's 3.10.0-514+), and its sha256.
#
#   scripts/release.sh            # builds dist/ovlink-<version>-x86_64-linux and .sha256
#   scripts/release.sh --check    # the same, then checks it (run as root for the demo):
#                                 #   static (no PT_INTERP, no NEEDED), or else no GLIBC symbol
#                                 #   newer than 2.17; glibc's ABI tag at most Linux 3.10;
#                                 #   the checksum; and `ovlink demo` runs with it.
#
# Static glibc (RUSTFLAGS=-C target-feature=+crt-static, the libc6-dev libc.a of this Debian)
# works offline; musl would need a Rust std for the musl target. CARGO_TARGET_DIR is honoured.
# The plain release build (cargo build --release) is not touched: --target gives this build its
# own directory under the target dir.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: scripts/release.sh [--check]" >&2; exit 2 ;;
esac

triple=x86_64-unknown-linux-gnu
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || { echo "scripts/release.sh: no version in Cargo.toml" >&2; exit 1; }
target_dir=${CARGO_TARGET_DIR:-target}
name="ovlink-${version}-x86_64-linux"
start=$(date +%s)

# No debug info in this build (the shipped binary is stripped anyway): a quicker build in CI.
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=0 \
  cargo build --release --locked --target "$triple" --bin ovlink
built="$target_dir/$triple/release/ovlink"

mkdir -p dist
# What debug info std's own objects bring is stripped from the shipped binary.
objcopy --strip-debug "$built" "dist/$name.tmp"
mv -f "dist/$name.tmp" "dist/$name"
(cd dist && sha256sum "$name" >"$name.sha256")
echo "scripts/release.sh: dist/$name ($(du -h "dist/$name" | cut -f1)), dist/$name.sha256, built in $(( $(date +%s) - start ))s"

[ "$check" = 1 ] || exit 0

fail() { echo "scripts/release.sh --check: $*" >&2; exit 1; }
bin="dist/$name"
(cd dist && sha256sum --quiet -c "$name.sha256") || fail "checksum mismatch"

if readelf -lW "$bin" | grep -q 'INTERP'; then
  # Dynamic: every GLIBC symbol version it needs must be 2.17 or older.
  newest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
  [ -n "$newest" ] || fail "dynamic, and objdump -T lists no GLIBC version"
  [ "$(printf '%s\n2.17\n' "$newest" | sort -V | tail -n1)" = 2.17 ] ||
    fail "needs GLIBC_$newest, newer than CentOS 7's 2.17: $(objdump -T "$bin" | grep "GLIBC_$newest" | head -n3)"
  echo "scripts/release.sh --check: dynamic, newest GLIBC symbol version $newest (<= 2.17)"
else
  readelf -dW "$bin" | grep -q '(NEEDED)' && fail "no interpreter but NEEDED entries: $(readelf -dW "$bin" | grep NEEDED)"
  echo "scripts/release.sh --check: static (no interpreter, no shared libraries)"
fi

# glibc refuses to start ("FATAL: kernel too old") below the ABI tag's kernel.
abi=$(readelf -nW "$bin" | sed -n 's/.*OS: Linux, ABI: \([0-9.]*\).*/\1/p' | head -n1)
[ -n "$abi" ] || fail "no NT_GNU_ABI_TAG note (readelf -n)"
[ "$(printf '%s\n3.10.0\n' "$abi" | sort -V | tail -n1)" = 3.10.0 ] ||
  fail "glibc's ABI tag says Linux $abi or later: it would not start on CentOS 7's 3.10"
echo "scripts/release.sh --check: minimum kernel in the ABI tag: $abi (<= 3.10.0)"

"$bin" --version | grep -qx "ovlink $version" || fail "--version does not say $version"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
TMPDIR="$tmp" "$bin" demo >"$tmp/demo.out" 2>&1 || { cat "$tmp/demo.out" >&2; fail "ovlink demo failed"; }
echo "scripts/release.sh --check: ovlink demo ran with dist/$name"

# The same demo with every syscall newer than Linux 3.10 that the binary makes failing as on
# a 3.10 kernel (ENOSYS; docs/old-systems.md lists them), then with renameat2's flags refused
# as on a filesystem without them (EINVAL). strace is required (scripts/test.sh installs it).
command -v strace >/dev/null || fail "strace is needed to simulate the old kernel (apt-get install strace)"
post310=renameat2,statx,getrandom,clone3,rseq,copy_file_range
for inject in "$post310:error=ENOSYS" "renameat2:error=EINVAL"; do
  set=${inject%%:*}
  TMPDIR="$tmp" strace -f -qq -o "$tmp/strace.log" -e trace="$set" -e inject="$inject" \
    "$bin" demo >"$tmp/demo.out" 2>&1 || { cat "$tmp/demo.out" >&2; fail "ovlink demo failed under strace -e inject=$inject"; }
  hits=$(grep -c 'INJECTED' "$tmp/strace.log" || true)
  [ "$hits" -gt 0 ] || fail "strace -e inject=$inject injected nothing"
  echo "scripts/release.sh --check: ovlink demo ran with $inject ($hits calls failed, each fell back)"
done
echo "scripts/release.sh --check: all checks passed in $(( $(date +%s) - start ))s"
