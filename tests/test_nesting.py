"""Payload nesting: the documented limit (20 levels) holds at every door, and a job stored deeper
than any decoder takes (a row from before the limit) costs only itself when it is leased.

A real broker and a real gateway on one fresh database for the module; each test uses job types
of its own."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.protobuf import json_format, struct_pb2

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from tests.gateway_support import unique_type
from tests.support import BrokerProcess, start_gateway, wait_until

pytest_plugins = ["tests.gateway_fixtures"]

LIMIT = 20
"""The deepest payload or result the broker takes (docs/api.md, "Payloads and results")."""

BEYOND_DECODERS = 33
"""What Enqueue took before the limit existed; one level more than a full-view LeaseResponse
holding it decodes in Python (upb stops at 100 message levels)."""


def nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` objects deep (itself the first), the innermost holding a number:
    the costliest shape per level for a protobuf decoder."""
    value: dict[str, Any] = {"n": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def nested_arrays(depth: int) -> dict[str, Any]:
    """An object holding arrays, ``depth`` levels in all."""
    value: list[Any] = [1]
    for _ in range(depth - 2):
        value = [value]
    return {"k": value}


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def plain(msg: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as JSON-like Python (whole numbers stay floats: 1.0 == 1)."""
    return json_format.MessageToDict(msg)


def request(type_: str, payload: dict[str, Any], **fields: Any) -> pb.EnqueueRequest:
    req = pb.EnqueueRequest(type=type_, **fields)
    req.payload.update(payload)  # in place: copying a Struct decodes it, which a deep one fails
    return req


def refusal(call: Callable[[], object]) -> str:
    """The details of the INVALID_ARGUMENT that ``call`` must raise."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    details: str = err.details()
    return details


@pytest.fixture(scope="module")
def stub(gw_broker: BrokerProcess) -> Iterator[pb_grpc.BrokerStub]:
    with grpc.insecure_channel(gw_broker.target) as channel:
        yield pb_grpc.BrokerStub(channel)


def insert_jobs(dsn: str, type_: str, payloads: list[dict[str, Any]]) -> list[str]:
    """Rows written straight into the table, as an older broker without the limit stored them,
    in claim order (highest priority first). Returns their ids."""
    ids = [str(uuid.uuid4()) for _ in payloads]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, (job_id, payload) in enumerate(zip(ids, payloads, strict=True)):
            conn.execute("INSERT INTO forge.jobs (id, type, payload, priority) "
                         "VALUES (%s, %s, %s::jsonb, %s)",
                         (job_id, type_, json.dumps(payload), 100 - i))
    return ids


def unclipped(view: dict[str, Any], depth: int) -> dict[str, Any]:
    """A ``nested`` payload as answers show it when stored deeper than the limit: the object at
    the last level allowed holds the rest as JSON text. Returns it whole again."""
    node = view
    for _ in range(LIMIT - 1):
        node = node["k"]
    node["k"] = json.loads(node["k"])
    return view


# -- the limit, at every door ---------------------------------------------------------------------


def test_enqueue_refuses_a_payload_one_level_past_the_limit_naming_it(
        stub: pb_grpc.BrokerStub) -> None:
    type_ = unique_type("nest")
    for too_deep in (nested(LIMIT + 1), nested_arrays(LIMIT + 1)):
        details = refusal(lambda p=too_deep: stub.Enqueue(request(type_, p), timeout=10))
        assert details.startswith("payload:") and str(LIMIT) in details, details
    batch = pb.EnqueueBatchRequest(jobs=[request(type_, nested(LIMIT)),
                                         request(type_, nested(LIMIT + 1))])
    details = refusal(lambda: stub.EnqueueBatch(batch, timeout=10))
    assert details.startswith("jobs[1].payload:"), details
    assert stub.ListJobs(pb.ListJobsRequest(type=type_), timeout=10).jobs == []


def test_rest_enqueue_refuses_a_payload_one_level_past_the_limit_with_400_naming_it(
        http: httpx.Client) -> None:
    type_ = unique_type("nest")
    too_deep = nested(LIMIT + 1)
    for path in ("/v1/jobs", "/jobs"):
        r = http.post(path, json={"type": type_, "payload": too_deep})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == 3 and r.json()["message"].startswith("payload:"), r.text
    r = http.post("/v1/jobs:batch", json={"jobs": [{"type": type_, "payload": too_deep}]})
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("jobs[0].payload:"), r.text


@pytest.mark.parametrize("depth", [40, 60, 100_000])
def test_the_gateway_answers_400_for_a_body_nested_past_every_decoder(
        http: httpx.Client, depth: int) -> None:
    # 40 passes the gateway's JSON mapping but not the broker's decoder; 60 passes Python's JSON
    # parser but not the JSON mapping; 100,000 passes neither.
    body = '{"type":"nest.deep","payload":' + '{"k":' * depth + "1" + "}" * depth + "}"
    r = http.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    assert r.json()["code"] == 3


def test_ack_and_settle_refuse_a_result_past_the_limit_naming_it(stub: pb_grpc.BrokerStub) -> None:
    type_ = unique_type("nest")
    for _ in range(2):
        stub.Enqueue(pb.EnqueueRequest(type=type_), timeout=10)
    stream = stub.Lease(pb.LeaseRequest(worker_id="nest-results", types=[type_], max_in_flight=2),
                        timeout=30)
    leased: list[pb.LeasedJob] = []
    for batch in stream:
        leased.extend(batch.jobs)
        if len(leased) == 2:
            break
    stream.cancel()
    first, second = leased
    deep = struct(nested(LIMIT))
    too_deep = pb.AckRequest(job_id=first.job.id, lease_token=first.lease_token)
    too_deep.result.update(nested(LIMIT + 1))
    assert refusal(lambda: stub.Ack(too_deep, timeout=10)).startswith("result:")
    settle = pb.SettleRequest(acks=[too_deep])
    assert refusal(lambda: stub.Settle(settle, timeout=10)).startswith("acks[0].result:")

    for job in (first, second):
        stub.Ack(pb.AckRequest(job_id=job.job.id, lease_token=job.lease_token, result=deep),
                 timeout=10)
        done = stub.GetJob(pb.GetJobRequest(id=job.job.id), timeout=10)
        assert done.status == pb.Job.COMPLETED and plain(done.result) == nested(LIMIT)


def test_the_deepest_accepted_payload_round_trips_over_grpc(stub: pb_grpc.BrokerStub) -> None:
    type_ = unique_type("nest")
    sent = [nested(LIMIT), nested_arrays(LIMIT)]
    ids = [stub.Enqueue(request(type_, p), timeout=10).job.id for p in sent]
    batch = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[request(type_, p) for p in sent]),
                              timeout=10)
    assert [plain(j.payload) for j in batch.jobs] == sent
    ids += [j.id for j in batch.jobs]
    expected = dict(zip(ids, sent + sent, strict=True))

    stream = stub.Lease(pb.LeaseRequest(worker_id="nest-deepest", types=[type_], max_in_flight=4),
                        timeout=30)
    leased: dict[str, dict[str, Any]] = {}
    for resp in stream:  # the full view: every job with its payload as a Struct
        leased.update({j.job.id: plain(j.job.payload) for j in resp.jobs})
        if len(leased) == len(ids):
            break
    stream.cancel()
    assert leased == expected
    for job_id, payload in expected.items():
        assert plain(stub.GetJob(pb.GetJobRequest(id=job_id), timeout=10).payload) == payload
    listed = stub.ListJobs(pb.ListJobsRequest(type=type_), timeout=10).jobs
    assert {j.id: plain(j.payload) for j in listed} == expected


def test_the_deepest_accepted_payload_round_trips_over_rest(http: httpx.Client) -> None:
    type_ = unique_type("nest")
    sent = nested(LIMIT)
    r = http.post("/v1/jobs", json={"type": type_, "payload": sent})
    assert r.status_code == 200, r.text
    job_id = r.json()["job"]["id"]
    with http.stream("POST", "/v1/jobs:lease",
                     json={"workerId": "nest-rest", "types": [type_]}) as stream:
        assert stream.status_code == 200
        frame = json.loads(next(line for line in stream.iter_lines() if line))
    [leased] = frame["result"]["jobs"]
    assert leased["job"]["id"] == job_id and leased["job"]["payload"] == sent
    assert http.get(f"/v1/jobs/{job_id}").json()["payload"] == sent
    [listed] = http.get("/v1/jobs", params={"type": type_}).json()["jobs"]
    assert listed["payload"] == sent


# -- rows stored deeper than the limit ------------------------------------------------------------


def stored_with_deep_neighbours(gw_broker: BrokerProcess) -> tuple[str, list[str], list[str]]:
    """Three ordinary jobs with two too deep for a LeaseResponse between them, all claimable in
    one batch: (type, ordinary ids, deep ids)."""
    type_ = unique_type("nest")
    assert gw_broker.dsn is not None
    ids = insert_jobs(gw_broker.dsn, type_, [{"i": 0}, nested(BEYOND_DECODERS), {"i": 1},
                                             nested(BEYOND_DECODERS + 7), {"i": 2}])
    return type_, ids[0::2], ids[1::2]


def assert_dead_letters(stub: pb_grpc.BrokerStub, type_: str, deep: list[str]) -> None:
    """Each deep job is DEAD after one attempt, saying why, and still shows (whole) in GetJob and
    in the dead-letter queue."""
    def dead() -> bool:
        return all(stub.GetJob(pb.GetJobRequest(id=j), timeout=10).status == pb.Job.DEAD
                   for j in deep)

    assert wait_until(dead, timeout=15), [stub.GetJob(pb.GetJobRequest(id=j)) for j in deep]
    for job_id, depth in zip(deep, (BEYOND_DECODERS, BEYOND_DECODERS + 7), strict=True):
        job = stub.GetJob(pb.GetJobRequest(id=job_id), timeout=10)
        assert job.attempts == 1
        assert f"{LIMIT} levels" in job.last_error and "JOB_VIEW_LEAN" in job.last_error
        assert unclipped(plain(job.payload), depth) == json.loads(json.dumps(nested(depth)))
    dlq = stub.ListDeadJobs(pb.ListDeadJobsRequest(type=type_), timeout=10)
    assert sorted(j.id for j in dlq.jobs) == sorted(deep)


def test_a_job_stored_too_deep_costs_only_itself_in_a_full_view_grpc_lease(
        stub: pb_grpc.BrokerStub, gw_broker: BrokerProcess) -> None:
    type_, ordinary, deep = stored_with_deep_neighbours(gw_broker)
    stream = stub.Lease(pb.LeaseRequest(worker_id="nest-legacy", types=[type_], max_in_flight=10,
                                        lease_seconds=60), timeout=60)
    try:
        delivered: dict[str, pb.LeasedJob] = {}
        while len(delivered) < len(ordinary):
            delivered.update({j.job.id: j for j in next(stream).jobs})
        assert sorted(delivered) == sorted(ordinary)
        for job in delivered.values():
            assert job.job.attempts == 1
            stub.Ack(pb.AckRequest(job_id=job.job.id, lease_token=job.lease_token), timeout=10)
            assert stub.GetJob(pb.GetJobRequest(id=job.job.id), timeout=10).attempts == 1
        assert_dead_letters(stub, type_, deep)

        # The stream is still the worker's: a new job arrives on it.
        later = stub.Enqueue(pb.EnqueueRequest(type=type_), timeout=10).job.id
        assert [j.job.id for j in next(stream).jobs] == [later]
    finally:
        stream.cancel()


def test_a_lean_lease_carries_a_job_stored_too_deep_whole(
        stub: pb_grpc.BrokerStub, gw_broker: BrokerProcess) -> None:
    # JOB_VIEW_LEAN sends the payload as JSON text: no protobuf nesting, so the job runs there.
    type_ = unique_type("nest")
    assert gw_broker.dsn is not None
    [job_id] = insert_jobs(gw_broker.dsn, type_, [nested(BEYOND_DECODERS + 7)])
    stream = stub.Lease(pb.LeaseRequest(worker_id="nest-lean", types=[type_],
                                        job_view=pb.LeaseRequest.JOB_VIEW_LEAN), timeout=30)
    try:
        [leased] = next(stream).jobs
    finally:
        stream.cancel()
    assert leased.job.id == job_id
    assert json.loads(leased.payload_json) == nested(BEYOND_DECODERS + 7)
    stub.Ack(pb.AckRequest(job_id=job_id, lease_token=leased.lease_token), timeout=10)


def test_a_stored_job_that_cannot_be_encoded_costs_only_itself_in_a_full_view_lease(
        stub: pb_grpc.BrokerStub, gw_broker: BrokerProcess) -> None:
    # A payload column holding an array, not an object: written by hand, never by a broker.
    type_ = unique_type("nest")
    assert gw_broker.dsn is not None
    first, odd, last = insert_jobs(gw_broker.dsn, type_, [{"i": 0}, {}, {"i": 1}])
    with psycopg.connect(gw_broker.dsn, autocommit=True) as conn:
        conn.execute("UPDATE forge.jobs SET payload = '[1, 2]' WHERE id = %s", (odd,))
    stream = stub.Lease(pb.LeaseRequest(worker_id="nest-odd", types=[type_], max_in_flight=10,
                                        lease_seconds=60), timeout=60)
    try:
        delivered = {j.job.id: j for j in next(stream).jobs}
        assert sorted(delivered) == sorted([first, last])
        for job in delivered.values():
            stub.Ack(pb.AckRequest(job_id=job.job.id, lease_token=job.lease_token), timeout=10)
    finally:
        stream.cancel()

    def state() -> tuple[str, int, str]:
        with psycopg.connect(gw_broker.dsn or "", autocommit=True) as conn:
            row = conn.execute("SELECT status, attempts, last_error FROM forge.jobs WHERE id = %s",
                               (odd,)).fetchone()
        assert row is not None
        return row[0], row[1], row[2] or ""

    assert wait_until(lambda: state()[0] == "DEAD", timeout=15), state()
    assert state()[1] == 1 and "could not be encoded" in state()[2], state()


def test_a_job_stored_too_deep_costs_only_itself_in_a_gateway_lease(
        stub: pb_grpc.BrokerStub, gw_broker: BrokerProcess, http: httpx.Client) -> None:
    type_, ordinary, deep = stored_with_deep_neighbours(gw_broker)
    body = {"workerId": "nest-legacy-rest", "types": [type_], "maxInFlight": 10, "leaseSeconds": 60}
    with http.stream("POST", "/v1/jobs:lease", json=body) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        delivered: dict[str, dict[str, Any]] = {}
        while len(delivered) < len(ordinary):
            frame = json.loads(next(line for line in lines if line))
            assert set(frame) == {"result"}, frame
            delivered.update({j["job"]["id"]: j for j in frame["result"]["jobs"]})
        assert sorted(delivered) == sorted(ordinary)
        for job_id, leased in delivered.items():
            r = http.post(f"/v1/jobs/{job_id}:ack", json={"leaseToken": leased["leaseToken"]})
            assert r.status_code == 200, r.text
            job = http.get(f"/v1/jobs/{job_id}").json()
            assert (job["status"], job["attempts"]) == ("COMPLETED", 1)
        assert_dead_letters(stub, type_, deep)
        assert http.get("/v1/dlq", params={"type": type_}).status_code == 200

        later = http.post("/v1/jobs", json={"type": type_}).json()["job"]["id"]
        frame = json.loads(next(line for line in lines if line))
        assert [j["job"]["id"] for j in frame["result"]["jobs"]] == [later]


# -- the gateway, in front of a broker that does send what cannot be decoded ----------------------


class OldBroker:
    """A stand-in for a broker from before the limit: its Lease sends one ordinary job, then one
    whose payload no protobuf decoder takes, then would go on sending ordinary ones."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_stream_rpc_method_handler(self.lease)  # raw bytes both ways
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "forge.v1.Broker", {"Lease": handler}),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def lease(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        context.add_callback(self.cancelled.set)
        for i in range(1000):
            resp = pb.LeaseResponse()
            job = resp.jobs.add().job
            job.id = f"job-{i}"
            job.payload.update(nested(BEYOND_DECODERS) if i == 1 else {"i": i})
            yield resp.SerializeToString()
            time.sleep(0.05)
            if not context.is_active():
                return


@pytest.fixture
def old_broker() -> Iterator[OldBroker]:
    broker = OldBroker()
    broker.server.start()
    yield broker
    broker.server.stop(grace=None)


def test_the_gateway_ends_a_stream_with_an_error_frame_when_a_message_cannot_be_decoded(
        old_broker: OldBroker) -> None:
    gateway = start_gateway(f"127.0.0.1:{old_broker.port}")
    try:
        with httpx.Client(base_url=gateway.url, timeout=20.0) as client:
            with client.stream("POST", "/v1/jobs:lease", json={"workerId": "w"}) as r:
                assert r.status_code == 200
                frames = [json.loads(line) for line in r.iter_lines() if line]
        assert frames[0]["result"]["jobs"][0]["job"]["id"] == "job-0"
        assert len(frames) == 2, frames
        error = frames[1]["error"]
        assert error["code"] == grpc.StatusCode.INTERNAL.value[0]
        assert "could not decode" in error["message"], error
        assert old_broker.cancelled.wait(10), "the gateway left the broker's stream open"
    finally:
        gateway.stop()
