"""Prometheus metrics of one workerd process, served at ``/metrics`` when --metrics-port is set.

What this worker itself saw: each attempt it ran and how it ended, how long handlers took, how
many jobs it holds, and whether its lease stream is up. One CollectorRegistry per Worker.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Literal

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

Outcome = Literal["completed", "failed", "failed_permanent", "interrupted"]
"""How an attempt ended here: the handler returned (ack); it raised or timed out (nack, retried
while retries remain); it raised ``Fail`` (nack to the dead-letter queue); or the worker shut
down while it ran (nack, retried at once)."""

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0, 3600.0)

_LE = (*(str(bound) for bound in DURATION_BUCKETS), "+Inf")
"""The buckets' ``le`` labels, as prometheus_client writes them."""


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._attempts = _Attempts()
        r.register(self._attempts)
        self.in_flight = Gauge("forge_worker_in_flight",
                               "Jobs this worker holds a lease on: queued, running or settling.",
                               registry=r)
        self.connected = Gauge("forge_worker_connected",
                               "1 while this worker's lease stream to the broker is open, else 0.",
                               registry=r)

    def attempt(self, type_: str, outcome: Outcome, seconds: float | None) -> None:
        self._attempts.count(type_, outcome, seconds)

    def track(self, in_flight: Callable[[], int], connected: Callable[[], bool]) -> None:
        """Read both gauges at scrape time from the worker's own state."""
        self.in_flight.set_function(lambda: float(in_flight()))
        self.connected.set_function(lambda: 1.0 if connected() else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Attempts(Collector):
    """``forge_worker_jobs_total`` and ``forge_worker_job_duration_seconds``, tallied in plain
    dicts and turned into metrics when scraped.

    This runs for every job on the event loop: prometheus_client's Counter.inc and
    Histogram.observe take a lock each (~3 µs a job); a dict entry and a bisect do not, and the
    scrape (another thread) copies the tallies before reading them.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        # Per type: a count per bucket (the last for durations beyond every bound), then the sum.
        self._durations: dict[str, list[float]] = {}

    def count(self, type_: str, outcome: str, seconds: float | None) -> None:
        key = (type_, outcome)
        self._counts[key] = self._counts.get(key, 0) + 1
        if seconds is not None:
            tally = self._durations.get(type_)
            if tally is None:
                tally = self._durations[type_] = [0.0] * (len(DURATION_BUCKETS) + 2)
            tally[bisect_left(DURATION_BUCKETS, seconds)] += 1
            tally[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        jobs = CounterMetricFamily("forge_worker_jobs", "Attempts this worker ran, by how they ended.",
                                   labels=["type", "outcome"])
        for (type_, outcome), n in list(self._counts.items()):
            jobs.add_metric([type_, outcome], n)
        yield jobs
        duration = HistogramMetricFamily("forge_worker_job_duration_seconds",
                                         "Handler run time of each attempt (any outcome).",
                                         labels=["type"])
        for type_, tally in list(self._durations.items()):
            counts = tally[:]
            buckets: list[tuple[str, float]] = []
            seen = 0.0
            for le, in_bucket in zip(_LE, counts, strict=False):
                seen += in_bucket
                buckets.append((le, seen))
            duration.add_metric([type_], buckets, sum_value=counts[-1])
        yield duration
