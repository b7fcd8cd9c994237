"""Labelled Prometheus counters and histograms for per-job events on an event loop.

prometheus_client's Counter.inc and Histogram.observe take a lock and walk a few objects each
time (1–3 µs); the broker and workerd count several events per job, so at tens of thousands of
jobs a second that is a visible share of a core. These keep plain dicts, updated only from the
event loop's thread, and turn them into metric families when scraped (from the exporter's
thread, which copies before reading). The exposition is the same as a labelled Counter's
(``<name>_total``) and Histogram's (``_bucket``, ``_count``, ``_sum``), without ``_created``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


class CounterTally(Collector):
    """A counter with labels; ``inc`` takes the label values in the order of ``labels``."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str],
                 registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self._counts: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, labels: tuple[str, ...], n: float = 1) -> None:
        self._counts[labels] = self._counts.get(labels, 0) + n

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, n in list(self._counts.items()):
            family.add_metric(list(labels), n)
        yield family


class HistogramTally(Collector):
    """A histogram with labels and fixed upper bounds (``le``)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str],
                 buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self._bounds = tuple(buckets)
        self._le = (*(str(float(b)) for b in self._bounds), "+Inf")
        # Per label set: a count per bucket (the last for values above every bound), then the sum.
        self._tallies: dict[tuple[str, ...], list[float]] = {}
        registry.register(self)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        tally = self._tallies.get(labels)  # not _tally: one call fewer, per job in workerd
        if tally is None:
            tally = self._tally(labels)
        tally[bisect_left(self._bounds, value)] += 1
        tally[-1] += value

    def observe_all(self, labels: tuple[str, ...], values: Sequence[float]) -> None:
        """``observe`` each of ``values``, for a claim's or an ack's thousand jobs: sorted, and
        each bucket counted by where its bound falls among them, rather than a step per value."""
        tally, ordered, done = self._tally(labels), sorted(values), 0
        for i, bound in enumerate(self._bounds):  # bucket i: above the bound before, up to its own
            upto = bisect_right(ordered, bound, done)
            tally[i] += upto - done
            done = upto
        tally[-2] += len(ordered) - done  # above every bound
        tally[-1] += sum(ordered)

    def _tally(self, labels: tuple[str, ...]) -> list[float]:
        tally = self._tallies.get(labels)
        if tally is None:
            tally = self._tallies[labels] = [0.0] * (len(self._bounds) + 2)
        return tally

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, tally in list(self._tallies.items()):
            counts = tally[:]
            buckets: list[tuple[str, float]] = []
            seen = 0.0
            for le, n in zip(self._le, counts, strict=False):
                seen += n
                buckets.append((le, seen))
            family.add_metric(list(labels), buckets, sum_value=counts[-1])
        yield family
