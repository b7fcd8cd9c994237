"""Group commit: many concurrent calls, one statement.

Callers hand in their items and wait. The first call to arrive is flushed at once, so an idle
broker adds no delay; once a few flushes are running, calls that arrive wait for the next one,
so under load one flush carries everything that came in meanwhile. The batch size follows the
load; the one timer, an optional linger, only runs while calls keep coming.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

log = logging.getLogger("forge.batcher")

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(eq=False)
class _Call(Generic[Item, Result]):
    items: Sequence[Item]
    done: asyncio.Future[list[Result]]


class Batcher(Generic[Item, Result]):
    """Runs ``flush`` over the items of every waiting call, at most ``max_items`` at a time
    (a single larger call still goes alone).

    ``flush`` returns one result per item, in order; if it raises, every call in that flush
    gets the exception.
    """

    def __init__(self, flush: Callable[[list[Item]], Awaitable[list[Result]]], *,
                 max_items: int, name: str, concurrency: int = 4, linger: float = 0.0) -> None:
        """Up to ``concurrency`` flushes run at once (each on its own connection), so the
        database's own group commit can share one WAL flush among them too.

        ``linger`` (seconds): while calls keep coming (the last flush carried more than one),
        a flush starts no sooner than this long after the last one started, to gather more.
        Each flush costs the broker far more than each item in it, so under load this buys
        throughput for a sliver of latency; a lone call on a quiet broker never waits. The
        wait counts from the last flush's start, not its end: the calls that came during a
        flush longer than the linger have waited enough, and go at once."""
        self._flush = flush
        self.max_items = max_items
        self.name = name
        self.concurrency = concurrency
        self.linger = linger
        self._busy = False
        self._started = 0.0
        """The loop's time when the last flush started."""
        self._waiting: list[_Call[Item, Result]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        """Nothing waits or is being flushed: a call now is flushed alone, at once."""
        return not self._tasks and not self._waiting

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        """The results for ``items``, in order, once a flush has carried them."""
        return await self.start(items)

    def start(self, items: Sequence[Item]) -> asyncio.Future[list[Result]]:
        """``submit`` in two halves: queue ``items`` now, await their results later. A flush
        task started here runs at the caller's next ``await``, so a caller can prepare its
        answer while the database works (``await asyncio.sleep(0)`` first lets it begin)."""
        call: _Call[Item, Result] = _Call(items, asyncio.get_running_loop().create_future())
        # Retrieved even when the caller went away, so asyncio does not log it as lost.
        call.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting.append(call)
        if len(self._tasks) < self.concurrency:
            task = asyncio.create_task(self._run(), name=self.name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)  # also if cancelled before it ran
        # A caller that goes away (a cancelled RPC) cancels only its own future: the flush runs
        # in its own task, carries the call's items all the same and skips its answer.
        return call.done

    async def _run(self) -> None:
        try:
            await self._flush_waiting()
        finally:
            # Forgotten here, not by a done callback: between this task's end and its
            # callbacks, a call could arrive, count it as still flushing and start none.
            self._tasks.discard(cast("asyncio.Task[None]", asyncio.current_task()))

    async def _flush_waiting(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            if self._busy and self.linger:
                wait = self._started + self.linger - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._started = loop.time()
            take, size = 0, 0
            for call in self._waiting:
                if take and size + len(call.items) > self.max_items:
                    break
                take += 1
                size += len(call.items)
            calls, self._waiting = self._waiting[:take], self._waiting[take:]
            self._busy = take > 1
            try:
                results = await self._flush([item for call in calls for item in call.items])
            except Exception as exc:
                for call in calls:
                    if not call.done.done():
                        call.done.set_exception(exc)
                continue
            start = 0
            for call in calls:
                end = start + len(call.items)
                if not call.done.done():
                    call.done.set_result(results[start:end])
                start = end
