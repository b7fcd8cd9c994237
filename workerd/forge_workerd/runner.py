"""Run one attempt of a handler and turn whatever happens into an Outcome (ack or nack)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import traceback
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, cast

from google.protobuf.struct_pb2 import Struct

from forge_workerd.context import JobContext
from forge_workerd.errors import Fail, Retry
from forge_workerd.registry import AsyncFn, Handler, SyncFn
from forge_workerd.threads import DaemonPool

log = logging.getLogger("workerd.runner")

TIMEOUT_KEY = "_timeout"
"""Payload key that sets a per-job timeout in seconds, overriding the handler's."""
MAX_ERROR_CHARS = 4000
"""Longest error text sent with a nack (the broker keeps 4 KiB); the traceback's tail is kept."""
TRACEBACK_FRAMES = 8
CANCEL_WAIT = 1.0
"""How long a cancelled async handler gets to unwind before it is left behind."""


@dataclass(frozen=True)
class Succeeded:
    """Ack the job, storing ``result`` (a JSON object) if any."""

    result: Struct | None


@dataclass(frozen=True)
class Failed:
    """Nack the job: ``retry_after`` overrides the broker's backoff, ``permanent`` sends it DEAD."""

    error: str
    retry_after: float | None = None
    permanent: bool = False


Outcome = Succeeded | Failed

DONE = Succeeded(None)
"""The outcome of a handler that returned nothing (most of them): one object for all."""


def job_timeout(handler: Handler, payload: Mapping[str, Any]) -> float | None:
    """The attempt's timeout: the payload's ``_timeout`` when it is a positive number, else the handler's."""
    raw = payload.get(TIMEOUT_KEY)
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0 and math.isfinite(raw):
        return float(raw)
    return handler.timeout


def describe(exc: BaseException) -> str:
    """The exception and the last frames of its traceback, at most MAX_ERROR_CHARS, each file
    named as ``package_path`` says."""
    head = f"{type(exc).__name__}: {exc}"
    walked = list(traceback.walk_tb(exc.__traceback__))[-TRACEBACK_FRAMES:]
    stack = traceback.StackSummary.extract(walked)
    for summary, (frame, _) in zip(stack, walked, strict=True):
        summary.filename = package_path(summary.filename, frame.f_globals.get("__name__"))
    frames = "".join(traceback.format_list(stack))
    tb = "\nTraceback (most recent call last, trimmed):\n" + frames
    text = head + tb
    if len(text) > MAX_ERROR_CHARS:
        # Keep the start of the message (what went wrong) and the innermost frames (where).
        tail = tb if len(tb) <= MAX_ERROR_CHARS // 2 else "\n…" + tb[-(MAX_ERROR_CHARS // 2 - 2):]
        text = head[:MAX_ERROR_CHARS - len(tail) - 1] + "…" + tail
    return text.rstrip()


def package_path(filename: str, module: str | None) -> str:
    """``filename`` as a path within its top-level package, as many trailing parts as the
    module's dotted name has (``myapp/jobs.py`` for ``myapp.jobs``, ``asyncio/tasks.py``):
    the same on every machine, and no home folder or virtualenv path in the errors the
    dashboard shows. A file that is not a module's stays as it is."""
    if not module or not os.path.isabs(filename):
        return filename
    depth = module.count(".") + 1 + (os.path.basename(filename) == "__init__.py")
    parts = PurePath(filename).parts
    return "/".join(parts[-depth:]) if len(parts) > depth else filename


def as_result(value: object) -> Struct:
    """A handler's return value as a job result: a mapping as it is, any other value under
    "value"; ValueError/TypeError when it is not JSON."""
    result = Struct()
    fields: Mapping[str, Any] = value if isinstance(value, Mapping) else {"value": value}
    result.update(fields)
    return result


class Runner:
    """Runs handlers: async ones on the event loop, sync ones on daemon threads."""

    def __init__(self) -> None:
        self._threads = DaemonPool()

    async def run(self, handler: Handler, ctx: JobContext) -> Outcome:
        """Run one attempt within its timeout and classify the outcome; never raises except
        CancelledError (the worker is shutting down), after setting ``ctx.cancelled``."""
        ctx.start_clock()
        if handler.is_async and ctx.timeout is None:
            # Awaited inline: a task and a wait per job cost more than most handlers. Shutdown
            # cancels the job's task, which cancels the handler where it awaits; the drain
            # bounds how long it may take to unwind.
            try:
                value = await cast(AsyncFn, handler.fn)(ctx)
            except asyncio.CancelledError:
                ctx.cancelled.set("worker shutting down")
                raise
            except Exception as exc:
                return failure(exc)
            return success(value)
        work: asyncio.Future[object]
        if handler.is_async:
            coro = cast(AsyncFn, handler.fn)(ctx)
            work = asyncio.ensure_future(cast(Awaitable[object], coro))
        else:
            fn = cast(SyncFn, handler.fn)
            work = self._threads.submit(lambda: fn(ctx))
        try:
            done, _ = await asyncio.wait({work}, timeout=ctx.timeout)
        except asyncio.CancelledError:
            ctx.cancelled.set("worker shutting down")
            await _abandon(work)
            raise
        if not done:
            ctx.cancelled.set("timed out")
            await _abandon(work)
            if not handler.is_async:
                log.warning("job %s (%s): timed out; its sync handler keeps its thread until it returns",
                            ctx.id, ctx.type)
            return Failed(f"timed out after {ctx.timeout:g}s")
        return classify(work)


def classify(work: asyncio.Future[object]) -> Outcome:
    """Turn a finished handler future into an Outcome."""
    if work.cancelled():
        return Failed("the handler was cancelled")
    exc = work.exception()
    if exc is None:
        return success(work.result())
    return failure(exc)


def success(value: object) -> Outcome:
    """A handler's return value as an ack, or a permanent failure when it is not JSON."""
    if value is None:
        return DONE
    try:
        return Succeeded(as_result(value))
    except (ValueError, TypeError, AttributeError) as bad:
        return Failed(f"the handler's result is not a JSON object: {bad}", permanent=True)


def failure(exc: BaseException) -> Outcome:
    """A handler's exception as a nack: Retry and Fail choose how."""
    if isinstance(exc, Retry):
        return Failed(f"retry requested: {exc.message}", retry_after=exc.after)
    if isinstance(exc, Fail):
        return Failed(exc.message, permanent=True)
    return Failed(describe(exc))


async def _abandon(work: asyncio.Future[object]) -> None:
    """Cancel a handler's future; give an async handler a moment to unwind, then leave it."""
    work.cancel()
    # Whatever it ends with later is of no interest; retrieving it keeps asyncio quiet.
    work.add_done_callback(lambda f: f.cancelled() or f.exception())
    if isinstance(work, asyncio.Task):
        with contextlib.suppress(BaseException):
            await asyncio.wait({work}, timeout=CANCEL_WAIT)
