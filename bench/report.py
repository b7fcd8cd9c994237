"""Figures, medians, ratios, the table and the JSON document of a benchmark run."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Metric:
    key: str
    scenario: str
    label: str
    unit: str
    higher_is_better: bool
    target: float | None = None
    """The project's goal for Forge's median: at least this when higher is better, else at most."""


METRICS = (
    Metric("drain", "drain", "drain", "jobs/s", True),
    Metric("enqueue_batch", "enqueue", "enqueue, batches of 1,000", "jobs/s", True),
    Metric("enqueue_single", "enqueue", "enqueue, single × 16 clients", "jobs/s", True),
    Metric("latency_p50", "latency", "idle latency p50", "ms", False),
    Metric("latency_p99", "latency", "idle latency p99", "ms", False),
    # Forge only from here on (FORGE_ONLY): peers do not run these scenarios.
    Metric("enqueue_gateway", "gateway", "enqueue, POST /v1/jobs × 16 clients (gateway)", "jobs/s", True),
    Metric("scheduled_p50", "scheduled", "scheduled start delay p50", "ms", False),
    Metric("scheduled_p99", "scheduled", "scheduled start delay p99", "ms", False, 100.0),
    Metric("scheduled_max", "scheduled", "scheduled start delay max", "ms", False, 100.0),
    Metric("backlog_lease_small", "backlog", "backlog: claim of 100, small backlog", "ms", False),
    Metric("backlog_lease_large", "backlog", "backlog: claim of 100, large backlog", "ms", False),
    Metric("backlog_lease_ratio", "backlog", "backlog: claim large ÷ small", "×", False, 1.5),
    Metric("backlog_drain_small", "backlog", "backlog: drain, small backlog", "jobs/s", True),
    Metric("backlog_drain_large", "backlog", "backlog: drain, large backlog", "jobs/s", True),
    Metric("backlog_drain_ratio", "backlog", "backlog: drain large ÷ small", "×", True),
    Metric("steady_size_ratio", "steady", "steady: jobs size, end ÷ 30 % mark", "×", False, 1.3),
    Metric("steady_size_end", "steady", "steady: jobs table + indexes at end", "MiB", False),
    Metric("steady_p99_max", "steady", "steady: worst per-interval p99", "ms", False),
    Metric("limits_drain", "limits", "limits: unlimited drain, queue settings in force", "jobs/s",
           True),
    Metric("limits_limited_drain", "limits", "limits: limited type's drain", "jobs/s", True),
    Metric("limits_limited_share", "limits", "limits: limited drain ÷ its limit's ceiling", "×",
           True),
    Metric("limits_limited_peak", "limits", "limits: limited type's most running", "jobs", False),
    Metric("footprint_broker", "footprint", "footprint: broker RSS", "MiB", False, 200.0),
    Metric("footprint_workerd_max", "footprint", "footprint: workerd RSS, max", "MiB", False),
    Metric("footprint_workerd_mean", "footprint", "footprint: workerd RSS, mean", "MiB", False),
    Metric("schedules_fire", "schedules", "schedules: due → all their jobs committed", "ms", False,
           1000.0),
    Metric("schedules_created", "schedules", "schedules: due → last job's created_at", "ms", False),
)
SCENARIOS = ("drain", "enqueue", "latency", "gateway", "scheduled", "backlog", "steady", "footprint",
             "limits", "schedules")
FORGE_ONLY = frozenset({"gateway", "scheduled", "backlog", "steady", "footprint", "limits",
                        "schedules"})
"""Scenarios only Forge runs (the peers' cells show "—")."""
SINGLE_RUN = frozenset({"steady"})
"""Scenarios run once whatever --repeats says (a long run whose figure is a series)."""
SYSTEMS = ("forge", "pgqueuer", "procrastinate", "psycopg")
LABELS = {"forge": "Forge", "pgqueuer": "pgqueuer", "procrastinate": "procrastinate",
          "psycopg": "psycopg SKIP LOCKED"}

Runs = Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]
"""system → scenario → the result dict of each repeat (an ``error`` key marks a failed one)."""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def figures(runs: Runs) -> dict[str, dict[str, dict[str, Any]]]:
    """metric → system → {median, runs, unit} over the successful repeats."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for m in METRICS:
        for system, scenarios in runs.items():
            values = [float(r[m.key]) for r in scenarios.get(m.scenario, ()) if m.key in r]
            errors = [str(r["error"]) for r in scenarios.get(m.scenario, ()) if "error" in r]
            if not values and not errors:
                continue
            entry: dict[str, Any] = {"unit": m.unit, "runs": [round(v, 3) for v in values],
                                     "median": round(statistics.median(values), 3) if values else None}
            if errors:
                entry["errors"] = errors
            out.setdefault(m.key, {})[system] = entry
    return out


def ratios(figs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """metric → peer → Forge's median ÷ the peer's (for latency, below 1 means Forge is faster)."""
    out: dict[str, dict[str, float]] = {}
    for metric, systems in figs.items():
        forge = systems.get("forge", {}).get("median")
        if not forge:
            continue
        for peer, entry in systems.items():
            if peer != "forge" and entry.get("median"):
                out.setdefault(metric, {})[peer] = round(forge / entry["median"], 3)
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "error"
    if unit in ("ms", "×"):
        return f"{value:,.2f}"
    return f"{value:,.1f}" if unit == "MiB" else f"{value:,.0f}"


def table(figs: Mapping[str, Mapping[str, Mapping[str, Any]]], rats: Mapping[str, Mapping[str, float]],
          systems: Sequence[str], markdown: bool = False) -> str:
    """One table: a row per metric, a column per system, then Forge ÷ each peer."""
    peers = [s for s in systems if s != "forge"] if "forge" in systems else []
    head = ["metric", "unit", *(LABELS[s] for s in systems), *(f"Forge ÷ {LABELS[p]}" for p in peers)]
    rows: list[list[str]] = []
    for m in METRICS:
        if m.key not in figs:
            continue
        cells = [m.label, m.unit]
        for s in systems:
            entry = figs[m.key].get(s)
            cells.append("—" if entry is None else _fmt(entry["median"], m.unit))
        for p in peers:
            r = rats.get(m.key, {}).get(p)
            cells.append("—" if r is None else f"{r:.2f}")
        rows.append(cells)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = ["<" if i < 2 else ">" for i in range(len(head))]
    return "\n".join("  ".join(f"{c:{fmt[i]}{widths[i]}}" for i, c in enumerate(r)) for r in [head, *rows])


def targets(figs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Each metric with a target that Forge has a median for: the target, the median, met or not."""
    out: list[dict[str, Any]] = []
    for m in METRICS:
        median = figs.get(m.key, {}).get("forge", {}).get("median")
        if m.target is None or median is None:
            continue
        met = median >= m.target if m.higher_is_better else median <= m.target
        out.append({"metric": m.key, "label": m.label, "unit": m.unit,
                    "target": f"{'≥' if m.higher_is_better else '≤'} {m.target:g}",
                    "median": median, "met": met})
    return out


@dataclass(frozen=True)
class RatioTarget:
    """A goal for Forge's median over a peer's median in the same run."""

    metric: str
    peer: str
    target: float
    higher_is_better: bool


RATIO_TARGETS = (
    RatioTarget("enqueue_batch", "pgqueuer", 1.5, True),
    RatioTarget("enqueue_batch", "psycopg", 0.6, True),
    RatioTarget("latency_p50", "pgqueuer", 0.8, False),
    RatioTarget("latency_p99", "pgqueuer", 1.0, False),
    RatioTarget("drain", "pgqueuer", 2.5, True),
    RatioTarget("drain", "psycopg", 0.65, True),
    RatioTarget("enqueue_single", "pgqueuer", 1.5, True),
)
"""The second round's goals against the peers (docs/benchmarks.md, "Second round")."""


def ratio_targets(rats: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Each ratio goal whose both medians this run has: the goal, the ratio, met or not."""
    labels = {m.key: m.label for m in METRICS}
    out: list[dict[str, Any]] = []
    for t in RATIO_TARGETS:
        ratio = rats.get(t.metric, {}).get(t.peer)
        if ratio is None:
            continue
        met = ratio >= t.target if t.higher_is_better else ratio <= t.target
        out.append({"metric": t.metric, "peer": t.peer,
                    "label": f"{labels[t.metric]}, Forge ÷ {LABELS[t.peer]}",
                    "target": f"{'≥' if t.higher_is_better else '≤'} {t.target:g}",
                    "ratio": ratio, "met": met})
    return out


def machine() -> dict[str, Any]:
    """CPU count and model, memory, OS, Python and load average (this machine is shared)."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                            "python": sys.version.split()[0]}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_mib"] = int(line.split()[1]) // 1024
                break
    if hasattr(os, "getloadavg"):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info
