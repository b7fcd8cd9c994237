"""The cleaner: COMPLETED and CANCELLED jobs past retention are deleted (DEAD ones are kept)."""

from __future__ import annotations

from forge_broker.maintenance.service import Service
from forge_broker.store import Store

RETENTION_BATCH = 1000
RETENTION_BATCHES_PER_TICK = 10
"""Most batches one round deletes: a backlog of expired jobs is cleared over several rounds,
never by one long run of deletes."""


class Cleaner(Service):
    name = "cleaner"

    def __init__(self, store: Store, retention_seconds: float, interval: float) -> None:
        super().__init__(interval)
        self.store = store
        self.retention_seconds = retention_seconds

    async def run(self) -> None:
        for _ in range(RETENTION_BATCHES_PER_TICK):
            deleted = await self.store.delete_finished(self.retention_seconds, RETENTION_BATCH)
            if deleted < RETENTION_BATCH:
                return
