#!/usr/bin/env bash
# The Slurm recipe against a real Slurm: a one-node cluster on this machine
# (local_cluster.sh), the array job plus the dependent merge (submit.sh) on the tiny fixture
# model, one task cancelled midway (scancel) and requeued (requeue_shard.sh), another
# requeued while running (as after a node failure). The merged output must equal a
# single-host `tessera score`, byte for byte. Needs root and Debian's slurm-wlm and munge
# (installed with apt-get when missing). Every wait is bounded; the daemons it started are
# stopped on exit, whatever happens.
#
#   Tools/slurm/test_slurm.sh [TESSERA_BINARY]     (default: .build/debug/tessera)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tessera=$(realpath "${1:-$root/.build/debug/tessera}")
[[ -x "$tessera" ]] || { echo "test_slurm: no tessera binary at $tessera (swift build first)" >&2; exit 2; }
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge > /dev/null
fi
work=$(mktemp -d -t tessera-slurm-test.XXXXXX)   # under $TMPDIR, else the system's temporary folder
cleanup() {
  "$root/Tools/slurm/local_cluster.sh" stop "$work/cluster" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM   # so that a timeout still runs the clean-up
timeout 90 "$root/Tools/slurm/local_cluster.sh" start "$work/cluster"
export SLURM_CONF=$work/cluster/slurm.conf

ckpt=$root/Tests/Fixtures/tiny/nemo/legacy_tp2pp2_bf16_te_bytesio.nemo
# 30 conversations of very different lengths, from the fixture's.
python3 - "$root/Tests/Fixtures/tiny/reference/conversations.jsonl" "$work/in.jsonl" <<'PY'
import json, sys
base = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as f:
    for i in range(30):
        c = json.loads(json.dumps(base[i % len(base)]))
        c["conversations"][0]["value"] += " more" * (i * 7 % 40)
        f.write(json.dumps(c) + "\n")
PY
timeout 60 "$tessera" score "$ckpt" --input "$work/in.jsonl" --output "$work/single.jsonl" 2> /dev/null

n=3
# The tasks run slowed down from outside (stopped most of the time, as on a busy node), so
# that they can be interrupted midway; one line a batch.
export TESSERA="$root/Tools/slurm/throttled.sh" THROTTLED_COMMAND="$tessera" THROTTLE_RUN_MS=5 THROTTLE_STOP_MS=400 SCORE_ARGS="--batch 1"
read -r array merge < <("$root/Tools/slurm/submit.sh" "$ckpt" "$work/in.jsonl" "$work/merged.jsonl" $n)
echo "submitted array $array (score --shard I/$n) and merge $merge (afterok)"
shards=$work/merged.jsonl.shards
records() { if [[ -f "$1" ]]; then echo $(( $(wc -l < "$1") - 1 )); else echo 0; fi; }
wait_for_records() {  # FILE COUNT
  for _ in $(seq 300); do (( $(records "$1") >= $2 )) && return 0; sleep 0.1; done
  echo "test_slurm: $1 never reached $2 records" >&2; return 1
}
# Task 2: requeued while running, as Slurm does when its node fails.
wait_for_records "$shards/shard-2-of-$n.jsonl" 2
scontrol requeue "${array}_2"
echo "requeued ${array}_2 while running"
# Task 1: cancelled midway, then requeued by hand.
wait_for_records "$shards/shard-1-of-$n.jsonl" 2
scancel "${array}_1"
# Requeued only once it has left the queue (a task still COMPLETING cannot be requeued cleanly).
for _ in $(seq 300); do [[ -z $(squeue -h -j "${array}_1" -o %T 2>/dev/null) ]] && break; sleep 0.1; done
# ... and its processes have gone from the node: a task started again while the node is still
# killing the last one is refused ("Job credential revoked").
for _ in $(seq 300); do pgrep -f -- "--shard 1/$n" > /dev/null || break; sleep 0.1; done
[[ -z $(squeue -h -j "${array}_1" -o %T 2>/dev/null) ]] && ! pgrep -f -- "--shard 1/$n" > /dev/null ||
  { echo "test_slurm: ${array}_1 still queued or running 30 s after scancel" >&2; squeue >&2; exit 1; }
at_cancel=$(records "$shards/shard-1-of-$n.jsonl")
echo "cancelled ${array}_1 with $at_cancel records written"
"$root/Tools/slurm/requeue_shard.sh" "$array" 1 "$merge" $n
stuck=0
for _ in $(seq 600); do
  [[ -z $(squeue -h -j "$array,$merge" 2>/dev/null) ]] && break
  # A reason set before requeue_shard.sh re-pointed the dependency lasts until the next
  # evaluation; only a merge left waiting with no task queued any more is a failure.
  if [[ -z $(squeue -h -j "$array" 2>/dev/null) ]] && squeue -h -j "$merge" -o %r 2>/dev/null | grep -q DependencyNeverSatisfied; then
    (( ++stuck < 100 )) || { echo "test_slurm: the merge can never run:" >&2; squeue >&2; scontrol show job "$merge" | grep -i depend >&2
                             tail -n 5 "$shards"/*.log >&2; exit 1; }
  fi
  sleep 0.2
done
[[ -z $(squeue -h -j "$array,$merge" 2>/dev/null) ]] || { echo "test_slurm: jobs still queued after 120 s" >&2; squeue >&2; exit 1; }
cat "$shards"/merge-*.log
grep -h "restart\|already in the output" "$shards/score-${array}_1.log" "$shards/score-${array}_2.log"
lines=$(wc -l < "$work/in.jsonl")
(( at_cancel > 0 && at_cancel < lines )) || { echo "test_slurm: the cancel was not midway ($at_cancel records)" >&2; exit 1; }
cmp "$work/single.jsonl" "$work/merged.jsonl"
echo "test_slurm: OK: the merge of $n Slurm array tasks (one cancelled and requeued, one requeued while running) equals the single-host score byte for byte ($(wc -c < "$work/merged.jsonl") bytes)"
