#!/usr/bin/env bash
# Runs `make demo` N times in a row (default 20) and counts how each run ended. Outside CI: each run
# takes a few minutes. A run counts as "as described" when it exits 0 and its last lines say
# "demo outcome: as described" (canary v2 promoted, v3 rolled back, new-checkout ramped to 100 %,
# new-payment reverted, the kill switch off, the pod kill recovered). Logs: .sandbox/demo-runs/run-K.log.
#   scripts/demo-repeat.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
mkdir -p .sandbox/demo-runs
ok=0
declare -A outcomes=()
for ((k = 1; k <= runs; k++)); do
  log=".sandbox/demo-runs/run-$k.log"
  start=$(date +%s)
  make --no-print-directory demo >"$log" 2>&1
  code=$?
  took=$(( $(date +%s) - start ))
  if [ "$code" -eq 0 ] && grep -q '^demo outcome: as described' "$log"; then
    outcome="as described"
    ok=$((ok + 1))
  else
    # What went differently: the summary's outcome lines, or the one-line failure.
    outcome="exit $code: $(grep -E '^(canary v[23]|flag new-|kill switch|chaos pod-kill|demo failed)' "$log" \
      | grep -vE 'PROMOTED|ROLLED-BACK|COMPLETED|REVERTED|: OFF' | head -2 | tr '\n' ' ')"
  fi
  outcomes["$outcome"]=$(( ${outcomes["$outcome"]:-0} + 1 ))
  echo "run $k/$runs: $outcome (${took}s)"
done
echo "== $ok of $runs runs ended as described"
for o in "${!outcomes[@]}"; do echo "  ${outcomes[$o]}x $o"; done
[ "$ok" -eq "$runs" ]
