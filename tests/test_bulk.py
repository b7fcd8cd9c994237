"""Bulk operations (RetryDeadJobs, PurgeDeadJobs, CancelJobs) against a real broker and a real
PostgreSQL: over gRPC, over REST through a real gateway, and through the ``forge`` CLI. Large
sets of dead jobs are written with one SQL statement, not through the API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta

import grpc
import httpx
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration

from forge import Client
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.support import BrokerProcess, lease_one, start_broker

Stub = broker_pb2_grpc.BrokerStub


def add_jobs(dsn: str, type_: str, n: int, status: str = "DEAD", age: str = "0") -> None:
    """``n`` jobs of ``type_`` in ``status``, last changed ``age`` ago (an interval), in one
    INSERT: dead ones as a job out of retries is (attempts past max_retries, an error)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO forge.jobs (type, status, attempts, max_retries, last_error, updated_at) "
            "SELECT %s, %s, 4, 3, 'boom', now() - %s::interval FROM generate_series(1, %s)",
            (type_, status, age, n))


def counted(dsn: str) -> dict[tuple[str, str], int]:
    """(type, status) -> how many jobs, counted in the table itself."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT type, status, count(*) FROM forge.jobs GROUP BY 1, 2")
        return {(t, s): n for t, s, n in rows}


def stats_counts(stub: Stub) -> dict[tuple[str, str], int]:
    """(type, status) -> how many jobs, as Stats reports them (pending and scheduled together)."""
    out: dict[tuple[str, str], int] = {}
    for t in stub.Stats(pb.StatsRequest(), timeout=10).types:
        for status, n in (("PENDING", t.pending + t.scheduled), ("PROCESSING", t.processing),
                          ("COMPLETED", t.completed), ("DEAD", t.dead),
                          ("CANCELLED", t.cancelled)):
            if n:
                out[(t.type, status)] = n
    return out


def refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def enqueue(stub: Stub, type_: str, n: int) -> list[pb.Job]:
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(
        jobs=[pb.EnqueueRequest(type=type_) for _ in range(n)]), timeout=10)
    return list(resp.jobs)


# -- RetryDeadJobs ---------------------------------------------------------------------------------

@pytest.fixture
def short_statements(dsn: str) -> Iterator[tuple[BrokerProcess, Stub]]:
    """A broker whose every statement may take 1.5 s at most, and that polls for runnable jobs
    only once a minute (so a lease stream gets a retried job soon only if NOTIFY woke it)."""
    broker = start_broker(dsn, FORGE_STATEMENT_TIMEOUT_MS="1500", FORGE_POLL_INTERVAL="60")
    try:
        with grpc.insecure_channel(broker.target) as channel:
            yield broker, broker_pb2_grpc.BrokerStub(channel)
    finally:
        broker.stop()


@pytest.mark.slow
def test_retry_dead_jobs_sends_100000_dead_jobs_of_a_type_back_in_one_call(
        short_statements: tuple[BrokerProcess, Stub]) -> None:
    """In batches: no statement nears the broker's 1.5 s statement timeout."""
    broker, stub = short_statements
    assert broker.dsn
    add_jobs(broker.dsn, "bulk.many", 100_000)
    add_jobs(broker.dsn, "bulk.other", 5)
    started = time.monotonic()
    resp = stub.RetryDeadJobs(pb.RetryDeadJobsRequest(filter=pb.JobFilter(type="bulk.many")),
                              timeout=300)
    took = time.monotonic() - started
    assert resp.count == 100_000
    counts = counted(broker.dsn)
    assert counts == {("bulk.many", "PENDING"): 100_000, ("bulk.other", "DEAD"): 5}
    with psycopg.connect(broker.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM forge.jobs WHERE type = 'bulk.many' "
                            "AND (attempts <> 0 OR run_at > now())").fetchone() == (0,)
    # The trigger-kept counters followed the batches.
    assert stats_counts(stub) == counts
    # Nothing left to retry: a second call changes none.
    again = stub.RetryDeadJobs(pb.RetryDeadJobsRequest(filter=pb.JobFilter(type="bulk.many")),
                               timeout=60)
    assert again.count == 0
    print(f"retried 100,000 dead jobs in {took:.1f} s")


def test_retry_dead_jobs_by_ids_skips_jobs_that_are_not_dead(stub: Stub,
                                                              broker: BrokerProcess) -> None:
    assert broker.dsn
    add_jobs(broker.dsn, "bulk.ids", 3)
    dead = stub.ListDeadJobs(pb.ListDeadJobsRequest(type="bulk.ids"), timeout=10).jobs
    pending = enqueue(stub, "bulk.ids", 1)[0]
    ids = [dead[0].id, dead[1].id, pending.id, "0190d6a4-0000-7000-8000-000000000000"]
    resp = stub.RetryDeadJobs(pb.RetryDeadJobsRequest(filter=pb.JobFilter(ids=ids)), timeout=10)
    assert resp.count == 2
    assert [j.id for j in stub.ListDeadJobs(pb.ListDeadJobsRequest(type="bulk.ids"),
                                            timeout=10).jobs] == [dead[2].id]


def test_retried_dead_jobs_wake_a_waiting_lease_stream(
        short_statements: tuple[BrokerProcess, Stub]) -> None:
    broker, stub = short_statements
    assert broker.dsn
    add_jobs(broker.dsn, "bulk.wake", 2)
    stream = stub.Lease(pb.LeaseRequest(worker_id="waiting", types=["bulk.wake"],
                                        max_in_flight=10, lease_seconds=60), timeout=20)
    try:
        time.sleep(0.5)  # the stream is open and idle: nothing of its type is runnable
        stub.RetryDeadJobs(pb.RetryDeadJobsRequest(filter=pb.JobFilter(type="bulk.wake")),
                           timeout=10)
        asked = time.monotonic()
        got = 0
        for batch in stream:
            got += len(batch.jobs)
            if got == 2:
                break
        assert time.monotonic() - asked < 5
    finally:
        stream.cancel()


def test_a_bulk_call_passes_over_jobs_another_transaction_holds_instead_of_waiting(
        stub: Stub, broker: BrokerProcess) -> None:
    assert broker.dsn
    add_jobs(broker.dsn, "bulk.held", 5)
    with psycopg.connect(broker.dsn) as holder:
        # A worker's statement (or an operator's) holding one of them, uncommitted.
        holder.execute("SELECT id FROM forge.jobs WHERE type = 'bulk.held' ORDER BY id "
                       "LIMIT 1 FOR UPDATE")
        resp = stub.RetryDeadJobs(pb.RetryDeadJobsRequest(
            filter=pb.JobFilter(type="bulk.held")), timeout=10)
        assert resp.count == 4
        holder.rollback()
    assert counted(broker.dsn) == {("bulk.held", "PENDING"): 4, ("bulk.held", "DEAD"): 1}


# -- PurgeDeadJobs ---------------------------------------------------------------------------------

def test_purge_dead_jobs_older_than_deletes_only_jobs_dead_that_long(
        stub: Stub, broker: BrokerProcess) -> None:
    assert broker.dsn
    add_jobs(broker.dsn, "bulk.purge", 1500, age="8 days")
    add_jobs(broker.dsn, "bulk.purge", 7, age="1 day")
    add_jobs(broker.dsn, "bulk.purge.other", 3, age="30 days")
    add_jobs(broker.dsn, "bulk.purge", 4, status="COMPLETED", age="30 days")
    week = Duration()
    week.FromTimedelta(timedelta(days=7))
    resp = stub.PurgeDeadJobs(pb.PurgeDeadJobsRequest(filter=pb.JobFilter(type="bulk.purge"),
                                                      older_than=week), timeout=60)
    assert resp.count == 1500
    counts = counted(broker.dsn)
    assert counts == {("bulk.purge", "DEAD"): 7, ("bulk.purge", "COMPLETED"): 4,
                      ("bulk.purge.other", "DEAD"): 3}
    assert stats_counts(stub) == counts
    # older_than alone is a filter; all=true empties the dead-letter queue.
    assert stub.PurgeDeadJobs(pb.PurgeDeadJobsRequest(older_than=week), timeout=10).count == 3
    assert stub.PurgeDeadJobs(pb.PurgeDeadJobsRequest(all=True), timeout=10).count == 7
    assert counted(broker.dsn) == {("bulk.purge", "COMPLETED"): 4}


# -- CancelJobs ------------------------------------------------------------------------------------

def test_cancel_jobs_by_type_cancels_pending_running_and_dead_jobs_and_drops_leases(
        stub: Stub, broker: BrokerProcess) -> None:
    assert broker.dsn
    enqueue(stub, "bulk.stop", 3)
    add_jobs(broker.dsn, "bulk.stop", 2)
    add_jobs(broker.dsn, "bulk.stop", 1, status="COMPLETED")
    enqueue(stub, "bulk.keep", 2)
    running = lease_one(stub, "bulk.stop", worker="bulk-test")
    resp = stub.CancelJobs(pb.CancelJobsRequest(filter=pb.JobFilter(type="bulk.stop"),
                                                reason="type retired"), timeout=10)
    assert resp.count == 5
    counts = counted(broker.dsn)
    assert counts == {("bulk.stop", "CANCELLED"): 5, ("bulk.stop", "COMPLETED"): 1,
                      ("bulk.keep", "PENDING"): 2}
    assert stats_counts(stub) == counts
    job = stub.GetJob(pb.GetJobRequest(id=running.job.id), timeout=10)
    assert job.status == pb.Job.CANCELLED and job.last_error == "cancelled: type retired"
    # The worker that held it learns at its next heartbeat, and its ack is refused.
    lease = pb.LeaseRef(job_id=running.job.id, lease_token=running.lease_token)
    err = refusal(lambda: stub.Heartbeat(pb.HeartbeatRequest(leases=[lease]), timeout=10))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    err = refusal(lambda: stub.Ack(pb.AckRequest(job_id=running.job.id,
                                                 lease_token=running.lease_token), timeout=10))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_cancel_jobs_by_ids_cancels_those_jobs_only(stub: Stub, broker: BrokerProcess) -> None:
    jobs = enqueue(stub, "bulk.some", 4)
    resp = stub.CancelJobs(pb.CancelJobsRequest(filter=pb.JobFilter(
        ids=[jobs[0].id, jobs[2].id])), timeout=10)
    assert resp.count == 2
    status = {j.id: stub.GetJob(pb.GetJobRequest(id=j.id), timeout=10).status for j in jobs}
    assert status == {jobs[0].id: pb.Job.CANCELLED, jobs[1].id: pb.Job.PENDING,
                      jobs[2].id: pb.Job.CANCELLED, jobs[3].id: pb.Job.PENDING}
    # Cancelled already: nothing changes the second time.
    assert stub.CancelJobs(pb.CancelJobsRequest(filter=pb.JobFilter(ids=[jobs[0].id])),
                           timeout=10).count == 0


# -- refusals --------------------------------------------------------------------------------------

def test_an_empty_filter_is_refused_for_purge_and_cancel_unless_all_is_set(
        stub: Stub, broker: BrokerProcess) -> None:
    enqueue(stub, "bulk.safe", 2)
    for call in (lambda: stub.PurgeDeadJobs(pb.PurgeDeadJobsRequest(), timeout=10),
                 lambda: stub.CancelJobs(pb.CancelJobsRequest(), timeout=10),
                 lambda: stub.CancelJobs(pb.CancelJobsRequest(reason="x"), timeout=10)):
        err = refusal(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details().startswith("filter: ") and "all" in err.details()
    assert stub.Stats(pb.StatsRequest(), timeout=10).types[0].pending == 2
    assert stub.CancelJobs(pb.CancelJobsRequest(all=True), timeout=10).count == 2


def test_a_malformed_filter_is_refused_naming_the_field(stub: Stub) -> None:
    cases = [
        (pb.RetryDeadJobsRequest(filter=pb.JobFilter(type="no spaces")), "filter.type: "),
        (pb.CancelJobsRequest(filter=pb.JobFilter(ids=["0190d6a4-0000-7000-8000-000000000000",
                                                       "nope"])), "filter.ids[1]: "),
        (pb.PurgeDeadJobsRequest(all=True, older_than=Duration(seconds=-1)), "older_than: "),
        (pb.CancelJobsRequest(filter=pb.JobFilter(ids=["0190d6a4-0000-7000-8000-000000000000"]
                                                  * 10_001)), "filter.ids: "),
    ]
    for request, field in cases:
        method = {pb.RetryDeadJobsRequest: stub.RetryDeadJobs,
                  pb.CancelJobsRequest: stub.CancelJobs,
                  pb.PurgeDeadJobsRequest: stub.PurgeDeadJobs}[type(request)]
        err = refusal(lambda method=method, request=request: method(request, timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        assert err.details().startswith(field), err.details()


# -- REST ------------------------------------------------------------------------------------------

def test_bulk_calls_over_rest(rest: httpx.Client, broker: BrokerProcess) -> None:
    assert broker.dsn
    add_jobs(broker.dsn, "rest.dead", 3)
    add_jobs(broker.dsn, "rest.old", 2, age="10 days")
    r = rest.post("/v1/dlq:retry", json={"filter": {"type": "rest.dead"}})
    assert r.status_code == 200, r.text
    assert r.json() == {"count": "3"}  # int64, a string in proto3 JSON
    r = rest.post("/v1/dlq:purge", json={"olderThan": "604800s"})
    assert r.status_code == 200, r.text
    assert r.json() == {"count": "2"}
    r = rest.post("/v1/jobs:cancel", json={})
    assert r.status_code == 400 and r.json()["message"].startswith("filter: ")
    r = rest.post("/v1/jobs:cancel", json={"filter": {"type": "rest.dead"}, "reason": "no"})
    assert r.status_code == 200, r.text
    assert r.json() == {"count": "3"}
    assert counted(broker.dsn) == {("rest.dead", "CANCELLED"): 3}


# -- CLI -------------------------------------------------------------------------------------------

def forge(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    forge_bin = shutil.which("forge", path=os.path.dirname(sys.executable))
    assert forge_bin, "the forge console script is installed beside the interpreter"
    return subprocess.run([forge_bin, "--broker", broker.target, *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.slow
def test_cli_bulk_retry_purge_and_cancel(broker: BrokerProcess, stub: Stub) -> None:
    assert broker.dsn
    add_jobs(broker.dsn, "cli.dead", 4)
    add_jobs(broker.dsn, "cli.old", 2, age="8 days")
    out = forge(broker, "dlq", "retry", "--type", "cli.dead")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"count": "4"}
    out = forge(broker, "dlq", "purge", "--older-than", "7d")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"count": "2"}
    out = forge(broker, "cancel", "--type", "cli.dead", "--reason", "bulk")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"count": "4"}
    assert counted(broker.dsn) == {("cli.dead", "CANCELLED"): 4}
    # One job by id, as before.
    job = enqueue(stub, "cli.one", 1)[0]
    out = forge(broker, "cancel", job.id)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "CANCELLED"
    # Neither an id nor a filter, or both: a usage error; an empty purge is the broker's refusal.
    for args in (("cancel",), ("dlq", "retry"), ("cancel", job.id, "--type", "cli.one")):
        out = forge(broker, *args)
        assert out.returncode == 2 and "JOB_ID, or --type or --all" in out.stderr, out
    out = forge(broker, "dlq", "purge")
    assert out.returncode == 1 and "filter: " in out.stderr


def test_python_client_bulk_methods(broker: BrokerProcess) -> None:
    assert broker.dsn
    add_jobs(broker.dsn, "py.dead", 3, age="2 days")
    with Client(broker.target) as client:
        ids = [j.id for j in client.dead(type="py.dead").jobs]
        assert client.retry_dead_jobs(ids=ids[:1]).count == 1
        assert client.purge_dead_jobs(type="py.dead", older_than=timedelta(days=1)).count == 2
        assert client.cancel_jobs(type="py.dead").count == 1
        assert client.cancel_jobs(all=True).count == 0
