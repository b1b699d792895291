#!/usr/bin/env bash
# Debian 12's own kernel for the VM test, without installing it on this machine: downloads
# the package that `linux-image-cloud-amd64` depends on today (apt-get download), unpacks it
# into CACHE/debian-<version>/ and picks the modules the guest must load from its initramfs
# (virtio_pci, virtio_blk, overlay, xfs, loop and what they depend on, in modprobe's order).
# Prints the directory: vmlinuz, config, modules/*.ko and modules/load (one file a line).
#
#   scripts/vm/debian-kernel.sh [CACHE]     # default CACHE: target/vm
#
# Needs apt's package lists (apt-get update) and kmod's modprobe/depmod. A kernel already
# unpacked in CACHE is reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${1:-target/vm}
die() { echo "scripts/vm/debian-kernel.sh: $*" >&2; exit 1; }

resolve() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1
}
pkg=$(resolve)
if [ -z "$pkg" ]; then # a fresh machine may have no package lists yet
  apt-get update -qq >/dev/null 2>&1 || true
  pkg=$(resolve)
fi
[ -n "$pkg" ] || die "apt knows no linux-image-cloud-amd64 (run apt-get update; Debian 12's archive has it)"
ver=${pkg#linux-image-}
dest="$cache/debian-$ver"
if [ -f "$dest/vmlinuz" ] && [ -f "$dest/modules/load" ]; then
  echo "$dest"
  exit 0
fi
command -v depmod >/dev/null && command -v modprobe >/dev/null || die "depmod/modprobe missing (apt-get install kmod)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>"$tmp/apt.err") ||
  die "apt-get download $pkg failed: $(cat "$tmp/apt.err")"
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
[ -f "$tmp/x/boot/vmlinuz-$ver" ] || die "$pkg has no /boot/vmlinuz-$ver"
depmod -b "$tmp/x" "$ver"

rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/modules"
cp "$tmp/x/boot/vmlinuz-$ver" "$dest.tmp/vmlinuz"
cp "$tmp/x/boot/config-$ver" "$dest.tmp/config"
: >"$dest.tmp/modules/load"
for m in virtio_pci virtio_blk overlay xfs loop; do
  # `insmod PATH` lines, dependencies (and soft pre-dependencies) first; builtins print none.
  modprobe -d "$tmp/x" -S "$ver" --show-depends "$m" >"$tmp/deps" ||
    die "modprobe --show-depends $m failed for $ver"
  while read -r what path _; do
    [ "$what" = insmod ] || continue
    name=$(basename "$path")
    grep -qx "$name" "$dest.tmp/modules/load" && continue
    cp "$path" "$dest.tmp/modules/$name"
    echo "$name" >>"$dest.tmp/modules/load"
  done <"$tmp/deps"
done
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
