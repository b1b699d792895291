#!/usr/bin/env bash
# Boots one kernel under QEMU with ovlink's static release binary and runs the VM scenario
# (scripts/vm/scenario.sh) in the guest: for ext4 and xfs, both layouts: check, demo,
# import of the Docker fixture and of a generated image, two containers (the fixture's
# scenario; read through, copy-up, deletes, rm -rf + opaque re-create, renames), changes,
# diff, commit, save and re-import, report against a count in the guest, a SIGKILL loop of
# an import, removal of everything; then the labs whose outcome depends on the kernel.
#
#   scripts/vm.sh 3.18.140                      # a kernel of tests/kernels/
#   scripts/vm.sh debian                        # Debian 12's own kernel (fetched with apt)
#   scripts/vm.sh --fs xfs --layouts overlay 3.18.140
#   scripts/vm.sh --shell 3.10.0-514.el7       # a busybox shell in the guest, to try by hand
#
# KERNEL: 3.10.0-514.el7, 3.18.140, 4.4.178 (tests/kernels/bzImage-KERNEL, checked against
# tests/kernels/SHA256SUMS), `debian` (scripts/vm/debian-kernel.sh), or a path to a bzImage.
#
# Options:
#   --bin FILE       the ovlink to run: a static binary (default: scripts/release.sh's
#                    dist/ovlink-<version>-x86_64-linux, which must exist)
#   --log FILE       the guest's serial console (default: target/vm/KERNEL.log)
#   --fs LIST        ext4,xfs (default both)
#   --layouts LIST   overlay,overlay2 (default both)
#   --kills N        SIGKILLed imports per cell (default 6)
#   --no-labs        skip the labs
#   --accel A        tcg (default) or kvm: this machine's /dev/kvm is a paravirtual KVM that
#                    cannot boot an ordinary guest, so the tests use TCG
#   --timeout SECS   for the whole guest (default 600); each step has 180 s inside it
#   --shell          boot to an interactive shell (ovlink at /bin/ovlink, disks mounted at
#                    /mnt/ext4 and /mnt/xfs); `reboot -f` ends it
#   --record DIR --workload NAME
#                    a power-loss recording instead of the scenario: one fresh disk of --fs
#                    (one of ext4, xfs) is the home, attached through QEMU's blklogwrites so
#                    every write and flush the guest sends lands in DIR/home.log; the guest
#                    runs workload NAME (import, large, apply, commit, rm: scenario.sh) with
#                    --layouts (one layout). DIR gets initial.img (the disk before the boot),
#                    home.img (after), home.log; scripts/powerloss.py replays and checks them
#   --sync MODE      with --record: the workload's --sync (files, syncfs, none; default: the
#                    binary's own, syncfs)
#   --sync-fault F   with --record: a seeded durability bug (skip-data, skip-directories), to
#                    show the replay catches a missing flush
#
# Prints one line per step (cell, step, rc, seconds) and exits 0 when the guest finished;
# which results are right for which kernel is tests/vm/main.rs's to judge (docs/old-systems.md
# has the matrix). A guest that does not boot or finish exits 1 naming the last step begun.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "scripts/vm.sh: $*" >&2; exit 1; }

bin="" log="" fs=ext4,xfs layouts=overlay,overlay2 kills=6 labs=1 accel=tcg timeout=600 shell=0
record="" workload="" sync="" sync_fault=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --fs) fs=$2; shift 2 ;;
    --layouts) layouts=$2; shift 2 ;;
    --kills) kills=$2; shift 2 ;;
    --no-labs) labs=0; shift ;;
    --accel) accel=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --shell) shell=1; shift ;;
    --record) record=$2; shift 2 ;;
    --workload) workload=$2; shift 2 ;;
    --sync) sync=$2; shift 2 ;;
    --sync-fault) sync_fault=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || die "usage: scripts/vm.sh [options] KERNEL (see --help)"
kernel=$1
case "$accel" in tcg|kvm) ;; *) die "--accel takes tcg or kvm, not $accel" ;; esac
if [ -n "$record$workload" ]; then
  [ -n "$record" ] && [ -n "$workload" ] || die "--record DIR and --workload NAME go together"
  case "$fs" in ext4|xfs) ;; *) die "--record records one disk: --fs ext4 or --fs xfs, not $fs" ;; esac
  case "$layouts" in overlay|overlay2) ;; *) die "--record runs one layout: --layouts overlay or overlay2" ;; esac
fi

for p in qemu-system-x86_64:qemu-system-x86 cpio:cpio mkfs.ext4:e2fsprogs mkfs.xfs:xfsprogs \
  readelf:binutils gzip:gzip; do
  command -v "${p%%:*}" >/dev/null || die "${p%%:*} is missing (apt-get install ${p#*:})"
done
[ -x /bin/busybox ] && ! readelf -lW /bin/busybox | grep -q INTERP ||
  die "/bin/busybox is missing or not static (apt-get install busybox-static)"

# The kernel, and the modules its initramfs must load.
modules=""
case "$kernel" in
  debian)
    kdir=$(scripts/vm/debian-kernel.sh) || die "could not fetch Debian's kernel"
    kimage="$kdir/vmlinuz"
    modules="$kdir/modules"
    ;;
  */*)
    kimage=$kernel
    ;;
  *)
    kimage="tests/kernels/bzImage-$kernel"
    [ -f "$kimage" ] || die "no kernel $kimage (known: $(cd tests/kernels && ls bzImage-* | sed 's/bzImage-//' | tr '\n' ' ')debian)"
    (cd tests/kernels && grep " bzImage-$kernel\$" SHA256SUMS | sha256sum --quiet -c -) ||
      die "$kimage does not match tests/kernels/SHA256SUMS"
    ;;
esac
[ -f "$kimage" ] || die "no kernel image $kimage"
name=$(basename "$kernel")
[ "$kernel" = debian ] && name=$(basename "$(dirname "$kimage")")

if [ -z "$bin" ]; then
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
  bin="dist/ovlink-$version-x86_64-linux"
  [ -f "$bin" ] || die "no release binary $bin: build it with scripts/release.sh (or pass --bin)"
fi
[ -x "$bin" ] || die "$bin is not an executable"
readelf -lW "$bin" | grep -q INTERP && die "$bin is dynamically linked: the guest has no libc (use scripts/release.sh's static build)"

log=${log:-target/vm/$name.log}
mkdir -p "$(dirname "$log")"
work=$(mktemp -d "${TMPDIR:-/tmp}/ovlink-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the initramfs -------------------------------------------------------------------------
ir=$work/initramfs
mkdir -p "$ir"/{bin,sbin,proc,sys,dev,tmp,mnt,etc,inputs,modules}
cp /bin/busybox "$ir/bin/busybox"
for a in $(/bin/busybox --list); do [ -e "$ir/bin/$a" ] || ln -s busybox "$ir/bin/$a"; done
cp "$bin" "$ir/bin/ovlink"
cp scripts/vm/init.sh "$ir/init"
cp scripts/vm/scenario.sh "$ir/scenario.sh"
chmod +x "$ir/init"
cp tests/fixtures/fx-layers.tar "$ir/inputs/"
echo 'root:x:0:0:root:/root:/bin/sh' >"$ir/etc/passwd"
echo 'root:x:0:' >"$ir/etc/group"
if [ -n "$modules" ]; then cp "$modules"/* "$ir/modules/"; fi
# mkfs.ext4 for `ovlink lab inodes`: this machine's e2fsprogs with its libraries, and a
# mke2fs.conf whose ext4 has only features every kernel here mounts (the defaults of
# e2fsprogs 1.47: metadata_csum_seed, orphan_file, postdate 3.x and 4.x).
mke2fs=$(command -v mke2fs)
mkdir -p "$ir/sbin"
cp "$mke2fs" "$ir/sbin/mke2fs"
ln -s mke2fs "$ir/sbin/mkfs.ext4"
for lib in $(ldd "$mke2fs" | grep -o '/[^ ]*'); do
  mkdir -p "$ir$(dirname "$lib")"
  cp -L "$lib" "$ir$lib"
done
cat >"$ir/etc/mke2fs.conf" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,dir_nlink,extra_isize
	}
	small = {
		blocksize = 1024
		inode_ratio = 4096
	}
EOF
if [ -n "$record" ]; then
  # The workloads' inputs: the generated image (made by the binary under test), a layer tar of
  # it, and an image with one large file.
  "$bin" image generate -o "$ir/inputs/gen.tar" --entries 300 --layers 4 >/dev/null 2>&1 ||
    die "$bin image generate failed"
  layer=$(tar -xOf "$ir/inputs/gen.tar" manifest.json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["Layers"][1])') ||
    die "no manifest.json in the generated image"
  tar -xOf "$ir/inputs/gen.tar" "$layer" >"$ir/inputs/layer.tar" || die "no layer $layer in the generated image"
  if [ "$workload" = large ]; then
    mkdir -p "$work/large/opt"
    head -c $((24 << 20)) /dev/urandom >"$work/large/opt/large.bin"
    python3 scripts/make-docker-save.py "$ir/inputs/large.tar" ovlink/large:1 "$work/large" >/dev/null 2>&1 ||
      die "could not make the large-file image"
  fi
  # The same inputs for the checker's reference run on the host.
  rm -rf "$record/inputs"
  mkdir -p "$record"
  cp -r "$ir/inputs" "$record/inputs"
fi
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# --- the home disks: features these kernels mount --------------------------------------------
# mkfs_FS IMAGE [SIZE_MIB]: the whole image, or its first SIZE_MIB.
mkfs_ext4() { mkfs.ext4 -q -F -O ^metadata_csum_seed,^orphan_file "$1" ${2:+${2}M}; }
# xfsprogs 6.x defaults (reflink, bigtime, inobtcount, sparse inodes) postdate 3.x/4.x.
mkfs_xfs() { mkfs.xfs -q -f -m crc=1,finobt=1,rmapbt=0,reflink=0,bigtime=0,inobtcount=0 -i sparse=0 -n ftype=1 ${2:+-d size=${2}m} "$1"; }

append="console=ttyS0 panic=-1 ovlink.fs=$fs ovlink.layouts=$layouts ovlink.kills=$kills ovlink.labs=$labs"
qemu=(qemu-system-x86_64 -accel "$accel" -cpu max -m 1024 -smp 1 -nographic -no-reboot
  -kernel "$kimage" -initrd "$work/initrd.gz")
if [ -n "$record" ]; then
  mkdir -p "$record"
  rm -f "$record/initial.img" "$record/home.img" "$record/home.log"
  # A 384 MiB disk, the filesystem on its first 320 MiB (mkfs.xfs 6.x makes nothing under
  # 300 MB); the markers go to 4 KiB blocks from 352 MiB on (scripts/powerloss.py reads them).
  truncate -s 384M "$record/initial.img"
  "mkfs_$fs" "$record/initial.img" 320 >"$work/mkfs.out" 2>&1 || die "mkfs.$fs of the recorded disk failed: $(head -n3 "$work/mkfs.out")"
  cp --sparse=always "$record/initial.img" "$record/home.img"
  : >"$record/home.log"
  append="$append ovlink.workload=$workload ovlink.homefs=$fs ovlink.mark_base=$((352 * 256))"
  [ -z "$sync" ] || append="$append ovlink.sync=$sync"
  [ -z "$sync_fault" ] || append="$append ovlink.sync_fault=$sync_fault"
  # virtio-blk's request merging off: QEMU 7.2's blklogwrites failed large merged writes.
  qemu+=(-blockdev "driver=file,filename=$record/home.img,node-name=homefile"
    -blockdev "driver=file,filename=$record/home.log,node-name=homelog"
    -blockdev "driver=blklogwrites,file=homefile,log=homelog,node-name=home,log-sector-size=512"
    -device "virtio-blk-pci,drive=home,request-merging=off")
else
  truncate -s 1G "$work/ext4.img" "$work/xfs.img"
  mkfs_ext4 "$work/ext4.img"
  mkfs_xfs "$work/xfs.img"
  qemu+=(-drive "file=$work/ext4.img,if=virtio,format=raw" -drive "file=$work/xfs.img,if=virtio,format=raw")
fi

if [ "$shell" = 1 ]; then
  sed -i 's|^sh /scenario.sh main$|setsid cttyhack sh|' "$ir/init"
  (cd "$ir" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"
  exec "${qemu[@]}" -append "$append"
fi

start=$(date +%s.%N)
rc=0
timeout "$timeout" "${qemu[@]}" -append "$append" </dev/null >"$log" 2>&1 || rc=$?
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"

grep -a '^@@guest ' "$log" | sed 's/^@@guest /guest: /' || true
awk '/^@@end /{ split($4, r, "="); split($5, s, "="); printf "%-14s %-24s rc=%-4s %6ss\n", $2, $3, r[2], s[2] }' "$log"
if ! grep -aq '^@@done' "$log"; then
  last=$(grep -a '^@@begin ' "$log" | tail -n1 | cut -d' ' -f2- || true)
  if [ "$rc" = 124 ]; then why="timed out after ${timeout}s"; else why="qemu exited with $rc"; fi
  if ! grep -aq '^@@guest uname' "$log"; then
    die "kernel $name did not boot ($why); see $log"
  fi
  die "kernel $name: the guest did not finish ($why); last step begun: ${last:-none}; see $log"
fi
echo "scripts/vm.sh: kernel $name: guest finished in ${secs}s (log: $log)"
