"""The handler API end to end: a real broker, a real workerd subprocess, real Postgres.

One broker and one worker serve the whole module; each test enqueues its own job type and
checks where the job landed in forge.jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from forge import Client
from tests.conftest import drop_database, new_database
from tests.support import REPO, BrokerProcess, WorkerdProcess, start_broker, wait_until, workers
from tests.workerd_support import create_effects_table, effects, job_row


@dataclass
class Stack:
    dsn: str
    broker: BrokerProcess
    client: Client
    worker: WorkerdProcess


@pytest.fixture(scope="module")
def stack(pg_admin_dsn: str, template_dsn: str) -> Iterator[Stack]:
    dsn = new_database(pg_admin_dsn)
    create_effects_table(dsn)
    broker = start_broker(dsn)
    try:
        worker = WorkerdProcess(broker.target, "api-worker", effects_dsn=dsn, concurrency=8,
                                lease_seconds=5)
        with workers(worker), Client(broker.target) as client:
            yield Stack(dsn, broker, client, worker)
    finally:
        broker.stop()
        drop_database(pg_admin_dsn, dsn)


def run(stack: Stack, type_: str, payload: dict[str, Any] | None = None,
        max_retries: int | None = None) -> dict[str, Any]:
    """Enqueue a job and return its row once its first attempt is over."""
    job = stack.client.enqueue(type_, payload or {}, max_retries=max_retries)

    def attempted() -> bool:
        row = job_row(stack.dsn, job.id)
        return row["attempts"] >= 1 and row["status"] != "PROCESSING"

    assert wait_until(attempted, timeout=15), (job_row(stack.dsn, job.id), stack.worker.log_text())
    return job_row(stack.dsn, job.id)


def test_sync_handler_runs_in_a_thread_and_its_result_is_stored(stack: Stack) -> None:
    row = run(stack, "echo", {"n": 3, "s": "x", "nested": {"a": [1, 2.5]}})
    assert row["status"] == "COMPLETED" and row["attempts"] == 1
    assert row["worker_id"] == "api-worker"
    assert row["result"] == {"payload": {"n": 3, "s": "x", "nested": {"a": [1, 2.5]}},
                             "attempts": 1, "async": False, "thread": True}


def test_async_handler_result_is_stored(stack: Stack) -> None:
    row = run(stack, "echo_async", {"k": "v"})
    assert row["status"] == "COMPLETED"
    assert row["result"] == {"payload": {"k": "v"}, "attempts": 1, "async": True}


def test_scalar_result_is_wrapped_and_none_stores_no_result(stack: Stack) -> None:
    assert run(stack, "scalar")["result"] == {"value": 42}
    row = run(stack, "nothing")
    assert row["status"] == "COMPLETED" and row["result"] is None


def test_exception_is_a_nack_with_the_error_and_a_trimmed_traceback(stack: Stack) -> None:
    row = run(stack, "boom")
    assert row["status"] == "PENDING" and row["attempts"] == 1
    assert row["last_error"].startswith("ValueError: boom on attempt 1")
    assert "Traceback" in row["last_error"] and "in inner" in row["last_error"]
    assert row["run_in"] > 1.0, "the broker's backoff (5 s base) applies"


def test_a_traceback_names_files_from_their_package_not_the_machine_s_paths(stack: Stack) -> None:
    error = run(stack, "boom", max_retries=0)["last_error"]
    # The handler's frames, and workerd's own, as their packages' paths.
    assert 'File "tests/handlers/jobs.py", line' in error, error
    assert 'File "forge_workerd/runner.py", line' in error, error
    assert str(REPO) not in error and "site-packages" not in error, error


def test_each_failed_attempt_of_a_handler_is_in_the_job_s_errors(stack: Stack) -> None:
    """An exception and a timeout, each a nack from workerd: one entry each, by this worker."""
    for type_, starts in (("boom", "ValueError: boom on attempt 1\nTraceback"),
                          ("times_out", "timed out after 0.5s")):
        row = run(stack, type_, max_retries=0)
        [entry] = stack.client.get(str(row["id"])).errors
        assert (entry.attempt, entry.worker_id) == (1, "api-worker")
        assert entry.error.startswith(starts) and entry.error == row["last_error"]


def test_exception_on_the_last_attempt_sends_the_job_dead(stack: Stack) -> None:
    row = run(stack, "boom", max_retries=0)
    assert row["status"] == "DEAD" and row["attempts"] == 1


def test_retry_after_schedules_the_next_attempt(stack: Stack) -> None:
    row = run(stack, "retry_later", {"after": 60})
    assert row["status"] == "PENDING" and row["attempts"] == 1
    assert 55 < row["run_in"] <= 60
    assert "not yet" in row["last_error"]


def test_fail_goes_straight_to_the_dead_letter_queue(stack: Stack) -> None:
    row = run(stack, "fail_hard", {"why": "no such user"}, max_retries=5)
    assert row["status"] == "DEAD" and row["attempts"] == 1
    assert row["last_error"] == "bad input: no such user"


def test_async_handler_timeout_cancels_it_and_nacks_as_timed_out(stack: Stack) -> None:
    row = run(stack, "times_out")
    assert row["status"] == "PENDING" and row["attempts"] == 1
    assert row["last_error"] == "timed out after 0.5s"
    assert wait_until(lambda: [e["phase"] for e in effects(stack.dsn, str(row["id"]))] == ["unwound"])


def test_sync_handler_timeout_sets_its_cancellation_signal(stack: Stack) -> None:
    row = run(stack, "times_out_sync")
    assert row["status"] == "PENDING" and row["last_error"] == "timed out after 0.5s"
    assert wait_until(lambda: [e["phase"] for e in effects(stack.dsn, str(row["id"]))]
                      == ["cancelled: timed out"])


def test_payload_timeout_overrides_the_handler_timeout(stack: Stack) -> None:
    row = run(stack, "payload_timeout", {"_timeout": 0.3, "seconds": 5})
    assert row["status"] == "PENDING" and row["last_error"] == "timed out after 0.3s"
    assert run(stack, "payload_timeout", {"seconds": 0.1})["status"] == "COMPLETED"
