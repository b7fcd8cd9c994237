"""Helpers for the gateway tests: a hung broker, job types of their own, jobs leased or dead.

The gateway process is ``tests.support.GatewayProcess``; the fixtures built on it live in
``tests/gateway_fixtures.py``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator

import grpc

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc

SEED_JOB = {
    "type": "email",
    "payload": {"to": "user@example.com", "subject": "Hello"},
    "priority": 10,
    "max_retries": 5,
}


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A TCP listener that accepts connections and never answers: a hung broker.

    Yields its ``host:port``.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        sock.close()


def unique_type(prefix: str = "gw") -> str:
    """A job type no other test uses."""
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def make_dead_job(target: str, job_type: str, timeout: float = 15.0) -> str:
    """A job of ``job_type`` driven to DEAD the way a worker would: enqueue with max_retries 0,
    lease it over gRPC, nack it. Returns its id."""
    job_id, lease_token = lease_one(target, job_type, timeout, max_retries=0)
    with grpc.insecure_channel(target) as channel:
        out = pb_grpc.BrokerStub(channel).Nack(
            pb.NackRequest(job_id=job_id, lease_token=lease_token, error="boom"), timeout=timeout
        )
    assert out.status == pb.Job.DEAD
    return job_id


def lease_one(target: str, job_type: str, timeout: float = 15.0,
              max_retries: int | None = None) -> tuple[str, str]:
    """Enqueue a job of ``job_type`` and lease it; returns (job id, lease token). The job stays
    leased after the stream closes, until it is settled or its lease expires."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.BrokerStub(channel)
        job = stub.Enqueue(pb.EnqueueRequest(type=job_type, max_retries=max_retries),
                           timeout=timeout).job
        stream = stub.Lease(
            pb.LeaseRequest(worker_id=f"gw-test-{job_type}", types=[job_type]), timeout=timeout
        )
        try:
            for batch in stream:
                for leased in batch.jobs:
                    if leased.job.id == job.id:
                        return job.id, leased.lease_token
        finally:
            stream.cancel()
    raise AssertionError("the lease stream ended without delivering the job")
