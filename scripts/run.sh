#!/usr/bin/env bash
# Installs what is missing and starts the Keel desktop app with its embedded model (no network needed once set
# up). Data goes to ~/.local/share/keel unless KEEL_HOME says otherwise.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
keel_setup
step "starting Keel"
exec "$KEEL_DESKTOP_BIN" "$@"
