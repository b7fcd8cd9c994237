"""``make bench`` must keep working: a tiny run of Forge's scenarios, real broker and workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import REPO


def test_bench_quick_run_measures_every_forge_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--systems", "forge",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "drain" in proc.stdout and "idle latency p50" in proc.stdout
    result = json.loads(out.read_text())
    text = json.dumps(result)
    for metric in ("drain", "enqueue_batch", "enqueue_single", "latency_p50", "latency_p99"):
        assert metric in text, metric
