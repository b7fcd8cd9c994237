"""The broker's gRPC API end to end: real broker processes, real PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.support import BrokerProcess, drop_database, job_count, new_database, start_broker

Stub = broker_pb2_grpc.BrokerStub
SAME = uuid.uuid4()


def payload(**kw: object) -> Struct:
    s = Struct()
    s.update(kw)
    return s


def lease_one(stub: Stub, types: list[str] | None = None, lease_seconds: int = 30,
              worker: str = "w1") -> pb.LeasedJob:
    stream = stub.Lease(pb.LeaseRequest(worker_id=worker, types=types or [], max_in_flight=1,
                                        lease_seconds=lease_seconds), timeout=10)
    try:
        return next(iter(stream)).jobs[0]
    finally:
        stream.cancel()


BAD_INPUTS = [
    ("type", pb.EnqueueRequest(type="")),
    ("type", pb.EnqueueRequest(type="has space")),
    ("type", pb.EnqueueRequest(type="x" * 129)),
    ("type", pb.EnqueueRequest(type="email\n")),
    ("priority", pb.EnqueueRequest(type="email", priority=1001)),
    ("priority", pb.EnqueueRequest(type="email", priority=-1001)),
    ("max_retries", pb.EnqueueRequest(type="email", max_retries=-1)),
    ("max_retries", pb.EnqueueRequest(type="email", max_retries=101)),
    ("payload", pb.EnqueueRequest(type="email", payload=payload(blob="x" * (1 << 20)))),
    ("run_at", pb.EnqueueRequest(type="email", run_at=Timestamp(seconds=1, nanos=-5))),
    ("run_at", pb.EnqueueRequest(type="email", run_at=Timestamp(seconds=10**12))),
    ("idempotency_key", pb.EnqueueRequest(type="email", idempotency_key="k" * 256)),
    ("idempotency_key", pb.EnqueueRequest(type="email", idempotency_key="a\x00b")),
    ("payload", pb.EnqueueRequest(type="email", payload=payload(to="a\x00b"))),
    ("payload", pb.EnqueueRequest(type="email", payload=payload(**{"k\x00": 1}))),
]


@pytest.fixture(scope="module")
def untouched(pg_admin_dsn: str, template_dsn: str) -> Iterator[tuple[str, Stub]]:
    """One broker and database shared by tests that must leave the database empty."""
    dsn = new_database(pg_admin_dsn)
    proc = start_broker(dsn)
    with grpc.insecure_channel(proc.target) as channel:
        yield dsn, Stub(channel)
    proc.stop()
    drop_database(pg_admin_dsn, dsn)


@pytest.mark.parametrize(("field", "request_"), BAD_INPUTS,
                         ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_INPUTS)])
def test_bad_enqueue_is_invalid_argument_naming_the_field_and_writes_nothing(
        untouched: tuple[str, Stub], field: str, request_: pb.EnqueueRequest) -> None:
    dsn, stub = untouched
    with pytest.raises(grpc.RpcError) as err:
        stub.Enqueue(request_, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"{field}:")
    with pytest.raises(grpc.RpcError) as err:
        stub.EnqueueBatch(pb.EnqueueBatchRequest(
            jobs=[pb.EnqueueRequest(type="ok")] * 3 + [request_]), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"jobs[3].{field}:")
    assert job_count(dsn) == 0


@pytest.mark.parametrize("n", [0, 10_001])
def test_batch_size_is_limited(untouched: tuple[str, Stub], n: int) -> None:
    dsn, stub = untouched
    with pytest.raises(grpc.RpcError) as err:
        stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="a")] * n), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("jobs:")
    assert job_count(dsn) == 0


def test_batch_of_10000_is_stored_whole_in_request_order(stub: Stub, dsn: str) -> None:
    reqs = [pb.EnqueueRequest(type="bulk", priority=i % 7, payload=payload(i=i))
            for i in range(10_000)]
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=30)
    assert resp.created == 10_000
    assert [j.payload["i"] for j in resp.jobs] == list(range(10_000))
    assert job_count(dsn) == 10_000


def test_batch_answer_is_each_job_as_stored(stub: Stub) -> None:
    existing = stub.Enqueue(pb.EnqueueRequest(type="t", idempotency_key="old",
                                              payload=payload(v="first")), timeout=5).job
    later = Timestamp(seconds=int(time.time()) + 3600)
    reqs = [
        pb.EnqueueRequest(type="a", payload=payload(n=1, nested={"l": [1, "x", None]})),
        pb.EnqueueRequest(type="b"),  # no payload
        pb.EnqueueRequest(type="c", priority=-5, max_retries=0, run_at=later),
        pb.EnqueueRequest(type="t", idempotency_key="old", payload=payload(v="ignored")),
        pb.EnqueueRequest(type="d", idempotency_key="new", payload=payload(v="kept")),
        pb.EnqueueRequest(type="d", idempotency_key="new", payload=payload(v="dropped")),
    ]
    resp = stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=5)
    assert resp.created == 4
    answered = list(resp.jobs)
    assert answered[3].id == existing.id and answered[4].id == answered[5].id
    assert dict(answered[5].payload) == {"v": "kept"}
    assert answered[2].run_at == later and answered[0].run_at == answered[0].created_at
    for job in answered:
        assert job == stub.GetJob(pb.GetJobRequest(id=job.id), timeout=5)


def test_enqueue_defaults_and_idempotency(stub: Stub) -> None:
    first = stub.Enqueue(pb.EnqueueRequest(type="email", idempotency_key="signup-7",
                                           payload=payload(to="a@b.c", n=3)), timeout=5)
    assert first.created
    job = first.job
    assert (job.priority, job.max_retries, job.attempts, job.status) == (0, 3, 0, pb.Job.PENDING)
    assert dict(job.payload) == {"to": "a@b.c", "n": 3}
    again = stub.Enqueue(pb.EnqueueRequest(type="email", idempotency_key="signup-7"), timeout=5)
    assert not again.created and again.job.id == job.id
    explicit_zero = stub.Enqueue(pb.EnqueueRequest(type="email", max_retries=0), timeout=5)
    assert explicit_zero.job.max_retries == 0


def test_lease_delivers_a_job_enqueued_while_the_stream_is_idle(stub: Stub) -> None:
    stream = stub.Lease(pb.LeaseRequest(worker_id="idle", types=["email"]), timeout=20)
    got: list[pb.LeaseResponse] = []
    reader = threading.Thread(target=lambda: got.append(next(iter(stream))))
    reader.start()
    time.sleep(1.0)  # the stream is open and idle
    assert not got
    sent = time.monotonic()
    job = stub.Enqueue(pb.EnqueueRequest(type="email"), timeout=5).job
    reader.join(timeout=5)
    waited = time.monotonic() - sent
    stream.cancel()
    assert got and got[0].jobs[0].job.id == job.id
    assert got[0].jobs[0].job.status == pb.Job.PROCESSING
    assert got[0].jobs[0].lease_token
    assert waited < 1.0, "woken by NOTIFY, not by the 1 s poll"


def test_lean_view_sends_the_payload_as_json_text_and_the_fields_a_worker_runs_on(
        stub: Stub) -> None:
    sent = payload(to="a@example.com", n=3, ratio=0.5, tags=["x", "é"], nested={"ok": True})
    job = stub.Enqueue(pb.EnqueueRequest(type="lean", payload=sent, priority=7, max_retries=4),
                       timeout=5).job
    stream = stub.Lease(pb.LeaseRequest(worker_id="lean-w", types=["lean"], max_in_flight=1,
                                        job_view=pb.LeaseRequest.JOB_VIEW_LEAN), timeout=10)
    try:
        leased = next(iter(stream)).jobs[0]
    finally:
        stream.cancel()
    assert json.loads(leased.payload_json) == {"to": "a@example.com", "n": 3, "ratio": 0.5,
                                               "tags": ["x", "é"], "nested": {"ok": True}}
    got = leased.job
    assert not got.HasField("payload") and not got.HasField("created_at")
    assert (got.id, got.type, got.priority, got.attempts, got.max_retries, got.status) == (
        job.id, "lean", 7, 1, 4, pb.Job.PROCESSING)
    stub.Ack(pb.AckRequest(job_id=got.id, lease_token=leased.lease_token), timeout=5)
    assert stub.GetJob(pb.GetJobRequest(id=job.id), timeout=5).status == pb.Job.COMPLETED


def test_full_view_sends_each_leased_job_as_stored(stub: Stub) -> None:
    """The default view (the Python client's Lease) sends every field of each job as the
    database holds it once leased: what GetJob answers next."""
    reqs = [pb.EnqueueRequest(type="full", payload=payload(n=i, tags=["x", "é"]), priority=i,
                              max_retries=i, idempotency_key=f"full-{i}") for i in range(3)]
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=reqs), timeout=5)
    stream = stub.Lease(pb.LeaseRequest(worker_id="full-w", types=["full"], max_in_flight=3),
                        timeout=10)
    leased: list[pb.LeasedJob] = []
    try:
        for resp in stream:
            leased += resp.jobs
            if len(leased) == 3:
                break
    finally:
        stream.cancel()
    assert sorted(j.job.priority for j in leased) == [0, 1, 2]
    for got in leased:
        assert got.lease_token and not got.payload_json
        assert (got.job.status, got.job.attempts, got.job.worker_id) == (pb.Job.PROCESSING, 1,
                                                                         "full-w")
        assert got.job.HasField("lease_expires_at") and got.job.idempotency_key
        assert dict(got.job.payload) == {"n": got.job.priority, "tags": ["x", "é"]}
        assert got.job == stub.GetJob(pb.GetJobRequest(id=got.job.id), timeout=5)


def test_an_unknown_job_view_is_invalid_argument(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Lease(pb.LeaseRequest(worker_id="w", job_view=7), timeout=5).next()  # type: ignore[arg-type]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("job_view:")


def test_scheduled_job_is_delivered_when_due(stub: Stub) -> None:
    due = Timestamp()
    due.FromNanoseconds(time.time_ns() + 1_500_000_000)
    job = stub.Enqueue(pb.EnqueueRequest(type="later", run_at=due), timeout=5).job
    stream = stub.Lease(pb.LeaseRequest(worker_id="w", types=["later"]), timeout=20)
    first = next(iter(stream))
    late = time.time() - due.ToNanoseconds() / 1e9
    stream.cancel()
    assert first.jobs[0].job.id == job.id
    assert -0.01 < late < 0.5


def test_stream_keeps_at_most_max_in_flight_and_refills_on_ack(stub: Stub) -> None:
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="t")] * 5), timeout=5)
    stream = stub.Lease(pb.LeaseRequest(worker_id="w", max_in_flight=2), timeout=20)
    it = iter(stream)
    held: list[pb.LeasedJob] = []
    while len(held) < 2:
        held.extend(next(it).jobs)
    assert len(held) == 2
    stats = stub.Stats(pb.StatsRequest(), timeout=5)
    assert stats.processing == 2
    stub.Ack(pb.AckRequest(job_id=held[0].job.id, lease_token=held[0].lease_token,
                           result=payload(ok=True)), timeout=5)
    more = next(it).jobs
    assert len(more) == 1
    stream.cancel()
    assert stub.GetJob(pb.GetJobRequest(id=held[0].job.id), timeout=5).result["ok"] is True


def test_a_window_wider_than_one_claim_is_filled_by_claims_of_at_most_1000_without_acks(
        stub: Stub) -> None:
    # The default FORGE_MAX_IN_FLIGHT takes a window of 2,500; each push is one claim's rows.
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="wide")] * 2500),
                      timeout=30)
    stream = stub.Lease(pb.LeaseRequest(worker_id="w", types=["wide"], max_in_flight=2500,
                                        job_view=pb.LeaseRequest.JOB_VIEW_LEAN), timeout=30)
    pushes: list[int] = []
    ids: set[str] = set()
    try:
        for resp in stream:
            pushes.append(len(resp.jobs))
            ids.update(j.job.id for j in resp.jobs)
            if len(ids) >= 2500:
                break
    finally:
        stream.cancel()
    assert len(ids) == 2500 and sum(pushes) == 2500
    assert max(pushes) <= 1000 and len(pushes) >= 3, pushes
    assert stub.Stats(pb.StatsRequest(), timeout=5).processing == 2500


def test_nack_reports_where_the_job_went(stub: Stub) -> None:
    stub.Enqueue(pb.EnqueueRequest(type="t", max_retries=1), timeout=5)
    leased = lease_one(stub)
    resp = stub.Nack(pb.NackRequest(job_id=leased.job.id, lease_token=leased.lease_token,
                                    error="boom", retry_after=Duration(seconds=0)), timeout=5)
    assert resp.status == pb.Job.PENDING
    leased = lease_one(stub)
    assert leased.job.attempts == 2
    resp = stub.Nack(pb.NackRequest(job_id=leased.job.id, lease_token=leased.lease_token,
                                    error="boom\x00again"), timeout=5)
    assert resp.status == pb.Job.DEAD
    dead = stub.ListDeadJobs(pb.ListDeadJobsRequest(), timeout=5)
    assert [j.id for j in dead.jobs] == [leased.job.id]
    assert dead.jobs[0].last_error == "boom\ufffdagain", "a NUL in an error is kept visible"
    retried = stub.RetryDeadJob(pb.RetryDeadJobRequest(id=leased.job.id), timeout=5)
    assert retried.status == pb.Job.PENDING and retried.attempts == 0
    with pytest.raises(grpc.RpcError) as err:
        stub.RetryDeadJob(pb.RetryDeadJobRequest(id=leased.job.id), timeout=5)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_stale_lease_token_is_failed_precondition(stub: Stub) -> None:
    stub.Enqueue(pb.EnqueueRequest(type="t"), timeout=5)
    leased = lease_one(stub)
    stub.CancelJob(pb.CancelJobRequest(id=leased.job.id, reason="operator"), timeout=5)
    for call in (
        lambda: stub.Ack(pb.AckRequest(job_id=leased.job.id, lease_token=leased.lease_token),
                         timeout=5),
        lambda: stub.Nack(pb.NackRequest(job_id=leased.job.id, lease_token=leased.lease_token),
                          timeout=5),
        lambda: stub.Heartbeat(pb.HeartbeatRequest(leases=[pb.LeaseRef(
            job_id=leased.job.id, lease_token=leased.lease_token)]), timeout=5),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stub.GetJob(pb.GetJobRequest(id=leased.job.id), timeout=5).status == pb.Job.CANCELLED


def lease_n(stub: Stub, n: int, worker: str = "w1") -> list[pb.LeasedJob]:
    stream = stub.Lease(pb.LeaseRequest(worker_id=worker, max_in_flight=n), timeout=10)
    held: list[pb.LeasedJob] = []
    try:
        for resp in stream:
            held.extend(resp.jobs)
            if len(held) >= n:
                return held
    finally:
        stream.cancel()
    raise AssertionError(f"only {len(held)} of {n} jobs leased")


def test_settle_judges_each_item_on_its_own(stub: Stub) -> None:
    stub.EnqueueBatch(pb.EnqueueBatchRequest(
        jobs=[pb.EnqueueRequest(type="t", max_retries=0)] + [pb.EnqueueRequest(type="t")] * 3),
        timeout=5)
    held = sorted(lease_n(stub, 4), key=lambda h: h.job.max_retries)
    out_of_retries, ok, retried, cancelled = held
    stub.CancelJob(pb.CancelJobRequest(id=cancelled.job.id), timeout=5)
    resp = stub.Settle(pb.SettleRequest(
        acks=[pb.AckRequest(job_id=ok.job.id, lease_token=ok.lease_token, result=payload(n=1)),
              pb.AckRequest(job_id=cancelled.job.id, lease_token=cancelled.lease_token)],
        nacks=[pb.NackRequest(job_id=retried.job.id, lease_token=retried.lease_token, error="e"),
               pb.NackRequest(job_id=out_of_retries.job.id,
                              lease_token=out_of_retries.lease_token, error="last")]),
        timeout=5)
    assert [(r.index, r.job_id, r.code, r.status) for r in resp.acks] == [
        (0, ok.job.id, 0, pb.Job.COMPLETED), (1, cancelled.job.id, 9, pb.Job.STATUS_UNSPECIFIED)]
    assert "CANCELLED" in resp.acks[1].message
    assert [(r.code, r.status) for r in resp.nacks] == [(0, pb.Job.PENDING), (0, pb.Job.DEAD)]
    assert resp.nacks[0].run_at.seconds > 0
    got = {j.id: j for j in (stub.GetJob(pb.GetJobRequest(id=h.job.id), timeout=5) for h in held)}
    assert got[ok.job.id].status == pb.Job.COMPLETED and got[ok.job.id].result["n"] == 1
    assert got[cancelled.job.id].status == pb.Job.CANCELLED
    assert got[retried.job.id].status == pb.Job.PENDING and got[retried.job.id].last_error == "e"
    assert got[out_of_retries.job.id].status == pb.Job.DEAD


def test_settle_asked_for_refused_acks_only_answers_each_ack_not_recorded_with_its_index(
        stub: Stub) -> None:
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="t")] * 4), timeout=5)
    first, cancelled, last, nacked = lease_n(stub, 4)
    stub.CancelJob(pb.CancelJobRequest(id=cancelled.job.id), timeout=5)
    unknown = str(uuid.uuid4())
    resp = stub.Settle(pb.SettleRequest(
        refused_acks_only=True,
        acks=[pb.AckRequest(job_id=first.job.id, lease_token=first.lease_token),
              pb.AckRequest(job_id=cancelled.job.id, lease_token=cancelled.lease_token),
              pb.AckRequest(job_id=unknown, lease_token=str(uuid.uuid4())),
              pb.AckRequest(job_id=last.job.id, lease_token=last.lease_token)],
        nacks=[pb.NackRequest(job_id=nacked.job.id, lease_token=nacked.lease_token, error="e")]),
        timeout=5)
    assert [(r.index, r.job_id, r.code) for r in resp.acks] == [
        (1, cancelled.job.id, 9), (2, unknown, 5)]
    assert [(r.code, r.status) for r in resp.nacks] == [(0, pb.Job.PENDING)]
    for done in (first, last):
        assert stub.GetJob(pb.GetJobRequest(id=done.job.id), timeout=5).status == pb.Job.COMPLETED
    # Every ack recorded: nothing to answer for them.
    stub.Enqueue(pb.EnqueueRequest(type="t"), timeout=5)
    again = lease_one(stub)
    resp = stub.Settle(pb.SettleRequest(refused_acks_only=True, acks=[
        pb.AckRequest(job_id=again.job.id, lease_token=again.lease_token)]), timeout=5)
    assert len(resp.acks) == 0 and len(resp.nacks) == 0


@pytest.mark.parametrize("request_, field", [
    (pb.SettleRequest(), "acks"),
    (pb.SettleRequest(acks=[pb.AckRequest(job_id="nope", lease_token=str(uuid.uuid4()))]),
     "acks[0].job_id"),
    (pb.SettleRequest(nacks=[pb.NackRequest(job_id=str(uuid.uuid4()))]), "nacks[0].lease_token"),
    (pb.SettleRequest(acks=[pb.AckRequest(job_id=str(SAME), lease_token=str(uuid.uuid4()))],
                      nacks=[pb.NackRequest(job_id=str(SAME), lease_token=str(uuid.uuid4()))]),
     "nacks[0].job_id"),
    # The same job spelled two ways is still the same job.
    (pb.SettleRequest(acks=[pb.AckRequest(job_id=str(SAME), lease_token=str(uuid.uuid4())),
                            pb.AckRequest(job_id=str(SAME).upper(), lease_token=str(uuid.uuid4()))]),
     "acks[1].job_id"),
])
def test_malformed_settle_is_invalid_argument_naming_the_item(
        stub: Stub, request_: pb.SettleRequest, field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Settle(request_, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field)


def test_ids_in_any_uuid_spelling_reach_their_lease(stub: Stub) -> None:
    stub.Enqueue(pb.EnqueueRequest(type="spelling"), timeout=5)
    leased = lease_one(stub, types=["spelling"])
    odd_id = "{" + leased.job.id.upper() + "}"
    odd_token = leased.lease_token.replace("-", "")
    resp = stub.Settle(pb.SettleRequest(acks=[pb.AckRequest(job_id=odd_id, lease_token=odd_token)]),
                       timeout=5)
    assert resp.acks[0].code == 0 and resp.acks[0].job_id == odd_id
    assert stub.GetJob(pb.GetJobRequest(id=leased.job.id), timeout=5).status == pb.Job.COMPLETED


def test_concurrent_acks_each_get_their_own_answer(stub: Stub) -> None:
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="t")] * 200), timeout=5)
    held = lease_n(stub, 200)
    stale = {h.job.id for h in held[::10]}
    codes: dict[str, grpc.StatusCode] = {}

    def ack(h: pb.LeasedJob) -> None:
        token = str(uuid.uuid4()) if h.job.id in stale else h.lease_token
        try:
            stub.Ack(pb.AckRequest(job_id=h.job.id, lease_token=token), timeout=10)
            codes[h.job.id] = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            codes[h.job.id] = exc.code()

    threads = [threading.Thread(target=ack, args=(h,)) for h in held]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {j for j, c in codes.items() if c == grpc.StatusCode.FAILED_PRECONDITION} == stale
    assert sum(c == grpc.StatusCode.OK for c in codes.values()) == 200 - len(stale)


def test_concurrent_enqueues_with_one_idempotency_key_create_one_job(stub: Stub, dsn: str) -> None:
    answers: list[pb.EnqueueResponse] = []

    def enqueue(i: int) -> None:
        key = "same" if i % 2 else f"own-{i}"
        answers.append(stub.Enqueue(pb.EnqueueRequest(type="t", idempotency_key=key,
                                                      payload=payload(i=i)), timeout=10))

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    same = [a for a in answers if a.job.idempotency_key == "same"]
    assert len(same) == 20 and len({a.job.id for a in same}) == 1
    assert sum(a.created for a in same) == 1
    assert all(a.created for a in answers if a.job.idempotency_key != "same")
    assert job_count(dsn) == 21


def test_heartbeat_extends_held_leases_and_lists_lost_ones(stub: Stub) -> None:
    stub.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="t")] * 2), timeout=5)
    stream = stub.Lease(pb.LeaseRequest(worker_id="w", max_in_flight=2, lease_seconds=5),
                        timeout=20)
    it = iter(stream)
    held: list[pb.LeasedJob] = []
    while len(held) < 2:
        held.extend(next(it).jobs)
    stream.cancel()
    stub.CancelJob(pb.CancelJobRequest(id=held[1].job.id), timeout=5)
    resp = stub.Heartbeat(pb.HeartbeatRequest(lease_seconds=120, leases=[
        pb.LeaseRef(job_id=h.job.id, lease_token=h.lease_token) for h in held]), timeout=5)
    assert list(resp.lost_job_ids) == [held[1].job.id]
    assert resp.lease_expires_at.ToNanoseconds() / 1e9 - time.time() > 100


def test_unknown_and_malformed_ids(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(pb.GetJobRequest(id="0190d6a4-0000-7000-8000-000000000000"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.GetJob(pb.GetJobRequest(id="nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("id:")
    with pytest.raises(grpc.RpcError) as err:
        stub.Ack(pb.AckRequest(job_id="0190d6a4-0000-7000-8000-000000000000",
                               lease_token="0190d6a4-0000-7000-8000-000000000000"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.Lease(pb.LeaseRequest(worker_id=""), timeout=5).next()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_jobs_filters_and_pages(stub: Stub) -> None:
    stub.EnqueueBatch(pb.EnqueueBatchRequest(
        jobs=[pb.EnqueueRequest(type="a")] * 7 + [pb.EnqueueRequest(type="b")] * 3), timeout=5)
    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListJobs(pb.ListJobsRequest(type="a", page_size=3, page_token=token), timeout=5)
        seen += [j.id for j in page.jobs]
        assert all(j.type == "a" for j in page.jobs)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 7 and len(set(seen)) == 7
    assert seen == sorted(seen, reverse=True)  # newest first
    pending_b = stub.ListJobs(pb.ListJobsRequest(status=pb.Job.PENDING, type="b"), timeout=5)
    assert len(pending_b.jobs) == 3
    none = stub.ListJobs(pb.ListJobsRequest(status=pb.Job.COMPLETED), timeout=5)
    assert len(none.jobs) == 0 and not none.next_page_token


def test_watch_stats_streams_snapshots(stub: Stub) -> None:
    stub.Enqueue(pb.EnqueueRequest(type="t"), timeout=5)
    stream = stub.WatchStats(pb.WatchStatsRequest(), timeout=10)
    snaps = []
    for snap in stream:
        snaps.append(snap)
        if len(snaps) == 3:
            break
    stream.cancel()
    assert all(s.pending == 1 for s in snaps)
    times = [s.computed_at.ToNanoseconds() for s in snaps]
    assert times == sorted(times) and len(set(times)) == 3
    assert len(snaps[0].throughput) == 60


@pytest.fixture
def two_brokers(dsn: str) -> Iterator[tuple[BrokerProcess, BrokerProcess]]:
    env = {"FORGE_RESCUE_INTERVAL": "0.05", "FORGE_BACKOFF_BASE": "600"}
    a = start_broker(dsn, **env)
    b = start_broker(dsn, **env)
    yield a, b
    a.stop()
    b.stop()


def test_expired_lease_is_rescued_once_with_two_brokers(
        two_brokers: tuple[BrokerProcess, BrokerProcess], dsn: str) -> None:
    a, _ = two_brokers
    with grpc.insecure_channel(a.target) as ca:
        sa = Stub(ca)
        ids = [j.id for j in sa.EnqueueBatch(pb.EnqueueBatchRequest(
            jobs=[pb.EnqueueRequest(type="t")] * 20), timeout=5).jobs]
        stream = sa.Lease(pb.LeaseRequest(worker_id="doomed", max_in_flight=20, lease_seconds=1),
                          timeout=20)
        it = iter(stream)
        leased = 0
        while leased < 20:
            leased += len(next(it).jobs)
        stream.cancel()
    time.sleep(2.5)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT status, attempts, last_error FROM forge.jobs "
                            "WHERE id = ANY(%s::uuid[])", (ids,)).fetchall()
        failed = conn.execute("SELECT coalesce(sum(failed), 0) FROM (SELECT failed FROM "
                              "forge.throughput UNION ALL SELECT failed FROM "
                              "forge.throughput_deltas) t").fetchone()
    assert len(rows) == 20
    assert all(status == "PENDING" and attempts == 1 for status, attempts, _ in rows)
    assert all("lease expired" in err for _, _, err in rows)
    assert failed == (20,), "each expired lease counted as exactly one failed attempt"


def test_sigterm_stops_the_broker_cleanly_and_ends_streams(broker: BrokerProcess) -> None:
    with grpc.insecure_channel(broker.target) as channel:
        stream = Stub(channel).Lease(pb.LeaseRequest(worker_id="w"), timeout=20)
        ended = threading.Event()

        def drain() -> None:
            try:
                for _ in stream:
                    pass
            except grpc.RpcError:
                pass
            ended.set()

        threading.Thread(target=drain, daemon=True).start()
        time.sleep(0.5)
        assert broker.stop() == 0
        assert ended.wait(5)


def test_ack_through_another_broker_frees_the_stream_slot(dsn: str) -> None:
    a = start_broker(dsn, FORGE_STATS_INTERVAL="0.2")
    b = start_broker(dsn)
    try:
        with grpc.insecure_channel(a.target) as ca, grpc.insecure_channel(b.target) as cb:
            sa, sb = Stub(ca), Stub(cb)
            sa.EnqueueBatch(pb.EnqueueBatchRequest(jobs=[pb.EnqueueRequest(type="t")] * 2),
                            timeout=5)
            stream = sa.Lease(pb.LeaseRequest(worker_id="w", max_in_flight=1), timeout=20)
            it = iter(stream)
            first = next(it).jobs[0]
            sb.Ack(pb.AckRequest(job_id=first.job.id, lease_token=first.lease_token), timeout=5)
            second = next(it).jobs[0]  # broker A learns of the ack within a tick or two
            stream.cancel()
            assert second.job.id != first.job.id
    finally:
        a.stop()
        b.stop()


def test_a_call_past_its_deadline_has_its_statement_cancelled_in_the_database(
        stub: Stub, dsn: str) -> None:
    job = stub.Enqueue(pb.EnqueueRequest(type="t"), timeout=5).job
    with psycopg.connect(dsn) as holder:
        # Hold the row lock, so the broker's UPDATE for the cancel waits on it.
        holder.execute("SELECT 1 FROM forge.jobs WHERE id = %s FOR UPDATE", (job.id,))
        with pytest.raises(grpc.RpcError) as err:
            stub.CancelJob(pb.CancelJobRequest(id=job.id), timeout=1)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with psycopg.connect(dsn, autocommit=True) as watcher:
            deadline = time.monotonic() + 5  # far below the 30 s statement_timeout
            waiting: list[tuple[object, ...]] = [("?",)]
            while waiting and time.monotonic() < deadline:
                waiting = watcher.execute(
                    "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'").fetchall()
                time.sleep(0.1)
            assert waiting == []
        holder.rollback()
    assert stub.GetJob(pb.GetJobRequest(id=job.id), timeout=5).status == pb.Job.PENDING
