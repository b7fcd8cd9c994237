#!/usr/bin/env bash
# Install Debian's chromium for the dashboard's browser tests, only when it is missing.
# Run as root (make test calls it; in a container that is usually the case), or with sudo
# available. CHROMIUM overrides the path checked (default /usr/bin/chromium).
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-chromium: $CHROMIUM is missing and this user cannot install packages;" >&2
  echo "install-chromium: run 'apt-get install -y chromium' as root." >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: $CHROMIUM is missing and there is no apt-get here; install Chromium and set CHROMIUM." >&2
  exit 1
fi

echo "install-chromium: installing the chromium package"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium
"$CHROMIUM" --version
