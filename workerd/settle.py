"""Ack and nack: report a finished attempt, retrying through broker outages while the lease lasts."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from google.protobuf.duration_pb2 import Duration

from forge.v1 import broker_pb2 as pb
from workerd.backoff import Backoff
from workerd.inflight import Held
from workerd.link import RETRYABLE, RPC_TIMEOUT, Link
from workerd.runner import Failed, Outcome, Succeeded

log = logging.getLogger("workerd.settle")

_GONE = frozenset({grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND})


class Settler:
    """Sends each attempt's outcome to the broker exactly as far as the lease allows."""

    def __init__(self, link: Link) -> None:
        self.link = link

    async def settle(self, held: Held, outcome: Outcome) -> bool:
        """Ack or nack ``held``; True once the broker recorded it.

        Retries UNAVAILABLE / DEADLINE_EXCEEDED with backoff until the lease would have expired
        (after that the broker rescues the job itself). A lease known to be lost is not reported:
        the broker would refuse it, and the job's new holder owns it now.
        """
        verb = "ack" if isinstance(outcome, Succeeded) else "nack"
        if held.lost:
            log.info("job %s: lease lost (%s); dropping its %s", held.job_id,
                     held.ctx.cancelled.reason or "no longer held", verb)
            return False
        backoff = Backoff(0.1, 2.0)
        ambiguous = False  # an earlier try may have landed although it timed out
        while True:
            started = time.monotonic()
            try:
                await self._send(held, outcome)
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in RETRYABLE:
                    self.link.report(exc, started)
                    ambiguous = ambiguous or code is grpc.StatusCode.DEADLINE_EXCEEDED
                    delay = backoff.next()
                    if held.lost or time.monotonic() + delay > held.deadline:
                        log.warning("job %s: gave up on its %s: the broker stayed unreachable "
                                    "until the lease ran out (%s); the broker will rescue it",
                                    held.job_id, verb, code.name)
                        return False
                    await asyncio.sleep(delay)
                    continue
                self.link.mark_up()
                if code in _GONE and ambiguous:
                    log.info("job %s: %s already recorded by an earlier try", held.job_id, verb)
                    return True
                if code in _GONE:
                    log.warning("job %s: %s refused, the lease is no longer held: %s",
                                held.job_id, verb, exc.details())
                else:
                    log.error("job %s: %s failed: %s: %s", held.job_id, verb, code.name,
                              exc.details())
                return False
            self.link.mark_up()
            return True

    async def _send(self, held: Held, outcome: Outcome) -> None:
        stub = self.link.stub
        if isinstance(outcome, Succeeded):
            ack = pb.AckRequest(job_id=held.job_id, lease_token=held.token)
            if outcome.result is not None:
                ack.result.CopyFrom(outcome.result)
            await stub.Ack(ack, timeout=RPC_TIMEOUT)
            return
        nack = nack_request(held, outcome)
        await stub.Nack(nack, timeout=RPC_TIMEOUT)


def nack_request(held: Held, failed: Failed) -> pb.NackRequest:
    req = pb.NackRequest(job_id=held.job_id, lease_token=held.token, error=failed.error,
                         permanent=failed.permanent)
    if failed.retry_after is not None:
        d = Duration()
        d.FromNanoseconds(int(failed.retry_after * 1e9))
        req.retry_after.CopyFrom(d)
    return req
