#!/usr/bin/env bash
# Install Debian's pgbouncer for tests/test_pgbouncer.py, only when it is missing.
# Run as root (make test calls it; in a container that is usually the case), or with sudo
# available. PGBOUNCER overrides the path checked (default /usr/sbin/pgbouncer).
set -euo pipefail

PGBOUNCER="${PGBOUNCER:-/usr/sbin/pgbouncer}"
if [ -x "$PGBOUNCER" ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-pgbouncer: $PGBOUNCER is missing and this user cannot install packages;" >&2
  echo "install-pgbouncer: run 'apt-get install -y pgbouncer' as root." >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-pgbouncer: $PGBOUNCER is missing and there is no apt-get here; install PgBouncer and set PGBOUNCER." >&2
  exit 1
fi

echo "install-pgbouncer: installing the pgbouncer package"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
# The package's own service stays off: the tests start their own pgbouncer on a free port.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends pgbouncer
"$PGBOUNCER" --version
