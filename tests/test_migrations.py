"""Migrations: applied once, recorded, safe when several brokers start together."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg

from forge_broker.migrate import available, current_version, latest_version, migrate


def test_migrate_twice_is_a_no_op_the_second_time(empty_dsn: str) -> None:
    assert current_version(empty_dsn) == 0
    assert migrate(empty_dsn) == [m.version for m in available()]
    assert migrate(empty_dsn) == []
    assert current_version(empty_dsn) == latest_version()


def test_concurrent_migrations_apply_each_file_once(empty_dsn: str) -> None:
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: migrate(empty_dsn), range(6)))
    applied = [v for r in results for v in r]
    assert sorted(applied) == [m.version for m in available()]
    with psycopg.connect(empty_dsn) as conn:
        rows = conn.execute("SELECT version FROM forge.schema_migrations").fetchall()
    assert [r[0] for r in rows] == [m.version for m in available()]
