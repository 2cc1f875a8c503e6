#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for `vaejax sweep --submit slurm` and tests/test_slurm.py.
#
#   scripts/slurm/cluster.sh install          # apt-get install slurm-wlm munge (as root; idempotent)
#   scripts/slurm/cluster.sh start [DIR]      # (install,) munged, slurmctld, slurmd; waits for the node: idle
#   scripts/slurm/cluster.sh status [DIR]     # daemons and `sinfo`
#   scripts/slurm/cluster.sh env [DIR]        # `export SLURM_CONF=...`: eval "$(... env)" for sbatch, squeue
#   scripts/slurm/cluster.sh stop [DIR]       # stops the daemons, deletes the state (keeps DIR/log)
#
# Everything (slurm.conf, munge key and socket, state, logs) lives in DIR (default
# $VAEJAX_SLURM_DIR or /tmp/vaejax-slurm), nothing in /etc: client commands find the cluster
# through SLURM_CONF=DIR/slurm.conf. The daemons run as root, started directly (no systemd);
# no cgroups (proctrack/linuxproc, task/none), no accounting (sacct is unavailable: use squeue,
# scontrol show job). The node is this host (`hostname -s`) at 127.0.0.1, with the CPUs and
# memory `slurmd -C` reads from the machine, in one partition "debug".
# Ports: VAEJAX_SLURM_PORT (slurmctld, default 6817) and the next one (slurmd).
# Timeout of `start`: VAEJAX_SLURM_START_TIMEOUT seconds (default 60).
set -euo pipefail

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }

cmd="${1:-}"
[ $# -gt 0 ] && shift
DIR="$(realpath -m "${1:-${VAEJAX_SLURM_DIR:-/tmp/vaejax-slurm}}")"
PORT="${VAEJAX_SLURM_PORT:-6817}"
TIMEOUT="${VAEJAX_SLURM_START_TIMEOUT:-60}"
HOST="$(hostname -s)"
CONF="$DIR/slurm.conf"
MUNGE_SOCKET="$DIR/munge/munge.socket"
export SLURM_CONF="$CONF"
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "slurm: $*"; }
die() { echo "slurm: error: $*" >&2; exit 1; }
# A failed start: the daemons' logs, then whatever did start is stopped again.
fail() { show_logs; do_stop >/dev/null 2>&1 || true; die "$*"; }

installed() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
              && command -v sbatch >/dev/null && command -v munged >/dev/null; }

# (`sbatch --version` would read slurm.conf, and wait 60 s for a missing one.)
versions() { dpkg-query -W -f '${Package} ${Version}, ' slurmctld slurmd slurm-client munge 2>/dev/null \
             | sed 's/, $//' || echo "slurmctld, slurmd, sbatch and munged"; }

pid_of() {  # the pid in DIR/run/$1.pid if that process is alive
  local file="$DIR/run/$1.pid" pid
  [ -s "$file" ] || return 1
  pid="$(cat "$file")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

show_logs() {
  local log
  for log in "$DIR"/log/*.log; do
    [ -f "$log" ] || continue
    echo "----- $log (last 40 lines) -----" >&2
    tail -n 40 "$log" >&2
  done
}

do_install() {
  if installed; then
    say "installed: $(versions)"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "installing needs root: sudo $0 install (apt-get install slurm-wlm munge)"
  command -v apt-get >/dev/null || die "no apt-get here: install Slurm (slurmctld, slurmd, sbatch) and munge with this system's package manager"
  say "installing slurm-wlm and munge with apt-get (a few minutes the first time)"
  # Packages may try to start their services on install; keep them from it (we start our own).
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1; fi
  local rc=0
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge \
      >"${TMPDIR:-/tmp}/vaejax-slurm-apt.log" 2>&1 \
    || { apt-get update -q >>"${TMPDIR:-/tmp}/vaejax-slurm-apt.log" 2>&1 \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge \
            >>"${TMPDIR:-/tmp}/vaejax-slurm-apt.log" 2>&1; }; } || rc=$?
  [ "$created" = 1 ] && rm -f "$policy"
  if [ "$rc" != 0 ]; then
    tail -n 20 "${TMPDIR:-/tmp}/vaejax-slurm-apt.log" >&2
    die "apt-get install slurm-wlm munge failed (log above, all of it in ${TMPDIR:-/tmp}/vaejax-slurm-apt.log)"
  fi
  installed || die "apt-get ran but slurmctld/slurmd/sbatch/munged are still missing"
  say "installed: $(versions)"
}

write_config() {
  # The node as slurmd sees it (CPUs, sockets, cores, threads, RealMemory), else nproc/meminfo.
  local node
  node="$(slurmd -C 2>/dev/null | head -n1 | sed -E 's/^NodeName=[^ ]+ //')" || true
  if ! grep -q 'CPUs=' <<<"$node"; then
    node="CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 ))"
  fi
  # Leave the kernel and the page cache some memory: slurmd drains a node whose RealMemory is
  # above what it measures, and measurements move by a few MB.
  node="$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^RealMemory=/) { split($i, a, "="); $i = "RealMemory=" int(a[2] * 0.95) } print}' <<<"$node")"
  cat >"$CONF" <<EOF
# Written by scripts/slurm/cluster.sh start: a one-node cluster on $HOST, state in $DIR.
ClusterName=vaejax
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state/ctld
SlurmdSpoolDir=$DIR/state/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no accounting: works in a container without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=3600
KillWait=10
InactiveLimit=0
SlurmdTimeout=300
NodeName=$HOST NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start_munge() {
  if pid_of munged >/dev/null; then return 0; fi
  mkdir -p "$DIR/munge"
  chmod 0755 "$DIR/munge"  # the socket must be reachable; the key itself is 0600
  if [ ! -s "$DIR/munge/munge.key" ]; then
    (umask 077; dd if=/dev/urandom bs=1 count=1024 of="$DIR/munge/munge.key" status=none)
  fi
  # --force: run even though DIR sits under a world-writable /tmp (sticky, but munged refuses).
  munged --force --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" </dev/null >>"$DIR/log/munged.log" 2>&1 \
    || fail "munged did not start"
  munge --socket="$MUNGE_SOCKET" -n </dev/null | unmunge --socket="$MUNGE_SOCKET" >/dev/null \
    || fail "munge cannot encode/decode a credential with its own key"
}

node_state() { sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -n1 || true; }

do_start() {
  installed || do_install
  if pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null && [ "$(node_state)" = idle ]; then
    say "already running ($CONF)"; echo "export SLURM_CONF=$CONF"; return 0
  fi
  pid_of slurmctld >/dev/null || pid_of slurmd >/dev/null && do_stop >/dev/null
  local t0=$SECONDS
  mkdir -p "$DIR"/{run,log,state/ctld,state/slurmd}
  : >"$DIR/log/munged.log"; : >"$DIR/log/slurmctld.log"; : >"$DIR/log/slurmd.log"
  write_config
  start_munge
  # -i: ignore any state left from an earlier cluster in DIR.
  slurmctld -i -f "$CONF" </dev/null >>"$DIR/log/slurmctld.log" 2>&1 \
    || fail "slurmctld did not start"
  slurmd -f "$CONF" -N "$HOST" </dev/null >>"$DIR/log/slurmd.log" 2>&1 \
    || fail "slurmd did not start"
  local state=""
  while [ $((SECONDS - t0)) -lt "$TIMEOUT" ]; do
    state="$(node_state)"
    [ "$state" = idle ] && break
    if ! pid_of slurmctld >/dev/null || ! pid_of slurmd >/dev/null; then
      sleep 1  # the pid file may lag the fork
      pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null || break
    fi
    sleep 1
  done
  if [ "$state" != idle ]; then
    echo "slurm: sinfo: $(sinfo -N 2>&1 | tr '\n' ';')" >&2
    fail "node $HOST not idle after $((SECONDS - t0)) s (state: '${state:-none}'; slurmctld pid: $(pid_of slurmctld || echo none), slurmd pid: $(pid_of slurmd || echo none)); logs above, in $DIR/log; what had started is stopped"
  fi
  say "node $HOST idle after $((SECONDS - t0)) s: $(sinfo -h -N -o '%P %c CPUs, %m MB' | head -n1); config $CONF"
  echo "export SLURM_CONF=$CONF"
}

do_stop() {
  local name pid stopped=""
  for name in slurmd slurmctld munged; do
    pid="$(pid_of "$name")" || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    stopped="$stopped $name"
  done
  # Job steps outlive slurmd under proctrack/linuxproc only as orphans; end those of this cluster.
  for pid in $(pgrep -f "^slurmstepd: \[" 2>/dev/null || true); do
    grep -q "$DIR" "/proc/$pid/environ" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$DIR/state" "$DIR/run" "$DIR/munge"
  say "stopped${stopped:- (nothing was running)}; state removed, logs kept in $DIR/log"
}

do_status() {
  local name rc=0
  for name in munged slurmctld slurmd; do
    if pid="$(pid_of "$name")"; then say "$name running (pid $pid)"; else say "$name not running"; rc=3; fi
  done
  if [ "$rc" = 0 ]; then sinfo -N -l; squeue; fi
  return $rc
}

case "$cmd" in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
