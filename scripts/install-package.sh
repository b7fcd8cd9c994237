#!/usr/bin/env bash
# Install a Debian package for the tests, only when the program it brings is missing:
#   scripts/install-package.sh PACKAGE PROGRAM
# (make's `chromium` and `pgbouncer` targets: /usr/bin/chromium for the browser tests,
# /usr/sbin/pgbouncer for tests/test_pgbouncer.py). Run as root (make test calls it; in a
# container that is usually the case), or with sudo available.
set -euo pipefail

PACKAGE="$1"
PROGRAM="$2"
if [ -x "$PROGRAM" ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-package: $PROGRAM is missing and this user cannot install packages;" >&2
  echo "install-package: run 'apt-get install -y $PACKAGE' as root." >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-package: $PROGRAM is missing and there is no apt-get here; install $PACKAGE." >&2
  exit 1
fi

echo "install-package: installing the $PACKAGE package"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
# A package's own service (pgbouncer's) stays off: the tests start their own on a free port.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$PACKAGE"
"$PROGRAM" --version
