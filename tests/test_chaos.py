"""The chaos suite, small: 1,000 jobs drain through SIGKILLed workers, a broker restart, a
PostgreSQL crash-restart and a 3 s PostgreSQL stop, and every invariant holds.

``make chaos`` runs the same code at full size (20,000 jobs, a 10 s stop).
"""

from __future__ import annotations

import pytest

from tests.chaos.run import Settings, run, summary

pytestmark = pytest.mark.slow


def test_a_queue_drained_through_worker_kills_and_broker_and_postgres_restarts_loses_nothing() -> None:
    result = run(Settings(jobs=1000, brokers=2, workers=4, concurrency=4, job_ms=100,
                          fail_every=50, pg_stop_seconds=3, kill_interval=(0.5, 1.5), max_kills=3,
                          verbose=True))
    print(summary(result))
    rec, found = result.record, result.findings
    assert result.violations == [], summary(result)
    # The faults really happened, while jobs were still draining.
    assert len(rec.kills) >= 1
    assert (rec.broker_restarts, rec.pg_restarts, rec.pg_stops) == (1, 1, 1)
    assert all(e.done_before < 1000 for e in rec.events), rec.events
    # With PostgreSQL stopped, each broker refused GetJob and Enqueue with UNAVAILABLE.
    assert [p.code for p in rec.probes] == ["UNAVAILABLE"] * 4
    # Nothing lost; runs twice only where a worker died between its side effect and its ack.
    assert (found.jobs, found.completed, found.dead_by_choice) == (1000, 980, 20)
    assert found.lost == 0 and found.missing_effects == 0
    assert found.duplicates == found.duplicates_explained
    assert found.overlaps == 0
    assert rec.xact_samples > 0 and rec.max_xact_age < 5
