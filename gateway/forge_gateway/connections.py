"""Client connections under hostile clients: a cap on open connections, a deadline for each
request's headers, and an open-file limit that fits the cap.

uvicorn's h11 protocol offers neither in a form that survives a flood of idle or slow sockets
(``slowloris``): ``limit_concurrency`` counts connections that have sent nothing, so a few
hundred idle sockets answer every real request with 503, and nothing bounds how long a
connection may take to send its headers (``timeout_keep_alive`` starts only after a response).
So the gateway serves with a subclass of that protocol, the one place that sees a connection
before any request:

- A connection is *waiting* from when it opens, and again from when a response ends, until a
  request's headers are complete. Waiting longer than the header timeout closes it.
- At the cap, a new connection closes the one waiting longest to make room: a flood of sockets
  that never finish their headers only ever displaces itself, while a client that sends its
  request at once is served. Only when every connection is busy with a request (streams
  included, which are never cut) is the new one refused with a 503 Status, then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections import Counter
from typing import ClassVar

import grpc
from uvicorn.protocols.http.h11_impl import H11Protocol

from forge_gateway import errors, transcode

log = logging.getLogger("gateway")

# Files the gateway needs besides client connections: the listening socket, the channel to the
# broker, the event loop's own, logs, and a connection accepted only to be refused.
RESERVED_FILES = 64
# Refusals and evictions are counted and logged at most this often: a flood must not flood the
# log too.
LOG_EVERY = 10.0


class ConnectionGuard:
    """The connections of one server: how many are open, and which wait for a request."""

    def __init__(self, cap: int, header_timeout: float) -> None:
        self.cap = cap
        self.header_timeout = header_timeout
        self.open: set[GuardedH11Protocol] = set()
        # Insertion order is waiting order: the first key has waited longest.
        self.waiting: dict[GuardedH11Protocol, asyncio.TimerHandle] = {}
        self.refusal = _refusal(cap)
        self.shed: Counter[str] = Counter()
        self.logged_at = -LOG_EVERY

    def admit(self, conn: GuardedH11Protocol) -> bool:
        """Whether ``conn`` may open: under the cap, or once the connection waiting longest
        for a request is closed to make room."""
        if len(self.open) >= self.cap:
            if not self.waiting:
                self._note("refused")
                return False
            oldest = next(iter(self.waiting))
            self.forget(oldest)
            oldest.transport.close()
            self._note("idle closed to make room")
        self.open.add(conn)
        return True

    def await_request(self, conn: GuardedH11Protocol) -> None:
        """``conn`` now waits for a request's headers: (re)start its deadline."""
        self.request_started(conn)
        self.waiting[conn] = conn.loop.call_later(self.header_timeout, self._expire, conn)

    def request_started(self, conn: GuardedH11Protocol) -> None:
        timer = self.waiting.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def forget(self, conn: GuardedH11Protocol) -> None:
        self.request_started(conn)
        self.open.discard(conn)

    def _expire(self, conn: GuardedH11Protocol) -> None:
        self.forget(conn)
        conn.transport.close()

    def _note(self, what: str) -> None:
        self.shed[what] += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY:
            counts = ", ".join(f"{n} {w}" for w, n in self.shed.items())
            log.warning("at the cap of %d client connections (--max-connections): %s",
                        self.cap, counts)
            self.shed.clear()
            self.logged_at = now


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, its connections counted and timed by :class:`ConnectionGuard`."""

    guard: ClassVar[ConnectionGuard]
    refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.guard.admit(self):
            self.refused = True
            transport.write(self.guard.refusal)
            transport.close()
            return
        super().connection_made(transport)
        self.guard.await_request(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if not self.refused:  # uvicorn never saw it
            super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are complete
            self.guard.request_started(self)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self.guard.await_request(self)
        super().on_response_complete()  # may start a pipelined request at once


def guarded_protocol(cap: int, header_timeout: float) -> type[GuardedH11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with a guard of its own."""

    class Protocol(GuardedH11Protocol):
        guard = ConnectionGuard(cap, header_timeout)

    return Protocol


def fit_open_files(cap: int) -> int:
    """``cap``, after raising the soft open-file limit toward the hard one so that ``cap``
    connections fit; lowered (and logged) when even the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = cap + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return cap
    fit = max(1, soft - RESERVED_FILES)
    log.warning("--max-connections lowered from %d to %d: the open-file limit is %d "
                "(ulimit -n), %d of them kept for the gateway's own files",
                cap, fit, soft, RESERVED_FILES)
    return fit


def _refusal(cap: int) -> bytes:
    body = transcode.encode(errors.status_json(
        grpc.StatusCode.UNAVAILABLE,
        f"the gateway holds its maximum of {cap} connections (--max-connections); retry shortly"))
    head = ("HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body
