"""The connection to the broker: one gRPC channel, deadlines, and connection-state logging.

Every RPC reports how it went here, so "disconnected" and "reconnected" are each logged once
per change of state, however many calls fail or retry in between.
"""

from __future__ import annotations

import logging
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forge.security import ChannelSecurity
from forge.v1 import broker_pb2_grpc

log = logging.getLogger("workerd.link")

RPC_TIMEOUT = 10.0
"""Deadline of every unary call (Ack, Nack, health check)."""

# Codes after which a call may be retried as is: the broker was unreachable or slow, or it
# stopped while the call was in flight (its server cancels what its grace period did not
# finish; workerd never cancels these calls itself, so CANCELLED can only come from there).
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
                       grpc.StatusCode.CANCELLED})
# Codes that mean the broker is not there (as opposed to slow, or refusing one request).
_DOWN = frozenset({grpc.StatusCode.UNAVAILABLE})

SERVICE = "forge.v1.Broker"


def channel_options() -> list[tuple[str, int]]:
    return [
        # Notice a dead broker or a cut network within ~15 s even when no job is moving. The
        # broker permits pings every 5 s without calls (min_ping_interval_without_data_ms).
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # gRPC's own reconnect backoff starts at 1 s and grows to 120 s; ours is 0.1 s to 10 s,
        # and the channel must not be the slower of the two.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 10_000),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]


class Link:
    """The broker connection as one up/down state, with the stubs to call it."""

    def __init__(self, target: str, security: ChannelSecurity | None = None) -> None:
        self.target = target
        # Plain text and no token unless configured; a token rides on every call (the Lease
        # stream, acks, heartbeats and health checks alike).
        self.channel = (security or ChannelSecurity()).aio_channel(target, channel_options())
        self.stub = broker_pb2_grpc.BrokerStub(self.channel)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._state = "new"  # new -> up <-> down
        self._down_since = 0.0
        self._up_since = 0.0
        self._stream_open = False

    @property
    def up(self) -> bool:
        return self._state == "up"

    def stream_opened(self) -> None:
        """The Lease stream is open: connected."""
        self._stream_open = True
        self.mark_up()

    def stream_closed(self) -> None:
        self._stream_open = False

    def mark_up(self) -> None:
        """A call reached the broker. Without an open Lease stream this is not yet "connected":
        a broker that is shutting down still answers acks for a moment after ending streams."""
        if self._state == "up" or not self._stream_open:
            return
        if self._state == "new":
            log.info("connected to broker %s", self.target)
        else:
            log.info("reconnected to broker %s after %.1fs", self.target,
                     time.monotonic() - self._down_since)
        self._state = "up"
        self._up_since = time.monotonic()

    def mark_down(self, reason: str) -> None:
        """The broker could not be reached (or closed our stream)."""
        if self._state == "down":
            return
        if self._state == "new":
            log.warning("broker %s unreachable (%s); retrying with backoff", self.target, reason)
        else:
            log.warning("disconnected from broker %s (%s); reconnecting with backoff",
                        self.target, reason)
        self._state = "down"
        self._down_since = time.monotonic()

    def report(self, exc: grpc.aio.AioRpcError, started: float) -> None:
        """Update the state from a call started at ``started`` (monotonic) that failed. A call
        begun before the last reconnect says nothing about the new connection: ignored."""
        if exc.code() in _DOWN and started >= self._up_since:
            self.mark_down(f"{exc.code().name}: {exc.details()}")

    async def serving(self) -> bool:
        """True when the broker answers its health check with SERVING (it is not draining).
        A server without the health service (or not naming ours) is taken at its word: True.
        Other failures raise AioRpcError."""
        try:
            resp = await self._health.Check(health_pb2.HealthCheckRequest(service=SERVICE),
                                            timeout=RPC_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND):
                return True
            raise
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await self.channel.close(grace=None)
