"""Streams per caller: each Lease and WatchStats stream counts against its caller's cap,
FORGE_MAX_STREAMS_PER_PEER, until its call ends, so that one caller cannot hold every stream
the broker serves (the dispatcher keeps the broker-wide cap on lease streams).

A caller is the address it connects from (the host, not the port) and, with auth on, the name
of its token there: a fleet sharing one worker token counts host by host, and a gateway passing
on several callers' tokens counts token by token.
"""

from __future__ import annotations

import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc

from forge_broker.auth import ApiToken

Ctx = grpc.aio.ServicerContext[Any, Any]
Identify = Callable[[Iterable[Any] | None], ApiToken | None]
"""The configured token a call's metadata presents, or None (AuthInterceptor.identify)."""


def peer_host(peer: str) -> str:
    """The host of a gRPC peer: ``ipv4:10.0.0.5:41234`` is ``10.0.0.5``, ``ipv6:[::1]:41234``
    (brackets percent-encoded or not) is ``::1``; any other kind (a Unix socket) is kept whole."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    return urllib.parse.unquote(address).rpartition(":")[0].strip("[]")


class StreamCaps:
    """How many streams each caller holds, and the wrapper that counts and caps them."""

    def __init__(self, per_caller: int, identify: Identify | None = None) -> None:
        self.per_caller = per_caller
        """FORGE_MAX_STREAMS_PER_PEER; 0 for no limit."""
        self.identify = identify
        """None when auth is off: callers are told apart by address alone."""
        self.open: Counter[str] = Counter()

    def caller(self, context: Ctx) -> str:
        host = peer_host(context.peer())
        token = self.identify(context.invocation_metadata()) if self.identify else None
        return host if token is None else f"{token.name}@{host}"

    def counted(self, handler: Callable[[Any, Ctx], AsyncIterator[Any]]
                ) -> Callable[[Any, Ctx], AsyncIterator[Any]]:
        """``handler`` (a server-streaming method), refused with RESOURCE_EXHAUSTED when its
        caller already holds ``per_caller`` streams."""

        async def stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
            caller = self.caller(context)
            held = self.open[caller]
            if self.per_caller and held >= self.per_caller:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, (
                    f"caller {caller} already holds {held} streams on this broker, its limit "
                    "(FORGE_MAX_STREAMS_PER_PEER); close one or retry later"))
            self.open[caller] += 1
            try:
                async for item in handler(request, context):
                    yield item
            finally:
                self.open[caller] -= 1
                if not self.open[caller]:
                    del self.open[caller]

        return stream
