"""Property-based: any sequence of store operations keeps the database equal to a simple model
of the job state machine (statuses, attempts, lease holders)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from forge_broker.completer import Completer
from forge_broker.errors import FailedPrecondition
from forge_broker.models import AckItem, Lease, NackItem, NewJob
from forge_broker.store import Store


@dataclass
class ModelJob:
    status: str
    attempts: int
    max_retries: int
    token: uuid.UUID | None = None


class StoreMachine(RuleBasedStateMachine):
    dsn: str

    @initialize()
    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        # Backoff so short that every retry is runnable at once: the model need not know time.
        self.store = Store(self.dsn, min_size=1, max_size=2, backoff_base=1e-6)
        self.completer = Completer(self.store, lambda _ended: None)
        self.run(self.store.open())
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE forge.jobs, forge.job_counts, forge.job_count_deltas")
        self.jobs: dict[uuid.UUID, ModelJob] = {}
        self.stale: list[Lease] = []

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.run(self.store.close())
            self.loop.close()

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def with_status(self, status: str) -> list[uuid.UUID]:
        return sorted(j for j, m in self.jobs.items() if m.status == status)

    @rule(n=st.integers(1, 4), max_retries=st.integers(0, 2))
    def enqueue(self, n: int, max_retries: int) -> None:
        for row, created in self.run(self.store.enqueue(
                [NewJob(type="t", payload_json="{}", max_retries=max_retries)] * n)):
            assert created
            self.jobs[row.id] = ModelJob("PENDING", 0, max_retries)

    @rule(limit=st.integers(1, 5))
    def claim(self, limit: int) -> None:
        pending = set(self.with_status("PENDING"))
        rows = self.run(self.store.claim("w", [], limit, 30))
        assert len(rows) == min(limit, len(pending))
        for row in rows:
            assert row.id in pending
            m = self.jobs[row.id]
            m.status, m.attempts, m.token = "PROCESSING", m.attempts + 1, row.lease_token
            assert row.attempts == m.attempts

    def _held(self, data: st.DataObject) -> tuple[uuid.UUID, ModelJob]:
        job_id = data.draw(st.sampled_from(self.with_status("PROCESSING")))
        return job_id, self.jobs[job_id]

    @precondition(lambda self: self.with_status("PROCESSING"))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        job_id, m = self._held(data)
        assert m.token is not None
        self.run(self.completer.ack(AckItem(Lease(str(job_id), str(m.token)), json.dumps({"ok": 1}))))
        self.stale.append(Lease(str(job_id), str(m.token)))
        m.status, m.token = "COMPLETED", None

    @precondition(lambda self: self.with_status("PROCESSING"))
    @rule(data=st.data(), permanent=st.booleans())
    def nack(self, data: st.DataObject, permanent: bool) -> None:
        job_id, m = self._held(data)
        assert m.token is not None
        lease = Lease(str(job_id), str(m.token))
        out = self.run(self.completer.nack(NackItem(lease, "boom", None, permanent)))
        self.stale.append(lease)
        m.token = None
        m.status = "DEAD" if permanent or m.attempts > m.max_retries else "PENDING"
        assert out.status == m.status

    @precondition(lambda self: self.with_status("PROCESSING"))
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        job_id, m = self._held(data)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("UPDATE forge.jobs SET lease_expires_at = now() - interval '1 s' "
                         "WHERE id = %s", (job_id,))
        rescued = dict(self.run(self.store.rescue_expired()))
        assert m.token is not None
        self.stale.append(Lease(str(job_id), str(m.token)))
        m.token = None
        m.status = "DEAD" if m.attempts > m.max_retries else "PENDING"
        assert rescued == {str(job_id): m.status}

    @precondition(lambda self: self.stale)
    @rule(data=st.data())
    def stale_ack_is_refused(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.stale))
        with pytest.raises(FailedPrecondition):
            self.run(self.completer.ack(AckItem(Lease(lease.job_id, lease.token))))

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        m = self.jobs[job_id]
        if m.status in ("COMPLETED", "CANCELLED"):
            with pytest.raises(FailedPrecondition):
                self.run(self.store.cancel(job_id, None))
            return
        self.run(self.store.cancel(job_id, "test"))
        if m.token is not None:
            self.stale.append(Lease(str(job_id), str(m.token)))
        m.status, m.token = "CANCELLED", None

    @precondition(lambda self: self.with_status("DEAD"))
    @rule(data=st.data())
    def retry_dead(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.with_status("DEAD")))
        row = self.run(self.store.retry_dead(job_id))
        assert row.status == "PENDING" and row.attempts == 0
        self.jobs[job_id].status, self.jobs[job_id].attempts = "PENDING", 0

    @invariant()
    def database_equals_model(self) -> None:
        if not hasattr(self, "store"):
            return
        with psycopg.connect(self.dsn) as conn:
            rows = conn.execute("SELECT id, status, attempts, lease_token FROM forge.jobs").fetchall()
            counts = dict(conn.execute(
                "SELECT status, sum(n) FROM (SELECT status, n FROM forge.job_counts UNION ALL "
                "SELECT status, n FROM forge.job_count_deltas) c GROUP BY status").fetchall())
        assert {r[0]: (r[1], r[2], r[3]) for r in rows} == {
            j: (m.status, m.attempts, m.token) for j, m in self.jobs.items()}
        expected: dict[str, int] = {}
        for m in self.jobs.values():
            expected[m.status] = expected.get(m.status, 0) + 1
        assert {s: int(n) for s, n in counts.items() if n} == expected


@pytest.mark.slow  # 75 random histories of up to 25 steps: ~18 s
def test_store_matches_the_state_machine_model(dsn: str) -> None:
    StoreMachine.dsn = dsn
    StoreMachine.TestCase.settings = settings(
        max_examples=75, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])
    StoreMachine.TestCase().runTest()
