"""Queues (per-type flow control) end to end: real brokers, real PostgreSQL, and for the limits
real workerd processes, sampled from the database while they run."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import cast

import grpc
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.struct_pb2 import Struct

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from forge_broker.models import NewJob, QueueSettings
from forge_broker.store import Store
from tests.support import BrokerProcess, WorkerdProcess, start_broker, wait_until, workers
from tests.workerd_support import create_effects_table

Stub = broker_pb2_grpc.BrokerStub


def enqueue(stub: Stub, type_: str, n: int = 1, **fields: object) -> list[pb.Job]:
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(
        jobs=[pb.EnqueueRequest(type=type_, **fields) for _ in range(n)]), timeout=10)  # type: ignore[arg-type]
    return list(resp.jobs)


def leased_within(stub: Stub, seconds: float, types: tuple[str, ...] = (),
                  max_in_flight: int = 100) -> list[pb.Job]:
    """Every job one lease stream receives in ``seconds`` (leases of a minute)."""
    stream = stub.Lease(pb.LeaseRequest(worker_id="t", types=types, max_in_flight=max_in_flight,
                                        lease_seconds=60), timeout=seconds)
    got: list[pb.Job] = []
    try:
        for resp in stream:
            got.extend(j.job for j in resp.jobs)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
    return got


def payload(**kw: object) -> Struct:
    s = Struct()
    s.update(kw)
    return s


def rate(limit: int, seconds: float) -> pb.RateLimit:
    period = Duration()
    period.FromNanoseconds(int(seconds * 1e9))
    return pb.RateLimit(limit=limit, period=period)


# -- pause and resume -------------------------------------------------------------------------

def test_a_paused_type_is_not_leased_while_other_types_are(stub: Stub) -> None:
    stub.PauseQueue(pb.PauseQueueRequest(type="held"), timeout=10)
    enqueue(stub, "held", 3)
    enqueue(stub, "free", 2)
    got = leased_within(stub, 1.5)
    assert sorted(j.type for j in got) == ["free", "free"]
    # Asked for by name, too.
    assert leased_within(stub, 1.0, types=("held",)) == []


def test_resume_delivers_to_a_waiting_stream_at_once(stub: Stub) -> None:
    stub.PauseQueue(pb.PauseQueueRequest(type="held"), timeout=10)
    enqueue(stub, "held", 2)
    stream = stub.Lease(pb.LeaseRequest(worker_id="t", max_in_flight=10, lease_seconds=60),
                        timeout=20)
    try:
        time.sleep(0.5)  # the stream is open and has found nothing to lease
        started = time.monotonic()
        queue = stub.ResumeQueue(pb.ResumeQueueRequest(type="held"), timeout=10)
        assert not queue.paused
        first = next(iter(stream))
        # No poll: the broker's poll interval is 5 s, the resume's notification arrives at once.
        assert time.monotonic() - started < 1.0
        assert {j.job.type for j in first.jobs} == {"held"}
    finally:
        stream.cancel()


def test_jobs_of_a_paused_type_can_still_be_enqueued_and_are_counted(stub: Stub) -> None:
    paused = stub.PauseQueue(pb.PauseQueueRequest(type="held"), timeout=10)
    assert paused.type == "held" and paused.paused
    enqueue(stub, "held", 4)
    queue = stub.GetQueue(pb.GetQueueRequest(type="held"), timeout=10)
    assert queue.paused and queue.stats.pending == 4
    stats = stub.Stats(pb.StatsRequest(), timeout=10)
    [held] = [t for t in stats.types if t.type == "held"]
    assert held.paused and held.pending == 4


def test_a_type_paused_before_its_first_job_is_listed_and_stays_paused_after_a_restart(
        broker: BrokerProcess) -> None:
    with grpc.insecure_channel(broker.target) as channel:
        stub = Stub(channel)
        stub.PauseQueue(pb.PauseQueueRequest(type="ghost"), timeout=10)
        stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(
            type="limited", concurrency_limit=2, key_concurrency_limit=1,
            rate_limit=rate(5, 1.5))), timeout=10)
    broker.restart()
    with grpc.insecure_channel(broker.target) as channel:
        stub = Stub(channel)
        queues = {q.type: q for q in stub.ListQueues(pb.ListQueuesRequest(), timeout=10).queues}
        assert queues["ghost"].paused
        limited = queues["limited"]
        assert (limited.concurrency_limit, limited.key_concurrency_limit) == (2, 1)
        assert limited.rate_limit.limit == 5
        assert limited.rate_limit.period.ToNanoseconds() == 1_500_000_000
        enqueue(stub, "ghost")
        assert leased_within(stub, 1.0) == []


def test_a_type_never_configured_is_an_unlimited_queue(stub: Stub) -> None:
    enqueue(stub, "plain", 2)
    queue = stub.GetQueue(pb.GetQueueRequest(type="plain"), timeout=10)
    assert not queue.paused and queue.concurrency_limit == 0 and queue.rate_limit.limit == 0
    assert queue.stats.pending == 2
    unseen = stub.GetQueue(pb.GetQueueRequest(type="unseen"), timeout=10)
    assert unseen.type == "unseen" and unseen.stats.pending == 0


# -- UpdateQueue: what changes, and bad input ----------------------------------------------------

def test_update_changes_only_the_fields_set_or_named_in_the_mask(stub: Stub) -> None:
    stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(
        type="q", concurrency_limit=3, rate_limit=rate(10, 1))), timeout=10)
    # Only key_concurrency_limit is set: the rest stays.
    q = stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(type="q", key_concurrency_limit=1)),
                         timeout=10)
    assert (q.concurrency_limit, q.key_concurrency_limit, q.rate_limit.limit) == (3, 1, 10)
    # Named in the mask but not set: reset to unlimited.
    q = stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(type="q"), update_mask=FieldMask(
        paths=["concurrencyLimit", "rate_limit"])), timeout=10)
    assert (q.concurrency_limit, q.key_concurrency_limit, q.rate_limit.limit) == (0, 1, 0)
    assert not q.rate_limit.HasField("period")


BAD_UPDATES = [
    ("type", pb.UpdateQueueRequest(queue=pb.Queue(concurrency_limit=1))),
    ("type", pb.UpdateQueueRequest(queue=pb.Queue(type="bad type", paused=True))),
    ("type", pb.UpdateQueueRequest(type="bad type", queue=pb.Queue(paused=True))),
    ("queue.type", pb.UpdateQueueRequest(type="q", queue=pb.Queue(type="other", paused=True))),
    ("queue.concurrency_limit", pb.UpdateQueueRequest(queue=pb.Queue(type="q", concurrency_limit=-1))),
    ("queue.key_concurrency_limit",
     pb.UpdateQueueRequest(queue=pb.Queue(type="q", key_concurrency_limit=-5))),
    ("queue.rate_limit.limit", pb.UpdateQueueRequest(queue=pb.Queue(type="q", rate_limit=rate(-1, 1)))),
    ("queue.rate_limit.period",
     pb.UpdateQueueRequest(queue=pb.Queue(type="q", rate_limit=pb.RateLimit(limit=5)))),
    ("queue.rate_limit.period", pb.UpdateQueueRequest(queue=pb.Queue(type="q", rate_limit=rate(5, 0)))),
    ("queue.rate_limit.limit", pb.UpdateQueueRequest(queue=pb.Queue(type="q", rate_limit=rate(0, 1)))),
    ("update_mask", pb.UpdateQueueRequest(queue=pb.Queue(type="q", concurrency_limit=1),
                                          update_mask=FieldMask(paths=["concurrency_limit", "bogus"]))),
    ("update_mask", pb.UpdateQueueRequest(queue=pb.Queue(type="q"),
                                          update_mask=FieldMask(paths=["stats"]))),
    ("update_mask", pb.UpdateQueueRequest(queue=pb.Queue(type="q"))),
]


@pytest.mark.parametrize(("field", "request_"), BAD_UPDATES,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_UPDATES)])
def test_bad_updates_are_refused_naming_the_field_and_change_nothing(
        stub: Stub, field: str, request_: pb.UpdateQueueRequest) -> None:
    before = stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(type="q", concurrency_limit=7)),
                              timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        stub.UpdateQueue(request_, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}:"), err.value.details()
    assert stub.GetQueue(pb.GetQueueRequest(type="q"), timeout=10) == before


@pytest.mark.parametrize("rpc", ["PauseQueue", "ResumeQueue", "GetQueue"])
def test_queue_rpcs_refuse_a_malformed_type(stub: Stub, rpc: str) -> None:
    request = getattr(pb, f"{rpc}Request")(type="no spaces allowed")
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, rpc)(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("type:")


# -- concurrency keys at enqueue -------------------------------------------------------------

def test_a_concurrency_key_is_stored_and_shown_on_the_job(stub: Stub, dsn: str) -> None:
    [job] = enqueue(stub, "k", concurrency_key="tenant-1")
    assert job.concurrency_key == "tenant-1"
    assert stub.GetJob(pb.GetJobRequest(id=job.id), timeout=10).concurrency_key == "tenant-1"
    single = stub.Enqueue(pb.EnqueueRequest(type="k", concurrency_key="tenant-2"), timeout=10)
    assert single.job.concurrency_key == "tenant-2"
    with psycopg.connect(dsn) as conn:
        keys = conn.execute("SELECT concurrency_key FROM forge.jobs ORDER BY id").fetchall()
    assert keys == [("tenant-1",), ("tenant-2",)]


def test_a_concurrency_key_over_255_characters_is_refused_at_enqueue(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Enqueue(pb.EnqueueRequest(type="k", concurrency_key="x" * 256), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("concurrency_key:")
    with pytest.raises(grpc.RpcError) as err:
        enqueue(stub, "k", concurrency_key="x" * 256)
    assert err.value.details().startswith("jobs[0].concurrency_key:")
    assert enqueue(stub, "k", concurrency_key="x" * 255)[0].concurrency_key == "x" * 255


@pytest.fixture
def two_stubs(broker: BrokerProcess, dsn: str) -> Iterator[tuple[Stub, Stub]]:
    """Stubs of two brokers on one database."""
    other = start_broker(dsn)
    try:
        with grpc.insecure_channel(broker.target) as a, grpc.insecure_channel(other.target) as b:
            yield Stub(a), Stub(b)
    finally:
        other.stop()


def test_a_pause_on_one_broker_stops_leases_on_another(two_stubs: tuple[Stub, Stub]) -> None:
    first, second = two_stubs
    enqueue(first, "held", 3)
    stream = second.Lease(pb.LeaseRequest(worker_id="t", max_in_flight=1, lease_seconds=60),
                          timeout=10)
    try:
        next(iter(stream))  # the second broker leases "held" and is waiting for room
        first.PauseQueue(pb.PauseQueueRequest(type="held"), timeout=10)
    finally:
        stream.cancel()
    time.sleep(0.3)
    assert leased_within(second, 1.0) == []


# -- REST ------------------------------------------------------------------------------------

def test_rest_routes_pause_resume_patch_get_and_list(broker: BrokerProcess) -> None:
    import httpx

    from tests.support import start_gateway

    gateway = start_gateway(broker.target)
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as http:
            r = http.post("/v1/queues/mail:pause", json={})
            assert r.status_code == 200 and r.json()["paused"] is True
            # PATCH: the body is the Queue; without update_mask the fields it holds change.
            r = http.patch("/v1/queues/mail", json={"concurrencyLimit": 4,
                                                    "rateLimit": {"limit": 10, "period": "2s"}})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["paused"] is True and body["concurrencyLimit"] == 4
            assert body["rateLimit"] == {"limit": 10, "period": "2s"}
            # update_mask in the query: a named field absent from the body is reset.
            r = http.patch("/v1/queues/mail?update_mask=rateLimit", json={})
            assert r.status_code == 200 and r.json()["rateLimit"]["limit"] == 0
            r = http.post("/v1/queues/mail:resume", json={})
            assert r.json()["paused"] is False and r.json()["concurrencyLimit"] == 4
            assert http.get("/v1/queues/mail").json()["concurrencyLimit"] == 4
            assert [q["type"] for q in http.get("/v1/queues").json()["queues"]] == ["mail"]
            bad = http.patch("/v1/queues/mail", json={"concurrencyLimit": -1})
            assert bad.status_code == 400
            assert bad.json()["message"].startswith("queue.concurrency_limit:")
            unknown = http.patch("/v1/queues/mail", json={"maxSpeed": 3})
            assert unknown.status_code == 400 and "maxSpeed" in unknown.json()["message"]
            assert http.get("/v1/queues/mail").json()["concurrencyLimit"] == 4
    finally:
        gateway.stop()


# -- limits with real workers ----------------------------------------------------------------

def processing(dsn: str, type_: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM forge.jobs WHERE type = %s "
                           "AND status = 'PROCESSING'", (type_,)).fetchone()
        assert row is not None
        return int(row[0])


def sample_while(dsn: str, type_: str, done: Callable[[], bool], timeout: float) -> list[int]:
    """PROCESSING counts of ``type_``, sampled as fast as a query allows until ``done``."""
    samples: list[int] = []
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not done():
            assert time.monotonic() < deadline, f"not done in {timeout} s; samples {samples[-20:]}"
            row = conn.execute("SELECT count(*) FROM forge.jobs WHERE type = %s "
                               "AND status = 'PROCESSING'", (type_,)).fetchone()
            assert row is not None
            samples.append(int(row[0]))
    return samples


def attempts(dsn: str, type_: str) -> list[tuple[datetime, datetime, str | None]]:
    """Each finished job's (leased_at, completed at, concurrency key)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT leased_at, updated_at, concurrency_key FROM forge.jobs "
                            "WHERE type = %s AND status = 'COMPLETED'", (type_,)).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def deepest_overlap(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """How many intervals overlap at most at one moment (an end meeting a start is no overlap)."""
    spans = list(intervals)
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    depth = deepest = 0
    for _, step in events:  # at equal times -1 sorts first
        depth += step
        deepest = max(deepest, depth)
    return deepest


def completed(dsn: str, type_: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM forge.jobs WHERE type = %s "
                           "AND status = 'COMPLETED'", (type_,)).fetchone()
        assert row is not None
        return int(row[0])


def work(dsn: str, targets: list[str], per_broker: int = 2,
         concurrency: int = 8) -> contextlib.AbstractContextManager[tuple[WorkerdProcess, ...]]:
    create_effects_table(dsn)
    return workers(*(WorkerdProcess(target, f"w{i}-{j}", effects_dsn=dsn, concurrency=concurrency)
                     for i, target in enumerate(targets) for j in range(per_broker)))


@pytest.mark.slow
def test_a_concurrency_limit_holds_across_two_brokers_and_four_workers(
        broker: BrokerProcess, dsn: str) -> None:
    other = start_broker(dsn)
    try:
        with grpc.insecure_channel(broker.target) as channel:
            stub = Stub(channel)
            stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(type="effect",
                                                                  concurrency_limit=3)), timeout=10)
            enqueue(stub, "effect", 60, payload=payload(sleep=0.05))
            enqueue(stub, "echo", 200)  # an unlimited type beside it runs freely
            with work(dsn, [broker.target, other.target]):
                samples = sample_while(dsn, "effect", lambda: completed(dsn, "effect") == 60, 60)
                assert wait_until(lambda: completed(dsn, "echo") == 200, 30)
    finally:
        other.stop()
    assert len(samples) > 50 and max(samples) <= 3, samples
    assert max(samples) == 3  # the limit, not less, is what ran
    runs = attempts(dsn, "effect")
    assert len(runs) == 60
    assert deepest_overlap((start, end) for start, end, _ in runs) <= 3


@pytest.mark.slow
def test_a_key_limit_of_one_runs_each_key_serially_and_keys_in_parallel(
        broker: BrokerProcess, dsn: str) -> None:
    with grpc.insecure_channel(broker.target) as channel:
        stub = Stub(channel)
        stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(type="effect",
                                                              key_concurrency_limit=1)), timeout=10)
        for key in range(10):
            enqueue(stub, "effect", 4, payload=payload(sleep=0.2), concurrency_key=f"k{key}")
        enqueue(stub, "effect", 4, payload=payload(sleep=0.2))  # no key: not held by the key limit
        with work(dsn, [broker.target]):
            assert wait_until(lambda: completed(dsn, "effect") == 44, 60)
    runs = attempts(dsn, "effect")
    for key in range(10):
        mine = [(s, e) for s, e, k in runs if k == f"k{key}"]
        assert len(mine) == 4 and deepest_overlap(mine) == 1, (key, mine)
    # Keys ran side by side: most of the ten at once, not one after another.
    assert deepest_overlap((s, e) for s, e, _ in runs) >= 6


@pytest.mark.slow
def test_a_rate_of_20_per_second_starts_180_to_220_jobs_in_10_seconds(
        broker: BrokerProcess, dsn: str) -> None:
    with grpc.insecure_channel(broker.target) as channel:
        stub = Stub(channel)
        stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(type="echo", rate_limit=rate(20, 1))),
                         timeout=10)
        enqueue(stub, "echo", 400)
        with work(dsn, [broker.target]):
            time.sleep(11.5)
    with psycopg.connect(dsn) as conn:
        starts = sorted(r[0] for r in conn.execute(
            "SELECT leased_at FROM forge.jobs WHERE type = 'echo' AND leased_at IS NOT NULL"))
    first = starts[0]
    in_ten = [s for s in starts if s < first + timedelta(seconds=10)]
    assert 180 <= len(in_ten) <= 220, len(in_ten)
    # The sliding window: no second anywhere holds more than 20 starts (a few ms of slack
    # between the rate log's clock and leased_at's).
    for i, start in enumerate(starts):
        window = [s for s in starts[i:] if s < start + timedelta(seconds=0.99)]
        assert len(window) <= 20, (start, [str(s) for s in starts[max(0, i - 25):i + 30]])


@pytest.mark.slow
def test_pause_during_a_drain_stops_leases_within_a_second_and_resume_restarts_them(
        broker: BrokerProcess, dsn: str) -> None:
    def db_now() -> datetime:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            return cast(datetime, row[0])

    with grpc.insecure_channel(broker.target) as channel:
        stub = Stub(channel)
        enqueue(stub, "effect", 600, payload=payload(sleep=0.02))
        with work(dsn, [broker.target]):
            assert wait_until(lambda: completed(dsn, "effect") >= 50, 30)
            stub.PauseQueue(pb.PauseQueueRequest(type="effect"), timeout=10)
            paused_at = db_now()
            assert wait_until(lambda: processing(dsn, "effect") == 0, 10)  # in flight finish
            time.sleep(1.5)
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT max(leased_at), count(*) FILTER (WHERE status = "
                                   "'PENDING') FROM forge.jobs").fetchone()
                assert row is not None
            last_lease, pending = row
            assert last_lease < paused_at + timedelta(seconds=1)
            assert pending > 100  # the drain was stopped, not finished
            resumed_at = db_now()
            stub.ResumeQueue(pb.ResumeQueueRequest(type="effect"), timeout=10)
            assert wait_until(lambda: completed(dsn, "effect") == 600, 60)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT min(leased_at) FROM forge.jobs WHERE leased_at > %s",
                           (resumed_at,)).fetchone()
        assert row is not None
    assert row[0] - resumed_at < timedelta(seconds=1)


def test_metrics_show_each_queues_pause_and_limits(dsn: str) -> None:
    from tests.support import free_port
    from tests.test_metrics import scrape, value

    port = free_port()
    broker = start_broker(dsn, FORGE_METRICS_PORT=str(port))
    try:
        with grpc.insecure_channel(broker.target) as channel:
            stub = Stub(channel)
            stub.PauseQueue(pb.PauseQueueRequest(type="held"), timeout=10)
            stub.UpdateQueue(pb.UpdateQueueRequest(queue=pb.Queue(
                type="limited", concurrency_limit=3, key_concurrency_limit=1,
                rate_limit=rate(10, 2))), timeout=10)
            enqueue(stub, "plain")

        def shown() -> bool:
            samples = scrape(port)
            return (value(samples, "forge_queue_paused", type="held") == 1
                    and value(samples, "forge_queue_concurrency_limit", type="limited") == 3)

        assert wait_until(shown, timeout=10)
        samples = scrape(port)
        assert value(samples, "forge_queue_paused", type="limited") == 0
        assert value(samples, "forge_queue_key_concurrency_limit", type="limited") == 1
        assert value(samples, "forge_queue_rate_limit", type="limited") == 5
        assert value(samples, "forge_queue_concurrency_limit", type="plain") == 0
    finally:
        broker.stop()


async def test_changes_of_different_fields_at_once_all_land_even_on_a_new_type(
        store: Store) -> None:
    changes = [lambda q: dataclasses.replace(q, paused=True),
               lambda q: dataclasses.replace(q, concurrency_limit=4),
               lambda q: dataclasses.replace(q, key_concurrency_limit=2),
               lambda q: dataclasses.replace(q, rate_limit=7, rate_period=3.0)]
    await asyncio.gather(*(store.update_queue("fresh", change) for change in changes))
    [settings] = await store.queue_settings()
    assert settings == QueueSettings("fresh", paused=True, concurrency_limit=4,
                                     key_concurrency_limit=2, rate_limit=7, rate_period=3.0)


async def test_claims_racing_on_many_connections_never_pass_the_limit(store: Store) -> None:
    await store.update_queue("capped", lambda q: dataclasses.replace(q, concurrency_limit=5))
    await store.enqueue([NewJob("capped", "{}") for _ in range(50)])
    # Sixteen claimers at once, as many brokers' streams would be: five jobs in all.
    claims = await asyncio.gather(*(store.claim_limited(f"w{i}", "capped", 4, 60, lean=True)
                                    for i in range(16)))
    assert sum(len(c.rows) for c in claims) == 5
