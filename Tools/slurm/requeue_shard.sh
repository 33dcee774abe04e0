#!/usr/bin/env bash
# Runs a cancelled (or failed) array task again and lets the waiting merge go ahead once it
# succeeds:
#
#   Tools/slurm/requeue_shard.sh ARRAY_JOB_ID TASK MERGE_JOB_ID N
#
# The task resumes its shard's output. Slurm marks an `afterok` dependency on an array as
# never satisfied as soon as one task ends cancelled or failed, and a requeue does not undo
# that; so the merge's dependency is set again, task by task, to the tasks' current state.
set -euo pipefail
[[ $# -eq 4 ]] || { echo "usage: $0 ARRAY_JOB_ID TASK MERGE_JOB_ID N" >&2; exit 2; }
array=$1 task=$2 merge=$3 n=$4
scontrol requeue "${array}_${task}"
# Slurm holds a requeued job back for a while (BeginTime); there is no reason to wait here.
for _ in $(seq 100); do [[ $(squeue -h -j "${array}_${task}" -o %T 2>/dev/null) == PENDING ]] && break; sleep 0.1; done
# Not sooner than 2 s: slurmd refuses a task started again in the second its last run's
# credential was revoked ("Job credential revoked"), and the task then fails for good.
scontrol update jobid="${array}_${task}" StartTime=now+2
dep=afterok$(for ((t = 0; t < n; t++)); do printf ':%s_%s' "$array" "$t"; done)
scontrol update jobid="$merge" Dependency="$dep"
echo "requeued ${array}_${task}; merge $merge now waits on $dep"
