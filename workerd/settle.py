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
from dataclasses import dataclass, field

import grpc
from google.protobuf.duration_pb2 import Duration

from forge.v1 import broker_pb2 as pb
from workerd.backoff import Backoff
from workerd.inflight import Held
from workerd.link import RETRYABLE, RPC_TIMEOUT, Link
from workerd.runner import Failed, Outcome, Succeeded

log = logging.getLogger("workerd.settle")

MAX_BATCH = 1000
"""Most outcomes in one Settle call (the broker takes up to 10,000)."""

_OK = grpc.StatusCode.OK.value[0]
_GONE = frozenset({grpc.StatusCode.FAILED_PRECONDITION.value[0], grpc.StatusCode.NOT_FOUND.value[0]})
_RETRY_ITEM = frozenset({grpc.StatusCode.UNAVAILABLE.value[0],
                         grpc.StatusCode.DEADLINE_EXCEEDED.value[0]})


@dataclass(eq=False)
class _Pending:
    held: Held
    outcome: Outcome
    done: asyncio.Future[bool]
    ambiguous: bool = False  # an earlier try may have landed although it timed out
    verb: str = field(init=False)

    def __post_init__(self) -> None:
        self.verb = "ack" if isinstance(self.outcome, Succeeded) else "nack"


class Settler:
    """Sends each attempt's outcome to the broker exactly as far as the lease allows."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._queue: list[_Pending] = []
        self._sender: asyncio.Task[None] | None = None
        self._backoff = Backoff(0.1, 2.0)

    async def settle(self, held: Held, outcome: Outcome) -> bool:
        """Ack or nack ``held``; True once the broker recorded it.

        Retries UNAVAILABLE / DEADLINE_EXCEEDED with backoff until the lease would have expired
        (after that the broker rescues the job itself). A lease known to be lost is not reported:
        the broker would refuse it, and the job's new holder owns it now.
        """
        item = _Pending(held, outcome, asyncio.get_running_loop().create_future())
        if held.lost:
            log.info("job %s: lease lost (%s); dropping its %s", held.job_id,
                     held.ctx.cancelled.reason or "no longer held", item.verb)
            return False
        self._queue.append(item)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="settle")
        return await asyncio.shield(item.done)

    async def _send_all(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                retry = await self._send(batch)
            except Exception:  # a bug, not the network: the leases expire and the broker retries
                log.exception("sending %d acks/nacks failed", len(batch))
                for p in batch:
                    if not p.done.done():
                        p.done.set_result(False)
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
                    p.done.set_result(False)
            self._queue = keep + self._queue
            if keep:
                await asyncio.sleep(delay)

    async def _send(self, batch: list[_Pending]) -> list[_Pending]:
        """One Settle call for ``batch``; resolves what it can, returns the items to retry."""
        req = pb.SettleRequest()
        acks = [p for p in batch if isinstance(p.outcome, Succeeded)]
        nacks = [p for p in batch if isinstance(p.outcome, Failed)]
        for p in batch:
            if isinstance(p.outcome, Succeeded):
                req.acks.append(ack_request(p.held, p.outcome))
            else:
                req.nacks.append(nack_request(p.held, p.outcome))
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
                p.done.set_result(False)
            return []
        self.link.mark_up()
        retry: list[_Pending] = []
        for p, result in [*zip(acks, resp.acks, strict=True), *zip(nacks, resp.nacks, strict=True)]:
            if result.code == _OK:
                p.done.set_result(True)
            elif result.code in _RETRY_ITEM:
                p.ambiguous = True
                retry.append(p)
            elif result.code in _GONE and p.ambiguous:
                log.info("job %s: %s already recorded by an earlier try", p.held.job_id, p.verb)
                p.done.set_result(True)
            elif result.code in _GONE:
                log.warning("job %s: %s refused, the lease is no longer held: %s",
                            p.held.job_id, p.verb, result.message)
                p.done.set_result(False)
            else:
                log.error("job %s: %s failed: code %d: %s", p.held.job_id, p.verb, result.code,
                          result.message)
                p.done.set_result(False)
        return retry


def ack_request(held: Held, done: Succeeded) -> pb.AckRequest:
    req = pb.AckRequest(job_id=held.job_id, lease_token=held.token)
    if done.result is not None:
        req.result.CopyFrom(done.result)
    return req


def nack_request(held: Held, failed: Failed) -> pb.NackRequest:
    req = pb.NackRequest(job_id=held.job_id, lease_token=held.token, error=failed.error,
                         permanent=failed.permanent)
    if failed.retry_after is not None:
        d = Duration()
        d.FromNanoseconds(int(failed.retry_after * 1e9))
        req.retry_after.CopyFrom(d)
    return req
