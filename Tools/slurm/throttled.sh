#!/usr/bin/env bash
# For the Slurm test only: runs "$THROTTLED_COMMAND" "$@" slowed down from outside, as on a
# busy node: the command runs THROTTLE_RUN_MS (default 15) then stays stopped (SIGSTOP)
# THROTTLE_STOP_MS (default 300), over and over, so that a requeue or a cancel lands while it
# is midway. TERM and INT sent to this wrapper reach the command (continued first); its exit
# status is the wrapper's. Nothing in Tessera itself knows it is being slowed.
set -u
: "${THROTTLED_COMMAND:?set THROTTLED_COMMAND to the command to slow down}"
run=$(awk "BEGIN { print ${THROTTLE_RUN_MS:-15} / 1000 }")
stop=$(awk "BEGIN { print ${THROTTLE_STOP_MS:-300} / 1000 }")
"$THROTTLED_COMMAND" "$@" &
pid=$!
stopping=0
forward() { stopping=1; kill -CONT "$pid" 2>/dev/null; kill "-$1" "$pid" 2>/dev/null; }
trap 'forward TERM' TERM
trap 'forward INT' INT
while (( ! stopping )) && kill -0 "$pid" 2>/dev/null; do
  sleep "$run"
  (( stopping )) && break
  kill -STOP "$pid" 2>/dev/null || break
  sleep "$stop"
  kill -CONT "$pid" 2>/dev/null || break
done
kill -CONT "$pid" 2>/dev/null
# `wait` returns early (above 128) when a trapped signal arrives; wait again until it has exited.
while :; do
  wait "$pid"
  status=$?
  kill -0 "$pid" 2>/dev/null || break
done
exit "$status"
