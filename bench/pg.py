"""The one PostgreSQL server a benchmark run uses, and the throwaway databases in it.

``DATABASE_URL`` (an admin DSN: it must be allowed to CREATE and DROP DATABASE) is used when
set; otherwise an embedded server (the ``pgserver`` package) is started in a temporary
directory and deleted at the end. Every system gets a fresh database per run, on this server,
and each run starts after a CHECKPOINT (``checkpoint``), so that none pays for the one before it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

SETTINGS = ("synchronous_commit", "fsync", "shared_buffers", "max_connections", "wal_level",
            "full_page_writes", "work_mem", "effective_io_concurrency", "max_wal_size")


def checkpoint(dsn: str) -> bool:
    """Run CHECKPOINT on the server of ``dsn``: every dirty buffer written, the WAL before it
    recycled. False when the role may not (a superuser or, from PostgreSQL 15, pg_checkpoint).

    Why before every run: a run that writes hundreds of MB (a fill, a drain) leaves the next
    one its dirty buffers to write and a checkpoint under way, whose full-page images inflate
    that run's WAL. Measured on the backlog's drain: with a checkpoint the fill had started
    still running, backends wrote 5,237 buffers themselves and the drain ran at 0.74 of the
    small backlog's; after a CHECKPOINT, 1.04 (docs/benchmarks.md, fourteenth pass). And the
    WAL segments a checkpoint recycles are not created and zero-filled while a commit waits.
    """
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


class Postgres:
    """The benchmark's server: ``with Postgres() as pg: dsn = pg.create_database("x")``."""

    def __init__(self, admin_dsn: str | None = None, db_settings: dict[str, str] | None = None) -> None:
        self.db_settings = dict(db_settings or {})
        """Applied to every database created (``ALTER DATABASE … SET``), e.g. synchronous_commit."""
        self.admin_dsn = admin_dsn if admin_dsn is not None else os.environ.get("DATABASE_URL") or ""
        self.embedded = not self.admin_dsn
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._server: Any = None
        self._created: list[str] = []

    def __enter__(self) -> Postgres:
        if self.embedded:
            import warnings

            # platformdirs warns that XDG_RUNTIME_DIR is unset (as in containers); harmless.
            warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs.*")
            from pgserver import get_server  # type: ignore[attr-defined]

            self._tmp = tempfile.TemporaryDirectory(prefix="forge-bench-pg-")
            self._server = get_server(Path(self._tmp.name) / "pgdata", cleanup_mode="delete")
            self.admin_dsn = str(self._server.get_uri())
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        for dsn in list(self._created):
            self.drop_database(dsn)
        if self._server is not None:
            cleanup = getattr(self._server, "cleanup", None)
            if callable(cleanup):
                cleanup()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def create_database(self, label: str) -> str:
        """A new empty database named after ``label``; its DSN. Dropped on exit if not before."""
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}".lower()
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            for key, value in self.db_settings.items():
                conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    sql.Identifier(name), sql.Identifier(key), sql.Literal(value)))
        dsn = make_conninfo(self.admin_dsn, dbname=name)
        self._created.append(dsn)
        return dsn

    def drop_database(self, dsn: str) -> None:
        name = conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if dsn in self._created:
            self._created.remove(dsn)

    def url(self, dsn: str) -> str:
        """``dsn`` as a postgresql:// URL (what asyncpg-based peers need)."""
        params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
        user = params.pop("user", "")
        password = params.pop("password", "")
        host = params.pop("host", "")
        port = params.pop("port", "")
        dbname = params.pop("dbname", "")
        auth = f"{quote(user)}:{quote(password)}@" if password else (f"{quote(user)}@" if user else "")
        query = dict(params)
        netloc = ""
        if host.startswith("/"):
            query["host"] = host
            if port:
                query["port"] = port
        else:
            netloc = host + (f":{port}" if port else "")
        return f"postgresql://{auth}{netloc}/{quote(dbname)}" + (f"?{urlencode(query)}" if query else "")

    def describe(self) -> dict[str, Any]:
        """Server version and the settings that move queue figures, as the server reports them."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            settings: dict[str, str | None] = {}
            for name in SETTINGS:
                row = conn.execute(f"SHOW {name}").fetchone()
                settings[name] = row[0] if row else None
        # What each benchmark database runs with: the server's value unless --set overrides it.
        effective = {**settings, **self.db_settings}
        return {"server_version": version[0] if version else None, "embedded": self.embedded,
                "server_settings": settings, "database_overrides": self.db_settings,
                "settings": effective}
