"""Heartbeats: one batched call every lease_seconds/3 extends every lease this worker holds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import grpc

from forge.v1 import broker_pb2 as pb
from forge_workerd.inflight import Held, InFlight
from forge_workerd.link import Link

log = logging.getLogger("workerd.heartbeat")

MAX_LEASES_PER_CALL = 10_000  # the broker's limit on HeartbeatRequest.leases


class Heartbeats:
    """Extends held leases, and reports the ones the broker says are no longer ours."""

    def __init__(self, link: Link, inflight: InFlight, lease_seconds: int,
                 on_lost: Callable[[Held], None]) -> None:
        self.link = link
        self.inflight = inflight
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / 3
        self.on_lost = on_lost

    async def run(self) -> None:
        """Beat every interval until cancelled. After a failed beat the next comes sooner (1 s,
        doubling back up to the interval), so a broker or database outage of most of a lease is
        ridden out without the leases running out."""
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            held = self.inflight.held()
            ok = True
            for i in range(0, len(held), MAX_LEASES_PER_CALL):
                ok = await self.beat(held[i:i + MAX_LEASES_PER_CALL]) and ok
            delay = self.interval if ok else min(self.interval, 1.0 if delay >= self.interval else delay * 2)

    async def beat(self, batch: list[Held]) -> bool:
        """One Heartbeat call for ``batch``; extends their local deadlines or marks them lost.
        False when the broker could not answer."""
        if not batch:
            return True
        sent = time.monotonic()
        req = pb.HeartbeatRequest(leases=[h.ref() for h in batch], lease_seconds=self.lease_seconds)
        try:
            resp = await self.link.stub.Heartbeat(req, timeout=max(1.0, self.interval))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                # None of them is held any more.
                self.link.mark_up()
                for h in batch:
                    self.on_lost(h)
                return True
            self.link.report(exc, sent)
            log.debug("heartbeat of %d leases failed: %s: %s", len(batch), exc.code().name,
                      exc.details())
            return False
        self.link.mark_up()
        lost = set(resp.lost_job_ids)
        for h in batch:
            if h.job_id in lost:
                self.on_lost(h)
            else:
                # Counted from when the beat was sent: never later than the broker's own deadline.
                h.deadline = max(h.deadline, sent + self.lease_seconds)
        return True
