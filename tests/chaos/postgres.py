"""A PostgreSQL cluster of the chaos run's own, in a temporary folder, that it can stop and start.

The binaries are the ones bundled with the ``pgserver`` package when it ships them, else the
system's PostgreSQL 15. Run as root, the server runs as an unprivileged user (initdb refuses
root), as ``pgserver`` itself does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support import free_port

SYSTEM_BIN = Path("/usr/lib/postgresql/15/bin")
UNPRIVILEGED_USERS = ("pgserver", "postgres", "nobody")


def bin_dir() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates = [SYSTEM_BIN]
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        candidates.insert(0, Path(POSTGRES_BIN_PATH))
    except ImportError:
        pass
    for candidate in candidates:
        if (candidate / "pg_ctl").exists():
            return candidate
    raise RuntimeError("no PostgreSQL binaries: install pgserver or postgresql-15")


class PgCluster:
    """initdb + pg_ctl on a loopback TCP port; ``dsn(db)`` connects as the superuser ``postgres``."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.bin = bin_dir()
        self.root = Path(root or tempfile.mkdtemp(prefix="forge-chaos-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = port or free_port()
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in UNPRIVILEGED_USERS:
                try:
                    self._user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            else:
                raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
            self.root.chmod(0o755)

    @property
    def run_as(self) -> pwd.struct_passwd | None:
        """The unprivileged user the server runs as when we are root (else None: ourselves)."""
        return self._user

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}?connect_timeout=3"

    def as_run_as(self, argv: list[str]) -> list[str]:
        """``argv`` as a command that runs as ``run_as``: prefixed with ``setpriv`` when we are
        root. Not ``subprocess``'s ``user=``: asked to change user itself, Python forks instead
        of vforking, and a forked child runs gRPC's fork handlers before it execs, which killed
        about one child in 300 to 1,500 with SIGSEGV or SIGABRT after a channel closed."""
        if self._user is None:
            return argv
        return ["setpriv", f"--reuid={self._user.pw_uid}", f"--regid={self._user.pw_gid}",
                "--clear-groups", "--", *argv]

    def run_tool(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        subprocess.run(self.as_run_as([str(self.bin / tool), *args]), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
                       cwd=self.root)

    def init(self) -> PgCluster:
        self.run_tool("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres",
                      "-E", "utf8", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# forge chaos run\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 300\n"
                # Clean stops and crash-restarts of the server alone (not of the machine):
                # the kernel keeps what was written, so skipping fsync loses nothing here.
                "fsync = off\n"
                "full_page_writes = off\n"
                "logging_collector = off\n"
                # What a streaming standby needs of its primary (wal_level and hot_standby as
                # PostgreSQL 15 has them by default, written out; a standby made by ``standby``
                # copies them); initdb's pg_hba.conf already trusts replication from 127.0.0.1.
                "wal_level = replica\n"
                "max_wal_senders = 5\n"
                "hot_standby = on\n"
            )
        return self

    def standby(self, replica: PgCluster) -> PgCluster:
        """Make ``replica`` (new, not initialised) a streaming standby of this running cluster
        (``pg_basebackup -R -X stream``: its ``primary_conninfo`` names this one); not started.
        The fast checkpoint: a spread one would hold the backup for minutes."""
        replica.run_tool("pg_basebackup", "-D", str(replica.data), "-R", "-X", "stream",
                         "-c", "fast", "-d", f"host=127.0.0.1 port={self.port} user=postgres "
                         f"application_name=standby-{replica.port}")
        with (replica.data / "postgresql.conf").open("a") as conf:  # the last setting wins
            conf.write(f"port = {replica.port}\nunix_socket_directories = '{replica.root}'\n")
        return replica

    def promote(self) -> None:
        """End recovery: this standby becomes a primary that accepts writes; returns once it
        does (``pg_promote(wait => true)``)."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_promote(wait => true, wait_seconds => 60)")

    def start(self) -> None:
        self.run_tool("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: every server process killed (a crash)."""
        self.run_tool("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        try:
            self.run_tool("pg_ctl", "-D", str(self.data), "status", timeout=10)
        except subprocess.CalledProcessError:
            return False
        return True

    def destroy(self) -> None:
        if self.data.exists() and self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
