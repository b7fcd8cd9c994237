"""Helpers for the workerd tests: the side-effect table the test handlers write, and the job rows."""

from __future__ import annotations

from typing import Any

import psycopg


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
