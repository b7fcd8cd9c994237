"""Leasing by hand, as a worker would, for tests that drive a job's attempts themselves."""

from __future__ import annotations

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc


def lease_one(stub: pb_grpc.BrokerStub, type_: str, *, worker: str = "test-worker",
              lease_seconds: int = 60, metadata: tuple[tuple[str, str], ...] = (),
              timeout: float = 15) -> pb.LeasedJob:
    """The first job of ``type_`` leased to ``worker``, waiting up to ``timeout`` for one to
    become runnable; the stream is closed as soon as it has one."""
    stream = stub.Lease(pb.LeaseRequest(worker_id=worker, types=[type_], max_in_flight=1,
                                        lease_seconds=lease_seconds),
                        timeout=timeout, metadata=metadata)
    try:
        for batch in stream:
            if batch.jobs:
                return batch.jobs[0]
    finally:
        stream.cancel()  # type: ignore[no-untyped-call]  # grpc's stubs leave it untyped
    raise AssertionError(f"{worker} leased no job of {type_}")
