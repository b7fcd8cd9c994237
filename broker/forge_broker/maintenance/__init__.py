"""Background upkeep, one small service per job, each on its own interval and logger, so one
failing (a database error or a bug) never stops or delays the others. All are safe with many
brokers on one database."""

from __future__ import annotations

import asyncio

from forge_broker.config import Config
from forge_broker.dispatch import Dispatcher
from forge_broker.loops import cancel, every
from forge_broker.maintenance.cleaner import RETENTION_BATCH, RETENTION_BATCHES_PER_TICK, Cleaner
from forge_broker.maintenance.counters import CounterFolder
from forge_broker.maintenance.memory import MemoryTrimmer
from forge_broker.maintenance.reconciler import Reconciler
from forge_broker.maintenance.rescuer import Rescuer
from forge_broker.maintenance.scheduler import Scheduler
from forge_broker.maintenance.service import Service
from forge_broker.maintenance.stalls import StallWatch
from forge_broker.maintenance.workers import WorkerRegistry
from forge_broker.metrics import Metrics
from forge_broker.store import Store

__all__ = ["RETENTION_BATCH", "RETENTION_BATCHES_PER_TICK", "Cleaner", "CounterFolder",
           "Maintenance", "MemoryTrimmer", "Reconciler", "Rescuer", "Scheduler", "Service",
           "StallWatch", "WorkerRegistry"]


class Maintenance:
    """Starts every maintenance service in a task of its own, and stops them all."""

    def __init__(self, store: Store, dispatcher: Dispatcher, config: Config,
                 metrics: Metrics | None = None) -> None:
        self.scheduler = Scheduler(store, config.schedule_interval)
        self.services: list[Service] = [
            Rescuer(store, dispatcher, metrics or Metrics(), config.rescue_interval),
            CounterFolder(store, config.fold_interval),
            WorkerRegistry(store, dispatcher, config.workers_interval),
            Reconciler(dispatcher, config.reconcile_interval),
            StallWatch(dispatcher, config.tick_seconds),
            Cleaner(store, config.retention_seconds, config.retention_interval),
            self.scheduler,
            MemoryTrimmer(),
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(every(s.interval, s.run, s.log, s.name, pause=s.pause),
                                           name=s.name)
                       for s in self.services]

    async def stop(self) -> None:
        await cancel(self._tasks)
        self._tasks = []
