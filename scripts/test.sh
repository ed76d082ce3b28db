#!/usr/bin/env bash
# Installs what is missing and runs Keel's whole test suite: the UI type check, the Rust unit and integration
# tests (real SQLite, real model files, the `keel` binary in a network namespace), and the end-to-end test of
# the desktop app over WebDriver under Xvfb. Screenshots and measured figures land in test-output/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
started=$(date +%s)
keel_setup
install_tauri_driver
npm_install "$KEEL_ROOT/tests/e2e"

cd "$KEEL_ROOT"
mkdir -p test-output
step "UI type check and unit tests"
npm --prefix ui run check
npm --prefix ui test

step "Rust tests"
cargo nextest run --locked --workspace --no-fail-fast

step "end-to-end desktop test"
E2E_OUT="$KEEL_ROOT/test-output/e2e" tests/e2e/run.sh

step "done in $(( $(date +%s) - started )) s"
