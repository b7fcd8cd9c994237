"""Graceful shutdown: SIGTERM stops leasing, lets running jobs finish within --grace, hands
back what is still running after it (to retry at once), and exits 0."""

from __future__ import annotations

import time

import pytest

from forge import Client
from tests.support import BrokerProcess, WorkerdProcess, wait_until, workers
from tests.workerd_support import create_effects_table, effects, job_row

pytestmark = pytest.mark.slow


def test_sigterm_during_work_lets_in_flight_jobs_finish_takes_nothing_new_and_exits_0(
        dsn: str, broker: BrokerProcess) -> None:
    create_effects_table(dsn)
    worker = WorkerdProcess(broker.target, "drainer", effects_dsn=dsn, concurrency=2, grace=10)
    with workers(worker), Client(broker.target) as client:
        jobs = [client.enqueue("slow", {"seconds": 1.5}) for _ in range(6)]
        assert wait_until(lambda: len(effects(dsn)) == 2, timeout=10)
        started = {e["job_id"] for e in effects(dsn)}
        signalled = time.monotonic()
        worker.terminate()
        assert worker.wait(timeout=15) == 0
        took = time.monotonic() - signalled
        assert took < 5, f"drain took {took:.1f}s for jobs of 1.5 s"

        for job in jobs:
            row = job_row(dsn, job.id)
            if job.id in started:
                assert row["status"] == "COMPLETED" and row["worker_id"] == "drainer", row
                assert [e["phase"] for e in effects(dsn, job.id)] == ["start", "done"]
            else:
                assert row["status"] == "PENDING" and row["attempts"] == 0, row
                assert effects(dsn, job.id) == []
        log = worker.log_text()
        assert "SIGTERM: stopping" in log and "drained; exiting" in log


def test_grace_shorter_than_the_job_nacks_it_to_retry_at_once(dsn: str, broker: BrokerProcess) -> None:
    create_effects_table(dsn)
    # First attempts block a thread for 30 s, ignoring every signal (a sync handler, and an
    # async one through asyncio.to_thread): the worker must still exit once the grace is over.
    stuck = WorkerdProcess(broker.target, "impatient", effects_dsn=dsn, concurrency=2, grace=0.5)
    with workers(stuck), Client(broker.target) as client:
        jobs = [client.enqueue("stubborn", {"seconds": 30}),
                client.enqueue("stubborn_async", {"seconds": 30})]
        assert wait_until(lambda: all(len(effects(dsn, j.id)) == 1 for j in jobs), timeout=10)
        signalled = time.monotonic()
        stuck.terminate()
        assert stuck.wait(timeout=10) == 0
        assert time.monotonic() - signalled < 4

        for job in jobs:
            row = job_row(dsn, job.id)
            assert row["status"] == "PENDING" and row["attempts"] == 1
            assert row["last_error"] == "interrupted: worker impatient shut down after a grace of 0.5s"
            assert row["run_in"] <= 0, "retried at once, not after a backoff"

        with workers(WorkerdProcess(broker.target, "next", effects_dsn=dsn)):
            assert wait_until(lambda: all(job_row(dsn, j.id)["status"] == "COMPLETED" for j in jobs),
                              timeout=10)
        for job in jobs:
            row = job_row(dsn, job.id)
            assert row["attempts"] == 2 and row["worker_id"] == "next"


def test_jobs_delivered_but_not_started_are_handed_back_at_once(dsn: str, broker: BrokerProcess) -> None:
    create_effects_table(dsn)
    worker = WorkerdProcess(broker.target, "busy", effects_dsn=dsn, concurrency=1, lease_seconds=5,
                            grace=0.5, extra=("--log-level", "DEBUG"))
    with workers(worker), Client(broker.target) as client:
        running = client.enqueue("long", {"seconds": 30})
        assert wait_until(lambda: len(effects(dsn, running.id)) == 1, timeout=10)
        # A new stream after a broker restart has room for one more job while the first runs:
        # it is delivered, and waits in the worker for a free slot.
        broker.restart()
        worker.wait_log("reconnected to broker")
        waiting = client.enqueue("effect", {"n": 1})
        worker.wait_log(f"job {waiting.id} (effect) leased")

        worker.terminate()
        assert worker.wait(timeout=10) == 0

        row = job_row(dsn, waiting.id)
        assert row["status"] == "PENDING" and row["attempts"] == 1, row
        assert row["last_error"] == "not started: worker busy shutting down"
        assert row["run_in"] <= 0
        assert effects(dsn, waiting.id) == []

        row = job_row(dsn, running.id)
        assert row["status"] == "PENDING" and row["run_in"] <= 0, row
        assert row["last_error"].startswith("interrupted: worker busy shut down")
        assert [e["phase"] for e in effects(dsn, running.id)] == ["start", "cancelled"]
