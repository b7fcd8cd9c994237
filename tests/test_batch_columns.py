"""EnqueueBatch in columns (a template and payloads_json) is the batch of jobs it stands for:
each entry becomes the template with that payload, stored and answered as EnqueueBatch stores and
answers ``jobs``, all or none; refusals name the template's field or the entry. Real broker,
PostgreSQL, gateway and both Python clients."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

from forge import AsyncClient, Client
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.support import BrokerProcess, job_count

Stub = broker_pb2_grpc.BrokerStub
IDS = pb.EnqueueBatchRequest.ANSWER_IDS


def template(**kw: object) -> pb.EnqueueRequest:
    return pb.EnqueueRequest(**{"type": "cols", **kw})  # type: ignore[arg-type]


def texts(n: int) -> list[str]:
    """Payloads that text COPY and JSON both give a meaning to, and a blank entry ({})."""
    return ["" if i == 3 else json.dumps({"i": i, "text": "tab\there \\N é"}) for i in range(n)]


def payload_of(text: str) -> dict[str, object]:
    return json.loads(text) if text else {}


@pytest.mark.parametrize("n", [5, 1_000])  # one INSERT; COPY in four parts
def test_each_entry_is_stored_as_the_template_with_that_payload(stub: Stub, dsn: str,
                                                                n: int) -> None:
    sent = texts(n)
    req = pb.EnqueueBatchRequest(template=template(priority=7, max_retries=2, concurrency_key="k"),
                                 payloads_json=sent)
    resp = stub.EnqueueBatch(req, timeout=30)
    assert resp.created == n and len(resp.jobs) == n and not resp.ids
    assert len({j.created_at.ToNanoseconds() for j in resp.jobs}) == 1, "one transaction"
    for i in sorted({0, 3, n // 2, n - 1}):
        stored = stub.GetJob(pb.GetJobRequest(id=resp.jobs[i].id), timeout=5)
        assert stored == resp.jobs[i], i
        assert MessageToDict(stored.payload) == payload_of(sent[i]), i
        assert (stored.type, stored.priority, stored.max_retries, stored.concurrency_key) == (
            "cols", 7, 2, "k"), i
        assert stored.status == pb.Job.PENDING and stored.run_at == stored.created_at, i
    assert job_count(dsn) == n


@pytest.mark.parametrize("n", [5, 1_000])
def test_ids_come_back_in_entry_order(stub: Stub, n: int) -> None:
    sent = texts(n)
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(template=template(), payloads_json=sent,
                                                    answer=IDS), timeout=30)
    assert resp.created == n and len(resp.ids) == n and not resp.jobs
    for i in sorted({0, 3, n - 1}):
        stored = stub.GetJob(pb.GetJobRequest(id=resp.ids[i]), timeout=5)
        assert MessageToDict(stored.payload) == payload_of(sent[i]), i


def test_a_template_run_at_schedules_every_job(stub: Stub) -> None:
    later = template()
    later.run_at.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(template=later, payloads_json=texts(400)),
                             timeout=30)
    assert {j.run_at.ToSeconds() for j in resp.jobs} == {later.run_at.ToSeconds()}
    assert stub.Stats(pb.StatsRequest(), timeout=5).scheduled == 400


def refusal(stub: Stub, req: pb.EnqueueBatchRequest) -> str:
    with pytest.raises(grpc.RpcError) as err:
        stub.EnqueueBatch(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details() or ""


def test_a_bad_template_or_a_mix_of_forms_is_refused_naming_the_field(stub: Stub,
                                                                      dsn: str) -> None:
    one = ['{"a": 1}']
    struct = Struct()
    struct.update({"a": 1})
    cases = [
        (pb.EnqueueBatchRequest(jobs=[template()], template=template(), payloads_json=one),
         "payloads_json: set jobs, or template and payloads_json, not both"),
        (pb.EnqueueBatchRequest(jobs=[template()], payloads_json=one), "payloads_json: "),
        (pb.EnqueueBatchRequest(jobs=[template()], template=template()), "payloads_json: "),
        (pb.EnqueueBatchRequest(payloads_json=one), "template.type: is required"),
        (pb.EnqueueBatchRequest(template=template(type="no spaces"), payloads_json=one),
         "template.type: "),
        (pb.EnqueueBatchRequest(template=template(priority=5000), payloads_json=one),
         "template.priority: "),
        (pb.EnqueueBatchRequest(template=template(payload_json="{}"), payloads_json=one),
         "template.payload_json: must be empty"),
        (pb.EnqueueBatchRequest(template=template(payload=struct), payloads_json=one),
         "template.payload: must be empty"),
        (pb.EnqueueBatchRequest(template=template(idempotency_key="k"), payloads_json=one),
         "template.idempotency_key: must be empty"),
        (pb.EnqueueBatchRequest(template=template()),
         "payloads_json: must hold 1 to 10000 payloads, got 0"),
        (pb.EnqueueBatchRequest(template=template(), payloads_json=["{}"] * 10_001),
         "payloads_json: must hold 1 to 10000 payloads, got 10001"),
    ]
    for req, expected in cases:
        assert refusal(stub, req).startswith(expected), (req.template, expected)
    assert job_count(dsn) == 0


@pytest.mark.parametrize("bad", [0, 99, 100, 650, 999])  # in the first part, and in later ones
def test_a_bad_entry_is_named_and_nothing_of_the_batch_is_stored(stub: Stub, dsn: str,
                                                                 bad: int) -> None:
    for text in ("[1]", '{"a": NaN}', '{"a":"\\u0000"}', '{"a": 1} trailing'):
        sent = texts(1_000)
        sent[bad] = text
        for answer in (pb.EnqueueBatchRequest.ANSWER_JOBS, IDS):
            details = refusal(stub, pb.EnqueueBatchRequest(template=template(),
                                                           payloads_json=sent, answer=answer))
            assert details.startswith(f"payloads_json[{bad}]: "), (text, details)
    assert job_count(dsn) == 0


def test_the_gateway_takes_a_batch_in_columns(rest: httpx.Client) -> None:
    r = rest.post("/v1/jobs:batch", json={"template": {"type": "cols.rest", "priority": 3},
                                          "payloadsJson": ['{"n": 1}', '{"n": 2}']})
    assert r.status_code == 200, r.text
    jobs = r.json()["jobs"]
    assert [(j["type"], j["priority"], j["payload"]) for j in jobs] == [
        ("cols.rest", 3, {"n": 1}), ("cols.rest", 3, {"n": 2})]
    r = rest.post("/v1/jobs:batch", json={"template": {"type": "cols.rest"},
                                          "payloadsJson": ['{"n": 1}', "[]"]})
    assert r.status_code == 400 and "payloads_json[1]" in r.json()["message"], r.text


def test_both_clients_enqueue_many(broker: BrokerProcess) -> None:
    with Client(broker.target) as client:
        jobs = client.enqueue_many("cols.sync", [{"n": 1}, {"n": 2}], priority=4)
        assert [(j.type, j.priority, j.payload["n"]) for j in jobs] == [
            ("cols.sync", 4, 1), ("cols.sync", 4, 2)]
        ids = client.enqueue_many("cols.sync", ({"n": n} for n in range(3)), ids_only=True)
        assert [client.get(i).payload["n"] for i in ids] == [0, 1, 2]

    async def run() -> list[str]:
        async with AsyncClient(broker.target) as client:
            return await client.enqueue_many("cols.async", [{}, {"n": 9}], ids_only=True,
                                             max_retries=0, concurrency_key="c")

    with Client(broker.target) as client:
        got = [client.get(i) for i in asyncio.run(run())]
    assert [(j.max_retries, j.concurrency_key, MessageToDict(j.payload)) for j in got] == [
        (0, "c", {}), (0, "c", {"n": 9})]
