"""Benchmark handlers for workerd: ``workerd --handlers bench.handlers``.

- ``bench.noop`` does nothing; the first call in each process writes its start time
  (time.time()) to ``$FORGE_BENCH_DIR/first-<pid>``, which is where a drain's clock starts.
- ``bench.latency`` appends ``time.time() - payload["sent_at"]`` (seconds, from the enqueue
  call to this handler's start) as a line to ``$FORGE_BENCH_DIR/latency-<pid>``.

Without ``FORGE_BENCH_DIR`` both only run (nothing is written).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO

from workerd import JobContext, handler

_dir = os.environ.get("FORGE_BENCH_DIR")
BENCH_DIR = Path(_dir) if _dir else None
_first_written = False
_latency_file: IO[str] | None = None


@handler("bench.noop")
async def noop(job: JobContext) -> None:
    global _first_written
    if not _first_written:
        _first_written = True
        if BENCH_DIR is not None:
            (BENCH_DIR / f"first-{os.getpid()}").write_text(repr(time.time()))


@handler("bench.latency")
async def latency(job: JobContext) -> None:
    global _latency_file
    waited = time.time() - float(job.payload["sent_at"])
    if BENCH_DIR is None:
        return
    if _latency_file is None:
        _latency_file = (BENCH_DIR / f"latency-{os.getpid()}").open("a", buffering=1)
    _latency_file.write(f"{waited!r}\n")
