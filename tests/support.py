"""Test helpers that start real things: PostgreSQL databases and broker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from forge.client import wait_ready

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = "forge_test_template"

# Fast timers for tests; each can be overridden per broker.
TEST_BROKER_ENV = {
    "FORGE_RESCUE_INTERVAL": "0.25",
    "FORGE_POLL_INTERVAL": "1",
    "FORGE_STATS_INTERVAL": "0.5",
    # Off unless a test asks: brokers running side by side would all want the default 9464.
    "FORGE_METRICS_PORT": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(target: str, timeout: float = 20.0) -> bool:
    """True once the gRPC health service at ``target`` says SERVING."""
    return wait_ready(target, timeout)


def new_database(pg_admin_dsn: str, template: str | None = TEMPLATE) -> str:
    """Create a fresh database (a copy of the migrated template, or empty) and return its DSN."""
    name = f"forge_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        if template:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        else:
            conn.execute(f"CREATE DATABASE {name}")
    return make_conninfo(pg_admin_dsn, dbname=name)


def drop_database(pg_admin_dsn: str, dsn: str) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class ServiceProcess:
    """A real subprocess of ours (``python -m MODULE``) with its output in a log file."""

    def __init__(self, name: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)

    def spawn(self, module: str, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args],
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                                     cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it will not go; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self._log.name).read_text(errors="replace")
        return ""


class BrokerProcess(ServiceProcess):
    """A real ``python -m forge_broker`` subprocess on a loopback port."""

    def __init__(self, dsn: str, port: int | None = None, **env: str) -> None:
        super().__init__("broker")
        self.dsn = dsn
        self.port = port or free_port()
        self.env = {**TEST_BROKER_ENV, **env}

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> BrokerProcess:
        env = {"FORGE_BROKER_ID": f"test-broker-{self.port}", **self.env,
               "DATABASE_URL": self.dsn, "GRPC_PORT": str(self.port), "FORGE_HOST": "127.0.0.1"}
        self.spawn("forge_broker", [], env)
        if not wait_serving(self.target, timeout):
            self.kill()
            raise RuntimeError(f"broker did not start; its log:\n{self.log_text()}")
        return self

    def restart(self) -> BrokerProcess:
        self.stop()
        return self.start()


def start_broker(dsn: str, port: int | None = None, **env: str) -> BrokerProcess:
    """Start a broker on ``dsn`` and return it once it serves."""
    return BrokerProcess(dsn, port, **env).start()
