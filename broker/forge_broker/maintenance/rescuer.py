"""The rescuer: expired leases become failed attempts (retried after a backoff, or DEAD)."""

from __future__ import annotations

from forge_broker.dispatch import Dispatcher
from forge_broker.maintenance.service import Service
from forge_broker.metrics import Metrics
from forge_broker.models import JobStatus
from forge_broker.store import Store

RESCUE_BATCH = 1000


class Rescuer(Service):
    name = "rescuer"

    def __init__(self, store: Store, dispatcher: Dispatcher, metrics: Metrics,
                 interval: float) -> None:
        super().__init__(interval)
        self.store = store
        self.dispatcher = dispatcher
        self.metrics = metrics

    async def run(self) -> None:
        """Every lease expired by now, a batch at a time (see rescue_expired_leases)."""
        while True:
            rescued = await self.store.rescue_expired(limit=RESCUE_BATCH)
            if rescued:
                self.log.info("rescued %d expired leases", len(rescued))
                self.dispatcher.settled([job_id for job_id, _ in rescued])
                # metrics: the store returns no type; it is known for jobs this broker delivered.
                for job_id, status in rescued:
                    self.metrics.settled_job(job_id, "dead" if status is JobStatus.DEAD else "failed",
                                             by_worker=False)
            if len(rescued) < RESCUE_BATCH:
                return
