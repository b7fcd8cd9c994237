"""What a handler is given: the job, its limits, and a cancellation signal."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from google.protobuf.struct_pb2 import Struct

from forge.v1 import broker_pb2 as pb
from forge_common import structs


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


class JobContext:
    """One attempt of one job, as a handler sees it.

    ``payload`` is the job's JSON object (whole-number values come back as ``int``).
    ``attempts`` counts this attempt (1 on the first run). ``deadline`` is when the attempt
    times out (UTC), or None without a timeout. ``cancelled`` is set when the handler should
    give up: its result will not be recorded.
    """

    # A plain class with slots, and the payload decoded on first read: a busy worker makes one
    # per job, and many handlers never look at every part of it.
    __slots__ = (
        "_cancelled",
        "_payload",
        "_source",
        "_started",
        "attempts",
        "deadline",
        "id",
        "max_retries",
        "timeout",
        "type",
        "worker_id",
    )

    def __init__(self, id: str, type: str, payload: dict[str, Any], attempts: int,
                 max_retries: int, worker_id: str, timeout: float | None = None) -> None:
        self.id = id
        self.type = type
        self.attempts = attempts
        self.max_retries = max_retries
        self.worker_id = worker_id
        self.timeout = timeout
        self.deadline: datetime | None = None
        self._payload: dict[str, Any] | None = payload
        self._source: str | Struct | None = None  # the payload, not converted yet
        self._cancelled: Cancellation | None = None
        self._started = time.monotonic()

    @classmethod
    def of(cls, leased: pb.LeasedJob, worker_id: str) -> JobContext:
        """The context of a leased job, without a timeout yet; its payload (JSON text in the
        lean view, else a Struct) is converted when first read."""
        job = leased.job
        ctx = cls(job.id, job.type, _UNREAD, job.attempts, job.max_retries, worker_id)
        ctx._payload = None
        ctx._source = leased.payload_json or job.payload
        return ctx

    def may_have(self, key: str) -> bool:
        """False only if the payload surely has no top-level ``key`` (checked without
        converting it)."""
        source = self._source
        if source is None:
            return key in self.payload
        if isinstance(source, str):
            return f'"{key}"' in source
        return key in source.fields

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is None:
            source = self._source
            if isinstance(source, str):
                self._payload = orjson.loads(source)
            else:
                assert source is not None
                self._payload = structs.to_python(source)
            self._source = None
        return self._payload

    @property
    def cancelled(self) -> Cancellation:
        made = self._cancelled
        if made is None:
            # A sync handler's thread and the event loop may both ask first.
            with Cancellation._LOCK:
                if self._cancelled is None:
                    self._cancelled = Cancellation()
                made = self._cancelled
        return made

    def __repr__(self) -> str:
        return (f"JobContext(id={self.id!r}, type={self.type!r}, attempts={self.attempts}, "
                f"max_retries={self.max_retries}, worker_id={self.worker_id!r}, "
                f"timeout={self.timeout!r})")

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


_UNREAD: dict[str, Any] = {}
