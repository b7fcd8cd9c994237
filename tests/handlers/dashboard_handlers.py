"""Handlers for the dashboard's browser test (``tests/test_dashboard_e2e.py``).

``always_fail`` fails every attempt. ``fail_until_fixed`` fails until the file named by
``DASHBOARD_E2E_FIX_FILE`` exists: the test "ships the fix" by creating it, then retries the
dead jobs from the dashboard and watches them complete. ``sleepy`` runs for ``payload.seconds``
(async, so it holds none of the worker's threads), long enough for the Workers page to show it
running.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from forge_workerd import JobContext, handler


@handler("always_fail")
def always_fail(job: JobContext) -> dict[str, Any]:
    raise RuntimeError("boom")


@handler("fail_until_fixed")
def fail_until_fixed(job: JobContext) -> dict[str, Any]:
    marker = os.environ.get("DASHBOARD_E2E_FIX_FILE", "")
    if not marker or not os.path.exists(marker):
        raise RuntimeError("boom: the bug is not fixed yet")
    return {"fixed": True, "n": job.payload.get("n")}


@handler("sleepy")
async def sleepy(job: JobContext) -> dict[str, Any]:
    await asyncio.sleep(float(job.payload.get("seconds", 5)))
    return {"slept": job.payload.get("seconds", 5)}
