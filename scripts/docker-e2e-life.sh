# Sourced by scripts/docker-e2e.sh after its load/run/diff/commit/save/export checks, with both
# private daemons up (da: on the plugin, db: on the built-in overlay driver) and the helpers
# step/pass/fail/timed/da/db/start_plugin/start_dockerd/stop_pid defined. Everything a Docker
# user does across the daemon's lifecycle, side by side with the built-in driver:
#
#   sizes      docker ps -s, docker images, docker system df (and -v's image sizes) equal the
#              built-in driver's
#   cp         docker cp in and out: the same tree on both daemons
#   build      classic builder and BuildKit (offline, FROM the loaded fixture image): RUN
#              writes, deletes lower files, rm -rf of a lower dir and mkdir again, COPY of a
#              local dir with a symlink and a hardlink, chmod/chown; files and history equal
#              the built-in driver's; a committed layer gets Docker's digest (no deletions)
#   big        commit of a 200 MB change (timed on both), save
#   live       --live-restore: a running container survives a dockerd restart (exec works)
#   restart    the plugin restarted by SIGTERM and by SIGKILL with a container running: it keeps
#              its root filesystem, exec/stop/start/rm work
#   killload   SIGKILL of the plugin during docker load, restart, load again
#   parallel   20 parallel docker run --rm, 3 parallel loads, an rmi while containers run
#   userns     a third dockerd with --userns-remap=default on a second plugin: load, run, write,
#              docker diff, commit, classic build, save; the saved image loaded into the plain
#              daemon has container ids (0:0)
#
# Not a standalone script: it needs the state docker-e2e.sh set up.

# --- sizes: docker ps -s, images, system df ------------------------------------------------------
sizes_of() { # sizes_of DOCKERFN: what must equal between the daemons
  "$1" ps -a -s --format '{{.Names}} {{.Size}}' | sort
  "$1" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sort
  "$1" system df --format '{{.Type}} {{.TotalCount}} {{.Active}} {{.Size}} {{.Reclaimable}}'
  # -v: the containers' and images' size columns, without ids and times.
  "$1" system df -v | awk '
    /^Images space usage/ {s = "img"; next}
    /^Containers space usage/ {s = "ctr"; next}
    /^Local Volumes/ {s = ""; next}
    /^Build cache/ {s = ""; next}
    s == "img" && $1 != "REPOSITORY" && NF >= 7 {print "img", $1, $2, $(NF-3), $(NF-2), $(NF-1), $NF}' | sort
}
same_sizes() {
  sizes_of da >"$T/sizes-a.txt" 2>&1 && sizes_of db >"$T/sizes-b.txt" 2>&1 || return 1
  diff "$T/sizes-a.txt" "$T/sizes-b.txt" && cat "$T/sizes-a.txt"
}
step sizes-same same_sizes

# --- docker cp in and out ---------------------------------------------------------------------------
mkdir -p "$T/cpin/sub"
echo one >"$T/cpin/one.txt"
echo two >"$T/cpin/sub/two.txt"
ln -s one.txt "$T/cpin/link"
chmod 0640 "$T/cpin/sub/two.txt"
cp_round() { # cp_round DOCKERFN
  rm -rf "$T/cpout-$1"
  "$1" cp "$T/cpin" fxc:/cpdir && "$1" cp fxc:/cpdir "$T/cpout-$1" &&
    "$1" cp fxc:/app/hello.txt "$T/cpout-$1/hello.txt"
}
tree_of() { (cd "$1" && find . -print0 | sort -z | xargs -0 stat -c '%n|%f|%s|%N') | awk -F'|' -v OFS='|' '{ if ($2 ~ /^4/) $3 = "-"; print }'; }
same_cp() {
  cp_round da && cp_round db || return 1
  diff <(tree_of "$T/cpout-da") <(tree_of "$T/cpout-db") && diff -r "$T/cpout-da" "$T/cpout-db" &&
    diff -r "$T/cpin" "$T/cpout-da" -x hello.txt
}
step cp-in-out-same same_cp

# --- docker build: classic and BuildKit ----------------------------------------------------------
CTX=$T/ctx
mkdir -p "$CTX/files/sub"
echo "copied file" >"$CTX/files/file.txt"
echo "nested" >"$CTX/files/sub/nested.txt"
ln -s file.txt "$CTX/files/symlink"
ln "$CTX/files/file.txt" "$CTX/files/hardlink"
touch -h -d @1600000000 "$CTX/files/file.txt" "$CTX/files/sub/nested.txt" "$CTX/files/symlink" "$CTX/files/sub" "$CTX/files"
cat >"$CTX/Dockerfile" <<'EOF'
FROM fx:layers
RUN echo written > /app/written.txt && rm /app/hello.txt /app/hello.symlink && rm -rf /opt/moved && mkdir /opt/moved && echo again > /opt/moved/y
COPY files/ /copied/
RUN chmod 0750 /copied/sub && chown 1234:5678 /copied/file.txt && chmod 4755 /copied/file.txt && chown -h 42:42 /copied/symlink
RUN ln -s /copied/file.txt /root/link && mkdir -p /var/new/deep && echo x > /var/new/deep/x && rm -rf /app/keepme && mkdir /app/keepme
EOF
build_with() { # build_with DOCKERFN BUILDKIT TAG
  DOCKER_BUILDKIT=$2 "$1" build -q --network none -t "$3" "$CTX"
}
BUILT_VIEW='find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o -print0 | xargs -0 stat -c "%n|%f|%u|%g|%s|%h|%t,%T|%N" | sort'
built_view() { "$1" run --rm --network none "$2" sh -c "$BUILT_VIEW"; }
history_of() { "$1" history --no-trunc --format '{{.CreatedBy}}|{{.Size}}' "$2"; }
same_build() { # same_build BUILDKIT TAG
  local bk=$1 tag=$2
  timed "build-bk$bk-plugin" build_with da "$bk" "$tag" && timed "build-bk$bk-overlay" build_with db "$bk" "$tag" || return 1
  built_view da "$tag" >"$T/build-$tag-a.txt" && built_view db "$tag" >"$T/build-$tag-b.txt" || return 1
  diff <(view_fields "$T/build-$tag-a.txt") <(view_fields "$T/build-$tag-b.txt") || return 1
  grep -q '^/copied/file.txt|89ed|1234|5678|12|' "$T/build-$tag-a.txt" || { echo "/copied/file.txt: wrong mode/owner"; return 1; }
  grep -q "^/copied/symlink|a1ff|42|42|" "$T/build-$tag-a.txt" || { echo "/copied/symlink: wrong owner"; return 1; }
  ! grep -q '^/opt/moved/a|' "$T/build-$tag-a.txt" || { echo "/opt/moved was not replaced"; return 1; }
  ! grep -q '^/app/keepme/n1|' "$T/build-$tag-a.txt" || { echo "/app/keepme still has n1"; return 1; }
  # (The context's hardlink: whether COPY keeps it is the builder's business; both daemons
  # agree, which the comparison above checks.)
  diff <(history_of da "$tag") <(history_of db "$tag") && history_of da "$tag"
}
step build-classic-same same_build 0 fx:classic
step build-buildkit-same same_build 1 fx:buildkit

# A layer committed on the plugin has the digest Docker gives it (no deletions: Docker's own
# whiteouts carry the time of the commit, so those layers are not reproducible even by Docker).
DIGEST_CMD='mkdir -p /dg/sub && echo hi > /dg/sub/f && ln -s f /dg/sub/l && ln /dg/sub/f /dg/sub/h && chmod 4755 /dg/sub/f && mkfifo /dg/p && touch -h -d @1600000000 /dg/sub/f /dg/sub/l /dg/p /dg/sub /dg /'
digest_of() { # digest_of DOCKERFN: the committed layer's diff id
  "$1" rm -f dgc >/dev/null 2>&1
  "$1" run --network none --name dgc fx:layers sh -c "$DIGEST_CMD" >/dev/null &&
    "$1" commit dgc fx:digest >/dev/null &&
    "$1" image inspect --format '{{json .RootFS.Layers}}' fx:digest | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1])'
}
same_digest() {
  local a b
  a=$(digest_of da) && b=$(digest_of db) || return 1
  echo "plugin $a"
  echo "overlay $b"
  [ "$a" = "$b" ]
}
step commit-digest-same same_digest

# --- a 200 MB change: commit (timed), save ------------------------------------------------------------
big_commit() { # big_commit DOCKERFN
  "$1" rm -f bigc >/dev/null 2>&1
  "$1" run --network none --name bigc fx:layers sh -c 'dd if=/dev/zero of=/big.bin bs=1M count=200 2>/dev/null' &&
    timed "commit200-$2" "$1" commit bigc fx:big >/dev/null
}
step commit-200mb-plugin big_commit da plugin
step commit-200mb-overlay big_commit db overlay
step save-200mb-plugin da save -o "$T/big.tar" fx:big

# --- live-restore: a running container survives a dockerd restart ----------------------------------
restart_a() { # restart_a [DOCKERD FLAGS...]
  stop_pid "$(daemon_pid "$A")" "dockerd (plugin)"
  start_dockerd "$A" "$NAME" "$@"
}
live_restore() {
  restart_a --live-restore || return 1
  da run -d --network none --name lr fx:layers sleep 600 >/dev/null || return 1
  restart_a --live-restore || return 1
  [ "$(da inspect --format '{{.State.Running}}' lr)" = true ] || { echo "lr is not running"; return 1; }
  da exec lr cat /app/keepme/n1 || return 1
  da exec lr sh -c 'echo live > /tmp/x && cat /tmp/x' || return 1
  da rm -f lr >/dev/null && restart_a
}
step live-restore-exec live_restore

# --- the plugin restarted (SIGTERM, SIGKILL) under a running container -------------------------------
plugin_restart() { # plugin_restart SIGNAL
  local sig=$1
  da rm -f pr >/dev/null 2>&1
  da run -d --network none --name pr fx:layers sleep 600 >/dev/null || return 1
  kill "-$sig" "$PLUGIN_PID" && wait "$PLUGIN_PID" 2>/dev/null
  start_plugin || { echo "the plugin did not restart"; return 1; }
  da exec pr cat /app/hello.txt || return 1
  da stop -t 1 pr >/dev/null && da start pr >/dev/null && da exec pr cat /etc/motd && da rm -f pr >/dev/null
}
step plugin-sigterm-container-keeps-root plugin_restart TERM
step plugin-sigkill-container-keeps-root plugin_restart KILL

# --- SIGKILL of the plugin during docker load ---------------------------------------------------------
kill_during_load() {
  da rmi fx:big >/dev/null || return 1
  da load -i "$T/big.tar" >"$T/steps/killload-first.log" 2>&1 &
  local load=$! i
  for i in $(seq 1 1000); do
    compgen -G "$HOME_A/.ovlink-apply.*" >/dev/null && break
    sleep 0.01
  done
  compgen -G "$HOME_A/.ovlink-apply.*" >/dev/null || { echo "no ApplyDiff seen"; return 1; }
  kill -KILL "$PLUGIN_PID"
  wait "$PLUGIN_PID" 2>/dev/null
  # Restarted at once: dockerd retries its calls for about 30 s.
  start_plugin || return 1
  wait "$load" && echo "the load survived a SIGKILL of the plugin"
  echo "first load: $(tail -n 1 "$T/steps/killload-first.log")"
  timed load200-plugin da load -i "$T/big.tar" || return 1
  ! compgen -G "$HOME_A/.ovlink-apply.*" >/dev/null || { echo "journal left"; return 1; }
  da run --rm --network none fx:big sh -c 'test $(wc -c < /big.bin) = 209715200'
}
step plugin-sigkill-during-load kill_during_load
timed load200-overlay db load -i "$T/big.tar" >/dev/null 2>&1

# --- bounded load: 20 parallel runs, 3 parallel loads, an rmi while containers run ---------------------
parallel_load() {
  local pids=() rc=0 p
  da run -d --network none --name busy fx:classic sleep 600 >/dev/null || return 1
  for i in $(seq 1 20); do
    da run --rm --network none fx:layers cat /app/keepme/n1 >"$T/steps/par-run-$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 1 2 3; do
    da load -i "$FIX/fx-layers.tar" >"$T/steps/par-load-$i.log" 2>&1 &
    pids+=($!)
  done
  da rmi fx:digest >"$T/steps/par-rmi.log" 2>&1 &
  pids+=($!)
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  [ $rc = 0 ] || { tail -n 3 "$T"/steps/par-*.log; return 1; }
  da rm -f busy >/dev/null || return 1
  [ -z "$(da ps -aq)" ] || da rm -f $(da ps -aq) >/dev/null
  [ -z "$(da ps -q)" ] && nothing_mounted_in_home
}
step parallel-runs-loads-rmi parallel_load

# --- userns-remap: a third daemon on a second plugin -------------------------------------------------
NAME2=$NAME-userns
SOCK2=/run/docker/plugins/$NAME2.sock
C=$T/c
PLUGIN2_PID=
start_plugin2() {
  "$OVLINK" plugin serve --name "$NAME2" >>"$T/plugin2.log" 2>&1 &
  PLUGIN2_PID=$!
  for _ in $(seq 1 100); do
    [ -S "$SOCK2" ] && return 0
    sleep 0.1
  done
  return 1
}
dc() { "$DOCKER_BIN" -H "unix://$C/docker.sock" "$@"; }
userns() {
  start_plugin2 && start_dockerd "$C" "$NAME2" --userns-remap=default || return 1
  local remap
  remap=$(dc info --format '{{.DockerRootDir}}')
  echo "remapped root: $remap"
  dc load -i "$FIX/fx-layers.tar" >/dev/null || return 1
  dc run --network none --name ur fx:layers sh -c 'echo hi > /app/ur.txt && mkdir /app/urdir && stat -c %u:%g /app/ur.txt /app/hello.txt' || return 1
  dc diff ur | grep -qx 'A /app/ur.txt' || { dc diff ur; return 1; }
  dc commit ur fx:ur >/dev/null || return 1
  printf 'FROM fx:ur\nRUN echo built > /app/built.txt && rm /app/ur.txt\n' | DOCKER_BUILDKIT=0 dc build -q -t fx:urbuild - || return 1
  dc run --rm --network none fx:urbuild sh -c 'cat /app/built.txt && test ! -e /app/ur.txt && test -c /app/nulldev' || return 1
  dc save -o "$T/ur.tar" fx:urbuild || return 1
  db load -i "$T/ur.tar" >/dev/null || return 1
  local owners
  owners=$(db run --rm --network none fx:urbuild stat -c '%n %u:%g' /app/built.txt /app/urdir /app/hello.txt /app/data)
  echo "$owners"
  [ "$owners" = "$(printf '/app/built.txt 0:0\n/app/urdir 0:0\n/app/hello.txt 0:0\n/app/data 65534:65534')" ] || { echo "host ids in the saved image"; return 1; }
  dc rm -f ur >/dev/null && dc rmi fx:urbuild fx:ur fx:layers >/dev/null || return 1
  local home2
  home2=$(find "$C/data" -maxdepth 2 -type d -name "$NAME2" | head -n 1)
  [ -n "$home2" ] && [ -z "$(ls -A "$home2")" ] || { echo "left in $home2: $(ls -A "$home2")"; return 1; }
}
if [ "$LAYOUT" = overlay ]; then
  step userns-remap userns
else
  log "userns-remap: not run for the $LAYOUT layout (it applies layers without id maps)"
fi
stop_pid "$(daemon_pid "$C")" "dockerd (userns)"
stop_pid "$PLUGIN2_PID" "ovlink plugin (userns)"
rm -f "$SOCK2" "${SOCK2%.sock}.init.json"
