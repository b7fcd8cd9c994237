"""The completer: acks and nacks from every caller, written one statement per kind per flush.

Each Ack, Nack or Settle call hands its items to the completer and waits. The first item to
arrive starts a flush at once (an idle broker adds no delay); items that arrive while a flush
is running wait for the next one, so under load a flush carries everything that came in during
the previous one — group commit, with the batch size set by the load instead of a timer. Each
job's change is still its own row in one UPDATE, and one stale lease refuses only its own item.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.errors import ForgeError
from broker.models import AckItem, NackItem, NackOutcome
from broker.store import Store

log = logging.getLogger("forge.completer")

MAX_FLUSH = 5000
"""Most items of one kind in one statement; more wait for the next flush."""

AckResult = None | BaseException
NackResult = NackOutcome | BaseException


@dataclass
class _Waiting:
    acks: list[tuple[AckItem, asyncio.Future[None]]] = field(default_factory=list)
    nacks: list[tuple[NackItem, asyncio.Future[NackOutcome]]] = field(default_factory=list)


class Completer:
    """Batches acks and nacks into single statements; see the module docstring."""

    def __init__(self, store: Store, on_settled: Callable[[Sequence[uuid.UUID]], None]) -> None:
        """``on_settled`` is told, once per flush, every job whose lease this flush ended or
        found already ended (not those a database error left undecided)."""
        self.store = store
        self.on_settled = on_settled
        self._waiting = _Waiting()
        self._flusher: asyncio.Task[None] | None = None

    async def ack(self, item: AckItem) -> None:
        """Complete one job; raises NotFound/FailedPrecondition or the database's error."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.acks.append((item, fut))
        self._kick()
        await fut

    async def nack(self, item: NackItem) -> NackOutcome:
        """Fail one attempt; raises NotFound/FailedPrecondition or the database's error."""
        fut: asyncio.Future[NackOutcome] = asyncio.get_running_loop().create_future()
        self._waiting.nacks.append((item, fut))
        self._kick()
        return await fut

    async def settle(self, acks: Sequence[AckItem], nacks: Sequence[NackItem]
                     ) -> tuple[list[AckResult], list[NackResult]]:
        """Ack and nack many; each item's result or exception, in order. Never raises."""
        loop = asyncio.get_running_loop()
        ack_futs = [loop.create_future() for _ in acks]
        nack_futs = [loop.create_future() for _ in nacks]
        self._waiting.acks.extend(zip(acks, ack_futs, strict=True))
        self._waiting.nacks.extend(zip(nacks, nack_futs, strict=True))
        self._kick()
        ack_out = await asyncio.gather(*ack_futs, return_exceptions=True)
        nack_out = await asyncio.gather(*nack_futs, return_exceptions=True)
        return list(ack_out), list(nack_out)

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="completer")

    async def _flush_all(self) -> None:
        while self._waiting.acks or self._waiting.nacks:
            w = self._waiting
            acks, w.acks = w.acks[:MAX_FLUSH], w.acks[MAX_FLUSH:]
            nacks, w.nacks = w.nacks[:MAX_FLUSH], w.nacks[MAX_FLUSH:]
            ended: list[uuid.UUID] = []
            if acks:
                ended += await self._flush_acks(acks)
            if nacks:
                ended += await self._flush_nacks(nacks)
            if ended:
                self.on_settled(ended)

    async def _flush_acks(self, batch: list[tuple[AckItem, asyncio.Future[None]]]
                          ) -> list[uuid.UUID]:
        try:
            done = await self.store.ack_many([item for item, _ in batch])
        except Exception as exc:  # the database's error is every waiter's answer
            _fail_all((fut for _, fut in batch), exc)
            return []
        refused = await self._refusals([i.lease.job_id for i, _ in batch
                                        if i.lease.job_id not in done], "ack")
        for item, fut in batch:
            if fut.done():  # the caller went away (a cancelled RPC)
                continue
            reason = refused.get(item.lease.job_id)
            if reason is None:
                fut.set_result(None)
            else:
                fut.set_exception(reason)
        return _decided(done, refused)

    async def _flush_nacks(self, batch: list[tuple[NackItem, asyncio.Future[NackOutcome]]]
                           ) -> list[uuid.UUID]:
        try:
            done = await self.store.nack_many([item for item, _ in batch])
        except Exception as exc:
            _fail_all((fut for _, fut in batch), exc)
            return []
        refused = await self._refusals([i.lease.job_id for i, _ in batch
                                        if i.lease.job_id not in done], "nack")
        for item, fut in batch:
            if fut.done():
                continue
            outcome = done.get(item.lease.job_id)
            if outcome is not None:
                fut.set_result(outcome)
            else:
                fut.set_exception(refused[item.lease.job_id])
        return _decided(done, refused)

    async def _refusals(self, job_ids: list[uuid.UUID], action: str
                        ) -> dict[uuid.UUID, BaseException]:
        """Why each of ``job_ids`` was refused; the database's error where it could not say."""
        if not job_ids:
            return {}
        try:
            return dict(await self.store.refusals(job_ids, action))
        except Exception as exc:
            return dict.fromkeys(job_ids, exc)


def _decided(done: Iterable[uuid.UUID], refused: dict[uuid.UUID, BaseException]) -> list[uuid.UUID]:
    """Jobs whose lease is known to be over: recorded now, or refused by the database."""
    return [*done, *(j for j, why in refused.items() if isinstance(why, ForgeError))]


def _fail_all(futs: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    for fut in futs:
        if not fut.done():
            fut.set_exception(exc)
