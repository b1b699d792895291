#!/usr/bin/env bash
# Helpers shared by the scripts that run private Docker daemons (scripts/docker-e2e.sh,
# scripts/bench-engines.sh, scripts/bench-docker.sh, scripts/bench-durability.sh); sourced,
# never run. The caller sets DOCKERD, DOCKER_BIN, TIMES and
# defines log(). Nothing here starts anything by itself.

stop_pid() { # stop_pid PID WHAT: SIGTERM, wait up to 60 s, then SIGKILL
  local pid=$1 what=$2 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$what (pid $pid) did not stop in 60 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null
}
daemon_pid() { cat "$1/docker.pid" 2>/dev/null; }
start_dockerd() { # start_dockerd DIR DRIVER [MORE DOCKERD FLAGS...]
  local d=$1 drv=$2 ns
  shift 2
  ns=e2e-$$-$(basename "$d")
  mkdir -p "$d/data" "$d/exec"
  "$DOCKERD" --experimental --storage-driver "$drv" \
    --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/docker.pid" \
    -H "unix://$d/docker.sock" --bridge none --iptables=false --ip6tables=false --ip-masq=false \
    --containerd-namespace "$ns" --containerd-plugins-namespace "$ns-plugins" \
    --log-level warn "$@" >>"$d/dockerd.log" 2>&1 &
  for _ in $(seq 1 600); do
    "$DOCKER_BIN" -H "unix://$d/docker.sock" version >/dev/null 2>&1 && return 0
    kill -0 $! 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$d/dockerd.log" >&2
  return 1
}
driver_is() { [ "$("$DOCKER_BIN" -H "unix://$1/docker.sock" info --format '{{.Driver}}')" = "$2" ]; }
now() { date +%s.%N; }
timed() { # timed LABEL CMD...: appends "LABEL seconds" to $TIMES
  local label=$1 t0 t1 rc
  shift
  t0=$(now)
  "$@"
  rc=$?
  t1=$(now)
  awk -v l="$label" -v a="$t0" -v b="$t1" 'BEGIN { printf "%s %.3f\n", l, b - a }' >>"$TIMES"
  return $rc
}

install_missing() { # install_missing PACKAGE...: apt-get install of what is given, if anything
  (($#)) || return 0
  log "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
mkfs_fresh() { # mkfs_fresh IMAGE SIZE ext4|xfs: a sparse image with a filesystem that has
  # nothing left to initialise in the background (ext4's inode tables written by mkfs)
  truncate -s "$2" "$1" || return 1
  if [ "$3" = ext4 ]; then
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$1"
  else
    mkfs.xfs -q -f "$1"
  fi || { log "mkfs.$3 failed on $1"; return 1; }
}
