"""workerd sends its outcomes in Settle calls that fit the broker's message limit, however big
the results of the jobs that finish together."""

from __future__ import annotations

import psycopg

from forge import Client
from forge.client import enqueue_request
from tests.support import WorkerdProcess, start_broker, wait_until, workers
from tests.workerd_support import create_effects_table, status_counts

JOBS = 16
RESULT_BYTES = 700_000  # each under the 1 MiB result limit; together far over the message limit
BROKER_LIMIT = 4 * 1024 * 1024


def test_results_that_finish_together_are_all_recorded_under_the_brokers_message_limit(
        dsn: str) -> None:
    create_effects_table(dsn)
    broker = start_broker(dsn, FORGE_MAX_MESSAGE_BYTES=str(BROKER_LIMIT))
    try:
        worker = WorkerdProcess(broker.target, "big-results", effects_dsn=dsn,
                                concurrency=JOBS, lease_seconds=30)
        with workers(worker), Client(broker.target) as client:
            client.enqueue_batch([enqueue_request("big_result", {"bytes": RESULT_BYTES, "i": i})
                                  for i in range(JOBS)])

            def completed() -> list[tuple[int, int]]:
                with psycopg.connect(dsn) as conn:
                    return conn.execute(
                        "SELECT attempts, length(result->>'blob') FROM forge.jobs "
                        "WHERE type = 'big_result' AND status = 'COMPLETED'").fetchall()

            assert wait_until(lambda: len(completed()) == JOBS, timeout=20), (
                status_counts(dsn), worker.log_tail())
            assert set(completed()) == {(1, RESULT_BYTES)}
            assert "refused as a whole" not in worker.log_text()
    finally:
        broker.stop()

