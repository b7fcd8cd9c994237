"""The chaos run's subprocesses: brokers and workers, the test harness's own process classes with
their logs in the run's log folder (appended to across restarts)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from tests.support import BrokerProcess, WorkerdProcess


class Broker(BrokerProcess):
    """Broker number ``index``; its name is its broker id and the name of its log."""

    def __init__(self, index: int, dsn: str, port: int, log_dir: Path, env: dict[str, str]) -> None:
        name = f"broker-{index}"
        super().__init__(dsn, port, name=name, log=log_dir / f"{name}.log")
        self.env.update(env, FORGE_BROKER_ID=name)


class Worker(WorkerdProcess):
    """A workerd process; ``worker_id`` is unique per process so side effects name their runner.
    ``target`` is its broker's, or every broker's (``h1:p1,h2:p2``)."""

    def __init__(self, worker_id: str, target: str, log_dir: Path, *, effects_dsn: str,
                 concurrency: int, lease_seconds: int) -> None:
        super().__init__(target, worker_id, effects_dsn=effects_dsn, concurrency=concurrency,
                         lease_seconds=lease_seconds, handlers="tests.chaos.handlers",
                         log=log_dir / f"{worker_id}.log")
        self.env = {"CHAOS_EFFECTS_DSN": effects_dsn}

    def start(self, wait: bool = False) -> Self:
        """Spawn without waiting: the run starts every worker, then waits for them all."""
        return super().start(wait)

    def wait_connected(self, timeout: float = 30.0) -> bool:
        return self.logged("connected to broker", timeout)
