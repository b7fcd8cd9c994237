"""Real subprocesses of ours (``python -m MODULE``) for the tests, the chaos run and the benchmark:
one process class, and the broker, workerd and gateway built on it."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NoReturn, Self

from forge.client import wait_ready
from forge.security import ChannelSecurity

REPO = Path(__file__).resolve().parents[2]

# Fast timers for tests; each can be overridden per broker.
TEST_BROKER_ENV = {
    "FORGE_RESCUE_INTERVAL": "0.25",
    "FORGE_POLL_INTERVAL": "1",
    "FORGE_STATS_INTERVAL": "0.5",
    # Off unless a test asks: brokers running side by side would all want the default 9464.
    "FORGE_METRICS_PORT": "0",
}

# The handlers of tests/handlers/jobs.py record their side effects for the workerd tests.
HANDLERS = "tests.handlers.jobs"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (its last answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def child_env(env: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment with ``env`` laid over it; a None value unsets that variable."""
    merged = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return {k: v for k, v in merged.items() if v is not None}


def run_module(module: str, *args: str, env: Mapping[str, str | None] | None = None, cwd: Path = REPO,
               timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m MODULE ARGS`` to its end (a command expected to exit), capturing its output."""
    return subprocess.run([sys.executable, "-m", module, *args], env=child_env(env or {}), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


LOG_DIR = Path(tempfile.mkdtemp(prefix="forge-test-logs-"))
"""Where services' logs go by default: one directory per test process, removed when it exits
(a failing test prints what it needs of them first), so runs leave no logs behind."""
atexit.register(shutil.rmtree, LOG_DIR, ignore_errors=True)


class ServiceProcess:
    """A long-running ``python -m MODULE`` subprocess, its output appended to ``log``.

    The log outlives each run, so a restart adds to it and a failure can show all of it;
    ``logged`` looks only at the current run's part."""

    def __init__(self, name: str, *, log: Path | None = None, cwd: Path = REPO) -> None:
        self.name = name
        self.cwd = cwd
        if log is None:
            fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=LOG_DIR)
            os.close(fd)
            log = Path(path)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._run_starts_at = 0

    def spawn(self, module: str, args: Sequence[str], env: Mapping[str, str | None]) -> None:
        self._run_starts_at = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", module, *args], env=child_env(env),
                                         cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM without waiting, for a test that watches what happens next."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
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

    def kill9(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def logged(self, text: str, timeout: float = 20.0) -> bool:
        """Wait until this run's output contains ``text``; False if it does not within ``timeout``
        or the process exits first."""
        def seen() -> bool:
            with contextlib.suppress(OSError):
                return text in self.log.read_bytes()[self._run_starts_at:].decode(errors="replace")
            return False

        return wait_until(lambda: seen() or not self.alive, timeout) and seen()

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        """``logged``, failing the test with the whole log when the text does not come."""
        assert self.logged(text, timeout), f"{text!r} not logged by {self.name}:\n{self.log_text()}"

    def _failed_to_start(self) -> NoReturn:
        self.kill9()
        raise RuntimeError(f"{self.name} did not start; its log:\n{self.log_text()}")


class BrokerProcess(ServiceProcess):
    """A real ``python -m forge_broker`` on a loopback port, ready once its health says SERVING.

    ``dsn`` None leaves DATABASE_URL unset: the embedded PostgreSQL, its data under ``cwd``.
    ``security`` is how readiness is checked when the broker serves TLS."""

    def __init__(self, dsn: str | None, port: int | None = None, *, args: Sequence[str] = (),
                 security: ChannelSecurity | None = None, name: str = "broker", log: Path | None = None,
                 cwd: Path = REPO, **env: str) -> None:
        super().__init__(name, log=log, cwd=cwd)
        self.dsn = dsn
        self.port = port or free_port()
        self.args = list(args)
        self.security = security
        self.env = {**TEST_BROKER_ENV, **env}

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        env = {"FORGE_BROKER_ID": f"test-broker-{self.port}", "FORGE_HOST": "127.0.0.1", **self.env,
               "DATABASE_URL": self.dsn, "GRPC_PORT": str(self.port)}
        self.spawn("forge_broker", self.args, env)
        # Health is asked once the broker says it listens: asked before, the connection is
        # refused and the gRPC channel backs off for about a second before it tries again.
        if not (self.logged(" listening on ", timeout)
                and wait_ready(self.target, timeout, security=self.security)):
            self._failed_to_start()
        return self

    def restart(self) -> Self:
        self.stop()
        return self.start()


def start_broker(dsn: str, port: int | None = None, **env: str) -> BrokerProcess:
    """Start a broker on ``dsn`` and return it once it serves."""
    broker = BrokerProcess(dsn, port)
    broker.env.update(env)
    return broker.start()


class WorkerdProcess(ServiceProcess):
    """A real ``python -m forge_workerd`` running ``handlers`` against ``target``."""

    def __init__(self, target: str, worker_id: str, *, effects_dsn: str, concurrency: int = 4,
                 lease_seconds: int = 2, grace: float = 10.0, handlers: str = HANDLERS,
                 extra: tuple[str, ...] = (), log: Path | None = None) -> None:
        super().__init__(f"workerd-{worker_id}", log=log)
        self.worker_id = worker_id
        self.args = ["--broker", target, "--worker-id", worker_id, "--handlers", handlers,
                     "--concurrency", str(concurrency), "--lease-seconds", str(lease_seconds),
                     "--grace", str(grace), *extra]
        self.env = {"TEST_EFFECTS_DSN": effects_dsn}

    def start(self, wait: bool = True) -> Self:
        """Spawn it; with ``wait``, return once it has connected to its broker."""
        self.spawn("forge_workerd", self.args, self.env)
        if wait:
            self.wait_log("connected to broker")
        return self


@contextlib.contextmanager
def workers(*procs: WorkerdProcess) -> Iterator[tuple[WorkerdProcess, ...]]:
    """Start every worker (in parallel) and stop them all afterwards, printing their logs on failure."""
    try:
        for p in procs:
            p.start(wait=False)
        for p in procs:
            p.wait_log("connected to broker")
        yield procs
    except BaseException:
        for p in procs:
            print(f"----- {p.worker_id} log -----\n{p.log_text()}", file=sys.stderr)
        raise
    finally:
        for p in procs:
            p.stop()


class GatewayProcess(ServiceProcess):
    """A real ``python -m forge_gateway`` (uvicorn) in front of ``broker``, on a loopback port that
    stays the same across restarts."""

    def __init__(self, broker: str, *args: str, **env: str) -> None:
        super().__init__("gateway")
        self.broker = broker
        self.args = list(args)
        self.env = env
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Self:
        args = ["--broker", self.broker, "--port", str(self.port)]
        if "--static-dir" not in self.args:
            args += ["--static-dir", ""]
        self.spawn("forge_gateway", [*args, *self.args], self.env)
        if not self.logged("gateway listening on", timeout):
            self._failed_to_start()
        return self


def start_gateway(broker: str, *args: str, **env: str) -> GatewayProcess:
    """Start a gateway in front of ``broker`` and return it once it accepts connections."""
    return GatewayProcess(broker, *args, **env).start()
