"""The worker: leases jobs, runs them within --concurrency, heartbeats, acks, drains on signal."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from forge.v1 import broker_pb2 as pb
from forge_common import grpcenv, tracing
from forge_workerd import schedules
from forge_workerd.config import Config
from forge_workerd.context import JobContext
from forge_workerd.errors import ConfigError
from forge_workerd.heartbeat import Heartbeats
from forge_workerd.inflight import Held, InFlight, Phase
from forge_workerd.lease import LeaseLoop
from forge_workerd.link import Link
from forge_workerd.metrics import WorkerMetrics
from forge_workerd.registry import Registry
from forge_workerd.runner import (
    CANCEL_WAIT,
    TIMEOUT_KEY,
    Failed,
    Outcome,
    Runner,
    Succeeded,
    job_timeout,
)
from forge_workerd.settle import Settler

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
        # Delivered jobs wait here for one of `concurrency` slot tasks: a task per slot rather
        # than per job, so a job costs a queue entry instead of a task, a semaphore and a future.
        self._ready: asyncio.Queue[Held] = asyncio.Queue()
        self._slots: set[asyncio.Task[None]] = set()
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
        self.settler = Settler(link, self._settled)
        request = pb.LeaseRequest(worker_id=cfg.worker_id, types=self.types,
                                  max_in_flight=cfg.concurrency + cfg.prefetch,
                                  lease_seconds=cfg.lease_seconds,
                                  job_view=pb.LeaseRequest.JOB_VIEW_LEAN)
        for i in range(cfg.concurrency):
            slot = asyncio.create_task(self._slot(self.settler), name=f"slot-{i}")
            slot.add_done_callback(_report_crash)
            self._slots.add(slot)
        leasing = asyncio.create_task(LeaseLoop(link, request, self._accept).run(), name="lease")
        beats = Heartbeats(link, self.inflight, cfg.lease_seconds, self._lost)
        beating = asyncio.create_task(beats.run(), name="heartbeat")
        declaring = asyncio.create_task(schedules.put_all(link, self.registry.schedules),
                                        name="schedules")
        log.info("workerd %s: leasing %s from %s, concurrency %d, prefetch %d, lease %ds, grace %gs"
                 " (%s event loop, gRPC on %s)", cfg.worker_id, ",".join(self.types), cfg.broker,
                 cfg.concurrency, cfg.prefetch, cfg.lease_seconds, cfg.grace, cfg.event_loop,
                 grpcenv.engine())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({leasing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if leasing.done():
                leasing.result()  # BrokerRejected: nothing will ever be leased
            await self._drain(leasing, force)
        finally:
            stopping.cancel()
            for slot in self._slots:
                slot.cancel()  # not awaited: a handler that ignores cancellation is left behind
            for task in (leasing, beating, declaring):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await link.close()

    # -- receiving and running -----------------------------------------------------------------

    def _accept(self, jobs: Sequence[pb.LeasedJob]) -> None:
        """Take delivered jobs: each waits in the ready queue for a free slot."""
        deadline = time.monotonic() + self.config.lease_seconds
        worker_id = self.config.worker_id
        get_handler, hold, ready = self.registry.get, self.inflight.add, self._ready.put_nowait
        for leased in jobs:
            job = leased.job
            handler = get_handler(job.type)
            ctx = JobContext.of(leased, worker_id)
            if handler is not None:
                ctx.timeout = (job_timeout(handler, ctx.payload) if ctx.may_have(TIMEOUT_KEY)
                               else handler.timeout)
            held = Held(job, leased.lease_token, handler, ctx, deadline)
            hold(held)
            ready(held)
        if log.isEnabledFor(logging.DEBUG):
            for leased in jobs:
                log.debug("job %s (%s) leased, attempt %d", leased.job.id, leased.job.type,
                          leased.job.attempts)

    async def _slot(self, settler: Settler) -> None:
        """One unit of concurrency: runs ready jobs one after another until the drain."""
        ready, task = self._ready, asyncio.current_task()
        while not self._draining:
            held = await ready.get()
            if held.lost:
                continue  # already forgotten by _lost
            held.phase = Phase.RUNNING
            held.task = task
            try:
                outcome = await self._execute(held)
            except Exception:  # a workerd bug, not the handler's: forget the job, keep the slot
                log.exception("job %s (%s): workerd failed running it; its lease will expire "
                              "and the broker will retry it", held.job_id, held.job.type)
                held.task = None
                self.inflight.discard(held)
                continue
            held.phase = Phase.SETTLING
            held.task = None
            settler.submit(held, outcome)

    def _settled(self, held: Held, recorded: bool) -> None:
        self.inflight.discard(held)

    async def _execute(self, held: Held) -> Outcome:
        if held.handler is None:
            self.metrics.attempt(held.job.type, "failed", None)
            return Failed(f"worker {self.config.worker_id} has no handler for type {held.job.type!r}")
        started = time.monotonic()
        try:
            if tracing.TRACER is None:
                outcome = await self.runner.run(held.handler, held.ctx)
            else:
                outcome = await self._traced(held)
        except asyncio.CancelledError:  # shutting down: the drain hands it back
            self.metrics.attempt(held.job.type, "interrupted", time.monotonic() - started)
            raise
        took = time.monotonic() - started
        if isinstance(outcome, Succeeded):
            self.metrics.attempt(held.job.type, "completed", took)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("job %s (%s) done in %.3fs", held.job_id, held.job.type, took)
        else:
            self.metrics.attempt(held.job.type, "failed_permanent" if outcome.permanent
                                 else "failed", took)
            log.info("job %s (%s) failed after %.3fs%s: %s", held.job_id, held.job.type, took,
                     " (permanent)" if outcome.permanent else "", outcome.error.splitlines()[0])
        return outcome

    async def _traced(self, held: Held) -> Outcome:
        """Run the attempt in its span, a child of the context the job was enqueued in (a new
        trace when it has none); a failed attempt's span is marked failed."""
        assert held.handler is not None
        job = held.job
        with tracing.span(f"forge.job {job.type}", job.trace_context,
                          {"forge.job.id": job.id, "forge.job.type": job.type,
                           "forge.job.attempt": job.attempts,
                           "forge.worker.id": self.config.worker_id},
                          tracing.SpanKind.CONSUMER) as span:
            outcome = await self.runner.run(held.handler, held.ctx)
            if isinstance(outcome, Failed):
                tracing.fail(span, outcome.error)
        return outcome

    def _lost(self, held: Held) -> None:
        """The broker says this lease is no longer ours: stop its handler, drop its result."""
        if held.lost or held.phase is Phase.SETTLING:
            return  # settling: most likely our own ack landed just before the beat
        held.lost = True
        held.ctx.cancelled.set("lease lost (rescued, cancelled or finished elsewhere)")
        log.warning("job %s (%s): lease lost (rescued or cancelled); its handler is signalled "
                    "to stop and its result will be dropped", held.job_id, held.job.type)
        if held.phase is Phase.QUEUED:
            self.inflight.discard(held)  # its slot will skip it

    # -- shutting down -------------------------------------------------------------------------

    async def _drain(self, leasing: asyncio.Task[None], force: asyncio.Event) -> None:
        cfg = self.config
        settler = self.settler
        assert settler is not None
        self._draining = True
        leasing.cancel()  # first, so nothing new arrives while the rest is settled
        with contextlib.suppress(asyncio.CancelledError):
            await leasing
        queued: list[Held] = []
        while not self._ready.empty():
            held = self._ready.get_nowait()
            if not held.lost:
                queued.append(held)
        running = self.inflight.in_phase(Phase.RUNNING)
        busy = {h.task for h in running if h.task is not None}
        for slot in self._slots - busy:
            slot.cancel()  # idle: waiting for a job that will not come
        log.info("draining: %d running get up to %gs to finish; %d not started are handed back",
                 len(running), cfg.grace, len(queued))
        for held in queued:
            settler.submit(held, Failed(f"not started: worker {cfg.worker_id} shutting down",
                                        retry_after=0))

        await _wait_all(list(busy), cfg.grace, force)
        overdue = [h for h in running if h.phase is Phase.RUNNING]
        for held in overdue:
            held.ctx.cancelled.set("worker shutting down")
            if held.task is not None:
                held.task.cancel()
        if overdue:
            # A handler that swallows the cancellation is left behind, not waited for.
            await asyncio.wait([h.task for h in overdue if h.task is not None], timeout=CANCEL_WAIT)
            log.warning("grace of %gs over: %d jobs interrupted and handed back to retry at once",
                        cfg.grace, len(overdue))
        for held in overdue:
            settler.submit(held, Failed(f"interrupted: worker {cfg.worker_id} shut down after a "
                                        f"grace of {cfg.grace:g}s", retry_after=0))
        # Acks still being retried (the broker away) and the nacks above, within reason.
        late = await settler.flush(SETTLE_SECONDS)
        if late:
            log.warning("%d acks or nacks not delivered; those leases will expire and the "
                        "broker will retry the jobs", late)
        log.info("drained; exiting")


def _report_crash(task: asyncio.Task[None]) -> None:
    """A slot task ends with the drain or by cancellation; anything else is a workerd bug, and
    must be seen rather than dropped."""
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
