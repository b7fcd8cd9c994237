"""procrastinate 3.10.0 as its docs set it up for throughput with async tasks.

4 workers × concurrency 10 (async no-op task), each worker with its own ``PsycopgConnector``
pool (as if each were its own process), LISTEN/NOTIFY on (the default); ``batch_defer_async``
for batch enqueue, ``defer_async`` for single ones. Jobs are kept (``delete_jobs="never"``, the
default), so "no unfinished job" is "no job in status todo or doing".

Run by the harness with the peers venv; see common.py for the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import procrastinate

from common import Drain, drain_result, emit, enqueue_scenario, latency_scenario, parse_args, wait_empty

WORKERS = 4
CONCURRENCY = 10
TASK = "noop"
UNFINISHED = ("SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status = 'todo') "
              "OR EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status = 'doing')")


def make_app(dsn: str, handle: Callable[[dict[str, Any]], None], pool: int) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=dsn, min_size=1, max_size=pool))

    @app.task(name=TASK)
    async def noop(**kwargs: Any) -> None:
        handle(kwargs)

    return app


async def run_workers(apps: list[procrastinate.App]) -> list[asyncio.Task[None]]:
    for app in apps:
        await app.open_async()
    return [asyncio.create_task(app.run_worker_async(
        concurrency=CONCURRENCY, wait=True, install_signal_handlers=False, name=f"bench-{i}"))
        for i, app in enumerate(apps)]


async def stop(apps: list[procrastinate.App], tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    for app in apps:
        await app.close_async()


async def enqueue_batch(app: procrastinate.App, start: int, size: int) -> None:
    await app.tasks[TASK].batch_defer_async(*({"n": start + i} for i in range(size)))


async def unfinished_check(app: procrastinate.App) -> bool:
    row = await app.connector.execute_query_one_async(UNFINISHED + " AS busy")
    return bool(row["busy"])


async def drain(args: argparse.Namespace) -> dict[str, Any]:
    state = Drain(args.jobs)
    admin = make_app(args.dsn, lambda _: None, 2)
    async with admin.open_async():
        for start in range(0, args.jobs, args.batch):
            await enqueue_batch(admin, start, min(args.batch, args.jobs - start))
        await admin.connector.execute_query_async("ANALYZE")
        apps = [make_app(args.dsn, lambda _: state.started(), CONCURRENCY + 2) for _ in range(WORKERS)]
        tasks = await run_workers(apps)
        done_at = await wait_empty(lambda: unfinished_check(admin), max_wait=1200)
        await stop(apps, tasks)
    return drain_result(state, done_at)


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    app = make_app(args.dsn, lambda _: None, 2)
    async with app.open_async():

        async def batch(start: int, size: int) -> None:
            await enqueue_batch(app, start, size)

        async def make_client() -> Any:
            client = make_app(args.dsn, lambda _: None, 1)
            await client.open_async()
            await client.connector.execute_query_async("SELECT 1")  # connect before the clock

            async def one(i: int) -> None:
                await client.tasks[TASK].defer_async(n=i)

            return one, client.close_async

        return await enqueue_scenario(args, batch, make_client)


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    recorded: list[float] = []

    def handle(kwargs: dict[str, Any]) -> None:
        recorded.append(time.time() - kwargs["sent_at"])

    worker = make_app(args.dsn, handle, CONCURRENCY + 2)
    tasks = await run_workers([worker])
    producer = make_app(args.dsn, lambda _: None, 2)
    async with producer.open_async():

        async def enqueue_one(payload: dict[str, Any]) -> None:
            await producer.tasks[TASK].defer_async(**payload)

        try:
            return await latency_scenario(args, enqueue_one, recorded)
        finally:
            await stop([worker], tasks)


async def main() -> None:
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    args = parse_args()
    app = make_app(args.dsn, lambda _: None, 2)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    result = await {"drain": drain, "enqueue": enqueue, "latency": latency}[args.scenario](args)
    workers = {"drain": WORKERS, "latency": 1}.get(args.scenario)
    result["settings"] = {"procrastinate": procrastinate.__version__, **({} if workers is None else {
        "workers": workers, "concurrency": CONCURRENCY, "pool_per_worker": CONCURRENCY + 2,
        "listen_notify": True})}
    emit(result)


if __name__ == "__main__":
    asyncio.run(main())
