#!/usr/bin/env bash
# End-to-end WebDriver tests of the keel-desktop app on a virtual display. See tests/e2e/README.md.
#
#   KEEL_DESKTOP_BIN=/abs/path/to/target/debug/keel-desktop [KEEL_MODELS_DIR=...] [E2E_OUT=...] [E2E_ONLY=tools] tests/e2e/run.sh
#
# This script owns the display: it starts Xvfb on a free display number and stops it on exit. The tests own
# tauri-driver: the app inherits tauri-driver's environment, so each test starts one with its own KEEL_HOME
# (tests/e2e/desktop.mjs) and stops it when done. Node runs in its own process group so that whatever a
# failed test leaves running (tauri-driver, WebKitWebDriver, the app) is stopped here too.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
e2e="$repo/tests/e2e"

fail() {
  echo "tests/e2e/run.sh: $*" >&2
  exit 2
}

[ -n "${KEEL_DESKTOP_BIN:-}" ] || fail "set KEEL_DESKTOP_BIN to the absolute path of the built keel-desktop binary"
case "$KEEL_DESKTOP_BIN" in
  /*) ;;
  *) fail "KEEL_DESKTOP_BIN must be an absolute path, got '$KEEL_DESKTOP_BIN'" ;;
esac
[ -x "$KEEL_DESKTOP_BIN" ] || fail "KEEL_DESKTOP_BIN is not an executable file: $KEEL_DESKTOP_BIN"
export KEEL_DESKTOP_BIN
if [ -n "${KEEL_MODELS_DIR:-}" ]; then export KEEL_MODELS_DIR; fi

E2E_OUT="${E2E_OUT:-$repo/test-output/e2e}"
mkdir -p "$E2E_OUT"
E2E_OUT="$(cd "$E2E_OUT" && pwd)"
export E2E_OUT

if [ -d "$HOME/.cargo/bin" ]; then PATH="$PATH:$HOME/.cargo/bin"; fi
for tool in Xvfb WebKitWebDriver node npm; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (see shared/TAURI.md for the packages)"
done
if [ -z "${TAURI_DRIVER:-}" ]; then
  command -v tauri-driver >/dev/null || fail "tauri-driver is not installed: cargo install tauri-driver --locked"
fi

if [ ! -d "$e2e/node_modules" ]; then npm --prefix "$e2e" ci --no-audit --no-fund; fi

xvfb_pid=""
node_pgid=""
work="$(mktemp -d)"
cleanup() {
  local status=$?
  if [ -n "$node_pgid" ]; then kill -TERM -- "-$node_pgid" 2>/dev/null || true; fi
  if [ -n "$xvfb_pid" ]; then kill -TERM "$xvfb_pid" 2>/dev/null || true; fi
  if [ -n "$node_pgid" ] || [ -n "$xvfb_pid" ]; then
    sleep 1
    if [ -n "$node_pgid" ]; then kill -KILL -- "-$node_pgid" 2>/dev/null || true; fi
    if [ -n "$xvfb_pid" ]; then kill -KILL "$xvfb_pid" 2>/dev/null || true; fi
  fi
  if [ -n "${E2E_KEEP_HOME:-}" ]; then
    echo "kept the tests' data dirs in $work/homes"
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -displayfd makes Xvfb pick a free display number and write it once the server accepts connections.
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" >"$E2E_OUT/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/display" ] && break
  kill -0 "$xvfb_pid" 2>/dev/null || fail "Xvfb exited; see $E2E_OUT/xvfb.log"
  sleep 0.1
done
[ -s "$work/display" ] || fail "Xvfb did not start within 10 s; see $E2E_OUT/xvfb.log"
export DISPLAY=":$(tr -d '[:space:]' <"$work/display")"
echo "Xvfb on $DISPLAY (pid $xvfb_pid); screenshots and logs in $E2E_OUT"

# Each test's KEEL_HOME goes under here, so that it is removed even when a test is killed.
mkdir -p "$work/homes"
export E2E_TMPDIR="$work/homes"

# A non-interactive shell runs background jobs in its own process group, so setsid does not fork here and
# $! is node's pid, which becomes the new group's id.
set +e
# E2E_ONLY=name runs tests/e2e/name.test.mjs alone (while working on one test); the suite runs them all.
setsid node --test --test-reporter=tap --test-concurrency=1 "$e2e"/${E2E_ONLY:-*}.test.mjs &
node_pid=$!
node_pgid=$node_pid
wait "$node_pid"
status=$?
set -e
exit "$status"
