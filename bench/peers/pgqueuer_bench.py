"""pgqueuer 1.6.0 with the settings its tuning guide gives for throughput.

5 ``PgQueuer`` consumers, each on its own asyncpg connection, dequeue batch size 100, on uvloop,
default (durable) tables. Enqueue uses ``Queries.enqueue`` with lists (one statement per batch).
Completed jobs leave the ``pgqueuer`` table (pgqueuer moves them to its log in buffered
batches), so "no unfinished job" is "the queue table is empty".

Run by the harness with the peers venv; see common.py for the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import asyncpg
import pgqueuer
import uvloop
from pgqueuer import PgQueuer, Queries
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

from common import Drain, drain_result, emit, enqueue_scenario, latency_scenario, parse_args, wait_empty

CONSUMERS = 5
BATCH_SIZE = 100
ENTRYPOINT = "noop"


async def queries(dsn: str) -> tuple[asyncpg.Connection, Queries]:
    conn = await asyncpg.connect(dsn)
    return conn, Queries(AsyncpgDriver(conn))


async def enqueue_batch(q: Queries, start: int, size: int) -> None:
    await q.enqueue([ENTRYPOINT] * size, [json.dumps({"n": start + i}).encode() for i in range(size)],
                    [0] * size)


async def consumers(dsn: str, n: int, handle: Any) -> tuple[list[PgQueuer], list[asyncio.Task[None]]]:
    """Start ``n`` PgQueuer consumers running ``handle(job)`` for the no-op entrypoint."""
    pgqs = []
    for _ in range(n):
        pgq = PgQueuer.from_asyncpg_connection(await asyncpg.connect(dsn))

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            await handle(job)

        pgqs.append(pgq)
    tasks = [asyncio.create_task(p.run(batch_size=BATCH_SIZE, dequeue_timeout=timedelta(seconds=5)))
             for p in pgqs]
    return pgqs, tasks


async def stop(pgqs: list[PgQueuer], tasks: list[asyncio.Task[None]]) -> None:
    for p in pgqs:
        p.shutdown.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def drain(args: argparse.Namespace) -> dict[str, Any]:
    conn, q = await queries(args.dsn)
    for start in range(0, args.jobs, args.batch):
        await enqueue_batch(q, start, min(args.batch, args.jobs - start))
    await conn.execute("ANALYZE")
    state = Drain(args.jobs)

    async def handle(job: Job) -> None:
        state.started()

    pgqs, tasks = await consumers(args.dsn, CONSUMERS, handle)

    async def unfinished() -> bool:
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pgqueuer)"))

    done_at = await wait_empty(unfinished, max_wait=600)
    await stop(pgqs, tasks)
    await conn.close()
    return drain_result(state, done_at)


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    conn, q = await queries(args.dsn)

    async def batch(start: int, size: int) -> None:
        await enqueue_batch(q, start, size)

    async def make_client() -> Any:
        c, cq = await queries(args.dsn)

        async def one(i: int) -> None:
            await cq.enqueue(ENTRYPOINT, json.dumps({"n": i}).encode())

        return one, c.close

    try:
        return await enqueue_scenario(args, batch, make_client)
    finally:
        await conn.close()


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    conn, q = await queries(args.dsn)
    recorded: list[float] = []

    async def handle(job: Job) -> None:
        assert job.payload is not None
        recorded.append(time.time() - json.loads(job.payload)["sent_at"])

    pgqs, tasks = await consumers(args.dsn, 1, handle)

    async def enqueue_one(payload: dict[str, Any]) -> None:
        await q.enqueue(ENTRYPOINT, json.dumps(payload).encode())

    try:
        return await latency_scenario(args, enqueue_one, recorded)
    finally:
        await stop(pgqs, tasks)
        await conn.close()


def consumer_settings(scenario: str) -> dict[str, Any]:
    return {} if scenario == "enqueue" else {"consumers": CONSUMERS if scenario == "drain" else 1}


async def main() -> None:
    args = parse_args()
    conn, q = await queries(args.dsn)
    await q.install()
    await conn.close()
    result = await {"drain": drain, "enqueue": enqueue, "latency": latency}[args.scenario](args)
    result["settings"] = {**consumer_settings(args.scenario),
                          "batch_size": BATCH_SIZE, "driver": "asyncpg", "loop": "uvloop",
                          "pgqueuer": pgqueuer.__version__, "asyncpg": asyncpg.__version__}
    emit(result)


if __name__ == "__main__":
    uvloop.run(main())
