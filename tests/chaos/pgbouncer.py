"""A PgBouncer of the chaos run's own in front of its PostgreSQL cluster, in transaction mode.

Debian's ``pgbouncer`` (``make pgbouncer`` installs it). Its config lives in a folder of the
cluster's; like the server, it runs as the cluster's unprivileged user when we are root
(PgBouncer refuses to run as root). Clients authenticate with ``trust`` on loopback.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.chaos.postgres import PgCluster
from tests.support import free_port

BINARY = Path(os.environ.get("PGBOUNCER", "/usr/sbin/pgbouncer"))
POOL_SIZE = 8
"""Server connections per database and user: fewer than the brokers' pools hold together, so
transactions of different clients really share server sessions."""


class PgBouncer:
    def __init__(self, cluster: PgCluster, pool_size: int = POOL_SIZE) -> None:
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: run `make pgbouncer` (Debian's package)")
        self.cluster = cluster
        self.root = cluster.root / "pgbouncer"
        self.port = free_port()
        self.log = self.root / "pgbouncer.log"
        self.pool_size = pool_size
        self.proc: subprocess.Popen[bytes] | None = None

    def dsn(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}?connect_timeout=3"

    def start(self) -> PgBouncer:
        self.root.mkdir(exist_ok=True)
        (self.root / "userlist.txt").write_text('"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.cluster.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            # After a failed server login PgBouncer waits this long before the next (default
            # 15 s): with PostgreSQL back from a restart, every transaction would wait that out.
            "server_login_retry = 1\n"
            f"logfile = {self.log}\n"
            "admin_users = postgres\n")
        user = self.cluster.run_as
        if user is not None:
            for path in (self.root, *self.root.iterdir()):
                shutil.chown(path, user.pw_uid, user.pw_gid)
        self.proc = subprocess.Popen(
            self.cluster.as_run_as([str(BINARY), str(self.root / "pgbouncer.ini")]),
            cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not start; its log:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
