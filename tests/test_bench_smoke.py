"""``make bench`` must keep working: a tiny run of Forge's scenarios, real broker and workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from tests.support import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

METRICS = ("drain", "enqueue_batch", "enqueue_single", "latency_p50", "latency_p99",
           "enqueue_gateway", "scheduled_p50", "scheduled_p99", "scheduled_max",
           "backlog_lease_small", "backlog_lease_large", "backlog_lease_ratio",
           "backlog_drain_small", "backlog_drain_large", "backlog_drain_ratio",
           "steady_size_ratio", "steady_size_end", "steady_p99_max",
           "footprint_broker", "footprint_workerd_max", "footprint_workerd_mean",
           "limits_drain", "limits_limited_drain", "limits_limited_share", "limits_limited_peak",
           "schedules_fire", "schedules_created")


def test_bench_quick_run_measures_every_forge_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--systems", "forge",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for label in ("drain", "idle latency p50", "POST /v1/jobs", "scheduled start delay p99",
                  "backlog: claim large ÷ small", "steady: jobs size", "footprint: broker RSS",
                  "limits: unlimited drain", "schedules: due → all their jobs committed"):
        assert label in proc.stdout, label
    result = json.loads(out.read_text())
    for metric in METRICS:
        entry = result["figures"].get(metric, {}).get("forge")
        assert entry is not None, metric
        assert entry.get("median") is not None, (metric, entry)
    # Every run started after a CHECKPOINT (the embedded server's role may run one), and the
    # backlog's fills were checkpointed before their claims and drains were timed.
    assert result["postgres"]["checkpoint_before_each_run"] is True
    backlog = result["runs"]["forge"]["backlog"][0]
    assert backlog["small"]["checkpointed"] and backlog["large"]["checkpointed"], backlog
    steady = result["runs"]["forge"]["steady"]
    assert len(steady) == 1 and len(steady[0]["series"]) >= 2, steady
    assert {t["metric"] for t in result["targets"]} >= {"scheduled_p99", "backlog_lease_ratio",
                                                       "steady_size_ratio", "footprint_broker",
                                                       "schedules_fire"}


def test_ratio_goals_are_judged_in_each_metrics_direction_and_skipped_without_both_medians() -> None:
    ratios = {"enqueue_batch": {"pgqueuer": 1.6, "psycopg": 0.5},
              "latency_p50": {"pgqueuer": 0.9}, "latency_p99": {"pgqueuer": 1.0}}
    judged = {(g["metric"], g["peer"]): g["met"] for g in report.ratio_targets(ratios)}
    assert judged == {("enqueue_batch", "pgqueuer"): True, ("enqueue_batch", "psycopg"): False,
                      ("latency_p50", "pgqueuer"): False, ("latency_p99", "pgqueuer"): True}
