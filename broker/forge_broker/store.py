"""The store: every read and write of Forge's tables, each one named statement.

Every state change of a job is a single statement, so it is atomic on its own; nothing here
holds a transaction open across a job's execution or a stream's life.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, LiteralString, TypeVar

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import AsyncRowFactory
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from forge_broker import schedules
from forge_broker.errors import FailedPrecondition, ForgeError, NotFound
from forge_broker.ids import as_uuid, parse_id, uuid7s
from forge_broker.models import (
    AckItem,
    DueSchedule,
    FiredRound,
    HandOff,
    JobFilter,
    JobRow,
    JobStatus,
    Lease,
    LeasedRow,
    NackItem,
    NackOutcome,
    NewJob,
    NewSchedule,
    Order,
    PageKey,
    QueueSettings,
    ScheduleRow,
    Snapshot,
    Throughput,
    TypeCounts,
    WaitPoint,
    WorkerRow,
)
from forge_broker.sql import q, rows_by_name

log = logging.getLogger("forge.store")

# First key of the two-key advisory locks the broker takes (claims, maintenance); the second
# key is the job's hash or a fixed number. Distinct from the migration lock.
LOCK_SPACE = 0x466F72  # "For"


def token_key() -> str:
    """A claim's key for its lease tokens (claim_jobs says how they are made): 128 random bits."""
    return secrets.token_hex(16)


# Statements on leased rows (acks, nacks, heartbeats, releases) update many rows each, in the
# order their plans visit them, so two of them touching the same rows can deadlock. PostgreSQL
# then aborts one, which leaves nothing half written, and running it again is its remedy.
DEADLOCK_RETRIES = 3
# How long the pool keeps retrying a failed connection (with doubling delays) before it drops
# the attempt; callers that find no connection then start a fresh one. With psycopg_pool's
# default (300 s) the delay grows past a minute, and a broker whose database is back would
# answer UNAVAILABLE until its next attempt.
RECONNECT_TIMEOUT = 10.0

QUEUE_WAIT_WINDOW_SECONDS = 300
# Rows per statement of a bulk call (RetryDeadJobs, PurgeDeadJobs, CancelJobs): each batch is a
# transaction of a few tens of milliseconds, so none nears the statement timeout or holds many
# row locks for long, whatever the call matches.
BULK_BATCH = 1000
# Jobs from which an enqueue that COPY can insert (see _copyable) goes by COPY: per row the
# database spends some 15 % less on it than on insert_jobs from 250 rows up (bench/profile
# notes in docs/benchmarks.md), but its transaction takes four round trips more, which a batch
# of a few tens of jobs does not win back.
COPY_MIN = 200

R = TypeVar("R")
Inserted = Callable[[Sequence[str], datetime], Awaitable[None]]
"""``Store.enqueue``'s hook: the new jobs' ids and the INSERT's now(), once it has committed."""
_Answer = Callable[[psycopg.AsyncConnection[Any], Sequence[str], Sequence[NewJob], datetime,
                    int, Sequence[str] | None], Awaitable[list[R]]]
"""What an enqueue answers, from its INSERT's now(), row count and keyed ids inserted."""
# Statuses by value: a dict lookup costs a tenth of calling JobStatus.
_JOB_ROWS = rows_by_name(JobRow, status={s.value: s for s in JobStatus}.__getitem__)
_LEASED_ROWS = rows_by_name(LeasedRow)
_WORKER_ROWS = rows_by_name(WorkerRow)
_SCHEDULE_ROWS = rows_by_name(ScheduleRow)
_DUE_ROWS = rows_by_name(DueSchedule)

# lock_queue's answer for a type with no row: no longer configured, so nothing limits it.
_UNCONFIGURED: tuple[Any, ...] = (False, 0, 0, 0, 0.0, 0, None)

Claimed = list[JobRow] | list[LeasedRow]
"""One claim's rows, in the view the stream asked for."""


@dataclasses.dataclass(frozen=True)
class LimitedClaim:
    """What ``Store.claim_limited`` leased, and when the type's rate window next frees room if
    the rate limit is what held it back (None otherwise)."""

    rows: Claimed
    rate_frees_at: datetime | None


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Every pooled connection decodes jsonb (payloads of claimed jobs) with orjson."""
    set_json_loads(orjson.loads, conn)


class _Pool(AsyncConnectionPool[psycopg.AsyncConnection[Any]]):
    """The pool, except that a connection whose server refused a write as read-only is closed
    rather than returned. That server was demoted or fenced (a primary turned standby keeps
    no session, but one set to default_transaction_read_only keeps them all), so every later
    write through the connection would fail too; the pool replaces it with a connection made
    through the DSN, whose target_session_attrs=read-write picks the host that takes writes."""

    @contextlib.asynccontextmanager
    async def connection(self, timeout: float | None = None  # noqa: ASYNC109 - the pool's own
                         ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with super().connection(timeout) as conn:
            try:
                yield conn
            except psycopg.errors.ReadOnlySqlTransaction:
                await conn.close()
                raise


class Store:
    """Async access to one Forge database through a bounded connection pool."""

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 10,
                 statement_timeout_ms: int = 30_000, backoff_base: float = 5.0,
                 pool_timeout: float = 5.0, direct_dsn: str | None = None) -> None:
        """``direct_dsn``, when given, is a session connection to the database ``dsn`` reaches
        through a transaction-mode pooler (PgBouncer ``pool_mode = transaction``): LISTEN
        uses it, and the pool then keeps no state in a server session, since each transaction
        may run on a different one. So no server-side prepared statements (the next
        transaction's server would not know them) and no ``options`` startup parameter
        (PgBouncer refuses it; the statement timeout is then the role's or the database's)."""
        self.dsn = dsn
        self.direct_dsn = direct_dsn or dsn
        self.backoff_base = backoff_base
        session: dict[str, Any] = (
            {"prepare_threshold": None} if direct_dsn is not None
            else {"options": f"-c statement_timeout={statement_timeout_ms}"})
        self.pool = _Pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            open=False,
            # A caller waits this long for a connection, then gets UNAVAILABLE, never a hang.
            timeout=pool_timeout,
            configure=_configure,
            reconnect_timeout=RECONNECT_TIMEOUT,
            kwargs={
                "connect_timeout": max(1, int(pool_timeout)),
                "autocommit": True,
                **session,
            },
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> bool:
        """True when the database answers."""
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
            return True
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("database ping failed: %s", exc)
            return False

    # -- enqueue -------------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[NewJob], *, inserted: Inserted | None = None
                      ) -> list[tuple[JobRow, bool]]:
        """Insert ``jobs`` in one statement; return each job (new or existing) and whether it is new.

        All or nothing: the batch is one statement (a COPY when ``_copyable`` and of COPY_MIN
        jobs or more, else an INSERT). A job whose idempotency key is already used comes back
        as the existing row with ``False``. New rows are built here from the request and the
        statement's ``now()``, not read back: they hold exactly what was inserted.

        ``inserted``: when every job went in by one INSERT, awaited with their ids and the
        statement's now() as soon as it has committed, before the answer is built and the
        connection goes back to the pool (a job leased by the INSERT goes to its worker first).
        """
        return await self._enqueue(jobs, self._enqueued, dated=True, inserted=inserted)

    async def enqueue_ids(self, jobs: Sequence[NewJob]) -> list[tuple[str, bool]]:
        """``enqueue``, answering only each job's id (and whether it is new): no row is built."""
        return await self._enqueue(jobs, self._enqueued_ids, dated=False)

    async def _enqueue(self, jobs: Sequence[NewJob], answer: _Answer[R], *, dated: bool,
                       inserted: Inserted | None = None) -> list[R]:
        """``dated``: whether ``answer`` needs the statement's now() (a COPY reads it apart)."""
        if len(jobs) >= COPY_MIN and _copyable(jobs):
            return await self._copy_in([jobs], answer, dated=dated)
        ids = uuid7s(len(jobs))
        async with self.pool.connection() as conn:
            cur = await conn.execute(*_insert(ids, jobs))
            row = await cur.fetchone()
            assert row is not None  # an aggregate always answers one row
            now, count = row[0], row[1]
            if inserted is not None and count == len(jobs):
                await inserted(ids, now)
            return await answer(conn, ids, jobs, *row)

    async def enqueue_chunks(self, chunks: Iterable[Sequence[NewJob]]) -> list[tuple[JobRow, bool]]:
        """``enqueue`` for a large batch handed over in parts, all or nothing: each part is sent
        (its rows into the batch's one COPY, or its INSERT in pipeline mode) before the next
        part is taken from ``chunks``, so the caller's work on that part (validating it) runs
        while the database takes in the last one. An exception from ``chunks`` rolls the whole batch
        back."""
        return await self._enqueue_chunks(chunks, self._enqueued, dated=True)

    async def enqueue_chunks_ids(self, chunks: Iterable[Sequence[NewJob]]
                                 ) -> list[tuple[str, bool]]:
        """``enqueue_chunks``, answering as ``enqueue_ids`` does."""
        return await self._enqueue_chunks(chunks, self._enqueued_ids, dated=False)

    async def _enqueue_chunks(self, chunks: Iterable[Sequence[NewJob]], answer: _Answer[R],
                              *, dated: bool) -> list[R]:
        """By COPY while the parts allow it (the first decides; a later one that COPY cannot
        take rolls the COPY back and the batch goes again by insert_jobs, its parts taken so
        far with it), else by insert_jobs."""
        parts = iter(chunks)
        first = next(parts, None)
        if first is None:
            return []
        taken = [first]
        if _copyable(first):
            try:
                return await self._copy_in(itertools.chain(taken, _copyable_parts(parts, taken)),
                                           answer, dated=dated)
            except _NotCopyable:
                pass
        return await self._insert_parts(itertools.chain(taken, parts), answer)

    async def _insert_parts(self, chunks: Iterable[Sequence[NewJob]], answer: _Answer[R]
                            ) -> list[R]:
        """One insert_jobs per part, sent one after another (pipeline mode), in one
        transaction."""
        ids: list[str] = []
        jobs: list[NewJob] = []
        cursors = []
        async with self.pool.connection() as conn:
            async with conn.transaction(), conn.pipeline() as pipeline:
                for chunk in chunks:
                    chunk_ids = uuid7s(len(chunk))
                    cursors.append(await conn.execute(*_insert(chunk_ids, chunk)))
                    ids += chunk_ids
                    jobs += chunk
                await pipeline.sync()
                answers = [row for cur in cursors if (row := await cur.fetchone()) is not None]
            assert answers and len(answers) == len(cursors)  # an aggregate answers one row
            now = answers[0][0]  # every part's: now() is the transaction's start
            count = sum(a[1] for a in answers)
            keyed = [i for a in answers for i in a[2] or ()]
            return await answer(conn, ids, jobs, now, count, keyed)

    async def _copy_in(self, parts: Iterable[Sequence[NewJob]], answer: _Answer[R], *,
                       dated: bool) -> list[R]:
        """Insert ``parts`` (each ``_copyable``) by one COPY, each part written to it as soon as
        it is taken: the next part is taken from ``parts`` (validated, by the servicer), given
        its ids and written as COPY's rows while the database parses the one before (and
        inserts the rows it has buffered, 1,000 or 64 kB of them at a time). One statement is
        all or nothing by itself, so it runs without a transaction unless the answer is
        ``dated``: the transaction then first reads its now(), every new row's created_at and
        run_at, for ``answer``. An exception from ``parts`` ends the COPY in failure (nothing
        is inserted) and goes on up.

        Why one COPY rather than one per part in a transaction: no round trips for BEGIN,
        COMMIT and each later COPY, and a quarter less of the broker's CPU per batch. Measured:
        batches of 1,000 at 1.07 × the rate, median of 14 alternated pairs, 11 of them ahead
        (docs/benchmarks.md, "Fourteenth pass")."""
        ids: list[str] = []
        jobs: list[NewJob] = []
        taking = iter(parts)
        async with self.pool.connection() as conn:
            async with conn.transaction() if dated else contextlib.nullcontext():
                now = await _now(conn) if dated else _UNDATED
                async with conn.cursor().copy(q("copy_jobs")) as copy:
                    ready = _copy_part(next(taking, None))
                    while ready is not None:
                        part, part_ids, rows = ready
                        await copy.write(rows)
                        ids += part_ids
                        jobs += part
                        ready = _copy_part(next(taking, None))
            return await answer(conn, ids, jobs, now, len(jobs), None)

    async def _enqueued(self, conn: psycopg.AsyncConnection[Any], ids: Sequence[str],
                        jobs: Sequence[NewJob], now: datetime, count: int,
                        keyed_ids: Sequence[str] | None) -> list[tuple[JobRow, bool]]:
        """The answer of ``enqueue``, from its INSERT's: each job as inserted, or the existing
        job that holds its idempotency key."""
        taken, existing = await self._taken(conn, ids, jobs, count, keyed_ids)
        return _answers(ids, jobs, taken, existing, lambda i, job: new_row(i, job, now),
                        lambda row: row)

    async def _enqueued_ids(self, conn: psycopg.AsyncConnection[Any], ids: Sequence[str],
                            jobs: Sequence[NewJob], now: datetime, count: int,
                            keyed_ids: Sequence[str] | None
                            ) -> list[tuple[str, bool]]:
        """``_enqueued`` with each job's id alone: the new ones are the ids made for them."""
        if count == len(jobs):
            return [(i, True) for i in ids]
        taken, existing = await self._taken(conn, ids, jobs, count, keyed_ids)
        return _answers(ids, jobs, taken, existing, lambda i, _job: i, lambda row: str(row.id))

    @staticmethod
    async def _taken(conn: psycopg.AsyncConnection[Any], ids: Sequence[str],
                     jobs: Sequence[NewJob], count: int, keyed_ids: Sequence[str] | None
                     ) -> tuple[set[str], dict[str, JobRow]]:
        """The ids an INSERT of ``count`` rows skipped (their idempotency key was taken), and
        the jobs that hold those keys."""
        if count == len(jobs):
            return set(), {}
        inserted_keyed = set(keyed_ids or ())
        taken = {i for i, j in zip(ids, jobs, strict=True)
                 if j.idempotency_key is not None and i not in inserted_keyed}
        keys = list({j.idempotency_key for i, j in zip(ids, jobs, strict=True)
                     if i in taken and j.idempotency_key is not None})
        if not keys:
            return taken, {}
        async with conn.cursor(row_factory=_JOB_ROWS) as rows:
            await rows.execute(q("jobs_by_idempotency_keys"), {"keys": keys})
            return taken, {r.idempotency_key: r for r in await rows.fetchall()
                           if r.idempotency_key is not None}

    # -- leases --------------------------------------------------------------------------------

    async def claim(self, worker_id: str, types: Sequence[str], limit: int,
                    lease_seconds: int, held: Sequence[str] = ()) -> list[JobRow]:
        """Lease up to ``limit`` runnable jobs of ``types`` (empty: any) to ``worker_id``, each
        as stored once leased, never one of the ``held`` types (paused or limited: see
        ``claim_limited``). Returned in priority order (higher first, then older run_at).
        """
        rows = await self._claim(False, _JOB_ROWS, worker_id, types, limit, lease_seconds, held)
        rows.sort(key=lambda r: (-r.priority, r.run_at, r.id))
        return rows

    async def claim_leases(self, worker_id: str, types: Sequence[str], limit: int,
                           lease_seconds: int, held: Sequence[str] = ()) -> list[LeasedRow]:
        """``claim``, each job as the lean view of a lease stream sends it."""
        rows = await self._claim(True, _LEASED_ROWS, worker_id, types, limit, lease_seconds,
                                 held)
        rows.sort(key=lambda r: (-r.priority, -r.waited, r.id))
        return rows

    async def _claim(self, lean: bool, rows: AsyncRowFactory[R], worker_id: str,
                     types: Sequence[str], limit: int, lease_seconds: int,
                     held: Sequence[str]) -> list[R]:
        # Each type once: claim_types walks a type as often as it is named, and counts the
        # same jobs again against the limit.
        types = list(dict.fromkeys(types))
        if types and held:
            types = [t for t in types if t not in held]
            if not types:
                return []
            held = ()
        statement = claim_statement(lean, bool(held), len(types) == 1)
        params: dict[str, Any] = {"worker_id": worker_id, "types": list(types), "limit": limit,
                                  "lease_seconds": lease_seconds, "lock_space": LOCK_SPACE,
                                  "token_key": token_key()}
        if held:
            params["held"] = list(held)
        # Binary rows: numbers decode for less.
        async with self.pool.connection() as conn, conn.cursor(row_factory=rows) as cur:
            await cur.execute(statement, params, binary=True)
            return await cur.fetchall()

    async def claim_limited(self, worker_id: str, type_: str, limit: int, lease_seconds: int,
                            *, lean: bool) -> LimitedClaim:
        """Lease up to ``limit`` jobs of one paused or limited type within its limits, as the
        database's settings say now (see lock_queue and claim_limited_jobs). Rows as ``claim``
        (``lean``: as ``claim_leases``) returns them."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(q("lock_queue"), {"type": type_})
            row = await cur.fetchone()
            paused, concurrency, key_limit, rate, period, used, frees_at = row or _UNCONFIGURED
            room = min(limit, rate - used) if rate else limit
            if paused or room <= 0:
                return LimitedClaim([], None if paused else frees_at)
            params = {"type": type_, "worker_id": worker_id, "limit": room,
                      "lease_seconds": lease_seconds, "lock_space": LOCK_SPACE,
                      "token_key": token_key(),
                      "concurrency_limit": concurrency, "key_limit": key_limit}
            factory: AsyncRowFactory[Any] = _LEASED_ROWS if lean else _JOB_ROWS
            async with conn.cursor(row_factory=factory) as rows:
                await rows.execute(limited_claim_statement(lean, keyed=bool(key_limit)), params,
                                   binary=True)
                claimed: Claimed = await rows.fetchall()
        if not rate or used + len(claimed) < rate:
            return LimitedClaim(claimed, None)
        # The window is full: it frees when its oldest entry (this claim's, if it is alone)
        # leaves it; this broker's clock stands in for the database's when it is this claim's.
        return LimitedClaim(claimed, frees_at or datetime.now(UTC) + timedelta(seconds=period))

    # -- queues --------------------------------------------------------------------------------

    async def queue_settings(self) -> list[QueueSettings]:
        """Every configured type's settings, by type."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("queue_settings"))
            return [QueueSettings(*row) for row in await cur.fetchall()]

    async def update_queue(self, type_: str,
                           change: Callable[[QueueSettings], QueueSettings]) -> QueueSettings:
        """Apply ``change`` to a type's settings (defaults if it has none) under its row's lock,
        store the result and tell every broker (NOTIFY forge_queues); return it. ``change`` may
        raise (InvalidArgument): then nothing is stored."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(q("add_queue"), {"type": type_})
            cur = await conn.execute(q("lock_queue_for_update"), {"type": type_})
            row = await cur.fetchone()
            assert row is not None  # add_queue made it, and rows are never deleted
            new = change(QueueSettings(*row))
            await conn.execute(q("upsert_queue"), dataclasses.asdict(new))
            await conn.execute(q("notify_queues"), {"type": type_})
        return new

    async def release(self, leases: Sequence[Lease]) -> None:
        """Return leased-but-undelivered jobs to PENDING without counting the attempt."""
        if not leases:
            return
        await self._on_leases(q("release_jobs"), {
            "ids": [le.job_id for le in leases], "tokens": [le.token for le in leases]})

    async def ack_many(self, acks: Sequence[AckItem]) -> set[str]:
        """Complete every job whose lease is current, in one statement; return the ids done."""
        if not acks:
            return set()
        rows = await self._on_leases(q("ack_jobs"), {"acks": _acks_json(acks)})
        return {row[0] for row in rows}

    async def nack_many(self, nacks: Sequence[NackItem]) -> dict[str, NackOutcome]:
        """Record failed attempts in one statement; return where each job whose lease was
        current went (see the nack_jobs statement)."""
        if not nacks:
            return {}
        rows = await self._on_leases(q("nack_jobs"), {"nacks": _nacks_json(nacks),
                                                      "backoff_base": self.backoff_base})
        return {row[0]: NackOutcome(status=JobStatus(row[1]), run_at=row[2]) for row in rows}

    async def _on_leases(self, statement: LiteralString, params: dict[str, Any]
                         ) -> list[tuple[Any, ...]]:
        """Run a statement on leased rows, again if it was a deadlock's victim (see
        DEADLOCK_RETRIES); its rows, if it returns any."""
        attempt = 1
        while True:
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(statement, params)
                    return await cur.fetchall() if cur.description else []
            except psycopg.errors.DeadlockDetected:
                if attempt == DEADLOCK_RETRIES:
                    raise
                attempt += 1
                log.info("a statement on leased rows was a deadlock's victim; running it again")

    async def refusals(self, job_ids: Sequence[str], action: str
                       ) -> dict[str, ForgeError]:
        """Why an ack, nack or heartbeat on each of ``job_ids`` matched no row: NotFound, or
        FailedPrecondition naming the job's status now."""
        if not job_ids:
            return {}
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("job_statuses"), {"ids": list(job_ids)})
            status = {row[0]: row[1] for row in await cur.fetchall()}
        out: dict[str, ForgeError] = {}
        for job_id in job_ids:
            if job_id not in status:
                out[job_id] = NotFound(f"job {job_id} not found")
            else:
                out[job_id] = FailedPrecondition(
                    f"cannot {action} job {job_id}: the lease token is not the job's current "
                    f"lease (job is {status[job_id]}; the lease expired and was rescued, or the "
                    f"job was cancelled or handed to another worker)")
        return out

    async def extend(self, leases: Sequence[Lease], lease_seconds: int
                     ) -> tuple[datetime | None, list[str]]:
        """Extend every lease still held; return the new deadline and the ids of lost leases."""
        rows = await self._on_leases(q("extend_leases"), {
            "ids": [le.job_id for le in leases], "tokens": [le.token for le in leases],
            "lease_seconds": lease_seconds})
        held = {row[0] for row in rows}
        deadline = max((row[1] for row in rows), default=None)
        return deadline, [le.job_id for le in leases if le.job_id not in held]

    async def still_held(self, leases: Sequence[Lease]) -> set[str]:
        """The subset of ``leases`` that are still the current lease of a PROCESSING job."""
        if not leases:
            return set()
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("leases_still_held"), {
                "ids": [le.job_id for le in leases], "tokens": [le.token for le in leases]})
            return {row[0] for row in await cur.fetchall()}

    async def rescue_expired(self, limit: int = 1000) -> list[tuple[str, JobStatus]]:
        """Turn up to ``limit`` expired leases into failed attempts; return (id, new status)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("rescue_expired_leases"), {
                "limit": limit, "backoff_base": self.backoff_base})
            return [(row[0], JobStatus(row[1])) for row in await cur.fetchall()]

    # -- inspection and repair -----------------------------------------------------------------

    async def get(self, job_id: uuid.UUID) -> JobRow:
        async with self.pool.connection() as conn:
            async with conn.cursor(row_factory=_JOB_ROWS) as cur:
                await cur.execute(q("get_job"), {"id": job_id})
                row = await cur.fetchone()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return row

    async def list_jobs(self, where: JobFilter, order: Order, after: PageKey | None,
                        limit: int) -> list[JobRow]:
        """Up to ``limit`` jobs ``where`` matches in ``order``, those after ``after`` (the last
        row of the previous page) when given."""
        statement, params = list_statement(where, order, after)
        async with self.pool.connection() as conn:
            async with conn.cursor(row_factory=_JOB_ROWS) as cur:
                # Not prepared: a plan made for one filter's values may not suit the next's.
                await cur.execute(statement, {**params, "limit": limit}, prepare=False)
                return await cur.fetchall()

    async def count_matching(self, where: JobFilter, statuses: Sequence[JobStatus]) -> int:
        """How many jobs in ``statuses`` ``where`` matches now (a bulk call's dry run)."""
        names, params = filter_fragments(where)
        async with self.pool.connection() as conn:
            cur = await conn.execute(_with_filters("count_matching", names),
                                     {**params, "statuses": list(statuses)}, prepare=False)
            row = await cur.fetchone()
        assert row is not None  # an aggregate always answers one row
        return int(row[0])

    async def cancel(self, job_id: uuid.UUID, reason: str | None) -> JobRow:
        async with self.pool.connection() as conn:
            async with conn.cursor(row_factory=_JOB_ROWS) as cur:
                await cur.execute(q("cancel_job"), {"id": job_id, "reason": reason})
                row = await cur.fetchone()
        if row is None:
            current = await self.get(job_id)
            raise FailedPrecondition(f"job {job_id} is {current.status} and cannot be cancelled")
        return row

    async def retry_dead(self, job_id: uuid.UUID) -> JobRow:
        async with self.pool.connection() as conn:
            async with conn.cursor(row_factory=_JOB_ROWS) as cur:
                await cur.execute(q("retry_dead_job"), {"id": job_id})
                row = await cur.fetchone()
        if row is None:
            current = await self.get(job_id)
            raise FailedPrecondition(f"job {job_id} is {current.status}, not DEAD")
        return row

    async def retry_dead_many(self, where: JobFilter) -> int:
        """RetryDeadJobs: every DEAD job ``where`` matches back to PENDING, in batches; how
        many."""
        changed, _ = await self._in_batches("retry_dead_jobs", where, {})
        return changed

    async def purge_dead_many(self, where: JobFilter) -> int:
        """PurgeDeadJobs: delete every DEAD job ``where`` matches, in batches; how many."""
        changed, _ = await self._in_batches("purge_dead_jobs", where, {})
        return changed

    async def cancel_many(self, where: JobFilter, reason: str | None) -> tuple[int, list[str]]:
        """CancelJobs: cancel every unfinished job ``where`` matches, in batches; how many,
        and the ids of those that were PROCESSING."""
        return await self._in_batches("cancel_jobs", where, {"reason": reason})

    async def _in_batches(self, name: str, where: JobFilter,
                          params: dict[str, Any]) -> tuple[int, list[str]]:
        """Run a bulk statement (see retry_dead_jobs) batch after batch, each in its own
        transaction, from the last id the previous one changed, until one changes nothing.
        Returns the rows changed in all and the ids a batch reported (cancel_jobs's running
        jobs). Cancelled between batches, what earlier batches did stays done."""
        names, filters = filter_fragments(where)
        statement = _with_filters(name, names)
        args = {**params, **filters, "limit": BULK_BATCH, "after": uuid.UUID(int=0)}
        total, reported = 0, list[str]()
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(statement, args)
                row = await cur.fetchone()
            assert row is not None  # an aggregate always answers one row
            if not row[0]:
                return total, reported
            total += row[0]
            args["after"] = row[1]
            if len(row) > 2 and row[2]:
                reported.extend(row[2])

    # -- maintenance ---------------------------------------------------------------------------

    async def delete_finished(self, retention_seconds: float, limit: int = 1000) -> int:
        """Delete one batch of COMPLETED/CANCELLED jobs past retention; return how many."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("delete_finished_jobs"), {
                "retention_seconds": retention_seconds, "limit": limit})
            return cur.rowcount

    async def fold_counters(self) -> bool:
        """Fold counter deltas into their rollups; False when another broker is doing it."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                cur = await conn.execute(q("try_maintenance_lock"), {"lock_space": LOCK_SPACE})
                row = await cur.fetchone()
                if not row or not row[0]:
                    return False
                await conn.execute(q("fold_job_counts"))
                await conn.execute(q("fold_throughput"))
                await conn.execute(q("fold_queue_wait"))
                await conn.execute(q("prune_rollups"))
                await conn.execute(q("drop_empty_counts"))
        return True

    async def throughput(self, minutes: int) -> Throughput:
        """GetThroughput: attempts per type and minute, and the queue wait of each minute, over
        the last ``minutes`` minutes (read from the per-minute rollups and their deltas)."""
        async with self.pool.connection() as conn:
            now = await _db_now(conn)
            cur = await conn.execute(q("throughput_by_type"), {"minutes": minutes})
            by_type: dict[str, dict[datetime, tuple[int, int]]] = {}
            for type_, minute, done, failed in await cur.fetchall():
                by_type.setdefault(type_, {})[minute] = (int(done), int(failed))
            cur = await conn.execute(q("queue_wait_by_minute"), {"minutes": minutes})
            histograms: dict[datetime, list[tuple[float, int]]] = {}
            for minute, bound, n in await cur.fetchall():
                histograms.setdefault(minute, []).append((float(bound), int(n)))
        waits = []
        for minute in _minutes(now, minutes):
            histogram = histograms.get(minute, [])
            total = sum(n for _, n in histogram)
            waits.append(WaitPoint(minute, _percentile(histogram, total, 0.50),
                                   _percentile(histogram, total, 0.99), total))
        return Throughput(types=[(t, _series(now, minutes, by_type[t])) for t in sorted(by_type)],
                          queue_wait=waits)

    # -- schedules -----------------------------------------------------------------------------

    async def put_schedule(self, new: NewSchedule) -> ScheduleRow:
        """Create or replace the schedule ``new.name``; its next fire time follows
        ``schedules.next_after_put``, decided on the database's clock."""
        async with self.pool.connection() as conn, conn.transaction():
            now = await _db_now(conn)
            async with conn.cursor(row_factory=_SCHEDULE_ROWS) as cur:
                await cur.execute(q("lock_schedule"), {"name": new.name})
                old = await cur.fetchone()
                job = new.job
                await cur.execute(q("upsert_schedule"), {
                    "name": new.name, "cron": new.cron, "every": new.every,
                    "timezone": new.timezone, "type": job.type, "payload": job.payload_json,
                    "priority": job.priority, "max_retries": job.max_retries,
                    "concurrency_key": job.concurrency_key, "paused": new.paused,
                    "next_run_at": schedules.next_after_put(old, new, now)})
                row = await cur.fetchone()
        assert row is not None  # an upsert always returns its row
        return row

    async def get_schedule(self, name: str) -> ScheduleRow:
        async with self.pool.connection() as conn, conn.cursor(row_factory=_SCHEDULE_ROWS) as cur:
            await cur.execute(q("get_schedule"), {"name": name})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"schedule {name} not found")
        return row

    async def list_schedules(self, after: str, limit: int) -> list[ScheduleRow]:
        """Up to ``limit`` schedules by name, those after ``after`` ("" for the first)."""
        async with self.pool.connection() as conn, conn.cursor(row_factory=_SCHEDULE_ROWS) as cur:
            await cur.execute(q("list_schedules"), {"after": after, "limit": limit})
            return await cur.fetchall()

    async def delete_schedule(self, name: str) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("delete_schedule"), {"name": name})
            if cur.rowcount == 0:
                raise NotFound(f"schedule {name} not found")

    async def fire_schedules(self, limit: int) -> FiredRound:
        """Fire up to ``limit`` due schedules in one transaction: lock them, compute each next
        fire time (``schedules.plan``), insert their jobs and move them on in one statement.
        A schedule whose next time cannot be computed is paused instead of fired."""
        async with self.pool.connection() as conn, conn.transaction():
            async with conn.cursor(row_factory=_DUE_ROWS) as cur:
                await cur.execute(q("lock_due_schedules"), {"limit": limit})
                due = await cur.fetchall()
            fires, broken = schedules.plan(due)
            created = 0
            if fires:
                cur2 = await conn.execute(_fire_schedules(), {"fires": json.dumps(
                    [{"name": f.name, "key": f.key, "next_run_at": f.next_run_at.isoformat()}
                     for f in fires])})
                created = sum(1 for _, new in await cur2.fetchall() if new)
            if broken:
                await conn.execute(q("pause_schedules"), {"names": [name for name, _ in broken]})
        return FiredRound(len(fires), created, broken)

    async def next_schedule_in(self) -> float | None:
        """Seconds until the earliest fire time of any unpaused schedule (negative when one is
        due), None when there is none."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(q("next_schedule_in"))
            row = await cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- workers registry ----------------------------------------------------------------------

    async def register_stream(self, stream_id: uuid.UUID, worker_id: str, broker_id: str,
                              types: Sequence[str], max_in_flight: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(q("register_stream"), {
                "stream_id": stream_id, "worker_id": worker_id, "broker_id": broker_id,
                "types": list(types), "max_in_flight": max_in_flight})

    async def unregister_stream(self, stream_id: uuid.UUID) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(q("unregister_stream"), {"stream_id": stream_id})

    async def touch_streams(self, in_flight: dict[uuid.UUID, int]) -> None:
        if not in_flight:
            return
        async with self.pool.connection() as conn:
            await conn.execute(q("touch_streams"), {
                "stream_ids": list(in_flight), "in_flight": list(in_flight.values())})

    async def prune_stale_workers(self, stale_seconds: float) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(q("prune_stale_workers"), {"stale_seconds": stale_seconds})

    # -- stats ---------------------------------------------------------------------------------

    async def pending_types(self, conn: psycopg.AsyncConnection[Any]) -> list[str]:
        cur = await conn.execute(
            "SELECT DISTINCT type FROM (SELECT type FROM forge.job_counts WHERE status = 'PENDING' "
            "UNION ALL SELECT type FROM forge.job_count_deltas WHERE status = 'PENDING') t")
        return [row[0] for row in await cur.fetchall()]

    async def next_run_at(self, types: Sequence[str]) -> datetime | None:
        """The earliest future run_at among PENDING jobs of ``types`` (empty: any), if any."""
        async with self.pool.connection() as conn:
            wanted = list(types) or await self.pending_types(conn)
            if not wanted:
                return None
            cur = await conn.execute(_pending_statement("next_run_at"), {"types": wanted})
            row = await cur.fetchone()
        return row[0] if row else None

    async def snapshot(self) -> Snapshot:
        """Compute a Stats snapshot from counters and short index walks (no full-table count)."""
        async with self.pool.connection() as conn:
            now_row = await (await conn.execute(q("db_now"))).fetchone()
            assert now_row is not None
            now: datetime = now_row[0]
            counts: dict[str, dict[JobStatus, int]] = {}
            for type_, status, n in await (await conn.execute(q("count_jobs"))).fetchall():
                counts.setdefault(type_, {})[JobStatus(status)] = int(n)
            pending_types = [t for t, c in counts.items() if c.get(JobStatus.PENDING, 0) > 0]
            scheduled: dict[str, tuple[int, datetime | None]] = {}
            if pending_types:
                cur = await conn.execute(_pending_statement("pending_by_type"),
                                         {"types": pending_types})
                for type_, n_sched, oldest in await cur.fetchall():
                    scheduled[type_] = (int(n_sched), oldest)
            points = {row[0]: (int(row[1]), int(row[2]))
                      for row in await (await conn.execute(q("throughput_last_hour"))).fetchall()}
            cur = await conn.execute(q("queue_wait_histogram"),
                                     {"window_seconds": QUEUE_WAIT_WINDOW_SECONDS})
            histogram = [(float(b), int(n)) for b, n in await cur.fetchall()]
            async with conn.cursor(row_factory=_WORKER_ROWS) as wcur:
                await wcur.execute(q("list_workers"))
                workers = await wcur.fetchall()
            cur = await conn.execute(q("queue_settings"))
            queues = {row[0]: QueueSettings(*row) for row in await cur.fetchall()}

        types: list[TypeCounts] = []
        # A configured type is listed even with no jobs (a type paused before its first job).
        for type_ in sorted(counts.keys() | queues.keys()):
            c = counts.get(type_, {})
            n_sched, oldest = scheduled.get(type_, (0, None))
            # Each status's TypeCounts field is its name in lower case.
            fields: dict[str, Any] = {status.lower(): n for status, n in c.items()}
            fields["pending"] = max(0, c.get(JobStatus.PENDING, 0) - n_sched)
            fields["scheduled"] = n_sched
            age = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
            types.append(TypeCounts(type=type_, oldest_pending_age_seconds=age,
                                    queue=queues.get(type_), **fields))

        total = sum(n for _, n in histogram)
        return Snapshot(
            computed_at=now,
            types=types,
            throughput=_series(now, 60, points),
            wait_p50_ms=_percentile(histogram, total, 0.50),
            wait_p90_ms=_percentile(histogram, total, 0.90),
            wait_p99_ms=_percentile(histogram, total, 0.99),
            wait_count=total,
            wait_window_seconds=QUEUE_WAIT_WINDOW_SECONDS,
            workers=workers,
        )


def filter_fragments(where: JobFilter) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The filter_* fragments (queries.sql) of the fields ``where`` sets, and their values.
    A search text that is also a job id matches that job too (filter_query_id)."""
    names: list[str] = []
    params: dict[str, Any] = {}
    for f in dataclasses.fields(where):
        value = getattr(where, f.name)
        if value is None:
            continue
        name = f.name
        if name == "query" and (as_id := parse_id(value)) is not None:
            name, params["query_id"] = "query_id", as_id
        names.append(name)
        params[f.name] = value
    return tuple(names), params


_RUN_AT_GROUPS = {JobStatus.DEAD: "done", JobStatus.CANCELLED: "done"}
"""The status group (a group_* fragment of queries.sql) whose PRIORITY index RUN_AT walks, by
status: PENDING jobs are list_pending_jobs', PROCESSING jobs are sorted, and RUN_AT needs one
of these statuses."""


def list_statement(where: JobFilter, order: Order, after: PageKey | None
                   ) -> tuple[LiteralString, dict[str, Any]]:
    """The statement listing a page for a filter, an order and the previous page's last row,
    and its parameters (all but the limit)."""
    names, params = filter_fragments(where)
    if after is not None:
        params.update(after_id=after.id, after_run_at=after.run_at, after_priority=after.priority)
    if where.status == JobStatus.PENDING and order in (Order.RUN_AT, Order.PRIORITY):
        return _list_statement("list_pending_jobs", None, names, order, after is not None), params
    group = (_RUN_AT_GROUPS.get(where.status)
             if order == Order.RUN_AT and where.status is not None else None)
    statement = "list_jobs_by_run_at" if group else "list_jobs"
    return _list_statement(statement, group, names, order, after is not None), params


@cache
def _list_statement(statement: str, group: str | None, filters: tuple[str, ...], order: Order,
                    paged: bool) -> LiteralString:
    """``statement`` (list_jobs, list_jobs_by_run_at for RUN_AT over a ``group`` with a
    PRIORITY index, list_pending_jobs) with the filters', the order's and the group's fragments
    composed in."""
    return sql.SQL(_fragment(statement)).format(
        group=sql.SQL(_fragment(f"group_{group}") if group else ""),
        filters=_fragments(filters),
        after=sql.SQL(_fragment(f"after_{order}") if paged else ""),
        order=sql.SQL(_fragment(f"order_{order}"))).as_string()


@cache
def _with_filters(name: str, filters: tuple[str, ...]) -> LiteralString:
    """Statement ``name`` with the filter_* fragments of ``filters`` composed in."""
    return sql.SQL(q(name)).format(filters=_fragments(filters)).as_string()


def _fragments(filters: tuple[str, ...]) -> sql.Composable:
    return sql.SQL("\n").join(sql.SQL(_fragment(f"filter_{f}")) for f in filters)


def _fragment(name: str) -> LiteralString:
    """A fragment of queries.sql without its comment lines, so it may be composed in mid-line."""
    return "\n".join(line for line in q(name).splitlines()
                     if not line.lstrip().startswith("--"))


def _minutes(now: datetime, count: int) -> list[datetime]:
    """The starts of the last ``count`` minutes, oldest first, the current minute last."""
    this_minute = now.replace(second=0, microsecond=0)
    return [this_minute - timedelta(minutes=i) for i in range(count - 1, -1, -1)]


def _series(now: datetime, count: int, points: dict[datetime, tuple[int, int]]
            ) -> list[tuple[datetime, int, int]]:
    """(minute, completed, failed) for each of the last ``count`` minutes, zeros included."""
    return [(m, *points.get(m, (0, 0))) for m in _minutes(now, count)]


@cache
def _pending_statement(name: str) -> LiteralString:
    """pending_by_type or next_run_at, with pending_groups composed in."""
    return sql.SQL(q(name)).format(groups=sql.SQL(_fragment("pending_groups"))).as_string()


@cache
def claim_statement(lean: bool, held: bool = False, one_type: bool = False) -> LiteralString:
    """claim_jobs with the columns of a lean or a full view composed in, and its candidates:
    claim_one_type for a claim of ``one_type``, else claim_types, with skip_held_types when
    some types are ``held`` (see the statements)."""
    columns = sql.SQL(q("lean_columns") if lean else q("full_columns"))
    candidates: sql.Composable
    if one_type:
        candidates = sql.SQL(_fragment("claim_one_type"))
    else:
        skip = sql.SQL(q("skip_held_types") if held else "")
        candidates = sql.SQL(_fragment("claim_types")).format(held=skip)
    return sql.SQL(q("claim_jobs")).format(columns=columns, candidates=candidates).as_string()


@cache
def limited_claim_statement(lean: bool, keyed: bool) -> LiteralString:
    """claim_limited_jobs with a view's columns and the candidates of a type with a key limit
    (``keyed``) or without one composed in."""
    columns = sql.SQL(q("lean_columns") if lean else q("full_columns"))
    candidates = sql.SQL(q("by_key") if keyed else q("by_type"))
    return sql.SQL(q("claim_limited_jobs")).format(columns=columns,
                                                   candidates=candidates).as_string()


@cache
def _fire_schedules() -> LiteralString:
    """fire_schedules with insert_jobs's conflict clause composed in: one text for both."""
    return sql.SQL(q("fire_schedules")).format(skip_taken_keys=sql.SQL(q("skip_taken_keys"))
                                               ).as_string()


async def _db_now(conn: psycopg.AsyncConnection[Any]) -> datetime:
    """The database's now(): in a transaction, its start, the time every statement in it sees."""
    row = await (await conn.execute(q("db_now"))).fetchone()
    assert row is not None
    now: datetime = row[0]
    return now


def _insert(ids: Sequence[str], jobs: Sequence[NewJob]) -> tuple[LiteralString, dict[str, str]]:
    """``insert_jobs`` for ``jobs`` (with ``ids``): the statement and its parameters."""
    keyed = any(j.idempotency_key is not None for j in jobs)
    return _insert_jobs(keyed), {"jobs": _jobs_json(ids, jobs)}


@cache
def _insert_jobs(keyed: bool) -> LiteralString:
    """insert_jobs, with skip_taken_keys composed in for a batch where some job has an
    idempotency key (see the statement's comment). Composed once: psycopg caches the parsing
    and the prepared plan of a query by its text."""
    clause = sql.SQL(q("skip_taken_keys") if keyed else "")
    return sql.SQL(q("insert_jobs")).format(skip_taken_keys=clause).as_string()


def _percentile(histogram: list[tuple[float, int]], total: int, p: float) -> float:
    """The upper bound of the bucket holding the p-th quantile (0 when there are no samples)."""
    if total == 0:
        return 0.0
    rank = p * total
    seen = 0
    for bound, n in histogram:
        seen += n
        if seen >= rank:
            return bound
    return histogram[-1][0]


def _answers(ids: Sequence[str], jobs: Sequence[NewJob], taken: set[str],
             existing: dict[str, JobRow], made: Callable[[str, NewJob], R],
             found: Callable[[JobRow], R]) -> list[tuple[R, bool]]:
    """Each job's answer and whether it is new: ``made(id, job)`` for a row the INSERT took;
    for one it skipped (``taken``: its idempotency key was in use), the answer for the job that
    holds the key, from the table (``found`` of it) or made earlier in this batch."""
    out: list[tuple[R, bool]] = []
    first_of_key: dict[str, R] = {}
    for new_id, job in zip(ids, jobs, strict=True):
        key = job.idempotency_key
        if new_id not in taken:
            answer = made(new_id, job)
            if key is not None:
                first_of_key[key] = answer
            out.append((answer, True))
        elif key in existing:
            out.append((found(existing[key]), False))
        elif key in first_of_key:
            out.append((first_of_key[key], False))
        else:  # pragma: no cover - a skipped row's key is in the table or earlier in the batch
            raise RuntimeError(f"job {new_id} was neither inserted nor found")
    return out


def new_row(job_id: str, job: NewJob, now: datetime) -> JobRow:
    """A new job as ``insert_jobs`` wrote it in a statement whose now() is ``now``."""
    payload = job.payload if job.payload is not None else json.loads(job.payload_json)
    row = JobRow(as_uuid(job_id), job.type, payload, job.priority, job.max_retries, 0,
                 JobStatus.PENDING, now if job.run_at is None or job.run_at < now else job.run_at,
                 now, now, None, None, None, None, None, job.idempotency_key,
                 job.concurrency_key, trace_context=job.trace_context)
    if job.hand_off is not None:
        _leased(row, job.hand_off)
    return row


def _leased(row: JobRow, hand: HandOff) -> None:
    """A new row as ``insert_jobs`` leased it for ``hand``: PROCESSING in its first attempt."""
    row.status = JobStatus.PROCESSING
    row.attempts = 1
    row.worker_id = hand.worker_id
    row.lease_token = uuid.UUID(hand.lease_token)
    row.lease_expires_at = row.created_at + timedelta(seconds=hand.lease_seconds)
    row.leased_at = row.created_at


_UNDATED = datetime.min.replace(tzinfo=UTC)
"""The now() handed to an answer that does not read it (``Store._copy_in``)."""


class _NotCopyable(Exception):
    """A part of a batch being copied that COPY cannot insert (see ``_copyable``)."""


def _copyable(jobs: Sequence[NewJob]) -> bool:
    """Whether copy_jobs can insert ``jobs``: it writes them as they are, so none may have an
    idempotency key (ON CONFLICT is insert_jobs's), a run_at (insert_jobs moves a past one to
    its now()) or a hand-off (a lease that expires its now() plus the lease's seconds later)."""
    return all(j.idempotency_key is None and j.run_at is None and j.hand_off is None
               for j in jobs)


def _copyable_parts(parts: Iterator[Sequence[NewJob]], taken: list[Sequence[NewJob]]
                    ) -> Iterator[Sequence[NewJob]]:
    """``parts``, each also appended to ``taken`` as it is taken; one that COPY cannot insert
    raises ``_NotCopyable`` (kept in ``taken`` too)."""
    for part in parts:
        taken.append(part)
        if not _copyable(part):
            raise _NotCopyable
        yield part


_CopyPart = tuple[Sequence[NewJob], list[str], str]
"""A part of a batch to COPY: its jobs, the ids made for them, and its rows as COPY's text."""


def _copy_part(part: Sequence[NewJob] | None) -> _CopyPart | None:
    if part is None:
        return None
    ids = uuid7s(len(part))
    return part, ids, _copy_rows(ids, part)


async def _now(conn: psycopg.AsyncConnection[Any]) -> datetime:
    """The transaction's now()."""
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


def _copy_text(text: str) -> str:
    """Any text as a field of COPY's text format: backslash, tab, newline and CR escaped."""
    return text.translate(_COPY_ESCAPES)


def _copy_json(text: str) -> str:
    """JSON text as a COPY field. JSON as json and orjson write it holds no raw tab, newline
    or CR (they escape them in strings), so only its backslashes need doubling."""
    return text.replace("\\", "\\\\") if "\\" in text else text


def _copy_rows(ids: Sequence[str], jobs: Sequence[NewJob]) -> str:
    """``jobs`` (with ``ids``) as rows of copy_jobs's COPY, in its text format. Type names
    (``forge_common.names.TYPE_NAME``), ids and numbers hold nothing COPY escapes."""
    return "".join(
        f"{i}\t{j.type}\t{_copy_json(j.payload_json)}\t{j.priority}\t{j.max_retries}\t"
        f"{_COPY_NULL if j.concurrency_key is None else _copy_text(j.concurrency_key)}\t"
        f"{_COPY_NULL if j.trace_context is None else _copy_json(json.dumps(j.trace_context))}\n"
        for i, j in zip(ids, jobs, strict=True))


_QUOTE = '"'
_CKEY = ',"c":'
_XKEY = ',"x":'


def _jobs_json(ids: Sequence[str], jobs: Sequence[NewJob]) -> str:
    """The batch as the JSON array ``insert_jobs`` reads. Payloads are already JSON text, so
    they are spliced in, not parsed and written again; type names
    (``forge_common.names.TYPE_NAME``) and ISO timestamps hold nothing JSON escapes, so they
    are quoted as they are (json.dumps for each would be a third of this function's time)."""
    dumps = json.dumps
    return "[" + ",".join(
        f'{{"i":"{i}","t":"{j.type}","p":{j.payload_json},"r":{j.priority},'
        f'"m":{j.max_retries},'
        f'"a":{"null" if j.run_at is None else _QUOTE + j.run_at.isoformat() + _QUOTE},'
        f'"k":{"null" if j.idempotency_key is None else dumps(j.idempotency_key)}'
        # A field left out reads as NULL: most jobs have no concurrency key or trace context.
        f'{"" if j.concurrency_key is None else _CKEY + dumps(j.concurrency_key)}'
        f'{"" if j.trace_context is None else _XKEY + dumps(j.trace_context)}'
        f'{"" if j.hand_off is None else _lease_json(j.hand_off)}}}'
        for i, j in zip(ids, jobs, strict=True)) + "]"


def _lease_json(hand: HandOff) -> str:
    """``_jobs_json``'s fields for a job handed off: the worker id is JSON-escaped (any text)."""
    return (f',"w":{json.dumps(hand.worker_id)},"l":"{hand.lease_token}",'
            f'"s":{hand.lease_seconds}')


def _acks_json(acks: Sequence[AckItem]) -> str:
    """The acks as the JSON array ``ack_jobs`` reads (results are already JSON text)."""
    return "[" + ",".join(
        f'{{"i":"{a.lease.job_id}","t":"{a.lease.token}","r":{a.result_json or "null"}}}'
        for a in acks) + "]"


def _nacks_json(nacks: Sequence[NackItem]) -> str:
    """The nacks as the JSON array ``nack_jobs`` reads."""
    dumps = json.dumps
    return "[" + ",".join(
        f'{{"i":"{n.lease.job_id}","t":"{n.lease.token}","e":{dumps(n.error)},'
        f'"a":{"null" if n.retry_after is None else repr(float(n.retry_after))},'
        f'"p":{"true" if n.permanent else "false"}}}'
        for n in nacks) + "]"
