"""Test databases: each test gets a fresh copy of one migrated template on the session server."""

from __future__ import annotations

import os
import uuid

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# One template per pytest-xdist worker (make test-fast runs several), so workers sharing one
# server through FORGE_TEST_DATABASE_URL never drop each other's.
TEMPLATE = f"forge_test_template_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


def new_database(pg_admin_dsn: str, template: str | None = TEMPLATE) -> str:
    """Create a fresh database (a copy of the migrated template, or empty) and return its DSN."""
    name = f"forge_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        if template:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        else:
            conn.execute(f"CREATE DATABASE {name}")
    return make_conninfo(pg_admin_dsn, dbname=name)


def drop_database(pg_admin_dsn: str, dsn: str) -> None:
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def job_count(dsn: str) -> int:
    """How many rows forge.jobs holds: what a refused call must leave unchanged."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM forge.jobs").fetchone()
        assert row is not None
        return int(row[0])
