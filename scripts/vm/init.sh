#!/bin/sh
# /init of the VM test's initramfs (busybox sh, PID 1). Mounts the pseudo-filesystems, loads
# the kernel modules the initramfs brings (Debian's kernel; the small test kernels have
# everything built in), mounts the home disks (/dev/vda ext4, /dev/vdb xfs) and runs
# /scenario.sh, which reports every step on the serial console between @@begin/@@end lines
# (scripts/vm.sh collects them, tests/vm/main.rs asserts them). Then powers the guest off:
# qemu runs with -no-reboot, so the reboot ends it.
#
# The entropy pool is left as a fresh VM has it: nothing seeds it (ovlink must never wait
# for it; @@guest entropy_avail shows how little there is).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
dmesg -n 1 2>/dev/null # kernel messages stay off the console the host parses

echo "@@guest uname $(uname -r)"
echo "@@guest boot_seconds $(cut -d' ' -f1 /proc/uptime)"
echo "@@guest entropy_avail $(cat /proc/sys/kernel/random/entropy_avail 2>/dev/null)"

if [ -f /modules/load ]; then
  while read -r m; do
    insmod "/modules/$m" 2>/tmp/insmod.err || echo "@@guest insmod_failed $m $(cat /tmp/insmod.err)"
  done </modules/load
fi
echo "@@guest filesystems $(grep -E 'overlay|ext4|xfs' /proc/filesystems | tr -s '\t\n' '  ')"

# Disks appear asynchronously once virtio_blk is loaded as a module.
power=0
grep -q 'ovlink\.workload=' /proc/cmdline && power=1
n=0
while { [ ! -b /dev/vda ] || { [ $power = 0 ] && [ ! -b /dev/vdb ]; }; } && [ $n -lt 100 ]; do
  sleep 0.1
  n=$((n + 1))
done
if [ $power = 0 ]; then
  mkdir -p /mnt/ext4 /mnt/xfs
  mount -t ext4 /dev/vda /mnt/ext4 || echo "@@guest mount_failed ext4"
  mount -t xfs /dev/vdb /mnt/xfs || echo "@@guest mount_failed xfs"
fi
# A power-loss guest (ovlink.workload=NAME) mounts its one recorded disk itself.
sh /scenario.sh main
echo "@@guest entropy_avail_end $(cat /proc/sys/kernel/random/entropy_avail 2>/dev/null)"
sync
umount /mnt/ext4 /mnt/xfs 2>/dev/null
echo "@@done $(cut -d' ' -f1 /proc/uptime)"
reboot -f
