"""Apply the numbered SQL files of ``forge_broker.migrations`` once each, under an advisory lock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("forge.migrate")

# Session advisory lock held while migrating, so brokers starting together take turns.
MIGRATION_LOCK = 0x466F726765  # "Forge"
_FILE = re.compile(r"^(\d+)_([\w-]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """Every migration shipped in the package, in version order."""
    found = []
    for entry in resources.files("forge_broker.migrations").iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


def latest_version() -> int:
    migrations = available()
    return migrations[-1].version if migrations else 0


def migrate(dsn: str) -> list[int]:
    """Bring the database at ``dsn`` to the latest version; return the versions applied now.

    Each file runs in its own transaction together with its row in ``forge.schema_migrations``,
    so a failure leaves the database at the previous version. Running it again is a no-op.
    """
    applied_now: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS forge")
            conn.execute(
                """CREATE TABLE IF NOT EXISTS forge.schema_migrations (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {row[0] for row in conn.execute("SELECT version FROM forge.schema_migrations")}
            for mig in available():
                if mig.version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL(mig.sql))
                    conn.execute(
                        "INSERT INTO forge.schema_migrations (version, name) VALUES (%s, %s)",
                        (mig.version, mig.name),
                    )
                log.info("applied migration %03d_%s", mig.version, mig.name)
                applied_now.append(mig.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now


def current_version(dsn: str) -> int:
    """The highest applied version, 0 for an empty database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass('forge.schema_migrations') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return 0
        got = conn.execute("SELECT coalesce(max(version), 0) FROM forge.schema_migrations").fetchone()
        return int(got[0]) if got else 0


async def schema_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The highest applied version on ``conn``'s database (UndefinedTable before any migration)."""
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM forge.schema_migrations")
    row = await cur.fetchone()
    return int(row[0]) if row else 0
