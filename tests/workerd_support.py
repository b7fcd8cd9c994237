"""Helpers for the workerd tests: real ``python -m forge_workerd`` subprocesses and the side-effect table."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from tests.support import ServiceProcess

HANDLERS = "tests.handlers.jobs"


class WorkerdProcess(ServiceProcess):
    """A real workerd subprocess running the test handlers against ``target``."""

    def __init__(self, target: str, worker_id: str, *, effects_dsn: str, concurrency: int = 4,
                 lease_seconds: int = 2, grace: float = 10.0, handlers: str = HANDLERS,
                 extra: tuple[str, ...] = ()) -> None:
        super().__init__(f"workerd-{worker_id}")
        self.worker_id = worker_id
        self.args = ["--broker", target, "--worker-id", worker_id, "--handlers", handlers,
                     "--concurrency", str(concurrency), "--lease-seconds", str(lease_seconds),
                     "--grace", str(grace), *extra]
        self.env = {"TEST_EFFECTS_DSN": effects_dsn}

    def start(self, wait: bool = True) -> WorkerdProcess:
        self.spawn("forge_workerd", self.args, self.env)
        if wait:
            self.wait_log("connected to broker")
        return self

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        """Wait until ``text`` appears in the log; fail with the log otherwise."""
        ok = wait_until(lambda: text in self.log_text() or not self.alive, timeout)
        assert ok and text in self.log_text(), f"{text!r} not logged by {self.worker_id}:\n{self.log_text()}"

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


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


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def create_effects_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS test_effects (job_id text NOT NULL, worker text NOT NULL,"
                     " phase text NOT NULL, attempt int NOT NULL,"
                     " at timestamptz NOT NULL DEFAULT clock_timestamp())")


def effects(dsn: str, job_id: str | None = None) -> list[dict[str, Any]]:
    """Rows of test_effects in insertion time order (optionally for one job)."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM test_effects WHERE %(id)s::text IS NULL OR job_id = %(id)s "
                    "ORDER BY at", {"id": job_id})
        return cur.fetchall()


def job_row(dsn: str, job_id: str) -> dict[str, Any]:
    """The job's row in forge.jobs, plus ``run_in``: seconds from now until its run_at."""
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT *, extract(epoch FROM run_at - now())::float8 AS run_in "
                    "FROM forge.jobs WHERE id = %s", (job_id,))
        row = cur.fetchone()
        assert row is not None, job_id
        return row


def status_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT status, count(*) FROM forge.jobs GROUP BY status").fetchall()
        return {status: n for status, n in rows}
