#!/bin/sh
# The VM test's scenario, run inside the guest by /init (`sh /scenario.sh main`) with the
# release binary at /bin/ovlink. `sh /scenario.sh FUNCTION ARGS...` runs one function: each
# step runs that way under `timeout`, so a hung step ends with rc 143 and the next one runs.
#
# Every step's result goes to the serial console as
#   @@begin CELL STEP
#   ...stdout...
#   @@stderr
#   ...stderr...
#   @@end CELL STEP rc=N secs=S
# where CELL is FS/LAYOUT (or FS/labs, vm/labs). The guest decides nothing: it runs the
# steps and prints what it saw; tests/vm/main.rs compares them with the fixtures and with
# what each kernel is expected to do. Settings come from the kernel command line:
# ovlink.fs=ext4,xfs ovlink.layouts=overlay,overlay2 ovlink.kills=N ovlink.step_timeout=S
# ovlink.labs=0|1.

arg() { # arg NAME DEFAULT: ovlink.NAME=VALUE from the kernel command line
  v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^ovlink\.$1=//p" | tail -n1)
  echo "${v:-$2}"
}

now() { cut -d' ' -f1 /proc/uptime; }

# step NAME FUNCTION ARGS...: runs `sh /scenario.sh FUNCTION ARGS...` with a timeout,
# stdout in /tmp/out (callers read values from it), and prints the framed result.
step() {
  name=$1
  shift
  echo "@@begin $CELL $name"
  t0=$(now)
  timeout "$STEP_TIMEOUT" sh /scenario.sh "$@" >/tmp/out 2>/tmp/err </dev/null
  rc=$?
  t1=$(now)
  head -c 400000 /tmp/out
  echo "@@stderr"
  head -c 100000 /tmp/err
  echo "@@end $CELL $name rc=$rc secs=$(echo "$t1 $t0" | awk '{printf "%.2f", $1 - $2}')"
  return $rc
}

# --- what steps run -----------------------------------------------------------------------

OVLINK=${OVLINK:-/bin/ovlink}
ov() { "$OVLINK" --root "$R" --driver "$L" "$@"; }

# The command must fail (a refusal): rc 0 when it did, 1 when it succeeded.
expect_fail() {
  if "$@"; then
    echo "expected a refusal, but it succeeded: $*"
    return 1
  fi
  echo "refused, as expected: $*"
}

# Nothing of a refused init is left: DIR is absent or empty.
nothing_left() {
  if [ -e "$1" ] && [ -n "$(ls -A "$1")" ]; then
    echo "left behind in $1:"
    ls -la "$1"
    return 1
  fi
  echo "nothing in $1"
}

# Where a layer's own files are: the legacy layout's root/ of an image layer, upper/ of a
# container layer; overlay2's diff/ for both.
layer_dir() { # layer_dir ID image|container
  if [ "$L" = overlay2 ]; then
    echo "$R/$L/$1/diff"
  elif [ "$2" = container ]; then
    echo "$R/$L/$1/upper"
  else
    echo "$R/$L/$1/root"
  fi
}

# One digest of a tree: every entry's name, type, mode, owner (sizes and device numbers of
# non-directories), every file's content and every symlink's target. Link counts and
# directory sizes are left out (they depend on the layers around the tree).
tree_digest() {
  (
    cd "$1" || exit 1
    find . ! -type d -exec stat -c '%n|%F|%a|%u|%g|%s|%t,%T' {} + | sort
    find . -type d -exec stat -c '%n|%F|%a|%u|%g' {} + | sort
    find . -type f -exec md5sum {} + | sort
    find . -type l | sort | while read -r f; do echo "$f -> $(readlink "$f")"; done
  ) | md5sum | cut -d' ' -f1
}

# digests KIND ID...: "digest ID DIGEST" for each layer's own tree.
digests() {
  kind=$1
  shift
  for id in "$@"; do
    echo "digest $id $(tree_digest "$(layer_dir "$id" "$kind")")"
  done
}

# The fixture's container scenario (tests/fixtures: Docker's own `docker diff` of it is
# fx-container.diff), done from outside through the merged dir.
fixture_scenario() {
  m=$1
  set -e
  printf 'changed\n' >"$m/app/hello.txt"
  rm "$m/app/big.bin"
  rm -rf "$m/opt/moved"
  mkdir -p "$m/opt/moved"
  printf 'fresh\n' >"$m/opt/moved/x"
  printf 'newfile\n' >"$m/root/new"
  rm "$m/bin/ls"
  ln -s /etc/motd "$m/root/motdlink"
  mkdir "$m/app/empty/sub"
  echo "scenario done in $m"
}

diff_listing() { # diff_listing CID OUT: the layer tar of a container's changes, listed
  ov diff "$1" -o "$2" || return 1
  tar -tf "$2" | sort
}

# Read through: a lower file's content, and nothing appears in the container's upper dir.
read_through() { # read_through MERGED UPPER
  set -e
  before=$(find "$2" | sort | md5sum)
  cat "$1/app/hello.txt"
  cat "$1/etc/motd" "$1/bin/busybox" >/dev/null
  after=$(find "$2" | sort | md5sum)
  if [ "$before" = "$after" ]; then echo "upper unchanged by reads"; else echo "upper changed by reads"; fi
}

# Copy-up of a hardlinked lower file: append through merged; the upper gets the whole file,
# the lower file keeps its content and its link count (in the legacy layout every lower
# file is a hardlink shared by the layers' root/ trees).
copy_up() { # copy_up MERGED UPPER LOWERFILE
  set -e
  before=$(stat -c '%h %s' "$3")
  echo "lower before: links/size $before content $(md5sum <"$3" | cut -d' ' -f1)"
  echo appended >>"$1/app/hello.txt"
  echo "merged: $(tr '\n' '|' <"$1/app/hello.txt")"
  echo "upper: $(tr '\n' '|' <"$2/app/hello.txt")"
  after=$(stat -c '%h %s' "$3")
  echo "lower after: links/size $after content $(md5sum <"$3" | cut -d' ' -f1)"
  [ "$before" = "$after" ]
}

delete_lower_file() { # MERGED UPPER
  set -e
  rm "$1/etc/motd"
  [ ! -e "$1/etc/motd" ]
  echo "whiteout: $(stat -c '%F %t,%T' "$2/etc/motd")"
}

rm_rf_lower_dir() { # MERGED UPPER: remove a lower directory, re-create it (opaque)
  set -e
  rm -rf "$1/var"
  [ ! -e "$1/var" ]
  echo "after rm -rf: $(stat -c '%F %t,%T' "$2/var")"
  mkdir "$1/var"
  echo "re-created, entries: $(ls -A "$1/var" | wc -l)"
}

rename_lower() { # MERGED: rename(2) of a lower file, mv of a lower directory
  set -e
  mv "$1/app/setuid" "$1/app/setuid-renamed"
  [ ! -e "$1/app/setuid" ] && [ -f "$1/app/setuid-renamed" ]
  echo "file renamed: $(cat "$1/app/setuid-renamed")"
  # A directory: rename(2) fails with EXDEV without redirect_dir (ovlink never turns it on);
  # mv then copies and deletes. `ovlink lab rename` shows the raw rename(2) result.
  mv "$1/opt" "$1/opt-renamed"
  [ ! -e "$1/opt" ] && [ -f "$1/opt-renamed/moved/a/b/c/d/e/f.txt" ]
  echo "directory moved: $(find "$1/opt-renamed" | wc -l) entries"
}

count_inodes() { # count_inodes DIR: distinct inodes under DIR on its filesystem
  find "$1" -xdev -exec stat -c '%i' {} + | sort -u | wc -l
}

# A kill loop: an import of the generated image SIGKILLed after a random delay, N times,
# each into a fresh root; after each kill every read command must work and every layer
# listed must be complete (the host compares its digest with the reference's); then the
# import is run again in that root, as a user would, and must give the complete image
# ("resume" and "rtree" lines). The last import runs to the end in a fresh root.
kill_loop() { # kill_loop N IMAGE
  n=$1
  img=$2
  i=0
  while [ "$i" -le "$n" ]; do
    kr="$T/kill-$i"
    rm -rf "$kr"
    if [ "$i" -lt "$n" ]; then
      delay=$(( (RANDOM * 32768 + RANDOM) % 1500000 ))
      /bin/ovlink --root "$kr" --driver "$L" image import "$img" >/dev/null 2>&1 &
      pid=$!
      usleep "$delay"
      kill -9 "$pid" 2>/dev/null
      wait "$pid"
      echo "iter $i delay_us=$delay rc=$?"
    else
      /bin/ovlink --root "$kr" --driver "$L" image import "$img" >/dev/null 2>&1
      echo "iter $i final rc=$?"
    fi
    for c in "layer ls --json" "image ls --json" "status"; do
      # shellcheck disable=SC2086 # the command is words
      out=$(/bin/ovlink --root "$kr" --driver "$L" $c 2>&1)
      rc=$?
      if [ "$c" = status ] && [ ! -d "$kr/$L" ]; then
        echo "cmd $i status rc=0 (no home yet)"
        continue
      fi
      if [ "$c" = "layer ls --json" ] && [ ! -d "$kr/$L" ]; then
        echo "cmd $i layers rc=0 []"
        continue
      fi
      case "$c" in
        "layer ls --json") echo "cmd $i layers rc=$rc $(echo "$out" | tr -d '\n')" ;;
        "image ls --json") echo "cmd $i images rc=$rc $(echo "$out" | tr -d '\n')" ;;
        *) echo "cmd $i status rc=$rc" ;;
      esac
    done
    if [ -d "$kr/$L" ]; then
      for d in "$kr/$L"/*; do
        id=${d##*/}
        [ ${#id} -eq 64 ] || continue
        if [ "$L" = overlay2 ]; then dir="$d/diff"; else dir="$d/root"; fi
        [ -d "$dir" ] && echo "tree $i $id $(tree_digest "$dir")"
      done
    fi
    if [ "$i" -lt "$n" ]; then
      /bin/ovlink --root "$kr" --driver "$L" image import "$img" >/dev/null 2>/tmp/resume.err
      echo "resume $i rc=$? $(tail -n1 /tmp/resume.err)"
      for d in "$kr/$L"/*; do
        id=${d##*/}
        [ ${#id} -eq 64 ] || continue
        if [ "$L" = overlay2 ]; then dir="$d/diff"; else dir="$d/root"; fi
        echo "rtree $i $id $(tree_digest "$dir")"
      done
    fi
    i=$((i + 1))
  done
}

remove_all() { # remove_all ID...: containers, then the given image layers top-down
  set -e
  ov container rm c1
  ov container rm c2
  for id in "$@"; do
    ov layer rm "$id"
  done
  echo "layers left:"
  ov layer ls
  echo "home:"
  ls -A "$R/$L"
}

reverse() { for w in "$@"; do echo "$w"; done | sed -n '1!G;h;$p'; }

# --- power-loss workloads ----------------------------------------------------------------------
# `sh /scenario.sh workload NAME LAYOUT HOME INPUTS`: the commands of one workload on the home
# filesystem mounted at HOME (recorded by QEMU's blklogwrites in the guest; a plain directory
# for the host's reference run). After each command returns success, a marker saying what it
# reported is written, so a replayed state holding marker N must hold everything command N
# reported. In the guest ($MARK_DEV set) the marker goes to the disk itself, past the end of
# the filesystem: one 4 KiB block at $MARK_BASE + N written with O_DIRECT and fsynced, which
# flushes the disk's cache but makes the filesystem commit nothing (a marker file's fsync
# would commit the journal, and with it whatever ovlink forgot to flush). On the host the
# marker is a file under HOME/markers, and `$MARK_HOOK N` records the layers after it.

mark() { # mark N TEXT
  if [ -n "${MARK_DEV:-}" ]; then
    echo "OVLMARK $1 $2" | dd of="$MARK_DEV" bs=4096 seek=$((MARK_BASE + $1)) \
      oflag=direct conv=sync,notrunc,fsync 2>/dev/null || return 1
    return 0
  fi
  mkdir -p "$H/markers"
  echo "$2" >"$H/markers/$1"
  if [ -n "${MARK_HOOK:-}" ]; then $MARK_HOOK "$1" || return 1; fi
}

wait_until() { # wait_until LOG CMD...: CMD every 0.1 s until it succeeds; after 30 s, LOG (the
  # server's output) on stderr and a failure
  wlog=$1
  shift
  n=0
  until "$@" >/dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -gt 300 ]; then
      cat "$wlog" >&2
      return 1
    fi
    sleep 0.1
  done
}

between() { # between N: on the host's reference run only, record the layers as they are now
  # (a state a command reported on the way, e.g. dockerd's Create before its ApplyDiff),
  # without a marker: N counts from 1000 (powerloss.py's INTERMEDIATE).
  if [ -z "${MARK_DEV:-}" ] && [ -n "${MARK_HOOK:-}" ]; then $MARK_HOOK "$1" || return 1; fi
  return 0
}

workload() { # workload NAME LAYOUT HOME INPUTS
  set -e
  export L=$2 H=$3 R="$3/root"
  in=$4
  case "$1" in
    import)
      ids=$(ov image import "$in/gen.tar")
      ids=$(echo $ids)
      mark 1 "import ovlink/gen:demo $ids"
      ids=$(ov image import "$in/fx-layers.tar")
      ids=$(echo $ids)
      mark 2 "import fx:layers $ids"
      ;;
    large)
      ids=$(ov image import "$in/large.tar")
      ids=$(echo $ids)
      mark 1 "import ovlink/large:1 $ids"
      ;;
    apply)
      ids=$(ov image import "$in/gen.tar")
      ids=$(echo $ids)
      mark 1 "import ovlink/gen:demo $ids"
      base=$(echo "$ids" | cut -d' ' -f1)
      ov layer apply applied-1 --parent "$base" "$in/layer.tar" >/dev/null
      mark 2 "layer applied-1"
      ov layer apply applied-2 --parent applied-1 "$in/layer.tar" >/dev/null
      mark 3 "layer applied-2"
      ;;
    commit)
      ids=$(ov image import "$in/fx-layers.tar")
      ids=$(echo $ids)
      mark 1 "import fx:layers $ids"
      cid=$(ov container create c1 --image fx:layers)
      m=$(ov mount "$cid")
      fixture_scenario "$m" >/dev/null
      ov umount "$cid"
      ov container commit c1 --name fx:committed >/dev/null
      mark 2 "commit fx:committed"
      ;;
    rm)
      # Layers no image names (an image's layers stay while its record names them).
      ids=$(ov image import "$in/gen.tar")
      ids=$(echo $ids)
      mark 1 "import ovlink/gen:demo $ids"
      top=$(echo "$ids" | tr ' ' '\n' | tail -n1)
      ov layer apply applied-1 --parent "$top" "$in/layer.tar" >/dev/null
      mark 2 "layer applied-1"
      ov layer apply applied-2 --parent applied-1 "$in/layer.tar" >/dev/null
      mark 3 "layer applied-2"
      ov layer rm applied-2
      mark 4 "rm applied-2"
      ov layer rm applied-1
      mark 5 "rm applied-1"
      ;;
    plugin)
      # Docker's path: dockerd's Create then ApplyDiff of each layer, through the plugin
      # server (a private socket outside the recorded disk; the home is the one the checker
      # opens).
      sock=${TMPDIR:-/tmp}/ovlink-powerloss-plugin.sock
      rm -f "$sock"
      "$OVLINK" --driver "$L" plugin serve --socket "$sock" >"${TMPDIR:-/tmp}/plugin-serve.log" 2>&1 &
      server=$!
      pc() { "$OVLINK" plugin call --socket "$sock" "$@" >/dev/null; }
      wait_until "${TMPDIR:-/tmp}/plugin-serve.log" pc Plugin.Activate
      pc GraphDriver.Init "{\"Home\":\"$R/$L\",\"Opts\":[],\"UIDMaps\":null,\"GIDMaps\":null}"
      parent=""
      for i in 1 2 3; do
        pc GraphDriver.Create "{\"ID\":\"plugin-$i\",\"Parent\":\"$parent\"}"
        between $((1000 + i))
        pc "GraphDriver.ApplyDiff?id=plugin-$i&parent=$parent" --body-file "$in/layer.tar"
        mark "$i" "layer plugin-$i"
        parent=plugin-$i
      done
      kill "$server"
      wait "$server" || true
      ;;
    snapshot)
      # containerd's path: Prepare, files written through the snapshot's mounts, Commit;
      # twice, the second on the first (a copy-up, a new file, a deletion), through a
      # snapshotter server on the home (a private socket outside the recorded disk). The
      # marker names the ovlink layer behind each committed snapshot (from its mounts).
      umask 022
      sock=${TMPDIR:-/tmp}/ovlink-powerloss-snap.sock
      mnt=${TMPDIR:-/tmp}/ovlink-powerloss-snap-mnt
      rm -f "$sock"
      mkdir -p "$mnt"
      "$OVLINK" --root "$R" --driver "$L" snapshotter serve --socket "$sock" \
        >"${TMPDIR:-/tmp}/snap-serve.log" 2>&1 &
      server=$!
      sc() { "$OVLINK" snapshotter call --socket "$sock" "$@"; }
      wait_until "${TMPDIR:-/tmp}/snap-serve.log" sc list
      parent=""
      for i in 1 2; do
        sc prepare "active-$i" "$parent" >"${TMPDIR:-/tmp}/snap-mounts"
        read -r t s o <"${TMPDIR:-/tmp}/snap-mounts"
        if [ "$t" = bind ]; then
          mount -o bind "$s" "$mnt"
          d=$s
        else
          mount -t "$t" -o "$o" "$s" "$mnt"
          d=$(echo "$o" | tr ',' '\n' | sed -n 's/^upperdir=//p')
        fi
        id=$(basename "$(dirname "$d")")
        if [ "$i" = 1 ]; then
          mkdir "$mnt/s1"
          k=0
          while [ "$k" -lt 40 ]; do
            echo "file $k of snapshot 1" >"$mnt/s1/f$k"
            k=$((k + 1))
          done
          yes "snapshot data" | head -c 1048576 >"$mnt/s1/big"
        else
          echo "changed in snapshot 2" >"$mnt/s1/f1"
          rm "$mnt/s1/f2"
          echo "new in snapshot 2" >"$mnt/written-2"
        fi
        umount "$mnt"
        sc commit "snap-$i" "active-$i"
        mark "$i" "snapshot snap-$i $id"
        parent=snap-$i
      done
      kill "$server"
      wait "$server" || true
      ;;
    *)
      echo "unknown workload $1" >&2
      return 2
      ;;
  esac
  echo "workload $1 done"
}

# --- one cell: a filesystem and a layout -----------------------------------------------------

cell() { # cell FS LAYOUT
  export FS=$1 L=$2 CELL="$1/$2"
  export R="/mnt/$FS/root-$L" T="/mnt/$FS/work-$L"
  mkdir -p "$T/tmp"
  export TMPDIR="$T/tmp"
  if ! step check ov check; then
    # Refused: every command that would make a home (and a container) refuses at its start,
    # and nothing is left behind.
    step demo-refused expect_fail ov demo
    step import-refused expect_fail ov image import /inputs/fx-layers.tar
    step create-refused expect_fail ov layer create-rw refused-c
    step refused-leaves-nothing nothing_left "$R/$L"
    return
  fi
  step demo ov demo
  step import-fx ov image import /inputs/fx-layers.tar || return
  FX_IDS=$(cat /tmp/out)
  FX_TOP=$(echo "$FX_IDS" | tail -n1)
  step fx-digests digests image $FX_IDS
  step generate ov image generate -o "$T/gen.tar" --entries 300 --layers 4 || return
  GEN_IDS=$(cat /tmp/out)
  step import-gen ov image import "$T/gen.tar" || return
  step gen-digests digests image $GEN_IDS

  # Container 1: the fixture's scenario, Docker's own diff of it, commit, save, re-import.
  step create-c1 ov container create c1 --image fx:layers || return
  C1=$(cat /tmp/out)
  step mount-c1 ov mount "$C1" || return
  M1=$(cat /tmp/out)
  step fixture-scenario fixture_scenario "$M1"
  step changes-c1 ov changes "$C1"
  step diff-c1 diff_listing "$C1" "$T/c1.tar"
  step diff-size-c1 ov diff-size "$C1"
  step umount-c1 ov umount "$C1"

  # Container 2: what a container does to lower files, one step each.
  step create-c2 ov container create c2 --image fx:layers || return
  C2=$(cat /tmp/out)
  step mount-c2 ov mount "$C2" || return
  M2=$(cat /tmp/out)
  U2=$(layer_dir "$C2" container)
  if [ "$L" = overlay2 ]; then
    for id in $(reverse $FX_IDS); do
      [ -e "$R/$L/$id/diff/app/hello.txt" ] && { LOWER_HELLO="$R/$L/$id/diff/app/hello.txt"; break; }
    done
  else
    LOWER_HELLO="$R/$L/$FX_TOP/root/app/hello.txt"
  fi
  step read-through read_through "$M2" "$U2"
  step copy-up copy_up "$M2" "$U2" "$LOWER_HELLO"
  step delete-lower-file delete_lower_file "$M2" "$U2"
  step rm-rf-lower-dir rm_rf_lower_dir "$M2" "$U2"
  step rename-lower rename_lower "$M2"
  step changes-c2 ov changes "$C2"
  step umount-c2 ov umount "$C2"
  step fx-digests-after digests image $FX_IDS

  step commit ov container commit c1 --name fx:committed
  COMMITTED=$(sed -n 's/.*new layer \([0-9a-f]\{64\}\).*/\1/p' /tmp/err)
  step committed-digest digests image "$COMMITTED"
  step image-ls ov image ls --json
  step save ov image save fx:committed -o "$T/saved.tar"
  step reimport /bin/ovlink --root "$R-re" --driver "$L" image import "$T/saved.tar"
  RE_IDS=$(cat /tmp/out)
  R_SAVED=$R
  export R="$R-re"
  step reimported-digest digests image $RE_IDS
  export R="$R_SAVED"

  step report ov report --json
  step count-inodes count_inodes "$R/$L"

  step kill-loop kill_loop "$KILLS" "$T/gen.tar"

  step remove-all remove_all "$COMMITTED" $(reverse $FX_IDS) $(reverse $GEN_IDS)
}

labs() { # labs FS: the labs whose outcome depends on the kernel, on this filesystem
  export CELL="$1/labs" TMPDIR="/mnt/$1/labs"
  mkdir -p "$TMPDIR"
  step rename /bin/ovlink lab rename --json
  step whiteouts /bin/ovlink lab whiteouts --json
  step copy-up /bin/ovlink lab copy-up --json --size 1
  step workdir /bin/ovlink lab workdir --json
}

# The power-loss guest: one workload on /dev/vda, the recorded disk.
power() {
  STEP_TIMEOUT=$(arg step_timeout 300)
  export STEP_TIMEOUT CELL="power/$(arg workload import)"
  fs=$(arg homefs ext4)
  # --sync of the commands (files, syncfs, none): scripts/vm.sh --sync; the binary's
  # default when not given.
  if [ -n "$(arg sync '')" ]; then
    OVLINK_SYNC=$(arg sync '')
    export OVLINK_SYNC
  fi
  # The seeded durability bug of the test that shows the replay bites (scripts/vm.sh --sync-fault).
  if [ -n "$(arg sync_fault '')" ]; then
    OVLINK_TEST_SYNC_FAULT=$(arg sync_fault '')
    export OVLINK_TEST_SYNC_FAULT
  fi
  mkdir -p /mnt/home
  if ! mount -t "$fs" /dev/vda /mnt/home; then
    echo "@@guest mount_failed $fs"
    return
  fi
  MARK_DEV=/dev/vda MARK_BASE=$(arg mark_base 0)
  export MARK_DEV MARK_BASE
  step workload workload "$(arg workload import)" "$(arg layouts overlay)" /mnt/home /inputs
  umount /mnt/home
}

main() {
  if [ -n "$(arg workload '')" ]; then
    power
    return
  fi
  STEP_TIMEOUT=$(arg step_timeout 180)
  KILLS=$(arg kills 6)
  export STEP_TIMEOUT KILLS
  for fs in $(arg fs ext4,xfs | tr ',' ' '); do
    if ! grep -q " /mnt/$fs " /proc/mounts; then
      echo "@@begin $fs/disk mount"
      echo "@@stderr"
      echo "/dev/vd? was not mounted as $fs"
      echo "@@end $fs/disk mount rc=1 secs=0"
      continue
    fi
    for layout in $(arg layouts overlay,overlay2 | tr ',' ' '); do
      cell "$fs" "$layout"
    done
    [ "$(arg labs 1)" = 1 ] && labs "$fs"
  done
  if [ "$(arg labs 1)" = 1 ]; then
    # The inode-exhaustion lab makes its own small ext4 in a loop-mounted file (the guest's
    # mkfs.ext4 is the host's e2fsprogs with an old-kernel /etc/mke2fs.conf).
    export CELL=vm/labs TMPDIR=/mnt/ext4/labs
    mkdir -p "$TMPDIR"
    step inodes /bin/ovlink lab inodes --json --no-links --size 24 --inodes 1024 --dirs 40 --max-layers 60
  fi
}

if [ "$#" -gt 0 ]; then
  "$@"
fi
