"""Demo handlers, like the seed project's: ``email``, ``webhook`` and ``report``.

They are what ``make run`` and the containers serve by default (``--handlers forge_workerd.demo``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import uuid
from typing import Any

import httpx

from forge_workerd import Fail, JobContext, handler

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
SEND_SECONDS = 0.05
WEBHOOK_TIMEOUT = 10.0
MAX_REPORT_ROWS = 1_000_000


@handler("email", timeout=30)
async def email(job: JobContext) -> dict[str, Any]:
    """Validate ``to`` and ``subject`` (Fail: straight to the dead-letter queue), then "send"."""
    to = job.payload.get("to")
    subject = job.payload.get("subject")
    if not isinstance(to, str) or not EMAIL.fullmatch(to):
        raise Fail(f"invalid 'to' address: {to!r}")
    if not isinstance(subject, str) or not subject.strip():
        raise Fail("missing 'subject'")
    await asyncio.sleep(SEND_SECONDS)  # the SMTP round trip we pretend to make
    return {"message_id": f"<{uuid.uuid4()}@forge.local>", "to": to}


@handler("webhook", timeout=WEBHOOK_TIMEOUT + 5)
async def webhook(job: JobContext) -> dict[str, Any]:
    """POST ``body`` (default: the whole payload) as JSON to ``url``; a non-2xx answer is a failure
    (retried with backoff). ``timeout`` in the payload bounds the request (default 10 s)."""
    url = job.payload.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise Fail(f"invalid 'url': {url!r}")
    body = job.payload.get("body", job.payload)
    timeout = job.payload.get("timeout", WEBHOOK_TIMEOUT)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise Fail(f"invalid 'timeout': {timeout!r}")
    async with httpx.AsyncClient(timeout=float(timeout)) as client:
        resp = await client.post(url, json=body, headers={"X-Forge-Job-Id": job.id,
                                                          "X-Forge-Attempt": str(job.attempts)})
    if not resp.is_success:
        raise RuntimeError(f"webhook {url} answered {resp.status_code}: {resp.text[:200]}")
    return {"status": resp.status_code, "elapsed_ms": round(resp.elapsed.total_seconds() * 1000, 1)}


@handler("report", timeout=120)
def report(job: JobContext) -> dict[str, Any]:
    """CPU work: summary statistics over ``rows`` (default 100,000) pseudo-random values seeded by
    the job id, plus a digest. Runs in a thread; stops early if cancelled."""
    rows = job.payload.get("rows", 100_000)
    if not isinstance(rows, int) or not 1 <= rows <= MAX_REPORT_ROWS:
        raise Fail(f"'rows' must be an integer in [1, {MAX_REPORT_ROWS}], got {rows!r}")
    digest = hashlib.sha256(job.id.encode())
    total = 0.0
    squares = 0.0
    low, high = math.inf, -math.inf
    for i in range(rows):
        if i % 10_000 == 0 and job.cancelled:
            raise RuntimeError(f"cancelled after {i} rows: {job.cancelled.reason}")
        digest.update(i.to_bytes(8, "little"))
        value = int.from_bytes(digest.digest()[:4], "little") / 2**32
        total += value
        squares += value * value
        low, high = min(low, value), max(high, value)
    mean = total / rows
    return {
        "rows": rows,
        "mean": round(mean, 6),
        "stddev": round(math.sqrt(max(0.0, squares / rows - mean * mean)), 6),
        "min": round(low, 6),
        "max": round(high, 6),
        "digest": digest.hexdigest(),
    }
