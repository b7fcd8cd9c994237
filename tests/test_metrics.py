"""Operations end to end: Prometheus metrics of a real broker and workerd scraped over HTTP,
JSON log lines from every process, and the broker's health around migrations and SIGTERM."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from forge import Client
from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from tests.support import (
    BrokerProcess,
    WorkerdProcess,
    drop_database,
    free_port,
    start_broker,
    start_gateway,
    wait_until,
    workers,
)
from tests.workerd_support import create_effects_table, status_counts

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """GET /metrics and return every sample as {(name, labels): value}."""
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    resp.raise_for_status()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5).status)


@dataclass
class Stack:
    dsn: str
    broker: BrokerProcess
    broker_metrics: int
    worker: WorkerdProcess
    worker_metrics: int


@pytest.fixture
def stack(dsn: str) -> Iterator[Stack]:
    """A broker and one workerd (test handlers), both with /metrics on free ports."""
    create_effects_table(dsn)
    broker_port, worker_port = free_port(), free_port()
    broker = start_broker(dsn, FORGE_METRICS_PORT=str(broker_port), FORGE_BACKOFF_BASE="0.1")
    try:
        worker = WorkerdProcess(broker.target, "metrics-worker", effects_dsn=dsn, concurrency=4,
                                grace=1, extra=("--metrics-port", str(worker_port)))
        with workers(worker):
            yield Stack(dsn, broker, broker_port, worker, worker_port)
    finally:
        broker.stop()


def test_broker_and_workerd_metrics_count_each_job_outcome_by_type(stack: Stack) -> None:
    with Client(stack.broker.target) as client:
        for i in range(3):
            client.enqueue("echo", {"i": i})
        client.enqueue("echo", {"i": 0}, idempotency_key="once")
        client.enqueue("echo", {"i": 0}, idempotency_key="once")  # not created again
        client.enqueue_batch([pb.EnqueueRequest(type="echo_async"),
                              pb.EnqueueRequest(type="echo_async")])
        client.enqueue("boom", max_retries=1)  # fails, retries after 0.1 s, fails: DEAD
        client.enqueue("fail_hard")  # Fail: DEAD at once

    def settled() -> bool:
        return status_counts(stack.dsn) == {"COMPLETED": 6, "DEAD": 2}

    assert wait_until(settled, timeout=30), (status_counts(stack.dsn), stack.worker.log_text())

    # The gauges follow the database's counters within a tick or two.
    def gauges_caught_up() -> bool:
        s = scrape(stack.broker_metrics)
        return (value(s, "forge_queue_depth", type="echo", status="completed") == 4
                and value(s, "forge_queue_depth", type="boom", status="dead") == 1)

    assert wait_until(gauges_caught_up, timeout=10), scrape(stack.broker_metrics)
    b = scrape(stack.broker_metrics)
    assert value(b, "forge_jobs_enqueued_total", type="echo") == 4
    assert value(b, "forge_jobs_enqueued_total", type="echo_async") == 2
    assert value(b, "forge_jobs_enqueued_total", type="boom") == 1
    assert value(b, "forge_jobs_completed_total", type="echo") == 4
    assert value(b, "forge_jobs_completed_total", type="echo_async") == 2
    assert value(b, "forge_jobs_failed_total", type="boom") == 1
    assert value(b, "forge_jobs_dead_total", type="boom") == 1
    assert value(b, "forge_jobs_dead_total", type="fail_hard") == 1
    assert value(b, "forge_jobs_completed_total", type="(unknown)") is None
    assert value(b, "forge_queue_wait_seconds_count", type="echo") == 4
    assert value(b, "forge_queue_wait_seconds_count", type="boom") == 2  # two attempts
    wait_sum = value(b, "forge_queue_wait_seconds_sum", type="boom")
    assert wait_sum is not None and 0 <= wait_sum < 30
    assert value(b, "forge_lease_duration_seconds_count", type="echo") == 4
    assert value(b, "forge_lease_duration_seconds_count", type="fail_hard") == 1
    assert value(b, "forge_queue_depth", type="echo_async", status="completed") == 2
    assert value(b, "forge_queue_depth", type="echo", status="pending") == 0
    assert value(b, "forge_queue_depth", type="fail_hard", status="dead") == 1
    assert value(b, "forge_lease_streams") == 1
    assert value(b, "forge_worker_in_flight", worker_id="metrics-worker") == 0
    assert not any(name == "forge_jobs_enqueued_total" and "id" in dict(labels)
                   for name, labels in b)

    w = scrape(stack.worker_metrics)
    assert value(w, "forge_worker_jobs_total", type="echo", outcome="completed") == 4
    assert value(w, "forge_worker_jobs_total", type="echo_async", outcome="completed") == 2
    assert value(w, "forge_worker_jobs_total", type="boom", outcome="failed") == 2
    assert value(w, "forge_worker_jobs_total", type="fail_hard", outcome="failed_permanent") == 1
    assert value(w, "forge_worker_job_duration_seconds_count", type="echo") == 4
    assert value(w, "forge_worker_in_flight") == 0
    assert value(w, "forge_worker_connected") == 1


def test_gauges_show_a_running_job_in_flight_then_worker_disconnects(stack: Stack) -> None:
    with Client(stack.broker.target) as client:
        client.enqueue("long", {"seconds": 30})

    def holding() -> bool:
        b, w = scrape(stack.broker_metrics), scrape(stack.worker_metrics)
        return (value(b, "forge_worker_in_flight", worker_id="metrics-worker") == 1
                and value(b, "forge_queue_depth", type="long", status="processing") == 1
                and value(w, "forge_worker_in_flight") == 1)

    assert wait_until(holding, timeout=15), (scrape(stack.broker_metrics),
                                             scrape(stack.worker_metrics))
    stack.broker.stop()  # the worker's lease stream ends and the broker is not there to reopen it

    def disconnected() -> bool:
        return value(scrape(stack.worker_metrics), "forge_worker_connected") == 0

    assert wait_until(disconnected, timeout=20), stack.worker.log_text()


def test_rescued_lease_is_counted_as_failed_attempt_with_its_type(dsn: str) -> None:
    create_effects_table(dsn)
    port = free_port()
    broker = start_broker(dsn, FORGE_METRICS_PORT=str(port))
    try:
        worker = WorkerdProcess(broker.target, "doomed", effects_dsn=dsn, lease_seconds=1)
        with workers(worker), Client(broker.target) as client:
            job = client.enqueue("long", {"seconds": 60})
            assert wait_until(lambda: client.get(job.id).status == pb.Job.PROCESSING, 15)
            worker.kill9()  # no ack, no nack, no heartbeat: the lease expires

            def rescued() -> bool:
                return value(scrape(port), "forge_jobs_failed_total", type="long") == 1

            assert wait_until(rescued, timeout=15), broker.log_text()
            got = client.get(job.id)
            assert (got.status, got.attempts) == (pb.Job.PENDING, 1)
            assert value(scrape(port), "forge_lease_duration_seconds_count", type="long") is None
    finally:
        broker.stop()


def test_metrics_port_zero_serves_none_and_a_taken_port_does_not_stop_the_broker(dsn: str) -> None:
    off = start_broker(dsn, FORGE_METRICS_PORT="0")
    try:
        assert health(off.target) == SERVING
    finally:
        off.stop()
    assert "metrics at" not in off.log_text()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = start_broker(dsn, FORGE_METRICS_PORT=str(port))
        try:
            assert health(broker.target) == SERVING
            assert f"metrics endpoint off: cannot listen on 127.0.0.1:{port}" in broker.log_text()
        finally:
            broker.stop()


# -- logs ------------------------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line as a JSON object (fails on a line that is not one)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            assert {"ts", "level", "logger", "msg"} <= entry.keys(), line
            out.append(entry)
    return out


def test_broker_gateway_and_workerd_log_json_lines_on_request(dsn: str) -> None:
    create_effects_table(dsn)
    broker = start_broker(dsn, FORGE_LOG_FORMAT="json")
    gateway = None
    try:
        gateway = start_gateway(broker.target, FORGE_LOG_FORMAT="json")
        assert httpx.get(f"{gateway.url}/v1/stats", timeout=5).status_code == 200
        worker = WorkerdProcess(broker.target, "json-worker", effects_dsn=dsn,
                                extra=("--log-json",))
        with workers(worker):
            # workerd says "connected" once its Lease call is made; the broker logs the stream
            # when it has registered it, which may come a moment later.
            broker.wait_log("json-worker")
        gateway.stop()
        broker.stop()

        b = json_lines(broker.log_text())
        assert any(str(e["msg"]).startswith("broker ") and "listening" in str(e["msg"]) for e in b)
        assert any(e["logger"] == "forge.dispatch" and "json-worker" in str(e["msg"]) for e in b)
        assert all(str(e["ts"]).endswith("+00:00") for e in b)
        g = json_lines(gateway.log_text())
        assert any("gateway listening on" in str(e["msg"]) for e in g)
        assert any(str(e["logger"]).startswith("uvicorn") for e in g)
        w = json_lines(worker.log_text())
        assert w and all(e["worker_id"] == "json-worker" for e in w)
    finally:
        if gateway is not None:
            gateway.stop()
        broker.stop()


# -- health ----------------------------------------------------------------------------------


def test_health_is_not_serving_while_database_schema_is_behind(dsn: str) -> None:
    broker = start_broker(dsn)
    try:
        assert health(broker.target) == SERVING
        with psycopg.connect(dsn, autocommit=True) as conn:
            (latest,) = conn.execute("SELECT max(version) FROM forge.schema_migrations").fetchone()
            # As if the database were restored from before the newest migration.
            conn.execute("UPDATE forge.schema_migrations SET version = version - 1000 "
                         "WHERE version = %s", (latest,))
        assert wait_until(lambda: health(broker.target) == NOT_SERVING, timeout=10)
        assert f"this broker needs {latest}" in broker.log_text()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE forge.schema_migrations SET version = version + 1000 "
                         "WHERE version = %s", (latest - 1000,))
        assert wait_until(lambda: health(broker.target) == SERVING, timeout=10)
    finally:
        broker.stop()


def test_database_gauges_read_up_then_down_with_the_time_of_the_last_error(
        pg_admin_dsn: str, dsn: str) -> None:
    port = free_port()
    broker = start_broker(dsn, FORGE_METRICS_PORT=str(port))
    try:
        assert wait_until(lambda: value(scrape(port), "forge_database_up") == 1, timeout=10)
        assert value(scrape(port), "forge_database_last_error_timestamp_seconds") == 0
        before = time.time()
        drop_database(pg_admin_dsn, dsn)  # WITH (FORCE): the broker's connections end too
        assert wait_until(lambda: value(scrape(port), "forge_database_up") == 0, timeout=15)
        last_error = value(scrape(port), "forge_database_last_error_timestamp_seconds")
        assert last_error is not None and before <= last_error <= time.time()
    finally:
        broker.stop()


def test_health_turns_not_serving_on_sigterm_before_lease_streams_end(dsn: str) -> None:
    broker = start_broker(dsn)
    events: queue.Queue[str] = queue.Queue()
    with grpc.insecure_channel(broker.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="forge.v1.Broker"))
        lease = pb_grpc.BrokerStub(channel).Lease(
            pb.LeaseRequest(worker_id="watcher", types=["nothing-to-do"]))

        def follow_health() -> None:
            try:
                for resp in watch:
                    events.put("health:"
                               + health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
            except grpc.RpcError:
                pass  # cancelled below, or the broker went away

        def follow_lease() -> None:
            try:
                for _ in lease:
                    pass
                events.put("lease:ended")
            except grpc.RpcError as exc:
                events.put(f"lease:{exc.code().name}")

        threads = [threading.Thread(target=follow_health, daemon=True),
                   threading.Thread(target=follow_lease, daemon=True)]
        for t in threads:
            t.start()
        assert events.get(timeout=10) == "health:SERVING"
        assert wait_until(lambda: "opened a lease stream" in broker.log_text(), 10)
        assert broker.proc is not None
        broker.proc.terminate()
        seen = {events.get(timeout=10), events.get(timeout=10)}
        assert seen == {"health:NOT_SERVING", "lease:ended"}, seen
        watch.cancel()
    assert broker.stop() == 0
    # The broker's own order of events (the client's two streams need not arrive in order).
    log = broker.log_text()
    assert log.index("NOT_SERVING: shutting down") < log.index("watcher closed its lease stream")
