"""The worker: leases jobs, runs them within --concurrency, heartbeats, acks, drains on signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from forge import structs
from forge.v1 import broker_pb2 as pb
from workerd.config import Config
from workerd.context import JobContext
from workerd.errors import ConfigError
from workerd.heartbeat import Heartbeats
from workerd.inflight import Held, InFlight, Phase
from workerd.lease import LeaseLoop
from workerd.link import Link
from workerd.metrics import WorkerMetrics
from workerd.registry import Registry
from workerd.runner import CANCEL_WAIT, Failed, Outcome, Runner, job_timeout
from workerd.settle import Settler

log = logging.getLogger("workerd")

SETTLE_SECONDS = 10.0
"""After the grace period, how long shutdown still waits for acks and nacks to be delivered."""


class Worker:
    """One workerd process's work. ``run`` returns when ``stop`` is set and the drain is done."""

    def __init__(self, config: Config, registry: Registry,
                 metrics: WorkerMetrics | None = None) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics or WorkerMetrics()
        self.types = list(config.types) or registry.names()
        if not self.types:
            raise ConfigError("--handlers: the modules registered no handler")
        missing = [t for t in self.types if registry.get(t) is None]
        if missing:
            raise ConfigError(f"--types: no handler for {', '.join(missing)} "
                              f"(registered: {', '.join(registry.names()) or 'none'})")
        self.inflight = InFlight()
        self.runner = Runner()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._draining = False
        self.link: Link | None = None
        self.settler: Settler | None = None
        self.metrics.track(lambda: len(self.inflight),
                           lambda: self.link is not None and self.link.up)

    async def run(self, stop: asyncio.Event, force: asyncio.Event) -> None:
        """Work until ``stop`` is set, then drain: nothing new, running jobs get the grace
        period (cut short by ``force``), the rest are nacked to retry at once.
        BrokerRejected if the broker refuses the Lease request."""
        cfg = self.config
        self.link = link = Link(cfg.broker, cfg.security)
        self.settler = Settler(link)
        request = pb.LeaseRequest(worker_id=cfg.worker_id, types=self.types,
                                  max_in_flight=cfg.concurrency + cfg.prefetch,
                                  lease_seconds=cfg.lease_seconds)
        leasing = asyncio.create_task(LeaseLoop(link, request, self._accept).run(), name="lease")
        beats = Heartbeats(link, self.inflight, cfg.lease_seconds, self._lost)
        beating = asyncio.create_task(beats.run(), name="heartbeat")
        log.info("workerd %s: leasing %s from %s, concurrency %d, prefetch %d, lease %ds, grace %gs",
                 cfg.worker_id, ",".join(self.types), cfg.broker, cfg.concurrency, cfg.prefetch,
                 cfg.lease_seconds, cfg.grace)
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({leasing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if leasing.done():
                leasing.result()  # BrokerRejected: nothing will ever be leased
            await self._drain(leasing, force)
        finally:
            stopping.cancel()
            for task in (leasing, beating):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await link.close()

    # -- receiving and running -----------------------------------------------------------------

    def _accept(self, jobs: Sequence[pb.LeasedJob]) -> None:
        """Take delivered jobs: each gets a task that waits for a free slot, then runs."""
        now = time.monotonic()
        for leased in jobs:
            job = leased.job
            handler = self.registry.get(job.type)
            payload = structs.to_python(job.payload)
            ctx = JobContext(id=job.id, type=job.type, payload=payload, attempts=job.attempts,
                             max_retries=job.max_retries, worker_id=self.config.worker_id,
                             timeout=job_timeout(handler, payload) if handler else None)
            held = Held(job=job, token=leased.lease_token, handler=handler, ctx=ctx,
                        deadline=now + self.config.lease_seconds)
            self.inflight.add(held)
            held.task = asyncio.create_task(self._work(held), name=f"job-{job.id}")
            held.task.add_done_callback(_report_crash)
            log.debug("job %s (%s) leased, attempt %d", job.id, job.type, job.attempts)

    async def _work(self, held: Held) -> None:
        try:
            async with self._slots:
                if self._draining or held.lost:
                    return  # the drain nacks it; a lost lease is simply forgotten
                held.phase = Phase.RUNNING
                outcome = await self._execute(held)
            held.phase = Phase.SETTLING
            await self._settle(held, outcome)
        finally:
            if not self._draining or held.phase is not Phase.QUEUED:
                self.inflight.discard(held)

    async def _execute(self, held: Held) -> Outcome:
        if held.handler is None:
            self.metrics.attempt(held.job.type, "failed", None)
            return Failed(f"worker {self.config.worker_id} has no handler for type {held.job.type!r}")
        started = time.monotonic()
        try:
            outcome = await self.runner.run(held.handler, held.ctx)
        except asyncio.CancelledError:  # shutting down: the drain hands it back
            self.metrics.attempt(held.job.type, "interrupted", time.monotonic() - started)
            raise
        took = time.monotonic() - started
        if isinstance(outcome, Failed):
            self.metrics.attempt(held.job.type, "failed_permanent" if outcome.permanent
                                 else "failed", took)
            log.info("job %s (%s) failed after %.3fs%s: %s", held.job_id, held.job.type, took,
                     " (permanent)" if outcome.permanent else "", outcome.error.splitlines()[0])
        else:
            self.metrics.attempt(held.job.type, "completed", took)
            log.debug("job %s (%s) done in %.3fs", held.job_id, held.job.type, took)
        return outcome

    async def _settle(self, held: Held, outcome: Outcome) -> None:
        assert self.settler is not None
        await self.settler.settle(held, outcome)

    def _lost(self, held: Held) -> None:
        """The broker says this lease is no longer ours: stop its handler, drop its result."""
        if held.lost or held.phase is Phase.SETTLING:
            return  # settling: most likely our own ack landed just before the beat
        held.lost = True
        held.ctx.cancelled.set("lease lost (rescued, cancelled or finished elsewhere)")
        log.warning("job %s (%s): lease lost (rescued or cancelled); its handler is signalled "
                    "to stop and its result will be dropped", held.job_id, held.job.type)
        if held.phase is Phase.QUEUED and held.task is not None:
            held.task.cancel()
            self.inflight.discard(held)

    # -- shutting down -------------------------------------------------------------------------

    async def _drain(self, leasing: asyncio.Task[None], force: asyncio.Event) -> None:
        cfg = self.config
        self._draining = True
        leasing.cancel()  # first, so nothing new arrives while the rest is settled
        with contextlib.suppress(asyncio.CancelledError):
            await leasing
        queued = self.inflight.in_phase(Phase.QUEUED)
        for held in queued:
            assert held.task is not None
            held.task.cancel()
        running = self.inflight.in_phase(Phase.RUNNING)
        log.info("draining: %d running get up to %gs to finish; %d not started are handed back",
                 len(running), cfg.grace, len(queued))
        settling = [asyncio.create_task(self._settle(
            h, Failed(f"not started: worker {cfg.worker_id} shutting down", retry_after=0)))
            for h in queued if not h.lost]

        await _wait_all([h.task for h in running if h.task is not None], cfg.grace, force)
        overdue = [h for h in running if h.phase is Phase.RUNNING]
        for held in overdue:
            assert held.task is not None
            held.ctx.cancelled.set("worker shutting down")
            held.task.cancel()
        if overdue:
            # A handler that swallows the cancellation is left behind, not waited for.
            await asyncio.wait([h.task for h in overdue if h.task is not None], timeout=CANCEL_WAIT)
            log.warning("grace of %gs over: %d jobs interrupted and handed back to retry at once",
                        cfg.grace, len(overdue))
        settling += [asyncio.create_task(self._settle(
            h, Failed(f"interrupted: worker {cfg.worker_id} shut down after a grace of {cfg.grace:g}s",
                      retry_after=0)))
            for h in overdue]
        # Acks still being retried (the broker away) and the nacks above, within reason.
        rest = settling + [h.task for h in self.inflight if h.task is not None and not h.task.done()]
        if rest:
            _, late = await asyncio.wait(rest, timeout=SETTLE_SECONDS)
            if late:
                log.warning("%d acks or nacks not delivered; those leases will expire and the "
                            "broker will retry the jobs", len(late))
                for task in late:
                    task.cancel()
        log.info("drained; exiting")


def _report_crash(task: asyncio.Task[None]) -> None:
    """A job task ends by settling its job or by cancellation; anything else is a workerd bug,
    and must be seen rather than dropped (the job's lease then expires and the broker retries it)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s crashed", task.get_name(), exc_info=task.exception())


async def _wait_all(tasks: list[asyncio.Task[None]], seconds: float, force: asyncio.Event) -> None:
    """Wait until every task is done, ``seconds`` pass or ``force`` is set."""
    pending = {t for t in tasks if not t.done()}
    deadline = asyncio.get_running_loop().time() + seconds
    while pending and not force.is_set():
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        forced = asyncio.create_task(force.wait())
        done, _ = await asyncio.wait(pending | {forced}, timeout=remaining,
                                     return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        pending -= done
