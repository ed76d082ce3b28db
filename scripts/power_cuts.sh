#!/usr/bin/env bash
# Simulated power cuts at any number (tests/integration/power_loss.rs): a fault-injecting SQLite VFS cuts the
# power at a seeded write or sync during memory edits, runs and imports, loses, tears or trashes the writes not
# yet synced, and the oracles check Keel's durability contract (ARCHITECTURE.md, "Durability"); the same VFS
# also plays a full or failing disk from a seeded operation on (half as many of those). CI runs 60 cuts.
#
#   scripts/power_cuts.sh [--cuts N] [--seed S]
#     --cuts N   power cuts (default 300), and N/2 disk faults
#     --seed S   the base seed (decimal or 0x hex); cut 0 uses it as is
#
# Each cut prints "cut I: seed S operation K of N (PHASE; …): ok", each disk fault "fault I: seed S …: ok"
# (VIOLATION and the broken rule on a failure); one is replayed with: scripts/power_cuts.sh --seed S --cuts 1
# Run scripts/test.sh once first: it installs what is needed and fetches the models.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
usage() { echo "usage: scripts/power_cuts.sh [--cuts N] [--seed S]" >&2; exit 2; }
cuts=300 seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cuts) cuts="${2:?--cuts needs a number}"; shift 2 ;;
    --seed) seed="${2:?--seed needs a number}"; shift 2 ;;
    *) usage ;;
  esac
done
cd "$KEEL_ROOT"
export KEEL_MODELS_DIR="${KEEL_MODELS_DIR:-$KEEL_CACHE/models}"
export KEEL_POWER_CUTS="$cuts"
if [ -n "$seed" ]; then export KEEL_POWER_SEED="$seed"; fi
mkdir -p test-output
log="test-output/power-cuts-$(date +%Y%m%d-%H%M%S).log"
status=0
cargo nextest run --locked --profile torture --test integration --no-fail-fast --no-capture 'power_loss::' 2>&1 | tee "$log" || status=$?
echo "log: $log"
grep -h 'power cuts in\|disk faults:' "$log" || true
echo "violations: $(grep -c 'VIOLATION' "$log" || true)"
exit "$status"
