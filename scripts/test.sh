#!/usr/bin/env bash
# ovlink's one test command: installs what the tests need (system packages included), then
# runs every test of the workspace for real, as root, with real overlay and loop mounts.
#
#   sudo scripts/test.sh            # everything
#   sudo scripts/test.sh container  # only tests whose name contains "container"
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the tests mount overlayfs and loop devices: run as root (sudo)" >&2
  exit 1
fi

# System packages: mkfs.ext4 (e2fsprogs), mkfs.btrfs (btrfs-progs: a backing filesystem the
# driver refuses), mkfs.xfs/xfs_info (xfsprogs: the xfs lab), losetup/mount/prlimit/setpriv/
# fincore (mount, util-linux), modprobe (kmod), strace (the durability test and the simulated
# old kernels), objdump/readelf/objcopy (binutils: the release check).
need=()
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || need+=(mount)
command -v modprobe >/dev/null 2>&1 || need+=(kmod)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v mkfs.btrfs >/dev/null 2>&1 || need+=(btrfs-progs)
command -v mkfs.xfs >/dev/null 2>&1 || need+=(xfsprogs)
command -v fincore >/dev/null 2>&1 || need+=(util-linux)
command -v objdump >/dev/null 2>&1 || need+=(binutils)
# The VM matrix (tests/vm/main.rs, scripts/vm.sh): QEMU, a static busybox and cpio for the
# guests' initramfs.
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
[ -x /bin/busybox ] && ! readelf -lW /bin/busybox 2>/dev/null | grep -q INTERP || need+=(busybox-static)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
if ((${#need[@]})); then
  echo "scripts/test.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || { echo "scripts/test.sh: this kernel has no overlayfs" >&2; exit 1; }

# Loop devices for the inode tests (a fresh VM may have none created yet).
[ -e /dev/loop-control ] || modprobe loop 2>/dev/null || true

export RUST_BACKTRACE=1
cargo test --workspace --all-targets -- "$@"

# The release binary (static, for glibc 2.17 and old kernels): built and checked, including a
# demo with the post-3.10 syscalls failing; only on full runs; OVLINK_SKIP_RELEASE=1 skips it.
if [ $# -eq 0 ] && [ "${OVLINK_SKIP_RELEASE:-0}" != 1 ]; then
  scripts/release.sh --check
fi

# The VM matrix: that release binary on real old kernels under QEMU (CentOS 7.3's
# 3.10.0-514.el7, upstream 3.18.140 and 4.4.178 from tests/kernels/, Debian 12's own kernel
# fetched with apt), ext4 and xfs, both layouts (docs/old-systems.md). On full runs, or when the
# filter names it (`scripts/test.sh vm`); OVLINK_SKIP_VM=1 skips it.
if { [ $# -eq 0 ] || [[ "$*" == *vm* ]]; } && [ "${OVLINK_SKIP_VM:-0}" != 1 ]; then
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
  [ -f "dist/ovlink-$version-x86_64-linux" ] || scripts/release.sh
  OVLINK_VM_BIN="dist/ovlink-$version-x86_64-linux" cargo test --test vm -- --include-ignored
fi

# containerd's snapshotter conformance suite against `ovlink snapshotter serve`, both layouts
# (installs golang-go and golang-github-containerd-containerd-dev): on full runs, or when the
# filter names it (`scripts/test.sh containerd`). OVLINK_SKIP_CONTAINERD=1 skips it.
if { [ $# -eq 0 ] || [[ "$*" == *containerd* ]]; } && [ "${OVLINK_SKIP_CONTAINERD:-0}" != 1 ]; then
  cargo build -q --bin ovlink
  scripts/containerd-suite.sh target/debug/ovlink
  # A private containerd 1.6 on the snapshotter (both layouts): only on full runs.
  if [ $# -eq 0 ]; then
    OVLINK_BIN=target/debug/ovlink OVLINK_DRIVER=overlay scripts/containerd-e2e.sh
    OVLINK_BIN=target/debug/ovlink OVLINK_DRIVER=overlay2 scripts/containerd-e2e.sh
  fi
fi

# End to end with a real Docker Engine (20.10) on the ovlink plugin, next to the built-in
# overlay driver: only on full runs (no test filter); OVLINK_SKIP_DOCKER_E2E=1 skips it.
if [ $# -eq 0 ] && [ "${OVLINK_SKIP_DOCKER_E2E:-0}" != 1 ]; then
  scripts/docker-e2e.sh
fi
