#!/usr/bin/env bash
# The test suite under AddressSanitizer and ThreadSanitizer, each in a build folder of its own
# (.build-asan, .build-tsan; both ignored by git).
#
#   Tools/sanitize.sh [address|thread]... [-- swift-test-arguments]
#
# Exits non-zero when a sanitizer reports or a test fails; the summary line of each run is
# printed last.
set -uo pipefail
cd "$(dirname "$0")/.."
kinds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do kinds+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ ${#kinds[@]} -eq 0 ] && kinds=(address thread)
status=0
summary=()
for k in "${kinds[@]}"; do
    mkdir -p ".build-${k:0:1}san"
    log=".build-${k:0:1}san/sanitize.log"   # kept for reading the reports in full
    # ASan: leaks are not failures (the runtime keeps caches for the process's life);
    # TSan: a report fails the run.
    # C is left out of ThreadSanitizer: CKernels picks its kernels with ifunc resolvers, which
    # the dynamic loader runs before TSan's runtime is up (instrumented, they crash the test
    # binary before main). The Swift code is all instrumented.
    extra=(); [ "$k" = thread ] && extra=(-Xcc -fno-sanitize=thread)
    # TESSERA_SANITIZER lets the interruption tests step aside under TSan (it defers signals).
    TESSERA_SANITIZER=$k ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 TSAN_OPTIONS="halt_on_error=0 suppressions=$PWD/Tools/tsan.supp" \
        swift test --sanitize="$k" --scratch-path ".build-${k:0:1}san" "${extra[@]}" "$@" >"$log" 2>&1
    rc=$?
    reports=$(grep -c -E "^(==[0-9]+==ERROR: AddressSanitizer|WARNING: ThreadSanitizer)" "$log")
    tail=$(grep -E "Test run with|error:" "$log" | tail -1)
    grep -E -A12 "^(==[0-9]+==ERROR: AddressSanitizer|WARNING: ThreadSanitizer)" "$log" | head -60
    summary+=("$k: exit $rc, $reports sanitizer reports; $tail")
    [ $rc -ne 0 ] || [ "$reports" -ne 0 ] && status=1
done
printf '%s\n' "${summary[@]}"
exit $status
