"""Benchmark handlers for workerd: ``workerd --handlers bench.handlers``.

- ``bench.noop`` does nothing; the first call in each process writes its start time
  (time.time()) to ``$FORGE_BENCH_DIR/first-<pid>``, which is where a drain's clock starts.
- ``bench.latency`` appends ``time.time() - payload["sent_at"]`` (seconds, from the enqueue
  call to this handler's start) as a line to ``$FORGE_BENCH_DIR/latency-<pid>``.
- ``bench.scheduled`` appends ``time.time() - payload["run_at"]`` (seconds, from the time the
  job was scheduled for, epoch seconds, to this handler's start) to ``scheduled-<pid>``.
- ``bench.steady`` appends ``"<sent_at> <waited>"`` (epoch seconds of the enqueue call, and
  seconds from it to this handler's start) to ``steady-<pid>``, so a run can be cut by minute.
- ``bench.limited`` works LIMITED_SECONDS (an asyncio sleep); the first call in each process
  writes its start time to ``first-limited-<pid>``. The limits scenario gives its type a
  concurrency limit. ``bench.paused`` never runs there: its type is paused.
- ``bench.hold`` holds its slot until ``$FORGE_BENCH_DIR/release`` exists (checked by one
  task per process every 50 ms) or ``payload["max_seconds"]`` (default 300) have passed;
  the footprint scenario uses it to keep jobs in flight.

Without ``FORGE_BENCH_DIR`` they only run (nothing is written; ``bench.hold`` waits for
``max_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import IO

from forge_workerd import JobContext, handler

_dir = os.environ.get("FORGE_BENCH_DIR")
BENCH_DIR = Path(_dir) if _dir else None
_started: set[str] = set()
_files: dict[str, IO[str]] = {}
_released: asyncio.Event | None = None
_watcher: asyncio.Task[None] | None = None


def _record(kind: str, line: str) -> None:
    if BENCH_DIR is None:
        return
    f = _files.get(kind)
    if f is None:
        f = _files[kind] = (BENCH_DIR / f"{kind}-{os.getpid()}").open("a", buffering=1)
    f.write(line + "\n")


def _note_first_start(prefix: str) -> None:
    """Write when this process started its first job of a kind (``{prefix}{pid}``): the
    harness times a drain from the earliest of them."""
    if prefix not in _started:
        _started.add(prefix)
        if BENCH_DIR is not None:
            (BENCH_DIR / f"{prefix}{os.getpid()}").write_text(repr(time.time()))


@handler("bench.noop")
async def noop(job: JobContext) -> None:
    _note_first_start("first-")


LIMITED_SECONDS = 0.05


@handler("bench.limited")
async def limited(job: JobContext) -> None:
    _note_first_start("first-limited-")
    await asyncio.sleep(LIMITED_SECONDS)


@handler("bench.paused")
async def paused(job: JobContext) -> None:
    """Its type is paused in the limits scenario: never called there."""


@handler("bench.latency")
async def latency(job: JobContext) -> None:
    waited = time.time() - float(job.payload["sent_at"])
    _record("latency", repr(waited))


@handler("bench.scheduled")
async def scheduled(job: JobContext) -> None:
    late = time.time() - float(job.payload["run_at"])
    _record("scheduled", repr(late))


@handler("bench.steady")
async def steady(job: JobContext) -> None:
    now = time.time()
    sent_at = float(job.payload["sent_at"])
    _record("steady", f"{sent_at!r} {now - sent_at!r}")


async def _watch_release(event: asyncio.Event) -> None:
    assert BENCH_DIR is not None
    flag = BENCH_DIR / "release"
    while not flag.exists():  # noqa: ASYNC110 - the flag is a file another process creates
        await asyncio.sleep(0.05)
    event.set()


@handler("bench.hold")
async def hold(job: JobContext) -> None:
    global _released, _watcher
    if _released is None:
        _released = asyncio.Event()
        if BENCH_DIR is not None:
            _watcher = asyncio.create_task(_watch_release(_released))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_released.wait(), float(job.payload.get("max_seconds", 300)))
