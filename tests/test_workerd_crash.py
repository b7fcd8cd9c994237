"""A worker killed with SIGKILL mid-job: its lease expires, the broker rescues the job, and
another worker runs it to completion; nothing else is disturbed."""

from __future__ import annotations

import time
from datetime import datetime

import psycopg
import pytest

from forge import Client
from tests.support import WorkerdProcess, start_broker, wait_until, workers
from tests.workerd_support import create_effects_table, effects, job_row, status_counts

pytestmark = pytest.mark.slow

LEASE_SECONDS = 2


def db_now(dsn: str) -> datetime:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        return row[0]


def test_kill_9_mid_job_the_job_is_leased_again_after_its_lease_expires_and_completes_elsewhere(
        dsn: str) -> None:
    create_effects_table(dsn)
    # A short retry backoff so the rescued job runs again soon after its lease expires.
    broker = start_broker(dsn, FORGE_BACKOFF_BASE="0.1")
    # The doomed worker takes only the victim's type, so exactly one job dies with it.
    doomed = WorkerdProcess(broker.target, "doomed", effects_dsn=dsn, concurrency=2,
                            lease_seconds=LEASE_SECONDS, extra=("--types", "slow"))
    survivor = WorkerdProcess(broker.target, "survivor", effects_dsn=dsn, concurrency=4,
                              lease_seconds=LEASE_SECONDS)
    try:
        with workers(doomed), Client(broker.target) as client:
            victim = client.enqueue("slow", {"seconds": 1.5})
            assert wait_until(lambda: len(effects(dsn, victim.id)) == 1, timeout=10)
            with workers(survivor):
                others = [client.enqueue("effect", {"n": i}) for i in range(20)]
                assert wait_until(lambda: len(effects(dsn)) >= 6, timeout=10)
                doomed.kill9()
                killed_at = time.monotonic()
                killed_db = db_now(dsn)

                assert wait_until(lambda: job_row(dsn, victim.id)["status"] == "COMPLETED", timeout=15), \
                    job_row(dsn, victim.id)
                runs = effects(dsn, victim.id)
                restarted = [e for e in runs if e["phase"] == "start" and e["worker"] == "survivor"]
                assert restarted, runs
                # How long the killed worker's job waited to be picked up again (lease: 2 s).
                pickup = (restarted[0]["at"] - killed_db).total_seconds()
                print(f"\nkilled worker's job started again {pickup:.2f}s after the kill "
                      f"(lease {LEASE_SECONDS}s); completed {time.monotonic() - killed_at:.2f}s after it")
                assert pickup < LEASE_SECONDS + 3

                row = job_row(dsn, victim.id)
                assert row["worker_id"] == "survivor" and row["attempts"] == 2
                assert "lease expired: worker doomed" in row["last_error"]
                assert [(e["worker"], e["phase"]) for e in runs] == [
                    ("doomed", "start"), ("survivor", "start"), ("survivor", "done")]

                assert wait_until(lambda: status_counts(dsn) == {"COMPLETED": 21}, timeout=10), \
                    status_counts(dsn)
                for job in others:
                    other = job_row(dsn, job.id)
                    assert other["attempts"] == 1, other
                    assert len(effects(dsn, job.id)) == 1
    finally:
        broker.stop()
