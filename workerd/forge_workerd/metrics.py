"""Prometheus metrics of one workerd process, served at ``/metrics`` when --metrics-port is set.

What this worker itself saw: each attempt it ran and how it ended, how long handlers took, how
many jobs it holds, and whether its lease stream is up. One CollectorRegistry per Worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from forge_common.tally import CounterTally, HistogramTally

Outcome = Literal["completed", "failed", "failed_permanent", "interrupted"]
"""How an attempt ended here: the handler returned (ack); it raised or timed out (nack, retried
while retries remain); it raised ``Fail`` (nack to the dead-letter queue); or the worker shut
down while it ran (nack, retried at once)."""

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 900.0, 3600.0)

class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Tallies, not prometheus_client's Counter/Histogram: these count every job.
        self.jobs = CounterTally("forge_worker_jobs", "Attempts this worker ran, by how they ended.",
                                 ["type", "outcome"], r)
        self.duration = HistogramTally("forge_worker_job_duration_seconds",
                                       "Handler run time of each attempt (any outcome).", ["type"],
                                       DURATION_BUCKETS, r)
        self.in_flight = Gauge("forge_worker_in_flight",
                               "Jobs this worker holds a lease on: queued, running or settling.",
                               registry=r)
        self.connected = Gauge("forge_worker_connected",
                               "1 while this worker's lease stream to the broker is open, else 0.",
                               registry=r)

    def attempt(self, type_: str, outcome: Outcome, seconds: float | None) -> None:
        self.jobs.inc((type_, outcome))
        if seconds is not None:
            self.duration.observe((type_,), seconds)

    def track(self, in_flight: Callable[[], int], connected: Callable[[], bool]) -> None:
        """Read both gauges at scrape time from the worker's own state."""
        self.in_flight.set_function(lambda: float(in_flight()))
        self.connected.set_function(lambda: 1.0 if connected() else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
