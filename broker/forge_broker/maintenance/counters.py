"""The counter folder: counter deltas written by every state change are folded into the
counters that Stats and the queue-depth gauges read."""

from __future__ import annotations

from forge_broker.maintenance.service import Service
from forge_broker.store import Store


class CounterFolder(Service):
    name = "counter_folder"

    def __init__(self, store: Store, interval: float) -> None:
        super().__init__(interval)
        self.store = store

    async def run(self) -> None:
        await self.store.fold_counters()  # False (another broker is folding) is fine too
