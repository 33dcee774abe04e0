#!/usr/bin/env bash
# Submits a sharded scoring run: an array of N `score --shard` tasks and a merge that runs
# once all of them succeeded. Prints "ARRAY_JOB_ID MERGE_JOB_ID".
#
#   Tools/slurm/submit.sh CKPT INPUT.jsonl OUTPUT.jsonl N [sbatch options for the array...]
#
# Shard outputs go to OUTDIR (default: OUTPUT.shards/); set SCORE_ARGS, TESSERA,
# LOCAL_CKPT_DIR, WARM_PAGE_CACHE as score.sbatch describes.
set -euo pipefail
[[ $# -ge 4 ]] || { echo "usage: $0 CKPT INPUT OUTPUT N [sbatch options]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
export CKPT=$(realpath "$1") INPUT=$(realpath "$2")
export OUTPUT=$(realpath -m "$3") SHARDS=$4
shift 4
export OUTDIR=${OUTDIR:-$OUTPUT.shards}
mkdir -p "$OUTDIR"
array=$(sbatch --parsable --array=0-$((SHARDS - 1)) --output="$OUTDIR/score-%A_%a.log" --export=ALL "$@" "$here/score.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=no --output="$OUTDIR/merge-%j.log" \
  --export=ALL "$here/merge.sbatch")
echo "$array ${merge%%;*}"
