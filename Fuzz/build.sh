#!/usr/bin/env bash
# Builds every fuzz target with libFuzzer and AddressSanitizer into Fuzz/.build/fuzz-bin/.
# Usage: Fuzz/build.sh   (then Fuzz/.build/fuzz-bin/FuzzZip CORPUS..., or Tools/fuzz.sh)
set -euo pipefail
cd "$(dirname "$0")"
swift build -c debug --scratch-path .build \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
    -Xcc -fsanitize=fuzzer-no-link,address 2>&1 | grep -v "ld.gold: warning: Cannot export local symbol" || true
bin=$(swift build -c debug --scratch-path .build --show-bin-path)
mkdir -p .build/fuzz-bin
for f in Sources/Fuzz*/; do
    name=$(basename "$f")
    case $name in FuzzHarness|FuzzDriver) continue ;; esac
    [ -x "$bin/$name" ] || { echo "missing $bin/$name" >&2; exit 1; }
    ln -sf "$bin/$name" ".build/fuzz-bin/$name"
done
echo "fuzz targets in Fuzz/.build/fuzz-bin"
