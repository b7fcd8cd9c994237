"""The invariants a chaos run must keep, checked against the database once the queue drained.

- **Nothing lost**: every job COMPLETED, or DEAD only because its handler chose to fail it;
  every job has at least one side-effect row.
- **Duplicates only from kills**: a job may have run more than once only if each extra run was
  by a worker that was SIGKILLed after the run started and before it could acknowledge it.
- **Never held twice at once**: two executions of one job overlap in time only if the earlier
  one's worker was killed.
- **The limit held**: the limited type never had more than its concurrency limit PROCESSING,
  neither in the driver's samples nor in the attempts recorded on its jobs (each COMPLETED
  job's last attempt, from leased_at to its ack).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.chaos.handlers import FAIL_MESSAGE, LIMIT, LIMITED_TYPE, TYPES

EXAMPLES = 5


@dataclass
class Findings:
    jobs: int = 0
    completed: int = 0
    dead_by_choice: int = 0
    executions: int = 0
    duplicates: int = 0
    duplicates_explained: int = 0
    lost: int = 0
    missing_effects: int = 0
    overlaps: int = 0
    limited_running_max: int = 0
    """The most jobs of the limited type PROCESSING at once: sampled, or recorded on its jobs."""
    violations: list[str] = field(default_factory=list)


def check(dsn: str, *, killed: dict[str, datetime], expected_jobs: int, fail_every: int,
          limited_sampled_max: int) -> Findings:
    """``killed`` maps each SIGKILLed worker id to when it was killed; ``limited_sampled_max`` is
    the most jobs of the limited type the driver saw PROCESSING at once."""
    f = Findings()
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT status, (payload->>'fail')::boolean IS TRUE AS fail,"
                    " last_error = %s AS own_error, count(*) AS n"
                    " FROM forge.jobs WHERE type = ANY(%s) GROUP BY 1, 2, 3",
                    (FAIL_MESSAGE, list(TYPES)))
        for row in cur.fetchall():
            n = int(row["n"])
            f.jobs += n
            if row["status"] == "COMPLETED" and not row["fail"]:
                f.completed += n
            elif row["status"] == "DEAD" and row["fail"] and row["own_error"]:
                f.dead_by_choice += n
            else:
                f.lost += n
        if f.jobs != expected_jobs:
            f.violations.append(f"{f.jobs} jobs in the database, {expected_jobs} enqueued")
        if f.lost:
            cur.execute("SELECT id, status, attempts, payload, left(last_error, 200) AS last_error"
                        " FROM forge.jobs WHERE type = ANY(%s) AND NOT ("
                        " (status = 'COMPLETED' AND (payload->>'fail') IS NULL)"
                        " OR (status = 'DEAD' AND (payload->>'fail')::boolean AND last_error = %s))"
                        " LIMIT %s", (list(TYPES), FAIL_MESSAGE, EXAMPLES))
            f.violations.append(f"{f.lost} jobs lost (not COMPLETED, nor DEAD by their handler's "
                                f"choice), e.g. {_rows(cur.fetchall())}")
        expected_dead = expected_jobs // fail_every if fail_every else 0
        if f.dead_by_choice != expected_dead:
            f.violations.append(f"{f.dead_by_choice} jobs DEAD by choice, {expected_dead} expected")

        cur.execute("SELECT count(*) AS n FROM forge.jobs j WHERE type = ANY(%s) AND NOT EXISTS"
                    " (SELECT 1 FROM chaos_effects e WHERE e.job_id = j.id)", (list(TYPES),))
        f.missing_effects = int(_one(cur)["n"])
        if f.missing_effects:
            f.violations.append(f"{f.missing_effects} jobs have no side-effect row: never ran")

        cur.execute("SELECT count(*) AS n FROM chaos_effects")
        f.executions = int(_one(cur)["n"])
        cur.execute("SELECT e.* FROM chaos_effects e WHERE job_id IN"
                    " (SELECT job_id FROM chaos_effects GROUP BY job_id HAVING count(*) > 1)"
                    " ORDER BY job_id, started_at")
        runs: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for row in cur.fetchall():
            runs[row["job_id"]].append(row)
        f.duplicates = len(runs)
        unexplained = []
        for job_id, rows in runs.items():
            if _explained(rows, killed):
                f.duplicates_explained += 1
            else:
                unexplained.append((job_id, rows))
        if unexplained:
            f.violations.append(
                f"{len(unexplained)} jobs ran more than once without a kill to explain it, e.g. "
                + "; ".join(f"{j}: {_runs(rows)}" for j, rows in unexplained[:EXAMPLES]))

        # a started first; b started before a had finished.
        cur.execute("SELECT a.job_id, a.worker_id AS a_worker, a.started_at AS a_start,"
                    " a.finished_at AS a_end, b.worker_id AS b_worker, b.started_at AS b_start,"
                    " b.finished_at AS b_end"
                    " FROM chaos_effects a JOIN chaos_effects b ON a.job_id = b.job_id"
                    " AND a.exec_id <> b.exec_id AND a.started_at <= b.started_at"
                    " AND b.started_at < a.finished_at")
        bad = [r for r in cur.fetchall() if r["a_worker"] not in killed]
        f.overlaps = len(bad)
        if bad:
            f.violations.append(f"{len(bad)} pairs of executions of one job overlapped on live "
                                f"workers, e.g. {_rows(bad)}")

        cur.execute("SELECT leased_at, updated_at FROM forge.jobs"
                    " WHERE type = %s AND status = 'COMPLETED'", (LIMITED_TYPE,))
        recorded = deepest_overlap([(r["leased_at"], r["updated_at"]) for r in cur.fetchall()])
        f.limited_running_max = max(recorded, limited_sampled_max)
        if f.limited_running_max > LIMIT:
            f.violations.append(f"{LIMITED_TYPE} ran {f.limited_running_max} jobs at once "
                                f"(sampled {limited_sampled_max}, recorded {recorded}); its "
                                f"concurrency limit is {LIMIT}")
    return f


def deepest_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    """How many intervals overlap at most at one moment (an end meeting a start is no overlap)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    depth = deepest = 0
    for _, step in events:  # at equal times, ends (-1) sort first
        depth += step
        deepest = max(deepest, depth)
    return deepest


def _explained(rows: list[dict[str, Any]], killed: dict[str, datetime]) -> bool:
    """At most one run by a worker that lived on; every other run by a worker killed while the
    run was under way or not yet acknowledged. (Its row may bear a time just after the kill:
    the server runs an INSERT the process sent just before it died.)"""
    survivors = [r for r in rows if r["worker_id"] not in killed]
    if len(survivors) > 1:
        return False
    return all(r["started_at"] <= killed[r["worker_id"]] for r in rows if r["worker_id"] in killed)


def _one(cur: psycopg.Cursor[dict[str, Any]]) -> dict[str, Any]:
    row = cur.fetchone()
    assert row is not None
    return row


def _rows(rows: list[dict[str, Any]]) -> str:
    return "; ".join(", ".join(f"{k}={v}" for k, v in r.items()) for r in rows[:EXAMPLES])


def _runs(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"attempt {r['attempt']} by {r['worker_id']} {r['started_at']:%H:%M:%S.%f}"
                     f"–{r['finished_at']:%H:%M:%S.%f}" for r in rows)
