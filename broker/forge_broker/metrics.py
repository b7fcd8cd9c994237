"""Prometheus metrics of one broker, served at ``/metrics`` on FORGE_METRICS_HOST:FORGE_METRICS_PORT.

Counters and histograms count what *this* broker did (its enqueues, the acks and nacks it
received, the leases it rescued, the jobs it delivered); sum them over brokers. The queue-depth
gauges are read from the database's counters, so every broker reports the same global value;
take ``max`` over brokers, not ``sum``. No metric is labelled with a job id.

Everything lives in one :class:`Metrics` object with its own CollectorRegistry, handed to the
servicer, the maintenance loop and the gauge publisher by the server; nothing is global.
"""

from __future__ import annotations

import itertools
import logging
import operator
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Literal, TypeVar, cast

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from forge_broker.loops import every
from forge_broker.models import JobRow, LeasedRow, QueueSettings, Snapshot
from forge_common.tally import CounterTally, HistogramTally

log = logging.getLogger("forge.metrics")

R = TypeVar("R", JobRow, LeasedRow)

Outcome = Literal["completed", "failed", "dead"]
"""How an attempt ended: acked; nacked or rescued with retries left (back to PENDING); DEAD."""

UNKNOWN_TYPE = "(unknown)"
"""Type label of a settled job this broker did not deliver (it cannot be a real type name)."""

MAX_REMEMBERED = 100_000
"""Delivered jobs whose type is remembered until they settle; the oldest are forgotten first."""

_ID, _WAITED, _TYPE = (operator.attrgetter(a) for a in ("id", "waited", "type"))
_FIRST = operator.itemgetter(0)


def _by_type(rows: Sequence[R]) -> Mapping[str, Sequence[R]]:
    """``rows`` by type, in order; one type (the usual case) without a step per row."""
    types = set(map(_TYPE, rows))
    if len(types) == 1:
        return {types.pop(): rows}
    out: dict[str, list[R]] = {}
    for row in rows:
        out.setdefault(row.type, []).append(row)
    return out

# Seconds; the same bounds as the database's queue-wait histogram (forge.wait_bucket), which
# the dashboard's percentiles come from.
WAIT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
                60.0, 300.0, 900.0, 3600.0)
LEASE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                 900.0, 3600.0)
# TypeCounts field -> forge_queue_depth's status label.
DEPTH_STATUSES = ("pending", "scheduled", "processing", "completed", "dead", "cancelled")


class Metrics:
    """The broker's metrics and the small amount of state needed to label them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Tallies, not prometheus_client's Counter/Histogram: these count every job.
        self.jobs_enqueued = CounterTally(
            "forge_jobs_enqueued", "Jobs created by Enqueue/EnqueueBatch on this broker "
            "(idempotent repeats not counted).", ["type"], r)
        self.jobs_completed = CounterTally(
            "forge_jobs_completed", "Acks recorded by this broker.", ["type"], r)
        self.jobs_failed = CounterTally(
            "forge_jobs_failed", "Failed attempts that will be retried: nacks received and "
            "expired leases rescued by this broker.", ["type"], r)
        self.jobs_dead = CounterTally(
            "forge_jobs_dead", "Jobs sent to the dead-letter queue by this broker (permanent "
            "nack, or retries spent on a nack or a rescue).", ["type"], r)
        self.queue_wait = HistogramTally(
            "forge_queue_wait_seconds", "From a job's run_at to its claim (database clock), "
            "for jobs delivered on this broker's lease streams.", ["type"], WAIT_BUCKETS, r)
        self.lease_duration = HistogramTally(
            "forge_lease_duration_seconds", "From a job's delivery on this broker's lease "
            "stream to its ack or nack at this broker (rescues not included).", ["type"],
            LEASE_BUCKETS, r)
        self.queue_depth = Gauge(
            "forge_queue_depth", "Jobs per type and status, from the database's counters "
            "(global: the same on every broker); pending is runnable now, scheduled waits "
            "for its run_at.", ["type", "status"], registry=r)
        self.oldest_pending_age = Gauge(
            "forge_queue_oldest_pending_age_seconds", "Age of the oldest runnable job per type "
            "(global).", ["type"], registry=r)
        self.queue_paused = Gauge(
            "forge_queue_paused", "1 while the type is paused, else 0 (global).", ["type"],
            registry=r)
        self.queue_concurrency_limit = Gauge(
            "forge_queue_concurrency_limit", "The type's concurrency limit, 0 for unlimited "
            "(global); what it bounds is forge_queue_depth{status=\"processing\"}.", ["type"],
            registry=r)
        self.queue_key_concurrency_limit = Gauge(
            "forge_queue_key_concurrency_limit", "The type's limit per concurrency key, 0 for "
            "unlimited (global).", ["type"], registry=r)
        self.queue_rate_limit = Gauge(
            "forge_queue_rate_limit", "The type's rate limit in starts per second (limit / "
            "period), 0 for none (global).", ["type"], registry=r)
        self.lease_streams = Gauge(
            "forge_lease_streams", "Lease streams open on this broker.", registry=r)
        self.worker_in_flight = Gauge(
            "forge_worker_in_flight", "Jobs leased through this broker and not yet settled, per "
            "worker.", ["worker_id"], registry=r)
        self.database_up = Gauge(
            "forge_database_up", "1 while this broker's last health check reached the "
            "database, 0 while it cannot.", registry=r)
        self.database_last_error = Gauge(
            "forge_database_last_error_timestamp_seconds", "Unix time of this broker's last "
            "failed health check of the database (0: none since it started).", registry=r)
        self._by_outcome = {"completed": self.jobs_completed, "failed": self.jobs_failed,
                            "dead": self.jobs_dead}
        self._held: dict[str, tuple[str, float]] = {}  # by job id (canonical text)
        self._depth_labels: set[tuple[str, str]] = set()
        self._age_labels: set[str] = set()
        self._worker_labels: set[str] = set()

    # -- events ------------------------------------------------------------------------------

    def enqueued(self, type_: str, n: int = 1) -> None:
        if n > 0:
            self.jobs_enqueued.inc((type_,), n)

    def delivered(self, rows: Sequence[JobRow] | Sequence[LeasedRow]) -> None:
        """Jobs sent down a lease stream: their queue wait, and their type for when they settle.

        Taken a type at a time, through map and C callables where it can: a claim delivers up
        to a thousand jobs, of one type from workerd's streams, and a Python step per job and
        metric was a tenth of the broker's time in a drain."""
        if not rows:
            return
        now = time.monotonic()
        if isinstance(rows[0], LeasedRow):
            for type_, lean in _by_type(cast("Sequence[LeasedRow]", rows)).items():
                self._delivered(type_, list(map(_WAITED, lean)), map(_ID, lean), now)
        else:
            for type_, full in _by_type(cast("Sequence[JobRow]", rows)).items():
                # Both times are the database's: run_at, and updated_at which the claim set.
                self._delivered(type_, [(r.updated_at - r.run_at).total_seconds() for r in full],
                                (str(r.id) for r in full), now)
        while len(self._held) > MAX_REMEMBERED:
            del self._held[next(iter(self._held))]

    def _delivered(self, type_: str, waits: list[float], ids: Iterable[str], now: float) -> None:
        self.queue_wait.observe_all((type_,), list(map(max, itertools.repeat(0.0), waits)))
        self._held.update(zip(ids, itertools.repeat((type_, now))))

    def settled_jobs(self, job_ids: Iterable[str], outcome: Outcome, *,
                     by_worker: bool = True) -> None:
        """Count settled jobs by id, per type: typed if this broker delivered them, else
        ``(unknown)``. ``by_worker``: acks or nacks (their lease duration is observed), not
        rescues."""
        now = time.monotonic()
        got = list(map(self._held.pop, job_ids, itertools.repeat(None)))
        known: list[tuple[str, float]] = list(filter(None, got))
        counter = self._by_outcome[outcome]
        if len(known) < len(got):
            counter.inc((UNKNOWN_TYPE,), len(got) - len(known))
        types = set(map(_FIRST, known))
        for type_ in types:
            held = known if len(types) == 1 else [k for k in known if k[0] == type_]
            counter.inc((type_,), len(held))
            if by_worker:
                self.lease_duration.observe_all((type_,), [now - since for _, since in held])

    def settled_job(self, job_id: str, outcome: Outcome, *, by_worker: bool = True) -> None:
        """``settled_jobs`` for one job."""
        self.settled_jobs((job_id,), outcome, by_worker=by_worker)

    def forget(self, job_ids: Iterable[str]) -> None:
        """These jobs left their lease without an outcome to count (cancelled, lost)."""
        for job_id in job_ids:
            self._held.pop(job_id, None)

    # -- gauges --------------------------------------------------------------------------------

    def observe_snapshot(self, snap: Snapshot) -> None:
        depth: set[tuple[str, str]] = set()
        ages: set[str] = set()
        for counts in snap.types:
            for status in DEPTH_STATUSES:
                self.queue_depth.labels(counts.type, status).set(getattr(counts, status))
                depth.add((counts.type, status))
            self.oldest_pending_age.labels(counts.type).set(counts.oldest_pending_age_seconds)
            ages.add(counts.type)
            queue = counts.queue or QueueSettings(counts.type)
            self.queue_paused.labels(counts.type).set(int(queue.paused))
            self.queue_concurrency_limit.labels(counts.type).set(queue.concurrency_limit)
            self.queue_key_concurrency_limit.labels(counts.type).set(queue.key_concurrency_limit)
            self.queue_rate_limit.labels(counts.type).set(
                queue.rate_limit / queue.rate_period if queue.rate_limit else 0)
        for labels in self._depth_labels - depth:
            self.queue_depth.remove(*labels)
        for type_ in self._age_labels - ages:
            for gauge in (self.oldest_pending_age, self.queue_paused, self.queue_concurrency_limit,
                          self.queue_key_concurrency_limit, self.queue_rate_limit):
                gauge.remove(type_)
        self._depth_labels, self._age_labels = depth, ages

    def observe_streams(self, streams: Iterable[tuple[str, int]]) -> None:
        """This broker's open streams as (worker_id, jobs in flight)."""
        per_worker: dict[str, int] = {}
        n = 0
        for worker_id, in_flight in streams:
            per_worker[worker_id] = per_worker.get(worker_id, 0) + in_flight
            n += 1
        self.lease_streams.set(n)
        for worker_id, count in per_worker.items():
            self.worker_in_flight.labels(worker_id).set(count)
        for worker_id in self._worker_labels - per_worker.keys():
            self.worker_in_flight.remove(worker_id)
        self._worker_labels = set(per_worker)

    def observe_database(self, reachable: bool) -> None:
        """The outcome of one health check of the database."""
        self.database_up.set(1 if reachable else 0)
        if not reachable:
            self.database_last_error.set_to_current_time()

    def render(self) -> bytes:
        """The exposition text, as /metrics serves it."""
        return generate_latest(self.registry)


async def publish_gauges(metrics: Metrics, snapshot: Callable[[], Awaitable[Snapshot]],
                         streams: Callable[[], Iterable[tuple[str, int]]], seconds: float) -> None:
    """Every ``seconds``, refresh the gauges from the stats snapshot (the StatsHub's cached one,
    shared with WatchStats streams) and from this broker's open streams. Runs until cancelled."""

    async def publish() -> None:
        metrics.observe_streams(streams())
        metrics.observe_snapshot(await snapshot())

    await every(seconds, publish, log, "gauge refresh", at_once=True)
