"""The worker registry: this broker's lease streams stay alive in ``forge.workers`` (with their
in-flight counts, for Stats), and the rows of brokers that stopped refreshing theirs are deleted."""

from __future__ import annotations

from forge_broker.dispatch import Dispatcher
from forge_broker.maintenance.service import Service
from forge_broker.store import Store

MIN_STALE_SECONDS = 30.0


class WorkerRegistry(Service):
    name = "worker_registry"

    def __init__(self, store: Store, dispatcher: Dispatcher, interval: float) -> None:
        super().__init__(interval)
        self.store = store
        self.dispatcher = dispatcher
        # Ten missed refreshes, and never under 30 s: a busy broker that is late once or twice
        # keeps its rows.
        self.stale_seconds = max(MIN_STALE_SECONDS, 10 * interval)

    async def run(self) -> None:
        await self.store.touch_streams(self.dispatcher.in_flight_counts())
        await self.store.prune_stale_workers(self.stale_seconds)
