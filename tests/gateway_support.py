"""Helpers for the gateway tests: a real gateway process in front of a real broker.

The fixtures built on these live in ``tests/gateway_fixtures.py``.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import grpc

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from tests.support import ServiceProcess, free_port

SEED_JOB = {
    "type": "email",
    "payload": {"to": "user@example.com", "subject": "Hello"},
    "priority": 10,
    "max_retries": 5,
}


class GatewayProcess(ServiceProcess):
    """A real ``python -m forge_gateway`` subprocess (uvicorn) on a loopback port."""

    def __init__(self, broker: str, *args: str, **env: str) -> None:
        super().__init__("gateway")
        self.broker = broker
        self.args = list(args)
        self.env = env
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        args = ["--broker", self.broker, "--port", str(self.port)]
        if "--static-dir" not in self.args:
            args += ["--static-dir", ""]
        self.spawn("forge_gateway", [*args, *self.args], self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                break
            if re.search(r"gateway listening on \S+:\d+", self.log_text()):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway did not start; its log:\n{self.log_text()}")


def start_gateway(broker: str, *args: str, **env: str) -> GatewayProcess:
    """Start a gateway in front of ``broker`` and return it once it accepts connections."""
    return GatewayProcess(broker, *args, **env).start()


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
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.BrokerStub(channel)
        job = stub.Enqueue(
            pb.EnqueueRequest(type=job_type, max_retries=0), timeout=timeout
        ).job
        stream = stub.Lease(
            pb.LeaseRequest(worker_id=f"gw-test-{job_type}", types=[job_type]), timeout=timeout
        )
        try:
            for batch in stream:
                for leased in batch.jobs:
                    if leased.job.id == job.id:
                        out = stub.Nack(
                            pb.NackRequest(
                                job_id=job.id, lease_token=leased.lease_token, error="boom"
                            ),
                            timeout=timeout,
                        )
                        assert out.status == pb.Job.DEAD
                        return job.id
        finally:
            stream.cancel()
    raise AssertionError("the lease stream ended without delivering the job")


def lease_one(target: str, job_type: str, timeout: float = 15.0) -> tuple[str, str]:
    """Enqueue a job of ``job_type`` and lease it; returns (job id, lease token)."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.BrokerStub(channel)
        job = stub.Enqueue(pb.EnqueueRequest(type=job_type), timeout=timeout).job
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
