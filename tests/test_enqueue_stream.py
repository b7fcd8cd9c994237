"""EnqueueStream: many Enqueues over one open stream, each answered by its request_id with what
Enqueue would answer, a refused one with its error while the stream goes on. Real broker,
PostgreSQL and gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from collections.abc import Iterator

import grpc
import psycopg
import pytest

from forge import AsyncClient, EnqueueStream, ForgeClientError
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.support import BrokerProcess, job_count, start_broker

Stub = broker_pb2_grpc.BrokerStub


def req(request_id: int, **job: object) -> pb.EnqueueStreamRequest:
    job.setdefault("type", "stream.job")
    return pb.EnqueueStreamRequest(request_id=request_id, job=pb.EnqueueRequest(**job))  # type: ignore[arg-type]


class Open:
    """An open EnqueueStream whose requests are sent one by one, as the test decides."""

    def __init__(self, stub: Stub, **kw: object) -> None:
        self._out: queue.Queue[pb.EnqueueStreamRequest | None] = queue.Queue()
        self.answers = stub.EnqueueStream(self._requests(), timeout=30, **kw)  # type: ignore[arg-type]

    def _requests(self) -> Iterator[pb.EnqueueStreamRequest]:
        while (r := self._out.get()) is not None:
            yield r

    def send(self, r: pb.EnqueueStreamRequest) -> None:
        self._out.put(r)

    def ask(self, r: pb.EnqueueStreamRequest) -> pb.EnqueueStreamResponse:
        self.send(r)
        return next(self.answers)

    def close(self) -> list[pb.EnqueueStreamResponse]:
        """Half-close; the answers still to come."""
        self._out.put(None)
        return list(self.answers)


def test_requests_sent_without_waiting_are_each_answered_once_by_id(stub: Stub, dsn: str) -> None:
    n = 600
    reqs = [req(1000 + i, payload_json=json.dumps({"i": i}), priority=i % 7) for i in range(n)]
    answers = list(stub.EnqueueStream(iter(reqs), timeout=30))
    by_id = {a.request_id: a for a in answers}
    assert len(answers) == n and set(by_id) == {r.request_id for r in reqs}
    for r in reqs:
        answer = by_id[r.request_id]
        assert answer.WhichOneof("result") == "enqueued" and answer.enqueued.created
        job = answer.enqueued.job
        assert job.payload["i"] == r.request_id - 1000 and job.priority == r.job.priority
        assert stub.GetJob(pb.GetJobRequest(id=job.id), timeout=5) == job
    assert job_count(dsn) == n


def test_an_idempotency_key_answers_the_existing_job_as_enqueue_does(stub: Stub) -> None:
    first = stub.Enqueue(pb.EnqueueRequest(type="stream.job", idempotency_key="k1"), timeout=5).job
    stream = Open(stub)
    again = stream.ask(req(7, idempotency_key="k1"))
    assert again.request_id == 7 and not again.enqueued.created and again.enqueued.job == first
    new = stream.ask(req(8, idempotency_key="k2"))
    assert new.enqueued.created
    assert stream.ask(req(9, idempotency_key="k2")).enqueued.job.id == new.enqueued.job.id
    assert stream.close() == []


def test_a_request_asking_for_ids_is_answered_with_its_jobs_id_alone(stub: Stub) -> None:
    ids = pb.EnqueueBatchRequest.ANSWER_IDS
    stream = Open(stub)
    new = stream.ask(pb.EnqueueStreamRequest(request_id=1, answer=ids, job=pb.EnqueueRequest(
        type="stream.job", payload_json='{"a": 1}', idempotency_key="k", priority=3)))
    assert new.request_id == 1 and new.enqueued.created
    job = stub.GetJob(pb.GetJobRequest(id=new.enqueued.job.id), timeout=5)
    assert (job.type, dict(job.payload), job.priority) == ("stream.job", {"a": 1.0}, 3)
    assert new.enqueued.job == pb.Job(id=job.id)
    again = stream.ask(pb.EnqueueStreamRequest(request_id=2, answer=ids, job=pb.EnqueueRequest(
        type="stream.job", idempotency_key="k")))
    assert not again.enqueued.created and again.enqueued.job == pb.Job(id=job.id)
    full = stream.ask(req(3, idempotency_key="k"))
    assert full.enqueued.job == job
    assert stream.close() == []


@pytest.mark.parametrize(("job", "field"), [
    ({"type": ""}, "job.type"),
    ({"priority": 5000}, "job.priority"),
    ({"payload_json": "[1]"}, "job.payload_json"),
    ({"max_retries": -1}, "job.max_retries"),
])
def test_a_refused_request_names_its_field_and_the_stream_goes_on(
        stub: Stub, dsn: str, job: dict[str, object], field: str) -> None:
    stream = Open(stub)
    refused = stream.ask(req(1, **job))
    assert refused.request_id == 1 and refused.WhichOneof("result") == "error"
    assert refused.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert refused.error.message.startswith(f"{field}:"), refused.error.message
    assert stream.ask(req(2)).enqueued.created
    assert stream.close() == []
    assert job_count(dsn) == 1


def test_a_job_on_the_stream_is_handed_to_a_worker_waiting_idle(stub: Stub) -> None:
    leases = stub.Lease(pb.LeaseRequest(worker_id="stream-idle", types=["stream.idle"]),
                        timeout=30)
    pushed: queue.Queue[pb.LeaseResponse] = queue.Queue()

    def receive() -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled at the end
            for r in leases:
                pushed.put(r)

    threading.Thread(target=receive, daemon=True).start()
    time.sleep(0.5)  # the lease stream is open and has found nothing to claim
    stream = Open(stub)
    answer = stream.ask(req(1, type="stream.idle"))
    job = answer.enqueued.job
    assert job.status == pb.Job.PROCESSING and job.attempts == 1 and job.worker_id == "stream-idle"
    assert pushed.get(timeout=10).jobs[0].job.id == job.id
    leases.cancel()
    stream.close()


def test_half_closing_a_stream_with_nothing_sent_ends_it_cleanly(stub: Stub) -> None:
    assert list(stub.EnqueueStream(iter([]), timeout=10)) == []


def test_a_message_that_does_not_parse_ends_the_stream_invalid_argument(
        broker: BrokerProcess) -> None:
    with grpc.insecure_channel(broker.target) as channel:
        raw = channel.stream_stream("/forge.v1.Broker/EnqueueStream",
                                    request_serializer=lambda b: b,
                                    response_deserializer=pb.EnqueueStreamResponse.FromString)
        good = req(1).SerializeToString()
        answers = raw(iter([good, b"\x12\x05\xff\xff"]), timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            list(answers)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "EnqueueStreamRequest" in (err.value.details() or "")


def test_a_client_that_goes_away_mid_stream_loses_no_job_it_was_answered(
        stub: Stub, dsn: str) -> None:
    stream = Open(stub)
    answered = [stream.ask(req(i)).enqueued.job.id for i in range(20)]
    for i in range(20, 220):
        stream.send(req(i))
    stream.answers.cancel()
    time.sleep(1.0)  # whatever the broker took goes in; nothing half-written
    stored = job_count(dsn)
    assert 20 <= stored <= 220
    for job_id in answered:
        assert stub.GetJob(pb.GetJobRequest(id=job_id), timeout=5).status == pb.Job.PENDING
    assert stub.Enqueue(pb.EnqueueRequest(type="stream.after"), timeout=5).created


def test_the_python_client_stream_answers_concurrent_enqueues_each_its_own(
        broker: BrokerProcess) -> None:
    async def main() -> tuple[list[pb.Job], ForgeClientError]:
        async with AsyncClient(broker.target) as client, EnqueueStream(client) as stream:
            jobs = await asyncio.gather(*(stream.enqueue("stream.client", {"i": i}, priority=i)
                                          for i in range(50)))
            with pytest.raises(ForgeClientError) as refused:
                await stream.enqueue("stream.client", priority=5000)
            again = await stream.enqueue("stream.client", {"i": 0}, idempotency_key="once")
            assert (await stream.enqueue("stream.client", idempotency_key="once")).id == again.id
            assert await stream.enqueue_id("stream.client", idempotency_key="once") == again.id
            new_id = await stream.enqueue_id("stream.client", {"i": 50}, priority=50)
            assert (await client.get(new_id)).payload["i"] == 50
            return list(jobs), refused.value

    jobs, refused = asyncio.run(main())
    assert [j.payload["i"] for j in jobs] == list(range(50))
    assert [j.priority for j in jobs] == list(range(50))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details.startswith("job.priority:")


def test_the_python_client_stream_fails_waiting_enqueues_when_the_broker_goes(
        dsn: str) -> None:
    proc = start_broker(dsn)

    async def main() -> ForgeClientError:
        async with AsyncClient(proc.target, timeout=10) as client:
            stream = EnqueueStream(client)
            await stream.enqueue("stream.gone")
            proc.kill9()
            with pytest.raises(ForgeClientError) as gone:
                await stream.enqueue("stream.gone")
            await stream.close()
            return gone.value

    try:
        gone = asyncio.run(main())
    finally:
        proc.stop()
    assert gone.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def test_a_stopping_broker_answers_what_it_took_then_ends_open_streams_unavailable(
        dsn: str) -> None:
    proc = start_broker(dsn)
    try:
        with grpc.insecure_channel(proc.target) as channel:
            stream = Open(broker_pb2_grpc.BrokerStub(channel))
            answered = stream.ask(req(1)).enqueued.job
            started = time.monotonic()
            stopping = threading.Thread(target=proc.stop)
            stopping.start()
            with pytest.raises(grpc.RpcError) as ended:
                next(stream.answers)
            stopping.join()
            took = time.monotonic() - started
    finally:
        proc.stop()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (ended.value.details() or "")
    assert took < 4, "the open stream did not hold the broker for its whole grace period"
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status FROM forge.jobs WHERE id = %s", (answered.id,)).fetchone()
    assert row == ("PENDING",)
