"""Ack and nack: report finished attempts in batches, retrying through broker outages while
each lease lasts.

Outcomes go to the broker in ``Settle`` calls of many items. The first outcome is sent at once;
outcomes that finish while a call is on the wire wait for the next one, so an idle worker adds
no delay and a busy one sends one call per batch instead of one per job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import grpc

from forge.v1 import broker_pb2 as pb
from forge_workerd.backoff import Backoff
from forge_workerd.inflight import Held
from forge_workerd.link import RETRYABLE, RPC_TIMEOUT, Link
from forge_workerd.runner import Outcome, Succeeded

log = logging.getLogger("workerd.settle")

MAX_BATCH = 1000
"""Most outcomes in one Settle call (the broker takes up to 10,000)."""
MAX_BATCH_BYTES = 3 * 1024 * 1024
"""Most bytes of results and errors in one Settle call. Under gRPC's 4 MiB default, the
smallest receive limit a broker is likely to run with (its default is 16 MiB): a call over the
limit is refused whole, and retrying it would be refused again until every lease in it ran out.
One outcome goes alone whatever its size (a result is at most 1 MiB)."""
# Bytes an outcome costs besides its result or error: ids, token, framing.
_ITEM_BYTES = 128

_OK = grpc.StatusCode.OK.value[0]
_GONE = frozenset({grpc.StatusCode.FAILED_PRECONDITION.value[0], grpc.StatusCode.NOT_FOUND.value[0]})
_RETRY_ITEM = frozenset({grpc.StatusCode.UNAVAILABLE.value[0],
                         grpc.StatusCode.DEADLINE_EXCEEDED.value[0]})


class _Pending:
    __slots__ = ("ambiguous", "held", "outcome")

    def __init__(self, held: Held, outcome: Outcome) -> None:
        self.held = held
        self.outcome = outcome
        self.ambiguous = False  # an earlier try may have landed although it timed out

    @property
    def size(self) -> int:
        """About what this outcome adds to a Settle request, in bytes."""
        outcome = self.outcome
        if isinstance(outcome, Succeeded):
            return _ITEM_BYTES + (outcome.result.ByteSize() if outcome.result is not None else 0)
        return _ITEM_BYTES + len(outcome.error)

    @property
    def verb(self) -> str:
        return "ack" if isinstance(self.outcome, Succeeded) else "nack"


class Settler:
    """Sends each attempt's outcome to the broker exactly as far as the lease allows, and calls
    ``on_settled(held, recorded)`` once it knows how it ended."""

    def __init__(self, link: Link, on_settled: Callable[[Held, bool], None]) -> None:
        self.link = link
        self._on_settled = on_settled
        self._queue: list[_Pending] = []
        self._unsettled = 0
        self._sender: asyncio.Task[None] | None = None
        self._backoff = Backoff(0.1, 2.0)

    def submit(self, held: Held, outcome: Outcome) -> None:
        """Ack or nack ``held`` (``on_settled`` says how it went).

        Retries UNAVAILABLE / DEADLINE_EXCEEDED with backoff until the lease would have expired
        (after that the broker rescues the job itself). A lease known to be lost is not reported:
        the broker would refuse it, and the job's new holder owns it now.
        """
        if held.lost:
            log.info("job %s: lease lost (%s); dropping its %s", held.job_id,
                     held.ctx.cancelled.reason or "no longer held",
                     "ack" if isinstance(outcome, Succeeded) else "nack")
            self._on_settled(held, False)
            return
        self._queue.append(_Pending(held, outcome))
        self._unsettled += 1
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="settle")

    async def flush(self, seconds: float) -> int:
        """Wait up to ``seconds`` for every submitted outcome to be settled; then give up on the
        rest and return how many that was (their leases expire and the broker retries them)."""
        sender = self._sender
        if sender is not None and not sender.done():
            await asyncio.wait({sender}, timeout=seconds)
            if not sender.done():
                sender.cancel()
                self._queue.clear()
        return self._unsettled

    def _done(self, p: _Pending, recorded: bool) -> None:
        self._unsettled -= 1
        self._on_settled(p.held, recorded)

    async def _send_all(self) -> None:
        while self._queue:
            batch = _take(self._queue)
            self._queue = self._queue[len(batch):]
            try:
                retry = await self._send(batch)
            except Exception:  # a bug, not the network: the leases expire and the broker retries
                log.exception("sending %d acks/nacks failed", len(batch))
                for p in batch:
                    self._done(p, False)
                continue
            if not retry:
                self._backoff.reset()
                continue
            delay = self._backoff.next()
            keep = [p for p in retry if not p.held.lost and time.monotonic() + delay <= p.held.deadline]
            for p in retry:
                if p not in keep:
                    log.warning("job %s: gave up on its %s: the broker stayed unreachable until "
                                "the lease ran out; the broker will rescue it", p.held.job_id, p.verb)
                    self._done(p, False)
            self._queue = keep + self._queue
            if keep:
                await asyncio.sleep(delay)

    async def _send(self, batch: list[_Pending]) -> list[_Pending]:
        """One Settle call for ``batch``; resolves what it can, returns the items to retry."""
        req = pb.SettleRequest(refused_acks_only=True)
        acks: list[_Pending] = []
        nacks: list[_Pending] = []
        add_ack, add_nack = req.acks.add, req.nacks.add
        for p in batch:
            outcome, held = p.outcome, p.held
            if isinstance(outcome, Succeeded):
                acks.append(p)
                ack = add_ack(job_id=held.job.id, lease_token=held.token)
                if outcome.result is not None:
                    ack.result.CopyFrom(outcome.result)
            else:
                nacks.append(p)
                nack = add_nack(job_id=held.job.id, lease_token=held.token, error=outcome.error,
                                permanent=outcome.permanent)
                if outcome.retry_after is not None:
                    nack.retry_after.FromNanoseconds(int(outcome.retry_after * 1e9))
        started = time.monotonic()
        try:
            resp = await self.link.stub.Settle(req, timeout=RPC_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in RETRYABLE:
                self.link.report(exc, started)
                # The broker may have recorded it before the answer was lost (a deadline, or the
                # database dropping after its commit): a later refusal may be our own success.
                for p in batch:
                    p.ambiguous = True
                return batch
            self.link.mark_up()
            log.error("%d acks/nacks refused as a whole: %s: %s", len(batch), code.name,
                      exc.details())
            for p in batch:
                self._done(p, False)
            return []
        self.link.mark_up()
        retry: list[_Pending] = []
        for p, result in [*_ack_results(acks, resp.acks), *zip(nacks, resp.nacks, strict=True)]:
            if result is None or result.code == _OK:
                self._done(p, True)
            elif result.code in _RETRY_ITEM:
                p.ambiguous = True
                retry.append(p)
            elif result.code in _GONE and p.ambiguous:
                log.info("job %s: %s already recorded by an earlier try", p.held.job_id, p.verb)
                self._done(p, True)
            elif result.code in _GONE:
                log.warning("job %s: %s refused, the lease is no longer held: %s",
                            p.held.job_id, p.verb, result.message)
                self._done(p, False)
            else:
                log.error("job %s: %s failed: code %d: %s", p.held.job_id, p.verb, result.code,
                          result.message)
                self._done(p, False)
        return retry


def _ack_results(acks: list[_Pending], results: Sequence[pb.SettleResult]
                 ) -> Iterable[tuple[_Pending, pb.SettleResult | None]]:
    """Each ack with its result, None for one recorded. The broker answers the acks it did not
    record, each with its index (refused_acks_only); one that predates that answers every ack,
    in order, and so does a new one when it recorded none: as many results as acks are in order."""
    if len(results) == len(acks):
        return zip(acks, results, strict=True)
    refused = {r.index: r for r in results}
    return ((p, refused.get(i)) for i, p in enumerate(acks))


def _take(queue: list[_Pending]) -> list[_Pending]:
    """The outcomes at the head of ``queue`` that fit one Settle call: at least one, at most
    MAX_BATCH, and no more than MAX_BATCH_BYTES of them after the first."""
    size = 0
    for n, p in enumerate(queue[:MAX_BATCH]):
        size += p.size
        if n and size > MAX_BATCH_BYTES:
            return queue[:n]
    return queue[:MAX_BATCH]
