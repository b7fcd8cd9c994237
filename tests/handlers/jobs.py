"""Test handlers. Each records what it did as rows in ``test_effects`` of the test's database
(DSN in ``TEST_EFFECTS_DSN``), so tests can see side effects, which worker ran them, and when."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import psycopg

from forge_workerd import Fail, JobContext, Retry, handler

_local = threading.local()


def record(job: JobContext, phase: str) -> None:
    """Insert one (job_id, worker, phase, at) row; one autocommit connection per thread."""
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["TEST_EFFECTS_DSN"], autocommit=True)
        _local.conn = conn
    conn.execute("INSERT INTO test_effects (job_id, worker, phase, attempt) VALUES (%s, %s, %s, %s)",
                 (job.id, job.worker_id, phase, job.attempts))


async def arecord(job: JobContext, phase: str) -> None:
    await asyncio.to_thread(record, job, phase)


@handler("effect")
def effect(job: JobContext) -> dict[str, Any]:
    """The side effect the drain tests count: one 'done' row per run."""
    if job.payload.get("sleep"):
        time.sleep(float(job.payload["sleep"]))
    record(job, "done")
    return {"n": job.payload.get("n")}


@handler("slow")
async def slow(job: JobContext) -> dict[str, Any]:
    """Records 'start', sleeps ``seconds`` (ignoring nothing: it finishes), records 'done'."""
    await arecord(job, "start")
    await asyncio.sleep(float(job.payload["seconds"]))
    await arecord(job, "done")
    return {"slept": job.payload["seconds"]}


@handler("stubborn")
def stubborn(job: JobContext) -> dict[str, Any]:
    """On its first attempt sleeps ``seconds`` ignoring every signal; later attempts are quick."""
    record(job, "start")
    if job.attempts == 1:
        time.sleep(float(job.payload["seconds"]))
    record(job, "done")
    return {"attempt": job.attempts}


@handler("stubborn_async")
async def stubborn_async(job: JobContext) -> dict[str, Any]:
    """Like ``stubborn``, but blocks a thread of the event loop's default executor."""
    await arecord(job, "start")
    if job.attempts == 1:
        await asyncio.to_thread(time.sleep, float(job.payload["seconds"]))
    await arecord(job, "done")
    return {"attempt": job.attempts}


@handler("long")
def long(job: JobContext) -> dict[str, Any]:
    """Works ``seconds`` in small steps, stopping if cancelled (and recording that)."""
    record(job, "start")
    if job.cancelled.wait(float(job.payload["seconds"])):
        record(job, "cancelled")
        raise RuntimeError(f"cancelled: {job.cancelled.reason}")
    record(job, "done")
    return {"seconds": job.payload["seconds"]}


@handler("echo")
def echo(job: JobContext) -> dict[str, Any]:
    return {"payload": job.payload, "attempts": job.attempts, "async": False,
            "thread": threading.current_thread() is not threading.main_thread()}


@handler("echo_async")
async def echo_async(job: JobContext) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"payload": job.payload, "attempts": job.attempts, "async": True}


@handler("scalar")
def scalar(job: JobContext) -> int:
    return 42


@handler("nothing")
async def nothing(job: JobContext) -> None:
    return None


@handler("boom")
def boom(job: JobContext) -> None:
    def inner() -> None:
        raise ValueError(f"boom on attempt {job.attempts}")

    inner()


@handler("retry_later")
async def retry_later(job: JobContext) -> None:
    raise Retry("not yet", after=float(job.payload.get("after", 30)))


@handler("fail_hard")
def fail_hard(job: JobContext) -> None:
    raise Fail(f"bad input: {job.payload.get('why', '?')}")


@handler("times_out", timeout=0.5)
async def times_out(job: JobContext) -> None:
    try:
        await asyncio.sleep(10)
    finally:
        await arecord(job, "unwound")


@handler("times_out_sync", timeout=0.5)
def times_out_sync(job: JobContext) -> None:
    if job.cancelled.wait(10):
        record(job, f"cancelled: {job.cancelled.reason}")


@handler("payload_timeout")
async def payload_timeout(job: JobContext) -> dict[str, Any]:
    await asyncio.sleep(float(job.payload.get("seconds", 10)))
    return {"finished": True}


@handler("big_result")
async def big_result(job: JobContext) -> dict[str, Any]:
    # A pause, so that jobs leased together finish together and settle in one call.
    await asyncio.sleep(0.3)
    return {"blob": "x" * int(job.payload["bytes"])}


@handler("flaky_once")
async def flaky_once(job: JobContext) -> dict[str, Any]:
    """Fails its first attempt (retried at once), succeeds on the next."""
    if job.attempts == 1:
        raise Retry("first attempt fails", after=0.05)
    return {"attempt": job.attempts}
