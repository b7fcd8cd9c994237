"""The chaos run's subprocesses: brokers and workers, each a real ``python -m`` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from forge.client import wait_ready

REPO = Path(__file__).resolve().parents[2]


class Service:
    """One ``python -m MODULE`` subprocess, its output appended to ``log``."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def spawn(self, module: str, args: list[str], env: dict[str, str]) -> None:
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args],
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                                     cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL if it will not go."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Broker(Service):
    def __init__(self, index: int, dsn: str, port: int, log_dir: Path, env: dict[str, str]) -> None:
        super().__init__(f"broker-{index}", log_dir)
        self.dsn = dsn
        self.port = port
        self.env = env

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Broker:
        self.spawn("forge_broker", [], {**self.env, "DATABASE_URL": self.dsn, "GRPC_PORT": str(self.port),
                                  "FORGE_HOST": "127.0.0.1", "FORGE_BROKER_ID": self.name})
        if not wait_ready(self.target, timeout):
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
        return self


class Worker(Service):
    """A workerd process; ``worker_id`` is unique per process so side effects name their runner."""

    def __init__(self, worker_id: str, broker: Broker, log_dir: Path, *, effects_dsn: str,
                 concurrency: int, lease_seconds: int) -> None:
        super().__init__(worker_id, log_dir)
        self.worker_id = worker_id
        self.broker = broker
        self.args = ["--broker", broker.target, "--worker-id", worker_id,
                     "--handlers", "tests.chaos.handlers", "--concurrency", str(concurrency),
                     "--lease-seconds", str(lease_seconds), "--grace", "10"]
        self.env = {"CHAOS_EFFECTS_DSN": effects_dsn}

    def start(self) -> Worker:
        self.spawn("forge_workerd", self.args, self.env)
        return self

    def wait_connected(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if "connected to broker" in self.log.read_text(errors="replace"):
                    return True
            except OSError:
                pass
            if not self.alive:
                return False
            time.sleep(0.05)
        return False
