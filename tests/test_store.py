"""The store against a real PostgreSQL: claims, leases, retries, rescue, idempotency."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from forge_broker.completer import Completer
from forge_broker.dispatch import Dispatcher
from forge_broker.errors import FailedPrecondition, NotFound
from forge_broker.metrics import WAIT_BUCKETS
from forge_broker.models import (
    AckItem,
    JobFilter,
    JobRow,
    JobStatus,
    Lease,
    NackItem,
    NewJob,
    Order,
    PageKey,
)
from forge_broker.sql import q, rows_by_name
from forge_broker.store import LOCK_SPACE, Store, claim_statement, token_key


def lease_of(row: JobRow) -> Lease:
    """The lease a claimed row holds, as the broker's acks name it."""
    return Lease(str(row.id), str(row.lease_token))


def job(type: str = "email", **kw: object) -> NewJob:
    return NewJob(type=type, payload_json='{"to": "a@b.c"}', **kw)  # type: ignore[arg-type]


async def expire_leases(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("UPDATE forge.jobs SET lease_expires_at = now() - interval '1 second' "
                           "WHERE status = 'PROCESSING'")


async def test_eight_concurrent_claimers_claim_each_of_5000_jobs_exactly_once(store: Store) -> None:
    created = []
    for _ in range(5):
        created += [row.id for row, _ in await store.enqueue([job() for _ in range(1000)])]
    claimed: list[uuid.UUID] = []

    async def claimer(n: int) -> None:
        while True:
            rows = await store.claim(f"w{n}", [], 37, 30)
            if not rows:
                return
            claimed.extend(r.id for r in rows)

    await asyncio.gather(*(claimer(n) for n in range(8)))
    assert len(claimed) == 5000
    assert len(set(claimed)) == 5000
    assert set(claimed) == set(created)


async def test_claim_order_is_priority_then_run_at(store: Store) -> None:
    now = datetime.now(UTC)
    low_old = job(priority=-5, run_at=now - timedelta(seconds=3))
    high_new = job(priority=10)
    high_old = job(priority=10, run_at=now - timedelta(seconds=1))
    mid = job(priority=0)
    rows = [r for r, _ in await store.enqueue([low_old, high_new, mid])]
    # A run_at in the past is clamped to the enqueue time, so high_old, enqueued later, comes
    # after high_new; low_old's age does not lift it above higher priorities.
    (later_high, _), = await store.enqueue([high_old])
    order = []
    while batch := await store.claim("w", [], 1, 30):
        order.append(batch[0].id)
    assert order == [rows[1].id, later_high.id, rows[2].id, rows[0].id]


async def test_batch_claim_returns_priority_order(store: Store) -> None:
    rows = [r for r, _ in await store.enqueue([job(priority=p) for p in (1, 5, 3, -2, 4)])]
    claimed = await store.claim("w", [], 10, 30)
    assert [r.priority for r in claimed] == [5, 4, 3, 1, -2]
    assert {r.id for r in claimed} == {r.id for r in rows}


async def test_job_scheduled_in_the_future_is_not_claimed_until_due(store: Store) -> None:
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    (row, _), = await store.enqueue([job(run_at=due)])
    assert await store.claim("w", [], 10, 30) == []
    assert await store.next_run_at([]) == row.run_at
    await asyncio.sleep(1.6)
    [claimed] = await store.claim("w", [], 10, 30)
    assert claimed.id == row.id


async def test_a_full_claim_holds_each_job_as_stored_and_a_lean_one_the_same_values(
        store: Store) -> None:
    """A full claim's rows are what the table holds once leased; a lean claim's rows carry the
    same values, the payload as JSON text and the wait as seconds since run_at."""
    await store.enqueue([NewJob("email", json.dumps({"p": p}), priority=p, max_retries=p,
                                idempotency_key=f"k{p}") for p in range(6)])
    full = await store.claim("full", [], 3, 30)
    assert [r.priority for r in full] == [5, 4, 3]
    for r in full:
        assert r == await store.get(r.id)
        assert r.status is JobStatus.PROCESSING and r.worker_id == "full" and r.attempts == 1
    lean = await store.claim_leases("lean", [], 10, 30)
    assert [r.priority for r in lean] == [2, 1, 0]
    for r in lean:
        stored = await store.get(uuid.UUID(r.id))
        assert (r.id, r.lease_token, r.type, json.loads(r.payload_json), r.priority, r.attempts,
                r.max_retries) == (str(stored.id), str(stored.lease_token), stored.type,
                                   stored.payload, stored.priority, 1, stored.max_retries)
        assert r.waited == pytest.approx((stored.updated_at - stored.run_at).total_seconds(),
                                         abs=1e-6)


async def test_rows_are_read_by_column_name_whatever_the_column_order(store: Store) -> None:
    [(row, _)] = await store.enqueue([job(idempotency_key="by-name")])
    backwards = ", ".join(f.name for f in reversed(dataclasses.fields(JobRow)))
    async with store.pool.connection() as conn:
        async with conn.cursor(row_factory=rows_by_name(JobRow, status=JobStatus)) as cur:
            await cur.execute(f"SELECT 'ignored' AS extra, {backwards} FROM forge.jobs")
            [read] = await cur.fetchall()
            assert read == await store.get(row.id)
            assert read.status is JobStatus.PENDING
            with pytest.raises(psycopg.ProgrammingError, match=r"JobRow\.status"):
                await cur.execute("SELECT id, type FROM forge.jobs")


async def test_claim_filters_by_type(store: Store) -> None:
    await store.enqueue([job("email"), job("webhook"), job("report")])
    got = await store.claim("w", ["webhook", "report"], 10, 30)
    assert sorted(r.type for r in got) == ["report", "webhook"]


async def test_backoff_doubles_from_base_and_is_capped_at_an_hour(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for attempts in range(1, 15):
            cur = await conn.execute(
                "SELECT extract(epoch FROM forge.backoff(%s, 5)) FROM generate_series(1, 50)",
                (attempts,))
            delays = [float(r[0]) for r in await cur.fetchall()]
            nominal = min(3600.0, 5 * 2 ** (attempts - 1))
            assert all(0.8 * nominal - 1e-6 <= d <= nominal + 1e-6 for d in delays), attempts
            assert len(set(delays)) > 1  # jittered


async def test_nack_schedules_backoff_then_dead_after_max_retries(store: Store, completer: Completer) -> None:
    (row, _), = await store.enqueue([job(max_retries=2)])
    for attempt in (1, 2):
        [leased] = await store.claim("w", [], 1, 30)
        assert leased.attempts == attempt
        assert leased.lease_token is not None
        before = datetime.now(UTC)
        out = await completer.nack(
            NackItem(lease_of(leased), f"boom {attempt}", None, False))
        assert out.status == "PENDING"
        delay = (out.run_at - before).total_seconds()
        nominal = 0.2 * 2 ** (attempt - 1)
        assert 0.8 * nominal - 0.05 <= delay <= nominal + 0.05
        await asyncio.sleep(nominal + 0.05)
    [leased] = await store.claim("w", [], 1, 30)
    assert leased.attempts == 3
    assert leased.lease_token is not None
    out = await completer.nack(NackItem(lease_of(leased), "boom 3", None, False))
    assert out.status == "DEAD"
    final = await store.get(row.id)
    assert final.status == "DEAD"
    assert final.last_error == "boom 3"


async def test_nack_retry_after_overrides_backoff(store: Store, completer: Completer) -> None:
    await store.enqueue([job()])
    [leased] = await store.claim("w", [], 1, 30)
    assert leased.lease_token is not None
    before = datetime.now(UTC)
    out = await completer.nack(NackItem(lease_of(leased), "later", 42.0, False))
    assert out.status == "PENDING"
    assert 41.5 <= (out.run_at - before).total_seconds() <= 42.5


async def test_permanent_nack_goes_straight_to_dead(store: Store, completer: Completer) -> None:
    await store.enqueue([job(max_retries=10)])
    [leased] = await store.claim("w", [], 1, 30)
    assert leased.lease_token is not None
    out = await completer.nack(NackItem(lease_of(leased), "invalid address", None, True))
    assert out.status == "DEAD"


async def test_ack_with_stale_token_changes_nothing(store: Store, dsn: str, completer: Completer) -> None:
    (row, _), = await store.enqueue([job()])
    [first] = await store.claim("w1", [], 1, 30)
    assert first.lease_token is not None
    await expire_leases(dsn)
    assert [jid for jid, _ in await store.rescue_expired()] == [str(row.id)]
    await asyncio.sleep(0.25)  # past the 0.2 s backoff
    [second] = await store.claim("w2", [], 1, 30)
    assert second.lease_token is not None and second.lease_token != first.lease_token
    with pytest.raises(FailedPrecondition):
        await completer.ack(AckItem(Lease(str(row.id), str(first.lease_token)), json.dumps({"by": "w1"})))
    with pytest.raises(FailedPrecondition):
        await completer.nack(NackItem(Lease(str(row.id), str(first.lease_token)), "late", None, True))
    _, lost = await store.extend([Lease(str(row.id), str(first.lease_token))], 30)
    assert lost == [str(row.id)]
    current = await store.get(row.id)
    assert current.status == "PROCESSING"
    assert current.worker_id == "w2"
    assert current.lease_token == second.lease_token
    await completer.ack(AckItem(Lease(str(row.id), str(second.lease_token)), json.dumps({"by": "w2"})))
    assert (await store.get(row.id)).result == {"by": "w2"}


async def test_ack_after_deadline_but_before_rescue_counts(store: Store, dsn: str,
                                                           completer: Completer) -> None:
    (row, _), = await store.enqueue([job()])
    [leased] = await store.claim("w", [], 1, 30)
    assert leased.lease_token is not None
    await expire_leases(dsn)
    await completer.ack(AckItem(Lease(str(row.id), str(leased.lease_token))))
    assert (await store.get(row.id)).status == "COMPLETED"
    assert await store.rescue_expired() == []


async def test_ack_of_unknown_job_is_not_found(store: Store, completer: Completer) -> None:
    with pytest.raises(NotFound):
        await completer.ack(AckItem(Lease(uuid.uuid4(), uuid.uuid4())))


async def test_heartbeat_extends_the_lease(store: Store) -> None:
    await store.enqueue([job()])
    [leased] = await store.claim("w", [], 1, 2)
    assert leased.lease_token is not None and leased.lease_expires_at is not None
    deadline, lost = await store.extend([lease_of(leased)], 60)
    assert lost == []
    assert deadline is not None
    assert deadline - leased.lease_expires_at > timedelta(seconds=50)


async def test_expired_lease_is_rescued_as_a_failed_attempt(store: Store, dsn: str) -> None:
    (row, _), _ = await store.enqueue([job(max_retries=0), job(max_retries=1)])
    await store.claim("w", [], 10, 30)
    await expire_leases(dsn)
    rescued = dict(await store.rescue_expired())
    assert rescued[str(row.id)] == "DEAD"  # max_retries 0: the only attempt failed
    assert len(rescued) == 2
    assert "PENDING" in rescued.values()
    assert "lease expired" in ((await store.get(row.id)).last_error or "")


async def test_idempotent_enqueue_returns_the_existing_job(store: Store) -> None:
    (first, created), = await store.enqueue([job(idempotency_key="order-42")])
    assert created
    (again, created_again), = await store.enqueue([job("other", idempotency_key="order-42")])
    assert not created_again
    assert again.id == first.id and again.type == "email"
    batch = await store.enqueue([job(idempotency_key="k1"), job(idempotency_key="k1"),
                                 job(idempotency_key="order-42")])
    assert [c for _, c in batch] == [True, False, False]
    assert batch[0][0].id == batch[1][0].id
    assert batch[2][0].id == first.id
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM forge.jobs")
        assert (await cur.fetchone()) == (2,)


async def test_cancel_and_retry_dead_follow_the_state_machine(store: Store, completer: Completer) -> None:
    (row, _), = await store.enqueue([job(max_retries=0)])
    with pytest.raises(FailedPrecondition):
        await store.retry_dead(row.id)
    [leased] = await store.claim("w", [], 1, 30)
    assert leased.lease_token is not None
    await completer.nack(NackItem(Lease(str(row.id), str(leased.lease_token)), "boom", None, False))
    retried = await store.retry_dead(row.id)
    assert retried.status == "PENDING" and retried.attempts == 0
    cancelled = await store.cancel(row.id, "no longer needed")
    assert cancelled.status == "CANCELLED"
    with pytest.raises(FailedPrecondition):
        await store.cancel(row.id, None)
    with pytest.raises(NotFound):
        await store.cancel(uuid.uuid4(), None)


async def test_counters_match_the_table_after_folding(store: Store, completer: Completer) -> None:
    await store.enqueue([job("a") for _ in range(30)] + [job("b") for _ in range(5)])
    leased = await store.claim("w", ["a"], 10, 30)
    for r in leased[:4]:
        assert r.lease_token is not None
        await completer.ack(AckItem(lease_of(r)))
    assert await store.fold_counters()
    snap = await store.snapshot()
    by_type = {t.type: t for t in snap.types}
    assert (by_type["a"].pending, by_type["a"].processing, by_type["a"].completed) == (20, 6, 4)
    assert by_type["b"].pending == 5
    assert snap.throughput[-1][1] == 4
    assert snap.wait_count == 10
    assert len(snap.throughput) == 60


async def test_retention_deletes_only_old_finished_jobs(store: Store, completer: Completer) -> None:
    await store.enqueue([job() for _ in range(3)])
    rows = await store.claim("w", [], 2, 30)
    for r in rows:
        assert r.lease_token is not None
        await completer.ack(AckItem(lease_of(r)))
    assert await store.delete_finished(3600, 100) == 0
    await asyncio.sleep(0.2)
    assert await store.delete_finished(0.1, 100) == 2
    await store.fold_counters()
    snap = await store.snapshot()
    assert snap.total("completed") == 0 and snap.total("pending") == 1


async def test_retention_sweep_reads_no_job_finished_within_retention(store: Store) -> None:
    """The sweep runs every tick on a table of any size: its index range ends at the cutoff's
    id, so finished jobs still inside retention are never read, however many there are."""
    await store.enqueue([job() for _ in range(200)])
    async with store.pool.connection() as conn:
        await conn.execute("UPDATE forge.jobs SET status = 'COMPLETED'")
        # 200 rows fit in a page or two, where a sequential scan is cheapest: plan as for a
        # large table.
        await conn.execute("SET enable_seqscan = off")
        cur = await conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + q("delete_finished_jobs"),
                                 {"retention_seconds": 3600, "limit": 1000})
        row = await cur.fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]

    def read(node: dict[str, Any]) -> int:
        """Rows a node and its children took from the table and then threw away."""
        return int(node.get("Rows Removed by Filter", 0)) + sum(read(c) for c in node.get("Plans", []))

    assert read(plan) == 0
    assert await store.delete_finished(3600, 1000) == 0


async def test_a_lease_token_is_held_exactly_while_a_job_is_processing(store: Store) -> None:
    """The lease statements match the token alone; the table refuses a row that would fool them."""
    await store.enqueue([job()])
    [row] = await store.claim("w", [], 1, 30)
    async with store.pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute("UPDATE forge.jobs SET status = 'COMPLETED' WHERE id = %s", (row.id,))
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute("UPDATE forge.jobs SET lease_token = NULL WHERE id = %s", (row.id,))


async def test_every_lease_gets_its_own_token_in_one_claim_and_across_claims(store: Store) -> None:
    await store.enqueue([job("tok") for _ in range(50)])
    first = await store.claim("w", ["tok"], 50, 30)
    lean = await store.claim_leases("w", ["tok"], 1, 30)
    assert lean == []
    tokens = {str(r.lease_token) for r in first}
    assert len(tokens) == 50
    # The same job leased again, in another claim, holds a new token.
    await store.release([lease_of(r) for r in first[:10]])
    again = await store.claim_leases("w", ["tok"], 10, 30)
    assert {r.id for r in again} == {str(r.id) for r in first[:10]}
    assert not {r.lease_token for r in again} & tokens
    assert len({r.lease_token for r in again}) == 10


async def test_a_wait_falls_in_the_bucket_of_the_first_bound_above_it(dsn: str) -> None:
    """forge.wait_bucket, at every bound of the broker's queue-wait histogram and either side of
    it, and over a grid of waits up to days: the first bound above the wait, in milliseconds (a
    wait on a bound counts toward the next one up), and a day past the last bound."""
    bounds = [round(b * 1000) for b in WAIT_BUCKETS]
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("""
            WITH waits(w) AS (
              SELECT b * interval '1 ms' + d * interval '1 microsecond'
              FROM unnest(%(bounds)s::int[]) AS b, unnest('{-1,0,1}'::int[]) AS d
              UNION ALL SELECT v * interval '1 microsecond' FROM generate_series(0, 5000000, 997) v
              UNION ALL SELECT v * interval '1 second' FROM generate_series(0, 200000, 61) v
              UNION ALL VALUES (interval '3 days'))
            SELECT w, forge.wait_bucket(w) FROM waits""", {"bounds": bounds})
        rows = await cur.fetchall()
    assert len(rows) > 8000
    for wait, bucket in rows:
        assert bucket == next((b for b in bounds if wait < timedelta(milliseconds=b)), 86400000), wait


async def test_throughput_and_queue_wait_count_each_kind_of_update_once(
        store: Store, completer: Completer, dsn: str) -> None:
    """The counter trigger reads most moves from new_rows alone: a claim, an ack, a nack, a
    rescue count once; a heartbeat, a release, a retry of a dead job and a cancel not at all."""
    async def figures() -> tuple[int, int, int]:
        assert await store.fold_counters()
        snap = await store.snapshot()
        completed = sum(c for _, c, _ in snap.throughput)
        failed = sum(f for _, _, f in snap.throughput)
        return completed, failed, snap.wait_count

    await store.enqueue([job("k", max_retries=1) for _ in range(7)])
    claimed = await store.claim("w", ["k"], 7, 30)
    assert await figures() == (0, 0, 7)
    for r in claimed[:2]:
        await completer.ack(AckItem(lease_of(r)))
    assert await figures() == (2, 0, 7)
    await completer.nack(NackItem(lease_of(claimed[2]), "retry me", None, False))
    await completer.nack(NackItem(lease_of(claimed[3]), "give up", None, True))
    assert await figures() == (2, 2, 7)
    _, lost = await store.extend([lease_of(r) for r in claimed[4:]], 60)
    assert lost == []
    await store.release([lease_of(claimed[4])])
    assert await figures() == (2, 2, 7)
    await expire_leases(dsn)
    assert len(await store.rescue_expired()) == 2
    assert await figures() == (2, 4, 7)
    await store.retry_dead(claimed[3].id)
    await store.cancel(claimed[4].id, "not needed")
    assert await figures() == (2, 4, 7)
    snap = await store.snapshot()
    by_type = {t.type: t for t in snap.types}
    k = by_type["k"]
    assert (k.pending + k.scheduled, k.processing, k.completed, k.dead, k.cancelled) == (4, 0, 2, 0, 1)


async def test_reconcile_checks_a_full_stream_only_once_nothing_settles_there(
        store: Store, completer: Completer) -> None:
    """An ack through another broker frees the slot on the first tick the stream is stuck,
    not while acks keep arriving here (each look is a lookup of the stream's whole set)."""
    await store.enqueue([job() for _ in range(4)])
    dispatcher = Dispatcher(store, broker_id="b", poll_seconds=0.05)
    here = Completer(store, dispatcher.settled)
    await dispatcher.start()
    try:
        stream = await dispatcher.open("w", [], 2, 30)

        async def held(n: int) -> dict[str, str]:
            for _ in range(200):
                if len(stream.in_flight) == n:
                    return dict(stream.in_flight)
                await asyncio.sleep(0.01)
            raise AssertionError(f"stream holds {len(stream.in_flight)} jobs, not {n}")

        (elsewhere, token_a), (local, token_b) = (await held(2)).items()
        await completer.ack(AckItem(Lease(elsewhere, token_a)))  # another broker's ack
        await here.ack(AckItem(Lease(local, token_b)))           # one of this broker's
        assert elsewhere in await held(2)  # refilled to full, the stale lease still counted
        await dispatcher.reconcile()  # busy since the last look: not checked
        assert elsewhere in stream.in_flight
        await dispatcher.reconcile()  # nothing settled here since: checked, freed
        assert elsewhere not in stream.in_flight
        assert elsewhere not in await held(2)  # and refilled
    finally:
        await dispatcher.stop()


async def test_a_broker_listens_for_new_jobs_only_while_it_has_a_stream(store: Store, dsn: str) -> None:
    """No stream, no LISTEN (a broker taking only enqueues is not woken by each INSERT); with
    one, a new job reaches it on the NOTIFY alone, long before the safety-net poll."""
    async def listeners() -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            row = await (await conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query = 'LISTEN forge_jobs'")).fetchone()
            assert row is not None
            return int(row[0])

    async def until_listeners(n: int) -> None:
        for _ in range(200):
            if await listeners() == n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{await listeners()} listening connections, not {n}")

    dispatcher = Dispatcher(store, broker_id="b", poll_seconds=60)
    await dispatcher.start()
    try:
        await asyncio.sleep(0.2)
        assert await listeners() == 0
        stream = await dispatcher.open("w", [], 5, 30)
        await until_listeners(1)
        [(row, _)] = await store.enqueue([job()])
        batch = await asyncio.wait_for(stream.outbox.get(), timeout=5)
        assert [r.id for r in batch or []] == [row.id]
        await dispatcher.close(stream)
        await until_listeners(0)
        again = await dispatcher.open("w", [], 5, 30)  # a worker coming back is heard again
        await until_listeners(1)
        [(row, _)] = await store.enqueue([job()])
        batch = await asyncio.wait_for(again.outbox.get(), timeout=5)
        assert [r.id for r in batch or []] == [row.id]
    finally:
        await dispatcher.stop()
    await until_listeners(0)


async def test_every_status_lists_newest_first_and_pages(store: Store, completer: Completer) -> None:
    """PROCESSING rows are listed from the lease index, every other status from the status
    index (migration 007): each listing holds exactly that status's jobs, newest first."""
    created = [row for row, _ in await store.enqueue([job() for _ in range(8)])]
    claimed = await store.claim("w", [], 5, 30)
    await completer.ack(AckItem(lease_of(claimed[0])))
    await completer.ack(AckItem(lease_of(claimed[1])))
    await store.cancel(created[-1].id, None)
    now = {row.id: (await store.get(row.id)).status for row in created}
    for status in ("PENDING", "PROCESSING", "COMPLETED", "CANCELLED", "DEAD"):
        expected = sorted((i for i, s in now.items() if s == status), reverse=True)
        listed: list[uuid.UUID] = []
        after = None
        where = JobFilter(status=JobStatus(status))
        while page := await store.list_jobs(where, Order.NEWEST, after, 2):
            assert all(r.status == status for r in page)
            listed += [r.id for r in page]
            after = PageKey(page[-1].id)
        assert listed == expected, status
    assert sorted(now.values()) == sorted(["PENDING"] * 2 + ["PROCESSING"] * 3 + ["COMPLETED"] * 2
                                          + ["CANCELLED"])


async def test_a_claim_planned_on_an_empty_queue_locks_only_the_rows_it_claims(dsn: str) -> None:
    """The advisory lock goes on the claimed rows alone, whatever plan the claim has. A plan
    cached while the table was empty scans it whole: a lock tried on every row scanned would
    be held on rows other claimers then skip, and on a queue grown to 30,000 jobs would run
    out of shared memory."""
    params = {"worker_id": "w", "types": [], "limit": 10, "lease_seconds": 30,
              "lock_space": LOCK_SPACE, "token_key": token_key()}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        # The state of a broker that started on an empty queue: statistics of an empty table,
        # no autovacuum yet to refresh them, the claim prepared and its generic plan cached.
        await conn.execute("ALTER TABLE forge.jobs SET (autovacuum_enabled = false)")
        await conn.execute("ANALYZE forge.jobs")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(claim_statement(lean=True), params, prepare=True)
        await conn.execute("INSERT INTO forge.jobs (id, type, payload) "
                           "SELECT gen_random_uuid(), 'burst', '{}' FROM generate_series(1, 30000)")
        async with conn.transaction():
            claimed = await (await conn.execute(claim_statement(lean=True), params, prepare=True)).fetchall()
            row = await (await conn.execute(
                "SELECT count(*) FROM pg_locks "
                "WHERE locktype = 'advisory' AND pid = pg_backend_pid()")).fetchone()
        assert row is not None
        assert (len(claimed), row[0]) == (10, 10)


async def test_an_ack_batch_that_deadlocks_with_another_update_is_run_again(store: Store, dsn: str) -> None:
    """Two statements updating the same leased rows in opposite orders (an ack batch and a
    heartbeat, say) deadlock, and PostgreSQL aborts one of them: the broker runs it again
    rather than answering the worker UNAVAILABLE."""
    await store.enqueue([job(), job()])
    a, b = sorted(await store.claim("w", [], 2, 30), key=lambda r: str(r.id))
    acks = [AckItem(Lease(str(r.id), str(r.lease_token)), None) for r in (a, b)]
    async with await psycopg.AsyncConnection.connect(dsn) as other:
        await other.execute("SET deadlock_timeout = '5s'")  # the ack waits first, so it is the victim
        await other.execute("UPDATE forge.jobs SET updated_at = now() WHERE id = %s", (b.id,))
        ack = asyncio.create_task(store.ack_many(acks))  # locks a, then waits for b
        await asyncio.sleep(0.3)
        blocked = asyncio.create_task(other.execute(
            "UPDATE forge.jobs SET updated_at = now() WHERE id = %s", (a.id,)))  # waits for a
        await asyncio.sleep(1.5)  # past the ack's deadlock_timeout (1 s): it is aborted
        await blocked
        await other.commit()
        assert await asyncio.wait_for(ack, 10) == {str(a.id), str(b.id)}
    assert {(await store.get(r.id)).status for r in (a, b)} == {JobStatus.COMPLETED}


async def test_a_claim_of_several_types_takes_the_best_jobs_across_them(store: Store) -> None:
    await store.enqueue([job("a", priority=p) for p in (0, 0, 5)] +
                        [job("b", priority=p) for p in (3, 10)] + [job("c", priority=100)])
    first = await store.claim("w", ["a", "b"], 3, 30)
    assert [(r.type, r.priority) for r in first] == [("b", 10), ("a", 5), ("b", 3)]
    rest = await store.claim_leases("w", ["a", "b"], 10, 30)
    assert sorted(r.priority for r in rest) == [0, 0]
    [top] = await store.claim("w", [], 10, 30)
    assert (top.type, top.priority) == ("c", 100)


async def test_held_types_are_left_out_of_a_claim_of_any_type_or_of_named_ones(
        store: Store) -> None:
    await store.enqueue([job("a"), job("held"), job("c", priority=7)])
    assert await store.claim("w", ["held"], 10, 30, held=["held"]) == []
    got = await store.claim("w", [], 10, 30, held=["held"])
    assert [r.type for r in got] == ["c", "a"]
    [left] = await store.claim("w", ["held"], 10, 30)
    assert left.type == "held"


async def test_stats_per_type_figures_span_every_priority(store: Store, dsn: str) -> None:
    """Scheduled counts, the oldest runnable job's age and the next run_at of a type whose
    pending jobs sit at several priorities (each walked apart in the pending index)."""
    now = datetime.now(UTC)
    rows = await store.enqueue([
        job("s", priority=5, run_at=now + timedelta(hours=1)),
        job("s", priority=0), job("s", priority=0),
        job("s", priority=-3, run_at=now + timedelta(hours=2)),
        job("s", priority=-3),
        job("other")])
    oldest = rows[4][0].id
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("UPDATE forge.jobs SET run_at = now() - interval '10 minutes' "
                           "WHERE id = %s", (oldest,))
    snap = await store.snapshot()
    [s] = [t for t in snap.types if t.type == "s"]
    assert (s.pending, s.scheduled) == (3, 2)
    assert 600 <= s.oldest_pending_age_seconds < 660
    next_at = await store.next_run_at(["s"])
    assert next_at is not None and abs((next_at - (now + timedelta(hours=1))).total_seconds()) < 1
    assert await store.next_run_at(["other", "none"]) is None


async def test_a_type_named_twice_is_claimed_as_once(store: Store) -> None:
    await store.enqueue([job("a") for _ in range(3)])
    got = await store.claim("w", ["a", "a"], 2, 30)
    assert len({r.id for r in got}) == 2
