"""The broker behind PgBouncer in transaction mode (Debian's pgbouncer; ``make pgbouncer``).

Its DATABASE_URL goes through the pooler, so each transaction may run on another server session:
no server-side prepared statements, no session settings. LISTEN cannot work there, so it takes
DATABASE_DIRECT_URL (as do the migrations' session lock), and NOTIFY, sent by the jobs' triggers
through the pooler, still wakes the workers.
"""

from __future__ import annotations

import pytest

from tests.chaos.run import Settings, run, summary
from tests.support import free_port, run_module

pytestmark = pytest.mark.slow

JOBS = 2000


def test_a_drain_through_pgbouncer_in_transaction_mode_loses_nothing_and_wakes_on_notify() -> None:
    result = run(Settings(
        jobs=JOBS, brokers=1, workers=2, concurrency=8, job_ms=5, fail_every=50, flaky_every=20,
        pooler=True, schedule_every=1.0, wake_probe=True,
        broker_restarts=0, pg_restarts=0, pg_stop_seconds=0,
        kill_interval=(0.5, 1.5), max_kills=2, lease_seconds=3,
        # The safety-net poll far slower than the bound below: a quick start is NOTIFY's doing.
        broker_env={"FORGE_POLL_INTERVAL": "30"}))
    print(summary(result))
    rec, found = result.record, result.findings
    assert result.violations == [], summary(result)
    assert (found.jobs, found.completed, found.dead_by_choice) == (JOBS, JOBS - 40, 40)
    assert found.lost == 0 and found.missing_effects == 0 and found.overlaps == 0
    # Retries happened: every flaky job's second attempt (and the killed workers' jobs).
    assert len(rec.kills) == 2 and rec.retried >= JOBS // 20 - 10, summary(result)
    assert found.duplicates == found.duplicates_explained
    assert found.limited_running_max <= 3
    assert rec.schedule_fires >= 2
    assert rec.wake_seconds is not None and rec.wake_seconds < 1.0, summary(result)


def test_a_direct_url_without_a_database_url_stops_the_broker_naming_it() -> None:
    out = run_module("forge_broker", env={"DATABASE_URL": "", "GRPC_PORT": str(free_port()),
                                          "DATABASE_DIRECT_URL": "postgresql://127.0.0.1/forge",
                                          "FORGE_METRICS_PORT": "0"})
    assert out.returncode == 1
    assert "DATABASE_DIRECT_URL" in out.stderr and "Traceback" not in out.stderr
