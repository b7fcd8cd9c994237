"""The broker's configurable limits, each answered with a clear status instead of a crash.

(Payload size and batch size are covered in test_broker_api.py; pool and statement timeout in
test_store.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from forge_broker.config import Config
from forge_broker.errors import InvalidArgument
from tests.support import BrokerProcess, start_broker


@pytest.fixture(scope="module")
def limited(pg_admin_dsn: str, template_dsn: str) -> Iterator[BrokerProcess]:
    from tests.support import drop_database, new_database

    dsn = new_database(pg_admin_dsn)
    broker = start_broker(dsn, FORGE_MAX_IN_FLIGHT="5", FORGE_MAX_LEASE_STREAMS="1",
                          FORGE_MAX_MESSAGE_BYTES=str(1 << 20))
    yield broker
    broker.stop()
    drop_database(pg_admin_dsn, dsn)


@pytest.fixture(scope="module")
def stub(limited: BrokerProcess) -> Iterator[pb_grpc.BrokerStub]:
    with grpc.insecure_channel(limited.target, options=[
            ("grpc.max_send_message_length", 8 << 20)]) as ch:
        yield pb_grpc.BrokerStub(ch)


def test_lease_asking_more_than_max_in_flight_is_invalid_argument_naming_it(
        stub: pb_grpc.BrokerStub) -> None:
    stream = stub.Lease(pb.LeaseRequest(worker_id="greedy", max_in_flight=6), timeout=5)
    with pytest.raises(grpc.RpcError) as info:
        next(stream)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    details = info.value.details()  # type: ignore[attr-defined]
    assert details.startswith("max_in_flight:") and "[1, 5]" in details


def test_a_huge_bad_id_is_invalid_argument_naming_the_field_without_echoing_it_whole(
        stub: pb_grpc.BrokerStub) -> None:
    huge = "x" * 10_000
    calls = {"id": lambda: stub.GetJob(pb.GetJobRequest(id=huge), timeout=5),
             "job_id": lambda: stub.Ack(pb.AckRequest(job_id=huge, lease_token=huge), timeout=5)}
    for field, call in calls.items():
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        details = info.value.details()  # type: ignore[attr-defined]
        assert details.startswith(f"{field}: not a valid job id: 'xxxx"), details[:100]
        assert len(details) < 300


def test_a_second_lease_stream_beyond_the_limit_is_resource_exhausted_until_one_closes(
        stub: pb_grpc.BrokerStub) -> None:
    job = stub.Enqueue(pb.EnqueueRequest(type="limits.streams"), timeout=5).job
    first = stub.Lease(pb.LeaseRequest(worker_id="one", types=["limits.streams"], max_in_flight=5),
                       timeout=30)
    assert next(first).jobs[0].job.id == job.id  # the stream is open and counted
    second = stub.Lease(pb.LeaseRequest(worker_id="two", types=["limits.streams"]), timeout=5)
    with pytest.raises(grpc.RpcError) as info:
        next(second)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert "FORGE_MAX_LEASE_STREAMS" in info.value.details()  # type: ignore[attr-defined]

    first.cancel()
    stub.Enqueue(pb.EnqueueRequest(type="limits.streams"), timeout=5)
    deadline = time.monotonic() + 10
    while True:  # the broker notices the cancelled stream within moments
        third = stub.Lease(pb.LeaseRequest(worker_id="three", types=["limits.streams"]), timeout=10)
        try:
            assert next(third).jobs
            third.cancel()
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the closed stream's slot was never freed"
            time.sleep(0.1)


def test_a_message_over_the_size_limit_is_resource_exhausted_and_the_broker_carries_on(
        stub: pb_grpc.BrokerStub, limited: BrokerProcess) -> None:
    big = pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="limits.big", idempotency_key="k" * 200)
                                       for _ in range(6000)])
    assert big.ByteSize() > 1 << 20
    with pytest.raises(grpc.RpcError) as info:
        stub.EnqueueBatch(big, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert stub.Enqueue(pb.EnqueueRequest(type="limits.small"), timeout=5).created
    assert limited.alive


def test_limit_settings_have_defaults_and_refuse_bad_values() -> None:
    cfg = Config.from_env({})
    assert (cfg.max_message_bytes, cfg.max_send_message_bytes) == (16 << 20, 64 << 20)
    assert (cfg.max_in_flight, cfg.max_lease_streams) == (10_000, 1000)
    # A broker told to take bigger messages answers with messages at least as big.
    assert Config.from_env({"FORGE_MAX_MESSAGE_BYTES": str(128 << 20)}).max_send_message_bytes == 128 << 20
    assert Config.from_env({"FORGE_MAX_LEASE_STREAMS": "0"}).max_lease_streams == 0  # no limit
    for env, named in (({"FORGE_MAX_IN_FLIGHT": "0"}, "FORGE_MAX_IN_FLIGHT"),
                       ({"FORGE_MAX_MESSAGE_BYTES": "1000"}, "FORGE_MAX_MESSAGE_BYTES"),
                       ({"FORGE_MAX_SEND_MESSAGE_BYTES": "1000"}, "FORGE_MAX_SEND_MESSAGE_BYTES"),
                       ({"FORGE_MAX_LEASE_STREAMS": "-1"}, "FORGE_MAX_LEASE_STREAMS"),
                       ({"FORGE_MAX_IN_FLIGHT": "lots"}, "FORGE_MAX_IN_FLIGHT")):
        with pytest.raises(InvalidArgument, match=named):
            Config.from_env(env)
