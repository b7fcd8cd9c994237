"""Shared fixtures: one PostgreSQL per session, a fresh migrated database per test, brokers.

PostgreSQL is the embedded ``pgserver`` one in a temporary folder, unless
``FORGE_TEST_DATABASE_URL`` names a server to use (its user must be able to create databases).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from forge.v1 import broker_pb2_grpc
from forge_broker.completer import Completer
from forge_broker.migrate import migrate
from forge_broker.store import Store
from tests.support import (
    TEMPLATE,
    BrokerProcess,
    drop_database,
    new_database,
    start_broker,
    start_gateway,
)


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A DSN to a server where the tests may create and drop databases."""
    url = os.environ.get("FORGE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="forge-test-pg-") as tmp:
        server = pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = off")  # test data is thrown away anyway
            conn.execute("SELECT pg_reload_conf()")
        yield server.get_uri()
        server.cleanup()


@pytest.fixture(scope="session")
def template_dsn(pg_admin_dsn: str) -> str:
    """A migrated template database that every test database is copied from."""
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    dsn = make_conninfo(pg_admin_dsn, dbname=TEMPLATE)
    migrate(dsn)
    return dsn


@pytest.fixture
def dsn(pg_admin_dsn: str, template_dsn: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    url = new_database(pg_admin_dsn)
    yield url
    drop_database(pg_admin_dsn, url)


@pytest.fixture
def empty_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh database with no Forge schema (for migration tests)."""
    url = new_database(pg_admin_dsn, template=None)
    yield url
    drop_database(pg_admin_dsn, url)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[Store]:
    """The store on this test's database, with the backoff base shortened to 0.2 s."""
    s = Store(dsn, min_size=1, max_size=20, backoff_base=0.2)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def completer(store: Store) -> Completer:
    """Acks and nacks on ``store`` as the broker makes them (group commit, per-item answers)."""
    return Completer(store, lambda _ended: None)


@pytest.fixture
def broker(dsn: str) -> Iterator[BrokerProcess]:
    """A running broker subprocess on this test's database."""
    proc = start_broker(dsn)
    yield proc
    proc.stop()


@pytest.fixture
def stub(broker: BrokerProcess) -> Iterator[broker_pb2_grpc.BrokerStub]:
    """A synchronous client stub connected to ``broker``."""
    with grpc.insecure_channel(broker.target) as channel:
        yield broker_pb2_grpc.BrokerStub(channel)


@pytest.fixture
def rest(broker: BrokerProcess) -> Iterator[httpx.Client]:
    """An HTTP client of a gateway in front of ``broker``."""
    gateway = start_gateway(broker.target)
    try:
        with httpx.Client(base_url=gateway.url, timeout=30.0) as client:
            yield client
    finally:
        gateway.stop()
