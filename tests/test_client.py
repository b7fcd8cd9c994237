"""Client and AsyncClient against a real broker: every method of one answers as the other's does,
and the blocking client is the one clients/python/sync_client.py writes from the async one."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from forge import AsyncClient, Client, ForgeClientError
from forge.client import enqueue_request
from forge.v1 import broker_pb2 as pb
from tests.support import REPO, BrokerProcess

TYPE = "client.same"
PAYLOAD = {"n": 1}
# What differs between two otherwise identical jobs made one after the other.
VOLATILE = {"id", "idempotencyKey", "createdAt", "updatedAt", "runAt", "errors",
            "leasedAt", "finishedAt"}


def shape(msg: Message) -> dict[str, object]:
    """``msg`` as JSON without the fields that tell two equal jobs apart."""
    return {k: v for k, v in json_format.MessageToDict(msg).items() if k not in VOLATILE}


def counts(stats: pb.QueueStats) -> list[tuple[int, ...]]:
    """A stats snapshot's counts, overall and per type, without the ages that move with the clock."""
    rows: list[pb.QueueStats | pb.TypeStats] = [stats, *stats.types]
    return [(s.pending, s.scheduled, s.processing, s.completed, s.dead, s.cancelled) for s in rows]


def settled_stats(client: Client, want: tuple[int, ...]) -> pb.QueueStats:
    """The first snapshot whose overall counts are ``want``: snapshots lag up to a broker tick."""
    deadline = time.monotonic() + 10
    while (stats := client.stats()) and counts(stats)[0] != want:
        assert time.monotonic() < deadline, counts(stats)
        time.sleep(0.1)
    return stats


def kill(client: Client, n: int) -> None:
    """Lease ``n`` jobs of TYPE and fail them; with max_retries 0 they go DEAD."""
    stream = client.stub.Lease(pb.LeaseRequest(worker_id="client-test", types=[TYPE],
                                               max_in_flight=n), timeout=10)
    leased: list[pb.LeasedJob] = []
    for batch in stream:
        leased.extend(batch.jobs)
        if len(leased) == n:
            break
    stream.cancel()
    for item in leased:
        client.stub.Nack(pb.NackRequest(job_id=item.job.id, lease_token=item.lease_token,
                                        error="boom"), timeout=5)


async def test_both_clients_answer_every_method_alike(broker: BrokerProcess) -> None:
    with Client(broker.target) as sync:
        async with AsyncClient(broker.target) as aio:
            a = sync.enqueue(TYPE, PAYLOAD, priority=5, max_retries=0)
            b = await aio.enqueue(TYPE, PAYLOAD, priority=5, max_retries=0)
            assert a.priority == 5 and a.payload["n"] == 1 and a.status == pb.Job.PENDING
            assert shape(b) == shape(a) and b.id != a.id
            # The same idempotency key: the second enqueue answers with the first one's job.
            keyed = sync.enqueue(TYPE, PAYLOAD, priority=5, max_retries=0, idempotency_key="k")
            assert await aio.enqueue(TYPE, PAYLOAD, idempotency_key="k") == keyed
            batch = [enqueue_request(TYPE, PAYLOAD, priority=5, max_retries=0,
                                     idempotency_key=f"b{i}") for i in range(2)]
            jobs = sync.enqueue_batch(batch)
            assert [j.idempotency_key for j in jobs] == ["b0", "b1"]
            assert await aio.enqueue_batch(batch) == jobs
            assert all(shape(j) == shape(a) for j in (keyed, *jobs))

            assert sync.get(a.id) == await aio.get(a.id) == a
            listed = sync.list(type=TYPE, status="pending")
            assert len(listed.jobs) == 5
            assert await aio.list(type=TYPE, status="pending") == listed
            page = sync.list(type=TYPE, page_size=2)
            assert len(page.jobs) == 2 and page.next_page_token
            assert await aio.list(type=TYPE, page_size=2, page_token=page.next_page_token) == \
                sync.list(type=TYPE, page_size=2, page_token=page.next_page_token)

            cancelled = sync.cancel(a.id, "no longer wanted")
            assert cancelled.status == pb.Job.CANCELLED
            assert shape(await aio.cancel(b.id, "no longer wanted")) == shape(cancelled)

            kill(sync, 3)  # the keyed job and the batch
            dead = sync.dead(type=TYPE)
            assert len(dead.jobs) == 3 and all(j.status == pb.Job.DEAD for j in dead.jobs)
            assert await aio.dead(type=TYPE) == dead
            assert await aio.dead(type=TYPE, page_size=1) == sync.dead(type=TYPE, page_size=1)
            retried = sync.retry_dead(dead.jobs[0].id)
            assert retried.status == pb.Job.PENDING and retried.attempts == 0
            assert shape(await aio.retry_dead(dead.jobs[1].id)) == shape(retried)

            # Two retried jobs PENDING, one DEAD, two CANCELLED.
            stats = settled_stats(sync, (2, 0, 0, 0, 1, 2))
            assert counts(await aio.stats()) == counts(stats)


@pytest.mark.parametrize(("method", "args", "code"), [
    ("get", ("0190d6a4-0000-7000-8000-000000000000",), grpc.StatusCode.NOT_FOUND),
    ("enqueue", ("bad type",), grpc.StatusCode.INVALID_ARGUMENT),
    ("retry_dead", ("0190d6a4-0000-7000-8000-000000000000",), grpc.StatusCode.NOT_FOUND),
])
async def test_both_clients_raise_the_same_forge_client_error(
        broker: BrokerProcess, method: str, args: tuple[str, ...], code: grpc.StatusCode) -> None:
    with Client(broker.target) as sync, pytest.raises(ForgeClientError) as blocking:
        getattr(sync, method)(*args)
    async with AsyncClient(broker.target) as aio:
        with pytest.raises(ForgeClientError) as awaited:
            await getattr(aio, method)(*args)
    assert blocking.value.code == awaited.value.code == code
    assert blocking.value.details == awaited.value.details != ""


async def test_an_unreachable_broker_is_a_forge_client_error_from_both() -> None:
    with Client("127.0.0.1:1", timeout=1) as sync, pytest.raises(ForgeClientError) as blocking:
        sync.stats()
    async with AsyncClient("127.0.0.1:1", timeout=1) as aio:
        with pytest.raises(ForgeClientError) as awaited:
            await aio.stats()
    assert blocking.value.code == awaited.value.code == grpc.StatusCode.UNAVAILABLE


def test_the_blocking_client_is_generated_from_the_async_one() -> None:
    """forge._sync is what the generator makes of today's AsyncClient, and the generator
    refuses an AsyncClient it would only half translate."""
    out = subprocess.run([sys.executable, "-c", SYNC_CHECK], cwd=REPO / "clients" / "python",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


SYNC_CHECK = """
import sync_client
assert sync_client.TARGET.read_text() == sync_client.render(sync_client.SOURCE.read_text())
source = sync_client.SOURCE.read_text().replace("aio_channel", "some_channel")
try:
    sync_client.render(source)
except SystemExit as exc:
    assert "aio_channel" in str(exc), exc
else:
    raise AssertionError("a lost rename went unnoticed")
"""


def test_a_batch_whose_answer_is_over_grpcs_4_mb_default_comes_back_to_both_clients(
        broker: BrokerProcess) -> None:
    # 2,500 jobs of 2 KB: a 5 MB request (under the broker's 16 MiB limit) whose answer echoes
    # every job, past the 4 MB a gRPC channel receives by default.
    jobs = [enqueue_request("client.big", {"blob": "x" * 2000, "i": i}) for i in range(2500)]
    with Client(broker.target) as client:
        assert len(client.enqueue_batch(jobs)) == 2500

    async def enqueue() -> int:
        async with AsyncClient(broker.target) as aclient:
            return len(await aclient.enqueue_batch(jobs))
    assert asyncio.run(enqueue()) == 2500
