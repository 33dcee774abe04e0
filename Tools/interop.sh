#!/usr/bin/env bash
# Proof against the real tools (Tools/README.md, "Interop check"): makes or updates the
# Python venv from Tools/requirements*.txt, builds the release binary if it is missing, and
# runs Tools/interop_check.py with it. Extra arguments go to interop_check.py.
#
#   Tools/interop.sh                          # venv at ~/.cache/tessera-venv
#   TESSERA_VENV=$HOME/venvs/tessera Tools/interop.sh  # reuse an existing venv
#
# Environment: TESSERA_VENV (venv, default ~/.cache/tessera-venv), TESSERA_MCORE015
# (--target dir for megatron-core 0.15.3, default "$TESSERA_VENV-mcore015"), TESSERA_PYTHON
# (interpreter that creates the venv, default python3.11), TESSERA_BIN (binary, default
# .build/release/tessera).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${TESSERA_VENV:-$HOME/.cache/tessera-venv}"
MCORE015="${TESSERA_MCORE015:-$VENV-mcore015}"
PYTHON="${TESSERA_PYTHON:-python3.11}"
BIN="${TESSERA_BIN:-.build/release/tessera}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
t0=$(date +%s)

# 1. Python side: skipped when the stamp matches the requirements files.
stamp="$VENV/.tessera-interop-requirements.sha256"
want=$({ cat Tools/requirements.txt Tools/requirements-nodeps.txt Tools/requirements-mcore015.txt
         echo "mcore015=$MCORE015"; } | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "venv $VENV: up to date (requirements stamp matches)"
else
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating venv $VENV with $PYTHON (torch is ~6 GB with its CUDA wheels, ~2 minutes)"
        "$PYTHON" -m venv "$VENV"
    fi
    echo "venv $VENV: installing Tools/requirements*.txt"
    "$VENV/bin/pip" install -q -r Tools/requirements.txt
    "$VENV/bin/pip" install -q --no-deps -r Tools/requirements-nodeps.txt
    mc_want=$(sed -n 's/^megatron-core==\([^ #]*\).*/\1/p' Tools/requirements-mcore015.txt)
    mc_have=$(cd / && PYTHONPATH="$MCORE015" "$VENV/bin/python" -c \
        'import megatron.core as m; print(m.__version__)' 2>/dev/null || true)
    if [ "$mc_have" != "$mc_want" ]; then
        echo "installing megatron-core $mc_want into $MCORE015 (zarr backend)"
        "$VENV/bin/pip" install -q --no-deps --upgrade --target "$MCORE015" -r Tools/requirements-mcore015.txt
    fi
    echo "$want" > "$stamp"
fi

# 2. The binary (built only if missing; waits while another build holds the lock).
if [ ! -x "$BIN" ]; then
    for attempt in $(seq 1 40); do
        if log=$(swift build -c release --static-swift-stdlib --product tessera 2>&1); then
            echo "$log" | tail -n 3
            break
        fi
        if grep -qi "lock" <<<"$log" && [ "$attempt" -lt 40 ]; then
            echo "build directory locked by another build; retrying in 15 s"
            sleep 15
        else
            echo "$log" >&2
            exit 2
        fi
    done
fi
echo "setup: $(( $(date +%s) - t0 )) s"

# 3. The checks: torch / megatron-core / zarr, then h5py + hdf5plugin, then transformers + safetensors.
status=0
"$VENV/bin/python" Tools/interop_check.py --tessera "$BIN" --mcore015 "$MCORE015" "$@" || status=$?
"$VENV/bin/python" Tools/hdf5_interop.py --tessera "$BIN" || status=$?
"$VENV/bin/python" Tools/hf_interop.py --tessera "$BIN" || status=$?
# Vocabulary re-padding: zero rows added load in megatron-core with the reference outputs,
# and dropped again give the original tensors.
"$VENV/bin/python" -W ignore Tools/vocab_interop.py --tessera "$BIN" || status=$?
# Tensor-parallel rules: TP need not divide the hidden size (megatron-core loads it), except
# under a reward head (refused).
"$VENV/bin/python" -W ignore Tools/layout_interop.py --tessera "$BIN" || status=$?
# Random shapes (printed seed): forward against transformers on every kernel path, and a random
# format and layout converted, verified and run.
"$VENV/bin/python" Tools/shape_sweep.py --tessera "$BIN" --count 16 || status=$?
# 4. Full width at 2 layers (~33 GB apparent, sparse): the release layout converted to every
#    format, every stamp found by torch / h5py / the DCP reader, verify, and the engine
#    against a float64 reference that is itself first checked against megatron-core.
"$VENV/bin/python" Tools/release_shaped.py validate-reference || status=$?
TESSERA_BIN="$BIN" "$VENV/bin/python" Tools/fullscale.py --layers 2 --disk-probe-gib 1 || status=$?
exit $status
