#!/usr/bin/env bash
# Seed corpora for the fuzz targets, from the fixtures: Tools/fuzz_seeds.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
fx=Tests/Fixtures/tiny
seed() { mkdir -p "$out/$1"; cp "$2" "$out/$1/$(echo "$2" | sha1sum | cut -c1-16)-$(basename "$2")"; }
for f in $(find $fx -name model_weights.ckpt | sort | head -6) Tests/Fixtures/bad/*.ckpt; do seed FuzzZip "$f"; done
mkdir -p "$out/FuzzUnpickler"
python3 - "$out/FuzzUnpickler" $(find $fx -name model_weights.ckpt | sort | head -6) <<'PY'
import sys, zipfile, hashlib
for path in sys.argv[2:]:
    with zipfile.ZipFile(path) as z:
        for n in z.namelist():
            if n.endswith(".pkl"):
                b = z.read(n)
                open(f"{sys.argv[1]}/{hashlib.sha1(b).hexdigest()[:16]}.pkl", "wb").write(b)
PY
for f in $(find $fx -name .metadata); do seed FuzzDCPMetadata "$f"; done
for f in $(find $fx -name '__0_0.distcp'); do seed FuzzDistcpItem "$f"; done
for f in $(find $fx -name .zarray | head -12); do seed FuzzZarrMetadata "$f"; done
for f in $fx/nemo/*.nemo Tests/Fixtures/bad/*.nemo; do seed FuzzTar "$f"; done
for f in $(find $fx -name model_config.yaml | head -6); do seed FuzzModelConfig "$f"; done
for f in $fx/tokenizer/*.model; do seed FuzzSentencePiece "$f"; done
mkdir -p "$out/FuzzScoringJSONL"
i=0; while IFS= read -r line; do i=$((i + 1)); printf '%s' "$line" > "$out/FuzzScoringJSONL/line$i.json"; done < $fx/reference/conversations.jsonl
# HDF5 stores: written by tessera from the zarr fixture, compressed and not.
mkdir -p "$out/FuzzHDF5Store"
if [ ! -f "$out/FuzzHDF5Store/zstd.h5" ]; then
    swift build --product tessera >/dev/null
    bin=$(swift build --show-bin-path)
    "$bin/tessera" convert $fx/dist_zarr_tp1pp1_bf16 "$out/FuzzHDF5Store/zstd.h5" --format hdf5 --force >/dev/null
    "$bin/tessera" convert $fx/dist_zarr_tp1pp1_bf16 "$out/FuzzHDF5Store/plain.h5" --format hdf5 --compression none --force >/dev/null
fi
# Hugging Face export of the tiny fixture: its safetensors file and its config.json.
mkdir -p "$out/FuzzSafetensors" "$out/FuzzHFConfig"
if [ ! -f "$out/FuzzHFConfig/config.json" ]; then
    swift build --product tessera >/dev/null
    bin=$(swift build --show-bin-path)
    hf=$(mktemp -d)
    "$bin/tessera" convert $fx/legacy_tp1pp1_bf16_local_none "$hf/hf" --format hf >/dev/null
    cp "$hf/hf/config.json" "$out/FuzzHFConfig/config.json"
    cp "$hf"/hf/model-*.safetensors "$out/FuzzSafetensors/"
    rm -rf "$hf"
fi
