#!/usr/bin/env bash
# The soak (tests/integration/soak.rs) at full size: 10,000 turns on the scripted backend over 100,000 memory
# items, with repeated imports and deletes, in one process. Writes test-output/soak/report.md (a table per tenth
# of the run: resident memory, p50/p95 turn latency, database size and what it holds) and report.csv (the
# curves), and fails if the last tenth's resident memory or p95 is more than 10% above the first's.
#
#   scripts/soak.sh [--turns N] [--items N]
# Run scripts/test.sh once first: it installs what is needed and fetches the models. Run it on an idle machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
usage() { echo "usage: scripts/soak.sh [--turns N] [--items N]" >&2; exit 2; }
turns=10000 items=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --turns) turns="${2:?--turns needs a number}"; shift 2 ;;
    --items) items="${2:?--items needs a number}"; shift 2 ;;
    *) usage ;;
  esac
done
cd "$KEEL_ROOT"
export KEEL_MODELS_DIR="${KEEL_MODELS_DIR:-$KEEL_CACHE/models}"
export KEEL_SOAK_TURNS="$turns" KEEL_SOAK_ITEMS="$items"
mkdir -p test-output/soak
cargo nextest run --locked --profile torture --test integration --no-capture 'soak::' 2>&1 | tee test-output/soak/soak.log
