"""The scheduler: periodic schedules whose fire time has come each enqueue one job.

A round fires every due schedule, a batch of FIRE_BATCH per transaction (see
``Store.fire_schedules``: the jobs go in with the schedules' move to their next fire time, and
their idempotency keys make a second job for one fire impossible, whichever broker fires it).
Then the scheduler sleeps until the earliest next fire time, never longer than its interval (a
schedule put through another broker shows up within it), and a PutSchedule on this broker wakes
it at once.

Catch-up rule: a schedule that was due while no broker ran fires once, for the earliest fire
time it missed, and moves on to its first fire time after now; it never fires once per missed
time.
"""

from __future__ import annotations

import asyncio
import contextlib

from forge_broker.maintenance.service import Service
from forge_broker.store import Store

FIRE_BATCH = 1000
MIN_PAUSE = 0.05
"""Shortest sleep between rounds: a due schedule that another broker holds locked (firing it
right now) is not asked about again and again while it is."""
LATE = 0.002
"""Sleep this much past a fire time, so the round after it finds the schedule due."""


class Scheduler(Service):
    name = "scheduler"

    def __init__(self, store: Store, interval: float) -> None:
        super().__init__(interval)
        self.store = store
        self._woken = asyncio.Event()
        self._sleep = 0.0  # the first round right away: catch up on what came due meanwhile

    def wake(self) -> None:
        """Run a round now (a schedule was put: its first fire may be before the next round)."""
        self._woken.set()

    async def pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), self._sleep)
        self._woken.clear()

    async def run(self) -> None:
        self._sleep = self.interval  # a round that fails is tried again one interval later
        while True:
            fired = await self.store.fire_schedules(FIRE_BATCH)
            if fired.fired:
                self.log.debug("fired %d schedules (%d jobs enqueued)", fired.fired, fired.created)
            for name, why in fired.paused:
                self.log.error("schedule %s paused: its next fire time cannot be computed: %s",
                               name, why)
            if fired.fired + len(fired.paused) < FIRE_BATCH:
                break
        until = await self.store.next_schedule_in()
        if until is not None:
            self._sleep = min(self.interval, max(MIN_PAUSE, until + LATE))
