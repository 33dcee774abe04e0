#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests: `start DIR` writes DIR/slurm.conf
# (the node at 127.0.0.1 under the short host name, several CPU slots, no cgroups, no
# accounting), starts munged, slurmctld and slurmd as root, and waits until the node is idle;
# `stop DIR` stops exactly the daemons it started (by their pid files). Use with
# SLURM_CONF=DIR/slurm.conf. Needs Debian's slurm-wlm and munge.
set -euo pipefail
cmd=${1:?start|stop DIR}
dir=$(realpath -m "${2:?start|stop DIR}")
cpus=${CPUS:-4}
port=${SLURM_PORT_BASE:-16817}

stop() {
  export SLURM_CONF=$dir/slurm.conf
  if [[ -s "$dir/slurmctld.pid" ]]; then
    scancel --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 100); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.1; done
  fi
  for f in slurmd slurmctld munged; do
    if [[ -s "$dir/$f.pid" ]]; then
      pid=$(cat "$dir/$f.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$f.pid"
    fi
  done
  # Whatever this cluster started and is still there (job step daemons, their tasks): the
  # processes whose environment names this cluster's slurm.conf.
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}; pid=${pid%/environ}
    [[ $pid != "$$" ]] && tr '\0' '\n' 2>/dev/null < "$env" | grep -qxF "SLURM_CONF=$dir/slurm.conf" && kill -9 "$pid" 2>/dev/null || true
  done
}

start() {
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge" "$dir/log"
  host=$(hostname -s)
  cat > "$dir/slurm.conf" <<CONF
ClusterName=tessera-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: Slurm holds a requeued job back this long (default 120 s).
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
CryptoType=crypto/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  munged --force --socket="$dir/munge/munge.socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -c -f "$dir/slurm.conf"
  slurmd -c -f "$dir/slurm.conf"
  for _ in $(seq 120); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
    [[ "$state" == idle ]] && { echo "slurm: node $host idle ($cpus CPUs)"; return 0; }
    sleep 0.5
  done
  echo "slurm: the node never became idle (state '${state:-none}'); logs in $dir/log" >&2
  tail -20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  return 1
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
