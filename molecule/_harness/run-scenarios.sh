#!/usr/bin/env bash
# Run molecule scenarios side by side (MOLECULE_JOBS at a time), each into its own log under
# .build/molecule/, then print a summary and the log of every scenario that failed.
# Scenarios spend most of their time waiting on `podman exec` and apt, not on the CPU, and they
# share nothing (own containers, networks and molecule state), so running them together cuts the
# suite's wall time nearly to that of the longest one.
# Usage: run-scenarios.sh SCENARIO...   (MOLECULE_JOBS=1 runs them one after another)
set -euo pipefail

jobs="${MOLECULE_JOBS:-3}"
logs="${MOLECULE_LOG_DIR:-.build/molecule}"
mkdir -p "$logs"

run_one() {
    local scenario="$1" started rc=0
    started=$(date +%s)
    molecule test -s "$scenario" >"$logs/$scenario.log" 2>&1 || rc=$?
    echo "$rc $(($(date +%s) - started))" >"$logs/$scenario.result"
}

rm -f "$logs"/*.result
running=0
for scenario in "$@"; do
    echo "== molecule scenario $scenario (log: $logs/$scenario.log)"
    run_one "$scenario" &
    running=$((running + 1))
    if ((running >= jobs)); then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

failed=()
for scenario in "$@"; do
    read -r rc seconds <"$logs/$scenario.result" || { rc=1 seconds=?; }
    if [[ "$rc" == 0 ]]; then
        echo "== molecule scenario $scenario: passed in ${seconds}s"
    else
        echo "== molecule scenario $scenario: FAILED (exit $rc) after ${seconds}s; its log follows"
        sed 's/\x1b\[[0-9;]*m//g' "$logs/$scenario.log"
        failed+=("$scenario")
    fi
done
if ((${#failed[@]})); then
    echo "== molecule: failed scenarios: ${failed[*]}" >&2
    exit 1
fi
