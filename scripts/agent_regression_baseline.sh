#!/usr/bin/env bash
# Measures the regression subset's success on the embedded model over 4 repeats and writes
# tests/evals/agent/regression.baseline.json (the CI test fails when success falls below the mean by more than
# the spread of these repeats). Run on an otherwise idle machine after a change that should move the figure.
set -euo pipefail
cd "$(dirname "$0")/.."
keel_bin="${KEEL_BIN:-${CARGO_TARGET_DIR:-target}/debug/keel}"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
KEEL_HOME="$home" "$keel_bin" eval run --tasks tests/evals/agent/regression.jsonl --repeat 4 --json > "$home/report.json"
python3 - "$home/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
k = r["repeat"]
repeats = [sum(t["attempts"][i]["passed"] for t in r["tasks"]) / len(r["tasks"]) for i in range(k)]
out = {"backend": r["backend"], "tasks": len(r["tasks"]), "repeats": repeats,
       "note": "success of each repeat of tests/evals/agent/regression.jsonl; written by scripts/agent_regression_baseline.sh"}
open("tests/evals/agent/regression.baseline.json", "w").write(json.dumps(out, indent=2) + "\n")
print(f"repeats {repeats}, pass^{k} {r['total']['pass_hat_k']:.3f}")
PY
