"""Attempt history: Job.errors (one AttemptError per failed attempt) and each attempt's start
and end (Job.leased_at, Job.finished_at), against a real broker and PostgreSQL. Workers here are
gRPC callers with names of their own, so each attempt's worker is known."""

from __future__ import annotations

import time

import pytest
from google.protobuf.duration_pb2 import Duration

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.support import lease_one, wait_until

Stub = broker_pb2_grpc.BrokerStub


def nack(stub: Stub, leased: pb.LeasedJob, error: str) -> pb.NackResponse:
    # retry_after 0: runnable again at once, not after the backoff.
    return stub.Nack(pb.NackRequest(job_id=leased.job.id, lease_token=leased.lease_token,
                                    error=error, retry_after=Duration()), timeout=10)


def get(stub: Stub, job_id: str) -> pb.Job:
    return stub.GetJob(pb.GetJobRequest(id=job_id), timeout=10)


def test_three_failed_attempts_then_success_leave_three_errors_oldest_first(stub: Stub) -> None:
    job = stub.Enqueue(pb.EnqueueRequest(type="flaky", max_retries=5), timeout=10).job
    assert not get(stub, job.id).errors and not get(stub, job.id).HasField("leased_at")
    for n in (1, 2, 3):
        leased = lease_one(stub, "flaky", worker=f"worker-{n}")
        running = get(stub, job.id)
        # While an attempt runs it has a start and no end.
        assert running.HasField("leased_at") and not running.HasField("finished_at")
        nack(stub, leased, f"failure number {n}")
    done = lease_one(stub, "flaky", worker="worker-4")
    stub.Ack(pb.AckRequest(job_id=job.id, lease_token=done.lease_token), timeout=10)

    final = get(stub, job.id)
    assert final.status == pb.Job.COMPLETED and final.attempts == 4
    assert [(e.attempt, e.worker_id, e.error) for e in final.errors] == [
        (1, "worker-1", "failure number 1"),
        (2, "worker-2", "failure number 2"),
        (3, "worker-3", "failure number 3")]
    assert final.last_error == "failure number 3"
    ats = [e.at.ToDatetime() for e in final.errors]
    assert ats == sorted(ats)
    for e in final.errors:
        assert e.started_at.ToDatetime() <= e.at.ToDatetime()
    # The last attempt: leased after the third failure, finished by the ack.
    assert ats[-1] <= final.leased_at.ToDatetime() <= final.finished_at.ToDatetime()


def test_an_expired_lease_records_one_error_naming_its_worker(stub: Stub) -> None:
    job = stub.Enqueue(pb.EnqueueRequest(type="abandoned"), timeout=10).job
    lease_one(stub, "abandoned", worker="vanished", lease_seconds=1)
    # The rescuer (every 0.25 s in tests) finds the lease expired: a failed attempt.
    assert wait_until(lambda: get(stub, job.id).status == pb.Job.PENDING, timeout=15)
    rescued = get(stub, job.id)
    assert [(e.attempt, e.worker_id) for e in rescued.errors] == [(1, "vanished")]
    assert rescued.errors[0].error.startswith("lease expired: worker vanished")
    assert rescued.finished_at.ToDatetime() >= rescued.leased_at.ToDatetime()


def test_each_error_is_capped_at_4_kib_and_history_survives_a_retry_from_the_dlq(
        stub: Stub) -> None:
    job = stub.Enqueue(pb.EnqueueRequest(type="verbose", max_retries=0), timeout=10).job
    leased = lease_one(stub, "verbose", worker="talker")
    assert nack(stub, leased, "x" * 10_000).status == pb.Job.DEAD
    dead = get(stub, job.id)
    [entry] = dead.errors
    assert len(entry.error) == 4096 and entry.error.endswith("... (truncated)")
    assert dead.last_error == entry.error
    stub.RetryDeadJob(pb.RetryDeadJobRequest(id=job.id), timeout=10)
    retried = lease_one(stub, "verbose", worker="second")
    # Attempts restart from 0 after a retry from the DLQ; the history does not.
    nack(stub, retried, "again")
    assert [(e.attempt, e.worker_id) for e in get(stub, job.id).errors] == [
        (1, "talker"), (1, "second")]


def test_a_cancel_ends_the_running_attempt(stub: Stub) -> None:
    job = stub.Enqueue(pb.EnqueueRequest(type="stopped"), timeout=10).job
    lease_one(stub, "stopped", worker="runner")
    before = time.time()
    cancelled = stub.CancelJob(pb.CancelJobRequest(id=job.id), timeout=10)
    assert cancelled.HasField("finished_at")
    assert cancelled.finished_at.ToSeconds() == pytest.approx(before, abs=5)
    assert not cancelled.errors  # a cancel is not a failed attempt

