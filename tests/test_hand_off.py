"""Hand-off: a job enqueued while a worker waits idle for its type is leased by its INSERT.

Real broker subprocesses and PostgreSQL; the stream is a real Lease RPC read in a thread.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator

import grpc
import psycopg
import pytest

from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc
from tests.support import start_broker, wait_until

Stub = broker_pb2_grpc.BrokerStub
SETTLE = 0.5  # after a stream is registered, long enough for its first claim to find nothing


class Reader:
    """A Lease stream read in a thread: ``next()`` is the next leased job, or None."""

    def __init__(self, stub: Stub, worker: str, types: list[str], *, max_in_flight: int = 10,
                 lean: bool = False) -> None:
        self.worker = worker
        view = pb.LeaseRequest.JOB_VIEW_LEAN if lean else pb.LeaseRequest.JOB_VIEW_FULL
        self.stream = stub.Lease(pb.LeaseRequest(worker_id=worker, types=types,
                                                 max_in_flight=max_in_flight, job_view=view),
                                 timeout=60)
        self.jobs: queue.Queue[pb.LeasedJob] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for resp in self.stream:
                for job in resp.jobs:
                    self.jobs.put(job)
        except grpc.RpcError:
            pass

    def next(self, timeout: float = 5.0) -> pb.LeasedJob | None:
        try:
            return self.jobs.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.stream.cancel()
        self.thread.join(timeout=5)


def wait_idle(stub: Stub, *readers: Reader) -> None:
    """Until each reader's stream is registered and has had its first claim, which finds
    nothing: from then on it waits, idle."""
    def registered() -> bool:
        shown = {w.worker_id for w in stub.Stats(pb.StatsRequest(), timeout=5).workers}
        return all(r.worker in shown for r in readers)
    assert wait_until(registered, timeout=10)
    time.sleep(SETTLE)


@pytest.fixture
def reader(stub: Stub) -> Iterator[Reader]:
    r = Reader(stub, "idle-w", ["handed"])
    wait_idle(stub, r)
    yield r
    r.close()


def row(dsn: str, job_id: str) -> dict[str, object]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute("SELECT status, attempts, worker_id, leased_at, created_at, run_at, "
                           "lease_expires_at FROM forge.jobs WHERE id = %s", (job_id,))
        got = cur.fetchone()
        assert got is not None and cur.description is not None
        return dict(zip([c.name for c in cur.description], got, strict=True))


def test_a_job_enqueued_to_an_idle_worker_is_leased_by_its_insert(
        stub: Stub, dsn: str, reader: Reader) -> None:
    answer = stub.Enqueue(pb.EnqueueRequest(type="handed"), timeout=5)
    leased = reader.next()
    assert leased is not None and leased.job.id == answer.job.id and leased.lease_token
    # The answer tells the truth: the job is running already, on the worker that waited.
    assert (answer.job.status, answer.job.attempts, answer.job.worker_id) == (
        pb.Job.PROCESSING, 1, "idle-w")
    stored = row(dsn, answer.job.id)
    # One statement did it: leased in the transaction that created it.
    assert stored["leased_at"] == stored["created_at"] == stored["run_at"]
    assert (stored["status"], stored["attempts"], stored["worker_id"]) == (
        "PROCESSING", 1, "idle-w")
    # The full view sends the job as stored, as a claim's push does.
    assert leased.job == stub.GetJob(pb.GetJobRequest(id=answer.job.id), timeout=5)
    stub.Ack(pb.AckRequest(job_id=leased.job.id, lease_token=leased.lease_token), timeout=5)
    assert stub.GetJob(pb.GetJobRequest(id=answer.job.id), timeout=5).status == pb.Job.COMPLETED
    stats = stub.Stats(pb.StatsRequest(), timeout=5)
    assert (stats.pending, stats.processing, stats.completed) == (0, 0, 1)
    assert stats.queue_wait.count == 1


def test_a_lean_stream_gets_the_payload_as_json_text(stub: Stub) -> None:
    r = Reader(stub, "lean-w", ["handed"], lean=True)
    try:
        wait_idle(stub, r)
        sent = {"to": "a@example.com", "n": 3, "tags": ["x", "é"]}
        req = pb.EnqueueRequest(type="handed", priority=5, max_retries=2)
        req.payload.update(sent)
        answer = stub.Enqueue(req, timeout=5)
        leased = r.next()
        assert leased is not None
        assert json.loads(leased.payload_json) == sent
        assert (leased.job.id, leased.job.type, leased.job.priority, leased.job.attempts,
                leased.job.max_retries, leased.job.status) == (
            answer.job.id, "handed", 5, 1, 2, pb.Job.PROCESSING)
        stub.Ack(pb.AckRequest(job_id=leased.job.id, lease_token=leased.lease_token), timeout=5)
    finally:
        r.close()


def test_a_paused_type_is_not_handed_off(stub: Stub, reader: Reader) -> None:
    stub.PauseQueue(pb.PauseQueueRequest(type="handed"), timeout=5)
    time.sleep(0.5)  # the broker follows the change by NOTIFY
    answer = stub.Enqueue(pb.EnqueueRequest(type="handed"), timeout=5)
    assert answer.job.status == pb.Job.PENDING
    assert reader.next(timeout=1.5) is None
    stub.ResumeQueue(pb.ResumeQueueRequest(type="handed"), timeout=5)
    leased = reader.next()
    assert leased is not None and leased.job.id == answer.job.id


def test_a_job_due_later_is_not_handed_off(stub: Stub, reader: Reader) -> None:
    req = pb.EnqueueRequest(type="handed")
    req.run_at.FromSeconds(int(time.time()) + 3)
    answer = stub.Enqueue(req, timeout=5)
    assert answer.job.status == pb.Job.PENDING
    assert reader.next(timeout=1.0) is None
    leased = reader.next(timeout=5)
    assert leased is not None and leased.job.id == answer.job.id


def test_a_full_stream_gets_no_hand_off_and_its_room_comes_back(stub: Stub) -> None:
    r = Reader(stub, "one-slot", ["handed"], max_in_flight=1)
    try:
        wait_idle(stub, r)
        first = stub.Enqueue(pb.EnqueueRequest(type="handed"), timeout=5)
        assert first.job.status == pb.Job.PROCESSING
        second = stub.Enqueue(pb.EnqueueRequest(type="handed"), timeout=5)
        assert second.job.status == pb.Job.PENDING  # the one slot is taken
        got = r.next()
        assert got is not None and got.job.id == first.job.id
        assert r.next(timeout=1.0) is None
        stub.Ack(pb.AckRequest(job_id=got.job.id, lease_token=got.lease_token), timeout=5)
        got = r.next()
        assert got is not None and got.job.id == second.job.id  # claimed once room came back
    finally:
        r.close()


def test_an_enqueue_whose_key_is_taken_leaves_the_waiting_stream_its_room(stub: Stub) -> None:
    r = Reader(stub, "keyed-w", ["handed"], max_in_flight=1)
    try:
        wait_idle(stub, r)
        first = stub.Enqueue(pb.EnqueueRequest(type="handed", idempotency_key="k"), timeout=5)
        got = r.next()
        assert got is not None and got.job.id == first.job.id
        stub.Ack(pb.AckRequest(job_id=got.job.id, lease_token=got.lease_token), timeout=5)
        time.sleep(0.3)  # the stream claims again, finds nothing, and waits
        again = stub.Enqueue(pb.EnqueueRequest(type="handed", idempotency_key="k"), timeout=5)
        assert not again.created and again.job.id == first.job.id
        # Had the taken key kept the slot it reserved, this job would wait for a poll instead.
        third = stub.Enqueue(pb.EnqueueRequest(type="handed"), timeout=5)
        assert third.job.status == pb.Job.PROCESSING
        got = r.next(timeout=1.0)
        assert got is not None and got.job.id == third.job.id
    finally:
        r.close()


def test_idle_workers_take_handed_off_jobs_in_turn(stub: Stub) -> None:
    readers = [Reader(stub, f"turn-{i}", ["handed"]) for i in range(2)]
    try:
        wait_idle(stub, *readers)
        answers = [stub.Enqueue(pb.EnqueueRequest(type="handed"), timeout=5) for _ in range(4)]
        assert sorted(a.job.worker_id for a in answers) == ["turn-0", "turn-0", "turn-1", "turn-1"]
        for r in readers:
            got = [r.next(), r.next()]
            assert all(g is not None and g.job.worker_id == r.worker for g in got)
    finally:
        for r in readers:
            r.close()


def test_a_worker_keeping_up_with_one_job_at_a_time_gets_each_by_hand_off(stub: Stub) -> None:
    """Its acks free room, but nothing new became runnable: no claim runs between the jobs, so
    none is ever under way when the next job comes, and each next job is handed off."""
    r = Reader(stub, "keeping-up", ["handed"], max_in_flight=4)
    try:
        wait_idle(stub, r)
        statuses = []
        for _ in range(30):
            answer = stub.Enqueue(pb.EnqueueRequest(type="handed"), timeout=5)
            statuses.append(pb.Job.Status.Name(answer.job.status))
            got = r.next()
            assert got is not None and got.job.id == answer.job.id
            stub.Ack(pb.AckRequest(job_id=got.job.id, lease_token=got.lease_token), timeout=5)
        assert statuses == ["PROCESSING"] * 30
    finally:
        r.close()


def test_a_job_due_later_starts_on_time_while_another_stream_claims(dsn: str) -> None:
    """The stream waiting for the later job skips the rounds that another stream's acks start,
    and its timer must survive them: the job starts when due, not at the next poll."""
    broker = start_broker(dsn, FORGE_POLL_INTERVAL="30")
    channel = grpc.insecure_channel(broker.target)
    stub = broker_pb2_grpc.BrokerStub(channel)
    a = Reader(stub, "due-a", ["due.a"])
    b = Reader(stub, "due-b", ["due.b"], max_in_flight=1)
    try:
        wait_idle(stub, a, b)
        stub.Enqueue(pb.EnqueueRequest(type="due.b"), timeout=5)
        held = b.next()
        assert held is not None
        req = pb.EnqueueRequest(type="due.a")
        due = time.time() + 1.5
        req.run_at.FromNanoseconds(int(due * 1e9))
        stub.Enqueue(req, timeout=5)
        time.sleep(0.3)  # both streams have looked, found nothing runnable, and wait
        stub.Ack(pb.AckRequest(job_id=held.job.id, lease_token=held.lease_token), timeout=5)
        got = a.next(timeout=6)
        late = time.time() - due
        assert got is not None and got.job.type == "due.a"
        assert late < 0.5, f"started {late:.2f} s after it was due"
    finally:
        a.close()
        b.close()
        channel.close()
        broker.stop()
