"""Forge against pgqueuer, procrastinate and a plain psycopg SKIP LOCKED loop, on one PostgreSQL.

    python -m bench [--quick] [--only drain,enqueue,latency,...] [--systems forge,pgqueuer,...]
                    [--repeats N] [--jobs N] [--steady-minutes M] [--json PATH]

Starts one PostgreSQL (embedded, or ``DATABASE_URL`` as an admin DSN in which it creates and
drops its own databases), runs every chosen scenario for every chosen system, each repeat in a
fresh database and after a CHECKPOINT, interleaving systems within a repeat so machine noise
spreads evenly; prints one table (medians over repeats, and Forge ÷ each peer) and writes
``bench/results/latest.json`` with the machine, versions, server settings, every median and
every raw run.

The scenarios gateway, scheduled, backlog, steady, footprint, limits and schedules are Forge's
alone (the peers' cells show "—"); steady runs once whatever ``--repeats`` says.

Forge runs as a real broker subprocess and real ``workerd`` processes; the peers run in their
own venv (``bench/.venv-peers``, created on first use) as subprocesses. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import forge_bench, peerenv, report
from bench.pg import Postgres, checkpoint

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
RESULT_PREFIX = "BENCH-RESULT "

QUICK = forge_bench.Params(jobs=1_000, single_jobs=200, latency_jobs=50, warmup=2, concurrency=100,
                           timeout=60, gateway_jobs=200, scheduled_jobs=10, backlog_small=2_000,
                           backlog_large=20_000, backlog_completed=20_000, backlog_claims=5,
                           backlog_warmup_claims=2, backlog_drain=1_000, steady_seconds=12, steady_rate=200,
                           steady_sample=3, steady_retention=3, footprint_workers=2,
                           footprint_concurrency=100, limits_jobs=200, schedules=200)


def _csv(raw: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    chosen = tuple(x.strip() for x in raw.split(",") if x.strip())
    bad = [x for x in chosen if x not in allowed]
    if bad or not chosen:
        raise SystemExit(f"bench: {what}: unknown {', '.join(bad) or '(none given)'}; "
                         f"choose from {', '.join(allowed)}")
    return tuple(x for x in allowed if x in chosen)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes and one repeat: a smoke test, not a measurement")
    ap.add_argument("--only", default=",".join(report.SCENARIOS), help="scenarios, comma-separated")
    ap.add_argument("--systems", default=",".join(report.SYSTEMS), help="systems, comma-separated")
    ap.add_argument("--repeats", type=int, help="repeats per scenario and system (default 3; quick 1)")
    ap.add_argument("--jobs", type=int, help="jobs per drain and per batch enqueue (default 50,000)")
    ap.add_argument("--single-jobs", type=int, help="jobs enqueued singly by 16 clients (default 5,000)")
    ap.add_argument("--latency-jobs", type=int, help="jobs in the latency scenario (default 500)")
    ap.add_argument("--concurrency", type=int, help="each workerd's --concurrency (default 100)")
    ap.add_argument("--prefetch", type=int, help="each workerd's --prefetch (default 1900)")
    ap.add_argument("--gateway-jobs", type=int, help="jobs POSTed to the gateway (default 5,000)")
    ap.add_argument("--scheduled-jobs", type=int, help="jobs in the scheduled scenario (default 100)")
    ap.add_argument("--backlog-small", type=int, help="pending rows of the small backlog (default 10,000)")
    ap.add_argument("--backlog-large", type=int,
                    help="pending rows of the large backlog, and as many COMPLETED (default 1,000,000)")
    ap.add_argument("--steady-minutes", type=float, help="length of the steady scenario (default 10; "
                    "quick: 12 s sampled every 3 s)")
    ap.add_argument("--steady-rate", type=int, help="jobs/s of the steady producer (default 1,000)")
    ap.add_argument("--footprint-workers", type=int, help="workerd processes in footprint (default 10)")
    ap.add_argument("--footprint-concurrency", type=int,
                    help="each footprint workerd's --concurrency (default 1,000)")
    ap.add_argument("--schedules", type=int,
                    help="schedules due at the same minute in the schedules scenario (default 1,000)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="db_settings",
                    help="a PostgreSQL setting for every benchmark database (ALTER DATABASE … SET), "
                         "e.g. --set synchronous_commit=off; repeatable")
    ap.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results ({RESULTS})")
    return ap.parse_args(argv)


def params(args: argparse.Namespace) -> forge_bench.Params:
    p = QUICK if args.quick else forge_bench.Params()
    overrides: dict[str, Any] = {}
    for name in ("jobs", "single_jobs", "latency_jobs", "concurrency", "prefetch", "gateway_jobs",
                 "scheduled_jobs", "backlog_small", "steady_rate", "footprint_workers",
                 "footprint_concurrency", "schedules"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.backlog_large is not None:
        overrides["backlog_large"] = overrides["backlog_completed"] = args.backlog_large
    if args.steady_minutes is not None:
        overrides["steady_seconds"] = 60 * args.steady_minutes
        overrides["steady_sample"] = min(p.steady_sample, overrides["steady_seconds"])
    return replace(p, **overrides)


def run_peer(python: Path, system: str, scenario: str, url: str, p: forge_bench.Params) -> dict[str, Any]:
    """One repeat of ``scenario`` by the peer runner of ``system``; its result dict."""
    script = peerenv.PEERS_DIR / f"{system}_bench.py"
    argv = [str(python), str(script), "--scenario", scenario, "--dsn", url, "--jobs", str(p.jobs),
            "--batch", str(p.batch), "--single-jobs", str(p.single_jobs), "--clients", str(p.clients),
            "--latency-jobs", str(p.latency_jobs), "--spacing-ms", str(p.spacing_ms),
            "--warmup", str(p.warmup)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=p.timeout * 3, env=env,
                          cwd=peerenv.PEERS_DIR)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX):])
            return result
    raise RuntimeError(f"{system} {scenario} exited {proc.returncode} without a result:\n"
                       f"{(proc.stdout + proc.stderr)[-3000:]}")


def forge_commit() -> str | None:
    """The checked-out commit, with ``+dirty`` when the tree has changes (read-only git calls)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=HERE, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    scenarios = _csv(args.only, report.SCENARIOS, "--only")
    systems = _csv(args.systems, report.SYSTEMS, "--systems")
    repeats = args.repeats or (1 if args.quick else 3)
    p = params(args)
    peers = [s for s in systems if s != "forge"]
    peer_python = peerenv.ensure() if peers else None

    started = time.monotonic()
    machine = report.machine()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in systems}
    db_settings: dict[str, str] = {}
    for item in args.db_settings:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"bench: --set: expected NAME=VALUE, got {item!r}")
        db_settings[name.strip()] = value.strip()
    checkpointed = True
    with Postgres(db_settings=db_settings) as pg:
        server = pg.describe()
        for scenario in scenarios:
            n_runs = 1 if scenario in report.SINGLE_RUN else repeats
            for r in range(n_runs):
                for system in systems:
                    if system != "forge" and scenario in report.FORGE_ONLY:
                        continue
                    dsn = pg.create_database(f"{system}_{scenario}")
                    checkpointed = checkpointed and checkpoint(pg.admin_dsn)  # not retried once refused
                    t0 = time.monotonic()
                    try:
                        if system == "forge":
                            result = forge_bench.run(scenario, dsn, p)
                        else:
                            assert peer_python is not None
                            result = run_peer(peer_python, system, scenario, pg.url(dsn), p)
                    except Exception as exc:  # one failed run must not lose the others
                        result = {"error": f"{type(exc).__name__}: {exc}"}
                    finally:
                        pg.drop_database(dsn)
                    runs[system].setdefault(scenario, []).append(result)
                    summary = result.get("error") or ", ".join(
                        f"{k}={v:,.1f}" for k, v in result.items()
                        if any(k == m.key for m in report.METRICS))
                    print(f"  {scenario:<9} {r + 1}/{n_runs} {system:<14} {summary}"
                          f"  ({time.monotonic() - t0:.1f}s)", file=sys.stderr, flush=True)

    figs = report.figures(runs)
    rats = report.ratios(figs)
    goals = report.targets(figs)
    ratio_goals = report.ratio_targets(rats)
    print()
    print(report.table(figs, rats, systems))
    for g in goals:
        print(f"target: {g['label']} {g['target']} {g['unit']}: {g['median']:,.2f} "
              f"{'met' if g['met'] else 'NOT met'}")
    for g in ratio_goals:
        print(f"target: {g['label']} {g['target']}: {g['ratio']:.2f} "
              f"{'met' if g['met'] else 'NOT met'}")
    once = ", ".join(sc for sc in scenarios if sc in report.SINGLE_RUN)
    print(f"\nmedians of {repeats} repeat(s){f' ({once}: 1 run)' if once else ''}; "
          f"Forge ÷ peer: above 1 is better for jobs/s, "
          f"below 1 is better for ms. PostgreSQL {server['server_version']}, "
          f"synchronous_commit={server['settings']['synchronous_commit']}, "
          f"{time.monotonic() - started:.0f}s.")

    if hasattr(os, "getloadavg"):
        machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    settings: dict[str, dict[str, Any]] = {}  # system → scenario → its settings
    for system in systems:
        for scenario, results in runs[system].items():
            for result in results:
                if "settings" in result:
                    settings.setdefault(system, {})[scenario] = result["settings"]
    doc = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "repeats": repeats,
        "params": asdict(p),
        "machine": machine,
        "postgres": {**server, "checkpoint_before_each_run": checkpointed},
        "versions": {"python": sys.version.split()[0], "forge_commit": forge_commit(),
                     **({"peers": peerenv.versions()} if peers else {})},
        "systems": list(systems),
        "system_settings": settings,
        "figures": figs,
        "ratios_forge_over_peer": rats,
        "targets": goals,
        "ratio_targets": ratio_goals,
        "runs": runs,
        "table_markdown": report.table(figs, rats, systems, markdown=True),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
