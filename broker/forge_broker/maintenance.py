"""Background upkeep: rescue expired leases, fold counters, refresh the worker registry,
reconcile in-flight sets, and delete finished jobs past retention. Safe with many brokers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg_pool import PoolTimeout

from forge_broker.config import Config
from forge_broker.dispatch import Dispatcher
from forge_broker.metrics import Metrics
from forge_broker.store import Store

log = logging.getLogger("forge.maintenance")
_DB_ERRORS = (psycopg.Error, PoolTimeout, OSError)
RETENTION_BATCH = 1000
RETENTION_BATCHES_PER_TICK = 10


class Maintenance:
    def __init__(self, store: Store, dispatcher: Dispatcher, config: Config,
                 metrics: Metrics | None = None) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.config = config
        self.metrics = metrics or Metrics()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(self.config.rescue_interval, self.rescue), name="rescue"),
            asyncio.create_task(self._every(self.config.tick_seconds, self.tick), name="tick"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def rescue(self) -> None:
        """Expired leases become failed attempts (see rescue_expired_leases)."""
        while True:
            rescued = await self.store.rescue_expired(limit=1000)
            if rescued:
                log.info("rescued %d expired leases", len(rescued))
                self.dispatcher.settled([job_id for job_id, _ in rescued])
                # metrics: the store returns no type; it is known for jobs this broker delivered.
                for job_id, status in rescued:
                    self.metrics.settled_job(job_id, "dead" if status == "DEAD" else "failed",
                                             by_worker=False)
            if len(rescued) < 1000:
                return

    async def tick(self) -> None:
        await self.store.fold_counters()
        await self.store.touch_streams(self.dispatcher.in_flight_counts())
        await self.store.prune_stale_workers(max(30.0, 10 * self.config.tick_seconds))
        await self.dispatcher.reconcile()
        for _ in range(RETENTION_BATCHES_PER_TICK):
            deleted = await self.store.delete_finished(self.config.retention_seconds,
                                                       RETENTION_BATCH)
            if deleted < RETENTION_BATCH:
                break

    async def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        failing = False
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
                if failing:
                    log.info("%s recovered", job.__name__)
                failing = False
            except _DB_ERRORS as exc:
                if not failing:
                    log.warning("%s failed, database unreachable: %s", job.__name__, exc)
                failing = True
