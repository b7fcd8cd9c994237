"""Stats snapshots for WatchStats and the metrics gauges: read at most once per tick and
shared by every watcher. Unary Stats does not come here: it reads the counters fresh."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator

from forge_broker.loops import cancel, every
from forge_broker.models import Snapshot
from forge_broker.store import Store

log = logging.getLogger("forge.stats")


class StatsHub:
    """Caches the latest snapshot; while anyone watches, refreshes it every tick."""

    def __init__(self, store: Store, tick_seconds: float) -> None:
        self.store = store
        self.tick = tick_seconds
        self._latest: Snapshot | None = None
        self._latest_at = -math.inf
        self._reading: asyncio.Task[Snapshot] | None = None
        self._changed = asyncio.Condition()
        self._watchers = 0
        self._task: asyncio.Task[None] | None = None

    async def current(self, *, fresh: bool = False) -> Snapshot:
        """A snapshot no older than one tick; with ``fresh``, a new one (or the one being read).

        Callers at the same moment share the read under way. One that fails fails only its
        own callers: the next caller starts a read of its own, so during a database outage
        callers fail side by side, each within the pool timeout, not one after the other."""
        age = asyncio.get_running_loop().time() - self._latest_at
        if not fresh and self._latest is not None and age < self.tick:
            return self._latest
        if self._reading is None:
            self._reading = asyncio.create_task(self._read(), name="stats read")
            # Its failure is each caller's to report; when every caller has left, it is seen
            # here, so asyncio does not log it as never retrieved.
            self._reading.add_done_callback(_seen)
        # Shielded: a watcher that leaves does not cancel the read for the others.
        return await asyncio.shield(self._reading)

    async def _read(self) -> Snapshot:
        try:
            snap = await self.store.snapshot()
        finally:
            self._reading = None
        self._latest, self._latest_at = snap, asyncio.get_running_loop().time()
        return snap

    async def watch(self, interval: float) -> AsyncIterator[Snapshot]:
        """A snapshot now, then one every ``interval`` (rounded up to whole ticks)."""
        ticks = max(1, math.ceil(interval / self.tick - 1e-9))
        self._watchers += 1
        if self._task is None or self._task.done():
            # Ends once nobody watches: with no watcher, a snapshot is computed only when asked.
            self._task = asyncio.create_task(
                every(self.tick, self._refresh, log, "stats snapshot",
                      until=lambda: self._watchers == 0), name="stats")
        try:
            yield await self.current()
            seen = 0
            while True:
                async with self._changed:
                    await self._changed.wait()
                seen += 1
                if seen % ticks == 0 and self._latest is not None:
                    yield self._latest
        finally:
            self._watchers -= 1

    async def _refresh(self) -> None:
        """A new snapshot for every watcher; when it fails they wait for the next one."""
        await self.current(fresh=True)
        async with self._changed:
            self._changed.notify_all()

    async def stop(self) -> None:
        await cancel((self._task, self._reading))


def _seen(task: asyncio.Task[Snapshot]) -> None:
    if not task.cancelled():
        task.exception()
