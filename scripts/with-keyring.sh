#!/usr/bin/env bash
# Runs a command with a real, unlocked Secret Service: a private D-Bus session bus (dbus-run-session) and
# gnome-keyring-daemon's secrets component, its keyring files in a throwaway folder (a keyring left over from
# another run, with another password, would refuse access). The tests of API keys use it; so can a person
# trying Keel on a machine without a desktop session:  scripts/with-keyring.sh keel keys set NAME
set -euo pipefail
if [ -z "${KEEL_KEYRING_SESSION:-}" ]; then
  exec env KEEL_KEYRING_SESSION=1 dbus-run-session -- "$0" "$@"
fi
keyrings="$(mktemp -d)"
# --unlock reads the new keyring's password from stdin; the daemon registers the Secret Service on this bus.
printf 'keel-test-keyring' | XDG_DATA_HOME="$keyrings" gnome-keyring-daemon --unlock --components=secrets > /dev/null
status=0
"$@" || status=$?
rm -rf "$keyrings"
exit "$status"
