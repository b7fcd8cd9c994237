"""What a handler is given: the job, its limits, and a cancellation signal."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


class Cancellation:
    """Set when the job should stop: its lease was lost, it timed out, or the worker is shutting down.

    Works from both kinds of handler: sync handlers (in a thread) call ``wait(timeout)`` or poll
    ``is_set()``; async handlers ``await sleep(seconds)`` or ``await wait_async()``. ``set`` is
    called only by workerd, on its event loop.
    """

    # The events are made on first use: most jobs finish without anyone waiting on them, and a
    # threading.Event per job was a noticeable share of a busy worker's time.
    _LOCK = threading.Lock()

    def __init__(self) -> None:
        self._set = False
        self._flag: threading.Event | None = None
        self._async: asyncio.Event | None = None
        self.reason = ""

    def set(self, reason: str) -> None:
        with self._LOCK:
            if self._set:
                return
            self.reason = reason
            self._set = True
            flag, waiters = self._flag, self._async
        if flag is not None:
            flag.set()
        if waiters is not None:
            waiters.set()

    def is_set(self) -> bool:
        return self._set

    def __bool__(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until cancelled or ``timeout``; True if cancelled."""
        with self._LOCK:
            if self._flag is None:
                self._flag = threading.Event()
                if self._set:
                    self._flag.set()
            flag = self._flag
        return flag.wait(timeout)

    def _event(self) -> asyncio.Event:
        if self._async is None:  # only ever touched on the event loop
            self._async = asyncio.Event()
            if self._set:
                self._async.set()
        return self._async

    async def wait_async(self) -> None:
        """Return once cancelled."""
        await self._event().wait()

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless cancelled first; True if cancelled."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event().wait(), seconds)
        return self.is_set()


@dataclass
class JobContext:
    """One attempt of one job, as a handler sees it.

    ``payload`` is the job's JSON object (whole-number values come back as ``int``).
    ``attempts`` counts this attempt (1 on the first run). ``deadline`` is when the attempt
    times out (UTC), or None without a timeout. ``cancelled`` is set when the handler should
    give up: its result will not be recorded.
    """

    id: str
    type: str
    payload: dict[str, Any]
    attempts: int
    max_retries: int
    worker_id: str
    timeout: float | None = None
    deadline: datetime | None = None
    cancelled: Cancellation = field(default_factory=Cancellation)
    _started: float = field(default_factory=time.monotonic, init=False, repr=False)

    def start_clock(self) -> None:
        """Fix ``deadline`` from ``timeout``, counting from now (called as the handler starts)."""
        self._started = time.monotonic()
        if self.timeout is not None:
            self.deadline = datetime.now(UTC) + timedelta(seconds=self.timeout)

    def time_left(self) -> float | None:
        """Seconds until the timeout (never negative), or None without one."""
        if self.timeout is None:
            return None
        return max(0.0, self.timeout - (time.monotonic() - self._started))
