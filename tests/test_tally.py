"""The per-job metric tallies: a histogram fed a claim's or an ack's values at once counts
exactly as one fed them one by one, and the broker's delivered/settled counts match by type."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from forge_broker.metrics import UNKNOWN_TYPE, Metrics
from forge_broker.models import LeasedRow
from forge_common.tally import HistogramTally

BOUNDS = [0.005, 0.01, 0.025, 0.1, 1.0, 10.0]


def test_a_histogram_observed_all_at_once_counts_as_one_observed_one_by_one() -> None:
    registry = CollectorRegistry()
    one = HistogramTally("one", "one by one", ["t"], BOUNDS, registry)
    many = HistogramTally("many", "all at once", ["t"], BOUNDS, registry)
    rng = random.Random(7)
    for _ in range(200):
        # Values on the bounds themselves too: a value equal to a bound is in that bound's bucket.
        values = [rng.choice([0.0, *BOUNDS, 11.0, rng.random() * 2, rng.expovariate(3)])
                  for _ in range(rng.randrange(0, 60))]
        for v in values:
            one.observe(("x",), v)
        many.observe_all(("x",), values)
    by_one, by_many = (_samples(h, registry) for h in ("one", "many"))
    assert by_one.keys() == by_many.keys() and len(by_one) == len(BOUNDS) + 3
    for key, value in by_one.items():
        assert abs(value - by_many[key]) < 1e-6, key


def test_the_broker_counts_settled_jobs_by_the_type_it_delivered_them_as() -> None:
    metrics = Metrics()
    rows = [LeasedRow(f"{t}-{i}", "token", t, "{}", 0, 1, 3, i / 100)
            for i in range(50) for t in ("a.one", "a.two")]
    metrics.delivered(rows[:60])
    metrics.delivered(rows[60:])
    metrics.settled_jobs([r.id for r in rows if r.type == "a.one"] + ["never-delivered"],
                         "completed")
    metrics.settled_jobs([r.id for r in rows[:10] if r.type == "a.two"], "dead")
    text = generate_latest(metrics.registry).decode()
    got = {(m.name, s.name, tuple(sorted(s.labels.items()))): s.value
           for m in text_string_to_metric_families(text) for s in m.samples}
    assert got[("forge_jobs_completed", "forge_jobs_completed_total", (("type", "a.one"),))] == 50
    assert got[("forge_jobs_completed", "forge_jobs_completed_total",
                (("type", UNKNOWN_TYPE),))] == 1
    assert got[("forge_jobs_dead", "forge_jobs_dead_total", (("type", "a.two"),))] == 5
    wait = {labels: v for (name, sample, labels), v in got.items()
            if sample == "forge_queue_wait_seconds_count"}
    assert wait == {(("type", "a.one"),): 50, (("type", "a.two"),): 50}
    leases = {labels: v for (name, sample, labels), v in got.items()
              if sample == "forge_lease_duration_seconds_count"}
    assert leases == {(("type", "a.one"),): 50, (("type", "a.two"),): 5}


def _samples(name: str, registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    text = generate_latest(registry).decode()
    return {(s.name.removeprefix(name), s.labels.get("le", "")): s.value
            for m in text_string_to_metric_families(text) if m.name == name for s in m.samples}
