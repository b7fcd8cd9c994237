"""The broker restarts while three workers drain 3,000 jobs: nothing is lost."""

from __future__ import annotations

import time

import psycopg
import pytest

from forge import Client
from forge.client import enqueue_request
from tests.support import BrokerProcess, WorkerdProcess, free_port, start_broker, wait_until, workers
from tests.workerd_support import create_effects_table, effects, status_counts

pytestmark = pytest.mark.slow

JOBS = 3000
# Long enough that acks held back by the restart (about a second) are still accepted after it.
LEASE_SECONDS = 5


def distinct_effects(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(DISTINCT job_id) FROM test_effects").fetchone()
        assert row is not None
        return int(row[0])


def test_broker_restarted_while_three_workers_drain_3000_jobs_all_complete_none_lost(dsn: str) -> None:
    create_effects_table(dsn)
    # A short backoff base: a job stranded by the restart (leased but never delivered) runs
    # again soon after its lease expires instead of 5 s later.
    broker = start_broker(dsn, FORGE_BACKOFF_BASE="0.2")
    fleet = [WorkerdProcess(broker.target, f"drain-{i}", effects_dsn=dsn, concurrency=8,
                            lease_seconds=LEASE_SECONDS) for i in range(3)]
    try:
        with workers(*fleet), Client(broker.target) as client:
            jobs = client.enqueue_batch([enqueue_request("effect", {"n": i}) for i in range(JOBS)])
            assert len(jobs) == JOBS
            assert wait_until(lambda: distinct_effects(dsn) >= JOBS // 4, timeout=30, interval=0.1)
            broker.restart()
            done_at_restart = distinct_effects(dsn)
            assert done_at_restart < JOBS, "the restart came too late to test anything"

            assert wait_until(lambda: status_counts(dsn) == {"COMPLETED": JOBS}, timeout=60,
                              interval=0.2), \
                status_counts(dsn)
            assert distinct_effects(dsn) == JOBS
            with psycopg.connect(dsn) as conn:
                missing = conn.execute(
                    "SELECT count(*) FROM forge.jobs j WHERE NOT EXISTS "
                    "(SELECT 1 FROM test_effects e WHERE e.job_id = j.id::text)").fetchone()
            assert missing == (0,)
            for w in fleet:
                log = w.log_text()
                # Each state change logged once, however many calls failed meanwhile.
                assert log.count("disconnected from broker") == 1, log
                assert log.count("reconnected to broker") == 1, log
    finally:
        broker.stop()


def test_a_worker_started_before_its_broker_connects_once_the_broker_serves(dsn: str) -> None:
    create_effects_table(dsn)
    broker = BrokerProcess(dsn, free_port())
    worker = WorkerdProcess(broker.target, "early", effects_dsn=dsn)
    worker.start(wait=False)
    try:
        worker.wait_log("unreachable")
        time.sleep(1.5)  # a few failed attempts, backing off
        broker.start()
        worker.wait_log("reconnected to broker")
        with Client(broker.target) as client:
            job = client.enqueue("effect", {"n": 1})
            assert wait_until(lambda: status_counts(dsn) == {"COMPLETED": 1}, timeout=10)
        assert len(effects(dsn, job.id)) == 1
        log = worker.log_text()
        assert log.count("unreachable") == 1, log
    finally:
        worker.stop()
        broker.stop()
