#!/usr/bin/env bash
# The crash torture harness (tests/integration/torture.rs) at any size: real `keel` processes killed with SIGKILL
# at seeded points, restarted, and checked against its oracles. CI runs 50 kills of the react and import workloads
# and 20 of the memory and download ones; this runs as many as asked and keeps the log in test-output/.
#
#   scripts/torture.sh [--kills N] [--seed S] [--workload react|import|memory|download]
#     --kills N     kills per workload (default 500: 2,000 in all)
#     --seed S      the base seed (decimal or 0x hex); kill 0 of a workload uses it as is
#     --workload W  only this workload (react, import, memory or download)
#
# Each kill prints "kill I: WORKLOAD seed S POINT: ok" (or VIOLATION and the broken invariant); one kill is
# replayed with: scripts/torture.sh --seed S --workload W --kills 1
# Run scripts/test.sh once first: it installs what is needed and fetches the models.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
usage() { echo "usage: scripts/torture.sh [--kills N] [--seed S] [--workload react|import|memory|download]" >&2; exit 2; }
kills=500 seed="" workload=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills="${2:?--kills needs a number}"; shift 2 ;;
    --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
    --workload) workload="${2:?--workload needs react, import, memory or download}"; shift 2 ;;
    *) usage ;;
  esac
done
case "$workload" in ""|react|import|memory|download) ;; *) usage ;; esac
cd "$KEEL_ROOT"
export KEEL_MODELS_DIR="${KEEL_MODELS_DIR:-$KEEL_CACHE/models}"
export KEEL_TORTURE_KILLS="$kills"
if [ -n "$seed" ]; then export KEEL_TORTURE_SEED="$seed"; fi
if [ -n "$workload" ]; then export KEEL_TORTURE_WORKLOAD="$workload"; fi
mkdir -p test-output
log="test-output/torture-$(date +%Y%m%d-%H%M%S).log"
status=0
# The torture profile never kills a test for being slow: a thousand kills take hours.
cargo nextest run --locked --profile torture --test integration --no-fail-fast --no-capture 'torture::torture_' 2>&1 | tee "$log" || status=$?
echo "log: $log"
grep -h '^kill ' "$log" | awk '{print $3}' | sort | uniq -c | sed 's/^/kills per workload: /' || true
echo "violations: $(grep -c 'VIOLATION' "$log" || true)"
exit "$status"
