"""Lease dispatch: pushes runnable jobs down this broker's open Lease streams.

One loop per broker. It wakes on NOTIFY (a job became runnable, or a job of a limited type
stopped running anywhere), on an ack freeing capacity, on a new stream, on a change of queue
settings, and on a timer set to the next scheduled run_at or the moment a rate window frees;
then each stream with free capacity claims what it can take, CLAIM_MAX jobs a query at most
(a stream with more room gets the next claim in the round that follows at once). Jobs claimed for a
stream sit in its outbox until the stream's RPC sends them; if the stream closes first they
are released unharmed.

Hand-off: a job enqueued through this broker with no run_at, while one of its streams that
takes the job's type waits idle (its last claim found less than it wanted, and no claim for it
is running), is leased to that stream by the INSERT that creates it (``reserve``, then
``hand_over`` once the INSERT is committed): no NOTIFY, no claim, one commit fewer between the
enqueue and the worker. Such a job never waited, so jumping the queue takes nothing from jobs
that do: the stream had found none to claim. Paused and limited types are never handed off.

Claims only where something may have come: a stream whose last claim found less than it
wanted is claimed for again only once a job may have become runnable since that claim began
(a NOTIFY, a change of queue settings, the timer, the poll), not because its own acks freed
room. So a worker that keeps up with a trickle of jobs costs no empty claim per job, and its
stream is never busy claiming when the next job could be handed to it.

Queues (per-type flow control): while some type is paused or limited, the one query skips
those types, and each limited type a stream takes is claimed by a statement of its own that
locks the type's settings row and counts what runs (``Store.claim_limited``); paused types are
not claimed at all. Which types those are is this broker's copy of ``forge.queues``, loaded
before the first stream is fed and again whenever a change is notified (channel
``forge_queues``), so every broker follows a change within the time a notification takes.

A stream is stalled while a push of its jobs waits for the transport (its client reads nothing,
so HTTP/2 flow control holds the push) and no job of it is acked, nacked or heartbeated through
this broker. One stalled for its stall timeout (FORGE_STREAM_STALL_TIMEOUT, by default its lease
time) is closed: a worker that keeps up with its jobs settles or heartbeats one within every
lease, or loses its leases anyway, and a client reading its stream is never stalled for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from forge_broker.errors import DATABASE_ERRORS, ResourceExhausted
from forge_broker.loops import Outage
from forge_broker.models import HandOff, JobRow, Lease, LeasedRow, NewJob, QueueSettings
from forge_broker.store import Store, new_row

log = logging.getLogger("forge.dispatch")

CHANNEL = "forge_jobs"
QUEUES_CHANNEL = "forge_queues"

CLAIMS_AT_ONCE = 2
"""Most claims one broker runs at the same time (each holds a pooled connection)."""

CLAIM_MAX = 1000
"""Most jobs one claim takes. A stream with room for more is claimed for again in the next
round, which follows at once: so a worker whose window holds two claims or more runs the jobs of
one while the next is claimed, and settles them while the next ones run, where a window of one
claim leaves it waiting on each step in turn. It also bounds the transaction-scoped advisory
locks one claim holds (docs/operations.md, "Several brokers")."""

Claimed = list[JobRow] | list[LeasedRow]
"""One claim's rows for one stream, in the view the stream asked for."""


@dataclass(eq=False)
class LeaseStream:
    """One open Lease RPC: who asked, for what, and the jobs it holds."""

    worker_id: str
    types: tuple[str, ...]
    max_in_flight: int
    lease_seconds: int
    stream_id: uuid.UUID = field(default_factory=uuid.uuid4)
    connected_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Jobs leased through this stream and not yet acked or nacked (job id -> lease token),
    # whether still in the outbox or already sent.
    in_flight: dict[str, str] = field(default_factory=dict)
    outbox: asyncio.Queue[Claimed | None] = field(default_factory=asyncio.Queue)
    closed: bool = False
    lean: bool = False  # JOB_VIEW_LEAN: claimed as LeasedRow
    settles: int = 0  # jobs of this stream settled through this broker, ever
    settles_seen: int = 0  # ``settles`` when reconcile last looked
    stall_seconds: float = 30.0  # how long it may stay stalled (see the module docstring)
    on_stall: Callable[[str], None] | None = None  # told why, once it is closed for stalling
    # time.monotonic() when the push being sent was handed over, None between pushes
    sending_since: float | None = None
    # time.monotonic() of the last ack, nack or heartbeat of one of its jobs through this broker
    worked_at: float = field(default_factory=time.monotonic)
    hungry: bool = False  # its last claim found fewer jobs than it wanted
    filling: bool = False  # a claim for it is running
    reserved: int = 0  # jobs handed off to it whose INSERT has not answered yet
    claimed_at: int = -1  # the dispatcher's news count when its last claim began

    def capacity(self) -> int:
        return 0 if self.closed else self.max_in_flight - len(self.in_flight) - self.reserved

    def waits_for(self, type_: str) -> bool:
        """Idle, with room, for a job of ``type_``: a hand-off would not overtake a claim."""
        return (self.hungry and not self.filling and self.capacity() > 0
                and (not self.types or type_ in self.types))

    def stalled_for(self, now: float) -> float:
        if self.sending_since is None:
            return 0.0
        return now - max(self.sending_since, self.worked_at)

    async def batches(self) -> AsyncIterator[Claimed]:
        """Leased jobs as they arrive, until the stream is closed by the broker. The RPC asks
        for the next push only once the transport has taken the last one."""
        while True:
            rows = await self.outbox.get()
            if rows is None:
                return
            self.sending_since = time.monotonic()
            yield rows
            self.sending_since = None

    def undelivered(self) -> list[Lease]:
        """Leases of jobs still waiting in the outbox (drains it)."""
        out: list[Lease] = []
        while not self.outbox.empty():
            rows = self.outbox.get_nowait()
            for row in rows or []:
                if row.lease_token is not None:
                    out.append(Lease(str(row.id), str(row.lease_token)))
        return out


class Dispatcher:
    """Owns this broker's lease streams and the loop that feeds them."""

    def __init__(self, store: Store, *, broker_id: str, poll_seconds: float = 5.0,
                 max_streams: int = 0, stall_timeout: float | None = None) -> None:
        self.store = store
        self.broker_id = broker_id
        self.poll_seconds = poll_seconds
        self.max_streams = max_streams
        """Most streams open at once, 0 for no limit (FORGE_MAX_LEASE_STREAMS)."""
        self.stall_timeout = stall_timeout
        """Every stream's stall timeout; None: each its lease time (FORGE_STREAM_STALL_TIMEOUT)."""
        self._streams: dict[uuid.UUID, LeaseStream] = {}
        self._opening = 0  # streams being registered, counted against max_streams already
        self._by_job: dict[str, LeaseStream] = {}  # by job id (canonical text)
        self._wake = asyncio.Event()
        self._next_at: float | None = None  # loop time of the next scheduled run_at
        self._run_task: asyncio.Task[None] | None = None
        # LISTENs only while this broker has a stream to feed: a broker serving only enqueues
        # would otherwise wake for every INSERT anyone commits, to find no stream to fill.
        self._listener: asyncio.Task[None] | None = None
        self._rotation = 0
        self._stopping = False
        self._held: frozenset[str] = frozenset()  # paused or limited types
        self._limited: tuple[str, ...] = ()  # limited and not paused, sorted
        self._rate_wake: datetime | None = None  # when a rate window this round hit frees
        self._handing: dict[str, LeaseStream] = {}  # by lease token, while its INSERT runs
        self._handoffs = 0  # rotates hand-offs among the streams waiting
        # Counts the moments a job may have become runnable: notifications, settings changes,
        # timer and poll wake-ups (see the module docstring).
        self._news = 0

    def held_types(self) -> frozenset[str]:
        """Types the fast claim skips: paused or limited, as this broker knows them."""
        return self._held

    async def load_queues(self) -> None:
        """Read the queue settings again (at the first stream, and on every change)."""
        self._set_queues(await self.store.queue_settings())

    def _set_queues(self, queues: Sequence[QueueSettings]) -> None:
        self._news += 1
        self._held = frozenset(q.type for q in queues if q.paused or q.limited)
        self._limited = tuple(sorted(q.type for q in queues if q.limited and not q.paused))

    @property
    def streams(self) -> list[LeaseStream]:
        return list(self._streams.values())

    async def start(self) -> None:
        self._run_task = asyncio.create_task(self._run(), name="dispatch")

    async def stop(self) -> None:
        """Stop feeding, end every stream (their workers reconnect elsewhere), release outboxes.

        A claim in progress is allowed to finish, so the rows it leased reach an outbox and are
        released with it instead of waiting out their lease.
        """
        self._stopping = True
        self.wake()
        await self._stop_listening()
        if self._run_task is not None:
            try:
                await asyncio.wait_for(self._run_task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("dispatch did not finish its round in time")
        for stream in list(self._streams.values()):
            await self.close(stream)

    def wake(self) -> None:
        self._wake.set()

    async def open(self, worker_id: str, types: Sequence[str], max_in_flight: int,
                   lease_seconds: int, *, lean: bool = False,
                   on_stall: Callable[[str], None] | None = None) -> LeaseStream:
        """Register a new stream (in memory and in forge.workers) and look for work for it;
        ResourceExhausted when this broker already serves ``max_streams``."""
        open_now = len(self._streams) + self._opening
        if self.max_streams and open_now >= self.max_streams:
            raise ResourceExhausted(
                f"this broker already serves {open_now} lease streams, its limit "
                "(FORGE_MAX_LEASE_STREAMS); retry later or use another broker")
        stream = LeaseStream(worker_id=worker_id, types=tuple(sorted(set(types))),
                             max_in_flight=max_in_flight, lease_seconds=lease_seconds, lean=lean,
                             stall_seconds=self.stall_timeout or lease_seconds, on_stall=on_stall)
        self._opening += 1
        try:
            if self._listener is None:
                # Not listening, so the settings may be stale: read them before the first claim.
                await self.load_queues()
            await self.store.register_stream(stream.stream_id, worker_id, self.broker_id,
                                             stream.types, max_in_flight)
        finally:
            self._opening -= 1
        self._streams[stream.stream_id] = stream
        if self._listener is None and not self._stopping:
            self._listener = asyncio.create_task(self._listen(), name="listen")
        log.info("worker %s opened a lease stream (types=%s, max_in_flight=%d)",
                 worker_id, ",".join(stream.types) or "*", max_in_flight)
        self.wake()
        return stream

    def reserve(self, type_: str) -> HandOff | None:
        """A lease for a new job of ``type_`` on a stream waiting idle for one (see the module
        docstring), its room held until ``hand_over`` or ``unreserve``; None when none waits."""
        if self._stopping or type_ in self._held:
            return None
        streams = [s for s in self._streams.values() if s.waits_for(type_)]
        if not streams:
            return None
        self._handoffs += 1
        stream = streams[self._handoffs % len(streams)]
        stream.reserved += 1
        hand = HandOff(stream.stream_id, stream.worker_id, str(uuid.uuid4()),
                       stream.lease_seconds)
        self._handing[hand.lease_token] = stream
        return hand

    def unreserve(self, hand: HandOff) -> None:
        """The INSERT failed or leased nothing (the job's key was taken): free the room."""
        stream = self._handing.pop(hand.lease_token, None)
        if stream is not None:
            stream.reserved -= 1

    async def hand_over(self, hand: HandOff, job: NewJob, job_id: str, now: datetime) -> None:
        """The INSERT (whose now() was ``now``) that created ``job`` as ``job_id``, leased for
        ``hand``, committed: send it down its stream, or give it back (PENDING, the attempt not
        counted) if the stream closed meanwhile."""
        stream = self._handing.pop(hand.lease_token, None)
        if stream is None:
            return
        stream.reserved -= 1
        if stream.closed:
            await self.store.release([Lease(job_id, hand.lease_token)])
            return
        stream.in_flight[job_id] = hand.lease_token
        self._by_job[job_id] = stream
        leased: Claimed = [new_row(job_id, job, now)] if not stream.lean else [LeasedRow(
            job_id, hand.lease_token, job.type, job.payload_json, job.priority, 1,
            job.max_retries, 0.0, job.trace_context)]
        stream.outbox.put_nowait(leased)

    async def close(self, stream: LeaseStream) -> None:
        """Forget a stream: release its unsent jobs now; sent ones stay leased until acked or expired."""
        if stream.closed:
            return
        stream.closed = True
        self._streams.pop(stream.stream_id, None)
        unsent = stream.undelivered()
        stream.outbox.put_nowait(None)
        for job_id in list(stream.in_flight):
            self._by_job.pop(job_id, None)
        try:
            await self.store.release(unsent)
            await self.store.unregister_stream(stream.stream_id)
        except DATABASE_ERRORS as exc:
            # Unsent leases then expire and are rescued; the registry row ages out.
            log.warning("could not release %d jobs of closed stream: %s", len(unsent), exc)
        log.info("worker %s closed its lease stream (%d released)", stream.worker_id, len(unsent))
        if not self._streams:
            await self._stop_listening()

    def settled(self, job_ids: Sequence[str], *, by_worker: bool = False) -> None:
        """These jobs are no longer held (acked, nacked, rescued, cancelled): free capacity.
        ``by_worker``: a worker's ack or nack ended them, so their streams are not stalled."""
        freed = False
        now = time.monotonic()
        for job_id in job_ids:
            stream = self._by_job.pop(job_id, None)
            if stream is not None:
                stream.in_flight.pop(job_id, None)
                stream.settles += 1
                if by_worker:
                    stream.worked_at = now
                freed = True
        if freed:
            self.wake()

    def heartbeated(self, job_ids: Iterable[str]) -> None:
        """A worker extended the leases of these jobs: their streams are not stalled."""
        now = time.monotonic()
        for job_id in job_ids:
            stream = self._by_job.get(job_id)
            if stream is not None:
                stream.worked_at = now

    async def close_stalled(self) -> None:
        """Close every stream stalled for its stall timeout (see the module docstring) and tell
        its RPC why. Its unsent jobs are released; the sent ones keep their leases."""
        now = time.monotonic()
        for stream in [s for s in self._streams.values() if s.stalled_for(now) >= s.stall_seconds]:
            if stream.closed:  # its RPC ended while another was being closed
                continue
            why = (f"for {stream.stall_seconds:g} s its client read nothing of the jobs pushed "
                   "to it and acked, nacked or heartbeated none")
            log.warning("closing the lease stream of worker %s: %s", stream.worker_id, why)
            await self.close(stream)
            if stream.on_stall is not None:
                stream.on_stall(f"lease stream closed: {why} (FORGE_STREAM_STALL_TIMEOUT, "
                                "by default the stream's lease time); reconnect and read it")

    async def reconcile(self) -> None:
        """Drop in-flight jobs whose lease ended elsewhere (an ack that reached another broker).

        Looks only at streams that are full and had nothing settled here since the last look:
        a full stream whose acks keep arriving is busy, not stuck, and checking each one's
        whole in-flight set every tick would look up to 1,000 leases per stream per tick all
        through a busy drain."""
        full = []
        for stream in self._streams.values():
            if (stream.in_flight and stream.capacity() <= 0
                    and stream.settles == stream.settles_seen):
                full.append(stream)
            stream.settles_seen = stream.settles
        for stream in full:
            leases = [Lease(j, t) for j, t in stream.in_flight.items()]
            held = await self.store.still_held(leases)
            self.settled([le.job_id for le in leases if le.job_id not in held])

    def in_flight_counts(self) -> dict[uuid.UUID, int]:
        return {s.stream_id: len(s.in_flight) for s in self._streams.values()}

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        outage = Outage(log, "dispatch")
        while not self._stopping:
            timeout = self.poll_seconds
            if self._next_at is not None:
                timeout = max(0.0, min(timeout, self._next_at - loop.time()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                self._news += 1  # the timer or the poll: time may have made jobs runnable
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self._round()
            except DATABASE_ERRORS as exc:
                outage.failed(exc)
                await asyncio.sleep(0.5)  # then a round of its own: the database may be back
                self._wake.set()
            else:
                outage.succeeded()

    async def _round(self) -> None:
        """Fill every stream with free capacity; arm the timer for what is still to come."""
        streams = list(self._streams.values())
        if not streams:
            self._next_at = None
            return
        self._rotation = (self._rotation + 1) % len(streams)
        streams = streams[self._rotation:] + streams[: self._rotation]
        # A hungry stream that saw every piece of news in its last claim would find nothing:
        # it waits on (and the timer stays armed for it), without a claim.
        waiting = [s for s in streams if s.hungry and s.claimed_at == self._news]
        if len(waiting) == len(streams):
            return
        skip = set(waiting)
        wanting = [(s, s.capacity()) for s in streams if s not in skip]
        wanting = [(s, want) for s, want in wanting if want > 0]
        hungry: list[LeaseStream] = [s for s in waiting if s.capacity() > 0]
        more = False  # a stream found all it asked for and has room left: another round
        # Claims for different streams overlap, CLAIMS_AT_ONCE at a time: one stream's claim
        # runs in the database while another's rows are being sent.
        for i in range(0, len(wanting), CLAIMS_AT_ONCE):
            group = wanting[i:i + CLAIMS_AT_ONCE]
            filled: list[bool | BaseException]
            if len(group) == 1:  # the idle case: no task for gather to make
                filled = [await self._fill(*group[0])]
            else:
                filled = await asyncio.gather(*(self._fill(s, want) for s, want in group),
                                              return_exceptions=True)
            for (stream, _), full in zip(group, filled, strict=True):
                if isinstance(full, BaseException):
                    raise full
                if not full:
                    hungry.append(stream)
                elif stream.capacity() > 0:
                    more = True
        if more:
            self._wake.set()
        await self._arm_timer(hungry)

    async def _fill(self, stream: LeaseStream, want: int) -> bool:
        """Claim up to ``want`` jobs for ``stream``; False if fewer were runnable."""
        # A hand-off may have taken room since the round began.
        want = min(want, stream.capacity(), CLAIM_MAX)
        if want <= 0:
            return True
        claim = self.store.claim_leases if stream.lean else self.store.claim
        rows: Claimed
        stream.filling = True
        news = self._news  # what a claim starting now can see
        try:
            if self._held:
                rows = await self._claim_held(stream, want)
            else:
                rows = await claim(stream.worker_id, stream.types, want, stream.lease_seconds)
        finally:
            stream.filling = False
        stream.hungry = len(rows) < want
        stream.claimed_at = news
        if stream.closed:
            await self.store.release([Lease(str(r.id), str(r.lease_token)) for r in rows
                                      if r.lease_token is not None])
            return True
        if rows:
            in_flight, by_job = stream.in_flight, self._by_job
            for row in rows:
                if isinstance(row, LeasedRow):
                    job_id, token = row.id, row.lease_token
                else:
                    job_id, token = str(row.id), str(row.lease_token)
                in_flight[job_id] = token
                by_job[job_id] = stream
            stream.outbox.put_nowait(rows)
        return len(rows) >= want

    async def _claim_held(self, stream: LeaseStream, want: int) -> Claimed:
        """``_fill``'s claim while some types are paused or limited: each limited type the
        stream takes first, each within its limits, then the other types in one query.
        Priorities order the jobs within each claim, not across them."""
        rows: list[Any] = []
        wanted = set(stream.types)
        for type_ in self._limited:
            if wanted and type_ not in wanted:
                continue
            got = await self.store.claim_limited(stream.worker_id, type_, want - len(rows),
                                                 stream.lease_seconds, lean=stream.lean)
            rows += got.rows
            if got.rate_frees_at is not None:
                self._rate_wake = min(filter(None, (self._rate_wake, got.rate_frees_at)))
            if len(rows) >= want:
                return rows
        if stream.types:
            types = [t for t in stream.types if t not in self._held]
            if not types:
                return rows
            held: list[str] = []  # the types named leave out every held one already
        else:
            types, held = [], sorted(self._held)
        claim = self.store.claim_leases if stream.lean else self.store.claim
        rows += await claim(stream.worker_id, types, want - len(rows), stream.lease_seconds,
                            held)
        return rows

    async def _arm_timer(self, hungry: list[LeaseStream]) -> None:
        rate_wake, self._rate_wake = self._rate_wake, None
        if not hungry:
            self._next_at = None
            return
        types: list[str] = []
        if all(s.types for s in hungry):
            types = sorted({t for s in hungry for t in s.types})
        next_run = await self.store.next_run_at(types)
        if rate_wake is not None:
            next_run = min(filter(None, (next_run, rate_wake)))
        if next_run is None:
            self._next_at = None
            return
        delay = (next_run - datetime.now(UTC)).total_seconds()
        # A millisecond late rather than early: the claim compares run_at with the database clock.
        self._next_at = asyncio.get_running_loop().time() + max(0.0, delay) + 0.001

    async def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        """Wake the loop on every NOTIFY; reconnect (and wake, in case one was missed) on loss.

        Runs from the first stream opened to the last one closed. Jobs that became runnable
        before its LISTEN took effect are found by the wake that follows it (as after a
        reconnect), and the new stream's own round."""
        delay = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.store.direct_dsn,
                                                                 autocommit=True) as conn:
                    await conn.execute(f"LISTEN {QUEUES_CHANNEL}")
                    await conn.execute(f"LISTEN {CHANNEL}")
                    # Settings changed while nobody listened are read now.
                    await self.load_queues()
                    if delay > 0.1:
                        log.info("listening for job notifications again")
                    delay = 0.1
                    self.wake()
                    async for note in conn.notifies():
                        if note.channel == QUEUES_CHANNEL:
                            await self.load_queues()
                            log.info("queue settings changed (%s)", note.payload)
                        self._news += 1
                        self.wake()
            except DATABASE_ERRORS as exc:
                if delay == 0.1:
                    log.warning("lost the notification connection: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
