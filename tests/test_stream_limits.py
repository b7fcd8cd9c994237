"""Streams under hostile clients: one caller cannot hold every stream slot of a broker, and a
lease stream whose client reads nothing is closed and gives its unsent jobs to other workers,
while a slow worker that heartbeats keeps its stream.

Real broker subprocesses, real gRPC clients. Two callers without auth are two addresses: the
broker listens on ``localhost`` (127.0.0.1 and ::1); with auth on they are two tokens."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc as pb_grpc
from forge_broker.config import Config
from forge_broker.errors import InvalidArgument
from tests.security_support import bearer
from tests.support import BrokerProcess, wait_until

BIG = 1 << 20  # bytes a big job's payload holds, about
# A stalled client must be able to take a big lease response once it does read.
BIG_MESSAGES = [("grpc.max_receive_message_length", 64 << 20)]


def code_of(exc: BaseException) -> grpc.StatusCode:
    assert isinstance(exc, grpc.RpcError), exc
    code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
    return code


def details_of(exc: BaseException) -> str:
    assert isinstance(exc, grpc.RpcError), exc
    details: str = exc.details()  # type: ignore[attr-defined]
    return details


def first_jobs(call: Iterator[pb.LeaseResponse]) -> list[pb.LeasedJob] | grpc.RpcError:
    """The first push of a lease stream, or the error that ended it instead."""
    try:
        return list(next(call).jobs)
    except grpc.RpcError as exc:
        return exc


def big_payload() -> Struct:
    s = Struct()
    s.update({"blob": "x" * (BIG - 64)})
    return s


# -- one caller cannot take every stream ---------------------------------------------------------

@pytest.fixture
def two_stack_broker(dsn: str) -> Iterator[BrokerProcess]:
    """A broker without auth on 127.0.0.1 and ::1: room for 4 lease streams, 2 per caller."""
    broker = BrokerProcess(dsn, FORGE_HOST="localhost", FORGE_MAX_LEASE_STREAMS="4",
                           FORGE_MAX_STREAMS_PER_PEER="2").start()
    yield broker
    broker.stop()


def test_one_peer_past_its_stream_cap_is_refused_while_another_peer_still_leases_jobs(
        two_stack_broker: BrokerProcess) -> None:
    port = two_stack_broker.port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as a_ch, \
            grpc.insecure_channel(f"[::1]:{port}") as b_ch:
        a, b = pb_grpc.BrokerStub(a_ch), pb_grpc.BrokerStub(b_ch)
        # The first peer tries to open as many streams as the whole broker allows.
        outcomes: list[list[pb.LeasedJob] | grpc.RpcError] = []
        calls = []
        for i in range(4):
            a.Enqueue(pb.EnqueueRequest(type=f"caps.a{i}"), timeout=5)
            call = a.Lease(pb.LeaseRequest(worker_id=f"a{i}", types=[f"caps.a{i}"]), timeout=30)
            calls.append(call)
            outcomes.append(first_jobs(call))
        assert [isinstance(o, list) and len(o) == 1 for o in outcomes] == [True, True, False, False]
        for refused in outcomes[2:]:
            assert isinstance(refused, grpc.RpcError)
            assert code_of(refused) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "FORGE_MAX_STREAMS_PER_PEER" in details_of(refused)
            assert "127.0.0.1" in details_of(refused)

        # WatchStats counts against the same cap.
        with pytest.raises(grpc.RpcError) as info:
            next(a.WatchStats(pb.WatchStatsRequest(), timeout=10))
        assert code_of(info.value) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "FORGE_MAX_STREAMS_PER_PEER" in details_of(info.value)

        # The second peer still gets a lease stream, and jobs on it, and its stats.
        job = b.Enqueue(pb.EnqueueRequest(type="caps.b"), timeout=5).job
        other = b.Lease(pb.LeaseRequest(worker_id="b", types=["caps.b"]), timeout=30)
        got = first_jobs(other)
        assert isinstance(got, list), got
        assert [j.job.id for j in got] == [job.id]
        watch = b.WatchStats(pb.WatchStatsRequest(), timeout=10)
        assert isinstance(next(watch), pb.QueueStats)
        watch.cancel()

        # A stream the first peer closes gives its place back.
        calls[0].cancel()
        a.Enqueue(pb.EnqueueRequest(type="caps.again"), timeout=5)

        def reopened() -> bool:
            call = a.Lease(pb.LeaseRequest(worker_id="a-again", types=["caps.again"]), timeout=10)
            got = first_jobs(call)
            if isinstance(got, grpc.RpcError):
                assert code_of(got) == grpc.StatusCode.RESOURCE_EXHAUSTED
                return False
            call.cancel()
            return len(got) == 1

        assert wait_until(reopened, timeout=10, interval=0.2), "the closed stream's place never came back"
        for call in [*calls, other]:
            call.cancel()


def test_with_auth_on_streams_count_per_token(dsn: str) -> None:
    one, two = f"one-{secrets.token_hex(16)}", f"two-{secrets.token_hex(16)}"
    ops = f"ops-{secrets.token_hex(16)}"
    broker = BrokerProcess(dsn, FORGE_TOKENS=f"w1:worker:{one},w2:worker:{two},ops:admin:{ops}",
                           FORGE_MAX_LEASE_STREAMS="3", FORGE_MAX_STREAMS_PER_PEER="1").start()
    try:
        with grpc.insecure_channel(broker.target) as ch:
            stub = pb_grpc.BrokerStub(ch)
            for t in ("auth.one", "auth.two"):
                stub.Enqueue(pb.EnqueueRequest(type=t), timeout=5, metadata=bearer(ops))

            def lease(token: str, job_type: str) -> tuple[grpc.Call, list[pb.LeasedJob] | grpc.RpcError]:
                call = stub.Lease(pb.LeaseRequest(worker_id=job_type, types=[job_type]), timeout=30,
                                  metadata=bearer(token))
                return call, first_jobs(call)

            first, got = lease(one, "auth.one")
            assert isinstance(got, list) and len(got) == 1
            _, refused = lease(one, "auth.one")
            assert isinstance(refused, grpc.RpcError)
            assert code_of(refused) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "w1" in details_of(refused) and "FORGE_MAX_STREAMS_PER_PEER" in details_of(refused)
            second, got = lease(two, "auth.two")
            assert isinstance(got, list) and len(got) == 1
            first.cancel()
            second.cancel()
    finally:
        broker.stop()


# -- a client that reads nothing -----------------------------------------------------------------

def held_by(stub: pb_grpc.BrokerStub, job_ids: list[str], worker_id: str) -> bool:
    jobs = [stub.GetJob(pb.GetJobRequest(id=i), timeout=5) for i in job_ids]
    return all(j.status == pb.Job.PROCESSING and j.worker_id == worker_id for j in jobs)


def stall(stub: pb_grpc.BrokerStub, job_type: str, lease_seconds: int,
          big_jobs: int = 24) -> tuple[Iterator[pb.LeaseResponse], list[str]]:
    """A lease stream that reads nothing while the broker pushes it ``big_jobs`` jobs of about
    1 MB in one message, far more than HTTP/2 flow control lets through unread."""
    ids = [stub.Enqueue(pb.EnqueueRequest(type=job_type, payload=big_payload()), timeout=10).job.id
           for _ in range(big_jobs)]
    hog = stub.Lease(pb.LeaseRequest(worker_id="hog", types=[job_type], max_in_flight=100,
                                     lease_seconds=lease_seconds), timeout=60)
    assert wait_until(lambda: held_by(stub, ids, "hog"), timeout=10)
    return hog, ids


def test_a_stream_that_reads_nothing_is_closed_and_its_unsent_jobs_go_to_another_worker(
        dsn: str) -> None:
    broker = BrokerProcess(dsn, FORGE_STREAM_STALL_TIMEOUT="2").start()
    try:
        with grpc.insecure_channel(broker.target, options=BIG_MESSAGES) as ch:
            stub = pb_grpc.BrokerStub(ch)
            hog, sent = stall(stub, "stall.unsent", lease_seconds=60)
            # Claimed for the stalled stream while its first push is stuck: never sent.
            unsent = [stub.Enqueue(pb.EnqueueRequest(type="stall.unsent"), timeout=5).job.id
                      for _ in range(5)]
            assert wait_until(lambda: held_by(stub, unsent, "hog"), timeout=10)
            started = time.monotonic()

            other = stub.Lease(pb.LeaseRequest(worker_id="other", types=["stall.unsent"],
                                               max_in_flight=100), timeout=30)
            got = first_jobs(other)
            waited = time.monotonic() - started
            assert isinstance(got, list), got
            # Given back, not rescued: the attempt the stalled stream took is not counted, and
            # the leases it was sent (60 s) are nowhere near their end.
            assert sorted(j.job.id for j in got) == sorted(unsent)
            assert all(j.job.attempts == 1 for j in got)
            assert waited < 20
            assert held_by(stub, sent, "hog")  # sent ones keep their lease until it expires
            other.cancel()

            # Once the client does read, it finds what was queued for it, then why it ended.
            with pytest.raises(grpc.RpcError) as info:
                for _ in hog:
                    pass
            assert code_of(info.value) == grpc.StatusCode.ABORTED
            assert "FORGE_STREAM_STALL_TIMEOUT" in details_of(info.value)
    finally:
        broker.stop()


def test_the_stall_timeout_defaults_to_the_streams_lease_time(dsn: str) -> None:
    broker = BrokerProcess(dsn).start()
    try:
        with grpc.insecure_channel(broker.target, options=BIG_MESSAGES) as ch:
            stub = pb_grpc.BrokerStub(ch)
            hog, _ = stall(stub, "stall.default", lease_seconds=2)
            time.sleep(6)
            with pytest.raises(grpc.RpcError) as info:
                for _ in hog:
                    pass
            assert code_of(info.value) == grpc.StatusCode.ABORTED, details_of(info.value)
            assert "2 s" in details_of(info.value)
            assert broker.logged("read nothing")
    finally:
        broker.stop()


def test_a_slow_worker_that_heartbeats_keeps_its_stream_while_its_sends_wait(dsn: str) -> None:
    broker = BrokerProcess(dsn).start()
    try:
        with grpc.insecure_channel(broker.target, options=BIG_MESSAGES) as ch:
            stub = pb_grpc.BrokerStub(ch)
            job_type = "stall.slow"
            first = stub.Enqueue(pb.EnqueueRequest(type=job_type), timeout=5).job.id
            call = stub.Lease(pb.LeaseRequest(worker_id="slow", types=[job_type], max_in_flight=100,
                                              lease_seconds=2), timeout=60)
            [held] = next(call).jobs
            assert held.job.id == first
            # More than flow control lets through unread, while the worker is busy with `held`.
            for _ in range(24):
                stub.Enqueue(pb.EnqueueRequest(type=job_type, payload=big_payload()), timeout=10)
            deadline = time.monotonic() + 8  # four times its stall timeout (its lease time)
            while time.monotonic() < deadline:
                stub.Heartbeat(pb.HeartbeatRequest(
                    leases=[pb.LeaseRef(job_id=held.job.id, lease_token=held.lease_token)],
                    lease_seconds=2), timeout=5)
                time.sleep(0.5)
            stub.Ack(pb.AckRequest(job_id=held.job.id, lease_token=held.lease_token), timeout=5)
            marker = stub.Enqueue(pb.EnqueueRequest(type=job_type, priority=100), timeout=5).job.id

            # The stream was never cut: it delivers the big jobs and then a job enqueued now.
            seen: set[str] = set()
            for resp in call:
                seen.update(j.job.id for j in resp.jobs)
                if marker in seen:
                    break
            assert marker in seen
            assert not broker.logged("read nothing", timeout=0.1)
            call.cancel()
    finally:
        broker.stop()


def test_stream_limit_settings_have_defaults_and_refuse_bad_values() -> None:
    cfg = Config.from_env({})
    assert (cfg.max_streams_per_peer, cfg.stream_stall_timeout) == (200, None)
    assert Config.from_env({"FORGE_MAX_STREAMS_PER_PEER": "0"}).max_streams_per_peer == 0
    assert Config.from_env({"FORGE_STREAM_STALL_TIMEOUT": "2.5"}).stream_stall_timeout == 2.5
    for env in ({"FORGE_MAX_STREAMS_PER_PEER": "-1"}, {"FORGE_MAX_STREAMS_PER_PEER": "many"},
                {"FORGE_STREAM_STALL_TIMEOUT": "0"}, {"FORGE_STREAM_STALL_TIMEOUT": "soon"}):
        with pytest.raises(InvalidArgument, match=next(iter(env))):
            Config.from_env(env)
