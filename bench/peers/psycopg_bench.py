"""The practical ceiling: a plain psycopg 3 ``SKIP LOCKED`` queue, batched both ways.

8 consumers, each on its own connection, claim up to 100 rows per query
(``UPDATE … WHERE id = ANY(ARRAY(SELECT … FOR UPDATE SKIP LOCKED))``, the shape that keeps its
index lookup under a generic plan), run the no-op handler on each, and ack the whole batch in
one ``UPDATE``. Enqueue is one ``INSERT … SELECT FROM unnest()`` per batch; a statement-level
trigger sends one NOTIFY per insert statement, which the latency consumer LISTENs for.

Run by the harness with the peers venv; see common.py for the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import psycopg

from common import Drain, drain_result, emit, enqueue_scenario, latency_scenario, parse_args, wait_empty

CONSUMERS = 8
CLAIM_BATCH = 100
CHANNEL = "bench_jobs"

SCHEMA = f"""
CREATE TABLE jobs (
  id         bigserial   PRIMARY KEY,
  payload    jsonb       NOT NULL,
  status     text        NOT NULL DEFAULT 'queued',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_queued_idx ON jobs (id) WHERE status = 'queued';
CREATE INDEX jobs_running_idx ON jobs (id) WHERE status = 'running';
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify();
"""

INSERT = "INSERT INTO jobs (payload) SELECT p::jsonb FROM unnest(%s::text[]) AS p"
INSERT_ONE = "INSERT INTO jobs (payload) VALUES (%s::jsonb)"
CLAIM = """
UPDATE jobs SET status = 'running'
WHERE id = ANY(ARRAY(SELECT id FROM jobs WHERE status = 'queued'
                     ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED))
RETURNING id, payload
"""
ACK = "UPDATE jobs SET status = 'done' WHERE id = ANY(%s)"
UNFINISHED = ("SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued') "
              "OR EXISTS (SELECT 1 FROM jobs WHERE status = 'running')")


async def connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


async def noop(payload: dict[str, Any]) -> None:
    return None


async def claim_and_run(conn: psycopg.AsyncConnection[Any], handle: Any) -> int:
    """One claim of up to CLAIM_BATCH rows, their handlers, one ack; how many there were."""
    rows = await (await conn.execute(CLAIM, (CLAIM_BATCH,))).fetchall()
    if not rows:
        return 0
    for _, payload in rows:
        await handle(payload)
    await conn.execute(ACK, ([r[0] for r in rows],))
    return len(rows)


async def enqueue_batch(conn: psycopg.AsyncConnection[Any], start: int, size: int) -> None:
    await conn.execute(INSERT, ([json.dumps({"n": start + i}) for i in range(size)],))


async def drain(args: argparse.Namespace) -> dict[str, Any]:
    async with await connect(args.dsn) as conn:
        for start in range(0, args.jobs, args.batch):
            await enqueue_batch(conn, start, min(args.batch, args.jobs - start))
        await conn.execute("ANALYZE jobs")
        state = Drain(args.jobs)

        async def handle(payload: dict[str, Any]) -> None:
            state.started()
            await noop(payload)

        async def consumer() -> None:
            async with await connect(args.dsn) as c:
                await ready.wait()
                while await claim_and_run(c, handle):
                    pass

        ready = asyncio.Event()
        tasks = [asyncio.create_task(consumer()) for _ in range(CONSUMERS)]
        await asyncio.sleep(0.2)  # let every consumer connect before the start
        ready.set()

        async def unfinished() -> bool:
            row = await (await conn.execute(UNFINISHED)).fetchone()
            return bool(row and row[0])

        done_at = await wait_empty(unfinished, max_wait=600)
        await asyncio.gather(*tasks)
        return drain_result(state, done_at)


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    async with await connect(args.dsn) as conn:

        async def batch(start: int, size: int) -> None:
            await enqueue_batch(conn, start, size)

        async def make_client() -> Any:
            c = await connect(args.dsn)

            async def one(i: int) -> None:
                await c.execute(INSERT_ONE, (json.dumps({"n": i}),))

            return one, c.close

        return await enqueue_scenario(args, batch, make_client)


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    recorded: list[float] = []

    async def handle(payload: dict[str, Any]) -> None:
        recorded.append(time.time() - payload["sent_at"])

    async def consumer() -> None:
        async with await connect(args.dsn) as listen, await connect(args.dsn) as work:
            await listen.execute(f"LISTEN {CHANNEL}")
            listening.set()
            while True:
                while await claim_and_run(work, handle):
                    pass
                async for _ in listen.notifies(timeout=1.0, stop_after=1):
                    pass

    async with await connect(args.dsn) as producer:
        listening = asyncio.Event()
        task = asyncio.create_task(consumer())
        await listening.wait()

        async def enqueue_one(payload: dict[str, Any]) -> None:
            await producer.execute(INSERT_ONE, (json.dumps(payload),))

        try:
            return await latency_scenario(args, enqueue_one, recorded)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def consumer_settings(scenario: str) -> dict[str, Any]:
    return {} if scenario == "enqueue" else {"consumers": CONSUMERS if scenario == "drain" else 1}


async def main() -> None:
    args = parse_args()
    async with await connect(args.dsn) as conn:
        await conn.execute(SCHEMA)
    result = await {"drain": drain, "enqueue": enqueue, "latency": latency}[args.scenario](args)
    result["settings"] = {**consumer_settings(args.scenario),
                          "claim_batch": CLAIM_BATCH, "ack": "one UPDATE per claimed batch",
                          "psycopg": psycopg.__version__}
    emit(result)


if __name__ == "__main__":
    asyncio.run(main())
