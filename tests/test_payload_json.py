"""Payloads sent as JSON text (EnqueueRequest.payload_json) and batches answered with ids alone
(EnqueueBatchRequest.ANSWER_IDS). Real broker, gateway and PostgreSQL."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import orjson
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge import AsyncClient, Client
from forge.client import enqueue_request, payload_json
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from forge_common.structs import to_python
from tests.support import BrokerProcess, free_port, job_count, run_module, start_broker, wait_until

Stub = broker_pb2_grpc.BrokerStub
IDS = pb.EnqueueBatchRequest.ANSWER_IDS
BIG = 12345678901234567890  # more digits than a double holds

PAYLOAD_TEXT = ('{"name": "Zoë 😀 日本", "nested": [[1, [2, [3, {"deep": [true, false, null]}]]]],'
                f' "big": {BIG}, "max_safe": 9007199254740991, "ratio": 1.5, "empty": {{}},'
                ' "list": []}')
# As a Struct reads it back: every number is a double.
AS_STRUCT = {**json.loads(PAYLOAD_TEXT), "big": float(BIG)}


def req(text: str = "", type: str = "pj", **kw: Any) -> pb.EnqueueRequest:
    return pb.EnqueueRequest(type=type, payload_json=text, **kw)


def struct(**kw: Any) -> Struct:
    out = Struct()
    out.update(kw)
    return out


def nested(levels: int) -> str:
    """A JSON object ``levels`` deep, the object itself being level 1."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def first_lease(stub: Stub, view: pb.LeaseRequest.JobView.ValueType) -> pb.LeasedJob:
    stream = stub.Lease(pb.LeaseRequest(worker_id="w", types=["pj"], max_in_flight=1,
                                        job_view=view), timeout=10)
    try:
        return next(iter(stream)).jobs[0]
    finally:
        stream.cancel()


def test_a_payload_json_job_reads_back_with_its_payload_everywhere(stub: Stub) -> None:
    answered = stub.Enqueue(req(PAYLOAD_TEXT), timeout=5).job
    assert to_python(answered.payload) == AS_STRUCT
    assert stub.GetJob(pb.GetJobRequest(id=answered.id), timeout=5) == answered
    lean = first_lease(stub, pb.LeaseRequest.JOB_VIEW_LEAN)
    assert lean.job.id == answered.id
    # A whole number up to 64 bits keeps every digit, beyond what a double holds.
    assert orjson.loads(lean.payload_json) == json.loads(PAYLOAD_TEXT)
    stub.Nack(pb.NackRequest(job_id=lean.job.id, lease_token=lean.lease_token, error="again",
                             retry_after=Duration()), timeout=5)
    full = first_lease(stub, pb.LeaseRequest.JOB_VIEW_FULL)
    assert full.job.id == answered.id and to_python(full.job.payload) == AS_STRUCT


def test_batch_answers_carry_payload_json_payloads_in_job_payload(stub: Stub) -> None:
    reqs = [req('{"i": 0, "s": "é"}'), pb.EnqueueRequest(type="pj", payload=struct(i=1)),
            req(), req(PAYLOAD_TEXT)]
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=10)
    assert [to_python(j.payload) for j in resp.jobs] == [{"i": 0, "s": "é"}, {"i": 1}, {},
                                                         AS_STRUCT]
    for job in resp.jobs:
        assert stub.GetJob(pb.GetJobRequest(id=job.id), timeout=5) == job


TOO_BIG = '{"a":"' + "x" * (1 << 20) + '"}'
TOO_BIG_IN_UTF8 = '{"a":"' + "é" * (1 << 19) + '"}'  # half a MiB of characters, 1 MiB of bytes
BAD_TEXTS = {
    "not JSON": "{a: 1}",
    "an array": "[1, 2]",
    "a scalar": "3",
    "a string": '"{}"',
    "trailing data": '{"a": 1} {}',
    "NaN": '{"a": NaN}',
    "Infinity": '{"a": Infinity}',
    "a number too large for a double": '{"a": 1e400}',
    "NUL in a value": '{"a": "x\\u0000y"}',
    "NUL in a key": '{"\\u0000": 1}',
    "a lone surrogate": '{"a": "\\ud800"}',
    "a raw control character": '{"a": "\x01"}',
    "21 levels": nested(21),
    "over 1 MiB": TOO_BIG,
    "over 1 MiB as UTF-8": TOO_BIG_IN_UTF8,
}


def refusal(call: Any) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    details: str = err.value.details()
    assert "Traceback" not in details
    return details


def test_bad_payload_json_is_refused_naming_the_field_and_writes_nothing(
        stub: Stub, dsn: str) -> None:
    for case, text in BAD_TEXTS.items():
        details = refusal(lambda t=text: stub.Enqueue(req(t), timeout=10))
        assert details.startswith("payload_json: "), (case, details)
    both = pb.EnqueueRequest(type="pj", payload=struct(a=1), payload_json='{"a": 1}')
    assert refusal(lambda: stub.Enqueue(both, timeout=5)).startswith("payload_json: ")
    assert job_count(dsn) == 0


@pytest.mark.parametrize("size", [10, 600])
def test_a_bad_payload_json_in_a_batch_names_the_entry_and_writes_no_job_of_it(
        stub: Stub, dsn: str, size: int) -> None:
    bad = size - 3
    for case, text in [("a scalar", "3"), ("NUL in a key", BAD_TEXTS["NUL in a key"]),
                       ("21 levels", nested(21))]:
        reqs = [req(f'{{"i": {i}}}') for i in range(size)]
        reqs[bad] = req(text)
        for answer in (pb.EnqueueBatchRequest.ANSWER_JOBS, IDS):
            details = refusal(lambda r=reqs, a=answer: stub.EnqueueBatch(  # type: ignore[misc]
                pb.EnqueueBatchRequest(jobs=r, answer=a), timeout=30))
            assert details.startswith(f"jobs[{bad}].payload_json: "), (case, details)
    assert job_count(dsn) == 0


def test_depth_is_20_levels_and_brackets_inside_strings_do_not_count(stub: Stub) -> None:
    deepest = stub.Enqueue(req(nested(20)), timeout=5).job
    assert to_python(deepest.payload) == json.loads(nested(20))
    assert "20 levels" in refusal(lambda: stub.Enqueue(req(nested(21)), timeout=5))
    mixed = '{"a":' + "[" * 18 + "{}" + "]" * 18 + "}"  # 20 levels of arrays and objects
    assert to_python(stub.Enqueue(req(mixed), timeout=5).job.payload) == json.loads(mixed)
    shallow = json.dumps({"text": "{[" * 500, "more": ["[{" * 100]})
    assert to_python(stub.Enqueue(req(shallow), timeout=5).job.payload) == json.loads(shallow)


def test_an_answer_the_enum_does_not_name_is_refused(stub: Stub, dsn: str) -> None:
    details = refusal(lambda: stub.EnqueueBatch(pb.EnqueueBatchRequest(
        jobs=[req()], answer=7), timeout=5))  # type: ignore[arg-type]
    assert details.startswith("answer: ")
    assert job_count(dsn) == 0


@pytest.fixture
def metered(dsn: str) -> Iterator[tuple[BrokerProcess, int]]:
    """A broker serving /metrics, and that port."""
    port = free_port()
    broker = start_broker(dsn, FORGE_METRICS_PORT=str(port))
    yield broker, port
    broker.stop()


def enqueued_total(port: int, type: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    line = f'forge_jobs_enqueued_total{{type="{type}"}} '
    return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))


@pytest.mark.parametrize("size", [10, 600])
def test_answer_ids_gives_each_entrys_job_id_in_order(
        metered: tuple[BrokerProcess, int], dsn: str, size: int) -> None:
    broker, port = metered
    with grpc.insecure_channel(broker.target) as channel:
        stub = Stub(channel)
        old = stub.Enqueue(req('{"i": -1}', idempotency_key="old"), timeout=5).job
        again = size - 2  # in the last part of a batch in parts
        reqs = [req(f'{{"i": {i}}}', type="even" if i % 2 == 0 else "odd") for i in range(size)]
        reqs[1] = req('{"i": 1}', type="odd", idempotency_key="shared")
        reqs[again] = req(f'{{"i": {again}}}', type="even", idempotency_key="shared")
        reqs[5] = req('{"i": 5}', type="odd", idempotency_key="old")
        resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs, answer=IDS), timeout=30)
    assert len(resp.jobs) == 0 and len(resp.ids) == size
    assert resp.created == size - 2
    assert resp.ids[5] == old.id and resp.ids[again] == resp.ids[1]
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT id::text, (payload->>'i')::int FROM forge.jobs").fetchall()
    payload_i = dict(rows)
    assert len(payload_i) == size - 2 + 1
    assert [payload_i[job_id] for job_id in resp.ids] == [
        -1 if i == 5 else 1 if i == again else i for i in range(size)]
    assert enqueued_total(port, "even") == (size + 1) // 2 - 1
    assert enqueued_total(port, "odd") == size // 2 - 1


def test_rest_takes_payload_json_and_answers_ids(broker: BrokerProcess,
                                                  rest: httpx.Client) -> None:
    one = rest.post("/v1/jobs", json={"type": "x", "payloadJson": '{"a": 1, "b": ["é"]}'})
    assert one.status_code == 200, one.text
    assert one.json()["job"]["payload"] == {"a": 1, "b": ["é"]}
    batch = rest.post("/v1/jobs:batch", json={"answer": "ANSWER_IDS", "jobs": [
        {"type": "x", "payloadJson": '{"n": 1}'}, {"type": "x", "payload": {"n": 2}}]})
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["created"] == 2 and len(body["ids"]) == 2 and not body.get("jobs")
    assert [rest.get(f"/v1/jobs/{i}").json()["payload"] for i in body["ids"]] == [{"n": 1},
                                                                                 {"n": 2}]
    bad = rest.post("/v1/jobs:batch", json={"jobs": [{"type": "x"}, {"type": "x",
                                                                     "payloadJson": "[1]"}]})
    assert bad.status_code == 400 and "jobs[1].payload_json" in bad.text


def test_a_schedules_payload_json_is_the_payload_of_every_job_it_fires(
        broker: BrokerProcess) -> None:
    with Client(broker.target) as client:
        refused = refusal(lambda: client.stub.PutSchedule(pb.Schedule(
            name="bad", every=Duration(seconds=1), job=req("[]")), timeout=5))
        assert refused.startswith("job.payload_json: ")
        put = client.stub.PutSchedule(pb.Schedule(name="tick", every=Duration(seconds=1),
                                                  job=req('{"n": 1, "s": "é"}')), timeout=5)
        assert to_python(put.job.payload) == {"n": 1, "s": "é"}
        assert wait_until(lambda: client.get_schedule("tick").last_job_id != "", timeout=10)
        fired = client.get(client.get_schedule("tick").last_job_id)
        assert to_python(fired.payload) == {"n": 1, "s": "é"}


async def test_the_python_clients_send_payload_json_and_ask_for_ids(
        broker: BrokerProcess) -> None:
    payload = {"s": "Zoë", "n": [1, 2.5, None, {"deep": True}]}
    with Client(broker.target) as client:
        assert to_python(client.enqueue("pj", payload).payload) == payload
        sent = [enqueue_request("pj", {"i": i}) for i in range(3)]
        ids = client.enqueue_batch(sent, ids_only=True)
        assert [to_python(client.get(i).payload) for i in ids] == [{"i": i} for i in range(3)]
        jobs = client.enqueue_batch(sent[:1])
        assert to_python(jobs[0].payload) == {"i": 0}
        with pytest.raises(ValueError):
            client.enqueue("pj", {"n": float("nan")})
    async with AsyncClient(broker.target) as aclient:
        async_ids = await aclient.enqueue_batch([enqueue_request("pj", {"i": 7})], ids_only=True)
        assert to_python((await aclient.get(async_ids[0])).payload) == {"i": 7}



def test_numbers_postgresql_numeric_cannot_hold_are_stored_as_the_doubles_they_read_as(
        stub: Stub) -> None:
    tiny = "0." + "0" * 20_000 + "1"  # more digits after the point than numeric keeps
    job = stub.Enqueue(req(f'{{"a": 1e-20000, "b": {tiny}, "c": 1E+2}}'), timeout=5).job
    assert to_python(job.payload) == {"a": 0, "b": 0, "c": 100}
    assert stub.GetJob(pb.GetJobRequest(id=job.id), timeout=5) == job



def test_the_cli_enqueues_a_payload_and_refuses_nan_in_one_line(broker: BrokerProcess,
                                                                dsn: str) -> None:
    ok = run_module("forge.cli", "--broker", broker.target, "enqueue", "pj", '{"s": "é", "n": [1]}')
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["payload"] == {"s": "é", "n": [1]}
    for text in ('{"n": NaN}', '{"n": 1e999}'):
        bad = run_module("forge.cli", "--broker", broker.target, "enqueue", "pj", text)
        assert bad.returncode != 0 and "Traceback" not in bad.stderr, bad.stderr
        assert bad.stderr.strip().startswith("forge: payload is not valid JSON")
    assert job_count(dsn) == 1


NUMBERS = st.one_of(
    st.integers().map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["-0", "-0.0", "1E+2", "1e-20000", "0." + "0" * 20_000 + "1", "9" * 400,
                     "2e308", "-1e308", "18446744073709551616"]))
LEAVES = st.one_of(NUMBERS, st.text(max_size=8).map(json.dumps),
                   st.sampled_from(["true", "false", "null", '"\\ud83d\\ude00"']))


def json_arrays(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")


def json_objects(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.dictionaries(st.text(max_size=4), children, max_size=4).map(
        lambda d: "{" + ",".join(f"{json.dumps(k)}: {v}" for k, v in d.items()) + "}")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=json_objects(st.recursive(LEAVES, lambda c: json_arrays(c) | json_objects(c),
                                      max_leaves=12)))
def test_any_json_object_text_is_stored_as_it_reads_or_refused_naming_the_field(
        stub: Stub, text: str) -> None:
    try:
        job = stub.Enqueue(req(text), timeout=10).job
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (text[:200], exc.details())
        assert exc.details().startswith("payload_json: ")
        return
    expected = Struct()
    expected.update(orjson.loads(text))
    assert job.payload == expected
    # Compared as Python values, where -0.0 == 0: jsonb's numeric has no negative zero.
    stored = stub.GetJob(pb.GetJobRequest(id=job.id), timeout=5).payload
    assert to_python(stored) == to_python(expected)


@pytest.mark.parametrize("payload", [
    {}, {"n": 5}, {"a": [1, 2.5, -0.0, None, True, False, "x\u00e9\n\"\\"]},
    {"deep": {"er": {"est": [[], {}]}}}, {1: "an int key", 2.5: "a float key", None: "null"},
    {"big": 10 ** 30, "small": 1e-300, "ünï": "codé"},
])
def test_the_clients_payload_json_writes_what_json_dumps_writes(payload: dict[object, object]) -> None:
    assert payload_json(payload) == json.dumps(payload, separators=(",", ":"), allow_nan=False)


def test_the_clients_payload_json_refuses_what_json_dumps_refuses() -> None:
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    for bad, error in (({"x": math.nan}, ValueError), ({"x": -math.inf}, ValueError),
                       (cycle, ValueError), ({"x": object()}, TypeError)):
        with pytest.raises(error):
            payload_json(bad)
    assert payload_json({"after": "a refusal"}) == '{"after":"a refusal"}'
