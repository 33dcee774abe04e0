#!/usr/bin/env bash
# Installs what Tessera needs on a fresh Debian machine, builds it, and (unless
# --no-demo) runs `tessera demo` on the small checkpoint that ships in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# (time: GNU time, with which the benchmarks measure each command's own peak RSS.)
for pkg in libhdf5-dev libzstd-dev libisal-dev zlib1g-dev pkg-config time; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The Swift runtime and Foundation linked in: a cold start reads one file, not a dozen libraries.
swift build -c release --static-swift-stdlib --product tessera
if [ "${1:-}" != "--no-demo" ]; then
    .build/release/tessera demo
fi
