"""What every peer runner shares: options, the scenario skeletons, timing and the result line.

The runners under ``bench/peers/`` run with the peers' own venv (``bench/.venv-peers``), never
the project's, so this module imports nothing from Forge and nothing beyond the standard
library. Each runner is started as ``python bench/peers/<system>_bench.py --scenario S --dsn D
...`` on a fresh, empty database, runs one repeat of one scenario and prints one line
``BENCH-RESULT {json}`` on stdout (anything else it prints is ignored).

Measurement rules, identical for every system (the Forge side in ``bench/forge_bench.py`` follows
them too):

- drain: ``--jobs`` no-op jobs are enqueued with the system's batch enqueue and the table is
  ANALYZEd; then the consumers start. Clock from the first handler start to the moment the
  database holds no unfinished job (polled every ``POLL_SECONDS`` on a separate connection).
- enqueue: ``--jobs`` jobs in batches of ``--batch`` from one client, one call after another;
  then ``--single-jobs`` jobs enqueued one per call by ``--clients`` concurrent clients, each
  with its own connection.
- latency: one idle consumer; ``--warmup`` jobs first (discarded), then ``--latency-jobs``
  jobs enqueued one at a time ``--spacing-ms`` apart, each carrying ``sent_at`` (time.time()
  just before the enqueue call); the handler records ``time.time() - sent_at``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RESULT_PREFIX = "BENCH-RESULT "
POLL_SECONDS = 0.02


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True, choices=("drain", "enqueue", "latency"))
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1_000, help="jobs per batch-enqueue call")
    ap.add_argument("--single-jobs", type=int, default=5_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--latency-jobs", type=int, default=500)
    ap.add_argument("--spacing-ms", type=float, default=10.0)
    ap.add_argument("--warmup", type=int, default=5)
    return ap.parse_args(argv)


def emit(result: dict[str, Any]) -> None:
    """Print the one line the harness reads."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def chunks(n: int, size: int) -> list[int]:
    """Batch sizes that add up to n."""
    return [min(size, n - start) for start in range(0, n, size)]


@dataclass
class Drain:
    """What a drain's handlers report: when the first one started and how many ran."""

    expected: int
    first_start: float | None = None
    handled: int = 0
    all_handled: asyncio.Event = field(default_factory=asyncio.Event)

    def started(self) -> None:
        if self.first_start is None:
            self.first_start = time.time()
        self.handled += 1
        if self.handled >= self.expected:
            self.all_handled.set()


async def wait_empty(unfinished: Callable[[], Awaitable[bool]], max_wait: float) -> float:
    """Poll ``unfinished()`` until it says False; the time.time() at which it did."""
    deadline = time.monotonic() + max_wait
    while await unfinished():
        if time.monotonic() > deadline:
            raise TimeoutError("jobs still unfinished after the drain timeout")
        await asyncio.sleep(POLL_SECONDS)
    return time.time()


def drain_result(drain: Drain, done_at: float) -> dict[str, Any]:
    assert drain.first_start is not None
    elapsed = done_at - drain.first_start
    return {"drain": drain.expected / elapsed, "drain_seconds": elapsed, "jobs": drain.expected}


async def enqueue_scenario(args: argparse.Namespace,
                           batch: Callable[[int, int], Awaitable[None]],
                           make_client: Callable[[], Awaitable[tuple[Callable[[int], Awaitable[None]],
                                                                     Callable[[], Awaitable[None]]]]],
                           ) -> dict[str, Any]:
    """Time ``batch(start, size)`` calls for --jobs, then --clients clients of single enqueues.

    ``make_client()`` returns ``(enqueue_one(i), close())`` for one client with its own
    connection; clients are connected before the clock starts.
    """
    t0 = time.perf_counter()
    start = 0
    for size in chunks(args.jobs, args.batch):
        await batch(start, size)
        start += size
    batch_rate = args.jobs / (time.perf_counter() - t0)

    clients = [await make_client() for _ in range(args.clients)]
    counter = iter(range(args.single_jobs))

    async def run(one: Callable[[int], Awaitable[None]]) -> None:
        for i in counter:
            await one(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(run(one) for one, _ in clients))
    single_rate = args.single_jobs / (time.perf_counter() - t0)
    for _, close in clients:
        await close()
    return {"enqueue_batch": batch_rate, "enqueue_single": single_rate,
            "jobs": args.jobs, "single_jobs": args.single_jobs, "clients": args.clients}


async def latency_scenario(args: argparse.Namespace, enqueue_one: Callable[[dict[str, Any]], Awaitable[None]],
                           recorded: list[float], max_wait: float = 30.0) -> dict[str, Any]:
    """Warm up, then enqueue --latency-jobs spaced jobs and wait for their handlers to record."""

    async def wait_for(n: int) -> None:
        deadline = time.monotonic() + max_wait
        while len(recorded) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(recorded)} of {n} latency jobs ran")
            await asyncio.sleep(0.005)

    for i in range(args.warmup):
        await enqueue_one({"sent_at": time.time(), "warmup": True})
        await wait_for(i + 1)
    recorded.clear()
    spacing = args.spacing_ms / 1000
    next_at = time.monotonic()
    for _ in range(args.latency_jobs):
        next_at += spacing
        await enqueue_one({"sent_at": time.time()})
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await wait_for(args.latency_jobs)
    ms = [1000 * v for v in recorded[: args.latency_jobs]]
    return {"latency_p50": percentile(ms, 50), "latency_p99": percentile(ms, 99),
            "latency_max": max(ms), "samples": len(ms)}
