"""The completer: acks and nacks from every caller, written one statement per kind per flush.

Each Ack, Nack or Settle call hands its items to the completer and waits. The first call to
arrive starts a flush at once (an idle broker adds no delay); calls that arrive while a flush
is running wait for the next one, so under load a flush carries everything that came in during
the previous one — group commit, with the batch size set by the load instead of a timer. Each
job's change is still its own row in one UPDATE, and one stale lease refuses only its own item.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.errors import ForgeError
from broker.models import AckItem, NackItem, NackOutcome
from broker.store import Store

log = logging.getLogger("forge.completer")

MAX_FLUSH = 10_000
"""Most items in one flush (more calls wait for the next); one Settle call may hold this many."""

AckResult = None | BaseException
NackResult = NackOutcome | BaseException
Results = tuple[list[AckResult], list[NackResult]]


@dataclass(eq=False)
class _Call:
    acks: Sequence[AckItem]
    nacks: Sequence[NackItem]
    done: asyncio.Future[Results]

    def __len__(self) -> int:
        return len(self.acks) + len(self.nacks)


class Completer:
    """Batches acks and nacks into single statements; see the module docstring."""

    def __init__(self, store: Store, on_settled: Callable[[Sequence[uuid.UUID]], None]) -> None:
        """``on_settled`` is told, once per flush, every job whose lease this flush ended or
        found already ended (not those a database error left undecided)."""
        self.store = store
        self.on_settled = on_settled
        self._waiting: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None

    async def ack(self, item: AckItem) -> None:
        """Complete one job; raises NotFound/FailedPrecondition or the database's error."""
        (result,), _ = await self.settle([item], [])
        if result is not None:
            raise result

    async def nack(self, item: NackItem) -> NackOutcome:
        """Fail one attempt; raises NotFound/FailedPrecondition or the database's error."""
        _, (result,) = await self.settle([], [item])
        if isinstance(result, BaseException):
            raise result
        return result

    async def settle(self, acks: Sequence[AckItem], nacks: Sequence[NackItem]) -> Results:
        """Ack and nack many: each item's result or exception, in order. Raises nothing but
        cancellation."""
        call = _Call(acks, nacks, asyncio.get_running_loop().create_future())
        self._waiting.append(call)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="completer")
        return await asyncio.shield(call.done)

    async def _flush_all(self) -> None:
        while self._waiting:
            take, size = 0, 0
            while take < len(self._waiting) and (take == 0 or size + len(self._waiting[take]) <= MAX_FLUSH):
                size += len(self._waiting[take])
                take += 1
            calls, self._waiting = self._waiting[:take], self._waiting[take:]
            try:
                await self._flush(calls)
            except Exception as exc:  # a bug: answer every caller rather than leave them hanging
                log.exception("flushing %d acks and nacks failed", size)
                for call in calls:
                    if not call.done.done():
                        call.done.set_exception(exc)

    async def _flush(self, calls: list[_Call]) -> None:
        acks = [a for c in calls for a in c.acks]
        nacks = [n for c in calls for n in c.nacks]
        acked, ack_why = await self._acks(acks)
        nacked, nack_why = await self._nacks(nacks)
        for call in calls:
            ack_out: list[AckResult] = [
                None if a.lease.job_id in acked else ack_why[a.lease.job_id] for a in call.acks]
            nack_out: list[NackResult] = [
                nacked[n.lease.job_id] if n.lease.job_id in nacked else nack_why[n.lease.job_id]
                for n in call.nacks]
            if not call.done.done():  # else the caller went away (a cancelled RPC)
                call.done.set_result((ack_out, nack_out))
        ended = [*acked, *nacked]
        ended += [j for why in (ack_why, nack_why) for j, e in why.items() if isinstance(e, ForgeError)]
        if ended:
            self.on_settled(ended)

    async def _acks(self, acks: list[AckItem]) -> tuple[set[uuid.UUID], dict[uuid.UUID, BaseException]]:
        """The jobs completed, and why each other one was not."""
        if not acks:
            return set(), {}
        ids = [a.lease.job_id for a in acks]
        try:
            done = await self.store.ack_many(acks)
        except Exception as exc:  # the database's error is every item's answer
            return set(), dict.fromkeys(ids, exc)
        return done, await self._refusals([j for j in ids if j not in done], "ack")

    async def _nacks(self, nacks: list[NackItem]
                     ) -> tuple[dict[uuid.UUID, NackOutcome], dict[uuid.UUID, BaseException]]:
        """Where each failed job went, and why each other one was not recorded."""
        if not nacks:
            return {}, {}
        ids = [n.lease.job_id for n in nacks]
        try:
            done = await self.store.nack_many(nacks)
        except Exception as exc:
            return {}, dict.fromkeys(ids, exc)
        return done, await self._refusals([j for j in ids if j not in done], "nack")

    async def _refusals(self, job_ids: list[uuid.UUID], action: str
                        ) -> dict[uuid.UUID, BaseException]:
        """Why each of ``job_ids`` was refused; the database's error where it could not say."""
        if not job_ids:
            return {}
        try:
            return dict(await self.store.refusals(job_ids, action))
        except Exception as exc:
            return dict.fromkeys(job_ids, exc)
