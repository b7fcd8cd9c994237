"""The Lease stream: open it, hand each delivered job over, reopen it whenever it ends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import grpc

from forge.v1 import broker_pb2 as pb
from forge_workerd.backoff import Backoff
from forge_workerd.errors import BrokerRejected
from forge_workerd.link import Link

log = logging.getLogger("workerd.lease")

STREAM_SECONDS = 3600.0
"""Deadline of one Lease stream; it is reopened at once when reached. Keepalive pings, not this,
detect a dead broker; the deadline only guarantees no call can hang forever."""
STABLE_SECONDS = 5.0
"""A stream that lived this long was a success: the next reconnect starts from the shortest delay."""

# The broker refused the request itself: the same request will be refused again.
_FATAL = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED,
                    grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})


class LeaseLoop:
    """Keeps one Lease stream open, reconnecting with exponential backoff and jitter
    (0.1 s to 10 s), and passes every delivered job to ``on_jobs``."""

    def __init__(self, link: Link, request: pb.LeaseRequest,
                 on_jobs: Callable[[Sequence[pb.LeasedJob]], None]) -> None:
        self.link = link
        self.request = request
        self.on_jobs = on_jobs
        self.backoff = Backoff(0.1, 10.0)

    async def run(self) -> None:
        """Run until cancelled; BrokerRejected if the broker refuses the request outright."""
        while True:
            opened: float | None = None
            reason: str | None = None
            try:
                if not await self.link.serving():
                    raise _NotServing
                call = self.link.stub.Lease(self.request, timeout=STREAM_SECONDS)
                opened = time.monotonic()
                self.link.stream_opened()
                try:
                    async for resp in call:
                        self.backoff.reset()
                        self.on_jobs(resp.jobs)
                        # Idle slots start these jobs before the next read is set up.
                        await asyncio.sleep(0)
                finally:
                    call.cancel()
                # Brokers end streams when they stop; whether this one is gone the health
                # check on the way back in tells.
                log.info("the broker closed the lease stream; reopening")
            except _NotServing:
                reason = "the broker is not serving: starting or shutting down"
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in _FATAL:
                    raise BrokerRejected(f"Lease refused: {code.name}: {exc.details()}") from exc
                if (code is grpc.StatusCode.DEADLINE_EXCEEDED and opened is not None
                        and time.monotonic() - opened >= STREAM_SECONDS - 1):
                    log.debug("lease stream reached its deadline; reopening")
                    continue
                reason = f"{code.name}: {exc.details()}"
            finally:
                self.link.stream_closed()
            if reason is not None:
                self.link.mark_down(reason)
            if opened is not None and time.monotonic() - opened >= STABLE_SECONDS:
                self.backoff.reset()
            await asyncio.sleep(self.backoff.next())


class _NotServing(Exception):
    """The broker answered its health check with NOT_SERVING."""
