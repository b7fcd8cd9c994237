"""A large EnqueueBatch is inserted in parts (FIRST_PART jobs, then BATCH_PART each) within one
transaction: still all or nothing, still answered entry by entry as stored. Real broker and
PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.support import job_count

Stub = broker_pb2_grpc.BrokerStub
N = 1_000  # four parts: 100, then 300 each


def job(i: int, **kw: object) -> pb.EnqueueRequest:
    payload = Struct()
    payload.update({"i": i})
    return pb.EnqueueRequest(type="parts", payload=payload, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [N - 1, 600, 0])
def test_a_bad_entry_in_any_part_is_named_and_nothing_is_stored(stub: Stub, dsn: str,
                                                                 bad: int) -> None:
    reqs = [job(i) for i in range(N)]
    reqs[bad] = job(bad, priority=5000)
    with pytest.raises(grpc.RpcError) as err:
        stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"jobs[{bad}].priority:")
    assert job_count(dsn) == 0


def test_a_batch_in_parts_is_answered_entry_by_entry_as_stored(stub: Stub, dsn: str) -> None:
    old = stub.Enqueue(job(-1, idempotency_key="old"), timeout=5).job
    reqs = [job(i) for i in range(N)]
    reqs[10] = job(10, idempotency_key="shared")
    reqs[700] = job(700, idempotency_key="shared")  # a later part reuses an earlier part's key
    reqs[900] = job(900, idempotency_key="old")  # a key stored before the batch
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=30)
    assert resp.created == N - 2
    answered = list(resp.jobs)
    assert len(answered) == N
    assert answered[700].id == answered[10].id and answered[700].payload["i"] == 10
    assert answered[900].id == old.id
    new = [j for i, j in enumerate(answered) if i not in (700, 900)]
    assert [j.payload["i"] for j in new] == [i for i in range(N) if i not in (700, 900)]
    assert len({j.created_at.ToNanoseconds() for j in new}) == 1, "one transaction, one now()"
    for i in (0, 249, 250, 499, 500, 999, 700, 900):
        assert answered[i] == stub.GetJob(pb.GetJobRequest(id=answered[i].id), timeout=5)
    assert job_count(dsn) == N - 2 + 1
