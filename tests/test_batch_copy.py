"""Large batches of plain jobs (no idempotency key, run_at or hand-off) go into PostgreSQL by
COPY: stored byte for byte as sent, whatever their text holds, counted and claimable as any
job; a batch that turns out to need the INSERT part way through is still stored whole, once.
Real broker and PostgreSQL."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.support import job_count

Stub = broker_pb2_grpc.BrokerStub
N = 1_000  # four parts of 250, far past the size from which a flush is copied

# Text COPY's own format gives a meaning to: tabs, newlines, CRs, backslashes, its NULL marker
# and end-of-data line; then quotes and text beyond ASCII.
AWKWARD = ["a\tb", "line\nnext", "cr\rlf", "back\\slash", "\\N", "\\.", '"quoted"', "é ☃ 𝄞",
           "\\\\N\t\\n", ""]


def awkward_job(i: int) -> pb.EnqueueRequest:
    text = AWKWARD[i % len(AWKWARD)]
    payload = {"i": i, "text": text, "nested": {"list": [text, i / 7, None, True]}}
    return pb.EnqueueRequest(
        type="copy.awkward", payload_json=json.dumps(payload), priority=i % 5 - 2,
        max_retries=i % 4, concurrency_key=f"key{text}" if i % 3 else "")


def test_a_plain_batch_is_stored_exactly_as_sent(stub: Stub, dsn: str) -> None:
    reqs = [awkward_job(i) for i in range(N)]
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=30)
    assert resp.created == N
    assert len({j.created_at.ToNanoseconds() for j in resp.jobs}) == 1, "one transaction"
    for i, (sent, answered) in enumerate(zip(reqs, resp.jobs, strict=True)):
        stored = stub.GetJob(pb.GetJobRequest(id=answered.id), timeout=5)
        assert stored == answered, i
        assert MessageToDict(stored.payload) == json.loads(sent.payload_json), i
        assert stored.concurrency_key == sent.concurrency_key, i
        assert (stored.priority, stored.max_retries) == (sent.priority, sent.max_retries), i
        assert stored.status == pb.Job.PENDING and stored.attempts == 0, i
        assert stored.run_at == stored.created_at, i
    assert job_count(dsn) == N


def test_a_plain_batch_answered_with_ids_is_stored_in_order(stub: Stub) -> None:
    reqs = [awkward_job(i) for i in range(N)]
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs, answer=pb.EnqueueBatchRequest.ANSWER_IDS),
                             timeout=30)
    assert resp.created == N and len(resp.ids) == N and not resp.jobs
    for i in (0, 1, 9, 249, 250, 777, N - 1):
        stored = stub.GetJob(pb.GetJobRequest(id=resp.ids[i]), timeout=5)
        assert stored.payload["i"] == i
        assert stored.payload["text"] == AWKWARD[i % len(AWKWARD)]


def test_a_copied_batch_is_counted_and_runs(stub: Stub) -> None:
    reqs = [pb.EnqueueRequest(type="copy.counted", payload_json=json.dumps({"i": i}))
            for i in range(N)]
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs, answer=pb.EnqueueBatchRequest.ANSWER_IDS),
                      timeout=30)
    stats = stub.Stats(pb.StatsRequest(), timeout=5)
    assert stats.pending == N
    assert [(t.type, t.pending) for t in stats.types] == [("copy.counted", N)]
    leased: list[str] = []
    stream = stub.Lease(pb.LeaseRequest(worker_id="copy-w", types=["copy.counted"],
                                        max_in_flight=N), timeout=30)
    for resp in stream:
        leased += [j.job.id for j in resp.jobs]
        if len(leased) >= N:
            break
    stream.cancel()
    assert len(set(leased)) == N


def test_a_copy_wakes_a_worker_already_waiting(stub: Stub) -> None:
    stream = stub.Lease(pb.LeaseRequest(worker_id="copy-idle", types=["copy.wake"],
                                        max_in_flight=N), timeout=30)
    time.sleep(0.5)  # the stream is open and idle: nothing PENDING to claim
    reqs = [pb.EnqueueRequest(type="copy.wake", payload_json="{}") for _ in range(N)]
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=30)
    leased = 0
    for resp in stream:
        leased += len(resp.jobs)
        if leased >= N:
            break
    stream.cancel()
    assert leased == N


def past_and_future() -> tuple[Timestamp, Timestamp]:
    past, future = Timestamp(), Timestamp()
    past.FromSeconds(int(time.time()) - 3600)
    future.FromSeconds(int(time.time()) + 3600)
    return past, future


@pytest.mark.parametrize("late", [250, 600, N - 1])
def test_a_later_part_that_copy_cannot_take_still_goes_whole(stub: Stub, dsn: str,
                                                             late: int) -> None:
    old = stub.Enqueue(pb.EnqueueRequest(type="copy.mixed", idempotency_key="old"), timeout=5).job
    past, future = past_and_future()
    reqs = [pb.EnqueueRequest(type="copy.mixed", payload_json=json.dumps({"i": i}))
            for i in range(N)]
    reqs[late].idempotency_key = "old"
    reqs[late - 1].run_at.CopyFrom(past)
    reqs[late - 2].run_at.CopyFrom(future)
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=30)
    assert resp.created == N - 1
    assert resp.jobs[late].id == old.id
    assert resp.jobs[late - 1].run_at == resp.jobs[late - 1].created_at, "a past run_at is now"
    assert resp.jobs[late - 2].run_at == future
    new = [j for i, j in enumerate(resp.jobs) if i != late]
    assert [j.payload["i"] for j in new] == [i for i in range(N) if i != late]
    assert len({j.created_at.ToNanoseconds() for j in new}) == 1
    for i in (0, late - 2, late - 1, late):
        assert resp.jobs[i] == stub.GetJob(pb.GetJobRequest(id=resp.jobs[i].id), timeout=5)
    assert job_count(dsn) == N


def test_a_bad_entry_after_a_copied_part_leaves_nothing(stub: Stub, dsn: str) -> None:
    reqs = [pb.EnqueueRequest(type="copy.bad", payload_json="{}") for _ in range(N)]
    reqs[800].payload_json = '{"a": NaN}'
    with pytest.raises(grpc.RpcError) as err:
        stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("jobs[800].payload_json:")
    assert job_count(dsn) == 0
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs[:800]), timeout=30)
    assert resp.created == 800, "the connection that ended the COPY serves again"
