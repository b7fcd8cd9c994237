"""What the claim's transaction-scoped advisory lock costs.

    python -m bench.claim_cost [--jobs 20000] [--claimers 4] [--repeats 3]

Fills a fresh database with no-op jobs and drains it with concurrent claimers through the
broker's claim statement, as it is and with its ``pg_try_advisory_xact_lock`` predicate taken
out, for single-row and 100-row claims. Prints median claims per second, median milliseconds per
claim, and the ratio. Uses DATABASE_URL, or a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import LiteralString

import psycopg
from psycopg.conninfo import make_conninfo

from forge_broker.migrate import migrate
from forge_broker.models import NewJob
from forge_broker.store import LOCK_SPACE, Store, token_key
from forge_broker.store import claim_statement as broker_claim

LOCK_PREDICATE = "WHERE pg_try_advisory_xact_lock(%(lock_space)s, hashtext(id::text))"
"""How claim_jobs tries the advisory lock on the rows it chose."""


def claim_statement(advisory: bool) -> LiteralString:
    """The broker's claim, or (``advisory`` False) the same claim without the advisory lock."""
    statement = broker_claim(lean=True)
    if advisory:
        return statement
    if LOCK_PREDICATE not in statement:
        raise RuntimeError("claim_jobs no longer tries the advisory lock as LOCK_PREDICATE says")
    return statement.replace(LOCK_PREDICATE, "")


async def drain(dsn: str, jobs: int, claimers: int, batch: int, advisory: bool) -> float:
    """Jobs claimed per second while ``claimers`` tasks drain ``jobs`` rows."""
    statement = claim_statement(advisory)
    params = {"worker_id": "bench", "types": [], "limit": batch, "lease_seconds": 60,
              "lock_space": LOCK_SPACE, "token_key": token_key()}
    store = Store(dsn, min_size=claimers, max_size=claimers + 1)
    await store.open()
    try:
        async with store.pool.connection() as conn:
            await conn.execute("TRUNCATE forge.jobs")
        for start in range(0, jobs, 10_000):
            await store.enqueue([NewJob(type="noop", payload_json="{}")
                                 for _ in range(min(10_000, jobs - start))])
        async with store.pool.connection() as conn:
            await conn.execute("ANALYZE forge.jobs")

        async def claimer() -> int:
            n = 0
            while True:
                async with store.pool.connection() as conn:
                    cur = await conn.execute(statement, params, binary=True)
                    claimed = len(await cur.fetchall())
                if not claimed:
                    return n
                n += claimed

        t0 = time.perf_counter()
        done = sum(await asyncio.gather(*(claimer() for _ in range(claimers))))
        elapsed = time.perf_counter() - t0
        assert done == jobs, (done, jobs)
        return done / elapsed
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--claimers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    admin = os.environ.get("DATABASE_URL")
    tmp = None
    if not admin:
        import pgserver

        tmp = tempfile.TemporaryDirectory(prefix="forge-bench-")
        server = pgserver.get_server(  # type: ignore[attr-defined]
            Path(tmp.name) / "pgdata", cleanup_mode="delete")
        admin = server.get_uri()
    name = f"forge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = make_conninfo(admin, dbname=name)
    try:
        migrate(dsn)
        results = {}
        print(f"{'claim':<28}{'jobs/s (median)':>16}{'ms/claim':>10}")
        for batch in (1, 100):
            for advisory in (False, True):
                runs = [asyncio.run(drain(dsn, args.jobs, args.claimers, batch, advisory))
                        for _ in range(args.repeats)]
                rate = statistics.median(runs)
                ms = 1000 * batch * args.claimers / rate
                label = f"batch {batch}, {'with' if advisory else 'without'} advisory lock"
                results[label] = {"jobs_per_s": round(rate), "ms_per_claim": round(ms, 3),
                                  "runs": [round(r) for r in runs]}
                print(f"{label:<28}{rate:>16,.0f}{ms:>10.3f}")
            with_lock = results[f"batch {batch}, with advisory lock"]["jobs_per_s"]
            without = results[f"batch {batch}, without advisory lock"]["jobs_per_s"]
            print(f"  batch {batch}: with/without = {with_lock / without:.3f}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
