"""Batches the broker refuses leave its memory where it was: one over the message limit is
refused by gRPC before the broker builds anything from it, and one within the limit that
validation refuses (10,001 jobs) is dropped as soon as it is answered.

A real broker subprocess with default settings; its resident size is read from
/proc/PID/status, and the bound is generous (the machine is shared, allocators keep some)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from tests.support import BrokerProcess, wait_until

SLACK_MB = 150
"""How far above its baseline the broker may stay once the refused batches are answered."""


def resident_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def batch(jobs: int, payload_chars: int) -> pb.EnqueueBatchRequest:
    req = pb.EnqueueBatchRequest()
    for _ in range(jobs):
        req.jobs.add(type="oversize.batch").payload.update({"data": "x" * payload_chars})
    return req


def codes_of_eight(stub: pb_grpc.BrokerStub, req: pb.EnqueueBatchRequest) -> list[tuple[str, str]]:
    """Send ``req`` eight times at once, then eight times in turn: each call's code and details."""
    out: list[tuple[str, str]] = []

    def send() -> None:
        try:
            stub.EnqueueBatch(req, timeout=120)
            out.append(("OK", ""))
        except grpc.RpcError as exc:
            out.append((exc.code().name, exc.details()))  # type: ignore[attr-defined]

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for _ in range(8):
        send()
    return out


@pytest.fixture
def stub(broker: BrokerProcess) -> pb_grpc.BrokerStub:
    channel = grpc.insecure_channel(broker.target, options=[("grpc.max_send_message_length", -1)])
    return pb_grpc.BrokerStub(channel)


def baseline_mb(stub: pb_grpc.BrokerStub, broker: BrokerProcess) -> int:
    """The broker's resident size once it has served a little of everything a batch touches."""
    stub.EnqueueBatch(batch(100, 100), timeout=10)
    stub.ListJobs(pb.ListJobsRequest(page_size=100), timeout=10)
    time.sleep(1)
    return resident_mb(broker.pid)


def assert_back_near(broker: BrokerProcess, baseline: int) -> None:
    """Within SLACK_MB of ``baseline`` soon (memory freed may take a round of upkeep to go)."""
    settled = wait_until(lambda: resident_mb(broker.pid) <= baseline + SLACK_MB, timeout=30,
                         interval=0.5)
    assert settled, (f"broker resident at {resident_mb(broker.pid)} MB after refused batches, "
                     f"baseline {baseline} MB")


def test_eight_60_mb_batches_are_refused_by_grpc_and_leave_memory_near_its_baseline(
        broker: BrokerProcess, stub: pb_grpc.BrokerStub) -> None:
    baseline = baseline_mb(stub, broker)
    req = batch(10_001, 6000)
    assert req.ByteSize() > 60_000_000
    outcomes = codes_of_eight(stub, req)
    assert_back_near(broker, baseline)
    for code, details in outcomes:
        assert code == "RESOURCE_EXHAUSTED", details
        assert "larger than max" in details
    assert stub.Enqueue(pb.EnqueueRequest(type="oversize.after"), timeout=5).created


def test_batches_of_10001_jobs_refused_by_validation_leave_memory_near_its_baseline(
        broker: BrokerProcess, stub: pb_grpc.BrokerStub) -> None:
    baseline = baseline_mb(stub, broker)
    req = batch(10_001, 1500)  # within the default message limit of 16 MiB
    assert 15_000_000 < req.ByteSize() < 16 << 20
    outcomes = codes_of_eight(stub, req)
    assert_back_near(broker, baseline)
    assert outcomes == [("INVALID_ARGUMENT", "jobs: must hold 1 to 10000 jobs, got 10001")] * 16
    assert stub.Enqueue(pb.EnqueueRequest(type="oversize.after"), timeout=5).created
