"""OpenTelemetry tracing end to end: a real broker, workerd and gateway (subprocesses) export
their spans to a real OTLP receiver that the test starts on loopback (a gRPC server of
opentelemetry.proto's TraceService), and the test reads the parent-child chain from what
arrived: producer span -> broker Enqueue -> one handler span per attempt."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import TracerProvider

from forge import AsyncClient, Client, EnqueueStream
from forge.v1 import broker_pb2 as pb
from forge_common.tracing import enabled
from tests.conftest import drop_database, new_database
from tests.support import (
    BrokerProcess,
    GatewayProcess,
    WorkerdProcess,
    wait_until,
    workers,
)
from tests.workerd_support import create_effects_table, job_row

WORKER = "trace-worker"
PRODUCER = TracerProvider().get_tracer("test-producer")


@dataclass(frozen=True)
class Exported:
    """One span as it arrived, with the service.name of the process that sent it."""

    service: str
    span: Span

    def attr(self, key: str) -> Any:
        for kv in self.span.attributes:
            if kv.key == key:
                value = kv.value
                return getattr(value, value.WhichOneof("value"))
        return None


class Receiver(otlp_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver on a loopback port, keeping every span it is sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Exported] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        otlp_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def Export(self, request: otlp.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> otlp.ExportTraceServiceResponse:
        got = []
        for rs in request.resource_spans:
            service = next((kv.value.string_value for kv in rs.resource.attributes
                            if kv.key == "service.name"), "")
            got += [Exported(service, s) for ss in rs.scope_spans for s in ss.spans]
        with self._lock:
            self._spans += got
        return otlp.ExportTraceServiceResponse()

    def spans(self) -> list[Exported]:
        with self._lock:
            return list(self._spans)

    def env(self) -> dict[str, str]:
        """What points a service at this receiver, exporting every 100 ms."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.server.start()
    yield r
    r.server.stop(None)


@dataclass
class Stack:
    dsn: str
    broker: BrokerProcess
    client: Client
    gateway: GatewayProcess


@contextlib.contextmanager
def running(pg_admin_dsn: str, env: Mapping[str, str | None]) -> Iterator[Stack]:
    """A broker, a workerd and a gateway on a fresh database, each with ``env`` over this
    process's environment (a None value unsets a variable)."""
    dsn = new_database(pg_admin_dsn)
    create_effects_table(dsn)
    broker = BrokerProcess(dsn)
    broker.env.update(env)  # type: ignore[arg-type]
    broker.start()
    gateway = GatewayProcess(broker.target)
    gateway.env.update(env)  # type: ignore[arg-type]
    try:
        gateway.start()
        worker = WorkerdProcess(broker.target, WORKER, effects_dsn=dsn, lease_seconds=5)
        worker.env.update(env)  # type: ignore[arg-type]
        with workers(worker), Client(broker.target) as client:
            yield Stack(dsn, broker, client, gateway)
    finally:
        gateway.stop()
        broker.stop()
        drop_database(pg_admin_dsn, dsn)


def no_otel() -> dict[str, str | None]:
    """Every OTEL_* variable of this process unset."""
    return {k: None for k in os.environ if k.startswith("OTEL_")}


@pytest.fixture(scope="module")
def traced(pg_admin_dsn: str, template_dsn: str, receiver: Receiver) -> Iterator[Stack]:
    with running(pg_admin_dsn, {**no_otel(), **receiver.env()}) as stack:
        yield stack


def finished(stack: Stack, job_id: str) -> None:
    assert wait_until(lambda: job_row(stack.dsn, job_id)["status"] == "COMPLETED", timeout=15), \
        job_row(stack.dsn, job_id)


def attempts_of(receiver: Receiver, job_id: str, n: int) -> list[Exported]:
    """The handler spans of ``job_id`` once ``n`` have arrived, by attempt."""
    def spans() -> list[Exported]:
        return [e for e in receiver.spans() if e.attr("forge.job.id") == job_id]

    assert wait_until(lambda: len(spans()) >= n, timeout=15), receiver.spans()
    return sorted(spans(), key=lambda e: int(e.attr("forge.job.attempt")))


def child_of(receiver: Receiver, name: str, parent_id: bytes) -> Exported:
    """The span named ``name`` whose parent is ``parent_id``, once it has arrived."""
    def found() -> list[Exported]:
        return [e for e in receiver.spans()
                if e.span.name == name and e.span.parent_span_id == parent_id]

    assert wait_until(lambda: len(found()) == 1, timeout=15), receiver.spans()
    return found()[0]


def ids(span: Any) -> tuple[bytes, bytes]:
    """An SDK span's trace id and span id, as OTLP carries them."""
    ctx = span.get_span_context()
    return ctx.trace_id.to_bytes(16, "big"), ctx.span_id.to_bytes(8, "big")


def test_a_job_that_fails_once_traces_the_enqueue_and_both_attempts_in_the_producers_trace(
        traced: Stack, receiver: Receiver) -> None:
    with PRODUCER.start_as_current_span("producer") as producer:
        job = traced.client.enqueue("flaky_once", {})
    trace_id, producer_id = ids(producer)
    finished(traced, job.id)

    enqueue = child_of(receiver, "forge.v1.Broker/Enqueue", producer_id)
    assert enqueue.service == "forge-broker"
    assert enqueue.span.trace_id == trace_id
    assert enqueue.span.kind == Span.SPAN_KIND_SERVER
    first, second = attempts_of(receiver, job.id, 2)
    for attempt, n in ((first, 1), (second, 2)):
        assert attempt.service == "forge-workerd"
        assert attempt.span.name == "forge.job flaky_once"
        assert attempt.span.trace_id == trace_id
        assert attempt.span.parent_span_id == enqueue.span.span_id
        assert attempt.attr("forge.job.attempt") == n
        assert attempt.attr("forge.job.type") == "flaky_once"
        assert attempt.attr("forge.worker.id") == WORKER
    assert first.span.status.code == Status.STATUS_CODE_ERROR
    assert "first attempt fails" in first.span.status.message
    assert second.span.status.code != Status.STATUS_CODE_ERROR
    # The job carries the enqueue span's context, which is what the worker continued.
    stored = traced.client.get(job.id).trace_context["traceparent"]
    assert stored.split("-")[1:3] == [trace_id.hex(), enqueue.span.span_id.hex()]


def test_each_job_of_a_batch_is_traced_as_a_child_of_the_batchs_enqueue(
        traced: Stack, receiver: Receiver) -> None:
    with PRODUCER.start_as_current_span("batch producer") as producer:
        jobs = traced.client.enqueue_batch([pb.EnqueueRequest(type="echo"),
                                            pb.EnqueueRequest(type="echo")])
    trace_id, producer_id = ids(producer)
    batch = child_of(receiver, "forge.v1.Broker/EnqueueBatch", producer_id)
    for job in jobs:
        finished(traced, job.id)
        [attempt] = attempts_of(receiver, job.id, 1)
        assert attempt.span.trace_id == trace_id
        assert attempt.span.parent_span_id == batch.span.span_id


def test_each_job_on_an_enqueue_stream_is_traced_in_a_span_of_its_own(
        traced: Stack, receiver: Receiver) -> None:
    async def send() -> list[pb.Job]:
        async with AsyncClient(traced.broker.target) as client, EnqueueStream(client) as stream:
            return [await stream.enqueue("echo", {"i": i}) for i in range(2)]

    with PRODUCER.start_as_current_span("stream producer") as producer:
        jobs = asyncio.run(send())
    trace_id, producer_id = ids(producer)
    for job in jobs:
        finished(traced, job.id)
        [attempt] = attempts_of(receiver, job.id, 1)
        assert attempt.span.trace_id == trace_id
        parent = attempt.span.parent_span_id

        def enqueue(parent: bytes = parent) -> list[Exported]:
            return [e for e in receiver.spans() if e.span.span_id == parent]

        assert wait_until(lambda: enqueue() != [], timeout=15), receiver.spans()
        [span] = enqueue()
        assert span.span.name == "forge.v1.Broker/EnqueueStream"
        assert span.span.parent_span_id == producer_id


def test_a_rest_enqueue_with_a_traceparent_header_continues_that_trace(
        traced: Stack, receiver: Receiver) -> None:
    trace_id, parent_id = os.urandom(16), os.urandom(8)
    header = f"00-{trace_id.hex()}-{parent_id.hex()}-01"
    r = httpx.post(f"{traced.gateway.url}/v1/jobs", json={"type": "echo"},
                   headers={"traceparent": header}, timeout=10)
    assert r.status_code == 200, r.text
    job_id = r.json()["job"]["id"]
    finished(traced, job_id)

    http = child_of(receiver, "POST /v1/jobs", parent_id)
    assert http.service == "forge-gateway"
    assert http.attr("http.response.status_code") == 200
    enqueue = child_of(receiver, "forge.v1.Broker/Enqueue", http.span.span_id)
    [attempt] = attempts_of(receiver, job_id, 1)
    assert {http.span.trace_id, enqueue.span.trace_id, attempt.span.trace_id} == {trace_id}
    assert attempt.span.parent_span_id == enqueue.span.span_id


def test_an_untraced_gateway_forwards_the_traceparent_header_to_the_broker(
        traced: Stack, receiver: Receiver) -> None:
    gateway = GatewayProcess(traced.broker.target)
    gateway.env.update(no_otel())  # type: ignore[arg-type]
    gateway.start()
    try:
        trace_id, parent_id = os.urandom(16), os.urandom(8)
        r = httpx.post(f"{gateway.url}/v1/jobs", json={"type": "echo"}, timeout=10,
                       headers={"traceparent": f"00-{trace_id.hex()}-{parent_id.hex()}-01"})
    finally:
        gateway.stop()
    assert r.status_code == 200, r.text
    enqueue = child_of(receiver, "forge.v1.Broker/Enqueue", parent_id)
    assert enqueue.span.trace_id == trace_id
    assert not [e for e in receiver.spans() if e.service == "forge-gateway"
                and e.span.trace_id == trace_id]


@pytest.mark.parametrize("setting", [{}, {"OTEL_TRACES_EXPORTER": "none"}],
                         ids=["no OTEL variables", "exporter none"])
def test_without_tracing_configured_nothing_is_exported_and_jobs_still_run(
        pg_admin_dsn: str, template_dsn: str, receiver: Receiver,
        setting: dict[str, str]) -> None:
    # "exporter none" names the receiver as the endpoint: only the setting keeps spans away.
    env = {**no_otel(), **({**receiver.env(), **setting} if setting else {})}
    before = len(receiver.spans())
    with running(pg_admin_dsn, env) as stack:
        with PRODUCER.start_as_current_span("producer"):
            job = stack.client.enqueue("flaky_once", {})
            r = httpx.post(f"{stack.gateway.url}/v1/jobs", json={"type": "echo"},
                           headers={"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}, timeout=10)
        assert r.status_code == 200, r.text
        finished(stack, job.id)
        finished(stack, r.json()["job"]["id"])
        assert job_row(stack.dsn, job.id)["trace_context"] is None
        assert not stack.client.get(job.id).trace_context
    assert len(receiver.spans()) == before  # the services have exited: nothing is buffered


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ({"OTEL_SERVICE_NAME": "x", "OTEL_RESOURCE_ATTRIBUTES": "a=b"}, False),
])
def test_tracing_is_on_exactly_when_an_exporter_or_an_endpoint_is_configured(
        env: dict[str, str], on: bool) -> None:
    assert enabled(env) is on
