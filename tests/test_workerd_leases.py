"""Heartbeats keep a long job's lease alive; a lease the broker takes back stops its handler."""

from __future__ import annotations

import pytest

from forge import Client
from tests.support import BrokerProcess, WorkerdProcess, wait_until, workers
from tests.workerd_support import create_effects_table, effects, job_row

pytestmark = pytest.mark.slow

LEASE_SECONDS = 2


def test_a_job_running_three_times_its_lease_completes_once_kept_alive_by_heartbeats(
        dsn: str, broker: BrokerProcess) -> None:
    create_effects_table(dsn)
    worker = WorkerdProcess(broker.target, "steady", effects_dsn=dsn, lease_seconds=LEASE_SECONDS)
    with workers(worker), Client(broker.target) as client:
        job = client.enqueue("long", {"seconds": 3 * LEASE_SECONDS}, max_retries=3)
        assert wait_until(lambda: job_row(dsn, job.id)["status"] == "COMPLETED", timeout=20)
        row = job_row(dsn, job.id)
        assert row["attempts"] == 1 and row["last_error"] is None
        assert [(e["worker"], e["phase"]) for e in effects(dsn, job.id)] == [
            ("steady", "start"), ("steady", "done")]
        assert "lease lost" not in worker.log_text()


def test_a_cancelled_job_loses_its_lease_its_handler_is_signalled_and_its_result_dropped(
        dsn: str, broker: BrokerProcess) -> None:
    create_effects_table(dsn)
    worker = WorkerdProcess(broker.target, "loser", effects_dsn=dsn, lease_seconds=LEASE_SECONDS)
    with workers(worker), Client(broker.target) as client:
        job = client.enqueue("long", {"seconds": 30})
        assert wait_until(lambda: len(effects(dsn, job.id)) == 1, timeout=10)
        client.cancel(job.id, reason="operator said so")
        # The next heartbeat (every lease_seconds/3) reports the lease lost.
        assert wait_until(lambda: [e["phase"] for e in effects(dsn, job.id)] == ["start", "cancelled"],
                          timeout=5), effects(dsn, job.id)
        worker.wait_log("dropping its nack")
        row = job_row(dsn, job.id)
        assert row["status"] == "CANCELLED" and row["last_error"] == "cancelled: operator said so"


def test_prefetched_jobs_are_leased_ahead_but_run_no_more_than_concurrency_at_once(
        dsn: str, broker: BrokerProcess) -> None:
    create_effects_table(dsn)
    worker = WorkerdProcess(broker.target, "ahead", effects_dsn=dsn, concurrency=1,
                            extra=("--prefetch", "2"))
    with workers(worker), Client(broker.target) as client:
        jobs = [client.enqueue("slow", {"seconds": 1}) for _ in range(4)]
        # Three are leased at once (1 running + 2 prefetched); the fourth waits for a slot.
        assert wait_until(lambda: sum(job_row(dsn, j.id)["status"] == "PROCESSING"
                                      for j in jobs) == 3, timeout=10)
        assert wait_until(lambda: all(job_row(dsn, j.id)["status"] == "COMPLETED" for j in jobs),
                          timeout=20)
        runs = sorted((e["at"], e["phase"]) for j in jobs for e in effects(dsn, j.id))
        running = peak = 0
        for _, phase in runs:
            running += 1 if phase == "start" else -1
            peak = max(peak, running)
        assert peak == 1 and len(runs) == 8


def test_an_ack_the_broker_refuses_is_dropped_alone_and_the_others_complete(
        dsn: str, broker: BrokerProcess) -> None:
    # A lease of 30 s heartbeats every 10 s: the cancelled job's ack goes out before workerd
    # hears the lease is gone, and the broker refuses it alone (answering only that one).
    create_effects_table(dsn)
    worker = WorkerdProcess(broker.target, "refused", effects_dsn=dsn, concurrency=3,
                            lease_seconds=30)
    with workers(worker), Client(broker.target) as client:
        jobs = [client.enqueue("slow", {"seconds": 1.5}) for _ in range(3)]
        assert wait_until(lambda: all(effects(dsn, j.id) for j in jobs), timeout=10)
        client.cancel(jobs[1].id, reason="operator")
        assert wait_until(lambda: all(job_row(dsn, j.id)["status"] == "COMPLETED"
                                      for j in (jobs[0], jobs[2])), timeout=10)
        worker.wait_log(f"job {jobs[1].id}: ack refused, the lease is no longer held")
        assert job_row(dsn, jobs[1].id)["status"] == "CANCELLED"
        assert "failed: code" not in worker.log_text()
