"""The chaos run's job handler (``workerd --handlers chaos.handlers``).

Every execution writes one side-effect row to ``chaos_effects`` in the queue's own database
(DSN in ``CHAOS_EFFECTS_DSN``): the job, the attempt, which worker process ran it, and when the
execution started and finished. The checks count these rows: a job with none was lost, a job
with two was run twice. The write survives PostgreSQL going away: it is retried until the
server is back, and keyed by an execution id so a retry after an ambiguous commit cannot count
one execution twice.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from forge_workerd import Fail, JobContext, handler

JOB_TYPE = "chaos"
LIMITED_TYPE = "chaos.limited"
"""A share of the jobs has this type, whose queue has a concurrency limit of LIMIT."""
LIMIT = 3
TYPES = (JOB_TYPE, LIMITED_TYPE)
WAKE_TYPE = "chaos.wake"
"""The one job enqueued to idle workers after the drain, to time the wake-up (not counted)."""
FAIL_MESSAGE = "chaos: this job fails by its own choice"
FLAKY_MESSAGE = "chaos: a flaky job's first attempt fails; it is retried"
WRITE_PATIENCE = 120.0
"""Seconds a handler keeps retrying its write while the database is away, then fails."""

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS chaos_effects (
    exec_id     uuid PRIMARY KEY,
    job_id      uuid NOT NULL,
    attempt     int NOT NULL,
    worker_id   text NOT NULL,
    pid         int NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS chaos_effects_job ON chaos_effects (job_id);
"""

_local = threading.local()


def _connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed or conn.broken:
        conn = psycopg.connect(os.environ["CHAOS_EFFECTS_DSN"], autocommit=True, connect_timeout=2)
        _local.conn = conn
    return conn


def record(job: JobContext, exec_id: uuid.UUID, started: datetime) -> None:
    """Insert this execution's row, retrying through a database outage."""
    give_up = time.monotonic() + WRITE_PATIENCE
    while True:
        try:
            _connection().execute(
                "INSERT INTO chaos_effects (exec_id, job_id, attempt, worker_id, pid, started_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (exec_id) DO NOTHING",
                (exec_id, job.id, job.attempts, job.worker_id, os.getpid(), started))
            return
        except psycopg.OperationalError:
            if time.monotonic() > give_up:
                raise
            _local.conn = None
            time.sleep(0.2)


@handler(WAKE_TYPE)
@handler(LIMITED_TYPE)
@handler(JOB_TYPE)
def chaos_job(job: JobContext) -> dict[str, Any]:
    """Works ``ms`` milliseconds, records its side effect, then succeeds (or, with ``fail``,
    fails permanently: the only way a chaos job may end DEAD). With ``flaky``, its first
    attempt fails at once, to be retried."""
    if job.payload.get("flaky") and job.attempts == 1:
        raise RuntimeError(FLAKY_MESSAGE)  # before any side effect: this attempt did nothing
    started = datetime.now(UTC)
    ms = float(job.payload.get("ms", 0))
    if ms > 0:
        time.sleep(ms / 1000)
    record(job, uuid.uuid4(), started)
    if job.payload.get("fail"):
        raise Fail(FAIL_MESSAGE)
    return {"n": job.payload.get("n")}
