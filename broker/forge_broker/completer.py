"""The completer: every caller's acks and nacks, written one statement per kind per flush.

Ack, Nack and Settle calls go through one Batcher (group commit, see broker.batcher), so under
load a single UPDATE completes the jobs of many calls. Each job's change is still its own row
in that one statement, and one stale lease refuses only its own item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from forge_broker.batcher import Batcher
from forge_broker.errors import ForgeError
from forge_broker.models import AckItem, NackItem, NackOutcome
from forge_broker.store import Store

MAX_FLUSH = 10_000
"""Most items in one flush; one Settle call may hold this many."""

AckResult = None | BaseException
NackResult = NackOutcome | BaseException
Why = dict[str, BaseException]


class Completer:
    """Batches acks and nacks into single statements; see the module docstring."""

    def __init__(self, store: Store, on_settled: Callable[[Sequence[str]], None]) -> None:
        """``on_settled`` is told, once per flush, every job whose lease this flush ended or
        found already ended (not those a database error left undecided)."""
        self.store = store
        self.on_settled = on_settled
        self._batcher: Batcher[AckItem | NackItem, NackOutcome | BaseException | None] = Batcher(
            self._flush, max_items=MAX_FLUSH, name="completer")

    async def ack(self, item: AckItem) -> None:
        """Complete one job; raises NotFound/FailedPrecondition or the database's error."""
        (result,) = await self._batcher.submit([item])
        if isinstance(result, BaseException):
            raise result

    async def nack(self, item: NackItem) -> NackOutcome:
        """Fail one attempt; raises NotFound/FailedPrecondition or the database's error."""
        (result,) = await self._batcher.submit([item])
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result

    async def settle(self, acks: Sequence[AckItem], nacks: Sequence[NackItem]
                     ) -> tuple[list[AckResult], list[NackResult]]:
        """Ack and nack many: each item's result or exception, in order."""
        results = await self._batcher.submit([*acks, *nacks])
        ack_out: list[AckResult] = [r if isinstance(r, BaseException) else None
                                    for r in results[:len(acks)]]
        nack_out: list[NackResult] = []
        for r in results[len(acks):]:
            assert r is not None, "a nack's result is an outcome or an error"
            nack_out.append(r)
        return ack_out, nack_out

    async def _flush(self, items: list[AckItem | NackItem]) -> list[NackOutcome | BaseException | None]:
        acks = [i for i in items if isinstance(i, AckItem)]
        nacks = [i for i in items if isinstance(i, NackItem)]
        acked, ack_why = await self._acks(acks)
        nacked, nack_why = await self._nacks(nacks)
        out: list[NackOutcome | BaseException | None] = []
        for item in items:
            job = item.lease.job_id
            if isinstance(item, AckItem):
                out.append(None if job in acked else ack_why[job])
            else:
                out.append(nacked[job] if job in nacked else nack_why[job])
        ended = [*acked, *nacked]
        ended += [j for why in (ack_why, nack_why) for j, e in why.items() if isinstance(e, ForgeError)]
        if ended:
            self.on_settled(ended)
        return out

    async def _acks(self, acks: list[AckItem]) -> tuple[set[str], Why]:
        """The jobs completed, and why each other one was not."""
        if not acks:
            return set(), {}
        ids = [a.lease.job_id for a in acks]
        try:
            done = await self.store.ack_many(acks)
        except Exception as exc:  # the database's error is every item's answer
            return set(), dict.fromkeys(ids, exc)
        return done, await self._refusals([j for j in ids if j not in done], "ack")

    async def _nacks(self, nacks: list[NackItem]) -> tuple[dict[str, NackOutcome], Why]:
        """Where each failed job went, and why each other one was not recorded."""
        if not nacks:
            return {}, {}
        ids = [n.lease.job_id for n in nacks]
        try:
            done = await self.store.nack_many(nacks)
        except Exception as exc:
            return {}, dict.fromkeys(ids, exc)
        return done, await self._refusals([j for j in ids if j not in done], "nack")

    async def _refusals(self, job_ids: list[str], action: str) -> Why:
        """Why each of ``job_ids`` was refused; the database's error where it could not say."""
        if not job_ids:
            return {}
        try:
            return dict(await self.store.refusals(job_ids, action))
        except Exception as exc:
            return dict.fromkeys(job_ids, exc)
